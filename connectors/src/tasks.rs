//! Every background task of the process: one [`TaskTracker`] that knows them all and
//! one [`CancellationToken`] that tells them to stop.
//!
//! Tasks are spawned with [`spawn`] (never bare `tokio::spawn`). A loop (retention,
//! claims, the campaign scheduler, the domain timers, the outbox relay, consumers,
//! listeners) waits on [`stopped`] at its idle points: once the token is cancelled it
//! finishes the unit of work in hand (a chunk, a timer, an outbox row) and returns.
//! The sinks that record what others did (the dispatcher's attempts, the outcome
//! batcher, the ClickHouse attempt log) are not stopped by the token: the delivery
//! engine drains them ([`crate::delivery::DeliveryEngine::shutdown`]) and they end
//! when drained. At exit, [`wait`] waits for every task within a bound.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A tracker and its stop token; the process has one ([`global`]).
#[derive(Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

/// The process's tasks.
pub fn global() -> &'static Tasks {
    static TASKS: OnceLock<Tasks> = OnceLock::new();
    TASKS.get_or_init(Tasks::default)
}

/// Spawns `fut` on the current runtime as one of the process's tasks.
#[track_caller]
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    global().tracker.spawn(fut)
}

/// Resolves once the process is stopping: return at the next idle point.
pub async fn stopped() {
    global().stop.cancelled().await;
}

/// Whether the process is stopping.
pub fn is_stopping() -> bool {
    global().stop.is_cancelled()
}

/// Tells every loop to stop ([`stopped`] resolves).
pub fn stop() {
    global().stop.cancel();
}

/// Waits, at most `within`, for every task to end; answers how many had not.
pub async fn wait(within: Duration) -> usize {
    global().wait(within).await
}

impl Tasks {
    /// Tasks running now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task runs.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Waits, at most `within`, for every task to end; answers how many had not. New
    /// tasks may still be spawned meanwhile (a drain may spawn writes); they are
    /// waited for too.
    pub async fn wait(&self, within: Duration) -> usize {
        self.tracker.close();
        let done = tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok();
        self.tracker.reopen();
        if done {
            0
        } else {
            self.tracker.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_once_the_tasks_end_and_counts_those_that_do_not() {
        let tasks = Tasks::default();
        let stop = tasks.stop.clone();
        tasks.tracker.spawn(async move { stop.cancelled().await });
        tasks
            .tracker
            .spawn(tokio::time::sleep(Duration::from_millis(50)));
        assert_eq!(tasks.len(), 2);
        // The loop never ends without the token.
        assert_eq!(tasks.wait(Duration::from_millis(200)).await, 1);
        tasks.stop.cancel();
        assert_eq!(tasks.wait(Duration::from_secs(5)).await, 0);
        assert!(tasks.is_empty());
    }
}

//! Change notifications between processes sharing the database.
//!
//! A process that keeps a copy of shared rows in memory (the endpoint registry, which
//! every delivery attempt reads) learns of another process's change through Postgres
//! `LISTEN`/`NOTIFY`: the writer runs `pg_notify(channel, id)` in the transaction that
//! changes the row, Postgres delivers it to every listener when (and only if) that
//! transaction commits, and each listener re-reads the row. On loopback that is well
//! under a millisecond after the commit.
//!
//! A listener whose connection drops reconnects (with backoff) and then reports
//! [`Change::Reset`]: whatever was notified while it was away is unknown, so its owner
//! reloads everything. A full reload also runs every [`RELOAD_EVERY`] as a safety net.

use super::Pg;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Channel of endpoint changes; the payload is the endpoint id.
pub const ENDPOINTS: &str = "leadstream_endpoints";

/// Channel of credential changes (a key issued or revoked, an org's auth mode); the
/// payload is the org id.
pub const CREDENTIALS: &str = "leadstream_credentials";

/// How often a listener's owner reloads everything even without a notification.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// What a listener heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This row changed (or was deleted).
    Id(i64),
    /// Anything may have changed: (re)connected, or [`RELOAD_EVERY`] passed.
    Reset,
    /// The connection is gone: until the next [`Change::Reset`], changes are not
    /// heard, so a copy must not be trusted.
    Lost,
}

/// Listens on `channel` from now on, on a connection of its own, for as long as the
/// receiver lives. The first message is a [`Change::Reset`] once listening.
pub fn listen(pg: Pg, channel: &'static str) -> mpsc::UnboundedReceiver<Change> {
    let (tx, rx) = mpsc::unbounded_channel();
    crate::tasks::spawn(async move {
        let mut wait = Duration::from_millis(100);
        while !tx.is_closed() && !crate::tasks::is_stopping() {
            let once = tokio::select! {
                r = listen_once(&pg, channel, &tx) => r,
                () = crate::tasks::stopped() => return,
            };
            match once {
                Ok(()) => {
                    crate::metrics::database_listener(channel, false);
                    if tx.send(Change::Lost).is_err() {
                        return;
                    }
                    wait = Duration::from_millis(100);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    crate::metrics::database_listener(channel, false);
                    if tx.send(Change::Lost).is_err() {
                        return;
                    }
                    tracing::warn!(database = %pg.url(), channel, error = %e, retry_in = ?wait, "listening for changes from other processes; reconnecting");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    rx
}

/// One connection's life: `Ok` when the receiver went away or the server closed it.
async fn listen_once(
    pg: &Pg,
    channel: &'static str,
    tx: &mpsc::UnboundedSender<Change>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg.dedicated().await?;
    let (heard, mut hear) = mpsc::unbounded_channel();
    let driver = crate::tasks::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if heard.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = heard.send(Err(e));
                    return;
                }
            }
        }
    });
    let listening = client.batch_execute(&format!("LISTEN {channel}")).await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    crate::metrics::database_listener(channel, true);
    if tx.send(Change::Reset).is_err() {
        driver.abort();
        return Ok(());
    }
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    reload.tick().await;
    let result = loop {
        tokio::select! {
            m = hear.recv() => match m {
                Some(Ok(payload)) => {
                    crate::metrics::database_notification(channel);
                    let change = payload.parse().map_or(Change::Reset, Change::Id);
                    if tx.send(change).is_err() {
                        break Ok(());
                    }
                }
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            },
            _ = reload.tick() => {
                // A connection dropped without a word (a NAT's idle timeout) would
                // leave this listener deaf: ask it something each reload.
                if let Err(e) = client.simple_query("SELECT 1").await {
                    break Err(e);
                }
                if tx.send(Change::Reset).is_err() {
                    break Ok(());
                }
            }
        }
    };
    driver.abort();
    drop(client);
    result
}

/// Notifies `channel` with `payload` when the transaction of `client` commits.
///
/// # Errors
/// [`tokio_postgres::Error`].
pub async fn notify(
    client: &impl deadpool_postgres::GenericClient,
    channel: &str,
    payload: &str,
) -> Result<(), tokio_postgres::Error> {
    // Through the connection's statement cache: a round trip less per change.
    let statement = client.prepare_cached("SELECT pg_notify($1, $2)").await?;
    client
        .execute(&statement, &[&channel, &payload])
        .await
        .map(|_| ())
}

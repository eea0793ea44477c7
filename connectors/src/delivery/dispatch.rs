//! The dispatcher: one task that owns the in-memory queue and starts attempts.
//!
//! Deliveries wait in one lane per endpoint. A lane runs when it has work, fewer
//! attempts in flight than its endpoint's `maxInFlight`, and (with a `rateLimit`) a
//! token; lanes take turns, so a slow or failing endpoint only ever holds its own
//! lane's slots and never delays another endpoint's deliveries. Scheduled retries
//! wait in a timer map. Across every lane at most `delivery.max_in_flight` attempts
//! run at once, and at most `delivery.max_in_flight_per_org` of one organization's:
//! an org whose endpoints hang cannot hold the slots the others need.
//!
//! Each attempt runs in its own task: send, then write the outcome (attempt row,
//! delivery state, endpoint health) and wait for the commit; only then is the delivery
//! dropped from memory or its next attempt scheduled. A process killed at any point
//! leaves the delivery `pending` in the store with its due time, and the next start
//! resumes it from there ([`super::deliveries::load_pending`]): at most the attempt in
//! flight at the kill is sent twice.

use super::client::{AttemptRequest, DeliveryClient};
use super::deliveries::{record_outcome, DeliveryState, Job, Outcome, RecordedAttempt};
use super::endpoints::{EndpointEffect, Endpoints};
use super::model::Endpoint;
use super::store::Db;
use crate::config::DeliveryConfig;
use crate::kafka::DeliveryTopic;
use crate::writer::now_ms;
use leadstream_pipeline::retry::{AttemptOutcome, DeliveryRetry};
use leadstream_pipeline::signature::signature_header;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the attempt tasks and the engine tell the dispatcher.
pub enum Msg {
    /// Attempt these now.
    Due(Vec<Job>),
    /// Attempt these at the given wall-clock milliseconds.
    At(Vec<(Job, i64)>),
    /// An attempt task ended; `next` is its delivery's next attempt, already durable.
    Finished {
        endpoint: i64,
        next: Option<(Job, i64)>,
    },
    /// Shutting down: start no attempt from now on, and answer once none is in flight
    /// (each recorded). What waits stays pending in the store.
    Drain(tokio::sync::oneshot::Sender<()>),
}

/// What the attempt tasks share.
pub struct Shared {
    /// Set when Kafka carries the deliveries ([`super::kafka`]).
    pub kafka: std::sync::OnceLock<Arc<super::kafka::KafkaLink>>,
    /// Set with `kafka`: produces what publishes committed ([`super::outbox`]).
    pub outbox: std::sync::OnceLock<super::outbox::Outbox>,
    /// Set when ClickHouse is configured: every attempt is logged there too.
    pub attempt_log: std::sync::OnceLock<crate::clickhouse::attempts::AttemptLog>,
    pub db: Arc<Db>,
    pub endpoints: Arc<Endpoints>,
    pub client: DeliveryClient,
    pub retry: DeliveryRetry,
    /// Where attempt outcomes are recorded.
    pub outcomes: super::outcomes::Outcomes,
    pub config: DeliveryConfig,
}

/// Sends work to the dispatcher.
#[derive(Clone)]
pub struct DispatchHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl DispatchHandle {
    /// Queues deliveries due now.
    pub fn due(&self, jobs: Vec<Job>) {
        if !jobs.is_empty() {
            let _ = self.tx.send(Msg::Due(jobs));
        }
    }

    /// Queues deliveries due at wall-clock instants.
    pub fn at(&self, jobs: Vec<(Job, i64)>) {
        if !jobs.is_empty() {
            let _ = self.tx.send(Msg::At(jobs));
        }
    }

    /// Stops starting attempts; answers once every attempt in flight has ended and
    /// its outcome is durable.
    pub async fn drain(&self) {
        let (done, drained) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Drain(done)).is_ok() {
            let _ = drained.await;
        }
    }
}

#[derive(Default)]
struct Lane {
    /// The organization of its endpoint (and of every job in it).
    org: leadstream_pipeline::OrgId,
    queue: VecDeque<Job>,
    in_flight: u32,
    /// In `runnable` already.
    listed: bool,
    /// Waiting for a rate-limit token (a wake-up timer is set).
    waking: bool,
}

/// An endpoint's rate-limit tokens; kept while its lane comes and goes. It holds at
/// most one second's worth (`rate`, at least 1) and refills at `rate` per second.
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket for `rate` deliveries per second.
    fn full(rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: rate.max(1.0),
            refilled: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    fn take(&mut self, rate: f64, now: Instant) -> Result<(), Duration> {
        let burst = rate.max(1.0);
        self.tokens = (self.tokens + (now - self.refilled).as_secs_f64() * rate).min(burst);
        self.refilled = now;
        if self.tokens < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - self.tokens) / rate));
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

enum Timer {
    Job(Job),
    Wake(i64),
}

struct Dispatcher {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    lanes: HashMap<i64, Lane>,
    /// Only endpoints with a `rateLimit`.
    buckets: HashMap<i64, Bucket>,
    runnable: VecDeque<i64>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    in_flight: usize,
    /// Attempts in flight per organization.
    org_in_flight: HashMap<leadstream_pipeline::OrgId, usize>,
    /// Lanes that had work while their organization had its share in flight: listed
    /// again when one of its attempts finishes.
    org_waiting: HashMap<leadstream_pipeline::OrgId, Vec<i64>>,
    /// Lanes whose gauges changed since they were last published.
    touched: Vec<i64>,
    /// Draining: no attempt starts; these are told once none is in flight.
    draining: Option<Vec<tokio::sync::oneshot::Sender<()>>>,
}

/// Starts the dispatcher on the current runtime.
pub fn start(shared: Arc<Shared>) -> DispatchHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let d = Dispatcher {
        shared,
        tx: tx.clone(),
        lanes: HashMap::new(),
        buckets: HashMap::new(),
        runnable: VecDeque::new(),
        timers: BTreeMap::new(),
        timer_seq: 0,
        in_flight: 0,
        org_in_flight: HashMap::new(),
        org_waiting: HashMap::new(),
        touched: Vec::new(),
        draining: None,
    };
    crate::tasks::spawn(d.run(rx));
    DispatchHandle { tx }
}

/// The instant of wall-clock milliseconds `at_ms`.
fn instant_of(at_ms: i64) -> Instant {
    let wait = at_ms.saturating_sub(now_ms()).max(0);
    Instant::now() + Duration::from_millis(wait as u64)
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let next_timer = self.timers.keys().next().map(|(at, _)| *at);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => return,
                },
                () = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {}
            }
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
            }
            self.fire_timers();
            self.pump();
            self.publish_gauges();
            if self.in_flight == 0 {
                let drained = self.draining.is_some();
                for done in self
                    .draining
                    .as_mut()
                    .map(std::mem::take)
                    .unwrap_or_default()
                {
                    let _ = done.send(());
                }
                // A drain while the process stops is the last: what is queued stays
                // pending in the store (or unread on the topic) for the next start.
                if drained && crate::tasks::is_stopping() {
                    return;
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Due(jobs) => {
                for job in jobs {
                    self.enqueue(job);
                }
            }
            Msg::At(jobs) => {
                for (job, at_ms) in jobs {
                    self.schedule(job, at_ms);
                }
            }
            Msg::Drain(done) => self.draining.get_or_insert_with(Vec::new).push(done),
            Msg::Finished { endpoint, next } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                if let Some(lane) = self.lanes.get_mut(&endpoint) {
                    lane.in_flight = lane.in_flight.saturating_sub(1);
                    let org = lane.org;
                    if let Some(n) = self.org_in_flight.get_mut(&org) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.org_in_flight.remove(&org);
                        }
                    }
                    for id in self.org_waiting.remove(&org).unwrap_or_default() {
                        self.list(id);
                    }
                }
                self.touched.push(endpoint);
                if let Some((job, at_ms)) = next {
                    self.schedule(job, at_ms);
                }
                self.list(endpoint);
                self.drop_if_idle(endpoint);
            }
        }
    }

    fn schedule(&mut self, job: Job, at_ms: i64) {
        if at_ms <= now_ms() {
            self.enqueue(job);
        } else {
            self.timer_seq += 1;
            self.timers
                .insert((instant_of(at_ms), self.timer_seq), Timer::Job(job));
        }
    }

    fn enqueue(&mut self, job: Job) {
        let id = job.endpoint_id;
        let org = job.org;
        self.lanes
            .entry(id)
            .or_insert_with(|| Lane {
                org,
                ..Lane::default()
            })
            .queue
            .push_back(job);
        self.touched.push(id);
        self.list(id);
    }

    /// Puts lane `id` in the turn order when it has work and is not waiting.
    fn list(&mut self, id: i64) {
        if let Some(lane) = self.lanes.get_mut(&id) {
            if !lane.listed && !lane.waking && !lane.queue.is_empty() {
                lane.listed = true;
                self.runnable.push_back(id);
            }
        }
    }

    fn drop_if_idle(&mut self, id: i64) {
        if let Some(lane) = self.lanes.get(&id) {
            if lane.queue.is_empty() && lane.in_flight == 0 && !lane.waking && !lane.listed {
                self.lanes.remove(&id);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Job(job) => self.enqueue(job),
                Timer::Wake(id) => {
                    if let Some(lane) = self.lanes.get_mut(&id) {
                        lane.waking = false;
                    }
                    self.list(id);
                }
            }
        }
    }

    /// Starts attempts, one per lane per turn, until no lane can start one or the
    /// global cap is reached.
    fn pump(&mut self) {
        if self.draining.is_some() {
            return;
        }
        let cap = self.shared.config.max_in_flight.max(1);
        while self.in_flight < cap {
            let Some(id) = self.runnable.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&id) else {
                continue;
            };
            lane.listed = false;
            let front = lane.queue.front();
            let org = front.map(|j| j.org);
            let endpoint = front
                .and_then(|j| j.snapshot.clone())
                .or_else(|| self.shared.endpoints.by_id(id));
            // An endpoint of another organization is never sent this org's deliveries
            // (an id from another store must not name someone else's endpoint).
            let foreign = endpoint.as_ref().is_some_and(|e| Some(e.org) != org);
            let usable = endpoint.as_ref().filter(|e| e.enabled && !foreign);
            let Some(ep) = usable.cloned() else {
                // Deleted or disabled: what waits for it fails, saying why.
                let jobs: Vec<Job> = lane.queue.drain(..).collect();
                let why = match &endpoint {
                    None => format!("endpoint {id} was deleted"),
                    Some(_) if foreign => {
                        format!("endpoint {id} is not this delivery's organization's")
                    }
                    Some(e) => format!(
                        "endpoint {id} is disabled{}",
                        e.disabled_reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                };
                crate::tasks::spawn(abandon(self.shared.clone(), jobs, why));
                self.touched.push(id);
                self.drop_if_idle(id);
                continue;
            };
            let max = ep
                .max_in_flight
                .map_or(self.shared.config.max_in_flight_per_endpoint, |m| {
                    m as usize
                })
                .max(1);
            if lane.in_flight as usize >= max {
                // Its next Finished lists it again.
                continue;
            }
            let org_cap = self.shared.config.max_in_flight_per_org.max(1);
            if self
                .org_in_flight
                .get(&ep.org)
                .is_some_and(|n| *n >= org_cap)
            {
                // Its org has its share in flight: listed again when one finishes.
                self.org_waiting.entry(ep.org).or_default().push(id);
                continue;
            }
            if let Some(rate) = ep.rate_limit.filter(|r| *r > 0.0) {
                let now = Instant::now();
                let bucket = self
                    .buckets
                    .entry(id)
                    .or_insert_with(|| Bucket::full(rate, now));
                if let Err(wait) = bucket.take(rate, now) {
                    lane.waking = true;
                    self.timer_seq += 1;
                    self.timers
                        .insert((now + wait, self.timer_seq), Timer::Wake(id));
                    continue;
                }
            } else {
                self.buckets.remove(&id);
            }
            let Some(job) = lane.queue.pop_front() else {
                continue;
            };
            lane.in_flight += 1;
            self.in_flight += 1;
            *self.org_in_flight.entry(ep.org).or_default() += 1;
            if !lane.queue.is_empty() {
                lane.listed = true;
                self.runnable.push_back(id);
            }
            self.touched.push(id);
            crate::tasks::spawn(attempt(self.shared.clone(), ep, job, self.tx.clone()));
        }
    }

    fn publish_gauges(&mut self) {
        self.touched.sort_unstable();
        self.touched.dedup();
        for id in self.touched.drain(..) {
            // A lane gone idle (dropped) publishes zeros under the org its series had.
            let (org, depth, in_flight) = match self.lanes.get(&id) {
                Some(l) => (l.org, l.queue.len() as u64, u64::from(l.in_flight)),
                None => (self.shared.endpoints.by_id(id).map_or(-1, |e| e.org), 0, 0),
            };
            crate::metrics::delivery_queue_depth(org, id, depth);
            crate::metrics::delivery_in_flight(org, id, in_flight);
        }
    }
}

/// The reason a 410 gives an endpoint.
fn gone_reason() -> String {
    "the endpoint answered 410 Gone, asking not to be called again; PATCH {\"enabled\": true} to re-enable it".into()
}

fn outcome_label(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Status(s) if s < 200 => "1xx",
        AttemptOutcome::Status(s) if s < 300 => "2xx",
        AttemptOutcome::Status(s) if s < 400 => "3xx",
        AttemptOutcome::Status(s) if s < 500 => "4xx",
        AttemptOutcome::Status(_) => "5xx",
        AttemptOutcome::Timeout => "timeout",
        AttemptOutcome::ConnectError => "connect_error",
        AttemptOutcome::Refused => "refused",
    }
}

/// One attempt of `job` to `ep`, its outcome made durable, then reported.
async fn attempt(
    shared: Arc<Shared>,
    ep: Arc<Endpoint>,
    mut job: Job,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let started_ms = now_ms();
    let timestamp = started_ms.div_euclid(1000);
    let body = job.body();
    let signature = signature_header(ep.signing_secrets(started_ms), &job.id, timestamp, &body);
    let timeout = ep.timeout.unwrap_or(shared.config.timeout);
    let mut result = shared
        .client
        .send(AttemptRequest {
            url: &ep.url,
            webhook_id: &job.id,
            timestamp,
            signature: &signature,
            body,
            timeout,
        })
        .await;
    if !shared.config.log_response_bodies {
        result.response_body = None;
    }
    let ended_ms = now_ms();
    let number = job.attempts + 1;
    let outcome = result.outcome;
    crate::metrics::delivery_attempt(outcome_label(outcome));
    crate::metrics::delivery_latency(result.duration);
    let delay = if job.single {
        None
    } else {
        shared
            .retry
            .retry_delay(outcome, number, result.retry_after)
    };
    let (state, next_at_ms) = if outcome.succeeded() {
        (DeliveryState::Succeeded, None)
    } else if let Some(gap) = delay {
        // The receiver's own Retry-After is kept as it asked; our gaps are spread.
        let asked =
            result.retry_after.is_some() && matches!(outcome, AttemptOutcome::Status(408 | 429));
        let gap = if asked {
            gap
        } else {
            shared.retry.jittered(gap, rand::random::<f64>())
        };
        (
            DeliveryState::Pending,
            Some(ended_ms.saturating_add(gap.as_millis() as i64)),
        )
    } else {
        (DeliveryState::Failed, None)
    };
    // A snapshot endpoint (another process's, from a Kafka record) has no row here.
    let local = job.snapshot.is_none();
    let effect = if !local {
        None
    } else if outcome.succeeded() {
        // Healthy and known to be: nothing to write.
        ep.failing_since_ms.map(|_| EndpointEffect::Succeeded)
    } else if outcome.disables_endpoint() {
        Some(EndpointEffect::Disable {
            reason: gone_reason(),
            at_ms: ended_ms,
        })
    } else {
        Some(EndpointEffect::Failed { at_ms: ended_ms })
    };
    let status = match outcome {
        AttemptOutcome::Status(s) => Some(s),
        _ => None,
    };
    let mirrored = shared
        .attempt_log
        .get()
        .map(|_| crate::clickhouse::attempts::AttemptLogRow {
            organization_id: job.org,
            delivery_id: job.id.to_string(),
            event_id: job.event_id.to_string(),
            endpoint_id: ep.id,
            url: ep.url.clone(),
            event_type: job.event_type.to_string(),
            attempt: number,
            state: if outcome.succeeded() {
                "succeeded"
            } else {
                "failed"
            },
            at_ms: started_ms,
            response_status: status.map_or(-1, i32::from),
            response_body: result
                .response_body
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            duration_ms: result.duration.as_millis() as i64,
            error: result.error.clone().unwrap_or_default(),
            host: crate::clickhouse::attempts::host_name().to_owned(),
        });
    // Embedded, the effect is written with the outcome. Shared, after it, in a
    // transaction of its own: an endpoint's row is every outcome's, and a group
    // transaction holding its lock until commit made the other writers (of every
    // process) wait for it, or deadlock.
    let (effect, later_effect) = if shared.endpoints.effect_in_outcome() {
        (effect, None)
    } else {
        (None, effect)
    };
    let record = Outcome {
        seq: job.seq,
        endpoint_id: ep.id,
        attempt: Some(RecordedAttempt {
            number,
            url: ep.url.clone(),
            response_status: status,
            response_body: result.response_body,
            duration_ms: result.duration.as_millis() as i64,
            error: result.error.clone(),
        }),
        state,
        attempts: number,
        last_status: status,
        last_error: result.error,
        next_attempt_at_ms: next_at_ms,
        at_ms: started_ms,
        effect,
    };
    let disable_after = shared.config.disable_after;
    let written = shared.outcomes.record(record).await;
    if let (Ok(_), Some(log), Some(row)) = (&written, shared.attempt_log.get(), mirrored) {
        log.record(row).await;
    }
    let next = match written {
        Ok(changed) => {
            shared
                .endpoints
                .after_outcome(ep.id, later_effect, changed, disable_after)
                .await;
            match state {
                DeliveryState::Pending => {
                    let at = next_at_ms.unwrap_or(ended_ms);
                    match shared.kafka.get() {
                        // The next attempt as a record on the retry topic; this record
                        // is done once the brokers have that one.
                        Some(link) if job.ack.is_some() => {
                            let record =
                                super::kafka::KafkaLink::record(&job, &ep, number, at, now_ms());
                            match link.send_all(DeliveryTopic::Retry, &[record]).await {
                                Ok(()) => {
                                    if let Some(ack) = &job.ack {
                                        ack.done();
                                    }
                                    None
                                }
                                Err(e) => {
                                    tracing::warn!(delivery = %job.id, error = %e, "could not put a retry on the retry topic; this process holds it instead");
                                    job.attempts = number;
                                    Some((job, at))
                                }
                            }
                        }
                        _ => {
                            job.attempts = number;
                            Some((job, at))
                        }
                    }
                }
                DeliveryState::Succeeded | DeliveryState::Failed => {
                    crate::metrics::delivery_finished(state.as_str());
                    if state == DeliveryState::Succeeded {
                        let age = ended_ms.saturating_sub(job.created_at_ms).max(0);
                        crate::metrics::delivery_completed(Duration::from_millis(age as u64));
                    }
                    if let Some(ack) = &job.ack {
                        ack.done();
                    }
                    None
                }
            }
        }
        Err(e) => {
            // Not recorded: the store still says pending with the old due time. Try
            // the same attempt again shortly (the receiver may see it twice).
            tracing::error!(delivery = %job.id, error = %e, "recording a delivery attempt failed; it will be attempted again");
            Some((job, ended_ms + 1000))
        }
    };
    let _ = tx.send(Msg::Finished {
        endpoint: ep.id,
        next,
    });
}

/// Fails `jobs` (no attempt made) with `why`.
async fn abandon(shared: Arc<Shared>, jobs: Vec<Job>, why: String) {
    if jobs.is_empty() {
        return;
    }
    let acks: Vec<super::kafka::Ack> = jobs.iter().filter_map(|j| j.ack.clone()).collect();
    let at_ms = now_ms();
    let n = jobs.len();
    let disable_after = shared.config.disable_after;
    let written = shared
        .db
        .write(move |conn| {
            for job in &jobs {
                record_outcome(
                    conn,
                    &Outcome {
                        seq: job.seq,
                        endpoint_id: job.endpoint_id,
                        attempt: None,
                        state: DeliveryState::Failed,
                        attempts: job.attempts,
                        last_status: None,
                        last_error: Some(why.clone()),
                        next_attempt_at_ms: None,
                        at_ms,
                        effect: None,
                    },
                    disable_after,
                )?;
            }
            Ok(())
        })
        .await;
    match written {
        Ok(()) => {
            for _ in 0..n {
                crate::metrics::delivery_finished("failed");
            }
            for ack in acks {
                ack.done();
            }
        }
        // Still pending in the store: the next start fails them.
        Err(e) => tracing::error!(error = %e, "failing the deliveries of a removed endpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::Bucket;
    use std::time::Duration;
    use tokio::time::{advance, Instant};

    /// A take's answer in whole milliseconds (the wait is computed in floating point).
    fn take_ms(bucket: &mut Bucket, rate: f64) -> Result<(), u64> {
        bucket
            .take(rate, Instant::now())
            .map_err(|d| (d.as_secs_f64() * 1000.0).round() as u64)
    }

    /// The rate limit's clock is tokio's, so paused time drives it exactly.
    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_allows_a_seconds_burst_then_one_token_per_gap() {
        let rate = 4.0;
        let mut bucket = Bucket::full(rate, Instant::now());
        for _ in 0..4 {
            assert_eq!(take_ms(&mut bucket, rate), Ok(()));
        }
        assert_eq!(take_ms(&mut bucket, rate), Err(250));
        advance(Duration::from_millis(100)).await;
        assert_eq!(take_ms(&mut bucket, rate), Err(150));
        advance(Duration::from_millis(150)).await;
        assert_eq!(take_ms(&mut bucket, rate), Ok(()));
        // An idle minute refills one second's worth, not a minute's.
        advance(Duration::from_secs(60)).await;
        for _ in 0..4 {
            assert_eq!(take_ms(&mut bucket, rate), Ok(()));
        }
        assert!(bucket.take(rate, Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_below_one_per_second_still_allows_one_delivery() {
        let rate = 0.5;
        let mut bucket = Bucket::full(rate, Instant::now());
        assert_eq!(take_ms(&mut bucket, rate), Ok(()));
        assert_eq!(take_ms(&mut bucket, rate), Err(2000));
        advance(Duration::from_secs(2)).await;
        assert_eq!(take_ms(&mut bucket, rate), Ok(()));
    }
}

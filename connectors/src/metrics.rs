//! Prometheus metrics: the process-wide recorder, the names and labels of every
//! leadstream metric, and the text served at `GET /metrics`.
//!
//! Recording goes through the [`metrics`] facade; until [`install`] has run, every
//! recording function is a no-op. Callers count in locals and record once per batch
//! or per response, never per event (a facade call hashes its key).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `leadstream_lead_events_total` | counter | `source` (`http`, `kafka`), `outcome` (`accepted`, `duplicate`, `rejected`) |
//! | `leadstream_http_responses_total` | counter | `class` (`1xx` … `5xx`) |
//! | `leadstream_deliveries_published_total` | counter | |
//! | `leadstream_deliveries_finished_total` | counter | `state` |
//! | `leadstream_delivery_attempts_total` | counter | `outcome` |
//! | `leadstream_lead_batch_duration_seconds` | histogram | `source` |
//! | `leadstream_delivery_attempt_duration_seconds` | histogram | |
//! | `leadstream_delivery_completion_seconds` | histogram | |
//! | `leadstream_delivery_queue_depth` | gauge | `org`, `endpoint` (with `http.metrics_token` only) |
//! | `leadstream_delivery_in_flight` | gauge | `org`, `endpoint` (with `http.metrics_token` only) |
//! | `leadstream_database_connections` | gauge | `state` (`in_use`, `idle`, `waiting`: requests waiting for one) |
//! | `leadstream_database_listener_connected` | gauge | `channel` |
//! | `leadstream_database_notifications_total` | counter | `channel` |
//! | `leadstream_credential_cache_lookups_total` | counter | `outcome` (`hit`, `miss`) |
//! | `leadstream_lead_parts_total` | counter | `route` (`local`, `forwarded`, `received`: handed to this process by another) |
//! | `leadstream_lead_parts_moving_total` | counter | `outcome` (`refused`: answered 503, `waited`: stored after waiting for a new owner) |
//! | `leadstream_lead_part_forward_duration_seconds` | histogram | |

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// The content type of [`render`]'s text: Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const LEAD_EVENTS: &str = "leadstream_lead_events_total";
const HTTP_RESPONSES: &str = "leadstream_http_responses_total";
const DELIVERIES_PUBLISHED: &str = "leadstream_deliveries_published_total";
const DELIVERIES_FINISHED: &str = "leadstream_deliveries_finished_total";
const DELIVERY_ATTEMPTS: &str = "leadstream_delivery_attempts_total";
const DELIVERY_LATENCY: &str = "leadstream_delivery_attempt_duration_seconds";
const DELIVERY_COMPLETION: &str = "leadstream_delivery_completion_seconds";
const LEAD_BATCH_LATENCY: &str = "leadstream_lead_batch_duration_seconds";
const DELIVERY_QUEUE_DEPTH: &str = "leadstream_delivery_queue_depth";
const DELIVERY_IN_FLIGHT: &str = "leadstream_delivery_in_flight";
const CAMPAIGN_LEADS_EMITTED: &str = "leadstream_campaign_leads_emitted_total";
const ELIGIBILITY_LATENCY: &str = "leadstream_eligibility_duration_seconds";
const OUTBOX_RETRIES: &str = "leadstream_delivery_outbox_retries_total";
const DOMAIN_EVENTS: &str = "leadstream_domain_events_total";
const TIMERS_FIRED: &str = "leadstream_conversation_inactive_fired_total";
const TIMER_LAG: &str = "leadstream_conversation_timer_lag_seconds";
const DB_CONNECTIONS: &str = "leadstream_database_connections";
const DB_LISTENER: &str = "leadstream_database_listener_connected";
const DB_NOTIFICATIONS: &str = "leadstream_database_notifications_total";
const CREDENTIAL_CACHE: &str = "leadstream_credential_cache_lookups_total";
const SCOPE_REFUSALS: &str = "leadstream_api_key_scope_refusals_total";
const SHARED_CLAIMS: &str = "leadstream_shared_work_claimed_total";
const LEAD_PARTS: &str = "leadstream_lead_parts_total";
const LEAD_PARTS_MOVING: &str = "leadstream_lead_parts_moving_total";
const LEAD_PART_FORWARD: &str = "leadstream_lead_part_forward_duration_seconds";

/// Buckets of [`DELIVERY_LATENCY`], in seconds: from a receiver on the same network
/// up to the longest per-attempt timeout an endpoint may set (30 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Publish to success spans retries: minutes to hours.
const COMPLETION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// Histogram samples wait in the recorder until a scrape or an upkeep folds them into
/// buckets; without a scrape they would pile up, so upkeep runs this often.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Where lead events came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /api/v1/webhooks/lead-events`.
    Http,
    /// The raw Kafka topic.
    Kafka,
}

impl Source {
    /// The `source` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Kafka => "kafka",
        }
    }
}

/// Installs the Prometheus recorder as the process's `metrics` recorder, once, and
/// returns its handle; later calls (from any thread, e.g. many tests in one process)
/// return the same handle.
///
/// Also describes every metric, sets the lead-event counters to 0 (the other series
/// appear when first recorded) and starts a background thread that keeps the
/// histograms' memory bounded between scrapes. If another recorder was installed
/// first, nothing recorded reaches this one: a warning is logged and [`render`]
/// shows only the descriptions.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.to_owned()), LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .set_buckets_for_metric(Matcher::Full(LEAD_BATCH_LATENCY.to_owned()), LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .set_buckets_for_metric(Matcher::Full(ELIGIBILITY_LATENCY.to_owned()), LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .set_buckets_for_metric(Matcher::Full(LEAD_PART_FORWARD.to_owned()), LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .set_buckets_for_metric(
                Matcher::Full(DELIVERY_COMPLETION.to_owned()),
                COMPLETION_BUCKETS,
            )
            .expect("the completion buckets are not empty")
            .set_buckets_for_metric(Matcher::Full(TIMER_LAG.to_owned()), COMPLETION_BUCKETS)
            .expect("the completion buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "another metrics recorder is installed; GET /metrics will show no values");
        }
        describe();
        // Series appear only once recorded; these start at 0 so a scrape shows them
        // (and rate() sees their first increase) before the first batch.
        for source in [Source::Http, Source::Kafka] {
            lead_batch(source, 0, 0, 0, None);
        }
        campaign_leads_emitted(0);
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the metrics upkeep thread; histograms are folded at each scrape only");
        }
        handle
    })
}

fn describe() {
    describe_counter!(
        LEAD_EVENTS,
        "Lead events in acknowledged HTTP batches and processed Kafka batches, by source and outcome: accepted (stored), duplicate (already stored), rejected (invalid, or refused by the store)"
    );
    describe_counter!(
        HTTP_RESPONSES,
        "HTTP responses sent by the router, by status class"
    );
    describe_counter!(
        DELIVERIES_PUBLISHED,
        "Webhook deliveries published to the delivery topic"
    );
    describe_counter!(
        DELIVERIES_FINISHED,
        "Webhook deliveries that reached a final state, by state"
    );
    describe_counter!(
        DELIVERY_ATTEMPTS,
        "Webhook delivery attempts, by outcome (status class, timeout, connect_error, refused)"
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Duration of one webhook delivery attempt, from sending the request to its outcome"
    );
    describe_histogram!(
        DELIVERY_COMPLETION,
        Unit::Seconds,
        "Time from publishing a webhook delivery to its successful attempt, retries included"
    );
    describe_histogram!(
        LEAD_BATCH_LATENCY,
        Unit::Seconds,
        "Time to process one lead-event batch, by source: an HTTP request from its start to the 200, a Kafka batch from its first record to the stored outcome"
    );
    describe_gauge!(
        DELIVERY_QUEUE_DEPTH,
        "Deliveries waiting for an attempt, by endpoint id"
    );
    describe_gauge!(
        DELIVERY_IN_FLIGHT,
        "Delivery attempts in flight, by endpoint id"
    );
    describe_counter!(
        CAMPAIGN_LEADS_EMITTED,
        "Campaign-send leads materialized into a durable campaign_send delivery"
    );
    describe_counter!(
        DOMAIN_EVENTS,
        "Domain events by source (event: POST /api/v1/events, whatsapp: a user message or status from a webhook, kafka: a domain-events record) and outcome (taken, repeated: its id was taken before, refused: dead-lettered)"
    );
    describe_counter!(
        TIMERS_FIRED,
        "conversation_inactive timers fired (each once per last user message)"
    );
    describe_histogram!(
        TIMER_LAG,
        "How late a conversation_inactive timer fired after its due time (a process down at the time makes it late)"
    );
    describe_counter!(
        OUTBOX_RETRIES,
        "Kafka mode: times the brokers refused committed deliveries and the relay waited to try again"
    );
    describe_gauge!(
        DB_CONNECTIONS,
        "Shared database (database.url): pooled connections in use and idle, and requests waiting for one (at most database.pool_size connections)"
    );
    describe_gauge!(
        DB_LISTENER,
        "Shared database: 1 while this process listens for another's changes on the channel (credentials, endpoints); 0 while it reconnects, when caches are bypassed or kept as they were"
    );
    describe_counter!(
        DB_NOTIFICATIONS,
        "Shared database: change notifications heard from other processes, by channel"
    );
    describe_counter!(
        SHARED_CLAIMS,
        "Shared database: work this process claimed because no live process held it (a killed process's, or left when every process stopped), by kind"
    );
    describe_counter!(
        SCOPE_REFUSALS,
        "Requests answered 403 because the API key's scope does not allow the call, by the key's scope"
    );
    describe_counter!(
        CREDENTIAL_CACHE,
        "Shared database: credential checks answered from this process's cache (hit) or the database (miss)"
    );
    describe_counter!(
        LEAD_PARTS,
        "Lead-event batch parts by route: stored by this process (local), handed to the owner of their raw partition (forwarded), or handed to this process by another (received)"
    );
    describe_counter!(
        LEAD_PARTS_MOVING,
        "Lead-event batch parts whose raw partition had no owner (a rebalance): refused with 503, or stored after waiting for the new owner"
    );
    describe_histogram!(
        LEAD_PART_FORWARD,
        Unit::Seconds,
        "Time to hand one part of a lead-event batch to the owner of its raw partition and get its counts"
    );
    describe_histogram!(
        ELIGIBILITY_LATENCY,
        Unit::Seconds,
        "Time to answer which leads of a send's audience are eligible (reading the audience, opt-outs and filters, then the event filter), by engine: index or clickhouse"
    );
}

/// The current values in the Prometheus text format ([`CONTENT_TYPE`]). Installs the
/// recorder first if nothing has.
pub fn render() -> String {
    install().render()
}

/// Series that describe one org's endpoints: served only to a scrape that presents
/// `http.metrics_token` ([`render_aggregate`] leaves them out).
const PER_ENDPOINT: [&str; 2] = [DELIVERY_QUEUE_DEPTH, DELIVERY_IN_FLIGHT];

/// [`render`] without the per-endpoint series: what an unauthenticated `/metrics`
/// answers, so no org's queue can be read by anyone who can reach the port.
pub fn render_aggregate() -> String {
    let all = render();
    let mut out = String::with_capacity(all.len());
    for line in all.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        let name = name.split([' ', '{']).next().unwrap_or("");
        if !PER_ENDPOINT.contains(&name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The shared database's pool: connections in use and idle, requests waiting.
pub fn database_pool(in_use: usize, idle: usize, waiting: usize) {
    gauge!(DB_CONNECTIONS, "state" => "in_use").set(in_use as f64);
    gauge!(DB_CONNECTIONS, "state" => "idle").set(idle as f64);
    gauge!(DB_CONNECTIONS, "state" => "waiting").set(waiting as f64);
}

/// Whether this process listens on `channel` now.
pub fn database_listener(channel: &'static str, connected: bool) {
    gauge!(DB_LISTENER, "channel" => channel).set(if connected { 1.0 } else { 0.0 });
}

/// A change notification heard on `channel`.
pub fn database_notification(channel: &'static str) {
    counter!(DB_NOTIFICATIONS, "channel" => channel).increment(1);
}

/// `n` pieces of shared work of `kind` (`delivery`, `outbox`) claimed by this process
/// after their holder's lease ran out.
pub fn shared_work_claimed(kind: &'static str, n: u64) {
    counter!(SHARED_CLAIMS, "kind" => kind).increment(n);
}

/// A lead-event batch part stored here (`local`), handed to its owner
/// (`forwarded`), or handed here by another process (`received`).
pub fn lead_part(route: &'static str) {
    counter!(LEAD_PARTS, "route" => route).increment(1);
}

/// A part whose raw partition had no owner: `refused` (the call answered 503) or
/// `waited` (stored once the partition had an owner again).
pub fn lead_part_moving(outcome: &'static str) {
    counter!(LEAD_PARTS_MOVING, "outcome" => outcome).increment(1);
}

/// How long handing one part to its owner took.
pub fn lead_part_forwarded(took: Duration) {
    histogram!(LEAD_PART_FORWARD).record(took.as_secs_f64());
}

/// A request refused 403 for its key's `scope` (`read` or `ingest`).
pub fn scope_refusal(scope: &'static str) {
    counter!(SCOPE_REFUSALS, "scope" => scope).increment(1);
}

/// A credential check answered from the cache (`hit`) or the database.
pub fn credential_cache(hit: bool) {
    counter!(CREDENTIAL_CACHE, "outcome" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Records the outcome of one batch of lead events: `accepted` were stored,
/// `duplicates` were already stored, `rejected` were refused row by row; `took` is
/// how long the batch took (`None`: not timed).
pub fn lead_batch(
    source: Source,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    took: Option<Duration>,
) {
    let source = source.as_str();
    if let Some(d) = took {
        histogram!(LEAD_BATCH_LATENCY, "source" => source).record(d.as_secs_f64());
    }
    for (outcome, n) in [
        ("accepted", accepted),
        ("duplicate", duplicates),
        ("rejected", rejected),
    ] {
        counter!(LEAD_EVENTS, "source" => source, "outcome" => outcome).increment(n);
    }
}

/// Records one HTTP response by its status class (`2xx`, `4xx`, ...).
pub fn http_response(status: u16) {
    counter!(HTTP_RESPONSES, "class" => status_class(status)).increment(1);
}

/// `1xx` to `5xx`; `other` for codes outside 100..=599.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

/// Records a delivery reaching its final `state` (e.g. `succeeded`, `failed`).
pub fn delivery_finished(state: &'static str) {
    counter!(DELIVERIES_FINISHED, "state" => state).increment(1);
}

/// Records one delivery attempt's `outcome` (`2xx`, `4xx`, `5xx`, `timeout`,
/// `connect_error`, `refused`).
pub fn delivery_attempt(outcome: &'static str) {
    counter!(DELIVERY_ATTEMPTS, "outcome" => outcome).increment(1);
}

/// Records how long one delivery attempt took.
pub fn delivery_latency(d: Duration) {
    histogram!(DELIVERY_LATENCY).record(d.as_secs_f64());
}

/// Records how long a delivery took from publish to its successful attempt.
pub fn delivery_completed(d: Duration) {
    histogram!(DELIVERY_COMPLETION).record(d.as_secs_f64());
}

/// Sets how many deliveries to `org`'s endpoint `endpoint_id` wait for an attempt.
pub fn delivery_queue_depth(org: i64, endpoint_id: i64, depth: u64) {
    gauge!(DELIVERY_QUEUE_DEPTH, "org" => org.to_string(), "endpoint" => endpoint_id.to_string())
        .set(depth as f64);
}

/// Sets how many attempts to `org`'s endpoint `endpoint_id` are in flight.
pub fn delivery_in_flight(org: i64, endpoint_id: i64, n: u64) {
    gauge!(DELIVERY_IN_FLIGHT, "org" => org.to_string(), "endpoint" => endpoint_id.to_string())
        .set(n as f64);
}

/// Records `n` campaign-send leads emitted (their deliveries durable).
pub fn campaign_leads_emitted(n: u64) {
    counter!(CAMPAIGN_LEADS_EMITTED).increment(n);
}

/// Records that the outbox relay could not produce committed deliveries and waits.
pub fn outbox_retry() {
    counter!(OUTBOX_RETRIES).increment(1);
}

/// Records `n` domain events from `source` (`event`, `whatsapp`, `kafka`) with
/// `outcome` (`taken`, `repeated`, `refused`).
pub fn domain_events(source: &'static str, outcome: &'static str, n: u64) {
    counter!(DOMAIN_EVENTS, "source" => source, "outcome" => outcome).increment(n);
}

/// Records a conversation_inactive timer fired `late` after its due time.
pub fn timer_fired(late: Duration) {
    counter!(TIMERS_FIRED).increment(1);
    histogram!(TIMER_LAG).record(late.as_secs_f64());
}

/// Records one eligibility evaluation's duration, by the engine that answered.
pub fn eligibility(engine: &'static str, d: Duration) {
    histogram!(ELIGIBILITY_LATENCY, "engine" => engine).record(d.as_secs_f64());
}

/// Records `n` deliveries published to the delivery topic.
pub fn deliveries_published(n: u64) {
    counter!(DELIVERIES_PUBLISHED).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name{labels}` in `text`, where `labels` is the exact
    /// label set as rendered.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn install_is_idempotent() {
        assert!(std::ptr::eq(install(), install()));
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(308), "3xx");
        assert_eq!(status_class(99), "other");
        assert_eq!(status_class(600), "other");
    }

    // One test records everything: counters are process-wide, and other tests in this
    // binary may record too, so only increases of at least what was recorded are
    // asserted.
    #[test]
    fn records_and_renders_every_metric() {
        install();
        let before = render();
        let accepted = r#"leadstream_lead_events_total{source="kafka",outcome="accepted"}"#;
        let duplicate = r#"leadstream_lead_events_total{source="kafka",outcome="duplicate"}"#;
        let rejected = r#"leadstream_lead_events_total{source="kafka",outcome="rejected"}"#;
        let responses = r#"leadstream_http_responses_total{class="4xx"}"#;
        let value = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);

        lead_batch(Source::Kafka, 5, 2, 1, None);
        http_response(404);
        delivery_finished("succeeded");
        delivery_attempt("timeout");
        delivery_latency(Duration::from_millis(30));
        delivery_queue_depth(5, -7, 12);
        delivery_in_flight(5, -7, 3);
        deliveries_published(4);

        let text = render();
        assert!(
            value(&text, accepted) >= value(&before, accepted) + 5.0,
            "{text}"
        );
        assert!(
            value(&text, duplicate) >= value(&before, duplicate) + 2.0,
            "{text}"
        );
        assert!(
            value(&text, rejected) >= value(&before, rejected) + 1.0,
            "{text}"
        );
        assert!(
            value(&text, responses) >= value(&before, responses) + 1.0,
            "{text}"
        );
        assert!(
            sample(
                &text,
                r#"leadstream_deliveries_finished_total{state="succeeded"}"#
            )
            .is_some_and(|v| v >= 1.0),
            "{text}"
        );
        assert!(
            sample(
                &text,
                r#"leadstream_delivery_attempts_total{outcome="timeout"}"#
            )
            .is_some_and(|v| v >= 1.0),
            "{text}"
        );
        assert!(
            sample(&text, "leadstream_deliveries_published_total").is_some_and(|v| v >= 4.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"leadstream_delivery_queue_depth{org="5",endpoint="-7"}"#
            ),
            Some(12.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"leadstream_delivery_in_flight{org="5",endpoint="-7"}"#
            ),
            Some(3.0),
            "{text}"
        );
        // The configured buckets, not the exporter's default summary.
        assert!(
            sample(
                &text,
                r#"leadstream_delivery_attempt_duration_seconds_bucket{le="0.05"}"#
            )
            .is_some_and(|v| v >= 1.0),
            "{text}"
        );
        assert!(
            text.contains("# TYPE leadstream_delivery_attempt_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# HELP leadstream_lead_events_total Lead events"),
            "{text}"
        );
    }
}

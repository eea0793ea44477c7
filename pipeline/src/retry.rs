//! Retry policy: exponential backoff with jitter, and a server's `Retry-After`.
//!
//! One policy for everything that waits and tries again: the event store while it is
//! unavailable (connecting, warm-up, Kafka batches) and, next, webhook deliveries.
//! Pure: [`Backoff::delay`] is a function of the attempt, the previous delay and a
//! uniform draw the caller passes in, so it is tested without a clock or a random
//! source; [`Schedule`] adds the state (attempt count, previous delay, a small PRNG).
//!
//! - [`Jitter::None`]: `min(max, initial · multiplierⁿ)` for retry `n` (0-based).
//! - [`Jitter::Full`]: a uniform draw from `[0, that]` ("full jitter"): retries of many
//!   clients spread over the whole window, none synchronized.
//! - [`Jitter::Decorrelated`]: a uniform draw from `[initial, previous · multiplier]`,
//!   capped at `max` ("decorrelated jitter"): grows like the exponential on average
//!   but each delay depends on the last one, not on the attempt number.

use std::time::{Duration, SystemTime};

/// How delays are randomized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The exponential delay exactly.
    None,
    /// Uniform in `[0, exponential delay]`.
    #[default]
    Full,
    /// Uniform in `[initial, previous delay · multiplier]`, capped at `max`.
    Decorrelated,
}

/// An exponential backoff policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter). At least 1 ms is used.
    pub initial: Duration,
    /// No delay is longer.
    pub max: Duration,
    /// Growth per retry; values below 1 are taken as 1.
    pub multiplier: f64,
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// 200 ms, doubling, capped at 10 s, full jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    fn bounds(&self) -> (f64, f64, f64) {
        let initial = self.initial.max(Duration::from_millis(1)).as_secs_f64();
        let max = self.max.as_secs_f64().max(initial);
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        (initial, max, multiplier)
    }

    /// The delay before retry `attempt` (0-based) without jitter:
    /// `min(max, initial · multiplierᵃᵗᵗᵉᵐᵖᵗ)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let (initial, max, multiplier) = self.bounds();
        let d = initial * multiplier.powi(attempt.min(i32::MAX as u32) as i32);
        Duration::from_secs_f64(if d.is_finite() { d.min(max) } else { max })
    }

    /// The delay before retry `attempt` (0-based). `previous` is the delay before the
    /// previous retry (only [`Jitter::Decorrelated`] uses it; `None` for the first),
    /// `unit` a uniform draw from `[0, 1)` (values outside are clamped).
    pub fn delay(&self, attempt: u32, previous: Option<Duration>, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let (initial, max, multiplier) = self.bounds();
        let secs = match self.jitter {
            Jitter::None => return self.ceiling(attempt),
            Jitter::Full => unit * self.ceiling(attempt).as_secs_f64(),
            Jitter::Decorrelated => {
                let prev = previous.map_or(initial, |p| p.as_secs_f64().clamp(initial, max));
                let hi = (prev * multiplier).min(max).max(initial);
                initial + unit * (hi - initial)
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, max))
    }

    /// A fresh [`Schedule`] for one sequence of retries, its jitter drawn from `seed`.
    pub fn schedule(&self, seed: u64) -> Schedule {
        Schedule {
            policy: *self,
            attempt: 0,
            previous: None,
            rng: seed,
        }
    }
}

/// The retries of one operation under a [`Backoff`]: counts attempts and remembers the
/// last delay. Cheap; make one per operation, [`reset`](Self::reset) it on success.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: Backoff,
    attempt: u32,
    previous: Option<Duration>,
    rng: u64,
}

impl Schedule {
    /// The delay before the next retry; counts it.
    pub fn next_delay(&mut self) -> Duration {
        let unit = self.draw();
        let d = self.policy.delay(self.attempt, self.previous, unit);
        self.attempt = self.attempt.saturating_add(1);
        self.previous = Some(d);
        d
    }

    /// Retries so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over, as after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = None;
    }

    /// A uniform draw from `[0, 1)` (splitmix64: jitter needs spread, not secrecy).
    fn draw(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A `Retry-After` header value (RFC 9110 §10.2.3) as a delay from `now`: either
/// delay-seconds (`"120"`) or an HTTP-date (`"Sun, 06 Nov 1994 08:49:37 GMT"`, the
/// IMF-fixdate form; a date in the past is no delay). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delay to wait when a server answered with `Retry-After`: the server's wish
/// when it is longer than ours, but never more than `limit`.
pub fn honour_retry_after(
    ours: Duration,
    retry_after: Option<Duration>,
    limit: Duration,
) -> Duration {
    match retry_after {
        Some(theirs) => ours.max(theirs.min(limit)),
        None => ours,
    }
}

/// What one webhook delivery attempt came to, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// No complete answer within the endpoint's timeout.
    Timeout,
    /// The connection could not be made or broke (DNS, refused, reset, TLS).
    ConnectError,
    /// The target's address is not allowed (private, loopback, …): never sent.
    Refused,
}

impl AttemptOutcome {
    /// A 2xx answer.
    pub fn succeeded(self) -> bool {
        matches!(self, AttemptOutcome::Status(s) if (200..300).contains(&s))
    }

    /// 410 Gone: the receiver asks never to be called again.
    pub fn disables_endpoint(self) -> bool {
        self == AttemptOutcome::Status(410)
    }
}

/// The retry policy of webhook deliveries (`delivery.retry_schedule`): the nominal gaps
/// between attempts, so `gaps.len() + 1` attempts in all.
///
/// - 2xx: success, no retry.
/// - 5xx, timeouts and connection errors: retried after the next gap of the schedule.
/// - 408 and 429: retried too; a `Retry-After` the receiver sent replaces the gap,
///   capped at [`DeliveryRetry::retry_after_cap`].
/// - Every other 4xx, 1xx and 3xx (redirects are not followed), and refused targets:
///   final.
///
/// [`DeliveryRetry::retry_delay`] is pure; [`DeliveryRetry::jittered`] spreads a gap
/// by at most ±[`DeliveryRetry::jitter`] of it with a draw the caller passes in.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRetry {
    /// Gap before attempt 2, 3, …
    pub gaps: Vec<Duration>,
    /// Largest share of a gap the jitter moves it by (0.2: ±20%).
    pub jitter: f64,
    /// Longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

impl Default for DeliveryRetry {
    /// `5s,30s,2m,10m` (5 attempts in all), ±20%, `Retry-After` up to 1 h.
    fn default() -> Self {
        Self {
            gaps: [5, 30, 120, 600].map(Duration::from_secs).to_vec(),
            jitter: 0.2,
            retry_after_cap: Duration::from_secs(3600),
        }
    }
}

impl DeliveryRetry {
    /// Attempts in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.gaps.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The nominal wait before the next attempt after `attempt` (1-based: the attempt
    /// that just ended) came to `outcome`, or `None` when there is no next attempt
    /// (success, a final answer, or the schedule is used up). `retry_after` is the
    /// receiver's `Retry-After`, already parsed; only 408 and 429 honour it.
    pub fn retry_delay(
        &self,
        outcome: AttemptOutcome,
        attempt: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let gap = self
            .gaps
            .get(usize::try_from(attempt.checked_sub(1)?).ok()?)
            .copied()?;
        match outcome {
            AttemptOutcome::Status(408 | 429) => {
                Some(retry_after.map_or(gap, |ra| ra.min(self.retry_after_cap)))
            }
            AttemptOutcome::Status(s) if (500..600).contains(&s) => Some(gap),
            AttemptOutcome::Timeout | AttemptOutcome::ConnectError => Some(gap),
            AttemptOutcome::Status(_) | AttemptOutcome::Refused => None,
        }
    }

    /// `gap` moved by `(2·unit − 1) · jitter · gap`, `unit` a uniform draw from
    /// `[0, 1)` (clamped): within ±`jitter` of the gap, never negative.
    pub fn jittered(&self, gap: Duration, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.5
        } else {
            unit.clamp(0.0, 1.0)
        };
        let share = self.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        Duration::from_secs_f64((gap.as_secs_f64() * (1.0 + share)).max(0.0))
    }

    /// Parses `5s,30s,2m,10m`: comma-separated durations with a unit (`ms`, `s`,
    /// `m`, `h`, `d`), each above zero. An empty string is one attempt and no retry.
    ///
    /// # Errors
    /// A message naming the part that is not a duration.
    pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        text.split(',')
            .map(|part| {
                let p = part.trim();
                let split = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
                let (n, unit) = p.split_at(split);
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("{p:?} is not a duration like 5s, 2m or 1h"))?;
                let secs = match unit {
                    "ms" => return Ok(Duration::from_millis(n)),
                    "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(format!("{p:?} has no unit: write 5s, 2m, 1h or 500ms")),
                };
                Ok(Duration::from_secs(n.saturating_mul(secs)))
            })
            .map(|d| match d {
                Ok(d) if d.is_zero() => Err("a retry gap must be above zero".to_owned()),
                other => other,
            })
            .collect()
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_imf_fixdate(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if !s.is_ascii()
        || b.len() != 29
        || &b[3..5] != b", "
        || &b[25..] != b" GMT"
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
    {
        return None;
    }
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == &b[8..11])? + 1;
    let text = format!("{}-{month:02}-{}T{}Z", &s[12..16], &s[5..7], &s[17..25]);
    let us = crate::time::parse_rfc3339_us(&text)?;
    let secs = u64::try_from(us / 1_000_000).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> DeliveryRetry {
        DeliveryRetry::default()
    }

    #[test]
    fn delivery_retry_table() {
        use AttemptOutcome::*;
        let s = |secs| Some(Duration::from_secs(secs));
        let ra = |secs| Some(Duration::from_secs(secs));
        // (outcome, attempt that just ended, Retry-After, expected nominal wait)
        let table: &[(AttemptOutcome, u32, Option<Duration>, Option<Duration>)] = &[
            (Status(200), 1, None, None),
            (Status(204), 3, None, None),
            (Status(500), 1, None, s(5)),
            (Status(502), 2, None, s(30)),
            (Status(503), 3, ra(1), s(120)), // 5xx ignores Retry-After
            (Status(599), 4, None, s(600)),
            (Status(500), 5, None, None), // the fifth attempt was the last
            (Timeout, 1, None, s(5)),
            (ConnectError, 4, None, s(600)),
            (ConnectError, 5, None, None),
            (Status(400), 1, None, None),
            (Status(401), 1, None, None),
            (Status(404), 1, None, None),
            (Status(410), 1, None, None),
            (Status(408), 1, None, s(5)),
            (Status(429), 1, None, s(5)),
            (Status(429), 2, ra(7), s(7)),
            (Status(429), 2, ra(0), s(0)),
            (Status(408), 1, ra(86_400), s(3600)), // capped at 1 h
            (Status(429), 5, ra(1), None),         // no attempts left
            (Status(301), 1, None, None),
            (Status(302), 1, None, None),
            (Status(304), 1, None, None),
            (Status(100), 1, None, None),
            (Refused, 1, None, None),
            (Status(500), 0, None, None), // no attempt ended: nothing to retry
        ];
        for &(outcome, attempt, retry_after, want) in table {
            assert_eq!(
                delivery().retry_delay(outcome, attempt, retry_after),
                want,
                "{outcome:?} after attempt {attempt}, Retry-After {retry_after:?}"
            );
        }
        assert_eq!(delivery().max_attempts(), 5);
        assert!(Status(299).succeeded() && !Status(300).succeeded() && !Timeout.succeeded());
        assert!(Status(410).disables_endpoint() && !Status(404).disables_endpoint());
    }

    #[test]
    fn schedule_length_sets_the_attempts() {
        let d = DeliveryRetry {
            gaps: DeliveryRetry::parse_schedule("1s, 2s").unwrap(),
            ..DeliveryRetry::default()
        };
        assert_eq!(d.max_attempts(), 3);
        assert_eq!(
            d.retry_delay(AttemptOutcome::Status(500), 2, None),
            Some(Duration::from_secs(2))
        );
        assert_eq!(d.retry_delay(AttemptOutcome::Status(500), 3, None), None);
        let none = DeliveryRetry {
            gaps: Vec::new(),
            ..DeliveryRetry::default()
        };
        assert_eq!(none.retry_delay(AttemptOutcome::Timeout, 1, None), None);
    }

    #[test]
    fn schedules_parse_with_units_and_refuse_the_rest() {
        assert_eq!(
            DeliveryRetry::parse_schedule("5s,30s,2m,10m").unwrap(),
            [5, 30, 120, 600].map(Duration::from_secs).to_vec()
        );
        assert_eq!(
            DeliveryRetry::parse_schedule("250ms,1h,1d").unwrap(),
            vec![
                Duration::from_millis(250),
                Duration::from_secs(3600),
                Duration::from_secs(86_400)
            ]
        );
        assert_eq!(DeliveryRetry::parse_schedule("").unwrap(), vec![]);
        for bad in ["5", "5x", "s", "1s,,2s", "-1s", "0s"] {
            assert!(DeliveryRetry::parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let d = delivery();
        let gap = Duration::from_secs(100);
        assert_eq!(d.jittered(gap, 0.0), Duration::from_secs(80));
        assert_eq!(d.jittered(gap, 0.5), gap);
        assert_eq!(d.jittered(gap, 1.0), Duration::from_secs(120));
        for i in 0..1000 {
            let j = d.jittered(gap, f64::from(i) / 1000.0);
            assert!(j >= Duration::from_secs(80) && j <= Duration::from_secs(120));
        }
        assert_eq!(d.jittered(gap, f64::NAN), gap);
    }
    use proptest::prelude::*;

    fn policy(jitter: Jitter) -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter,
        }
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn without_jitter_it_grows_by_the_multiplier_up_to_the_cap() {
        let b = policy(Jitter::None);
        let waits: Vec<u64> = (0..8).map(|a| ms(b.delay(a, None, 0.7))).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2), "no overflow");
        let slow = Backoff {
            multiplier: 1.5,
            ..b
        };
        assert_eq!(ms(slow.ceiling(2)), 225);
        let flat = Backoff {
            multiplier: 0.1,
            ..b
        };
        assert_eq!(
            ms(flat.ceiling(5)),
            100,
            "a multiplier below 1 never shrinks the delay"
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_exponential_delay() {
        let b = policy(Jitter::Full);
        assert_eq!(b.delay(3, None, 0.0), Duration::ZERO);
        assert_eq!(ms(b.delay(3, None, 0.5)), 400);
        assert_eq!(ms(b.delay(3, None, 1.0)), 800);
        assert_eq!(ms(b.delay(30, None, 1.0)), 2000);
        assert_eq!(b.delay(3, None, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn decorrelated_jitter_draws_between_initial_and_the_previous_times_the_multiplier() {
        let b = policy(Jitter::Decorrelated);
        assert_eq!(ms(b.delay(0, None, 0.0)), 100);
        assert_eq!(ms(b.delay(0, None, 1.0)), 200);
        assert_eq!(ms(b.delay(5, Some(Duration::from_millis(500)), 1.0)), 1000);
        assert_eq!(ms(b.delay(5, Some(Duration::from_millis(500)), 0.0)), 100);
        assert_eq!(
            ms(b.delay(5, Some(Duration::from_secs(5)), 1.0)),
            2000,
            "capped"
        );
    }

    #[test]
    fn a_schedule_counts_and_resets() {
        let mut s = policy(Jitter::None).schedule(7);
        let waits: Vec<u64> = (0..3).map(|_| ms(s.next_delay())).collect();
        assert_eq!((waits, s.attempts()), (vec![100, 200, 400], 3));
        s.reset();
        assert_eq!(ms(s.next_delay()), 100);
    }

    #[test]
    fn jitter_spreads_two_schedules_apart() {
        let (mut a, mut b) = (
            policy(Jitter::Full).schedule(1),
            policy(Jitter::Full).schedule(2),
        );
        let same = (0..20).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 3, "{same} equal delays");
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "in the past"
        );
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        let (ours, limit) = (Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(
            honour_retry_after(ours, Some(Duration::from_secs(30)), limit),
            Duration::from_secs(30)
        );
        assert_eq!(
            honour_retry_after(ours, Some(Duration::from_secs(1)), limit),
            ours,
            "never sooner than ours"
        );
        assert_eq!(
            honour_retry_after(ours, Some(Duration::from_secs(3600)), limit),
            limit,
            "bounded"
        );
        assert_eq!(honour_retry_after(ours, None, limit), ours);
    }

    proptest! {
        /// Every delay is within `[0, max]`; full jitter within the exponential
        /// ceiling, decorrelated at least `initial`.
        #[test]
        fn delays_stay_in_bounds(initial_ms in 1u64..5_000, max_ms in 1u64..60_000, mult in 1.0f64..10.0, attempt in 0u32..100, unit in 0.0f64..1.0, prev_ms in 0u64..100_000) {
            for jitter in [Jitter::None, Jitter::Full, Jitter::Decorrelated] {
                let b = Backoff { initial: Duration::from_millis(initial_ms), max: Duration::from_millis(max_ms), multiplier: mult, jitter };
                let cap = Duration::from_millis(max_ms.max(initial_ms));
                let d = b.delay(attempt, Some(Duration::from_millis(prev_ms)), unit);
                prop_assert!(d <= cap, "{:?} > {:?}", d, cap);
                match jitter {
                    Jitter::None => prop_assert_eq!(d, b.ceiling(attempt)),
                    Jitter::Full => prop_assert!(d <= b.ceiling(attempt)),
                    Jitter::Decorrelated => prop_assert!(d + Duration::from_nanos(1) >= Duration::from_millis(initial_ms).min(cap)),
                }
                prop_assert!(b.ceiling(attempt) <= b.ceiling(attempt + 1), "the ceiling never shrinks");
            }
        }
    }
}

//! Deterministic synthetic lead-event batches.
//!
//! Leads are phone numbers drawn from [`COUNTRIES`] (a possible number for each:
//! right length, a mobile or geographic leading digit). A unique event is a lead and
//! an instant; a duplicate repeats an earlier key of the same event type, spelled
//! differently (another phone spelling, the instant in another offset). Bad rows carry
//! exactly one defect, so their reject reason is known.
use bytes::Bytes;
use leadstream_pipeline::time::{format_rfc3339_ms, parse_rfc3339_ms};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt::Write;

/// The organization every batch is for.
pub const ORG: i64 = 42;
/// Batch `i` has event type `EVENT_TYPES[i % 4]`.
pub const EVENT_TYPES: [&str; 4] = [
    "mastery_purchase",
    "webinar_attended",
    "trial_started",
    "call_booked",
];
/// Number of phone spellings [`phone`] produces.
pub const PHONE_SPELLINGS: usize = 7;

/// A country: calling code, leading national digits to draw from, national length, weight.
pub struct Country {
    pub iso: &'static str,
    pub cc: &'static str,
    pub leads: &'static [&'static str],
    pub len: usize,
    pub weight: u32,
}

const fn c(
    iso: &'static str,
    cc: &'static str,
    leads: &'static [&'static str],
    len: usize,
    weight: u32,
) -> Country {
    Country {
        iso,
        cc,
        leads,
        len,
        weight,
    }
}

/// Lengths are national significant numbers that libphonenumber calls possible.
pub const COUNTRIES: [Country; 27] = [
    c(
        "US",
        "1",
        &[
            "212", "310", "415", "512", "617", "702", "206", "305", "555",
        ],
        10,
        30,
    ),
    c("CA", "1", &["416", "604", "514"], 10, 4),
    c("GB", "44", &["74", "77", "79"], 10, 8),
    c("DE", "49", &["151", "160", "176"], 11, 5),
    c("FR", "33", &["6", "7"], 9, 5),
    c("ES", "34", &["6"], 9, 4),
    c("IT", "39", &["3"], 10, 3),
    c("NL", "31", &["6"], 9, 2),
    c("BR", "55", &["119", "219"], 11, 6),
    c("MX", "52", &["55", "33"], 10, 5),
    c("IN", "91", &["9", "8"], 10, 6),
    c("AU", "61", &["4"], 9, 3),
    c("JP", "81", &["90", "80"], 10, 2),
    c("ZA", "27", &["82", "83"], 9, 2),
    c("NG", "234", &["803", "806"], 10, 2),
    c("AR", "54", &["11"], 10, 2),
    c("CO", "57", &["3"], 10, 2),
    c("PL", "48", &["5"], 9, 1),
    c("SE", "46", &["7"], 9, 1),
    c("PH", "63", &["9"], 10, 2),
    c("ID", "62", &["812"], 11, 1),
    c("SG", "65", &["9", "8"], 8, 1),
    c("IE", "353", &["85", "87"], 9, 1),
    c("PT", "351", &["9"], 9, 1),
    c("AE", "971", &["5"], 9, 1),
    c("TR", "90", &["5"], 10, 1),
    c("CL", "56", &["9"], 9, 1),
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    pub events: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub dup_ratio: f64,
    pub bad_ratio: f64,
}

impl Config {
    /// One batch of `events` with the default mix.
    #[allow(dead_code)] // benches/parse.rs
    pub fn one_batch(events: usize, seed: u64) -> Self {
        Self {
            events,
            batch_size: events,
            seed,
            dup_ratio: 0.10,
            bad_ratio: 0.01,
        }
    }
}

/// What was planted; what a correct pipeline must count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub events: usize,
    /// Valid events with a key not seen before: `inserted`.
    pub unique: usize,
    /// Valid events repeating an earlier key: `duplicates`.
    pub duplicates: usize,
    pub dup_within_batch: usize,
    pub dup_across_batches: usize,
    /// Events with one defect each: `rejected`.
    pub rejected: usize,
    pub bad_phone: usize,
    pub bad_occurred_at: usize,
    pub bad_metadata: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.events += o.events;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.dup_within_batch += o.dup_within_batch;
        self.dup_across_batches += o.dup_across_batches;
        self.rejected += o.rejected;
        self.bad_phone += o.bad_phone;
        self.bad_occurred_at += o.bad_occurred_at;
        self.bad_metadata += o.bad_metadata;
    }
}

/// One request body and what it holds.
pub struct Batch {
    pub body: Bytes,
    pub events: usize,
    /// Indices of the bad rows, ascending.
    pub bad: Vec<u32>,
    pub counts: Counts,
}

/// Every batch, in sending order.
pub struct Synth {
    pub batches: Vec<Batch>,
    pub totals: Counts,
    pub bytes: usize,
}

/// Generates the batches for `cfg`.
#[allow(dead_code)] // benches/parse.rs
pub fn generate(cfg: &Config) -> Synth {
    generate_with(cfg, |_| {})
}

/// Generates the batches, calling `progress(events)` after each.
pub fn generate_with(cfg: &Config, mut progress: impl FnMut(usize)) -> Synth {
    let mut g = Gen::new(cfg);
    let mut batches = Vec::with_capacity(cfg.events.div_ceil(cfg.batch_size.max(1)));
    let (mut totals, mut bytes) = (Counts::default(), 0);
    let mut left = cfg.events;
    while left > 0 {
        let n = left.min(cfg.batch_size);
        let b = g.batch(batches.len(), n);
        totals.add(&b.counts);
        bytes += b.body.len();
        progress(n);
        batches.push(b);
        left -= n;
    }
    Synth {
        batches,
        totals,
        bytes,
    }
}

#[derive(Clone, Copy)]
struct Lead {
    country: u8,
    national: u64,
}

impl Lead {
    fn e164(self) -> u64 {
        let cc = COUNTRIES[self.country as usize].cc;
        let len = COUNTRIES[self.country as usize].len as u32;
        cc.parse::<u64>().expect("digits") * 10u64.pow(len) + self.national
    }
}

#[derive(Clone, Copy)]
struct Key {
    lead: u32,
    at_ms: i64,
}

struct Gen<'c> {
    cfg: &'c Config,
    rng: StdRng,
    leads: Vec<Lead>,
    /// Keys of earlier batches, per event type.
    earlier: [Vec<Key>; 4],
    /// (type, e164, instant) of every key, to keep unique keys unique.
    seen: HashSet<(u8, u64, i64)>,
    start_ms: i64,
}

/// 150 days from 2026-01-01.
const SPAN_MS: i64 = 150 * 86_400_000;

impl<'c> Gen<'c> {
    fn new(cfg: &'c Config) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let weights: u32 = COUNTRIES.iter().map(|c| c.weight).sum();
        let n_leads = (cfg.events / 4).max(16);
        let mut phones = HashSet::with_capacity(n_leads);
        let mut leads = Vec::with_capacity(n_leads);
        while leads.len() < n_leads {
            let mut w = rng.random_range(0..weights);
            let mut country = 0;
            while w >= COUNTRIES[country].weight {
                w -= COUNTRIES[country].weight;
                country += 1;
            }
            let c = &COUNTRIES[country];
            let lead = c.leads[rng.random_range(0..c.leads.len())];
            let rest = (c.len - lead.len()) as u32;
            let national = lead.parse::<u64>().expect("digits") * 10u64.pow(rest)
                + rng.random_range(0..10u64.pow(rest));
            let l = Lead {
                country: country as u8,
                national,
            };
            if phones.insert(l.e164()) {
                leads.push(l);
            }
        }
        Self {
            cfg,
            rng,
            leads,
            earlier: Default::default(),
            seen: HashSet::with_capacity(cfg.events),
            start_ms: parse_rfc3339_ms("2026-01-01T00:00:00Z").expect("valid"),
        }
    }

    fn batch(&mut self, index: usize, n: usize) -> Batch {
        let ty = index % EVENT_TYPES.len();
        let mut counts = Counts {
            events: n,
            ..Counts::default()
        };
        let mut bad = Vec::new();
        let mut current: Vec<Key> = Vec::with_capacity(n);
        let mut out = String::with_capacity(n * 150 + 100);
        let _ = write!(
            out,
            r#"{{"organizationId":{ORG},"eventType":"{}","events":["#,
            EVENT_TYPES[ty]
        );
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            let roll: f64 = self.rng.random();
            if roll < self.cfg.bad_ratio {
                bad.push(i as u32);
                counts.rejected += 1;
                self.bad_row(&mut out, &mut counts);
                continue;
            }
            let dup = roll < self.cfg.bad_ratio + self.cfg.dup_ratio;
            let within =
                !current.is_empty() && (self.earlier[ty].is_empty() || self.rng.random_bool(0.3));
            let key = if dup && within {
                counts.dup_within_batch += 1;
                current[self.rng.random_range(0..current.len())]
            } else if dup && !self.earlier[ty].is_empty() {
                counts.dup_across_batches += 1;
                self.earlier[ty][self.rng.random_range(0..self.earlier[ty].len())]
            } else {
                let k = self.new_key(ty as u8);
                current.push(k);
                counts.unique += 1;
                k
            };
            let lead = self.leads[key.lead as usize];
            out.push_str(r#"{"phoneE164":""#);
            phone(&mut out, lead, self.rng.random_range(0..100));
            out.push_str(r#"","occurredAt":""#);
            instant(&mut out, key.at_ms, &mut self.rng);
            out.push('"');
            self.metadata(&mut out);
            out.push('}');
        }
        out.push_str("]}");
        counts.duplicates = counts.dup_within_batch + counts.dup_across_batches;
        self.earlier[ty].extend(current);
        Batch {
            body: Bytes::from(out.into_bytes()),
            events: n,
            bad,
            counts,
        }
    }

    fn new_key(&mut self, ty: u8) -> Key {
        loop {
            let lead = self.rng.random_range(0..self.leads.len()) as u32;
            // Seven in ten on a whole second, the rest with milliseconds.
            let at = self.rng.random_range(0..SPAN_MS);
            let at_ms = self.start_ms
                + if self.rng.random_bool(0.7) {
                    at - at % 1000
                } else {
                    at
                };
            if self
                .seen
                .insert((ty, self.leads[lead as usize].e164(), at_ms))
            {
                return Key { lead, at_ms };
            }
        }
    }

    fn metadata(&mut self, out: &mut String) {
        let r = self.rng.random_range(0..100);
        if r < 10 {
            return; // no metadata
        }
        let order: u32 = self.rng.random_range(0..36u32.pow(5));
        let _ = write!(
            out,
            r#","metadata":{{"orderId":"ord_{order:x}","amountUsd":{}"#,
            self.rng.random_range(9..2000)
        );
        match r {
            10..=39 => out.push_str(
                r#","currency":"USD","utm":{"source":"facebook","campaign":"spring_26"}"#,
            ),
            40..=41 => out.push_str(r#","note":"said \"call me after 5\" \u00e9""#),
            _ => {}
        }
        out.push('}');
    }

    fn bad_row(&mut self, out: &mut String, counts: &mut Counts) {
        const PHONES: [&str; 7] = [
            r#""n/a""#,
            r#""12345""#,
            r#""+1 555""#,
            r#""+1234567890123456789""#,
            "15551234567",
            r#""""#,
            "null",
        ];
        const INSTANTS: [&str; 6] = [
            r#""yesterday""#,
            r#""2026-13-01T00:00:00Z""#,
            r#""2026-05-12 18:34""#,
            "1778610840000",
            r#""2026-02-30T10:00:00Z""#,
            "null",
        ];
        const METADATA: [&str; 4] = ["[1,2]", r#""vip""#, "42", "true"];
        let ok_time = self.start_ms + self.rng.random_range(0..SPAN_MS / 1000) * 1000;
        let lead = self.leads[self.rng.random_range(0..self.leads.len())];
        match self.rng.random_range(0..3) {
            0 => {
                counts.bad_phone += 1;
                let _ = write!(
                    out,
                    r#"{{"phoneE164":{},"occurredAt":""#,
                    PHONES[self.rng.random_range(0..PHONES.len())]
                );
                instant(out, ok_time, &mut self.rng);
                out.push_str(r#""}"#);
            }
            1 => {
                counts.bad_occurred_at += 1;
                out.push_str(r#"{"phoneE164":""#);
                phone(out, lead, self.rng.random_range(0..100));
                let _ = write!(
                    out,
                    r#"","occurredAt":{}}}"#,
                    INSTANTS[self.rng.random_range(0..INSTANTS.len())]
                );
            }
            _ => {
                counts.bad_metadata += 1;
                out.push_str(r#"{"phoneE164":""#);
                phone(out, lead, self.rng.random_range(0..100));
                out.push_str(r#"","occurredAt":""#);
                instant(out, ok_time, &mut self.rng);
                let _ = write!(
                    out,
                    r#"","metadata":{}}}"#,
                    METADATA[self.rng.random_range(0..METADATA.len())]
                );
            }
        }
    }
}

/// Writes `lead`'s number in spelling `roll` (0..100): 45% E.164, then spaces,
/// dashes, parentheses, no plus, dots and a `00` prefix.
fn phone(out: &mut String, lead: Lead, roll: u32) {
    let c = &COUNTRIES[lead.country as usize];
    let nat = format!("{:0width$}", lead.national, width = c.len);
    let (a, rest) = nat.split_at(3);
    let (b, d) = rest.split_at(rest.len() / 2);
    let _ = match roll {
        0..=44 => write!(out, "+{}{nat}", c.cc),
        45..=59 => write!(out, "+{} {a} {b} {d}", c.cc),
        60..=69 => write!(out, "+{}-{a}-{b}-{d}", c.cc),
        70..=79 => write!(out, "+{} ({a}) {b}-{d}", c.cc),
        80..=89 => write!(out, "{}{nat}", c.cc),
        90..=94 => write!(out, "+{}.{a}.{b}.{d}", c.cc),
        _ => write!(out, "00{} {nat}", c.cc),
    };
}

/// Writes the instant `ms` as RFC 3339: 60% in UTC (`Z`), the rest at an offset;
/// whole seconds without a fraction most of the time.
fn instant(out: &mut String, ms: i64, rng: &mut StdRng) {
    const OFFSETS: [(i64, &str); 6] = [
        (-300, "-05:00"),
        (60, "+01:00"),
        (330, "+05:30"),
        (-180, "-03:00"),
        (540, "+09:00"),
        (0, "+00:00"),
    ];
    let (off, suffix) = if rng.random_bool(0.6) {
        (0, "Z")
    } else {
        OFFSETS[rng.random_range(0..OFFSETS.len())]
    };
    let local = format_rfc3339_ms(ms + off * 60_000); // YYYY-MM-DDThh:mm:ss.sssZ
    let local = &local[..local.len() - 1];
    let local = if ms % 1000 == 0 && rng.random_bool(0.7) {
        &local[..19]
    } else {
        local
    };
    out.push_str(local);
    out.push_str(suffix);
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_seed_same_bytes_and_counts_add_up() {
        use super::*;
        let cfg = Config {
            events: 5_000,
            batch_size: 1_000,
            seed: 7,
            dup_ratio: 0.1,
            bad_ratio: 0.01,
        };
        let (a, b) = (generate(&cfg), generate(&cfg));
        assert_eq!(a.batches.len(), 5);
        assert!(a
            .batches
            .iter()
            .zip(&b.batches)
            .all(|(x, y)| x.body == y.body));
        let t = a.totals;
        assert_eq!(t.unique + t.duplicates + t.rejected, t.events);
        assert_eq!(t.bad_phone + t.bad_occurred_at + t.bad_metadata, t.rejected);
        assert!(t.dup_within_batch > 0 && t.dup_across_batches > 0 && t.rejected > 0);
        for batch in &a.batches {
            let v: serde_json::Value = serde_json::from_slice(&batch.body).expect("valid JSON");
            assert_eq!(v["events"].as_array().map(Vec::len), Some(batch.events));
        }
    }
}

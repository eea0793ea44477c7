//! The dedup index and the event index against plain std collections.
//!
//! - `dedup/insert_batch`: [`DedupIndex::insert_batch`] of 50,000 new fingerprints per
//!   iteration into a growing index (emptied, untimed, every 1,000,000 keys), against
//!   one `std::collections::HashSet<u128>` (SipHash) fed the same keys the same way.
//! - `dedup/lookup`: `contains` of 50,000 present keys in a 1,000,000-key index, against
//!   the same `HashSet`.
//! - `event_index/record` and `event_index/has_event`: [`EventIndex`] against a
//!   `BTreeSet<(org, type, phone, instant)>` answering the same window question with a
//!   range query.
//!
//! Keys are real [`EventKey`] fingerprints of (org 42, a phone among 250,000, one of 4
//! event types, an instant within 150 days).
//!
//! Times are this thread's CPU time (see [`now`]): the development machine is shared.
//!
//! `cargo bench --bench dedup`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leadstream_pipeline::{DedupIndex, EventIndex, EventKey, Phone, Probe};
use std::collections::{BTreeSet, HashSet};
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 50_000;
const BATCHES: usize = 20;
const SHARDS: usize = 64;
const TYPES: [&str; 4] = [
    "mastery_purchase",
    "webinar_attended",
    "trial_started",
    "call_booked",
];
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

use leadstream::cpu_time::now;

/// `b.iter(f)`, timed with [`now`].
fn iter(b: &mut criterion::Bencher<'_>, mut f: impl FnMut()) {
    b.iter_custom(|iters| {
        let t = now();
        for _ in 0..iters {
            f();
        }
        now() - t
    })
}

/// splitmix64: deterministic, and a bijection, so distinct inputs stay distinct.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Ev {
    phone: Phone,
    ty: usize,
    at_ms: i64,
}

fn event(n: u64) -> Ev {
    let r = mix(n);
    // Distinct instants per n, so every key is distinct.
    Ev {
        phone: Phone(15_550_000_000 + r % 250_000),
        ty: (r >> 32) as usize % 4,
        at_ms: T0 + n as i64 * 7_919 % (150 * 86_400_000),
    }
}

fn probe(e: &Ev) -> Probe {
    let key = EventKey {
        org: 42,
        phone: e.phone,
        event_type: TYPES[e.ty],
        occurred_at_ms: e.at_ms,
    };
    Probe {
        fingerprint: key.fingerprint(),
        lead: key.lead_hash(),
    }
}

/// `BATCHES` batches of `BATCH` distinct probes.
fn batches() -> Vec<Vec<Probe>> {
    (0..BATCHES)
        .map(|b| {
            (0..BATCH)
                .map(|i| probe(&event((b * BATCH + i) as u64)))
                .collect()
        })
        .collect()
}

/// Times `insert` over the batches in turn, into a set that `fresh` replaces (untimed)
/// whenever all the batches are in.
fn rounds<S>(
    iters: u64,
    batches: &[Vec<Probe>],
    mut fresh: impl FnMut() -> S,
    mut insert: impl FnMut(&mut S, &[Probe]) -> usize,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut set = fresh();
    for i in 0..iters as usize {
        let b = i % batches.len();
        if b == 0 && i > 0 {
            set = fresh();
        }
        let t = now();
        black_box(insert(&mut set, &batches[b]));
        total += now() - t;
    }
    total
}

fn dedup(c: &mut Criterion) {
    let batches = batches();
    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements(BATCH as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    g.bench_function("insert_batch", |b| {
        let mut is_new = Vec::new();
        b.iter_custom(|iters| {
            rounds(
                iters,
                &batches,
                || DedupIndex::new(SHARDS),
                |idx, probes| {
                    idx.insert_batch(probes, &mut is_new);
                    is_new.iter().filter(|&&n| n).count()
                },
            )
        })
    });
    g.bench_function("std_hashset_single", |b| {
        b.iter_custom(|iters| {
            rounds(iters, &batches, HashSet::<u128>::new, |set, probes| {
                probes
                    .iter()
                    .filter(|p| set.insert(p.fingerprint.0))
                    .count()
            })
        })
    });

    let full = DedupIndex::new(SHARDS);
    let mut std_full = HashSet::<u128>::new();
    for batch in &batches {
        full.extend(batch.iter().copied());
        std_full.extend(batch.iter().map(|p| p.fingerprint.0));
    }
    let present = &batches[BATCHES / 2];
    g.bench_function("lookup", |b| {
        iter(b, || {
            black_box(present.iter().filter(|p| full.contains(**p)).count());
        })
    });
    g.bench_function("std_hashset_single_lookup", |b| {
        iter(b, || {
            black_box(
                present
                    .iter()
                    .filter(|p| std_full.contains(&p.fingerprint.0))
                    .count(),
            );
        })
    });
    g.finish();
}

fn event_index(c: &mut Criterion) {
    let evs: Vec<Ev> = (0..BATCH as u64).map(event).collect();
    let mut g = c.benchmark_group("event_index");
    g.throughput(Throughput::Elements(BATCH as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // One batch of one type per call, as the writer records it.
    g.bench_function("record", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let idx = EventIndex::new(SHARDS);
                let t = now();
                idx.record(42, TYPES[0], evs.iter().map(|e| (e.phone, e.at_ms)));
                total += now() - t;
                black_box(idx);
            }
            total
        })
    });
    g.bench_function("btreeset_record", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut set = BTreeSet::<(i64, usize, u64, i64)>::new();
                let t = now();
                for e in &evs {
                    set.insert((42, 0, e.phone.0, e.at_ms));
                }
                total += now() - t;
                black_box(set);
            }
            total
        })
    });

    let idx = EventIndex::new(SHARDS);
    let mut tree = BTreeSet::new();
    for (t, ty) in TYPES.iter().enumerate() {
        let of_type = evs.iter().filter(|e| e.ty == t);
        idx.record(42, ty, of_type.clone().map(|e| (e.phone, e.at_ms)));
        tree.extend(of_type.map(|e| (42i64, t, e.phone.0, e.at_ms)));
    }
    // "Did this lead have the event in the 7 days before T?", T half a week after each
    // event. EventIndex takes the type by name; so does the baseline.
    let type_ids: std::collections::HashMap<&str, usize> =
        TYPES.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let week = 7 * 24 * 60;
    let week_ms = week as i64 * 60_000;
    g.bench_function("has_event", |b| {
        iter(b, || {
            black_box(
                evs.iter()
                    .filter(|e| {
                        idx.has_event(42, TYPES[e.ty], e.phone, e.at_ms + week_ms / 2, Some(week))
                    })
                    .count(),
            );
        })
    });
    g.bench_function("btreeset_range_has_event", |b| {
        iter(b, || {
            let n = evs
                .iter()
                .filter(|e| {
                    let at = e.at_ms + week_ms / 2;
                    let ty = type_ids[TYPES[e.ty]];
                    tree.range((42, ty, e.phone.0, at - week_ms)..=(42, ty, e.phone.0, at))
                        .next()
                        .is_some()
                })
                .count();
            black_box(n);
        })
    });
    g.finish();
}

criterion_group!(benches, dedup, event_index);
criterion_main!(benches);

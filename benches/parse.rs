//! Parsing a 50,000-event lead-events body: leadstream's reader (`Parser::parse_batch`:
//! validating, non-recursive, typed, metadata kept as text) against simd-json (in
//! place, reused buffers, into its borrowed DOM) and serde_json (validation only, into
//! `IgnoredAny`: the least serde_json can do), and parse + prepare (normalize,
//! validate, fingerprint).
//!
//! The body is the one `leadstream bench ingest` sends first (same generator, same
//! seed). simd-json parses in place, so every variant first copies the body into a
//! reused buffer: the copy is inside every measurement alike.
//!
//! Times are this thread's CPU time (see [`now`]): the development machine is shared.
//!
//! `cargo bench --bench parse`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leadstream_pipeline::{Parser, PhoneNormalizer, Preparer};
use std::hint::black_box;
use std::time::Duration;

use leadstream::synth;

const EVENTS: usize = 50_000;

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

fn body() -> Vec<u8> {
    bodies(1).swap_remove(0)
}

/// `n` different bodies of `EVENTS` events, as `bench ingest` sends them.
fn bodies(n: usize) -> Vec<Vec<u8>> {
    let cfg = synth::Config {
        events: n * EVENTS,
        ..synth::Config::one_batch(EVENTS, 42)
    };
    synth::generate(&cfg)
        .batches
        .iter()
        .map(|b| b.body.to_vec())
        .collect()
}

fn parse(c: &mut Criterion) {
    let body = body();
    let mut buf = Vec::with_capacity(body.len());
    let mut parser = Parser::new();
    let mut simd = simd_json::Buffers::new(64 * 1024);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(EVENTS as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("leadstream_reader_typed", |b| {
        iter(b, || {
            buf.clear();
            buf.extend_from_slice(&body);
            black_box(parser.parse_batch(&buf).expect("valid"));
        })
    });
    g.bench_function("simd_json_borrowed_dom", |b| {
        iter(b, || {
            buf.clear();
            buf.extend_from_slice(&body);
            black_box(
                simd_json::to_borrowed_value_with_buffers(&mut buf, &mut simd).expect("valid"),
            );
        })
    });
    g.bench_function("serde_json_validate_only", |b| {
        iter(b, || {
            buf.clear();
            buf.extend_from_slice(&body);
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&buf).expect("valid"));
        })
    });
    // The same over 4 different bodies in turn, as a server sees them.
    let four = bodies(4);
    let mut turn = 0;
    g.bench_function("leadstream_reader_typed_4_bodies", |b| {
        iter(b, || {
            turn = (turn + 1) % four.len();
            buf.clear();
            buf.extend_from_slice(&four[turn]);
            black_box(parser.parse_batch(&buf).expect("valid"));
        })
    });
    g.bench_function("simd_json_borrowed_dom_4_bodies", |b| {
        iter(b, || {
            turn = (turn + 1) % four.len();
            buf.clear();
            buf.extend_from_slice(&four[turn]);
            black_box(
                simd_json::to_borrowed_value_with_buffers(&mut buf, &mut simd).expect("valid"),
            );
        })
    });
    g.finish();
}

fn parse_and_prepare(c: &mut Criterion) {
    let body = body();
    let mut parser = Parser::new();
    let ingest = Preparer::new(PhoneNormalizer::new());
    let mut g = c.benchmark_group("parse_and_prepare");
    g.throughput(Throughput::Elements(EVENTS as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("parse_and_prepare", |b| {
        iter(b, || {
            let raw = Preparer::parse(&mut parser, &body).expect("valid");
            black_box(ingest.prepare(raw).expect("valid"));
        })
    });
    // prepare alone: parse untimed, then time only `prepare` (and dropping its input).
    g.bench_function("prepare_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let raw = Preparer::parse(&mut parser, &body).expect("valid");
                let t = now();
                let prepared = ingest.prepare(raw).expect("valid");
                total += now() - t;
                black_box(prepared);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, parse, parse_and_prepare);
criterion_main!(benches);

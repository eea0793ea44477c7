//! Phone normalization: `PhoneNormalizer::normalize` (fast path + cached
//! fallback) against the `phonenumber` crate's full parse + possible-number
//! check (`normalize_with_crate`, the uncached reference), on the same 10,000 inputs.
//!
//! The inputs are generated deterministically (fixed-seed LCG) from the
//! metadata's example numbers of 40 countries, last digits randomised, in
//! seven formats: canonical E.164, spaces, dashes, parentheses, dots, no `+`,
//! and a `00` prefix. For the crate, inputs without a `+` are rewritten to
//! their `+` form *before* timing (the crate rejects them otherwise); the
//! normalizer gets the raw strings.
//!
//! `cargo bench --bench normalize`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leadstream_pipeline::phone::{international_form, PhoneNormalizer};
use phonenumber::metadata::DATABASE;

const INPUTS: usize = 10_000;

const COUNTRIES: &[&str] = &[
    "US", "CA", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "PL", "PT",
    "IE", "BR", "MX", "AR", "IN", "CN", "JP", "KR", "AU", "NZ", "ZA", "NG", "KE", "EG", "TR", "SA",
    "AE", "IL", "SG", "RU", "UA", "ID", "PH", "VN",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Groups `nsn` as 3-3-rest (or 2-rest for short numbers), joined by `sep`.
fn grouped(nsn: &str, sep: &str) -> String {
    let cuts: &[usize] = if nsn.len() > 7 { &[3, 6] } else { &[2] };
    let mut parts = Vec::new();
    let mut start = 0;
    for &c in cuts {
        parts.push(&nsn[start..c]);
        start = c;
    }
    parts.push(&nsn[start..]);
    parts.join(sep)
}

fn inputs() -> Vec<String> {
    let mut rng = Lcg(0x5eed_1ead_u64);
    let mut templates: Vec<(u16, String)> = Vec::new();
    for id in COUNTRIES {
        let meta = DATABASE
            .by_id(*id)
            .unwrap_or_else(|| panic!("no metadata for {id}"));
        let d = meta.descriptors();
        for desc in [d.mobile(), d.fixed_line()].into_iter().flatten() {
            if let Some(ex) = desc.example() {
                templates.push((meta.country_code(), ex.to_owned()));
            }
        }
    }
    (0..INPUTS)
        .map(|_| {
            let (cc, ex) = &templates[rng.below(templates.len() as u64) as usize];
            // Keep the leading digits (area / mobile prefix), randomise the last 4.
            let keep = ex.len().saturating_sub(4);
            let mut nsn: String = ex[..keep].to_owned();
            for _ in keep..ex.len() {
                nsn.push((b'0' + rng.below(10) as u8) as char);
            }
            match rng.below(7) {
                0 => format!("+{cc}{nsn}"),
                1 => format!("+{cc} {}", grouped(&nsn, " ")),
                2 => format!("+{cc}-{}", grouped(&nsn, "-")),
                3 => format!("+{cc} ({}) {}", &nsn[..2], grouped(&nsn[2..], "-")),
                4 => format!("{cc}{nsn}"),
                5 => format!("00{cc} {}", grouped(&nsn, " ")),
                _ => format!("+{cc}.{}", grouped(&nsn, ".")),
            }
        })
        .collect()
}

fn normalize(c: &mut Criterion) {
    let t = Instant::now();
    let normalizer = PhoneNormalizer::new();
    eprintln!("PhoneNormalizer::new(): {:?}", t.elapsed());

    let raw = inputs();
    let plus: Vec<String> = raw
        .iter()
        .map(|s| international_form(s).into_owned())
        .collect();

    // Sanity: same answers, and how much of the set the fast path decides.
    let mut fast = 0;
    let mut accepted = 0;
    for (r, p) in raw.iter().zip(&plus) {
        let ours = normalizer.normalize(r).map(|p| p.0);
        assert_eq!(
            ours,
            normalizer.normalize_with_crate(p).map(|p| p.0),
            "{r:?}"
        );
        fast += normalizer.fast_path(r).is_some() as usize;
        accepted += ours.is_some() as usize;
    }
    eprintln!(
        "{} inputs, {} countries: {} accepted, {} decided on the fast path",
        raw.len(),
        COUNTRIES.len(),
        accepted,
        fast
    );

    // Informational only (not a criterion measurement): the canonical
    // "+<digits>" subset alone.
    let canonical: Vec<&String> = raw
        .iter()
        .filter(|s| s.starts_with('+') && s[1..].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let rounds = 200;
    let t = Instant::now();
    let mut sink = 0u64;
    for _ in 0..rounds {
        for s in &canonical {
            sink = sink.wrapping_add(normalizer.normalize(black_box(s)).map_or(0, |p| p.0));
        }
    }
    black_box(sink);
    eprintln!(
        "canonical subset ({} inputs): {:.1} ns/number",
        canonical.len(),
        t.elapsed().as_nanos() as f64 / (rounds * canonical.len()) as f64
    );

    let mut group = c.benchmark_group("normalize");
    group
        .throughput(Throughput::Elements(raw.len() as u64))
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    group.bench_function("fast_path", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for s in &raw {
                n = n.wrapping_add(normalizer.normalize(black_box(s)).map_or(0, |p| p.0));
            }
            black_box(n)
        })
    });
    group.bench_function("crate_full_parse", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for s in &plus {
                n = n.wrapping_add(
                    normalizer
                        .normalize_with_crate(black_box(s))
                        .map_or(0, |p| p.0),
                );
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, normalize);
criterion_main!(benches);

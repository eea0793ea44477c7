//! Phone normalization: `PhoneNormalizer::normalize` (fast path + cached
//! rlibphonenumber fallback) against rlibphonenumber alone (`parse(s, None)` +
//! `is_possible_number` + E.164 format, the work the contract defines), on the
//! same inputs, in one group per input shape so criterion prints the ratio.
//!
//! Inputs are generated deterministically (fixed-seed LCG) from rlibphonenumber's
//! example numbers (mobile and fixed line) of 40 countries, last four digits
//! randomised:
//!
//! * `canonical`: 10,000 × `+<code><national number>`;
//! * `formatted`: 10,000 × one of spaces, dashes, parentheses, dots, no `+`,
//!   a `00` prefix, a national prefix written as `(0)`.
//!
//! rlibphonenumber alone gets each input already rewritten to its `+` form
//! (outside the timing); the normalizer gets the raw strings.
//!
//! Timed as this thread's CPU time (`leadstream::cpu_time`), like the other
//! benches: the machine is shared.
//!
//! `cargo bench --bench normalize`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use leadstream::cpu_time::now;
use leadstream_pipeline::phone::{international_form, PhoneNormalizer};
use rlibphonenumber::{
    get_national_significant_number_owned, PhoneNumberFormat, PhoneNumberType, Region,
    PHONE_NUMBER_UTIL,
};

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

/// `(canonical, formatted)` inputs.
fn inputs() -> (Vec<String>, Vec<String>) {
    let mut rng = Lcg(0x5eed_1ead_u64);
    let mut templates: Vec<(i32, String)> = Vec::new();
    for id in COUNTRIES {
        let region = Region::from_code(id).unwrap_or_else(|_| panic!("no region {id}"));
        for t in [PhoneNumberType::Mobile, PhoneNumberType::FixedLine] {
            if let Ok(ex) = PHONE_NUMBER_UTIL.get_example_number_for_type_and_region(region, t) {
                templates.push((ex.country_code, get_national_significant_number_owned(&ex)));
            }
        }
    }
    let mut next = || {
        let (cc, ex) = &templates[rng.below(templates.len() as u64) as usize];
        // Keep the leading digits (area / mobile prefix), randomise the last 4.
        let keep = ex.len().saturating_sub(4);
        let mut nsn: String = ex[..keep].to_owned();
        for _ in keep..ex.len() {
            nsn.push((b'0' + rng.below(10) as u8) as char);
        }
        let shape = rng.below(7);
        (*cc, nsn, shape)
    };
    let canonical = (0..INPUTS)
        .map(|_| {
            let (cc, nsn, _) = next();
            format!("+{cc}{nsn}")
        })
        .collect();
    let formatted = (0..INPUTS)
        .map(|_| {
            let (cc, nsn, shape) = next();
            match shape {
                0 => format!("+{cc} {}", grouped(&nsn, " ")),
                1 => format!("+{cc}-{}", grouped(&nsn, "-")),
                2 => format!("+{cc} ({}) {}", &nsn[..2], grouped(&nsn[2..], "-")),
                3 => format!("{cc}{nsn}"),
                4 => format!("00{cc} {}", grouped(&nsn, " ")),
                5 => format!("+{cc} (0) {}", grouped(&nsn, " ")),
                _ => format!("+{cc}.{}", grouped(&nsn, ".")),
            }
        })
        .collect();
    (canonical, formatted)
}

/// `b.iter(f)`, timed with [`now`] (this thread's CPU time).
fn iter(b: &mut criterion::Bencher<'_>, mut f: impl FnMut()) {
    b.iter_custom(|iters| {
        let t = now();
        for _ in 0..iters {
            f();
        }
        now() - t
    })
}

/// rlibphonenumber alone: the contract's parse, check and format.
fn crate_alone(plus_form: &str) -> u64 {
    match PHONE_NUMBER_UTIL.parse(plus_form, None) {
        Ok(n) if PHONE_NUMBER_UTIL.is_possible_number(&n) => {
            PHONE_NUMBER_UTIL.format(&n, PhoneNumberFormat::E164).len() as u64
        }
        _ => 0,
    }
}

fn compare(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    normalizer: &PhoneNormalizer,
    raw: &[String],
) {
    let plus: Vec<String> = raw
        .iter()
        .map(|s| international_form(s).into_owned())
        .collect();
    group.throughput(Throughput::Elements(raw.len() as u64));
    group.bench_function("PhoneNormalizer::normalize", |b| {
        iter(b, || {
            let mut n = 0u64;
            for s in raw {
                n = n.wrapping_add(normalizer.normalize(black_box(s)).map_or(0, |p| p.0));
            }
            black_box(n);
        })
    });
    group.bench_function("rlibphonenumber", |b| {
        iter(b, || {
            let mut n = 0u64;
            for s in &plus {
                n = n.wrapping_add(crate_alone(black_box(s)));
            }
            black_box(n);
        })
    });
}

fn normalize(c: &mut Criterion) {
    let t = Instant::now();
    let normalizer = PhoneNormalizer::new();
    eprintln!("PhoneNormalizer::new(): {:?}", t.elapsed());

    let (canonical, formatted) = inputs();
    for (name, set) in [("canonical", &canonical), ("formatted", &formatted)] {
        // Sanity: same answers as the reference, and the fast path's share.
        let mut fast = 0;
        let mut accepted = 0;
        for r in set.iter() {
            let ours = normalizer.normalize(r);
            assert_eq!(ours, normalizer.normalize_reference(r), "{r:?}");
            fast += normalizer.fast_path(r).is_some() as usize;
            accepted += ours.is_some() as usize;
        }
        eprintln!(
            "{name}: {} inputs, {} countries: {accepted} accepted, {fast} decided on the fast path",
            set.len(),
            COUNTRIES.len(),
        );
    }

    for (name, set) in [("canonical", &canonical), ("formatted", &formatted)] {
        let mut group = c.benchmark_group(format!("normalize/{name}"));
        group
            .measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(20);
        compare(&mut group, &normalizer, set);
        group.finish();
    }
}

criterion_group!(benches, normalize);
criterion_main!(benches);

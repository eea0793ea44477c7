//! Tests for `leadstream_pipeline::phone` with rlibphonenumber as the
//! reference: every answer of `PhoneNormalizer::normalize` and of its fast path
//! must be `normalize_reference`'s (the contract, computed by rlibphonenumber
//! alone). The Python oracle (`tests/phone_oracle`) checks the reference
//! against libphonenumber's `phonenumbers` port.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use leadstream_pipeline::phone::{Phone, PhoneNormalizer};
use proptest::prelude::*;
use prost::Message;
use rlibphonenumber::{PhoneMetadata, PhoneMetadataCollection, PHONE_NUMBER_UTIL};

fn normalizer() -> &'static PhoneNormalizer {
    static N: OnceLock<PhoneNormalizer> = OnceLock::new();
    N.get_or_init(PhoneNormalizer::new)
}

fn ours(raw: &str) -> Option<String> {
    normalizer().normalize(raw).map(|p| p.to_string())
}

fn reference(raw: &str) -> Option<String> {
    normalizer().normalize_reference(raw).map(|p| p.to_string())
}

/// Every way of answering `raw` agrees; returns the answer.
fn check(raw: &str) -> Option<String> {
    let n = normalizer();
    let want = n.normalize_reference(raw);
    assert_eq!(n.normalize(raw), want, "normalize({raw:?})");
    // Twice: the second answer may come from the fallback cache.
    assert_eq!(n.normalize(raw), want, "normalize({raw:?}), cached");
    if let Some(fast) = n.fast_path(raw) {
        assert_eq!(fast, want, "fast_path({raw:?})");
    }
    want.map(|p| p.to_string())
}

// ---------------------------------------------------------------------------
// Known answers (each checked against phonenumbers 9.0.42 with the contract)
// ---------------------------------------------------------------------------

#[test]
fn known_cases() {
    let cases: &[(&str, Option<&str>)] = &[
        ("+15551234567", Some("+15551234567")),
        ("15551234567", Some("+15551234567")),
        ("+1 (555) 123-4567", Some("+15551234567")),
        ("+7 800 123-45-67", Some("+78001234567")),
        ("+7 800 555 35 35", Some("+78005553535")),
        ("+370 800 12 345", Some("+37080012345")),
        ("not-a-phone-4988", None),
        ("44016247890", Some("+44016247890")),
        ("+9-7150-1234-56-7", Some("+971501234567")),
        ("(555) 123-4567", Some("+5551234567")),
        ("0044 7700 900123", Some("+447700900123")),
        ("+44 7700 900123", Some("+447700900123")),
        ("  +44 7700 900123", Some("+447700900123")),
        ("+44 (0) 20 7946 0958", Some("+442079460958")),
        ("+44 07911 123456", Some("+447911123456")),
        ("+1 800 FLOWERS", Some("+18003569377")),
        ("1-800-FLOWERS", Some("+18003569377")),
        ("+1 555 123 4567 ext. 89", Some("+15551234567")),
        ("+1 555 123 4567 x89", Some("+15551234567")),
        ("tel:+1-555-123-4567;ext=89", None),
        (
            "\u{FF0B}\u{FF14}\u{FF14} 7700 900123",
            Some("+447700900123"),
        ),
        ("+49 000 30 1234567", Some("+4900301234567")),
        ("+0044 7700 900123", None),
        ("+999 1234567", None),
        ("", None),
        ("+", None),
        ("+12", None),
        ("+1 2", None),
        ("abc", None),
    ];
    let mut wrong = Vec::new();
    for &(raw, want) in cases {
        let got = check(raw);
        if got.as_deref() != want {
            wrong.push(format!("{raw:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn canonical_input_takes_the_fast_path() {
    let n = normalizer();
    for raw in [
        "+15551234567",
        "+447700900123",
        "+4915123456789",
        "+8613812345678",
        "+5511912345678",
    ] {
        assert!(n.fast_path(raw).is_some(), "{raw}");
    }
    // A national prefix at the start of the national number goes to the fallback.
    for raw in [
        "+44 07911 123456",
        "+7 8 800 123 45 67",
        "+1 1 555 123 4567",
    ] {
        assert_eq!(n.fast_path(raw), None, "{raw}");
    }
}

// ---------------------------------------------------------------------------
// rlibphonenumber's bundled metadata, for phone/prefixes.rs and the generators
// ---------------------------------------------------------------------------

/// rlibphonenumber's own `metadata.bin`, found through `cargo metadata`.
fn crate_metadata() -> &'static PhoneMetadataCollection {
    static M: OnceLock<PhoneMetadataCollection> = OnceLock::new();
    M.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let out = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--offline",
                "--manifest-path",
                manifest,
            ])
            .output()
            .expect("run cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let pkg = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "rlibphonenumber")
            .expect("rlibphonenumber in cargo metadata");
        let dir = std::path::Path::new(pkg["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_owned();
        let bytes = std::fs::read(dir.join("src/generated/metadata/metadata.bin"))
            .expect("read metadata.bin");
        PhoneMetadataCollection::decode(&bytes[..]).expect("decode metadata.bin")
    })
}

/// Calling code → its regions' metadata, the main region first (the order
/// rlibphonenumber's `new_for_metadata` builds).
fn by_code() -> &'static BTreeMap<i32, Vec<&'static PhoneMetadata>> {
    static B: OnceLock<BTreeMap<i32, Vec<&'static PhoneMetadata>>> = OnceLock::new();
    B.get_or_init(|| {
        let mut m: BTreeMap<i32, Vec<&PhoneMetadata>> = BTreeMap::new();
        for md in &crate_metadata().metadata {
            let Some(cc) = md.country_code else { continue };
            let list = m.entry(cc).or_default();
            if md.main_country_for_code() {
                list.insert(0, md);
            } else {
                list.push(md);
            }
        }
        m
    })
}

/// The pattern inside a stored `^(?:…)$` (rlibphonenumber's `original_base`).
#[allow(deprecated)]
fn prefix_pattern(md: &PhoneMetadata) -> String {
    let Some(base) = md.national_prefix_for_parsing.as_deref() else {
        return String::new();
    };
    if base.len() < 6 {
        return String::new();
    }
    assert!(base.starts_with("^(?:") && base.ends_with(")$"), "{base:?}");
    base[4..base.len() - 2].to_owned()
}

fn render_prefix_table() -> String {
    let mut s = String::from(
        "//! Generated from rlibphonenumber 2.2.15's bundled metadata (libphonenumber\n\
         //! 9.0.42) by `UPDATE_PHONE_PREFIXES=1 cargo test -p leadstream-pipeline --test phone\n\
         //! prefix_table`; do not edit. The test fails when the crate's metadata differs.\n\
         \n\
         /// `(calling code, main region, national_prefix_for_parsing)` for every\n\
         /// calling code, ascending; the pattern without rlibphonenumber's `^(?:…)$`\n\
         /// wrapping, `\"\"` when there is none.\n\
         #[rustfmt::skip]\n\
         pub(super) static PREFIXES: &[(u16, &str, &str)] = &[\n",
    );
    for (cc, list) in by_code() {
        let main = list[0];
        s.push_str(&format!(
            "    ({cc}, {:?}, {:?}),\n",
            main.id,
            prefix_pattern(main)
        ));
    }
    s.push_str("];\n");
    s
}

#[test]
fn prefix_table_matches_rlibphonenumber_metadata() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/phone/prefixes.rs");
    let want = render_prefix_table();
    if std::env::var_os("UPDATE_PHONE_PREFIXES").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap();
    assert!(
        have == want,
        "src/phone/prefixes.rs is stale: rerun with UPDATE_PHONE_PREFIXES=1"
    );
    // The main regions are rlibphonenumber's.
    for (cc, list) in by_code() {
        let region = PHONE_NUMBER_UTIL
            .get_region_for_country_code(*cc)
            .map(|r| r.as_region_str().to_string());
        assert_eq!(region.as_deref(), Some(list[0].id.as_str()), "{cc}");
    }
}

#[test]
#[allow(deprecated)]
fn every_possible_number_fits_a_u64() {
    // A possible number has at most 17 national digits; the longest code + the
    // longest possible length must stay within 19 digits.
    let mut longest = 0;
    for (cc, list) in by_code() {
        let gd = list[0].general_desc.clone().unwrap_or_default();
        let max = gd
            .possible_length
            .iter()
            .chain(&gd.possible_length_local_only)
            .copied()
            .max()
            .unwrap_or(0);
        longest = longest.max(cc.to_string().len() + max as usize);
    }
    assert!(longest <= 19, "{longest}");
    let n = normalizer();
    // The longest: +62 with 17 digits.
    let p = n
        .normalize("+62 12345678901234567")
        .expect("17-digit +62 is possible");
    assert_eq!(p, Phone(6212345678901234567));
    assert_eq!(p.to_string().parse::<Phone>(), Ok(p));
}

// ---------------------------------------------------------------------------
// Generated canonical input: every code, every length, every prefix
// ---------------------------------------------------------------------------

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn digit(&mut self) -> char {
        (b'0' + (self.next() % 10) as u8) as char
    }
}

/// National-number starts worth trying for a calling code: every 1–3 digit
/// string, every region's national prefix, and national prefixes followed by
/// the region's example numbers.
#[allow(deprecated)]
fn starts(cc: i32) -> Vec<String> {
    let mut v: Vec<String> = (0..1000).map(|i| format!("{i:03}")).collect();
    v.extend((0..100).map(|i| format!("{i:02}")));
    v.extend((0..10).map(|i| i.to_string()));
    // Runs of zeros (libphonenumber keeps every leading zero).
    v.extend((4..=17).map(|k| "0".repeat(k)));
    for md in &by_code()[&cc] {
        let np = md.national_prefix.clone().unwrap_or_default();
        let descs = [
            &md.general_desc,
            &md.fixed_line,
            &md.mobile,
            &md.toll_free,
            &md.premium_rate,
            &md.shared_cost,
            &md.personal_number,
            &md.voip,
            &md.pager,
            &md.uan,
            &md.voicemail,
        ];
        for d in descs.into_iter().flatten() {
            if let Some(ex) = &d.example_number {
                v.push(ex.clone());
                v.push(format!("{np}{ex}"));
                v.push(format!("{np}{np}{ex}"));
            }
        }
        if !np.is_empty() {
            v.push(np.clone());
            v.push(format!("{np}{np}"));
        }
    }
    v
}

/// Checks `+cc` + national for every start and every total national length
/// 1..=20 (random digits after the start); a share also in other spellings.
/// Returns (inputs checked, answered by the fast path).
fn sweep(codes: &[i32], seed: u64) -> (u64, u64) {
    let n = normalizer();
    let mut rng = Lcg(seed);
    let (mut total, mut fast) = (0u64, 0u64);
    let mut raw = String::new();
    for &cc in codes {
        for start in starts(cc) {
            for len in 1..=20usize {
                let mut national: String = start.chars().take(len).collect();
                while national.len() < len {
                    national.push(rng.digit());
                }
                raw.clear();
                raw.push('+');
                raw.push_str(&cc.to_string());
                raw.push_str(&national);
                let want = n.normalize_reference(&raw);
                match n.fast_path(&raw) {
                    Some(got) => {
                        fast += 1;
                        assert_eq!(got, want, "fast_path({raw:?})");
                    }
                    None => assert_eq!(n.normalize(&raw), want, "normalize({raw:?})"),
                }
                total += 1;
                if rng.next().is_multiple_of(16) {
                    let (a, b) = national.split_at(national.len() / 2);
                    for spelled in [
                        format!("{cc} {a} {b}"),
                        format!("00{cc}-{a}-{b}"),
                        format!(" +{cc} ({a}) {b}."),
                        format!("+{cc}.{a}.{b}"),
                    ] {
                        assert_eq!(
                            n.normalize(&spelled),
                            want,
                            "normalize({spelled:?}) vs {raw:?}"
                        );
                        if let Some(got) = n.fast_path(&spelled) {
                            assert_eq!(got, want, "fast_path({spelled:?})");
                        }
                        total += 1;
                    }
                }
            }
        }
    }
    (total, fast)
}

#[test]
fn fast_path_equals_rlibphonenumber_on_generated_canonical_input() {
    let codes: Vec<i32> = by_code().keys().copied().collect();
    // Prefixes of calling codes and unassigned codes, too.
    let mut odd: Vec<i32> = (0..1000).filter(|c| !by_code().contains_key(c)).collect();
    odd.retain(|c| c % 7 == 0); // a sample
    let _ = normalizer();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let chunk = codes.len().div_ceil(threads);
    let (total, fast) = std::thread::scope(|s| {
        let handles: Vec<_> = codes
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| s.spawn(move || sweep(c, 0x5eed + i as u64)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let mut rng = Lcg(7);
    let mut unassigned = 0;
    for cc in odd {
        for len in 1..=20 {
            let raw: String = format!("+{cc}") + &(0..len).map(|_| rng.digit()).collect::<String>();
            check(&raw);
            unassigned += 1;
        }
    }
    eprintln!(
        "{total} generated inputs ({fast} on the fast path), {unassigned} with unassigned codes"
    );
    assert!(total > 4_000_000, "{total}");
    assert!(
        fast * 2 > total,
        "the fast path should answer most canonical input: {fast} of {total}"
    );
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Phone-like strings: digits (ASCII, fullwidth, Arabic-Indic), separators,
/// pluses, letters, extension labels, whitespace.
fn phoneish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[0-9]{1,4}",
        2 => prop::sample::select(vec![" ", "-", ".", "(", ")", "/", "\t", "\u{A0}", "\u{3000}", "\u{2010}"]).prop_map(str::to_owned),
        2 => prop::sample::select(vec!["+", "00", "\u{FF0B}", "(0)", "0"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec![" ext. ", " x", "#", ";ext=", ",,", " ext ", "tel:", ";phone-context=+1"]).prop_map(str::to_owned),
        1 => "[A-Za-z]{1,3}",
        1 => prop::sample::select(vec!["\u{FF11}", "\u{0661}", "\u{06F5}", "\u{0967}", "\u{FF10}"]).prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|v| v.concat())
}

/// `+` and a calling code and digits, optionally spelled with separators.
fn canonicalish() -> impl Strategy<Value = String> {
    let codes: Vec<i32> = PHONE_NUMBER_UTIL.get_supported_calling_codes().collect();
    (
        prop::sample::select(codes),
        "[0-9]{0,19}",
        prop::sample::select(vec!["", " ", "-", "."]),
    )
        .prop_map(|(cc, digits, sep)| {
            let (a, b) = digits.split_at(digits.len() / 2);
            format!("+{cc}{sep}{a}{sep}{b}")
        })
}

/// `+`, a calling code, a string the code's `national_prefix_for_parsing`
/// matches (the national numbers the fast path must hand over), more digits.
fn prefixed() -> impl Strategy<Value = String> {
    let patterns: Vec<(i32, String)> = by_code()
        .iter()
        .filter_map(|(cc, list)| {
            let p = prefix_pattern(list[0]);
            // ASCII digits for the generator; `$` dropped (the digits after it
            // then exercise the end-anchored alternatives failing).
            (!p.is_empty()).then(|| (*cc, p.replace("\\d", "[0-9]").replace('$', "")))
        })
        .collect();
    prop::sample::select(patterns)
        .prop_flat_map(|(cc, pattern)| {
            let start =
                proptest::string::string_regex(&pattern).expect("generator for the prefix pattern");
            (
                Just(cc),
                start,
                "[0-9]{0,14}",
                prop::sample::select(vec!["", " ", "-"]),
            )
        })
        .prop_map(|(cc, start, rest, sep)| format!("+{cc}{sep}{start}{sep}{rest}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn normalize_is_the_reference(raw in prop_oneof![phoneish(), canonicalish(), prefixed(), any::<String>()]) {
        check(&raw);
    }

    /// Normalizing the output again gives the same output, except where
    /// libphonenumber itself strips a national prefix a second time
    /// (`+4900301234567` → `+490301234567`: the `0` that the first parse kept
    /// because it was followed by another `0`): exactly the outputs the fast
    /// path does not answer, which must still agree with the reference.
    #[test]
    fn normalizing_twice_changes_nothing(raw in prop_oneof![phoneish(), canonicalish(), prefixed()]) {
        let n = normalizer();
        if let Some(p) = n.normalize(&raw) {
            let s = p.to_string();
            prop_assert_eq!(s.parse::<Phone>(), Ok(p));
            match n.fast_path(&s) {
                Some(again) => prop_assert_eq!(again, Some(p), "{:?} -> {}", raw, s),
                None => prop_assert_eq!(n.normalize(&s), n.normalize_reference(&s)),
            }
            if n.fast_path(&s).is_some() {
                prop_assert_eq!(n.normalize(&s), Some(p));
                prop_assert_eq!(reference(&s), Some(s.clone()));
            }
        }
    }
}

#[test]
fn normalizing_twice_differs_only_by_a_second_prefix_strip() {
    // libphonenumber's behaviour, kept: the output of the first is stripped again.
    assert_eq!(
        ours("+49 000 30 1234567").as_deref(),
        Some("+4900301234567")
    );
    assert_eq!(ours("+4900301234567").as_deref(), Some("+490301234567"));
    assert_eq!(ours("+490301234567").as_deref(), Some("+49301234567"));
    assert_eq!(ours("+49301234567").as_deref(), Some("+49301234567"));
    assert_eq!(normalizer().fast_path("+4900301234567"), None);
}

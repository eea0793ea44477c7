//! Parse + prepare of anything a client can send as a lead-events body or a raw-topic
//! record: no panic, no stack overflow, and what is accepted keeps the contract.
#![no_main]

use leadstream_pipeline::batch::{MAX_EVENTS, MAX_METADATA_BYTES, MAX_REJECTS_LISTED};
use leadstream_pipeline::parse::find_organization_id;
use leadstream_pipeline::{Preparer, Parser, PhoneNormalizer};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn normalizer() -> &'static PhoneNormalizer {
    static N: OnceLock<PhoneNormalizer> = OnceLock::new();
    N.get_or_init(PhoneNormalizer::new)
}

fn ingest() -> &'static Preparer {
    static INGEST: OnceLock<Preparer> = OnceLock::new();
    INGEST.get_or_init(|| Preparer::new(normalizer().clone()))
}

fuzz_target!(|data: &[u8]| {
    let mut parser = Parser::new();
    let org = find_organization_id(data);
    if let Ok(raw) = parser.parse_batch(data) {
        {
            let full = Preparer::organization_id(&raw);
            // The pre-authentication scan finds the org the full parse finds.
            if let Ok(o) = full {
                assert_eq!(org, Ok(o));
            }
            if let Ok(p) = ingest().prepare(raw) {
                assert_eq!(p.received, p.rows.len() + p.rejected);
                assert!(p.received <= MAX_EVENTS);
                assert!(p.rejects.len() <= MAX_REJECTS_LISTED.min(p.rejected));
                for row in &p.rows {
                    if let Some(m) = &row.metadata {
                        assert!(m.len() <= MAX_METADATA_BYTES);
                        assert!(m.starts_with('{'));
                        assert!(serde_json::from_str::<serde::de::IgnoredAny>(m).is_ok(), "stored metadata is JSON: {m}");
                    }
                    // A stored phone the fast path decides normalizes to itself. One it
                    // hands to rlibphonenumber may not: libphonenumber strips a second
                    // national prefix (`+92 00 0 26…` → `+92000 26…` → `+9200 26…`; see
                    // "Normalizing twice" in pipeline/src/phone/mod.rs), and we keep its
                    // answers. Such a phone still gets the reference's answer.
                    let stored = row.phone.to_string();
                    match normalizer().fast_path(&stored) {
                        Some(answer) => assert_eq!(answer, Some(row.phone), "fast path on {stored}"),
                        None => assert_eq!(
                            normalizer().normalize(&stored),
                            normalizer().normalize_reference(&stored),
                            "fallback on {stored}"
                        ),
                    }
                }
            }
        }
    }
    if let Ok(rec) = parser.parse_record(data) {
        let _ = ingest().prepare(rec.into_batch());
    }
});

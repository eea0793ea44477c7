//! `PhoneNormalizer::normalize` on any UTF-8 input: no panic; the fast path, the
//! cache and the uncached reference agree; an accepted number prints as a stored
//! form that parses back to itself and normalizes back to itself — except where
//! libphonenumber strips a second national prefix (then the fast path does not
//! answer the output, and `normalize` must still equal the reference).
#![no_main]

use std::sync::OnceLock;

use leadstream_pipeline::phone::{Phone, PhoneNormalizer};
use libfuzzer_sys::fuzz_target;

fn normalizer() -> &'static PhoneNormalizer {
    static N: OnceLock<PhoneNormalizer> = OnceLock::new();
    N.get_or_init(PhoneNormalizer::new)
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let n = normalizer();
    let got = n.normalize(raw);
    assert_eq!(got, n.normalize(raw), "cached answer for {raw:?}");
    assert_eq!(got, n.normalize_reference(raw), "reference for {raw:?}");
    if let Some(fast) = n.fast_path(raw) {
        assert_eq!(fast, got, "fast path for {raw:?}");
    }
    if let Some(p) = got {
        let stored = p.to_string();
        assert_eq!(stored.parse::<Phone>(), Ok(p), "stored form of {raw:?}");
        match n.fast_path(&stored) {
            Some(again) => assert_eq!(again, Some(p), "{raw:?} -> {stored}"),
            None => assert_eq!(
                n.normalize(&stored),
                n.normalize_reference(&stored),
                "{stored}"
            ),
        }
    }
});

//! The webhook engine's parsers of untrusted text, on any UTF-8 input: an endpoint
//! URL (`url_problem`, `literal_ip`), a receiver's `Retry-After`, a retry schedule and
//! a `whsec_` secret. No panic; what they accept keeps its contract: an accepted URL
//! has an http(s) scheme and a host, a literal address is only found in a URL that
//! parses, a Retry-After of delay-seconds is exactly those seconds, an accepted
//! schedule's gaps are above zero, an accepted secret prints back to itself.
#![no_main]

use leadstream_pipeline::retry::{parse_retry_after, DeliveryRetry};
use leadstream_pipeline::signature::WebhookSecret;
use leadstream_pipeline::target::{literal_ip, url_problem};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if url_problem(text).is_none() {
        assert!(
            text.starts_with("http://") || text.starts_with("https://") || {
                let lower = text.to_ascii_lowercase();
                lower.starts_with("http://") || lower.starts_with("https://")
            },
            "accepted {text:?} without an http(s) scheme"
        );
    }
    let _ = literal_ip(text);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Some(d) = parse_retry_after(text, now) {
        let t = text.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = t.parse::<u64>() {
                assert_eq!(d, Duration::from_secs(n));
            }
        }
    }
    if let Ok(gaps) = DeliveryRetry::parse_schedule(text) {
        assert!(gaps.iter().all(|g| !g.is_zero()), "{text:?} gave a zero gap");
    }
    if let Ok(secret) = WebhookSecret::parse(text) {
        assert_eq!(WebhookSecret::parse(&secret.text()).unwrap(), secret);
    }
});

//! Domain events' parsers of untrusted bytes: a `POST /api/v1/events` body and a
//! WhatsApp webhook body. No panic; what they accept keeps its contract: a trigger
//! event's object is JSON, and the action run built from it is a JSON object of
//! exactly the object's key and `apptoto_id`, the object as sent.
#![no_main]

use leadstream_connectors::domain::events::{parse, Body};
use leadstream_connectors::domain::payloads::action_run;
use leadstream_connectors::domain::whatsapp::{content_of, seconds_ms, Webhook};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = parse(
        data,
        |p| p.starts_with('+').then(|| p.to_owned()),
        || "generated".to_owned(),
    ) {
        assert!(!ev.id.is_empty());
        if let Body::Trigger { key, object, .. } = &ev.body {
            let sent: serde_json::Value =
                serde_json::from_str(object.get()).expect("an accepted object is JSON");
            let run: serde_json::Value =
                serde_json::from_slice(&action_run(key, object.get())).expect("a run is JSON");
            let run = run.as_object().expect("a run is an object");
            assert_eq!(run.len(), 2, "{run:?}");
            assert_eq!(run[*key], sent);
        }
    }
    if let Ok(hook) = serde_json::from_slice::<Webhook>(data) {
        for change in hook.entry.iter().flat_map(|e| &e.changes) {
            for m in &change.value.messages {
                let _ = content_of(m);
                let _ = seconds_ms(&m.timestamp);
            }
        }
    }
});

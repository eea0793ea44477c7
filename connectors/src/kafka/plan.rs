//! The routing plan of one consumer batch: which rows to store, which records to
//! dead-letter, which events to re-route to their lead's partition. Pure (but for the
//! parser's scratch buffers): [`plan`] reads records and decides, the loop in
//! [`super::source`] carries the decisions out.
//!
//! Each stored row keeps its [`Origin`] (the record it came from and its index in it),
//! so a row the store later refuses for good can be dead-lettered with its source and
//! its own JSON ([`refused_dead_letters`]).

use super::dlq::{self, DeadLetter, Source};
use super::{lead_key, partition_for, Version};
use leadstream_pipeline::batch::RejectReason;
use leadstream_pipeline::parse::{Events, Scalar, Slot};
use leadstream_pipeline::time::format_rfc3339_us;
use leadstream_pipeline::{OrgId, Parser, Phone, Prepared, Preparer, Row};
use rdkafka::message::{Message, OwnedMessage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Where an outgoing record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// The dead-letter topic.
    DeadLetter,
    /// The raw topic's partition of the event's lead.
    Raw(i32),
}

/// A record to produce before the batch's offsets are committed.
#[derive(Debug)]
pub struct Outgoing {
    pub to: To,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What a batch carried, for the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events (a per-event record is one; records refused whole count none).
    pub events: u64,
    pub rejected_rows: u64,
    pub bad_records: u64,
    pub forwarded: u64,
}

/// Where a stored row came from: the record (its index in the batch) and the row's
/// index in the record's `events` (0 for a per-event record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub record: usize,
    pub index: usize,
}

/// The rows of one `(organizationId, eventType)` to store, each with its origin
/// (`origins[i]` is where `batch.rows[i]` came from).
#[derive(Debug, Clone)]
pub struct Group {
    pub batch: Prepared,
    pub origins: Vec<Origin>,
}

/// What to do with one batch.
#[derive(Debug)]
pub struct Plan {
    pub groups: Vec<Group>,
    pub outgoing: Vec<Outgoing>,
    pub counts: Counts,
}

/// An event re-routed to its lead's raw partition (version 1): a per-event raw record
/// holding the normalized row, so reading it again (with [`Parser::parse_record`],
/// which ignores the extra fields) gives the same key and fingerprint.
///
/// ```json
/// {"kind":"rerouted_event","v":1,"organizationId":7,"eventType":"t","phoneE164":"+15551230000",
///  "occurredAt":"2026-05-12T18:34:00.000000Z","metadata":{"a":[1]},
///  "reroutedFrom":{"topic":"leadstream.raw","partition":0,"offset":5}}
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "rerouted_event", rename_all = "camelCase")]
pub struct ReroutedEvent {
    pub v: Version<1>,
    pub organization_id: OrgId,
    pub event_type: String,
    #[serde(with = "super::e164")]
    pub phone_e164: Phone,
    /// RFC 3339, UTC, six fractional digits.
    pub occurred_at: String,
    /// Compact JSON object text, as parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<serde_json::value::RawValue>>,
    /// The record it was read from.
    pub rerouted_from: Source,
}

impl ReroutedEvent {
    /// The record for `row` of `org`/`event_type`, read from `from`.
    pub fn new(org: OrgId, event_type: &str, row: &Row, from: Source) -> Self {
        Self {
            v: Version,
            organization_id: org,
            event_type: event_type.to_owned(),
            phone_e164: row.phone,
            occurred_at: format_rfc3339_us(row.occurred_at_us),
            // Metadata is a JSON object already checked by the parser.
            metadata: row
                .metadata
                .as_deref()
                .and_then(|m| serde_json::value::RawValue::from_string(m.to_owned()).ok()),
            rerouted_from: from,
        }
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a re-routed event serializes")
    }
}

fn source_of(m: &OwnedMessage) -> Source {
    Source {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
    }
}

/// Parses, prepares and routes every record of `msgs`: rows of leads whose raw
/// partition (of `partitions`) is the one read from or in `owned` are stored here,
/// grouped by `(organizationId, eventType)`; rows of other leads are re-routed;
/// rejected rows and invalid or unparseable records are dead-lettered.
pub fn plan(
    msgs: &[OwnedMessage],
    ingest: &Preparer,
    parser: &mut Parser,
    buf: &mut Vec<u8>,
    partitions: i32,
    owned: &BTreeSet<i32>,
) -> Plan {
    let mut groups: HashMap<(OrgId, String), Group> = HashMap::new();
    let mut outgoing = Vec::new();
    let mut counts = Counts::default();
    for (record, m) in msgs.iter().enumerate() {
        let mut dead = |d: DeadLetter| {
            outgoing.push(Outgoing {
                to: To::DeadLetter,
                key: m.key().map(<[u8]>::to_vec),
                payload: d.encode(),
            })
        };
        let Some(payload) = m.payload().filter(|p| !p.is_empty()) else {
            counts.bad_records += 1;
            dead(DeadLetter::unparseable(
                source_of(m),
                "empty record".into(),
                &[],
            ));
            continue;
        };
        buf.clear();
        buf.extend_from_slice(payload);
        let raw_record = match parser.parse_record(buf) {
            Ok(r) => r,
            Err(reason) => {
                counts.bad_records += 1;
                dead(DeadLetter::unparseable(source_of(m), reason, payload));
                continue;
            }
        };
        let is_batch = raw_record.is_batch();
        let raw = raw_record.into_batch();
        let org_hint = Preparer::organization_id(&raw).ok();
        let type_hint = raw
            .event_type
            .as_ref()
            .and_then(Scalar::as_str)
            .map(str::to_owned);
        let prepared = match ingest.prepare(raw) {
            Ok(p) => p,
            Err(e) => {
                counts.bad_records += 1;
                dead(DeadLetter::invalid_record(
                    source_of(m),
                    org_hint,
                    type_hint,
                    e.to_string(),
                    payload,
                ));
                continue;
            }
        };
        counts.events += prepared.received as u64;

        let mut rejected_at = Vec::new();
        if prepared.rejected > 0 {
            counts.rejected_rows += prepared.rejected as u64;
            let rejects: Vec<(usize, RejectReason)> = if prepared.rejects.len() == prepared.rejected
            {
                prepared
                    .rejects
                    .iter()
                    .map(|r| (r.index, r.reason))
                    .collect()
            } else {
                // `prepare` lists the first 50; the dead letter wants every one.
                all_rejects(
                    ingest,
                    parser,
                    buf,
                    payload,
                    prepared.org,
                    &prepared.event_type,
                )
            };
            let rows = if is_batch {
                dlq::batch_rows(payload)
            } else {
                None
            };
            for &(index, reason) in &rejects {
                let row = row_json(is_batch, rows.as_deref(), index, payload);
                dead(DeadLetter::rejected_row(
                    source_of(m),
                    prepared.org,
                    &prepared.event_type,
                    index,
                    reason.to_string(),
                    row,
                    payload,
                ));
            }
            rejected_at = rejects.into_iter().map(|(i, _)| i).collect();
        }

        let Prepared {
            org,
            event_type,
            rows,
            ..
        } = prepared;
        // The accepted rows in input order are the indices without a reject.
        let mut indices = (0..).filter(|i| rejected_at.binary_search(i).is_err());
        let mut keep = Vec::with_capacity(rows.len());
        let mut origins = Vec::with_capacity(rows.len());
        for row in rows {
            let index = indices.next().expect("an index per row");
            let p = partition_for(org, row.phone, partitions);
            // Leads of a partition this process owns meet the same index and writer
            // here, whichever partition they were read from; others go to their own.
            if p == m.partition() || owned.contains(&p) {
                keep.push(row);
                origins.push(Origin { record, index });
            } else {
                counts.forwarded += 1;
                outgoing.push(Outgoing {
                    to: To::Raw(p),
                    key: Some(lead_key(org, row.phone).into_bytes()),
                    payload: ReroutedEvent::new(org, &event_type, &row, source_of(m)).encode(),
                });
            }
        }
        if !keep.is_empty() {
            let group = groups
                .entry((org, event_type))
                .or_insert_with_key(|(org, event_type)| Group {
                    batch: Prepared {
                        org: *org,
                        event_type: event_type.clone(),
                        received: 0,
                        rows: Vec::new(),
                        rejected: 0,
                        rejects: Vec::new(),
                    },
                    origins: Vec::new(),
                });
            group.batch.received += keep.len();
            group.batch.rows.append(&mut keep);
            group.origins.append(&mut origins);
        }
    }
    Plan {
        groups: groups.into_values().collect(),
        outgoing,
        counts,
    }
}

/// The JSON of row `index` of a record: its entry of `events` for a batch record
/// (`rows`, from [`dlq::batch_rows`]), the whole record for a per-event one; `None`
/// when it cannot be cut out (the dead letter then keeps the whole record).
fn row_json(
    is_batch: bool,
    rows: Option<&[&serde_json::value::RawValue]>,
    index: usize,
    payload: &[u8],
) -> Option<String> {
    match rows {
        Some(rows) => rows.get(index).map(|r| r.get().to_owned()),
        None if !is_batch => std::str::from_utf8(payload).ok().map(str::to_owned),
        None => None,
    }
}

/// Every reject of a record, in order: judges each event again (the slow path, for
/// records with more rejects than [`Prepared::rejects`] lists).
fn all_rejects(
    ingest: &Preparer,
    parser: &mut Parser,
    buf: &mut Vec<u8>,
    payload: &[u8],
    org: OrgId,
    event_type: &str,
) -> Vec<(usize, RejectReason)> {
    buf.clear();
    buf.extend_from_slice(payload);
    let Ok(record) = parser.parse_record(buf) else {
        return Vec::new();
    };
    let Some(Events::List(slots)) = record.into_batch().events else {
        return Vec::new();
    };
    slots
        .into_iter()
        .enumerate()
        .filter_map(|(i, slot)| match slot {
            Slot::Event(ev) => ingest
                .judge(org, event_type, ev)
                .err()
                .map(|(reason, _)| (i, reason)),
            Slot::NotObject(_) => Some((i, RejectReason::NotAnObject)),
        })
        .collect()
}

/// The dead letters of rows the store refused for good, one [`dlq::Kind::RefusedByStore`]
/// each: `refused` holds positions in a group of `org`/`event_type` (whose rows came
/// from `origins`) with the store's reason; each keeps the row's source record and
/// the row's own JSON.
pub fn refused_dead_letters(
    msgs: &[OwnedMessage],
    org: OrgId,
    event_type: &str,
    origins: &[Origin],
    refused: &[(usize, String)],
) -> Vec<Outgoing> {
    let mut batch_rows: HashMap<usize, Option<Vec<&serde_json::value::RawValue>>> = HashMap::new();
    refused
        .iter()
        .map(|(i, reason)| {
            let Origin { record, index } = origins[*i];
            let m = &msgs[record];
            let payload = m.payload().unwrap_or_default();
            let rows = batch_rows
                .entry(record)
                .or_insert_with(|| dlq::batch_rows(payload));
            let row = row_json(rows.is_some(), rows.as_deref(), index, payload);
            let d = DeadLetter::refused_by_store(
                source_of(m),
                org,
                event_type,
                index,
                reason.clone(),
                row,
                payload,
            );
            Outgoing {
                to: To::DeadLetter,
                key: m.key().map(<[u8]>::to_vec),
                payload: d.encode(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadstream_pipeline::PhoneNormalizer;
    use rdkafka::message::Timestamp;

    fn msg(partition: i32, offset: i64, payload: &[u8]) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.to_vec()),
            None,
            "raw".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn run(msgs: &[OwnedMessage], partitions: i32, owned: &[i32]) -> Plan {
        let ingest = Preparer::new(PhoneNormalizer::new());
        let owned: BTreeSet<i32> = owned.iter().copied().collect();
        plan(
            msgs,
            &ingest,
            &mut Parser::new(),
            &mut Vec::new(),
            partitions,
            &owned,
        )
    }

    fn dead_letters(out: &[Outgoing]) -> Vec<serde_json::Value> {
        out.iter()
            .filter(|o| o.to == To::DeadLetter)
            .map(|o| serde_json::from_slice(&o.payload).unwrap())
            .collect()
    }

    #[test]
    fn both_shapes_are_grouped_by_org_and_type() {
        let msgs = [
            msg(0, 0, br#"{"organizationId":1,"eventType":"a","phoneE164":"+15551230001","occurredAt":"2026-05-12T18:34:00Z"}"#),
            msg(0, 1, br#"{"organizationId":1,"eventType":"a","events":[{"phoneE164":"+15551230002","occurredAt":"2026-05-12T18:34:00Z"},{"phoneE164":"+15551230003","occurredAt":"2026-05-12T18:34:00Z","metadata":{"k":1}}]}"#),
            msg(0, 2, br#"{"organizationId":2,"eventType":"a","phoneE164":"+15551230001","occurredAt":"2026-05-12T18:34:00Z"}"#),
        ];
        let p = run(&msgs, 1, &[0]);
        assert_eq!(
            p.counts,
            Counts {
                events: 4,
                ..Counts::default()
            }
        );
        assert!(p.outgoing.is_empty());
        let mut sizes: Vec<(OrgId, usize)> = p
            .groups
            .iter()
            .map(|g| (g.batch.org, g.batch.rows.len()))
            .collect();
        sizes.sort();
        assert_eq!(sizes, [(1, 3), (2, 1)]);
        let g = p.groups.iter().find(|g| g.batch.org == 1).unwrap();
        assert_eq!(
            g.origins,
            [
                Origin {
                    record: 0,
                    index: 0
                },
                Origin {
                    record: 1,
                    index: 0
                },
                Origin {
                    record: 1,
                    index: 1
                }
            ]
        );
    }

    #[test]
    fn every_rejected_row_and_bad_record_is_dead_lettered_with_its_source() {
        // 60 bad rows: more than `prepare` lists.
        let mut events: Vec<String> = (0..60)
            .map(|_| r#"{"phoneE164":"n/a","occurredAt":"2026-05-12T18:34:00Z"}"#.to_string())
            .collect();
        events.push(r#"{"phoneE164":"+15551230001","occurredAt":"2026-05-12T18:34:00Z"}"#.into());
        let batch = format!(
            r#"{{"organizationId":1,"eventType":"a","events":[{}]}}"#,
            events.join(",")
        );
        let msgs = [
            msg(0, 10, batch.as_bytes()),
            msg(0, 11, b"not json"),
            msg(0, 12, br#"{"organizationId":1,"eventType":"","phoneE164":"+15551230001"}"#),
            msg(0, 13, br#"{"organizationId":1,"eventType":"a","phoneE164":"+15551230001","occurredAt":"nope"}"#),
            msg(0, 14, &[0xff, 0x00]),
        ];
        let p = run(&msgs, 1, &[0]);
        assert_eq!(
            p.counts,
            Counts {
                events: 62,
                rejected_rows: 61,
                bad_records: 3,
                forwarded: 0
            }
        );
        let dl = dead_letters(&p.outgoing);
        assert_eq!(dl.len(), 64);
        assert_eq!(dl[0]["kind"], "rejected_row");
        assert_eq!(dl[0]["index"], 0);
        assert_eq!(dl[59]["index"], 59);
        assert_eq!(
            dl[59]["original"],
            r#"{"phoneE164":"n/a","occurredAt":"2026-05-12T18:34:00Z"}"#
        );
        assert_eq!(dl[59]["originalScope"], "row");
        assert_eq!(
            dl[59]["source"],
            serde_json::json!({"topic": "raw", "partition": 0, "offset": 10})
        );
        assert_eq!(dl[60]["kind"], "unparseable_record");
        assert_eq!(dl[60]["original"], "not json");
        assert_eq!(dl[61]["kind"], "invalid_record");
        assert_eq!(dl[61]["reason"], "eventType is empty");
        assert_eq!(dl[62]["kind"], "rejected_row");
        assert_eq!(dl[62]["reason"], "invalid occurredAt");
        assert_eq!(dl[62]["originalScope"], "row");
        assert_eq!(dl[63]["originalEncoding"], "base64");
        assert_eq!(
            p.groups.iter().map(|g| g.batch.rows.len()).sum::<usize>(),
            1
        );
        // The one good row keeps its index in the record, past the 60 rejects.
        assert_eq!(
            p.groups[0].origins,
            [Origin {
                record: 0,
                index: 60
            }]
        );
    }

    #[test]
    fn leads_of_partitions_owned_elsewhere_are_rerouted_normalized() {
        // Find a phone whose lead is on partition 1 of 2, and read it from partition 0.
        let (phone, e164) = (0..100)
            .map(|i| (format!("+1 (555) 123-{:04}", i), Phone(15551230000 + i)))
            .find(|(_, p)| partition_for(7, *p, 2) == 1)
            .unwrap();
        let body = format!(
            r#"{{"organizationId":7,"eventType":"t","phoneE164":"{phone}","occurredAt":"2026-05-12T13:34:00.0001-05:00","metadata":{{"a":[1]}}}}"#
        );
        let msgs = [msg(0, 5, body.as_bytes())];
        // Owning both partitions: stored here.
        let p = run(&msgs, 2, &[0, 1]);
        assert_eq!((p.groups.len(), p.outgoing.len()), (1, 0));
        // Owning only partition 0: re-routed to partition 1, keyed by lead.
        let p = run(&msgs, 2, &[0]);
        assert_eq!(p.counts.forwarded, 1);
        assert!(p.groups.is_empty());
        let out = &p.outgoing[0];
        assert_eq!(out.to, To::Raw(1));
        assert_eq!(out.key.as_deref(), Some(format!("7:{e164}").as_bytes()));
        let v: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "rerouted_event", "v": 1, "organizationId": 7, "eventType": "t", "phoneE164": e164.to_string(),
                "occurredAt": "2026-05-12T18:34:00.000100Z", "metadata": {"a": [1]},
                "reroutedFrom": {"topic": "raw", "partition": 0, "offset": 5}})
        );
        let typed: ReroutedEvent = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!((typed.organization_id, typed.phone_e164), (7, e164));
        // Read again from its own partition, it is stored with the same fingerprint.
        let again = run(&[msg(1, 0, &out.payload)], 2, &[1]);
        let original = run(&msgs, 2, &[0, 1]);
        assert_eq!(
            again.groups[0].batch.rows[0].probe,
            original.groups[0].batch.rows[0].probe
        );
        assert_eq!(
            again.groups[0].batch.rows[0].occurred_at_us % 1_000_000,
            100
        );
    }

    #[test]
    fn rows_the_store_refused_are_dead_lettered_with_their_record_and_own_json() {
        let msgs = [
            msg(3, 40, br#"{"organizationId":1,"eventType":"a","phoneE164":"+15551230001","occurredAt":"2026-05-12T18:34:00Z"}"#),
            msg(3, 41, br#"{"organizationId":1,"eventType":"a","events":[{"phoneE164":"n/a"},{"phoneE164":"+15551230002","occurredAt":"2026-05-12T18:34:00Z", "x":1}]}"#),
        ];
        let p = run(&msgs, 1, &[0]);
        let g = &p.groups[0];
        assert_eq!(
            g.origins,
            [
                Origin {
                    record: 0,
                    index: 0
                },
                Origin {
                    record: 1,
                    index: 1
                }
            ]
        );
        let why = "event store refused the rows (insert): Code: 395".to_string();
        let dl = dead_letters(&refused_dead_letters(
            &msgs,
            1,
            "a",
            &g.origins,
            &[(0, why.clone()), (1, why)],
        ));
        assert_eq!(dl[0]["kind"], "refused_by_store");
        assert_eq!(
            dl[0]["source"],
            serde_json::json!({"topic": "raw", "partition": 3, "offset": 40})
        );
        assert_eq!(dl[0]["originalScope"], "row");
        assert_eq!(
            dl[0]["original"].as_str().unwrap().as_bytes(),
            msgs[0].payload().unwrap()
        );
        assert_eq!(
            (
                dl[1]["index"].as_u64(),
                dl[1]["organizationId"].as_i64(),
                dl[1]["eventType"].as_str()
            ),
            (Some(1), Some(1), Some("a"))
        );
        assert_eq!(
            dl[1]["original"],
            r#"{"phoneE164":"+15551230002","occurredAt":"2026-05-12T18:34:00Z", "x":1}"#
        );
        assert_eq!(
            dl[1]["reason"],
            "event store refused the rows (insert): Code: 395"
        );
    }
}

//! Campaigns, audiences, opt-outs, sends and what each send emitted, beside the
//! delivery engine's deliveries (so a chunk of a send is marked emitted in the same
//! transaction that publishes its deliveries): in `webhooks.db`, or the shared
//! database. One statement serves both backends ([`Sql`]) except where noted.

use super::model::{Campaign, CampaignState, Send, SendTime};
use crate::db::sql::{args, Row, Sql};
use crate::db::RepoError;
use crate::delivery::store::DbError;
use leadstream_pipeline::eligibility::{AudienceFilter, EventFilter, Lead, Mode};
use leadstream_pipeline::{OrgId, Phone};

/// A stored campaign state; one this binary does not know is a read error, never a
/// default.
fn state_of(text: String) -> Result<CampaignState, RepoError> {
    CampaignState::parse(&text).ok_or(RepoError::Unknown {
        column: "campaigns.state",
        value: text,
    })
}

fn campaign_of(r: &Row<'_>) -> Result<Campaign, RepoError> {
    let paused_from: Option<String> = r.get(4)?;
    Ok(Campaign {
        id: r.get(0)?,
        org: r.get(1)?,
        name: r.get(2)?,
        state: state_of(r.get(3)?)?,
        paused_from: paused_from.map(state_of).transpose()?,
        delivery_url: r.get(5)?,
        endpoint_id: r.get(6)?,
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
    })
}

const CAMPAIGN_COLUMNS: &str =
    "id, org_id, name, state, paused_from, delivery_url, endpoint_id, created_at, updated_at";

pub fn insert_campaign(
    conn: Sql<'_>,
    org: OrgId,
    name: &str,
    delivery_url: Option<&str>,
    endpoint_id: i64,
    now_ms: i64,
) -> Result<Campaign, DbError> {
    Ok(conn.query_one(
        &format!(
            "INSERT INTO campaigns (org_id, name, state, delivery_url, endpoint_id, created_at, updated_at) \
             VALUES (?1, ?2, 'draft', ?3, ?4, ?5, ?5) RETURNING {CAMPAIGN_COLUMNS}"
        ),
        args![org, name, delivery_url, endpoint_id, now_ms],
        campaign_of,
    )?)
}

pub fn campaign(conn: Sql<'_>, id: i64) -> Result<Option<Campaign>, DbError> {
    Ok(conn.query_opt(
        &format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?1"),
        args![id],
        campaign_of,
    )?)
}

/// `columns` (`a, b`) qualified by `table` (`t.a, t.b`).
fn qualified(table: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{table}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `org`'s campaigns, newest first, with ids below `before` (a cursor), each with its
/// audience size: one statement for the page, whatever its length.
pub fn campaigns(
    conn: Sql<'_>,
    org: OrgId,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<(Campaign, u64)>, DbError> {
    let columns = qualified("page", CAMPAIGN_COLUMNS);
    Ok(conn.query(
        &format!(
            "WITH page AS (SELECT {CAMPAIGN_COLUMNS} FROM campaigns \
               WHERE org_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3), \
             sizes AS (SELECT campaign_id, count(*) AS n FROM audience \
               WHERE campaign_id IN (SELECT id FROM page) GROUP BY campaign_id) \
             SELECT {columns}, coalesce(sizes.n, 0) FROM page \
             LEFT JOIN sizes ON sizes.campaign_id = page.id ORDER BY page.id DESC"
        ),
        args![org, before.unwrap_or(i64::MAX), limit],
        |r| Ok((campaign_of(r)?, r.get::<u64>(9)?)),
    )?)
}

/// How many campaigns `org` has.
pub fn campaign_count(conn: Sql<'_>, org: OrgId) -> Result<u64, DbError> {
    Ok(conn.query_one(
        "SELECT count(*) FROM campaigns WHERE org_id = ?1",
        args![org],
        |r| r.get::<u64>(0),
    )?)
}

pub fn set_state(
    conn: Sql<'_>,
    id: i64,
    state: CampaignState,
    paused_from: Option<CampaignState>,
    now_ms: i64,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE campaigns SET state = ?2, paused_from = ?3, updated_at = ?4 WHERE id = ?1",
        args![id, state.as_str(), paused_from.map(|s| s.as_str()), now_ms],
    )?;
    Ok(())
}

pub fn update_draft(
    conn: Sql<'_>,
    id: i64,
    name: &str,
    delivery_url: Option<&str>,
    endpoint_id: i64,
    now_ms: i64,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE campaigns SET name = ?2, delivery_url = ?3, endpoint_id = ?4, updated_at = ?5 WHERE id = ?1",
        args![id, name, delivery_url, endpoint_id, now_ms],
    )?;
    Ok(())
}

/// One row of an audience upload, normalized.
pub struct AudienceRow {
    pub phone: Phone,
    pub external_id: Option<String>,
    /// A JSON object's text.
    pub variables: String,
}

/// Merges `rows` into the audience in order (a later row's externalId and variables
/// win); answers how many phones were new to it.
pub fn merge_audience(conn: Sql<'_>, campaign: i64, rows: &[AudienceRow]) -> Result<u64, DbError> {
    if let Sql::Postgres(s) = conn {
        // The shared database: the rows as arrays, one statement (a round trip per
        // row showed); the last row of a phone wins, as below.
        let phones: Vec<i64> = rows.iter().map(|r| r.phone.0 as i64).collect();
        let ids: Vec<Option<&str>> = rows.iter().map(|r| r.external_id.as_deref()).collect();
        let vars: Vec<&str> = rows.iter().map(|r| r.variables.as_str()).collect();
        let added: i64 = s.with_client(|c| {
            c.query_one(
                "WITH u AS (SELECT DISTINCT ON (phone) phone, ext, vars \
                   FROM UNNEST($2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY AS u (phone, ext, vars, n) \
                   ORDER BY phone, n DESC), \
                 ins AS (INSERT INTO audience (campaign_id, phone, external_id, variables) \
                   SELECT $1, phone, ext, vars FROM u \
                   ON CONFLICT (campaign_id, phone) DO UPDATE SET external_id = excluded.external_id, variables = excluded.variables \
                   RETURNING (xmax = 0) AS inserted) \
                 SELECT count(*) FILTER (WHERE inserted) FROM ins",
                &[&campaign, &phones, &ids, &vars],
            )?
            .try_get(0)
        })?;
        return Ok(added as u64);
    }
    let mut added = 0;
    for r in rows {
        let phone = r.phone.0 as i64;
        let known = conn.query_opt(
            "SELECT 1 FROM audience WHERE campaign_id = ?1 AND phone = ?2",
            args![campaign, phone],
            |_| Ok(()),
        )?;
        if known.is_none() {
            added += 1;
        }
        conn.execute(
            "INSERT INTO audience (campaign_id, phone, external_id, variables) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (campaign_id, phone) DO UPDATE SET external_id = excluded.external_id, variables = excluded.variables",
            args![campaign, phone, r.external_id, r.variables],
        )?;
    }
    Ok(added)
}

/// The campaign's audience, in phone order.
pub fn audience(conn: Sql<'_>, campaign: i64) -> Result<Vec<Lead>, DbError> {
    Ok(conn.query(
        "SELECT phone, external_id FROM audience WHERE campaign_id = ?1 ORDER BY phone",
        args![campaign],
        |r| {
            Ok(Lead {
                phone: Phone(r.get::<i64>(0)? as u64),
                external_id: r.get(1)?,
            })
        },
    )?)
}

pub fn audience_size(conn: Sql<'_>, campaign: i64) -> Result<u64, DbError> {
    Ok(conn.query_one(
        "SELECT count(*) FROM audience WHERE campaign_id = ?1",
        args![campaign],
        |r| r.get::<u64>(0),
    )?)
}

/// The org's opted-out phones.
pub fn opted_out(conn: Sql<'_>, org: OrgId) -> Result<std::collections::HashSet<u64>, DbError> {
    Ok(conn
        .query(
            "SELECT phone FROM opt_outs WHERE org_id = ?1",
            args![org],
            |r| Ok(r.get::<i64>(0)? as u64),
        )?
        .into_iter()
        .collect())
}

/// Adds opt-outs; answers how many were new.
pub fn add_opt_outs(
    conn: Sql<'_>,
    org: OrgId,
    phones: &[Phone],
    now_ms: i64,
) -> Result<u64, DbError> {
    let mut n = 0;
    for p in phones {
        n += conn.execute(
            "INSERT INTO opt_outs (org_id, phone, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            args![org, p.0 as i64, now_ms],
        )? as u64;
    }
    Ok(n)
}

/// Removes opt-outs; answers how many there were.
pub fn remove_opt_outs(conn: Sql<'_>, org: OrgId, phones: &[Phone]) -> Result<u64, DbError> {
    let mut n = 0;
    for p in phones {
        n += conn.execute(
            "DELETE FROM opt_outs WHERE org_id = ?1 AND phone = ?2",
            args![org, p.0 as i64],
        )? as u64;
    }
    Ok(n)
}

/// When `phone` opted out of `org`, if it did.
pub fn opt_out_since(conn: Sql<'_>, org: OrgId, phone: Phone) -> Result<Option<i64>, DbError> {
    Ok(conn.query_opt(
        "SELECT created_at FROM opt_outs WHERE org_id = ?1 AND phone = ?2",
        args![org, phone.0 as i64],
        |r| r.get(0),
    )?)
}

const SEND_COLUMNS: &str = "id, campaign_id, org_id, scheduled_us, local_time, time_zone, template_name, language, \
     filter_mode, filter_event_type, filter_within, use_audience_filter, created_at, materialized_at, emitted_all";

fn send_of(r: &Row<'_>) -> Result<Send, RepoError> {
    let mode: Option<String> = r.get(8)?;
    let event_type: Option<String> = r.get(9)?;
    let within: Option<i64> = r.get(10)?;
    let event_filter = match (mode.as_deref().and_then(Mode::parse), event_type) {
        (Some(mode), Some(event_type)) => Some(EventFilter {
            mode,
            event_type,
            within_minutes: within.map(|m| m as u64),
        }),
        _ => None,
    };
    let local_time: Option<String> = r.get(4)?;
    let time_zone: Option<String> = r.get(5)?;
    Ok(Send {
        id: r.get(0)?,
        campaign_id: r.get(1)?,
        org: r.get(2)?,
        time: SendTime {
            at_us: r.get(3)?,
            local: local_time.zip(time_zone),
        },
        template_name: r.get(6)?,
        language: r.get(7)?,
        event_filter,
        use_audience_filter: r.get(11)?,
        created_at_ms: r.get(12)?,
        materialized_at_ms: r.get(13)?,
        emitted_all: r.get(14)?,
    })
}

pub fn insert_send(conn: Sql<'_>, s: &Send) -> Result<Send, DbError> {
    let f = s.event_filter.as_ref();
    Ok(conn.query_one(
        &format!(
            "INSERT INTO sends (campaign_id, org_id, scheduled_us, local_time, time_zone, template_name, language, \
             filter_mode, filter_event_type, filter_within, use_audience_filter, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING {SEND_COLUMNS}"
        ),
        args![
            s.campaign_id,
            s.org,
            s.time.at_us,
            s.time.local.as_ref().map(|l| &l.0),
            s.time.local.as_ref().map(|l| &l.1),
            s.template_name,
            s.language,
            f.map(|f| f.mode.as_str()),
            f.map(|f| &f.event_type),
            f.and_then(|f| f.within_minutes).map(|m| m as i64),
            s.use_audience_filter,
            s.created_at_ms,
        ],
        send_of,
    )?)
}

pub fn send(conn: Sql<'_>, id: i64) -> Result<Option<Send>, DbError> {
    Ok(conn.query_opt(
        &format!("SELECT {SEND_COLUMNS} FROM sends WHERE id = ?1"),
        args![id],
        send_of,
    )?)
}

/// A send's delivery progress: leads emitted, and of their deliveries those
/// succeeded, failed and still pending (those the log still keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendProgress {
    pub emitted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
}

/// The campaign's sends, newest first, with ids below `before` (a cursor), each with
/// its progress: one statement for the page, whatever its length.
pub fn sends(
    conn: Sql<'_>,
    campaign: i64,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<(Send, SendProgress)>, DbError> {
    let columns = qualified("page", SEND_COLUMNS);
    let deliveries = send_deliveries(conn);
    Ok(conn.query(
        &format!(
            "WITH page AS (SELECT {SEND_COLUMNS}, emitted, event_id FROM sends \
               WHERE campaign_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3), \
             tally AS (SELECT c.send_id, count(*) AS total, \
                 sum(CASE WHEN d.state = 'succeeded' THEN 1 ELSE 0 END) AS ok, \
                 sum(CASE WHEN d.state = 'failed' THEN 1 ELSE 0 END) AS bad \
               FROM page s JOIN send_emits c ON c.send_id = s.id {deliveries} \
               GROUP BY c.send_id) \
             SELECT {columns}, page.emitted, coalesce(tally.ok, 0), coalesce(tally.bad, 0), \
               coalesce(tally.total, 0) FROM page \
             LEFT JOIN tally ON tally.send_id = page.id ORDER BY page.id DESC"
        ),
        args![campaign, before.unwrap_or(i64::MAX), limit],
        |r| {
            let (delivered, failed, total): (u64, u64, u64) = (r.get(16)?, r.get(17)?, r.get(18)?);
            let progress = SendProgress {
                emitted: r.get::<i64>(15)? as u64,
                delivered,
                failed,
                pending: total - delivered - failed,
            };
            Ok((send_of(r)?, progress))
        },
    )?)
}

/// How many sends the campaign has.
pub fn send_count(conn: Sql<'_>, campaign: i64) -> Result<u64, DbError> {
    Ok(conn.query_one(
        "SELECT count(*) FROM sends WHERE campaign_id = ?1",
        args![campaign],
        |r| r.get::<u64>(0),
    )?)
}

/// Sends of scheduled or running campaigns not yet fully emitted whose
/// materialization is due at `due_us` (or that a restart left part-way), oldest first.
/// A campaign whose endpoint was deleted is left out: its sends cannot go anywhere
/// (a manual materialization says so) and must not hold up the others.
pub fn due_sends(conn: Sql<'_>, due_us: i64, limit: usize) -> Result<Vec<Send>, DbError> {
    let columns = qualified("s", SEND_COLUMNS);
    Ok(conn.query(
        &format!(
            "SELECT {columns} FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
             JOIN endpoints e ON e.id = c.endpoint_id \
             WHERE s.emitted_all = 0 AND c.state IN ('scheduled', 'running') \
             AND (s.scheduled_us <= ?1 OR s.materialized_at IS NOT NULL) \
             ORDER BY s.scheduled_us LIMIT ?2"
        ),
        args![due_us, limit],
        send_of,
    )?)
}

/// Replaces the send's audience filter (the latest one wins).
pub fn put_audience_filter(
    conn: Sql<'_>,
    send: i64,
    mode: Mode,
    external_ids: &[String],
    phones: &[Phone],
    now_ms: i64,
) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM audience_filter_leads WHERE send_id = ?1",
        args![send],
    )?;
    conn.execute(
        "INSERT INTO audience_filters (send_id, mode, received_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (send_id) DO UPDATE SET mode = excluded.mode, received_at = excluded.received_at",
        args![send, mode.as_str(), now_ms],
    )?;
    let insert =
        "INSERT INTO audience_filter_leads (send_id, external_id, phone) VALUES (?1, ?2, ?3)";
    for e in external_ids {
        conn.execute(insert, args![send, e, Option::<i64>::None])?;
    }
    for p in phones {
        conn.execute(insert, args![send, Option::<String>::None, p.0 as i64])?;
    }
    Ok(())
}

/// The send's latest audience filter, if one was received.
pub fn audience_filter(conn: Sql<'_>, send: i64) -> Result<Option<AudienceFilter>, DbError> {
    let mode: Option<String> = conn.query_opt(
        "SELECT mode FROM audience_filters WHERE send_id = ?1",
        args![send],
        |r| r.get(0),
    )?;
    let Some(mode) = mode.as_deref().and_then(Mode::parse) else {
        return Ok(None);
    };
    let mut f = AudienceFilter {
        mode: Some(mode),
        ..AudienceFilter::default()
    };
    let rows = conn.query(
        "SELECT external_id, phone FROM audience_filter_leads WHERE send_id = ?1",
        args![send],
        |r| Ok((r.get::<Option<String>>(0)?, r.get::<Option<i64>>(1)?)),
    )?;
    for (e, p) in rows {
        if let Some(e) = e {
            f.external_ids.insert(e);
        }
        if let Some(p) = p {
            f.phones.insert(p as u64);
        }
    }
    Ok(Some(f))
}

/// A send's audience as its eligibility was evaluated: the eligible phones and the
/// others, each in phone order.
pub struct FixedSet {
    pub eligible: Vec<Phone>,
    pub excluded: Vec<Phone>,
}

/// Fixes the send's eligible set, once, with each lead's externalId and variables as
/// the campaign's audience has them now (an upload during the send changes nothing
/// of it), and records `event_id`, the event its deliveries share: answers false
/// (and writes nothing) when it was fixed before.
pub fn fix_eligible(
    conn: Sql<'_>,
    send: i64,
    campaign: i64,
    set: &FixedSet,
    event_id: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let changed = conn.execute(
        "UPDATE sends SET materialized_at = ?2, event_id = ?3 WHERE id = ?1 AND materialized_at IS NULL",
        args![send, now_ms, event_id],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    // One statement for the whole set (a million single-row inserts showed): the
    // phones as SQLite's `rarray` or a Postgres array. The guard above makes this the
    // send's one fix, so no row of it exists yet: a plain insert (an `ON CONFLICT`
    // clause made the Postgres one 1.9x slower at 300,000 leads).
    let n = match conn {
        Sql::Sqlite(c) => {
            let list: rusqlite::vtab::array::Array = std::rc::Rc::new(
                set.eligible
                    .iter()
                    .map(|p| rusqlite::types::Value::Integer(p.0 as i64))
                    .collect(),
            );
            c.prepare_cached(
                "INSERT INTO send_leads (send_id, phone, external_id, variables) \
                 SELECT ?1, phone, external_id, variables FROM audience \
                 WHERE campaign_id = ?2 AND phone IN rarray(?3) ORDER BY phone",
            )?
            .execute(rusqlite::params![send, campaign, list])?
        }
        Sql::Postgres(s) => s.with_client(|c| {
            let as_i64 = |phones: &[Phone]| phones.iter().map(|p| p.0 as i64).collect::<Vec<_>>();
            // Matching a few excluded phones costs less than hashing every eligible one
            // (300,000 leads: about 220 ms less). That is only the evaluated set while
            // the audience is the one evaluated: an audience only grows, so the same
            // size in the statement's snapshot is the same leads; otherwise (an upload
            // landed since) the eligible phones are matched.
            if !set.eligible.is_empty() && set.excluded.len() < set.eligible.len() {
                let evaluated = (set.eligible.len() + set.excluded.len()) as i64;
                let n = c.execute(
                    "INSERT INTO send_leads (send_id, phone, external_id, variables) \
                     SELECT $1, phone, external_id, variables FROM audience \
                     WHERE campaign_id = $2 AND NOT (phone = ANY($3)) \
                       AND (SELECT count(*) FROM audience WHERE campaign_id = $2) = $4 \
                     ORDER BY phone",
                    &[&send, &campaign, &as_i64(&set.excluded), &evaluated],
                )?;
                if n > 0 {
                    return Ok(n as usize);
                }
            }
            c.execute(
                "INSERT INTO send_leads (send_id, phone, external_id, variables) \
                 SELECT $1, phone, external_id, variables FROM audience \
                 WHERE campaign_id = $2 AND phone = ANY($3) ORDER BY phone",
                &[&send, &campaign, &as_i64(&set.eligible)],
            )
            .map(|n| n as usize)
        })?,
    };
    conn.execute(
        "UPDATE sends SET eligible = ?2 WHERE id = ?1",
        args![send, n],
    )?;
    Ok(true)
}

/// Carries sends an older version fixed (each emitted lead marked by
/// `send_leads.delivery_seq`) over to the cursor: their progress counts, the cursor
/// past their last emitted lead (that version emitted in phone order too) and one
/// `send_emits` range per delivery. Their shared event is made when they next emit
/// ([`ensure_event`]).
pub fn carry_over_old_sends(conn: &rusqlite::Connection) -> Result<(), DbError> {
    let old: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('send_leads') WHERE name = 'delivery_seq'",
        [],
        |r| r.get(0),
    )?;
    if old == 0 {
        return Ok(());
    }
    conn.execute_batch(
        "INSERT OR IGNORE INTO send_emits (send_id, first_seq, last_seq)
           SELECT l.send_id, l.delivery_seq, l.delivery_seq FROM send_leads l JOIN sends s ON s.id = l.send_id
           WHERE s.materialized_at IS NOT NULL AND s.event_id IS NULL AND s.emitted = 0 AND l.delivery_seq IS NOT NULL;
         UPDATE sends SET
           eligible = (SELECT count(*) FROM send_leads l WHERE l.send_id = sends.id),
           emitted = (SELECT count(l.delivery_seq) FROM send_leads l WHERE l.send_id = sends.id),
           emitted_through = (SELECT coalesce(max(l.phone), 0) FROM send_leads l
                              WHERE l.send_id = sends.id AND l.delivery_seq IS NOT NULL)
         WHERE materialized_at IS NOT NULL AND event_id IS NULL AND emitted = 0;",
    )?;
    Ok(())
}

/// The send's shared event: the one it has, or (a send fixed by an older version, or
/// whose event retention deleted while it had no delivery left) a new one with
/// `payload`.
pub fn ensure_event(
    conn: Sql<'_>,
    send: i64,
    org: OrgId,
    payload: &[u8],
    now_ms: i64,
) -> Result<String, DbError> {
    let current: Option<String> = conn.query_opt(
        "SELECT s.event_id FROM sends s JOIN events e ON e.id = s.event_id WHERE s.id = ?1",
        args![send],
        |r| r.get(0),
    )?;
    if let Some(id) = current {
        return Ok(id);
    }
    let id = crate::delivery::deliveries::insert_shared_event(
        conn,
        org,
        super::EVENT_TYPE,
        payload,
        now_ms,
    )?;
    conn.execute(
        "UPDATE sends SET event_id = ?2 WHERE id = ?1",
        args![send, id],
    )?;
    Ok(id)
}

/// How far a send's emission got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The event its deliveries share, once its set is fixed.
    pub event_id: Option<String>,
    /// Leads of its eligible set.
    pub eligible: u64,
    /// Leads with their delivery.
    pub emitted: u64,
    /// The last phone emitted (0: none): the rest of the set is above it.
    pub emitted_through: Phone,
}

pub fn progress(conn: Sql<'_>, send: i64) -> Result<Option<Progress>, DbError> {
    Ok(conn.query_opt(
        "SELECT event_id, eligible, emitted, emitted_through FROM sends WHERE id = ?1",
        args![send],
        |r| {
            Ok(Progress {
                event_id: r.get(0)?,
                eligible: r.get::<i64>(1)? as u64,
                emitted: r.get::<i64>(2)? as u64,
                emitted_through: Phone(r.get::<i64>(3)? as u64),
            })
        },
    )?)
}

/// A lead of a send's eligible set still to emit, with what its delivery carries.
pub struct ToEmit {
    pub phone: Phone,
    pub external_id: Option<String>,
    pub variables: String,
}

/// Up to `limit` leads of the send's eligible set with phones above `after`, in phone
/// order (a keyset: each chunk starts where the last ended).
pub fn to_emit(
    conn: Sql<'_>,
    send: i64,
    after: Phone,
    limit: usize,
) -> Result<Vec<ToEmit>, DbError> {
    Ok(conn.query(
        "SELECT phone, external_id, variables FROM send_leads \
         WHERE send_id = ?1 AND phone > ?2 ORDER BY phone LIMIT ?3",
        args![send, after.0 as i64, limit],
        |r| {
            Ok(ToEmit {
                phone: Phone(r.get::<i64>(0)? as u64),
                external_id: r.get(1)?,
                variables: r.get(2)?,
            })
        },
    )?)
}

/// Records a chunk emitted: its leads (after `after` up to `through`, `n` of them)
/// have the deliveries `first_seq..=last_seq`. In the transaction that inserted
/// those; aborts it when the send's cursor is no longer at `after` (another process
/// emitted that chunk first: no lead is emitted twice).
pub fn record_emitted(
    conn: Sql<'_>,
    send: i64,
    after: Phone,
    through: Phone,
    n: u64,
    first_seq: i64,
    last_seq: i64,
) -> Result<(), DbError> {
    let moved = conn.execute(
        "UPDATE sends SET emitted = emitted + ?2, emitted_through = ?3 WHERE id = ?1 AND emitted_through = ?4",
        args![send, n, through.0 as i64, after.0 as i64],
    )?;
    if moved == 0 {
        return Err(DbError::Aborted(format!(
            "send {send}: these leads were emitted by another process"
        )));
    }
    conn.execute(
        "INSERT INTO send_emits (send_id, first_seq, last_seq) VALUES (?1, ?2, ?3)",
        args![send, first_seq, last_seq],
    )?;
    Ok(())
}

/// Shared database: takes (or renews) the send for this process for a lease, unless
/// another live process holds it; answers whether this process has it. Always true
/// on the embedded store, which one process owns.
pub fn hold_send(conn: Sql<'_>, send: i64, now_ms: i64) -> Result<bool, DbError> {
    if !conn.is_postgres() {
        return Ok(true);
    }
    let me = crate::db::process_id();
    Ok(conn.execute(
        "UPDATE sends SET lease_owner = ?2, lease_until = ?3 \
         WHERE id = ?1 AND (lease_until < ?4 OR lease_owner = ?2)",
        args![send, me, now_ms + crate::db::lease_ms(), now_ms],
    )? == 1)
}

/// How many campaigns deliver to endpoint `endpoint`.
pub fn campaigns_using(conn: Sql<'_>, endpoint: i64) -> Result<u64, DbError> {
    Ok(conn.query_one(
        "SELECT count(*) FROM campaigns WHERE endpoint_id = ?1",
        args![endpoint],
        |r| r.get::<u64>(0),
    )?)
}

/// Shared database, at shutdown: hands back the sends this process holds, so another
/// process's scheduler carries them on at its next tick. Answers how many.
pub fn release_sends(conn: Sql<'_>) -> Result<usize, DbError> {
    if !conn.is_postgres() {
        return Ok(0);
    }
    Ok(conn.execute(
        "UPDATE sends SET lease_until = 0 WHERE lease_owner = ?1",
        args![crate::db::process_id()],
    )?)
}

/// The campaign's state, read inside a write (a pause or cancel stops a send between
/// two chunks).
pub fn campaign_state(conn: Sql<'_>, id: i64) -> Result<Option<CampaignState>, DbError> {
    let state: Option<String> = conn.query_opt(
        "SELECT state FROM campaigns WHERE id = ?1",
        args![id],
        |r| r.get(0),
    )?;
    Ok(state.map(state_of).transpose()?)
}

pub fn mark_emitted_all(conn: Sql<'_>, send: i64) -> Result<(), DbError> {
    conn.execute(
        "UPDATE sends SET emitted_all = 1 WHERE id = ?1",
        args![send],
    )?;
    Ok(())
}

/// `(emitted, eligible)` leads of a send.
pub fn emitted_counts(conn: Sql<'_>, send: i64) -> Result<(u64, u64), DbError> {
    Ok(progress(conn, send)?.map_or((0, 0), |p| (p.emitted, p.eligible)))
}

/// The join from a send's chunks (`send_emits c`, of send `s`) to their deliveries
/// (`d`).
fn send_deliveries(conn: Sql<'_>) -> &'static str {
    // Other processes insert deliveries at the same time on the shared database, so
    // a chunk's seq range may hold some of theirs: only the send's event's count.
    if conn.is_postgres() {
        "JOIN deliveries d ON d.seq BETWEEN c.first_seq AND c.last_seq AND d.event_id = s.event_id"
    } else {
        "JOIN deliveries d ON d.seq BETWEEN c.first_seq AND c.last_seq"
    }
}

/// `(succeeded, failed, pending)` deliveries of a send (those the log still keeps).
pub fn delivery_counts(conn: Sql<'_>, send: i64) -> Result<(u64, u64, u64), DbError> {
    let deliveries = send_deliveries(conn);
    let sql = format!(
        "SELECT d.state, count(*) FROM send_emits c JOIN sends s ON s.id = c.send_id \
         {deliveries} WHERE c.send_id = ?1 GROUP BY d.state"
    );
    let rows = conn.query(&sql, args![send], |r| {
        Ok((r.get::<String>(0)?, r.get::<u64>(1)?))
    })?;
    let (mut ok, mut failed, mut pending) = (0, 0, 0);
    for (state, n) in rows {
        match state.as_str() {
            "succeeded" => ok = n,
            "failed" => failed = n,
            _ => pending += n,
        }
    }
    Ok((ok, failed, pending))
}

/// Whether every send of the campaign is emitted (and it has one).
pub fn all_sends_emitted(conn: Sql<'_>, campaign: i64) -> Result<bool, DbError> {
    let (total, done): (i64, i64) = conn.query_one(
        "SELECT count(*), CAST(coalesce(sum(emitted_all), 0) AS BIGINT) FROM sends WHERE campaign_id = ?1",
        args![campaign],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(total > 0 && total == done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::model::{Send, SendTime};

    use crate::db::testing::on_both_backends;

    /// A send of `campaign` at `at_us`, to everyone, not yet fixed.
    fn send_at(campaign: i64, at_us: i64) -> Send {
        Send {
            id: 0,
            campaign_id: campaign,
            org: 1,
            time: SendTime { at_us, local: None },
            template_name: "t".into(),
            language: "en".into(),
            event_filter: None,
            use_audience_filter: false,
            created_at_ms: 0,
            materialized_at_ms: None,
            emitted_all: false,
        }
    }

    fn row(p: u64, ext: &str, vars: &str) -> AudienceRow {
        AudienceRow {
            phone: Phone(p),
            external_id: Some(ext.to_owned()),
            variables: vars.to_owned(),
        }
    }

    #[test]
    fn an_unknown_stored_state_is_an_error_not_a_draft() {
        on_both_backends(|conn, backend| {
            let id: i64 = conn
                .query_one(
                    "INSERT INTO campaigns (org_id, name, state, endpoint_id, created_at, updated_at) \
                     VALUES (1, 'c', 'exploded', 1, 0, 0) RETURNING id",
                    args![],
                    |r| r.get(0),
                )
                .unwrap();
            let e = campaign(conn, id).unwrap_err().to_string();
            assert!(e.contains("exploded"), "{backend}: {e}");
            assert!(campaign_state(conn, id).is_err(), "{backend}");
        });
    }

    #[test]
    fn a_fixed_set_keeps_the_lead_data_it_was_fixed_with() {
        on_both_backends(|conn, _| {
            let c = insert_campaign(conn, 1, "c", None, 5, 0).unwrap();
            let added = merge_audience(
                conn,
                c.id,
                &[
                    row(15550000001, "a0", r#"{"n":"0"}"#),
                    row(15550000002, "b", "{}"),
                    // The same phone again in one upload: the later row wins.
                    row(15550000001, "a", r#"{"n":"1"}"#),
                ],
            )
            .unwrap();
            assert_eq!(added, 2);
            // Again: nothing new, the rows merged.
            assert_eq!(
                merge_audience(conn, c.id, &[row(15550000002, "b", "{}")]).unwrap(),
                0
            );
            assert_eq!(audience_size(conn, c.id).unwrap(), 2);
            let send = insert_send(conn, &send_at(c.id, 0)).unwrap();
            // Only lead 1 is eligible; fixing twice fixes once.
            let only = |eligible: u64, excluded: u64| FixedSet {
                eligible: vec![Phone(eligible)],
                excluded: vec![Phone(excluded)],
            };
            assert!(fix_eligible(
                conn,
                send.id,
                c.id,
                &only(15550000001, 15550000002),
                "evt_a",
                1
            )
            .unwrap());
            assert!(!fix_eligible(
                conn,
                send.id,
                c.id,
                &only(15550000002, 15550000001),
                "evt_b",
                2
            )
            .unwrap());
            let p = progress(conn, send.id).unwrap().unwrap();
            assert_eq!(p.event_id.as_deref(), Some("evt_a"));
            assert_eq!((p.eligible, p.emitted), (1, 0));
            // An upload after the set was fixed changes nothing of it.
            merge_audience(conn, c.id, &[row(15550000001, "a2", r#"{"n":"2"}"#)]).unwrap();
            let todo = to_emit(conn, send.id, Phone(0), 10).unwrap();
            assert_eq!(todo.len(), 1);
            assert_eq!(todo[0].external_id.as_deref(), Some("a"));
            assert_eq!(todo[0].variables, r#"{"n":"1"}"#);
            // Emitted as delivery 7: the set has nothing above it, and the counts follow
            // the delivery.
            conn.execute("INSERT INTO deliveries (seq, id, event_id, org_id, endpoint_id, url, event_type, state, created_at, updated_at) \
             VALUES (6, 'd6', 'evt_a', 1, 1, 'u', 'campaign_send', 'failed', 0, 0), \
                    (7, 'd7', 'evt_a', 1, 1, 'u', 'campaign_send', 'pending', 0, 0)", args![])
        .unwrap();
            record_emitted(conn, send.id, Phone(0), Phone(15550000001), 1, 7, 7).unwrap();
            // The same chunk again (another process raced this one): refused, nothing
            // counted twice.
            assert!(matches!(
                record_emitted(conn, send.id, Phone(0), Phone(15550000001), 1, 8, 8),
                Err(DbError::Aborted(_))
            ));
            let p = progress(conn, send.id).unwrap().unwrap();
            assert!(to_emit(conn, send.id, p.emitted_through, 10)
                .unwrap()
                .is_empty());
            assert_eq!(emitted_counts(conn, send.id).unwrap(), (1, 1));
            assert_eq!(delivery_counts(conn, send.id).unwrap(), (0, 0, 1));
            conn.execute(
                "UPDATE deliveries SET state = 'succeeded' WHERE seq = 7",
                args![],
            )
            .unwrap();
            assert_eq!(delivery_counts(conn, send.id).unwrap(), (1, 0, 0));
        });
    }

    #[test]
    fn a_send_an_older_version_emitted_part_of_carries_on_past_its_last_lead() {
        let lite = rusqlite::Connection::open_in_memory().unwrap();
        let conn = Sql::Sqlite(&lite);
        // The older layout: sends without the progress columns, leads marked one by one.
        // The engine's tables as they are; the campaign tables of the older layout.
        lite.execute_batch(include_str!(
            "../db/migrations/sqlite/webhooks_0001_deliveries.sql"
        ))
        .unwrap();
        lite.execute_batch(
            "CREATE TABLE sends (id INTEGER PRIMARY KEY AUTOINCREMENT, campaign_id INTEGER NOT NULL,
               org_id INTEGER NOT NULL, scheduled_us INTEGER NOT NULL, local_time TEXT, time_zone TEXT,
               template_name TEXT NOT NULL, language TEXT NOT NULL, filter_mode TEXT,
               filter_event_type TEXT, filter_within INTEGER, use_audience_filter INTEGER NOT NULL,
               created_at INTEGER NOT NULL, materialized_at INTEGER, emitted_all INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE send_leads (send_id INTEGER NOT NULL, phone INTEGER NOT NULL, external_id TEXT,
               variables TEXT NOT NULL, delivery_seq INTEGER, PRIMARY KEY (send_id, phone)) WITHOUT ROWID;
             INSERT INTO sends (campaign_id, org_id, scheduled_us, template_name, language,
               use_audience_filter, created_at, materialized_at) VALUES (1, 1, 0, 't', 'en', 0, 0, 5);
             INSERT INTO send_leads VALUES (1, 10, NULL, '{}', 100), (1, 20, NULL, '{}', 101),
               (1, 30, NULL, '{}', NULL);
             INSERT INTO deliveries (seq, id, event_id, org_id, endpoint_id, url, event_type, state, created_at, updated_at)
               VALUES (100, 'd100', 'e', 1, 1, 'u', 'campaign_send', 'succeeded', 0, 0),
                      (101, 'd101', 'e', 1, 1, 'u', 'campaign_send', 'pending', 0, 0);",
        )
        .unwrap();
        // Versioned migrations adopt the file and carry its send over (version 4).
        crate::db::migrate::apply_sqlite(&lite, "test", crate::db::migrations::SQLITE_WEBHOOKS)
            .unwrap();
        let p = progress(conn, 1).unwrap().unwrap();
        assert_eq!(
            (p.eligible, p.emitted, p.emitted_through),
            (3, 2, Phone(20))
        );
        let rest: Vec<u64> = to_emit(conn, 1, p.emitted_through, 10)
            .unwrap()
            .iter()
            .map(|l| l.phone.0)
            .collect();
        assert_eq!(rest, [30]);
        assert_eq!(delivery_counts(conn, 1).unwrap(), (1, 0, 1));
        // Twice changes nothing.
        carry_over_old_sends(&lite).unwrap();
        assert_eq!(progress(conn, 1).unwrap().unwrap(), p);
    }

    #[test]
    fn the_fixed_set_is_the_evaluated_one_even_after_an_upload_landed_between() {
        on_both_backends(|conn, backend| {
            let c = insert_campaign(conn, 1, "c", None, 1, 0).unwrap();
            let leads: Vec<_> = (1..=4).map(|i| row(15550000000 + i, "x", "{}")).collect();
            merge_audience(conn, c.id, &leads).unwrap();
            let fixed = |send: i64| {
                to_emit(conn, send, Phone(0), 10)
                    .unwrap()
                    .into_iter()
                    .map(|l| l.phone.0 - 15550000000)
                    .collect::<Vec<_>>()
            };
            // Three of four eligible (lead 2 opted out, say).
            let set = FixedSet {
                eligible: [1, 3, 4].map(|i| Phone(15550000000 + i)).to_vec(),
                excluded: vec![Phone(15550000002)],
            };
            let first = insert_send(conn, &send_at(c.id, 0)).unwrap();
            assert!(fix_eligible(conn, first.id, c.id, &set, "evt_a", 1).unwrap());
            assert_eq!(fixed(first.id), [1, 3, 4], "{backend}");
            // Lead 5 is uploaded after the evaluation and before the fix: it was never
            // evaluated, so it is not in the set.
            merge_audience(conn, c.id, &[row(15550000005, "x", "{}")]).unwrap();
            let second = insert_send(conn, &send_at(c.id, 0)).unwrap();
            assert!(fix_eligible(conn, second.id, c.id, &set, "evt_b", 2).unwrap());
            assert_eq!(fixed(second.id), [1, 3, 4], "{backend}");
            assert_eq!(
                progress(conn, second.id).unwrap().unwrap().eligible,
                3,
                "{backend}"
            );
        });
    }

    #[test]
    fn a_page_carries_each_rows_counts_and_continues_below_its_last_id() {
        on_both_backends(|conn, backend| {
            // Three campaigns of org 1 with audiences of 1, 2 and 3 leads; one of org 2.
            let mut mine = Vec::new();
            for n in 1..=3 {
                let c = insert_campaign(conn, 1, "c", None, 5, 0).unwrap();
                let leads: Vec<_> = (0..n).map(|i| row(15550000000 + i, "x", "{}")).collect();
                merge_audience(conn, c.id, &leads).unwrap();
                mine.push((c.id, n));
            }
            let theirs = insert_campaign(conn, 2, "c", None, 5, 0).unwrap();
            merge_audience(conn, theirs.id, &[row(15550000009, "x", "{}")]).unwrap();
            mine.reverse();
            let page = |before, limit| {
                campaigns(conn, 1, before, limit)
                    .unwrap()
                    .into_iter()
                    .map(|(c, size)| (c.id, size))
                    .collect::<Vec<_>>()
            };
            assert_eq!(page(None, 2), mine[..2], "{backend}");
            assert_eq!(page(Some(mine[1].0), 2), mine[2..], "{backend}");
            assert_eq!(page(None, 10), mine, "{backend}");
            assert_eq!(campaign_count(conn, 1).unwrap(), 3, "{backend}");

            // Two sends of the 3-lead campaign: one emitted, its deliveries succeeded,
            // failed and pending; one not materialized.
            let c = mine[0].0;
            let emitted = insert_send(conn, &send_at(c, 0)).unwrap();
            let idle = insert_send(conn, &send_at(c, 0)).unwrap();
            let set = FixedSet {
                eligible: (0..3).map(|i| Phone(15550000000 + i)).collect(),
                excluded: Vec::new(),
            };
            assert!(fix_eligible(conn, emitted.id, c, &set, "evt_a", 1).unwrap());
            conn.execute("INSERT INTO deliveries (seq, id, event_id, org_id, endpoint_id, url, event_type, state, created_at, updated_at) \
             VALUES (10, 'd10', 'evt_a', 1, 5, 'u', 'campaign_send', 'succeeded', 0, 0), \
                    (11, 'd11', 'evt_a', 1, 5, 'u', 'campaign_send', 'failed', 0, 0), \
                    (12, 'd12', 'evt_a', 1, 5, 'u', 'campaign_send', 'pending', 0, 0)", args![])
                .unwrap();
            record_emitted(conn, emitted.id, Phone(0), Phone(15550000002), 3, 10, 12).unwrap();
            let listed = |before, limit| {
                sends(conn, c, before, limit)
                    .unwrap()
                    .into_iter()
                    .map(|(x, p)| (x.id, p))
                    .collect::<Vec<_>>()
            };
            let alone = |id| {
                let (emitted, _) = emitted_counts(conn, id).unwrap();
                let (delivered, failed, pending) = delivery_counts(conn, id).unwrap();
                SendProgress {
                    emitted,
                    delivered,
                    failed,
                    pending,
                }
            };
            let counted = SendProgress {
                emitted: 3,
                delivered: 1,
                failed: 1,
                pending: 1,
            };
            assert_eq!(alone(emitted.id), counted, "{backend}");
            assert_eq!(
                listed(None, 10),
                [(idle.id, SendProgress::default()), (emitted.id, counted)],
                "{backend}: newest first, each with the counts it has alone"
            );
            assert_eq!(listed(None, 1), [(idle.id, SendProgress::default())]);
            assert_eq!(listed(Some(idle.id), 1), [(emitted.id, counted)]);
            assert!(listed(Some(emitted.id), 1).is_empty(), "{backend}");
            assert_eq!(send_count(conn, c).unwrap(), 2, "{backend}");
        });
    }

    #[test]
    fn due_sends_are_those_of_scheduled_or_running_campaigns_with_an_endpoint() {
        on_both_backends(|conn, _| {
            conn.execute("INSERT INTO endpoints (id, org_id, url, created_at, updated_at) VALUES (5, 1, 'u', 0, 0)", args![])
        .unwrap();
            let mut ids = Vec::new();
            // Scheduled; draft; paused; scheduled but its endpoint (6) was deleted.
            for (state, endpoint) in [
                (CampaignState::Scheduled, 5),
                (CampaignState::Draft, 5),
                (CampaignState::Paused, 5),
                (CampaignState::Scheduled, 6),
            ] {
                let c = insert_campaign(conn, 1, "c", None, endpoint, 0).unwrap();
                set_state(conn, c.id, state, None, 0).unwrap();
                ids.push(insert_send(conn, &send_at(c.id, 100)).unwrap().id);
            }
            let due: Vec<i64> = due_sends(conn, 100, 10)
                .unwrap()
                .iter()
                .map(|x| x.id)
                .collect();
            assert_eq!(due, [ids[0]]);
            assert!(due_sends(conn, 99, 10).unwrap().is_empty(), "not yet due");
        });
    }

    #[test]
    fn a_send_is_held_by_one_process_until_its_lease_runs_out() {
        on_both_backends(|conn, backend| {
            let c = insert_campaign(conn, 1, "c", None, 5, 0).unwrap();
            let send = insert_send(conn, &send_at(c.id, 0)).unwrap();
            let now = 1_000_000;
            assert!(hold_send(conn, send.id, now).unwrap(), "{backend}: free");
            assert!(
                hold_send(conn, send.id, now + 1).unwrap(),
                "{backend}: renewed"
            );
            if backend == "sqlite" {
                return;
            }
            conn.execute(
                "UPDATE sends SET lease_owner = 'other:1:0', lease_until = ?2 WHERE id = ?1",
                args![send.id, now + 5_000],
            )
            .unwrap();
            assert!(
                !hold_send(conn, send.id, now + 4_999).unwrap(),
                "held by another"
            );
            assert!(
                hold_send(conn, send.id, now + 5_001).unwrap(),
                "its lease ran out"
            );
        });
    }
}

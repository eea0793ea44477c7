//! Domain state beside the deliveries it causes (so recording an event and publishing
//! what it causes is one transaction), in `webhooks.db` or the shared database:
//! contacts, the domain events already taken (a repeated id causes nothing),
//! triggers and their actions, WhatsApp integrations, conversations and messages.

use crate::db::sql::{args, Row, Sql};
use crate::db::RepoError;
use crate::delivery::store::DbError;
use crate::secrets::{self, Purpose};
use leadstream_pipeline::OrgId;

/// A contact of an org, by phone (E.164).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub phone: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// A JSON object's text.
    pub metadata: Option<String>,
    pub updated_at_ms: i64,
}

pub fn contact(conn: Sql<'_>, org: OrgId, phone: &str) -> Result<Option<Contact>, DbError> {
    Ok(conn.query_opt(
        "SELECT phone, email, full_name, first_name, last_name, metadata, updated_at \
         FROM contacts WHERE org_id = ?1 AND phone = ?2",
        args![org, phone],
        |r| {
            Ok(Contact {
                phone: r.get(0)?,
                email: r.get(1)?,
                full_name: r.get(2)?,
                first_name: r.get(3)?,
                last_name: r.get(4)?,
                metadata: r.get(5)?,
                updated_at_ms: r.get(6)?,
            })
        },
    )?)
}

/// Replaces the contact's fields with `c`'s (a `PUT`).
pub fn put_contact(conn: Sql<'_>, org: OrgId, c: &Contact) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO contacts (org_id, phone, email, full_name, first_name, last_name, metadata, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (org_id, phone) DO UPDATE SET email = excluded.email, full_name = excluded.full_name, \
         first_name = excluded.first_name, last_name = excluded.last_name, metadata = excluded.metadata, \
         updated_at = excluded.updated_at",
        args![
            org,
            c.phone,
            c.email,
            c.full_name,
            c.first_name,
            c.last_name,
            c.metadata,
            c.updated_at_ms
        ],
    )?;
    Ok(())
}

/// Fills in what an event says of the contact: each field `c` has replaces the stored
/// one, the others are kept.
pub fn merge_contact(conn: Sql<'_>, org: OrgId, c: &Contact) -> Result<Contact, DbError> {
    let mut out = contact(conn, org, &c.phone)?.unwrap_or_else(|| Contact {
        phone: c.phone.clone(),
        ..Contact::default()
    });
    let take = |into: &mut Option<String>, from: &Option<String>| {
        if from.is_some() {
            into.clone_from(from);
        }
    };
    take(&mut out.email, &c.email);
    take(&mut out.full_name, &c.full_name);
    take(&mut out.first_name, &c.first_name);
    take(&mut out.last_name, &c.last_name);
    take(&mut out.metadata, &c.metadata);
    out.updated_at_ms = c.updated_at_ms;
    put_contact(conn, org, &out)?;
    Ok(out)
}

/// Records domain event `id`; false when it was taken before (it causes nothing new).
pub fn take_event(
    conn: Sql<'_>,
    org: OrgId,
    id: &str,
    kind: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    Ok(conn.execute(
        "INSERT INTO domain_events (org_id, id, type, received_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT DO NOTHING",
        args![org, id, kind, now_ms],
    )? == 1)
}

/// A trigger: a type of domain event to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub id: i64,
    pub org: OrgId,
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const TRIGGER_COLUMNS: &str =
    "id, org_id, type, name, description, enabled, created_at, updated_at";

fn trigger_of(r: &Row<'_>) -> Result<Trigger, RepoError> {
    Ok(Trigger {
        id: r.get(0)?,
        org: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        enabled: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
    })
}

pub fn insert_trigger(conn: Sql<'_>, t: &Trigger) -> Result<Trigger, DbError> {
    Ok(conn.query_one(
        &format!(
            "INSERT INTO triggers (org_id, type, name, description, enabled, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING {TRIGGER_COLUMNS}"
        ),
        args![
            t.org,
            t.kind,
            t.name,
            t.description,
            t.enabled,
            t.created_at_ms
        ],
        trigger_of,
    )?)
}

pub fn update_trigger(conn: Sql<'_>, t: &Trigger) -> Result<(), DbError> {
    conn.execute(
        "UPDATE triggers SET type = ?2, name = ?3, description = ?4, enabled = ?5, updated_at = ?6 WHERE id = ?1",
        args![t.id, t.kind, t.name, t.description, t.enabled, t.updated_at_ms],
    )?;
    Ok(())
}

pub fn trigger(conn: Sql<'_>, id: i64) -> Result<Option<Trigger>, DbError> {
    Ok(conn.query_opt(
        &format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?1"),
        args![id],
        trigger_of,
    )?)
}

/// The org's triggers, newest first, with ids below `before` (a cursor).
pub fn triggers(
    conn: Sql<'_>,
    org: OrgId,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Trigger>, DbError> {
    Ok(conn.query(
        &format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE org_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        ),
        args![org, before.unwrap_or(i64::MAX), limit],
        trigger_of,
    )?)
}

/// How many triggers the org has.
pub fn trigger_count(conn: Sql<'_>, org: OrgId) -> Result<u64, DbError> {
    Ok(conn.query_one(
        "SELECT count(*) FROM triggers WHERE org_id = ?1",
        args![org],
        |r| r.get::<u64>(0),
    )?)
}

/// Deletes the trigger and its actions; answers the actions' endpoints.
pub fn delete_trigger(conn: Sql<'_>, id: i64) -> Result<Vec<i64>, DbError> {
    let endpoints = conn.query(
        "SELECT endpoint_id FROM trigger_actions WHERE trigger_id = ?1 ORDER BY id",
        args![id],
        |r| r.get::<i64>(0),
    )?;
    conn.execute(
        "DELETE FROM trigger_actions WHERE trigger_id = ?1",
        args![id],
    )?;
    conn.execute("DELETE FROM triggers WHERE id = ?1", args![id])?;
    Ok(endpoints)
}

/// A trigger's action: where its runs are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub id: i64,
    pub trigger_id: i64,
    pub kind: String,
    pub url: String,
    pub name: String,
    pub enabled: bool,
    /// The delivery engine's endpoint its runs go to.
    pub endpoint_id: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const ACTION_COLUMNS: &str =
    "id, trigger_id, type, url, name, enabled, endpoint_id, created_at, updated_at";

fn action_of(r: &Row<'_>) -> Result<Action, RepoError> {
    Ok(Action {
        id: r.get(0)?,
        trigger_id: r.get(1)?,
        kind: r.get(2)?,
        url: r.get(3)?,
        name: r.get(4)?,
        enabled: r.get(5)?,
        endpoint_id: r.get(6)?,
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
    })
}

pub fn insert_action(conn: Sql<'_>, a: &Action) -> Result<Action, DbError> {
    Ok(conn.query_one(
        &format!(
            "INSERT INTO trigger_actions (trigger_id, type, url, name, enabled, endpoint_id, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING {ACTION_COLUMNS}"
        ),
        args![a.trigger_id, a.kind, a.url, a.name, a.enabled, a.endpoint_id, a.created_at_ms],
        action_of,
    )?)
}

pub fn update_action(conn: Sql<'_>, a: &Action) -> Result<(), DbError> {
    conn.execute(
        "UPDATE trigger_actions SET url = ?2, name = ?3, enabled = ?4, updated_at = ?5 WHERE id = ?1",
        args![a.id, a.url, a.name, a.enabled, a.updated_at_ms],
    )?;
    Ok(())
}

pub fn action(conn: Sql<'_>, id: i64) -> Result<Option<Action>, DbError> {
    Ok(conn.query_opt(
        &format!("SELECT {ACTION_COLUMNS} FROM trigger_actions WHERE id = ?1"),
        args![id],
        action_of,
    )?)
}

/// A trigger's actions, oldest first, with ids above `after` (a cursor).
pub fn actions(
    conn: Sql<'_>,
    trigger: i64,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Action>, DbError> {
    Ok(conn.query(
        &format!(
            "SELECT {ACTION_COLUMNS} FROM trigger_actions WHERE trigger_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ),
        args![trigger, after.unwrap_or(i64::MIN), limit],
        action_of,
    )?)
}

/// How many actions the trigger has.
pub fn action_count(conn: Sql<'_>, trigger: i64) -> Result<u64, DbError> {
    Ok(conn.query_one(
        "SELECT count(*) FROM trigger_actions WHERE trigger_id = ?1",
        args![trigger],
        |r| r.get::<u64>(0),
    )?)
}

pub fn delete_action(conn: Sql<'_>, id: i64) -> Result<(), DbError> {
    conn.execute("DELETE FROM trigger_actions WHERE id = ?1", args![id])?;
    Ok(())
}

/// The enabled actions of the org's enabled triggers of `kind`: what an event of that
/// type runs.
pub fn armed_actions(conn: Sql<'_>, org: OrgId, kind: &str) -> Result<Vec<Action>, DbError> {
    let columns = ACTION_COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(conn.query(
        &format!(
            "SELECT {columns} FROM triggers t JOIN trigger_actions a ON a.trigger_id = t.id \
             WHERE t.org_id = ?1 AND t.type = ?2 AND t.enabled = 1 AND a.enabled = 1 ORDER BY a.id"
        ),
        args![org, kind],
        action_of,
    )?)
}

/// A WhatsApp integration of an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub bot_integration_id: i64,
    pub org: OrgId,
    pub bot_id: Option<i64>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub created_at_ms: i64,
}

/// Inserts `i`; false when its org registered its id before. Another org's
/// integration with the same id is another integration. The app secret is stored
/// sealed ([`crate::secrets`]), the verify token as its hash.
pub fn insert_integration(conn: Sql<'_>, i: &Integration) -> Result<bool, DbError> {
    let app_secret = i
        .app_secret
        .as_deref()
        .map(|s| secrets::seal(Purpose::WhatsAppAppSecret, s));
    let verify_token = i.verify_token.as_deref().map(secrets::hash_token);
    Ok(conn.execute(
        "INSERT INTO whatsapp_integrations (bot_integration_id, org_id, bot_id, app_secret, verify_token, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        args![i.bot_integration_id, i.org, i.bot_id, app_secret, verify_token, i.created_at_ms],
    )? == 1)
}

const INTEGRATION_COLUMNS: &str =
    "bot_integration_id, org_id, bot_id, app_secret, verify_token, created_at";

/// An integration as read: its app secret opened; its verify token as stored (a
/// hash: compare with [`secrets::token_matches`]).
fn integration_row(r: &crate::db::sql::Row<'_>) -> Result<Integration, crate::db::RepoError> {
    let app_secret: Option<String> = r.get(3)?;
    let app_secret = app_secret
        .map(|s| secrets::open(Purpose::WhatsAppAppSecret, &s))
        .transpose()
        .map_err(|e| crate::db::RepoError::Unknown {
            column: "whatsapp_integrations.app_secret",
            value: e.to_string(),
        })?;
    Ok(Integration {
        bot_integration_id: r.get(0)?,
        org: r.get(1)?,
        bot_id: r.get(2)?,
        app_secret,
        verify_token: r.get(4)?,
        created_at_ms: r.get(5)?,
    })
}

/// Every org's integration with id `id` (the webhook's URL names only the id), oldest
/// first.
pub fn integrations_named(conn: Sql<'_>, id: i64) -> Result<Vec<Integration>, DbError> {
    Ok(conn.query(
        &format!(
            "SELECT {INTEGRATION_COLUMNS} FROM whatsapp_integrations \
             WHERE bot_integration_id = ?1 ORDER BY created_at, org_id"
        ),
        args![id],
        integration_row,
    )?)
}

/// `org`'s integrations, newest first.
pub fn integrations_of(conn: Sql<'_>, org: OrgId) -> Result<Vec<Integration>, DbError> {
    Ok(conn.query(
        &format!(
            "SELECT {INTEGRATION_COLUMNS} FROM whatsapp_integrations \
             WHERE org_id = ?1 ORDER BY created_at DESC, bot_integration_id DESC"
        ),
        args![org],
        integration_row,
    )?)
}

/// `org`'s integration `id`.
pub fn integration_of(conn: Sql<'_>, org: OrgId, id: i64) -> Result<Option<Integration>, DbError> {
    Ok(conn.query_opt(
        &format!(
            "SELECT {INTEGRATION_COLUMNS} FROM whatsapp_integrations \
             WHERE org_id = ?1 AND bot_integration_id = ?2"
        ),
        args![org, id],
        integration_row,
    )?)
}

/// Deletes `org`'s integration `id` and the message ids seen through it; false when
/// it has none. Its conversations and contacts stay.
pub fn delete_integration(conn: Sql<'_>, org: OrgId, id: i64) -> Result<bool, DbError> {
    let n = conn.execute(
        "DELETE FROM whatsapp_integrations WHERE org_id = ?1 AND bot_integration_id = ?2",
        args![org, id],
    )?;
    conn.execute(
        "DELETE FROM whatsapp_seen WHERE org_id = ?1 AND bot_integration_id = ?2",
        args![org, id],
    )?;
    Ok(n == 1)
}

/// Records `key` (a message id, a status) of `org`'s integration, seen at `now_ms`;
/// false when seen before (within `delivery.log_retention`).
pub fn first_sight(
    conn: Sql<'_>,
    org: OrgId,
    integration: i64,
    key: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    Ok(conn.execute(
        "INSERT INTO whatsapp_seen (org_id, bot_integration_id, key, seen_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        args![org, integration, key, now_ms],
    )? == 1)
}

/// Deletes the domain events (their ids, kept so a repeat causes nothing), the
/// conversation messages and the WhatsApp inbox of seen ids received before
/// `cutoff_ms` (`delivery.log_retention`): a repeat of an id older than that is taken
/// again. The caller holds this round's
/// [`crate::db::retention_turn`]. Answers the rows deleted.
///
/// # Errors
/// [`DbError`].
pub fn delete_older_than(conn: Sql<'_>, cutoff_ms: i64) -> Result<usize, DbError> {
    let events = conn.execute(
        "DELETE FROM domain_events WHERE received_at < ?1",
        args![cutoff_ms],
    )?;
    let messages = conn.execute(
        "DELETE FROM conversation_messages WHERE at < ?1",
        args![cutoff_ms],
    )?;
    let seen = conn.execute(
        "DELETE FROM whatsapp_seen WHERE seen_at < ?1",
        args![cutoff_ms],
    )?;
    Ok(events + messages + seen)
}

/// A conversation's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationKey {
    pub org: OrgId,
    pub bot_integration_id: i64,
    /// E.164.
    pub phone: String,
}

/// A conversation's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub profile_name: Option<String>,
    pub last_user_at_ms: Option<i64>,
    pub last_bot_at_ms: Option<i64>,
    pub replied: bool,
    pub appointment_booked: bool,
    pub opted_out: bool,
    pub inactive_due_ms: Option<i64>,
}

impl Conversation {
    /// Its status tags, in a fixed order.
    pub fn tags(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.appointment_booked {
            out.push("appointment_booked");
        }
        if self.replied {
            out.push("replied");
        }
        if self.opted_out {
            out.push("opted_out");
        }
        out
    }
}

/// Every conversation of `org`'s contact `phone` (one per integration it wrote to), by
/// integration id.
pub fn conversations_of(
    conn: Sql<'_>,
    org: OrgId,
    phone: &str,
) -> Result<Vec<(i64, Conversation)>, DbError> {
    Ok(conn.query(
        "SELECT bot_integration_id, profile_name, last_user_at, last_bot_at, replied, appointment_booked, opted_out, inactive_due \
         FROM conversations WHERE org_id = ?1 AND phone = ?2 ORDER BY bot_integration_id",
        args![org, phone],
        |r| {
            Ok((
                r.get(0)?,
                Conversation {
                    profile_name: r.get(1)?,
                    last_user_at_ms: r.get(2)?,
                    last_bot_at_ms: r.get(3)?,
                    replied: r.get(4)?,
                    appointment_booked: r.get(5)?,
                    opted_out: r.get(6)?,
                    inactive_due_ms: r.get(7)?,
                },
            ))
        },
    )?)
}

pub fn conversation(conn: Sql<'_>, k: &ConversationKey) -> Result<Option<Conversation>, DbError> {
    Ok(conn.query_opt(
        "SELECT profile_name, last_user_at, last_bot_at, replied, appointment_booked, opted_out, inactive_due \
         FROM conversations WHERE org_id = ?1 AND bot_integration_id = ?2 AND phone = ?3",
        args![k.org, k.bot_integration_id, k.phone],
        |r| {
            Ok(Conversation {
                profile_name: r.get(0)?,
                last_user_at_ms: r.get(1)?,
                last_bot_at_ms: r.get(2)?,
                replied: r.get(3)?,
                appointment_booked: r.get(4)?,
                opted_out: r.get(5)?,
                inactive_due_ms: r.get(6)?,
            })
        },
    )?)
}

pub fn put_conversation(
    conn: Sql<'_>,
    k: &ConversationKey,
    c: &Conversation,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO conversations (org_id, bot_integration_id, phone, profile_name, last_user_at, \
         last_bot_at, replied, appointment_booked, opted_out, inactive_due) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (org_id, bot_integration_id, phone) DO UPDATE SET profile_name = excluded.profile_name, \
         last_user_at = excluded.last_user_at, last_bot_at = excluded.last_bot_at, replied = excluded.replied, \
         appointment_booked = excluded.appointment_booked, opted_out = excluded.opted_out, \
         inactive_due = excluded.inactive_due",
        args![
        k.org,
        k.bot_integration_id,
        k.phone,
        c.profile_name,
        c.last_user_at_ms,
        c.last_bot_at_ms,
        c.replied,
        c.appointment_booked,
        c.opted_out,
        c.inactive_due_ms
    ])?;
    Ok(())
}

/// Sets a status tag on every conversation of the org's contact `phone`.
pub fn tag_conversations(conn: Sql<'_>, org: OrgId, phone: &str, tag: &str) -> Result<(), DbError> {
    let column = match tag {
        "appointment_booked" => "appointment_booked",
        "opted_out" => "opted_out",
        _ => "replied",
    };
    conn.execute(
        &format!("UPDATE conversations SET {column} = 1 WHERE org_id = ?1 AND phone = ?2"),
        args![org, phone],
    )?;
    Ok(())
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub at_ms: i64,
    /// `user` or `bot`.
    pub sender: String,
    pub content: String,
    /// `text`, `image`, `audio`, `video`, `document` or `location`.
    pub content_type: String,
    pub media_url: Option<String>,
}

/// A message from `at, sender, content, content_type, media_url`.
fn message_of(r: &Row<'_>) -> Result<Message, RepoError> {
    Ok(Message {
        at_ms: r.get(0)?,
        sender: r.get(1)?,
        content: r.get(2)?,
        content_type: r.get(3)?,
        media_url: r.get(4)?,
    })
}

pub fn add_message(conn: Sql<'_>, k: &ConversationKey, m: &Message) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO conversation_messages (org_id, bot_integration_id, phone, at, sender, content, content_type, media_url) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        args![
        k.org,
        k.bot_integration_id,
        k.phone,
        m.at_ms,
        m.sender,
        m.content,
        m.content_type,
        m.media_url
    ])?;
    Ok(())
}

/// The conversation's newest `n` messages, oldest first.
pub fn recent_messages(
    conn: Sql<'_>,
    k: &ConversationKey,
    n: usize,
) -> Result<Vec<Message>, DbError> {
    // `rowid`: SQLite's own, a column of that name on Postgres (insertion order).
    let mut out = conn.query(
        "SELECT at, sender, content, content_type, media_url FROM conversation_messages \
         WHERE org_id = ?1 AND bot_integration_id = ?2 AND phone = ?3 ORDER BY at DESC, rowid DESC LIMIT ?4",
        args![k.org, k.bot_integration_id, k.phone, n],
        message_of,
    )?;
    out.reverse();
    Ok(out)
}

/// The last message of `sender` in the conversation.
pub fn last_message_of(
    conn: Sql<'_>,
    k: &ConversationKey,
    sender: &str,
) -> Result<Option<Message>, DbError> {
    Ok(conn.query_opt(
        "SELECT at, sender, content, content_type, media_url FROM conversation_messages \
         WHERE org_id = ?1 AND bot_integration_id = ?2 AND phone = ?3 AND sender = ?4 ORDER BY at DESC, rowid DESC LIMIT 1",
        args![k.org, k.bot_integration_id, k.phone, sender],
        message_of,
    )?)
}

/// Conversations whose inactivity timer is due at `now_ms`, earliest first.
pub fn due_conversations(
    conn: Sql<'_>,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<ConversationKey>, DbError> {
    // Shared database: the rows stay locked until the transaction that fires them
    // commits, and another process firing at the same time skips them (a timer
    // fires once).
    let sql = if conn.is_postgres() {
        "SELECT org_id, bot_integration_id, phone FROM conversations \
         WHERE inactive_due IS NOT NULL AND inactive_due <= ?1 ORDER BY inactive_due LIMIT ?2 \
         FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT org_id, bot_integration_id, phone FROM conversations \
         WHERE inactive_due IS NOT NULL AND inactive_due <= ?1 ORDER BY inactive_due LIMIT ?2"
    };
    Ok(conn.query(sql, args![now_ms, limit], |r| {
        Ok(ConversationKey {
            org: r.get(0)?,
            bot_integration_id: r.get(1)?,
            phone: r.get(2)?,
        })
    })?)
}

/// When the next inactivity timer is due, if one is armed.
pub fn next_due(conn: Sql<'_>) -> Result<Option<i64>, DbError> {
    Ok(conn.query_one(
        "SELECT min(inactive_due) FROM conversations WHERE inactive_due IS NOT NULL",
        args![],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::db::testing::on_both_backends;

    #[test]
    fn only_enabled_actions_of_enabled_triggers_of_the_type_and_org_are_armed() {
        on_both_backends(|conn, _| {
            let t = |org, kind: &str, enabled| {
                insert_trigger(
                    conn,
                    &Trigger {
                        id: 0,
                        org,
                        kind: kind.into(),
                        name: "t".into(),
                        description: None,
                        enabled,
                        created_at_ms: 0,
                        updated_at_ms: 0,
                    },
                )
                .unwrap()
            };
            let a = |trigger: i64, enabled, endpoint| {
                insert_action(
                    conn,
                    &Action {
                        id: 0,
                        trigger_id: trigger,
                        kind: "webhook".into(),
                        url: "https://x.example/a".into(),
                        name: "a".into(),
                        enabled,
                        endpoint_id: endpoint,
                        created_at_ms: 0,
                        updated_at_ms: 0,
                    },
                )
                .unwrap()
            };
            let on = t(1, "participant_confirmed", true);
            let off = t(1, "participant_confirmed", false);
            let other_type = t(1, "message_sent", true);
            let other_org = t(2, "participant_confirmed", true);
            a(on.id, true, 10);
            a(on.id, false, 11);
            a(off.id, true, 12);
            a(other_type.id, true, 13);
            a(other_org.id, true, 14);
            let armed: Vec<i64> = armed_actions(conn, 1, "participant_confirmed")
                .unwrap()
                .iter()
                .map(|x| x.endpoint_id)
                .collect();
            assert_eq!(armed, [10]);
            assert_eq!(delete_trigger(conn, on.id).unwrap(), [10, 11]);
            assert!(armed_actions(conn, 1, "participant_confirmed")
                .unwrap()
                .is_empty());
        });
    }

    #[test]
    fn triggers_page_newest_first_and_actions_oldest_first() {
        on_both_backends(|conn, backend| {
            let trigger = |org| {
                insert_trigger(
                    conn,
                    &Trigger {
                        id: 0,
                        org,
                        kind: "message_sent".into(),
                        name: "t".into(),
                        description: None,
                        enabled: true,
                        created_at_ms: 0,
                        updated_at_ms: 0,
                    },
                )
                .unwrap()
                .id
            };
            let mut mine: Vec<i64> = (0..3).map(|_| trigger(1)).collect();
            let theirs = trigger(2);
            mine.reverse();
            let page = |before, limit| -> Vec<i64> {
                triggers(conn, 1, before, limit)
                    .unwrap()
                    .iter()
                    .map(|t| t.id)
                    .collect()
            };
            assert_eq!(page(None, 2), mine[..2], "{backend}");
            assert_eq!(page(Some(mine[1]), 2), mine[2..], "{backend}");
            assert_eq!(page(None, 10), mine, "{backend}");
            assert_eq!(trigger_count(conn, 1).unwrap(), 3, "{backend}");

            let action = |trigger_id, endpoint_id| {
                insert_action(
                    conn,
                    &Action {
                        id: 0,
                        trigger_id,
                        kind: "webhook".into(),
                        url: "https://x.example/a".into(),
                        name: "a".into(),
                        enabled: true,
                        endpoint_id,
                        created_at_ms: 0,
                        updated_at_ms: 0,
                    },
                )
                .unwrap()
                .id
            };
            let acts: Vec<i64> = (0..3).map(|e| action(mine[0], 10 + e)).collect();
            action(theirs, 20);
            let page = |after, limit| -> Vec<i64> {
                actions(conn, mine[0], after, limit)
                    .unwrap()
                    .iter()
                    .map(|a| a.id)
                    .collect()
            };
            assert_eq!(page(None, 2), acts[..2], "{backend}");
            assert_eq!(page(Some(acts[1]), 2), acts[2..], "{backend}");
            assert_eq!(page(None, 10), acts, "{backend}");
            assert_eq!(action_count(conn, mine[0]).unwrap(), 3, "{backend}");
            assert_eq!(delete_trigger(conn, mine[0]).unwrap(), [10, 11, 12]);
            assert_eq!(action_count(conn, mine[0]).unwrap(), 0, "{backend}");
        });
    }

    #[test]
    fn a_merge_keeps_what_the_event_does_not_say_and_an_id_is_taken_once() {
        on_both_backends(|conn, _| {
            let c = |email: Option<&str>, first: Option<&str>| Contact {
                phone: "+14155550100".into(),
                email: email.map(str::to_owned),
                first_name: first.map(str::to_owned),
                ..Contact::default()
            };
            merge_contact(conn, 1, &c(Some("a@example.com"), None)).unwrap();
            let merged = merge_contact(conn, 1, &c(None, Some("Ann"))).unwrap();
            assert_eq!(merged.email.as_deref(), Some("a@example.com"));
            assert_eq!(merged.first_name.as_deref(), Some("Ann"));
            assert!(contact(conn, 2, "+14155550100").unwrap().is_none());
            assert!(take_event(conn, 1, "e1", "message_sent", 0).unwrap());
            assert!(!take_event(conn, 1, "e1", "message_sent", 1).unwrap());
            assert!(take_event(conn, 2, "e1", "message_sent", 1).unwrap());
        });
    }

    #[test]
    fn retention_deletes_old_event_ids_messages_and_seen_ids_and_keeps_the_rest() {
        on_both_backends(|conn, backend| {
            assert!(take_event(conn, 1, "old", "message_sent", 1_000).unwrap());
            assert!(take_event(conn, 1, "new", "message_sent", 9_000).unwrap());
            let k = ConversationKey {
                org: 1,
                bot_integration_id: 9,
                phone: "+14155550100".into(),
            };
            for at_ms in [1_000, 9_000] {
                let m = Message {
                    at_ms,
                    sender: "user".into(),
                    content: format!("at {at_ms}"),
                    content_type: "text".into(),
                    media_url: None,
                };
                add_message(conn, &k, &m).unwrap();
            }
            assert!(first_sight(conn, 1, 9, "m:old", 1_000).unwrap());
            assert!(first_sight(conn, 1, 9, "m:new", 9_000).unwrap());
            assert_eq!(delete_older_than(conn, 5_000).unwrap(), 3, "{backend}");
            assert!(
                first_sight(conn, 1, 9, "m:old", 10_000).unwrap(),
                "{backend}: past retention, a WhatsApp id is new again"
            );
            assert!(
                !first_sight(conn, 1, 9, "m:new", 10_000).unwrap(),
                "{backend}"
            );
            assert!(
                take_event(conn, 1, "old", "message_sent", 10_000).unwrap(),
                "{backend}: past retention, an id is new again"
            );
            assert!(
                !take_event(conn, 1, "new", "message_sent", 10_000).unwrap(),
                "{backend}"
            );
            let left: Vec<i64> = recent_messages(conn, &k, 10)
                .unwrap()
                .into_iter()
                .map(|m| m.at_ms)
                .collect();
            assert_eq!(left, [9_000], "{backend}");
        });
    }

    #[test]
    fn conversations_keep_their_messages_in_order_and_their_timers_come_due() {
        on_both_backends(|conn, backend| {
            let integration = Integration {
                bot_integration_id: 9,
                org: 1,
                bot_id: Some(3),
                app_secret: None,
                verify_token: Some("v".into()),
                created_at_ms: 0,
            };
            assert!(insert_integration(conn, &integration).unwrap());
            assert!(
                !insert_integration(conn, &integration).unwrap(),
                "{backend}"
            );
            // Read back with its verify token as stored: hashed.
            assert_eq!(
                integration_of(conn, 1, 9).unwrap(),
                Some(Integration {
                    verify_token: Some(secrets::hash_token("v")),
                    ..integration.clone()
                })
            );
            // Another org's integration with the same id is its own: registered, seen
            // apart, deleted apart.
            let theirs = Integration {
                org: 2,
                ..integration.clone()
            };
            assert!(insert_integration(conn, &theirs).unwrap(), "{backend}");
            // Read back with their verify tokens as stored: hashed.
            let stored = |i: &Integration| Integration {
                verify_token: i.verify_token.as_deref().map(secrets::hash_token),
                ..i.clone()
            };
            assert_eq!(
                integrations_named(conn, 9).unwrap(),
                [stored(&integration), stored(&theirs)]
            );
            assert!(first_sight(conn, 1, 9, "m:1", 1_000).unwrap());
            assert!(!first_sight(conn, 1, 9, "m:1", 1_000).unwrap(), "{backend}");
            assert!(first_sight(conn, 2, 9, "m:1", 1_000).unwrap(), "{backend}");
            assert!(delete_integration(conn, 2, 9).unwrap());
            assert!(!delete_integration(conn, 2, 9).unwrap());
            assert_eq!(integrations_named(conn, 9).unwrap(), [stored(&integration)]);
            assert!(!first_sight(conn, 1, 9, "m:1", 1_000).unwrap(), "{backend}");
            let key = ConversationKey {
                org: 1,
                bot_integration_id: 9,
                phone: "+14155550100".into(),
            };
            let mut c = Conversation {
                inactive_due_ms: Some(500),
                ..Conversation::default()
            };
            put_conversation(conn, &key, &c).unwrap();
            c.replied = true;
            put_conversation(conn, &key, &c).unwrap();
            tag_conversations(conn, 1, &key.phone, "opted_out").unwrap();
            let stored = conversation(conn, &key).unwrap().unwrap();
            assert_eq!(stored.tags(), ["replied", "opted_out"], "{backend}");
            // Same instant: insertion order decides.
            for (sender, content) in [("user", "a"), ("bot", "b"), ("user", "c")] {
                add_message(
                    conn,
                    &key,
                    &Message {
                        at_ms: 100,
                        sender: sender.into(),
                        content: content.into(),
                        content_type: "text".into(),
                        media_url: None,
                    },
                )
                .unwrap();
            }
            let recent: Vec<String> = recent_messages(conn, &key, 2)
                .unwrap()
                .into_iter()
                .map(|m| m.content)
                .collect();
            assert_eq!(recent, ["b", "c"], "{backend}");
            let last = last_message_of(conn, &key, "user").unwrap().unwrap();
            assert_eq!(last.content, "c", "{backend}");
            assert_eq!(next_due(conn).unwrap(), Some(500));
            assert!(due_conversations(conn, 499, 10).unwrap().is_empty());
            assert_eq!(due_conversations(conn, 500, 10).unwrap(), [key]);
        });
    }
}

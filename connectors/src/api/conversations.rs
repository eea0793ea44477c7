//! `GET /api/v1/contacts/{phoneE164}/conversations`: a contact's WhatsApp
//! conversations as the console's Contacts page shows them: state, status tags, the
//! pending inactivity timer, and the newest messages.

use super::auth::ApiKeyOrg;
use super::{bad, store_error, ApiError, AppState, ErrorBody};
use axum::extract::{Path, Query, State};
use axum::Json;
use leadstream_pipeline::time::format_rfc3339_ms;
use serde::Serialize;

/// Messages of each conversation answered by default and at most.
const DEFAULT_MESSAGES: usize = 50;
const MAX_MESSAGES: usize = 500;

/// One message.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    at: String,
    /// `user` or `bot`.
    sender: String,
    content: String,
    /// `text`, `image`, `audio`, `video`, `document` or `location`.
    content_type: String,
    media_url: Option<String>,
}

/// One conversation: the contact with one WhatsApp integration.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationOut {
    bot_integration_id: i64,
    phone_e164: String,
    profile_name: Option<String>,
    last_user_message_at: Option<String>,
    last_bot_message_at: Option<String>,
    /// `appointment_booked`, `replied`, `opted_out`, as they apply.
    tags: Vec<&'static str>,
    /// When `conversation_inactive` fires if nobody writes before; null when no timer
    /// is pending.
    inactive_at: Option<String>,
    /// The newest messages (at most `messages`), oldest first.
    messages: Vec<MessageOut>,
}

/// The answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversationList {
    data: Vec<ConversationOut>,
}

/// A contact's conversations, by integration id, each with its newest messages.
#[utoipa::path(get, path = "/api/v1/contacts/{phoneE164}/conversations", tag = "domain events", security(("api_key" = [])),
    params(
        ("phoneE164" = String, Path, description = "The contact's phone, normalized as ingest does"),
        ("messages" = Option<u32>, Query, description = "Newest messages of each conversation, 1 to 500 (default 50)", minimum = 1, maximum = 500),
    ),
    responses(
        (status = 200, description = "The conversations (none: an empty list)", body = ConversationList),
        (status = 400, description = "The phone or messages is not valid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(phone): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ConversationList>, ApiError> {
    let q = super::query_params(pairs, &["messages"])?;
    let messages = match q.get("messages").map(|m| m.trim()) {
        None => DEFAULT_MESSAGES,
        Some(m) => match m.parse::<usize>() {
            Ok(n @ 1..=MAX_MESSAGES) => n,
            _ => return Err(bad(format!("messages {m:?}: expected 1 to {MAX_MESSAGES}"))),
        },
    };
    let phone = super::domain::contact_phone(&s, &phone)?;
    let found = s
        .domain
        .conversations(org, phone, messages)
        .await
        .map_err(store_error)?;
    let data = found
        .into_iter()
        .map(|(k, c, recent)| ConversationOut {
            bot_integration_id: k.bot_integration_id,
            phone_e164: k.phone,
            tags: c.tags(),
            profile_name: c.profile_name,
            last_user_message_at: c.last_user_at_ms.map(format_rfc3339_ms),
            last_bot_message_at: c.last_bot_at_ms.map(format_rfc3339_ms),
            inactive_at: c.inactive_due_ms.map(format_rfc3339_ms),
            messages: recent
                .into_iter()
                .map(|m| MessageOut {
                    at: format_rfc3339_ms(m.at_ms),
                    sender: m.sender,
                    content: m.content,
                    content_type: m.content_type,
                    media_url: m.media_url,
                })
                .collect(),
        })
        .collect();
    Ok(Json(ConversationList { data }))
}

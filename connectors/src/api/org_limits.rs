//! What one organization may have at most (`[org_limits]`): checked before a create,
//! answered 409 naming the limit and what to do. The check reads before the write, so
//! creates racing at a limit may pass it by as many as race; none grows without bound.

use super::{store_error, ApiError, AppState};
use crate::delivery::model::EndpointKind;
use axum::http::StatusCode;
use leadstream_pipeline::OrgId;

/// 409 when `have` of `what` reached `limit` (`key` names it in the config).
fn check(have: u64, limit: u64, what: &str, key: &str, instead: &str) -> Result<(), ApiError> {
    if have < limit {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!("{what}: {have}, the limit (org_limits.{key} = {limit}); {instead}"),
    ))
}

/// Room for one more webhook endpoint of `org`.
pub(super) async fn endpoints(s: &AppState, org: OrgId) -> Result<(), ApiError> {
    let all = s
        .engine
        .endpoints()
        .list(org, None)
        .await
        .map_err(store_error)?;
    let have = all
        .iter()
        .filter(|e| e.kind == EndpointKind::Registry)
        .count();
    check(
        have as u64,
        s.org_limits.endpoints as u64,
        "this organization's webhook endpoints",
        "endpoints",
        "delete one first",
    )
}

/// Room for one more campaign of `org`.
pub(super) async fn campaigns(s: &AppState, org: OrgId) -> Result<(), ApiError> {
    let have = s.campaigns.count(org).await.map_err(store_error)?;
    check(
        have,
        s.org_limits.campaigns as u64,
        "this organization's campaigns",
        "campaigns",
        "delete or reuse one first",
    )
}

/// Room for one more send of campaign `id`.
pub(super) async fn sends(s: &AppState, id: i64) -> Result<(), ApiError> {
    let have = s.campaigns.send_count(id).await.map_err(store_error)?;
    check(
        have,
        s.org_limits.sends_per_campaign as u64,
        &format!("campaign {id}'s sends"),
        "sends_per_campaign",
        "make another campaign for more",
    )
}

/// Room for more leads in campaign `id`'s audience.
pub(super) async fn audience(s: &AppState, id: i64) -> Result<(), ApiError> {
    let have = s.campaigns.audience_size(id).await.map_err(store_error)?;
    check(
        have,
        s.org_limits.audience,
        &format!("campaign {id}'s audience"),
        "audience",
        "it is full: send to it, or split the leads across campaigns",
    )
}

/// Room for one more trigger of `org`.
pub(super) async fn triggers(s: &AppState, org: OrgId) -> Result<(), ApiError> {
    let have = s.domain.trigger_count(org).await.map_err(store_error)?;
    check(
        have,
        s.org_limits.triggers as u64,
        "this organization's triggers",
        "triggers",
        "delete one first",
    )
}

/// Room for one more action of trigger `id`.
pub(super) async fn actions(s: &AppState, id: i64) -> Result<(), ApiError> {
    let have = s.domain.action_count(id).await.map_err(store_error)?;
    check(
        have,
        s.org_limits.actions_per_trigger as u64,
        &format!("trigger {id}'s actions"),
        "actions_per_trigger",
        "delete one first",
    )
}

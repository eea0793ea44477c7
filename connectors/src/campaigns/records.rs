//! Campaigns, audiences, sends, audience filters and opt-outs as the API manages them:
//! one service call per operation, each one transaction of the campaign store with its
//! rule checked inside it (a draft is edited only while it is a draft, a state change
//! applies to the state the write finds, a filter is refused once its send's set was
//! fixed). Handlers never see the store.

use super::model::{Campaign, CampaignState, Send, Transition};
use super::store::{self, AudienceRow};
use super::Campaigns;
use crate::delivery::store::DbError;
use crate::writer::now_ms;
use leadstream_pipeline::eligibility::Mode;
use leadstream_pipeline::{OrgId, Phone};

pub use super::store::SendProgress;

impl Campaigns {
    /// Campaign `id` when it is `org`'s: another org's is `None`, as a missing one.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn owned(&self, org: OrgId, id: i64) -> Result<Option<Campaign>, DbError> {
        let found = self
            .inner
            .db
            .read(move |conn| store::campaign(conn, id))
            .await?;
        Ok(found.filter(|c| c.org == org))
    }

    /// A new draft campaign.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn create(
        &self,
        org: OrgId,
        name: String,
        delivery_url: Option<String>,
        endpoint_id: i64,
    ) -> Result<Campaign, DbError> {
        self.inner
            .db
            .write(move |conn| {
                store::insert_campaign(
                    conn,
                    org,
                    &name,
                    delivery_url.as_deref(),
                    endpoint_id,
                    now_ms(),
                )
            })
            .await
    }

    /// `org`'s campaigns, newest first, with ids below `before`, at most `limit`, each
    /// with its audience size (one query for them all).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn list(
        &self,
        org: OrgId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Campaign, u64)>, DbError> {
        self.inner
            .db
            .read(move |conn| store::campaigns(conn, org, before, limit))
            .await
    }

    /// How many campaigns `org` has.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn count(&self, org: OrgId) -> Result<u64, DbError> {
        self.inner
            .db
            .read(move |conn| store::campaign_count(conn, org))
            .await
    }

    /// Whether no campaign delivers to endpoint `id` (one made for a campaign's
    /// `deliveryUrl` and left behind by a change of it).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn endpoint_unused(&self, id: i64) -> Result<bool, DbError> {
        Ok(self
            .inner
            .db
            .read(move |conn| store::campaigns_using(conn, id))
            .await?
            == 0)
    }

    /// Changes draft `id`'s name and target; `None` when it is gone.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn update_draft(
        &self,
        id: i64,
        name: String,
        delivery_url: Option<String>,
        endpoint_id: i64,
    ) -> Result<Option<Campaign>, DbError> {
        self.inner
            .db
            .write(move |conn| {
                store::update_draft(
                    conn,
                    id,
                    &name,
                    delivery_url.as_deref(),
                    endpoint_id,
                    now_ms(),
                )?;
                store::campaign(conn, id)
            })
            .await
    }

    /// Applies `action` to campaign `id` in the state the write finds it in: the
    /// campaign as it is now, or the state that refused the action. Scheduled or
    /// resumed with every send already emitted, it is completed at once.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn transition(
        &self,
        id: i64,
        action: Transition,
    ) -> Result<Result<Campaign, CampaignState>, DbError> {
        self.inner
            .db
            .write(move |conn| {
                let Some(c) = store::campaign(conn, id)? else {
                    return Ok(Err(CampaignState::Cancelled));
                };
                match action.apply(c.state, c.paused_from) {
                    None => Ok(Err(c.state)),
                    Some((next, paused_from)) => {
                        let next = if next.materializes() && store::all_sends_emitted(conn, id)? {
                            CampaignState::Completed
                        } else {
                            next
                        };
                        store::set_state(conn, id, next, paused_from, now_ms())?;
                        store::campaign(conn, id).map(|c| c.ok_or(next))
                    }
                }
            })
            .await
    }

    /// Phones in campaign `id`'s audience.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn audience_size(&self, id: i64) -> Result<u64, DbError> {
        self.inner
            .db
            .read(move |conn| store::audience_size(conn, id))
            .await
    }

    /// Merges `rows` into campaign `id`'s audience, from a blocking thread (an upload
    /// being parsed); how many phones were new to it.
    ///
    /// # Errors
    /// [`DbError`].
    pub fn merge_audience_blocking(&self, id: i64, rows: Vec<AudienceRow>) -> Result<u64, DbError> {
        self.inner
            .db
            .write_blocking(move |conn| store::merge_audience(conn, id, &rows))
    }

    /// Send `id`, any campaign (the caller checks it is the campaign's).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn send(&self, id: i64) -> Result<Option<Send>, DbError> {
        self.inner.db.read(move |conn| store::send(conn, id)).await
    }

    /// Campaign `id`'s sends, newest first, with ids below `before`, at most `limit`,
    /// each with its progress (one query for them all).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn sends(
        &self,
        id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Send, SendProgress)>, DbError> {
        self.inner
            .db
            .read(move |conn| store::sends(conn, id, before, limit))
            .await
    }

    /// How many sends campaign `id` has.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn send_count(&self, id: i64) -> Result<u64, DbError> {
        self.inner
            .db
            .read(move |conn| store::send_count(conn, id))
            .await
    }

    /// Adds `send` to its campaign while the campaign still takes sends; otherwise the
    /// state that refused it.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn add_send(&self, send: Send) -> Result<Result<Send, CampaignState>, DbError> {
        let campaign = send.campaign_id;
        self.inner
            .db
            .write(move |conn| match store::campaign_state(conn, campaign)? {
                Some(state) if state.takes_sends() => store::insert_send(conn, &send).map(Ok),
                state => Ok(Err(state.unwrap_or(CampaignState::Cancelled))),
            })
            .await
    }

    /// Send `id`'s progress.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn send_progress(&self, id: i64) -> Result<SendProgress, DbError> {
        let ((emitted, _), (delivered, failed, pending)) = self
            .inner
            .db
            .read(move |conn| {
                Ok((
                    store::emitted_counts(conn, id)?,
                    store::delivery_counts(conn, id)?,
                ))
            })
            .await?;
        Ok(SendProgress {
            emitted,
            delivered,
            failed,
            pending,
        })
    }

    /// Replaces send `id`'s audience filter unless its set was fixed meanwhile
    /// (`false`).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn put_audience_filter(
        &self,
        id: i64,
        mode: Mode,
        external_ids: Vec<String>,
        phones: Vec<Phone>,
    ) -> Result<bool, DbError> {
        self.inner
            .db
            .write(move |conn| {
                if store::send(conn, id)?.is_some_and(|x| x.materialized_at_ms.is_some()) {
                    return Ok(false);
                }
                store::put_audience_filter(conn, id, mode, &external_ids, &phones, now_ms())?;
                Ok(true)
            })
            .await
    }

    /// Opts `phones` out of every campaign of `org`; how many were new.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn add_opt_outs(&self, org: OrgId, phones: Vec<Phone>) -> Result<u64, DbError> {
        self.inner
            .db
            .write(move |conn| store::add_opt_outs(conn, org, &phones, now_ms()))
            .await
    }

    /// Removes `org`'s opt-outs of `phones`; how many there were.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn remove_opt_outs(&self, org: OrgId, phones: Vec<Phone>) -> Result<u64, DbError> {
        self.inner
            .db
            .write(move |conn| store::remove_opt_outs(conn, org, &phones))
            .await
    }

    /// When `phone` opted out of `org`'s campaigns, if it did.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn opt_out_since(&self, org: OrgId, phone: Phone) -> Result<Option<i64>, DbError> {
        self.inner
            .db
            .read(move |conn| store::opt_out_since(conn, org, phone))
            .await
    }
}

//! Contacts, triggers and their actions as the API manages them: one service call per
//! operation, each one transaction of the domain store. Handlers never see the store.

use super::store::{self, Action, Contact, Conversation, ConversationKey, Message, Trigger};
use super::Domain;
use crate::delivery::store::DbError;
use leadstream_pipeline::OrgId;

impl Domain {
    /// Creates or replaces `org`'s contact `c`.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn put_contact(&self, org: OrgId, c: Contact) -> Result<(), DbError> {
        self.db
            .write(move |conn| store::put_contact(conn, org, &c))
            .await
    }

    /// `org`'s contact with this phone.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn contact(&self, org: OrgId, phone: String) -> Result<Option<Contact>, DbError> {
        self.db
            .read(move |conn| store::contact(conn, org, &phone))
            .await
    }

    /// Every conversation of `org`'s contact `phone` with its newest `messages`
    /// messages (oldest first), by integration id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn conversations(
        &self,
        org: OrgId,
        phone: String,
        messages: usize,
    ) -> Result<Vec<(ConversationKey, Conversation, Vec<Message>)>, DbError> {
        self.db
            .read(move |conn| {
                store::conversations_of(conn, org, &phone)?
                    .into_iter()
                    .map(|(bot_integration_id, c)| {
                        let k = ConversationKey {
                            org,
                            bot_integration_id,
                            phone: phone.clone(),
                        };
                        let recent = store::recent_messages(conn, &k, messages)?;
                        Ok((k, c, recent))
                    })
                    .collect()
            })
            .await
    }

    /// `org`'s WhatsApp integrations, newest first.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn integrations_of(&self, org: OrgId) -> Result<Vec<store::Integration>, DbError> {
        self.db
            .read(move |conn| store::integrations_of(conn, org))
            .await
    }

    /// Trigger `id`, any org (the caller checks ownership).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn trigger(&self, id: i64) -> Result<Option<Trigger>, DbError> {
        self.db.read(move |conn| store::trigger(conn, id)).await
    }

    /// `org`'s triggers, newest first, with ids below `before`, at most `limit`.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn triggers(
        &self,
        org: OrgId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Trigger>, DbError> {
        self.db
            .read(move |conn| store::triggers(conn, org, before, limit))
            .await
    }

    /// How many triggers `org` has.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn trigger_count(&self, org: OrgId) -> Result<u64, DbError> {
        self.db
            .read(move |conn| store::trigger_count(conn, org))
            .await
    }

    /// Stores a new trigger and answers it with its id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn insert_trigger(&self, t: Trigger) -> Result<Trigger, DbError> {
        self.db
            .write(move |conn| store::insert_trigger(conn, &t))
            .await
    }

    /// Stores `t`'s new fields.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn update_trigger(&self, t: Trigger) -> Result<(), DbError> {
        self.db
            .write(move |conn| store::update_trigger(conn, &t))
            .await
    }

    /// Deletes `org`'s trigger `id` with its actions, then their endpoints (runs still
    /// pending are not attempted).
    ///
    /// # Errors
    /// [`DbError`] deleting the trigger; an endpoint that could not be deleted is
    /// logged (it receives nothing more: no action publishes to it).
    pub async fn delete_trigger(&self, org: OrgId, id: i64) -> Result<(), DbError> {
        let endpoints = self
            .db
            .write(move |conn| store::delete_trigger(conn, id))
            .await?;
        for e in endpoints {
            self.delete_action_endpoint(org, e).await;
        }
        Ok(())
    }

    /// Action `id`, any trigger (the caller checks it is the trigger's).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn action(&self, id: i64) -> Result<Option<Action>, DbError> {
        self.db.read(move |conn| store::action(conn, id)).await
    }

    /// Trigger `trigger`'s actions, oldest first, with ids above `after`, at most
    /// `limit`.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn actions(
        &self,
        trigger: i64,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Action>, DbError> {
        self.db
            .read(move |conn| store::actions(conn, trigger, after, limit))
            .await
    }

    /// How many actions trigger `trigger` has.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn action_count(&self, trigger: i64) -> Result<u64, DbError> {
        self.db
            .read(move |conn| store::action_count(conn, trigger))
            .await
    }

    /// Stores a new action and answers it with its id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn insert_action(&self, a: Action) -> Result<Action, DbError> {
        self.db
            .write(move |conn| store::insert_action(conn, &a))
            .await
    }

    /// Stores `a`'s new fields.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn update_action(&self, a: Action) -> Result<(), DbError> {
        self.db
            .write(move |conn| store::update_action(conn, &a))
            .await
    }

    /// Deletes action `a` of `org`, then its endpoint.
    ///
    /// # Errors
    /// [`DbError`] deleting the action.
    pub async fn delete_action(&self, org: OrgId, a: &Action) -> Result<(), DbError> {
        let id = a.id;
        self.db
            .write(move |conn| store::delete_action(conn, id))
            .await?;
        self.delete_action_endpoint(org, a.endpoint_id).await;
        Ok(())
    }

    async fn delete_action_endpoint(&self, org: OrgId, endpoint: i64) {
        if let Err(e) = self.engine.endpoints().delete(org, endpoint).await {
            tracing::warn!(endpoint, error = %e, "deleting a deleted action's endpoint; no action publishes to it any more");
        }
    }
}

-- Domain events (connectors/src/domain): WhatsApp integrations, contacts,
-- conversations and messages, the inbox of seen ids, triggers, actions and their
-- runs. IF NOT EXISTS adopts a store made before versioned migrations.
CREATE TABLE IF NOT EXISTS contacts (
    org_id        INTEGER NOT NULL,
    phone         TEXT    NOT NULL,
    email         TEXT,
    full_name     TEXT,
    first_name    TEXT,
    last_name     TEXT,
    metadata      TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS domain_events (
    org_id        INTEGER NOT NULL,
    id            TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    received_at   INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS triggers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT,
    enabled       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS triggers_org_type ON triggers (org_id, type);
CREATE TABLE IF NOT EXISTS trigger_actions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_id    INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    enabled       INTEGER NOT NULL,
    endpoint_id   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trigger_actions_trigger ON trigger_actions (trigger_id, id);
CREATE TABLE IF NOT EXISTS whatsapp_integrations (
    bot_integration_id  INTEGER PRIMARY KEY,
    org_id              INTEGER NOT NULL,
    bot_id              INTEGER,
    app_secret          TEXT,
    verify_token        TEXT,
    created_at          INTEGER NOT NULL
);
-- Message ids and (status id, status) already taken from an integration's webhooks:
-- WhatsApp redelivers, and a redelivery causes nothing new.
CREATE TABLE IF NOT EXISTS whatsapp_seen (
    bot_integration_id  INTEGER NOT NULL,
    key                 TEXT    NOT NULL,
    PRIMARY KEY (bot_integration_id, key)
) WITHOUT ROWID;
-- A conversation per (org, integration, contact). inactive_due: when its
-- conversation_inactive fires (ms), NULL when no timer is armed; the timers are this
-- column and its index, nothing in memory.
CREATE TABLE IF NOT EXISTS conversations (
    org_id              INTEGER NOT NULL,
    bot_integration_id  INTEGER NOT NULL,
    phone               TEXT    NOT NULL,
    profile_name        TEXT,
    last_user_at        INTEGER,
    last_bot_at         INTEGER,
    replied             INTEGER NOT NULL DEFAULT 0,
    appointment_booked  INTEGER NOT NULL DEFAULT 0,
    opted_out           INTEGER NOT NULL DEFAULT 0,
    inactive_due        INTEGER,
    PRIMARY KEY (org_id, bot_integration_id, phone)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversations_due ON conversations (inactive_due) WHERE inactive_due IS NOT NULL;
CREATE TABLE IF NOT EXISTS conversation_messages (
    org_id              INTEGER NOT NULL,
    bot_integration_id  INTEGER NOT NULL,
    phone               TEXT    NOT NULL,
    at                  INTEGER NOT NULL,
    sender              TEXT    NOT NULL CHECK (sender IN ('user', 'bot')),
    content             TEXT    NOT NULL,
    content_type        TEXT    NOT NULL,
    media_url           TEXT
);
CREATE INDEX IF NOT EXISTS conversation_messages_by_conversation
    ON conversation_messages (org_id, bot_integration_id, phone, at);
CREATE INDEX IF NOT EXISTS conversation_messages_by_sender
    ON conversation_messages (org_id, bot_integration_id, phone, sender, at);

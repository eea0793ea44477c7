-- Campaigns, audiences, opt-outs, sends and their fixed eligible sets
-- (connectors/src/campaigns). IF NOT EXISTS adopts a store made before versioned
-- migrations.
CREATE TABLE IF NOT EXISTS campaigns (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    paused_from   TEXT,
    delivery_url  TEXT,
    endpoint_id   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS campaigns_org ON campaigns (org_id, id);
CREATE TABLE IF NOT EXISTS audience (
    campaign_id   INTEGER NOT NULL,
    phone         INTEGER NOT NULL,
    external_id   TEXT,
    variables     TEXT    NOT NULL,
    PRIMARY KEY (campaign_id, phone)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS opt_outs (
    org_id        INTEGER NOT NULL,
    phone         INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sends (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id          INTEGER NOT NULL,
    org_id               INTEGER NOT NULL,
    scheduled_us         INTEGER NOT NULL,
    local_time           TEXT,
    time_zone            TEXT,
    template_name        TEXT    NOT NULL,
    language             TEXT    NOT NULL,
    filter_mode          TEXT,
    filter_event_type    TEXT,
    filter_within        INTEGER,
    use_audience_filter  INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    materialized_at      INTEGER,
    emitted_all          INTEGER NOT NULL DEFAULT 0,
    event_id             TEXT,
    eligible             INTEGER NOT NULL DEFAULT 0,
    emitted              INTEGER NOT NULL DEFAULT 0,
    emitted_through      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sends_campaign ON sends (campaign_id, id);
CREATE INDEX IF NOT EXISTS sends_due ON sends (emitted_all, scheduled_us);
CREATE TABLE IF NOT EXISTS audience_filters (
    send_id       INTEGER PRIMARY KEY,
    mode          TEXT    NOT NULL,
    received_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audience_filter_leads (
    send_id       INTEGER NOT NULL,
    external_id   TEXT,
    phone         INTEGER
);
CREATE INDEX IF NOT EXISTS audience_filter_leads_send ON audience_filter_leads (send_id);
-- A send's eligible set with each lead's externalId and variables as they were when
-- it was fixed. It is emitted in phone order, a chunk per transaction: the leads up to
-- sends.emitted_through have their deliveries (sends.emitted of them).
CREATE TABLE IF NOT EXISTS send_leads (
    send_id       INTEGER NOT NULL,
    phone         INTEGER NOT NULL,
    external_id   TEXT,
    variables     TEXT    NOT NULL,
    PRIMARY KEY (send_id, phone)
) WITHOUT ROWID;
-- The deliveries of each emitted chunk: seqs first_seq..last_seq (one transaction
-- inserts them in a row).
CREATE TABLE IF NOT EXISTS send_emits (
    send_id       INTEGER NOT NULL,
    first_seq     INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    PRIMARY KEY (send_id, first_seq)
) WITHOUT ROWID;

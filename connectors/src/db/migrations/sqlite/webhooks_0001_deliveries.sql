-- The delivery engine (connectors/src/delivery): endpoints and their secrets,
-- published events, deliveries (the embedded queue), attempts and Kafka mode's
-- outbox. IF NOT EXISTS adopts a webhooks.db made before versioned migrations.
CREATE TABLE IF NOT EXISTS endpoints (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           INTEGER NOT NULL,
    kind             TEXT    NOT NULL DEFAULT 'registry' CHECK (kind IN ('registry', 'settings')),
    url              TEXT    NOT NULL,
    description      TEXT,
    event_types      TEXT,
    enabled          INTEGER NOT NULL DEFAULT 1,
    disabled_reason  TEXT,
    timeout_ms       INTEGER,
    max_in_flight    INTEGER,
    rate_limit       REAL,
    failing_since    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS endpoints_settings ON endpoints (org_id) WHERE kind = 'settings';
CREATE TABLE IF NOT EXISTS endpoint_secrets (
    endpoint_id  INTEGER NOT NULL,
    secret       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER
);
CREATE INDEX IF NOT EXISTS endpoint_secrets_endpoint ON endpoint_secrets (endpoint_id);
CREATE TABLE IF NOT EXISTS events (
    id               TEXT    PRIMARY KEY,
    org_id           INTEGER NOT NULL,
    event_type       TEXT    NOT NULL,
    payload          BLOB    NOT NULL,
    idempotency_key  TEXT,
    deliveries       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency ON events (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    event_id         TEXT    NOT NULL,
    org_id           INTEGER NOT NULL,
    endpoint_id      INTEGER NOT NULL,
    url              TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      INTEGER,
    last_error       TEXT,
    next_attempt_at  INTEGER,
    single_attempt   INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    part             BLOB
);
CREATE INDEX IF NOT EXISTS deliveries_org_created ON deliveries (org_id, created_at, seq);
CREATE INDEX IF NOT EXISTS deliveries_org_updated ON deliveries (org_id, updated_at, seq);
CREATE INDEX IF NOT EXISTS deliveries_endpoint_created ON deliveries (endpoint_id, created_at);
DROP INDEX IF EXISTS deliveries_endpoint;
DROP INDEX IF EXISTS deliveries_pending;
CREATE TABLE IF NOT EXISTS attempts (
    delivery_seq     INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    url              TEXT    NOT NULL,
    response_status  INTEGER,
    response_body    BLOB,
    duration_ms      INTEGER NOT NULL,
    error            TEXT,
    PRIMARY KEY (delivery_seq, attempt)
) WITHOUT ROWID;
-- Kafka mode: deliveries committed here whose records the brokers have not
-- acknowledged yet (seq ranges); the relay produces them and deletes the row.
CREATE TABLE IF NOT EXISTS outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    first_seq        INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL
);

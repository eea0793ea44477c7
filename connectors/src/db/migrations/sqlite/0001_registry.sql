-- Organizations and their credentials (connectors/src/registry), as first released;
-- IF NOT EXISTS adopts a leadstream.db made before versioned migrations.
CREATE TABLE IF NOT EXISTS organizations (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    auth_mode   TEXT    NOT NULL DEFAULT 'api-key' CHECK (auth_mode IN ('api-key', 'hmac')),
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      INTEGER NOT NULL REFERENCES organizations(id),
    kind        TEXT    NOT NULL CHECK (kind IN ('api-key', 'signing-key')),
    hash        BLOB    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS credentials_org ON credentials (org_id, kind);

-- WhatsApp integrations belong to the organization that registered them: the same
-- botIntegrationId registered by two orgs is two integrations, and one org can no
-- longer claim (squat) an id another uses. The ids already taken follow their org.
CREATE TABLE whatsapp_integrations_by_org (
    org_id              INTEGER NOT NULL,
    bot_integration_id  INTEGER NOT NULL,
    bot_id              INTEGER,
    app_secret          TEXT,
    verify_token        TEXT,
    created_at          INTEGER NOT NULL,
    PRIMARY KEY (org_id, bot_integration_id)
);
INSERT INTO whatsapp_integrations_by_org
    SELECT org_id, bot_integration_id, bot_id, app_secret, verify_token, created_at
    FROM whatsapp_integrations;
DROP TABLE whatsapp_integrations;
ALTER TABLE whatsapp_integrations_by_org RENAME TO whatsapp_integrations;
CREATE INDEX whatsapp_integrations_id ON whatsapp_integrations (bot_integration_id);
CREATE TABLE whatsapp_seen_by_org (
    org_id              INTEGER NOT NULL,
    bot_integration_id  INTEGER NOT NULL,
    key                 TEXT    NOT NULL,
    PRIMARY KEY (org_id, bot_integration_id, key)
) WITHOUT ROWID;
INSERT INTO whatsapp_seen_by_org
    SELECT COALESCE(i.org_id, 0), s.bot_integration_id, s.key
    FROM whatsapp_seen s LEFT JOIN whatsapp_integrations i ON i.bot_integration_id = s.bot_integration_id;
DROP TABLE whatsapp_seen;
ALTER TABLE whatsapp_seen_by_org RENAME TO whatsapp_seen;

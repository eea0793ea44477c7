-- WhatsApp integrations belong to the organization that registered them: the same
-- botIntegrationId registered by two orgs is two integrations, and one org can no
-- longer claim (squat) an id another uses. Seen message ids are kept per org too.
ALTER TABLE whatsapp_integrations DROP CONSTRAINT whatsapp_integrations_pkey;
ALTER TABLE whatsapp_integrations ADD PRIMARY KEY (org_id, bot_integration_id);
CREATE INDEX whatsapp_integrations_id ON whatsapp_integrations (bot_integration_id);
ALTER TABLE whatsapp_seen ADD COLUMN org_id BIGINT;
UPDATE whatsapp_seen s SET org_id = i.org_id
    FROM whatsapp_integrations i WHERE i.bot_integration_id = s.bot_integration_id;
UPDATE whatsapp_seen SET org_id = 0 WHERE org_id IS NULL;
ALTER TABLE whatsapp_seen ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE whatsapp_seen DROP CONSTRAINT whatsapp_seen_pkey;
ALTER TABLE whatsapp_seen ADD PRIMARY KEY (org_id, bot_integration_id, key);

-- When each WhatsApp message id or status was first seen, so that retention
-- (delivery.log_retention) deletes the inbox of seen ids like the other domain
-- records. Rows from before are dated now: they age from the upgrade.
ALTER TABLE whatsapp_seen ADD COLUMN seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE whatsapp_seen SET seen_at = (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT;
CREATE INDEX whatsapp_seen_at ON whatsapp_seen (seen_at);

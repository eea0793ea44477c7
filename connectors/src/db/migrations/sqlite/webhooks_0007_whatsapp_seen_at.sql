-- When each WhatsApp message id or status was first seen, so that retention
-- (delivery.log_retention) deletes the inbox of seen ids like the other domain
-- records. Rows from before are dated now: they age from the upgrade.
ALTER TABLE whatsapp_seen ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
UPDATE whatsapp_seen SET seen_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
CREATE INDEX whatsapp_seen_at ON whatsapp_seen (seen_at);

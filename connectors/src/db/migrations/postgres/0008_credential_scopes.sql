-- What each API key may do (connectors/src/registry: Scope). Keys issued before
-- scopes existed could do everything, and still can: they are admin keys.
ALTER TABLE credentials ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin' CHECK (scope IN ('read', 'ingest', 'admin'));

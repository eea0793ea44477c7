-- The delivery log sorted by updatedAt sorts an organization's deliveries as the
-- attempts and lastStatus orders do, without an index of its own: every delivery
-- row written (a send's chunk, each attempt's outcome) kept this sixth index up to
-- date, about a tenth of the row's cost (docs/benchmarks.md).
DROP INDEX deliveries_org_updated;
-- The process whose publish an outbox row records: the seq range of a row holds the
-- deliveries other processes inserted meanwhile, and only the publisher's are the
-- row's to produce when another process takes it over (NULL: all of the range).
ALTER TABLE outbox ADD COLUMN owner TEXT;

-- Which process owns each raw lead partition, and where other processes reach it
-- (connectors/src/routing): an HTTP batch's part for a partition is handed to its
-- owner, so counts are exact on any process. Rows are written by their owner after
-- it warmed the partition and deleted when it gives the partition up.
CREATE TABLE lead_partition_owners (
    topic           TEXT    NOT NULL,
    partition       INTEGER NOT NULL,
    partition_count INTEGER NOT NULL,
    owner           TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    since_ms        BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition)
);
-- Keys the processes share, made by the first process that needs one: the key that
-- signs the batch parts processes hand each other.
CREATE TABLE cluster_keys (
    name TEXT  PRIMARY KEY,
    key  BYTEA NOT NULL
);

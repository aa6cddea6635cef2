-- Tombstones are pruned once past --tombstone-retention-hours. A delta must not miss a delete
-- whose tombstone is gone, so the pruner records here the MVCC snapshot it pruned in
-- (pg_current_snapshot() after the DELETE): a delta whose cursor does not include every
-- transaction that snapshot saw may have missed a pruned tombstone, and does a full load instead.
CREATE TABLE IF NOT EXISTS hotplane_tombstone_horizon (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot TEXT NOT NULL
);

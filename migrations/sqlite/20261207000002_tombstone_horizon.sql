-- Tombstones are pruned once past --tombstone-retention-hours. A delta must not miss a delete
-- whose tombstone is gone, so the pruner records here the highest revision it pruned: a delta
-- whose cursor is below it may have missed a pruned tombstone, and does a full load instead.
CREATE TABLE IF NOT EXISTS hotplane_tombstone_horizon (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);

-- The audit trail (src/audit): one row per change of served state, whatever asked for it.
-- Written only by hotplane, in batches, off the request path; rows older than
-- --audit-retention-days are deleted by hotplane. Columns as in the PostgreSQL migration;
-- `at` is TEXT in UTC, 'YYYY-MM-DDTHH:MM:SS.SSSZ', so text order is time order.
CREATE TABLE IF NOT EXISTS reload_audit (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    at                TEXT NOT NULL,
    instance          TEXT NOT NULL,
    caller            TEXT NOT NULL,
    action            TEXT NOT NULL,
    target            TEXT NOT NULL,
    source            TEXT NOT NULL,
    reason            TEXT NOT NULL DEFAULT '',
    generation_before INTEGER NOT NULL,
    generation_after  INTEGER NOT NULL,
    result            TEXT NOT NULL,
    error             TEXT NOT NULL DEFAULT '',
    duration_ms       REAL NOT NULL
);

CREATE INDEX IF NOT EXISTS reload_audit_at_idx ON reload_audit (at);

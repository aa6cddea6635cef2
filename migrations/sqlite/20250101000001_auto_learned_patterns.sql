-- hotplane pattern store, SQLite (the embedded default). There is no legacy SQLite deployment,
-- so this creates the full table with its constraints.
--
-- Times are TEXT in UTC, 'YYYY-MM-DDTHH:MM:SS.SSSZ' (what strftime('%Y-%m-%dT%H:%M:%fZ') and
-- the store write); other clients may write any format SQLite's date functions understand.

CREATE TABLE IF NOT EXISTS auto_learned_patterns (
    -- AUTOINCREMENT: a deleted id is never handed out again, so a tombstone names one row.
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    pattern            TEXT NOT NULL UNIQUE CHECK (length(pattern) <= 200),
    normalized_pattern TEXT NOT NULL
                       CHECK (trim(normalized_pattern) <> '' AND length(normalized_pattern) <= 200),
    category           TEXT NOT NULL DEFAULT '' CHECK (length(category) <= 50),
    confidence         REAL NOT NULL DEFAULT 0 CHECK (confidence BETWEEN 0 AND 1),
    times_used         INTEGER NOT NULL DEFAULT 0 CHECK (times_used >= 0),
    times_correct      INTEGER NOT NULL DEFAULT 0 CHECK (times_correct >= 0),
    accuracy           REAL NOT NULL DEFAULT 0 CHECK (accuracy BETWEEN 0 AND 1),
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_used_at       TEXT,
    created_by         TEXT NOT NULL DEFAULT 'llm' CHECK (length(created_by) <= 50),
    enabled            INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    status             TEXT NOT NULL DEFAULT 'pending' CHECK (length(status) <= 20),
    metadata           TEXT CHECK (metadata IS NULL
                                   OR (json_valid(metadata) AND json_type(metadata) IN ('object', 'null'))),
    updated_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revision           INTEGER NOT NULL DEFAULT 0
);

-- One tombstone per hard-deleted id.
CREATE TABLE IF NOT EXISTS auto_learned_patterns_tombstones (
    id         INTEGER PRIMARY KEY,
    revision   INTEGER NOT NULL,
    deleted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The store revision: one row, bumped inside every writing transaction. SQLite runs one writer
-- at a time, so revisions are handed out in commit order and "revision > cursor" misses nothing.
CREATE TABLE IF NOT EXISTS hotplane_revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO hotplane_revision (id, value) VALUES (1, 0);

CREATE INDEX IF NOT EXISTS auto_learned_patterns_revision_idx
    ON auto_learned_patterns (revision);
CREATE INDEX IF NOT EXISTS auto_learned_patterns_normalized_idx
    ON auto_learned_patterns (normalized_pattern);
CREATE INDEX IF NOT EXISTS auto_learned_patterns_tombstones_revision_idx
    ON auto_learned_patterns_tombstones (revision);

-- AFTER triggers stamp the row with a fresh revision. The inner UPDATE sets only revision and
-- updated_at, which are not in any trigger's column list, so it fires nothing further.
DROP TRIGGER IF EXISTS hotplane_patterns_insert;
CREATE TRIGGER hotplane_patterns_insert
AFTER INSERT ON auto_learned_patterns
BEGIN
    UPDATE hotplane_revision SET value = value + 1 WHERE id = 1;
    UPDATE auto_learned_patterns
       SET revision = (SELECT value FROM hotplane_revision WHERE id = 1),
           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.id;
END;

-- Content columns only: an UPDATE of times_used / last_used_at (a hit flush) does not fire it,
-- and neither does one that writes the same values again.
DROP TRIGGER IF EXISTS hotplane_patterns_update;
CREATE TRIGGER hotplane_patterns_update
AFTER UPDATE OF id, pattern, normalized_pattern, category, confidence, times_correct, accuracy,
                created_at, created_by, enabled, status, metadata
ON auto_learned_patterns
WHEN OLD.id IS NOT NEW.id
  OR OLD.pattern IS NOT NEW.pattern
  OR OLD.normalized_pattern IS NOT NEW.normalized_pattern
  OR OLD.category IS NOT NEW.category
  OR OLD.confidence IS NOT NEW.confidence
  OR OLD.times_correct IS NOT NEW.times_correct
  OR OLD.accuracy IS NOT NEW.accuracy
  OR OLD.created_at IS NOT NEW.created_at
  OR OLD.created_by IS NOT NEW.created_by
  OR OLD.enabled IS NOT NEW.enabled
  OR OLD.status IS NOT NEW.status
  OR OLD.metadata IS NOT NEW.metadata
BEGIN
    UPDATE hotplane_revision SET value = value + 1 WHERE id = 1;
    UPDATE auto_learned_patterns
       SET revision = (SELECT value FROM hotplane_revision WHERE id = 1),
           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.id;
    -- An id changed away is, for readers, a deleted row.
    INSERT OR REPLACE INTO auto_learned_patterns_tombstones (id, revision)
    SELECT OLD.id, value FROM hotplane_revision WHERE id = 1 AND OLD.id IS NOT NEW.id;
END;

DROP TRIGGER IF EXISTS hotplane_patterns_delete;
CREATE TRIGGER hotplane_patterns_delete
AFTER DELETE ON auto_learned_patterns
BEGIN
    UPDATE hotplane_revision SET value = value + 1 WHERE id = 1;
    INSERT OR REPLACE INTO auto_learned_patterns_tombstones (id, revision)
    SELECT OLD.id, value FROM hotplane_revision WHERE id = 1;
END;

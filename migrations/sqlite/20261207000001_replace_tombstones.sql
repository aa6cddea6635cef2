-- REPLACE conflict resolution (INSERT OR REPLACE, REPLACE INTO, UPDATE OR REPLACE) deletes the
-- rows an incoming row conflicts with, and fires no delete trigger for them unless the writing
-- connection turned `recursive_triggers` on, which another client's connection need not do.
-- Without a tombstone a delta would keep serving the replaced row. These BEFORE triggers
-- tombstone every other row that holds the incoming raw text (the UNIQUE column a replace can
-- delete by), in the same transaction as the write.
--
-- A conflict that does not end in a delete (INSERT OR IGNORE, an upsert's DO UPDATE, a plain
-- INSERT that fails) either rolls the tombstone back with the failing statement or leaves one
-- for a row that still exists: deltas count a tombstone only for an id absent from the table
-- (src/store/sqlite.rs). A replace by id needs nothing here: the id is written again, and its
-- new row is stamped like any insert.
DROP TRIGGER IF EXISTS hotplane_patterns_replace_insert;
CREATE TRIGGER hotplane_patterns_replace_insert
BEFORE INSERT ON auto_learned_patterns
WHEN EXISTS (SELECT 1 FROM auto_learned_patterns
              WHERE pattern = NEW.pattern AND id IS NOT NEW.id)
BEGIN
    UPDATE hotplane_revision SET value = value + 1 WHERE id = 1;
    INSERT OR REPLACE INTO auto_learned_patterns_tombstones (id, revision)
    SELECT p.id, r.value FROM auto_learned_patterns AS p, hotplane_revision AS r
     WHERE r.id = 1 AND p.pattern = NEW.pattern AND p.id IS NOT NEW.id;
END;

DROP TRIGGER IF EXISTS hotplane_patterns_replace_update;
CREATE TRIGGER hotplane_patterns_replace_update
BEFORE UPDATE OF pattern ON auto_learned_patterns
WHEN EXISTS (SELECT 1 FROM auto_learned_patterns
              WHERE pattern = NEW.pattern AND id IS NOT NEW.id AND id IS NOT OLD.id)
BEGIN
    UPDATE hotplane_revision SET value = value + 1 WHERE id = 1;
    INSERT OR REPLACE INTO auto_learned_patterns_tombstones (id, revision)
    SELECT p.id, r.value FROM auto_learned_patterns AS p, hotplane_revision AS r
     WHERE r.id = 1 AND p.pattern = NEW.pattern AND p.id IS NOT NEW.id
       AND p.id IS NOT OLD.id;
END;

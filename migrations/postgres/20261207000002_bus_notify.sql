-- The PostgreSQL bus (`--bus postgres`, src/bus/pg.rs): every statement that changes served
-- content NOTIFYs channel `hotplane_patterns` with this schema's name as payload, so replicas
-- LISTENing there read a delta within milliseconds, whoever wrote the row (plain SQL included).
--
-- STATEMENT-level, so a 10,000-row statement sends one notification, and PostgreSQL folds
-- identical notifications of one transaction into one; each trigger looks at its transition
-- table first so a statement that changed nothing sends nothing. An UPDATE notifies only when
-- some row's revision is this transaction's: hit-counter updates (times_used, last_used_at)
-- keep the old revision (see hotplane_patterns_stamp) and stay silent. TRUNCATE always notifies.
--
-- Installed whatever bus is configured (migrations do not depend on flags); with no listener a
-- notification is dropped at commit. The table stays drop-in compatible: writers need no new
-- privilege (pg_notify needs none) and see no new column or constraint.
CREATE OR REPLACE FUNCTION hotplane_patterns_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    changed boolean;
BEGIN
    -- One branch per event: each names only the transition table its trigger has.
    IF TG_OP = 'INSERT' THEN
        changed := EXISTS (SELECT 1 FROM hotplane_new_rows);
    ELSIF TG_OP = 'UPDATE' THEN
        changed := EXISTS (SELECT 1 FROM hotplane_new_rows
                           WHERE revision = pg_current_xact_id()::text::bigint);
    ELSIF TG_OP = 'DELETE' THEN
        changed := EXISTS (SELECT 1 FROM hotplane_old_rows);
    ELSE
        changed := true;
    END IF;
    IF changed THEN
        PERFORM pg_notify('hotplane_patterns', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END
$$;

-- A trigger with a transition table may have one event only: one trigger per event.
DROP TRIGGER IF EXISTS hotplane_patterns_notify_insert ON auto_learned_patterns;
CREATE TRIGGER hotplane_patterns_notify_insert
    AFTER INSERT ON auto_learned_patterns
    REFERENCING NEW TABLE AS hotplane_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hotplane_patterns_notify();

DROP TRIGGER IF EXISTS hotplane_patterns_notify_update ON auto_learned_patterns;
CREATE TRIGGER hotplane_patterns_notify_update
    AFTER UPDATE ON auto_learned_patterns
    REFERENCING NEW TABLE AS hotplane_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hotplane_patterns_notify();

DROP TRIGGER IF EXISTS hotplane_patterns_notify_delete ON auto_learned_patterns;
CREATE TRIGGER hotplane_patterns_notify_delete
    AFTER DELETE ON auto_learned_patterns
    REFERENCING OLD TABLE AS hotplane_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hotplane_patterns_notify();

DROP TRIGGER IF EXISTS hotplane_patterns_notify_truncate ON auto_learned_patterns;
CREATE TRIGGER hotplane_patterns_notify_truncate
    AFTER TRUNCATE ON auto_learned_patterns
    FOR EACH STATEMENT EXECUTE FUNCTION hotplane_patterns_notify();

-- The fleet registry of the PostgreSQL bus (src/bus/pg_fleet.rs): one row per live instance,
-- upserted by its heartbeat; a row whose expires_at has passed (a crashed instance) is not
-- listed and is deleted by whoever notices. A stopping instance deletes its own row. Written
-- only by hotplane.
CREATE TABLE IF NOT EXISTS hotplane_fleet (
    instance_id TEXT PRIMARY KEY,
    -- The instance's state (src/bus/fleet.rs `Member`), as JSON.
    state       JSONB NOT NULL,
    -- When it last beat, and until when it counts as live (last_seen + its --fleet-ttl), by the
    -- database's clock, so replicas' clocks do not matter.
    last_seen   TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

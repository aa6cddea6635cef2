//! SQL of the audit trail (`reload_audit`): batch inserts, filtered pages newest first, and the
//! retention delete. The rows are written by the audit writer only (see `crate::audit`).

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;

use super::{Store, StoreError};
use crate::audit::Entry;

/// A stored audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Row id (increasing; the page token).
    pub id: i64,
    /// When the change finished.
    pub at: DateTime<Utc>,
    /// The instance that applied it.
    pub instance: String,
    /// Who asked.
    pub caller: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Where the request came from.
    pub source: String,
    /// The reason given.
    pub reason: String,
    /// Generation served before.
    pub generation_before: i64,
    /// Generation served after.
    pub generation_after: i64,
    /// `ok`, `noop` or `failed`.
    pub result: String,
    /// The error, when it failed.
    pub error: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
}

/// Which rows `list_audit` returns: newest first, all filters combined.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows with `id < before_id` (the previous page's last id).
    pub before_id: Option<i64>,
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this caller.
    pub caller: Option<String>,
    /// At most this many rows.
    pub limit: i64,
}

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::query(what, source)
}

fn generation(g: u64) -> i64 {
    i64::try_from(g).unwrap_or(i64::MAX)
}

/// SQLite time text (see the migration): fixed width, so text order is time order.
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

const COLUMNS: &str = "id, at, instance, caller, action, target, source, reason, \
                       generation_before, generation_after, result, error, duration_ms";

impl Store {
    /// Inserts a batch of entries applied by `instance`, in one statement or transaction.
    pub async fn insert_audit(&self, instance: &str, entries: &[Entry]) -> Result<(), StoreError> {
        const WHAT: &str = "writing audit rows";
        if entries.is_empty() {
            return Ok(());
        }
        match self {
            Store::Postgres(s) => {
                let col = |f: fn(&Entry) -> String| entries.iter().map(f).collect::<Vec<_>>();
                sqlx::query(
                    "INSERT INTO reload_audit (at, instance, caller, action, target, source, \
                         reason, generation_before, generation_after, result, error, duration_ms) \
                     SELECT at, $2, caller, action, target, source, reason, gb, ga, result, \
                            error, ms \
                       FROM unnest($1::timestamptz[], $3::text[], $4::text[], $5::text[], \
                                   $6::text[], $7::text[], $8::bigint[], $9::bigint[], \
                                   $10::text[], $11::text[], $12::float8[]) \
                            WITH ORDINALITY \
                         AS t(at, caller, action, target, source, reason, gb, ga, result, \
                              error, ms, n) \
                      ORDER BY n",
                )
                .bind(entries.iter().map(|e| e.at).collect::<Vec<_>>())
                .bind(instance)
                .bind(col(|e| e.caller.clone()))
                .bind(col(|e| e.action.to_owned()))
                .bind(col(|e| e.target.clone()))
                .bind(col(|e| e.source.to_owned()))
                .bind(col(|e| e.reason.clone()))
                .bind(
                    entries
                        .iter()
                        .map(|e| generation(e.generation_before))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    entries
                        .iter()
                        .map(|e| generation(e.generation_after))
                        .collect::<Vec<_>>(),
                )
                .bind(col(|e| e.outcome.as_str().to_owned()))
                .bind(col(|e| e.error.clone()))
                .bind(
                    entries
                        .iter()
                        .map(|e| e.duration.as_secs_f64() * 1e3)
                        .collect::<Vec<_>>(),
                )
                .execute(&s.pool)
                .await
                .map_err(q(WHAT))?;
                Ok(())
            }
            Store::Sqlite(s) => {
                let mut tx = s.pool.begin().await.map_err(q(WHAT))?;
                for e in entries {
                    sqlx::query(
                        "INSERT INTO reload_audit (at, instance, caller, action, target, source, \
                             reason, generation_before, generation_after, result, error, \
                             duration_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )
                    .bind(time_text(e.at))
                    .bind(instance)
                    .bind(&e.caller)
                    .bind(e.action)
                    .bind(&e.target)
                    .bind(e.source)
                    .bind(&e.reason)
                    .bind(generation(e.generation_before))
                    .bind(generation(e.generation_after))
                    .bind(e.outcome.as_str())
                    .bind(&e.error)
                    .bind(e.duration.as_secs_f64() * 1e3)
                    .execute(&mut *tx)
                    .await
                    .map_err(q(WHAT))?;
                }
                tx.commit().await.map_err(q(WHAT))
            }
        }
    }

    /// A page of audit rows, newest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        const WHAT: &str = "listing audit rows";
        match self {
            Store::Postgres(s) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM reload_audit \
                      WHERE ($1::bigint IS NULL OR id < $1) \
                        AND ($2::timestamptz IS NULL OR at >= $2) \
                        AND ($3::timestamptz IS NULL OR at < $3) \
                        AND ($4::text IS NULL OR action = $4) \
                        AND ($5::text IS NULL OR caller = $5) \
                      ORDER BY id DESC LIMIT $6"
                )))
                .bind(f.before_id)
                .bind(f.since)
                .bind(f.until)
                .bind(&f.action)
                .bind(&f.caller)
                .bind(f.limit)
                .fetch_all(&s.pool)
                .await
                .map_err(q(WHAT))?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditRow {
                            id: r.try_get("id")?,
                            at: r.try_get("at")?,
                            instance: r.try_get("instance")?,
                            caller: r.try_get("caller")?,
                            action: r.try_get("action")?,
                            target: r.try_get("target")?,
                            source: r.try_get("source")?,
                            reason: r.try_get("reason")?,
                            generation_before: r.try_get("generation_before")?,
                            generation_after: r.try_get("generation_after")?,
                            result: r.try_get("result")?,
                            error: r.try_get("error")?,
                            duration_ms: r.try_get("duration_ms")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(q(WHAT))
            }
            Store::Sqlite(s) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM reload_audit \
                      WHERE (?1 IS NULL OR id < ?1) \
                        AND (?2 IS NULL OR at >= ?2) \
                        AND (?3 IS NULL OR at < ?3) \
                        AND (?4 IS NULL OR action = ?4) \
                        AND (?5 IS NULL OR caller = ?5) \
                      ORDER BY id DESC LIMIT ?6"
                )))
                .bind(f.before_id)
                .bind(f.since.map(time_text))
                .bind(f.until.map(time_text))
                .bind(&f.action)
                .bind(&f.caller)
                .bind(f.limit)
                .fetch_all(&s.pool)
                .await
                .map_err(q(WHAT))?;
                rows.iter()
                    .map(|r| {
                        let at: String = r.try_get("at").map_err(q(WHAT))?;
                        let id: i64 = r.try_get("id").map_err(q(WHAT))?;
                        let at = DateTime::parse_from_rfc3339(&at)
                            .map_err(|e| StoreError::BadRow {
                                id,
                                reason: format!("reload_audit.at {at:?}: {e}"),
                            })?
                            .with_timezone(&Utc);
                        let get = |c: &str| -> Result<String, StoreError> {
                            r.try_get(c).map_err(q(WHAT))
                        };
                        Ok(AuditRow {
                            id,
                            at,
                            instance: get("instance")?,
                            caller: get("caller")?,
                            action: get("action")?,
                            target: get("target")?,
                            source: get("source")?,
                            reason: get("reason")?,
                            generation_before: r.try_get("generation_before").map_err(q(WHAT))?,
                            generation_after: r.try_get("generation_after").map_err(q(WHAT))?,
                            result: get("result")?,
                            error: get("error")?,
                            duration_ms: r.try_get("duration_ms").map_err(q(WHAT))?,
                        })
                    })
                    .collect()
            }
        }
    }

    /// Deletes the audit rows older than `before`; returns how many.
    pub async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        const WHAT: &str = "deleting expired audit rows";
        let done = match self {
            Store::Postgres(s) => sqlx::query("DELETE FROM reload_audit WHERE at < $1")
                .bind(before)
                .execute(&s.pool)
                .await
                .map_err(q(WHAT))?
                .rows_affected(),
            Store::Sqlite(s) => sqlx::query("DELETE FROM reload_audit WHERE at < ?1")
                .bind(time_text(before))
                .execute(&s.pool)
                .await
                .map_err(q(WHAT))?
                .rows_affected(),
        };
        Ok(done)
    }
}

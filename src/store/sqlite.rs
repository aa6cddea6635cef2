//! The SQLite store: the embedded default, one file (or `sqlite::memory:` for tests).
//!
//! SQLite runs one writer at a time, so a counter bumped by triggers inside each writing
//! transaction hands out revisions in commit order; the cursor is simply the highest revision a
//! load saw. Writers here take the lock up front (`BEGIN IMMEDIATE`) so that a read followed by
//! a write in one transaction cannot be overtaken (no check-then-insert race).
//!
//! Times are written as UTC text, `YYYY-MM-DDTHH:MM:SS.SSSZ`, the format of the columns'
//! defaults, and compared with `julianday()` so rows written by other clients in another
//! format still compare correctly.

use std::{collections::BTreeMap, str::FromStr, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{
    Column, Row,
    migrate::Migrator,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};
use tokio_stream::StreamExt;

use super::{
    Cursor, DeltaLoad, FullLoad, HitDelta, LearnOutcome, ListQuery, StoreError, StoreOptions,
    live_limits::{self, SharedLimits},
    row_columns::Col::*,
    sqlite_rows::{FULL_SQL, REVISION, checked_metadata, columns},
};
use crate::{
    model::{NewPattern, PatternRow, PatternStatus, RowRef},
    snapshot::Records,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const BACKEND: &str = "sqlite";

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite pattern store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The pool (a single, never-closed connection for an in-memory database).
    pub(super) pool: SqlitePool,
    /// The database file, read directly by full loads (`None` in memory).
    pub(super) file: Option<std::path::PathBuf>,
    /// The limits the table's declared types give (read after migrating).
    pub(super) limits: SharedLimits,
    /// The URL it was opened with, redacted.
    pub(super) url: std::sync::Arc<str>,
}

/// Maps a driver error to a query error saying what was being done.
fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::query(what, source)
}

fn decode(row: &SqliteRow) -> Result<PatternRow, StoreError> {
    let at = columns_at(row)?;
    decode_at(row, at)
}

/// Where `columns!()` starts in `row`.
fn columns_at(row: &SqliteRow) -> Result<usize, StoreError> {
    row.try_column("id")
        .map(|c| c.ordinal())
        .map_err(q("decoding a pattern row"))
}

/// Decodes the `columns!()` starting at column `at`, by position: a lookup by name per column
/// and row costs more than the decoding itself in a large load.
fn decode_at(row: &SqliteRow, at: usize) -> Result<PatternRow, StoreError> {
    // The served columns as a full load reads them, plus the ones only a whole row has.
    let r = decode_ref_at(row, at)?;
    let get = |e| StoreError::Query {
        what: "decoding a pattern row",
        source: e,
    };
    let status: &str = row.try_get(Status.at(at)).map_err(get)?;
    Ok(PatternRow {
        id: r.id,
        pattern: r.pattern.to_owned(),
        normalized_pattern: r.normalized_pattern.to_owned(),
        category: r.category.to_owned(),
        confidence: r.confidence,
        times_used: r.times_used,
        times_correct: r.times_correct,
        accuracy: r.accuracy,
        created_at: row.try_get(CreatedAt.at(at)).map_err(get)?,
        last_used_at: row.try_get(LastUsedAt.at(at)).map_err(get)?,
        created_by: r.created_by.to_owned(),
        enabled: row.try_get(Enabled.at(at)).map_err(get)?,
        status: PatternStatus::parse(status),
        metadata: r.metadata.map(str::to_owned),
        updated_at: row.try_get(UpdatedAt.at(at)).map_err(get)?,
        revision: r.revision,
    })
}

/// The served columns of `columns!()` at `at`, borrowed from the row: a full load packs them
/// without making a `PatternRow`.
fn decode_ref_at(row: &SqliteRow, at: usize) -> Result<RowRef<'_>, StoreError> {
    const WHAT: &str = "decoding a pattern row";
    let id: i64 = row.try_get(Id.at(at)).map_err(q(WHAT))?;
    let get = |e| StoreError::Query {
        what: WHAT,
        source: e,
    };
    let enabled: bool = row.try_get(Enabled.at(at)).map_err(get)?;
    let status: &str = row.try_get(Status.at(at)).map_err(get)?;
    let created_at: DateTime<Utc> = row.try_get(CreatedAt.at(at)).map_err(get)?;
    Ok(RowRef {
        id,
        pattern: row.try_get(Pattern.at(at)).map_err(get)?,
        normalized_pattern: row.try_get(NormalizedPattern.at(at)).map_err(get)?,
        category: row.try_get(Category.at(at)).map_err(get)?,
        confidence: row.try_get(Confidence.at(at)).map_err(get)?,
        times_used: row.try_get(TimesUsed.at(at)).map_err(get)?,
        times_correct: row.try_get(TimesCorrect.at(at)).map_err(get)?,
        accuracy: row.try_get(Accuracy.at(at)).map_err(get)?,
        created_at_micros: created_at.timestamp_micros(),
        created_by: row.try_get(CreatedBy.at(at)).map_err(get)?,
        served: enabled && status == "approved",
        metadata: checked_metadata(id, row.try_get(Metadata.at(at)).map_err(get)?)?,
        revision: row.try_get(Revision.at(at)).map_err(get)?,
    })
}

fn decode_all(rows: &[SqliteRow]) -> Result<Vec<PatternRow>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let at = columns_at(first)?;
    rows.iter().map(|r| decode_at(r, at)).collect()
}

/// Metadata as stored: JSON text, or NULL for `Null`.
fn metadata_text(v: &serde_json::Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_string())
}

/// A time as the columns store it.
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Whether the URL names an in-memory database (which exists once per connection).
fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

impl SqliteStore {
    /// Opens the pool, creating the database file if missing.
    pub async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> {
        let connect_err = |source| StoreError::Connect {
            backend: BACKEND,
            source,
        };
        let memory = is_memory(&opts.url);
        let parsed = SqliteConnectOptions::from_str(&opts.url).map_err(connect_err)?;
        let file = (!memory).then(|| parsed.get_filename().to_path_buf());
        let mut options = parsed
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(opts.acquire_timeout);
        if memory {
            // One connection that is never closed: the database lives and dies with it.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            // WAL: readers (loads) never block the writer, nor it them.
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            pool = pool.max_connections(opts.max_connections.max(1));
        }
        let pool = pool.connect_with(options).await.map_err(connect_err)?;
        Ok(SqliteStore {
            pool,
            file,
            limits: live_limits::unknown(),
            url: super::redact_url(&opts.url).into(),
        })
    }

    /// Runs the migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: BACKEND,
                source,
            })?;
        live_limits::refresh_sqlite(&self.pool, &self.limits).await;
        Ok(())
    }

    /// A transaction holding the write lock from its first statement.
    async fn begin_write(&self, what: &'static str) -> Result<Tx, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q(what))
    }

    /// Served rows and the revision, in one read transaction (one WAL snapshot).
    ///
    /// A database file is read directly (see `sqlite_direct`): a tenth of the time of the
    /// pool's driver for a large table. If that read fails for any reason (a value the direct
    /// reader does not decode, say), the load is read again through the pool, whose errors are
    /// the ones reported.
    pub async fn load_full(&self) -> Result<FullLoad, StoreError> {
        if let Some(path) = self.file.clone() {
            let direct = move || super::sqlite_direct::load_full(&path);
            match tokio::task::spawn_blocking(direct).await {
                Ok(Ok(load)) => return Ok(load),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the SQLite file directly failed; reading it through the pool");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the direct SQLite read stopped; reading it through the pool");
                }
            }
        }
        self.load_full_pooled().await
    }

    /// [`Self::load_full`] through the pool.
    pub(super) async fn load_full_pooled(&self) -> Result<FullLoad, StoreError> {
        const WHAT: &str = "reading all served patterns";
        let mut tx = self.pool.begin().await.map_err(q(WHAT))?;
        let revision: i64 = sqlx::query_scalar(REVISION)
            .fetch_one(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        // Streamed: each row is packed as it arrives and the driver's copy freed.
        let mut rows = Records::new();
        {
            let mut stream = sqlx::query(FULL_SQL).fetch(&mut *tx);
            let mut at = None;
            while let Some(row) = stream.next().await {
                let row = row.map_err(q(WHAT))?;
                let at = match at {
                    Some(at) => at,
                    None => *at.insert(columns_at(&row)?),
                };
                rows.push(decode_ref_at(&row, at)?);
            }
        }
        tx.commit().await.map_err(q(WHAT))?;
        Ok(FullLoad {
            rows,
            cursor: Cursor::Sqlite { revision },
            revision,
            readers: 1,
        })
    }

    /// Rows and tombstones with a revision above the cursor's, in one read transaction.
    pub async fn load_delta(&self, since: &Cursor) -> Result<DeltaLoad, StoreError> {
        const WHAT: &str = "reading changed patterns";
        let Cursor::Sqlite { revision: prev } = since else {
            return Err(StoreError::ForeignCursor);
        };
        let mut tx = self.pool.begin().await.map_err(q(WHAT))?;
        let revision: i64 = sqlx::query_scalar(REVISION)
            .fetch_one(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        let horizon: Option<i64> =
            sqlx::query_scalar("SELECT revision FROM hotplane_tombstone_horizon WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(q(WHAT))?;
        if horizon.is_some_and(|h| *prev < h) {
            return Err(StoreError::CursorTooOld);
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns WHERE revision > ?1"
        ))
        .bind(prev)
        .fetch_all(&mut *tx)
        .await
        .map_err(q(WHAT))?;
        // Only ids absent now: an id deleted and inserted again is changed, not gone, and a
        // tombstone left by a REPLACE that did not happen (see the replace_tombstones
        // migration) names a row that still exists. In the same read, so linear in the result.
        let deleted: Vec<i64> = sqlx::query_scalar(
            "SELECT t.id FROM auto_learned_patterns_tombstones AS t \
              WHERE t.revision > ?1 \
                AND NOT EXISTS (SELECT 1 FROM auto_learned_patterns AS p WHERE p.id = t.id)",
        )
        .bind(prev)
        .fetch_all(&mut *tx)
        .await
        .map_err(q(WHAT))?;
        tx.commit().await.map_err(q(WHAT))?;
        let changed = super::decode_off_runtime(rows, WHAT, decode_all).await?;
        Ok(DeltaLoad {
            changed,
            deleted,
            cursor: Cursor::Sqlite { revision },
            revision,
        })
    }

    /// Deletes tombstones older than `before` and raises the horizon to the highest revision
    /// pruned, in one write transaction.
    pub async fn prune_tombstones(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        const WHAT: &str = "pruning tombstones";
        let before = before.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q(WHAT))?;
        let newest: Option<i64> = sqlx::query_scalar(
            "SELECT max(revision) FROM auto_learned_patterns_tombstones \
              WHERE julianday(deleted_at) < julianday(?1)",
        )
        .bind(&before)
        .fetch_one(&mut *tx)
        .await
        .map_err(q(WHAT))?;
        let pruned = sqlx::query(
            "DELETE FROM auto_learned_patterns_tombstones \
              WHERE julianday(deleted_at) < julianday(?1)",
        )
        .bind(&before)
        .execute(&mut *tx)
        .await
        .map_err(q(WHAT))?
        .rows_affected();
        if let Some(newest) = newest {
            sqlx::query(
                "INSERT INTO hotplane_tombstone_horizon (id, revision) VALUES (1, ?1) \
                 ON CONFLICT (id) DO UPDATE SET revision = max(revision, excluded.revision)",
            )
            .bind(newest)
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        }
        tx.commit().await.map_err(q(WHAT))?;
        Ok(pruned)
    }

    /// Rows by id, in any state.
    pub async fn load_ids(&self, ids: &[i64]) -> Result<Vec<PatternRow>, StoreError> {
        const WHAT: &str = "reading patterns by id";
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One bound JSON array instead of a variable number of placeholders.
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns WHERE id IN (SELECT value FROM json_each(?1))"
        ))
        .bind(serde_json::Value::from(ids.to_vec()).to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(q(WHAT))?;
        decode_all(&rows)
    }

    /// The store revision (the counter equals the newest row or tombstone revision).
    pub async fn revision(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(REVISION)
            .fetch_one(&self.pool)
            .await
            .map_err(q("reading the store revision"))
    }

    /// One row by id.
    pub async fn get(&self, id: i64) -> Result<Option<PatternRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading a pattern"))?;
        row.as_ref().map(decode).transpose()
    }

    /// A keyset page: `id > after_id`, ascending, optionally filtered.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<PatternRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns \
              WHERE id > ?1 \
                AND (?2 IS NULL OR COALESCE(status, 'pending') = ?2) \
                AND (?3 IS NULL OR COALESCE(category, '') = ?3) \
              ORDER BY id LIMIT ?4"
        ))
        .bind(query.after_id)
        .bind(query.status.as_ref().map(PatternStatus::as_str))
        .bind(query.category.as_deref())
        .bind(query.limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing patterns"))?;
        decode_all(&rows)
    }

    /// Upsert keyed on the normalized text, inside `BEGIN IMMEDIATE`: no other writer can slip
    /// in between the lookup and the write.
    pub async fn learn(&self, p: &NewPattern) -> Result<LearnOutcome, StoreError> {
        const WHAT: &str = "learning a pattern";
        let mut tx = self.begin_write(WHAT).await?;
        // The best row, by the same order that resolves duplicates when serving.
        let best = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns WHERE normalized_pattern = ?1 \
              ORDER BY COALESCE(accuracy, 0) DESC, COALESCE(times_used, 0) DESC, \
                       julianday(created_at) DESC, id DESC \
              LIMIT 1"
        ))
        .bind(&p.normalized_pattern)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q(WHAT))?;
        let existing = match best.as_ref().map(decode).transpose()? {
            Some(row) => Some(row),
            // The raw text may exist under another normalized text (a changed normalizer, or
            // another writer): `pattern` is unique, so that row is the one to bring up to date.
            None => sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM auto_learned_patterns WHERE pattern = ?1"
            ))
            .bind(&p.pattern)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q(WHAT))?
            .as_ref()
            .map(decode)
            .transpose()?,
        };
        let outcome = match existing {
            Some(row) => {
                // Status and enabled are left alone: learning never overrides an operator.
                let same = row.normalized_pattern == p.normalized_pattern
                    && row.category == p.category
                    && row.confidence.to_bits() == p.confidence.to_bits()
                    && row.metadata_json() == p.metadata;
                if same {
                    LearnOutcome {
                        row,
                        created: false,
                        updated: false,
                    }
                } else {
                    sqlx::query(
                        "UPDATE auto_learned_patterns \
                            SET normalized_pattern = ?2, category = ?3, confidence = ?4, \
                                metadata = ?5 \
                          WHERE id = ?1",
                    )
                    .bind(row.id)
                    .bind(&p.normalized_pattern)
                    .bind(&p.category)
                    .bind(p.confidence)
                    .bind(metadata_text(&p.metadata))
                    .execute(&mut *tx)
                    .await
                    .map_err(q(WHAT))?;
                    LearnOutcome {
                        row: fetch(&mut tx, row.id, WHAT).await?,
                        created: false,
                        updated: true,
                    }
                }
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO auto_learned_patterns \
                         (pattern, normalized_pattern, category, confidence, metadata, \
                          created_by, status, enabled) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) RETURNING id",
                )
                .bind(&p.pattern)
                .bind(&p.normalized_pattern)
                .bind(&p.category)
                .bind(p.confidence)
                .bind(metadata_text(&p.metadata))
                .bind(&p.created_by)
                .bind(p.initial_status.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(q(WHAT))?;
                LearnOutcome {
                    row: fetch(&mut tx, id, WHAT).await?,
                    created: true,
                    updated: false,
                }
            }
        };
        tx.commit().await.map_err(q(WHAT))?;
        Ok(outcome)
    }

    /// Sets status and enabled; the row as stored, or `None` if the id does not exist.
    pub async fn set_status(
        &self,
        id: i64,
        status: PatternStatus,
        enabled: bool,
    ) -> Result<Option<PatternRow>, StoreError> {
        const WHAT: &str = "setting a pattern's status";
        let mut tx = self.begin_write(WHAT).await?;
        let done =
            sqlx::query("UPDATE auto_learned_patterns SET status = ?2, enabled = ?3 WHERE id = ?1")
                .bind(id)
                .bind(status.as_str())
                .bind(enabled)
                .execute(&mut *tx)
                .await
                .map_err(q(WHAT))?;
        let row = if done.rows_affected() == 0 {
            None
        } else {
            // Read back after the triggers stamped it (RETURNING would not show their work).
            Some(fetch(&mut tx, id, WHAT).await?)
        };
        tx.commit().await.map_err(q(WHAT))?;
        Ok(row)
    }

    /// Hard-deletes a row (the delete trigger writes its tombstone).
    pub async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM auto_learned_patterns WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("deleting a pattern"))?;
        Ok(done.rows_affected() > 0)
    }

    /// The whole batch in one transaction. The update trigger does not watch times_used or
    /// last_used_at, so the revision stays. Unknown ids match nothing. SQLite has no row locks
    /// to skip (one writer at a time, waited for by the busy timeout): no row is ever held.
    pub async fn flush_hits(&self, hits: &[HitDelta]) -> Result<Vec<i64>, StoreError> {
        const WHAT: &str = "flushing hit counts";
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let mut merged: BTreeMap<i64, (i64, DateTime<Utc>)> = BTreeMap::new();
        for h in hits {
            let e = merged.entry(h.id).or_insert((0, h.last_used_at));
            e.0 = e.0.saturating_add(h.count);
            e.1 = e.1.max(h.last_used_at);
        }
        let mut tx = self.begin_write(WHAT).await?;
        for (id, (count, last)) in merged {
            sqlx::query(
                "UPDATE auto_learned_patterns \
                    SET times_used = COALESCE(times_used, 0) + ?2, \
                        last_used_at = CASE \
                            WHEN julianday(last_used_at) >= julianday(?3) THEN last_used_at \
                            ELSE ?3 END \
                  WHERE id = ?1",
            )
            .bind(id)
            .bind(count)
            .bind(time_text(last))
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        }
        tx.commit().await.map_err(q(WHAT))?;
        Ok(Vec::new())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Reads one row that must exist, inside `tx`.
async fn fetch(tx: &mut Tx, id: i64, what: &'static str) -> Result<PatternRow, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM auto_learned_patterns WHERE id = ?1"
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await
    .map_err(q(what))?;
    decode(&row)
}

#[cfg(test)]
mod tests {
    use super::super::{
        row_columns::{aliases, names},
        sqlite_rows::{FULL_SQL, columns},
    };

    /// The SELECT list gives the columns the decoders (and the direct reader) read, in the
    /// order they read them.
    #[test]
    fn the_select_list_follows_the_column_table() {
        assert_eq!(aliases(columns!()), names());
        assert!(FULL_SQL.contains(columns!()));
    }
}

//! The PostgreSQL store: production, possibly sharing its table with other services. Needs
//! PostgreSQL 13 or newer (`pg_current_xact_id`, `pg_snapshot`).
//!
//! Every pooled connection runs with `search_path` set to the configured schema (and `TimeZone`
//! to UTC), so the SQL here and in the migrations names no schema, and `_sqlx_migrations` lives
//! in that schema too: two schemas in one database migrate independently.
//!
//! Rows may come from a legacy table (integer ids, `timestamp` without time zone, nullable
//! columns), so every SELECT casts to one canonical type and fills NULLs (see `columns!`);
//! with the session in UTC, a naive timestamp reads as UTC.
//!
//! Revisions are writer transaction ids and cursors are reader snapshots (see the module docs of
//! `store`); both are stamped by triggers, so writes by other clients are seen too.

use std::{collections::BTreeMap, str::FromStr};

use chrono::{DateTime, Utc};
use sqlx::{
    AssertSqlSafe, Column, Row,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow},
};
use tokio_stream::StreamExt;

use super::{
    Cursor, DeltaLoad, FullLoad, HitDelta, LearnOutcome, ListQuery, StoreError, StoreOptions,
    TextColumn,
    live_limits::{self, SharedLimits},
    pg_copy,
    row_columns::{Col::*, served},
};
use crate::{
    model::{NewPattern, PatternRow, PatternStatus, RowRef},
    snapshot::Records,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

const BACKEND: &str = "postgres";

/// The served columns a full load reads ([`SERVED`](super::row_columns::SERVED)), in that
/// order, with `columns!()`'s casts and NULL defaults: the start of `columns!()`.
macro_rules! served_columns {
    () => {
        "id::bigint AS id, pattern::text AS pattern, \
         normalized_pattern::text AS normalized_pattern, \
         COALESCE(category, '')::text AS category, \
         COALESCE(confidence, 0)::float8 AS confidence, \
         COALESCE(times_used, 0)::bigint AS times_used, \
         COALESCE(times_correct, 0)::bigint AS times_correct, \
         COALESCE(accuracy, 0)::float8 AS accuracy, \
         COALESCE(created_at::timestamptz, 'epoch'::timestamptz) AS created_at, \
         COALESCE(created_by, '')::text AS created_by, \
         metadata::jsonb::text AS metadata, \
         revision::bigint AS revision"
    };
}

/// The SELECT list every read uses: canonical types whatever the table's column types are, and
/// the documented value for each NULL a legacy row may hold (NULL `enabled` is not served; NULL
/// `status` reads as the column default, `pending`). In [`Col`](super::row_columns::Col) order,
/// aliased by name (checked by `the_select_lists_follow_the_column_table`): `decode_at` reads
/// it by position.
macro_rules! columns {
    () => {
        concat!(
            served_columns!(),
            ", last_used_at::timestamptz AS last_used_at, \
             COALESCE(enabled, false) AS enabled, \
             COALESCE(status, 'pending')::text AS status, \
             COALESCE(updated_at::timestamptz, created_at::timestamptz, 'epoch'::timestamptz) \
                 AS updated_at"
        )
    };
}

/// The newest row or tombstone revision (cheap: `max` reads one end of each revision index).
macro_rules! revision_expr {
    () => {
        "GREATEST((SELECT max(revision) FROM auto_learned_patterns), \
                  (SELECT max(revision) FROM auto_learned_patterns_tombstones), 0)::bigint"
    };
}

/// The server's WAL timeline (the first 8 hex digits of the current WAL file's name, which
/// `pg_walfile_name` gives on the timeline WAL is inserted on: a promoted standby's new one at
/// once, where `pg_control_checkpoint()` would wait for the next checkpoint). NULL on a standby,
/// where there is no current WAL insert position.
macro_rules! timeline_expr {
    () => {
        "CASE WHEN pg_is_in_recovery() THEN NULL \
              ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::bigint \
         END"
    };
}

/// A read-only transaction whose one snapshot serves every statement in it.
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// PostgreSQL pattern store.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Connections with `search_path` = `schema`.
    pub(super) pool: PgPool,
    /// The validated schema name.
    pub(super) schema: String,
    /// The URL it was opened with, redacted.
    pub(super) url: std::sync::Arc<str>,
    /// The table's declared column limits (read after migrating, and when a value is refused
    /// as too long).
    pub(super) limits: SharedLimits,
    /// Whether the server tells its WAL timeline (probed at connect): then each load's cursor
    /// carries it, and a delta across a failover becomes a full load.
    pub(super) timeline: bool,
}

/// Maps a driver error to a query error saying what was being done.
fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::query(what, source)
}

/// Accepts only a plain identifier, so that it can be quoted into SQL and connection options.
fn validate_schema(schema: &str) -> Result<(), String> {
    let mut chars = schema.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && schema.len() <= 63;
    if plain {
        Ok(())
    } else {
        Err(format!(
            "invalid PostgreSQL schema name {schema:?}: use a plain identifier \
             ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)"
        ))
    }
}

/// Where `columns!()` starts in `row` (after any columns a statement puts before it).
fn columns_at(row: &PgRow) -> Result<usize, sqlx::Error> {
    Ok(row.try_column("id")?.ordinal())
}

fn decode(row: &PgRow) -> Result<PatternRow, sqlx::Error> {
    decode_at(row, columns_at(row)?)
}

/// Decodes the `columns!()` starting at column `at`, by position: a lookup by name per column
/// and row costs more than the decoding itself in a large load.
fn decode_at(row: &PgRow, at: usize) -> Result<PatternRow, sqlx::Error> {
    let status: &str = row.try_get(Status.at(at))?;
    let metadata: Option<&str> = row.try_get(Metadata.at(at))?;
    Ok(PatternRow {
        id: row.try_get(Id.at(at))?,
        pattern: row.try_get(Pattern.at(at))?,
        normalized_pattern: row.try_get(NormalizedPattern.at(at))?,
        category: row.try_get(Category.at(at))?,
        confidence: row.try_get(Confidence.at(at))?,
        times_used: row.try_get(TimesUsed.at(at))?,
        times_correct: row.try_get(TimesCorrect.at(at))?,
        accuracy: row.try_get(Accuracy.at(at))?,
        created_at: row.try_get(CreatedAt.at(at))?,
        last_used_at: row.try_get(LastUsedAt.at(at))?,
        created_by: row.try_get(CreatedBy.at(at))?,
        enabled: row.try_get(Enabled.at(at))?,
        status: PatternStatus::parse(status),
        metadata: not_null(metadata).map(str::to_owned),
        updated_at: row.try_get(UpdatedAt.at(at))?,
        revision: row.try_get(Revision.at(at))?,
    })
}

/// Every read's SELECT list (`columns!()`), for the bench's floors.
#[cfg(feature = "bench")]
pub const COLUMNS: &str = columns!();

/// The full load's statement: the served columns (`columns!()`'s casts and NULL defaults) in
/// binary COPY format, parsed by `copied_row`.
pub const FULL_COPY: &str = concat!(
    "COPY (SELECT ",
    served_columns!(),
    " \
     FROM auto_learned_patterns WHERE enabled AND status = 'approved') \
     TO STDOUT (FORMAT binary)"
);

/// One tuple of `FULL_COPY` (a served row: the statement selects only those).
fn copied_row<'a>(t: &pg_copy::Tuple<'a>) -> Result<RowRef<'a>, pg_copy::CopyError> {
    Ok(RowRef {
        id: t.i64(served(Id))?,
        pattern: t.str(served(Pattern))?,
        normalized_pattern: t.str(served(NormalizedPattern))?,
        category: t.str(served(Category))?,
        confidence: t.f64(served(Confidence))?,
        times_used: t.i64(served(TimesUsed))?,
        times_correct: t.i64(served(TimesCorrect))?,
        accuracy: t.f64(served(Accuracy))?,
        created_at_micros: t.timestamp_micros(served(CreatedAt))?,
        created_by: t.str(served(CreatedBy))?,
        served: true,
        metadata: not_null(t.opt_str(served(Metadata))?),
        revision: t.i64(served(Revision))?,
    })
}

/// Tables estimated at more rows than this are read in two halves (see `load_full`).
const SPLIT_ABOVE_ROWS: f32 = 50_000.0;

/// `FULL_COPY` restricted to the rows whose id has parity `k`.
fn half(k: u8) -> String {
    FULL_COPY.replace(
        "status = 'approved')",
        &format!("status = 'approved' AND id::bigint % 2 = {k})"),
    )
}

/// Whether the planner's estimate of the table's rows says it is large.
async fn large(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> bool {
    sqlx::query_scalar::<_, f32>(
        "SELECT reltuples FROM pg_class WHERE oid = 'auto_learned_patterns'::regclass",
    )
    .fetch_one(&mut **tx)
    .await
    .is_ok_and(|n| n > SPLIT_ABOVE_ROWS)
}

/// Bytes of COPY data handed to the parsing thread at a time.
const COPY_BATCH_BYTES: usize = 64 * 1024;

/// Reads `parts` binary COPY streams, interleaved as their chunks arrive (each item tagged
/// with its stream), into records; every stream must end with its trailer.
///
/// Only receiving runs here, on the runtime's threads (which answer requests): the chunks
/// (one per row, as PostgreSQL sends them) are handed over in batches to a thread of the
/// blocking pool, which parses, checks and packs them.
async fn read_copy(
    mut stream: impl tokio_stream::Stream<Item = (usize, Result<bytes::Bytes, sqlx::Error>)> + Unpin,
    parts: usize,
) -> Result<Records, StoreError> {
    const WHAT: &str = "reading all served patterns";
    let bad = |e: String| StoreError::Query {
        what: WHAT,
        source: sqlx::Error::Protocol(e),
    };
    type Batch = Vec<(usize, bytes::Bytes)>;
    let (batches, mut handed) = tokio::sync::mpsc::channel::<Batch>(2);
    let parsing = tokio::task::spawn_blocking(move || {
        let mut parsers: Vec<pg_copy::Parser> =
            (0..parts).map(|_| pg_copy::Parser::new()).collect();
        let mut rows = Records::new();
        while let Some(batch) = handed.blocking_recv() {
            for (i, chunk) in batch {
                parsers[i].feed(&chunk, |t| {
                    rows.push(copied_row(t)?);
                    Ok::<_, pg_copy::CopyError>(())
                })?;
            }
        }
        if !parsers.iter().all(pg_copy::Parser::is_done) {
            return Err(pg_copy::CopyError("binary COPY ended without its trailer"));
        }
        Ok(rows)
    });
    let (mut batch, mut bytes) = (Batch::new(), 0);
    while let Some((i, chunk)) = stream.next().await {
        let chunk = chunk.map_err(q(WHAT))?;
        bytes += chunk.len();
        batch.push((i, chunk));
        if bytes >= COPY_BATCH_BYTES {
            bytes = 0;
            if batches.send(std::mem::take(&mut batch)).await.is_err() {
                break; // The parser stopped at bad data: its error follows.
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.send(batch).await;
    }
    drop(batches);
    parsing
        .await
        .map_err(|e| bad(format!("parsing the COPY stopped: {e}")))?
        .map_err(|e| bad(e.to_string()))
}

/// JSON `null` metadata reads as none, like SQL NULL (PostgreSQL has already checked the text).
fn not_null(metadata: Option<&str>) -> Option<&str> {
    metadata.filter(|m| *m != "null")
}

fn decode_all(rows: &[PgRow], what: &'static str) -> Result<Vec<PatternRow>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let at = columns_at(first).map_err(q(what))?;
    rows.iter()
        .map(|r| decode_at(r, at).map_err(q(what)))
        .collect()
}

/// `Null` metadata is stored as SQL NULL.
fn metadata_param(v: &serde_json::Value) -> Option<&serde_json::Value> {
    (!v.is_null()).then_some(v)
}

impl PgStore {
    /// Opens the pool (one connection is made to check the URL). Does not create the schema.
    pub async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> {
        let connect_err = |source| StoreError::Connect {
            backend: BACKEND,
            source,
        };
        validate_schema(&opts.schema)
            .map_err(|e| connect_err(sqlx::Error::Configuration(e.into())))?;
        let options = PgConnectOptions::from_str(&opts.url)
            .map_err(connect_err)?
            .application_name("hotplane")
            // Quoted: the schema is used exactly as configured, like CREATE SCHEMA below.
            .options([
                ("search_path", format!("\"{}\"", opts.schema)),
                ("TimeZone", "UTC".to_owned()),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        let timeline = probe_timeline(&pool).await.map_err(connect_err)?;
        Ok(PgStore {
            pool,
            schema: opts.schema.clone(),
            url: super::redact_url(&opts.url).into(),
            limits: live_limits::unknown(),
            timeline,
        })
    }

    /// The pool (the PostgreSQL bus sends its liveness pings and fleet heartbeats through it).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The validated schema name (the payload of this schema's change notifications).
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool's connection settings (URL, search_path, TLS) named `application_name`: what
    /// the PostgreSQL bus's own LISTEN connection uses, so an operator can tell it apart in
    /// `pg_stat_activity`.
    pub(crate) fn connect_options_named(&self, application_name: &str) -> PgConnectOptions {
        (*self.pool.connect_options())
            .clone()
            .application_name(application_name)
    }

    /// Creates the schema if missing, then runs the migrations inside it.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(&self.schema)
                .fetch_one(&self.pool)
                .await
                .map_err(q("looking up the schema"))?;
        if !exists {
            // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when
            // the schema exists. The name is a validated plain identifier.
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema);
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await {
                // Another replica creating it at the same moment is fine.
                let raced = e
                    .as_database_error()
                    .is_some_and(|d| d.code().as_deref() == Some("23505"));
                if !raced {
                    return Err(q("creating the schema")(e));
                }
            }
        }
        let current: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&self.pool)
            .await
            .map_err(q("checking the search_path"))?;
        if current.as_deref() != Some(self.schema.as_str()) {
            return Err(StoreError::Query {
                what: "checking the search_path",
                source: sqlx::Error::Configuration(
                    format!(
                        "connections resolve to schema {current:?}, not {:?} (does the URL \
                         override search_path?)",
                        self.schema
                    )
                    .into(),
                ),
            });
        }
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: BACKEND,
                source,
            })?;
        live_limits::refresh_pg(&self.pool, &self.limits).await;
        Ok(())
    }

    /// Served rows, the snapshot as cursor and the newest revision, all from one snapshot.
    pub async fn load_full(&self) -> Result<FullLoad, StoreError> {
        const WHAT: &str = "reading all served patterns";
        let mut tx = self
            .pool
            .begin_with(BEGIN_SNAPSHOT)
            .await
            .map_err(q(WHAT))?;
        let (snapshot, revision, timeline) = head(&mut tx, WHAT, self.timeline).await?;
        // Streamed through binary COPY and packed tuple by tuple on a blocking-pool thread as the
        // bytes arrive: packing overlaps with the server producing the next rows, and nothing
        // per row is allocated. A large table is read in two halves by two server processes
        // sharing this transaction's snapshot, when the pool has a connection to spare:
        // producing the rows is most of a large load's time, and it is the server's.
        let mut second = match large(&mut tx).await {
            true => self.second_reader(&mut tx).await,
            false => None,
        };
        let readers = if second.is_some() { 2 } else { 1 };
        let rows = match second.as_mut() {
            Some(tx2) => {
                let (even, odd) = (half(0), half(1));
                let a = tx.copy_out_raw(&even).await.map_err(q(WHAT))?;
                let b = tx2.copy_out_raw(&odd).await.map_err(q(WHAT))?;
                read_copy(a.map(|c| (0, c)).merge(b.map(|c| (1, c))), 2).await?
            }
            None => {
                let a = tx.copy_out_raw(FULL_COPY).await.map_err(q(WHAT))?;
                read_copy(a.map(|c| (0, c)), 1).await?
            }
        };
        if let Some(tx2) = second {
            tx2.commit().await.map_err(q(WHAT))?;
        }
        tx.commit().await.map_err(q(WHAT))?;
        Ok(FullLoad {
            rows,
            cursor: Cursor::Postgres { snapshot, timeline },
            revision,
            readers,
        })
    }

    /// A second read-only transaction in `tx`'s snapshot (exported, then imported), if the
    /// pool gives a connection at once; `None` otherwise (the load then reads on one).
    async fn second_reader(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    ) -> Option<sqlx::Transaction<'static, sqlx::Postgres>> {
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut **tx)
            .await
            .ok()?;
        // A snapshot id is hex digits and dashes; anything else is not quoted into SQL.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return None;
        }
        let wait = std::time::Duration::from_millis(100);
        let mut tx2 = tokio::time::timeout(wait, self.pool.begin_with(BEGIN_SNAPSHOT))
            .await
            .ok()?
            .ok()?;
        sqlx::query(AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{id}'")))
            .execute(&mut *tx2)
            .await
            .ok()?;
        Some(tx2)
    }

    /// Rows and tombstones written by transactions not visible in the cursor's snapshot, i.e.
    /// committed since, whatever their id: a low-id transaction that committed late is included.
    /// `revision >= xmin` bounds the index scan; every id below xmin was visible.
    pub async fn load_delta(&self, since: &Cursor) -> Result<DeltaLoad, StoreError> {
        const WHAT: &str = "reading changed patterns";
        let Cursor::Postgres {
            snapshot: prev,
            timeline: was,
        } = since
        else {
            return Err(StoreError::ForeignCursor);
        };
        let mut tx = self
            .pool
            .begin_with(BEGIN_SNAPSHOT)
            .await
            .map_err(q(WHAT))?;
        let (snapshot, revision, timeline) = head(&mut tx, WHAT, self.timeline).await?;
        if let (Some(was), Some(now)) = (*was, timeline)
            && was != now
        {
            return Err(StoreError::TimelineChanged { was, now });
        }
        let horizon: Option<String> =
            sqlx::query_scalar("SELECT snapshot FROM hotplane_tombstone_horizon WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(q(WHAT))?;
        if let Some(horizon) = horizon
            && !since.covers(&Cursor::Postgres {
                snapshot: horizon,
                timeline: None,
            })
        {
            return Err(StoreError::CursorTooOld);
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns \
              WHERE revision >= pg_snapshot_xmin($1::pg_snapshot)::text::bigint \
                AND NOT pg_visible_in_snapshot(revision::text::xid8, $1::pg_snapshot)"
        ))
        .bind(prev)
        .fetch_all(&mut *tx)
        .await
        .map_err(q(WHAT))?;
        // Only ids absent in this snapshot: an id deleted and inserted again is changed, not
        // gone. Filtered in the same read, so the result is linear in its size.
        let deleted: Vec<i64> = sqlx::query_scalar(
            "SELECT t.id FROM auto_learned_patterns_tombstones AS t \
              WHERE t.revision >= pg_snapshot_xmin($1::pg_snapshot)::text::bigint \
                AND NOT pg_visible_in_snapshot(t.revision::text::xid8, $1::pg_snapshot) \
                AND NOT EXISTS (SELECT 1 FROM auto_learned_patterns AS p WHERE p.id = t.id)",
        )
        .bind(prev)
        .fetch_all(&mut *tx)
        .await
        .map_err(q(WHAT))?;
        tx.commit().await.map_err(q(WHAT))?;
        let changed = super::decode_off_runtime(rows, WHAT, |r| decode_all(r, WHAT)).await?;
        Ok(DeltaLoad {
            changed,
            deleted,
            cursor: Cursor::Postgres { snapshot, timeline },
            revision,
        })
    }

    /// Deletes tombstones older than `before`; when any went, records the snapshot taken after
    /// the delete as the horizon, in the same transaction: every pruned tombstone's writer is
    /// visible in it, so a cursor that includes it has read them all.
    pub async fn prune_tombstones(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        const WHAT: &str = "pruning tombstones";
        let mut tx = self.pool.begin().await.map_err(q(WHAT))?;
        let pruned =
            sqlx::query("DELETE FROM auto_learned_patterns_tombstones WHERE deleted_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(q(WHAT))?
                .rows_affected();
        if pruned > 0 {
            sqlx::query(
                "INSERT INTO hotplane_tombstone_horizon (id, snapshot) \
                 VALUES (1, pg_current_snapshot()::text) \
                 ON CONFLICT (id) DO UPDATE SET snapshot = EXCLUDED.snapshot",
            )
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns WHERE id = ANY($1::bigint[])"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(q(WHAT))?;
        decode_all(&rows, WHAT)
    }

    /// The newest row or tombstone revision.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(concat!("SELECT ", revision_expr!()))
            .fetch_one(&self.pool)
            .await
            .map_err(q("reading the store revision"))
    }

    /// One row by id.
    pub async fn get(&self, id: i64) -> Result<Option<PatternRow>, StoreError> {
        const WHAT: &str = "reading a pattern";
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(WHAT))?;
        row.as_ref().map(|r| decode(r).map_err(q(WHAT))).transpose()
    }

    /// A keyset page: `id > after_id`, ascending, optionally filtered.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<PatternRow>, StoreError> {
        const WHAT: &str = "listing patterns";
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns \
              WHERE id > $1 \
                AND ($2::text IS NULL OR COALESCE(status, 'pending') = $2) \
                AND ($3::text IS NULL OR COALESCE(category, '') = $3) \
              ORDER BY id LIMIT $4"
        ))
        .bind(query.after_id)
        .bind(query.status.as_ref().map(PatternStatus::as_str))
        .bind(query.category.as_deref())
        .bind(query.limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(q(WHAT))?;
        decode_all(&rows, WHAT)
    }

    /// Upsert keyed on the normalized text (see `learn_once`); a refusal names its column.
    pub async fn learn(&self, p: &NewPattern) -> Result<LearnOutcome, StoreError> {
        match self.learn_once(p).await {
            Err(e) => {
                let written = [
                    (TextColumn::Pattern, p.pattern.as_str()),
                    (TextColumn::NormalizedPattern, p.normalized_pattern.as_str()),
                    (TextColumn::Category, p.category.as_str()),
                    (TextColumn::CreatedBy, p.created_by.as_str()),
                    (TextColumn::Status, p.initial_status.as_str()),
                ];
                Err(live_limits::explain_pg(&self.pool, &self.limits, e, &written).await)
            }
            ok => ok,
        }
    }

    /// A transaction-scoped advisory lock on the normalized text serializes learners of the
    /// same text (there is no unique index to lean on: legacy tables hold duplicates), so there
    /// is no check-then-insert race between hotplane replicas.
    async fn learn_once(&self, p: &NewPattern) -> Result<LearnOutcome, StoreError> {
        const WHAT: &str = "learning a pattern";
        let mut tx = self.pool.begin().await.map_err(q(WHAT))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(self.learn_lock_key(&p.normalized_pattern))
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        // The best row, by the same order that resolves duplicates when serving.
        let best = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM auto_learned_patterns WHERE normalized_pattern = $1 \
              ORDER BY COALESCE(accuracy, 0) DESC, COALESCE(times_used, 0) DESC, \
                       created_at DESC, id DESC \
              LIMIT 1 FOR UPDATE"
        ))
        .bind(&p.normalized_pattern)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q(WHAT))?;
        let outcome = match best.as_ref().map(decode).transpose().map_err(q(WHAT))? {
            Some(row)
                if row.category == p.category
                    && row.confidence.to_bits() == p.confidence.to_bits()
                    && row.metadata_json() == p.metadata =>
            {
                LearnOutcome {
                    row,
                    created: false,
                    updated: false,
                }
            }
            // Status and enabled are left alone: learning never overrides an operator.
            Some(row) => {
                let updated = sqlx::query(concat!(
                    "UPDATE auto_learned_patterns \
                        SET category = $2, confidence = $3, metadata = $4 \
                      WHERE id = $1 RETURNING ",
                    columns!()
                ))
                .bind(row.id)
                .bind(&p.category)
                .bind(p.confidence)
                .bind(metadata_param(&p.metadata))
                .fetch_one(&mut *tx)
                .await
                .map_err(q(WHAT))?;
                LearnOutcome {
                    row: decode(&updated).map_err(q(WHAT))?,
                    created: false,
                    updated: true,
                }
            }
            None => self.insert(&mut tx, p).await?,
        };
        tx.commit().await.map_err(q(WHAT))?;
        Ok(outcome)
    }

    /// Inserts a new row; if the raw text exists under another normalized text (a changed
    /// normalizer, or another writer), that row is brought up to date instead.
    async fn insert(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        p: &NewPattern,
    ) -> Result<LearnOutcome, StoreError> {
        const WHAT: &str = "inserting a learned pattern";
        // `xmax = 0` only on a freshly inserted tuple; the stamp trigger sets the revision to
        // this transaction only when content changed, which tells an update from a no-op.
        let row = sqlx::query(concat!(
            "INSERT INTO auto_learned_patterns \
                 (pattern, normalized_pattern, category, confidence, metadata, created_by, \
                  status, enabled) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, true) \
             ON CONFLICT (pattern) DO UPDATE \
                SET normalized_pattern = EXCLUDED.normalized_pattern, \
                    category = EXCLUDED.category, confidence = EXCLUDED.confidence, \
                    metadata = EXCLUDED.metadata \
             RETURNING (xmax = 0) AS inserted, \
                       (revision = pg_current_xact_id()::text::bigint) AS touched, ",
            columns!()
        ))
        .bind(&p.pattern)
        .bind(&p.normalized_pattern)
        .bind(&p.category)
        .bind(p.confidence)
        .bind(metadata_param(&p.metadata))
        .bind(&p.created_by)
        .bind(p.initial_status.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(q(WHAT))?;
        let inserted: bool = row.try_get("inserted").map_err(q(WHAT))?;
        let touched: bool = row.try_get("touched").map_err(q(WHAT))?;
        Ok(LearnOutcome {
            row: decode(&row).map_err(q(WHAT))?,
            created: inserted,
            updated: !inserted && touched,
        })
    }

    /// The advisory lock key for learning `normalized` in this schema (a stable hash: every
    /// replica must compute the same key).
    fn learn_lock_key(&self, normalized: &str) -> i64 {
        let key = format!("hotplane.learn\0{}\0{}", self.schema, normalized);
        // Reinterpreting the 64 bits as the lock's signed key is intended.
        xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as i64
    }

    /// Sets status and enabled; the row as stored, or `None` if the id does not exist.
    pub async fn set_status(
        &self,
        id: i64,
        status: PatternStatus,
        enabled: bool,
    ) -> Result<Option<PatternRow>, StoreError> {
        const WHAT: &str = "setting a pattern's status";
        let row = sqlx::query(concat!(
            "UPDATE auto_learned_patterns SET status = $2, enabled = $3 WHERE id = $1 RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(status.as_str())
        .bind(enabled)
        .fetch_optional(&self.pool)
        .await;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let written = [(TextColumn::Status, status.as_str())];
                let e = q(WHAT)(e);
                return Err(live_limits::explain_pg(&self.pool, &self.limits, e, &written).await);
            }
        };
        row.as_ref().map(|r| decode(r).map_err(q(WHAT))).transpose()
    }

    /// Hard-deletes a row (the delete trigger writes its tombstone).
    pub async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM auto_learned_patterns WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("deleting a pattern"))?;
        Ok(done.rows_affected() > 0)
    }

    /// One statement for the whole batch, which **never waits for a row lock**: it locks the
    /// rows it can (`FOR UPDATE SKIP LOCKED`, in id order), adds the counts to those, and
    /// answers the ids of rows another transaction holds, whose counts the caller keeps for the
    /// next flush. A flush that waited could deadlock with a client's bulk UPDATE (or another
    /// replica's flush) locking the same rows in another order, and PostgreSQL would abort one
    /// of the two: maybe the client's. Hits are merged per id first (an UPDATE ... FROM applies
    /// at most one source row per target row). Unknown or deleted ids match nothing and are not
    /// answered (their counts are dropped).
    pub async fn flush_hits(&self, hits: &[HitDelta]) -> Result<Vec<i64>, StoreError> {
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let mut merged: BTreeMap<i64, (i64, DateTime<Utc>)> = BTreeMap::new();
        for h in hits {
            let e = merged.entry(h.id).or_insert((0, h.last_used_at));
            e.0 = e.0.saturating_add(h.count);
            e.1 = e.1.max(h.last_used_at);
        }
        let ids: Vec<i64> = merged.keys().copied().collect();
        let counts: Vec<i64> = merged.values().map(|v| v.0).collect();
        let times: Vec<DateTime<Utc>> = merged.values().map(|v| v.1).collect();
        // `held`: rows of the batch that exist in the statement's snapshot and were not
        // updated, i.e. rows the locking subquery skipped (a row deleted meanwhile may show up
        // once; the next flush finds it gone).
        sqlx::query_scalar(
            "WITH h AS ( \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) \
                     AS h(id, count, last_used_at) \
             ), done AS ( \
                 UPDATE auto_learned_patterns AS p \
                    SET times_used = COALESCE(p.times_used, 0) + h.count, \
                        last_used_at = GREATEST(p.last_used_at, h.last_used_at) \
                   FROM h \
                  WHERE p.id = h.id \
                    AND p.id IN (SELECT l.id FROM auto_learned_patterns AS l \
                                  WHERE l.id = ANY($1::bigint[]) \
                                  ORDER BY l.id FOR UPDATE SKIP LOCKED) \
              RETURNING p.id \
             ) \
             SELECT h.id FROM h \
              WHERE h.id NOT IN (SELECT id FROM done) \
                AND EXISTS (SELECT 1 FROM auto_learned_patterns AS e WHERE e.id = h.id) \
              ORDER BY h.id",
        )
        .bind(ids)
        .bind(counts)
        .bind(times)
        .fetch_all(&self.pool)
        .await
        .map_err(q("flushing hit counts"))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The snapshot (as cursor text), revision and (when `timeline`, and the server is a primary)
/// WAL timeline of the transaction `tx`, in its first statement.
async fn head(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    what: &'static str,
    timeline: bool,
) -> Result<(String, i64, Option<u32>), StoreError> {
    let sql = match timeline {
        true => concat!(
            "SELECT pg_current_snapshot()::text AS snapshot, ",
            revision_expr!(),
            " AS revision, ",
            timeline_expr!(),
            " AS timeline"
        ),
        false => concat!(
            "SELECT pg_current_snapshot()::text AS snapshot, ",
            revision_expr!(),
            " AS revision, NULL::bigint AS timeline"
        ),
    };
    let row = sqlx::query(sql)
        .fetch_one(&mut **tx)
        .await
        .map_err(q(what))?;
    let timeline: Option<i64> = row.try_get("timeline").map_err(q(what))?;
    Ok((
        row.try_get("snapshot").map_err(q(what))?,
        row.try_get("revision").map_err(q(what))?,
        timeline.and_then(|t| u32::try_from(t).ok()),
    ))
}

/// Whether the server tells its WAL timeline. A server that refuses the functions (a managed
/// service may) leaves loads without it, said once in the log: a failover that loses commits
/// then needs a `Reload` with `full`. Only a refusal by the server counts; losing the
/// connection is an error.
async fn probe_timeline(pool: &PgPool) -> Result<bool, sqlx::Error> {
    match sqlx::query_scalar::<_, Option<i64>>(concat!("SELECT ", timeline_expr!()))
        .fetch_one(pool)
        .await
    {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) => {
            tracing::warn!(
                error = %e,
                "this PostgreSQL does not tell its WAL timeline: a failover that loses commits \
                 is not detected, so after one reload with full=true"
            );
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::row_columns::{SERVED, aliases, names};

    /// Every statement's SELECT list gives the columns the decoders read, in the order they
    /// read them: a column added to one list and not to the table (or the other way) fails here.
    #[test]
    fn the_select_lists_follow_the_column_table() {
        assert_eq!(aliases(columns!()), names());
        let served: Vec<&str> = SERVED.iter().map(|c| c.name()).collect();
        assert_eq!(aliases(served_columns!()), served);
        assert!(super::FULL_COPY.contains(served_columns!()));
    }
}

//! The pattern store: the source of truth for `auto_learned_patterns`, in PostgreSQL (production)
//! or SQLite (the embedded default), chosen by the database URL.
//!
//! The store owns every SQL statement and the migrations. It never decides what is served: it
//! returns rows and a [`Cursor`], and the swap engine builds snapshots from them. Rows changed by
//! other clients with plain SQL are seen too, because the `revision` column and the tombstones of
//! deleted rows are maintained by database triggers, not by hotplane.
//!
//! Delta correctness under concurrent writers:
//! - SQLite serializes writers, so a row revision counter bumped inside the writing transaction
//!   gives revisions in commit order, and `revision > cursor` misses nothing.
//! - PostgreSQL commits out of order: a transaction that took a lower revision can commit after a
//!   reader saw a higher one. The revision is therefore the writing transaction's id
//!   (`pg_current_xact_id()`), and the cursor is the reader's MVCC snapshot
//!   (`pg_current_snapshot()`): the next delta reads every row whose transaction was not yet
//!   visible in that snapshot, which includes late commits with lower ids.

mod audit;
mod columns;
mod db_errors;
mod live_limits;
mod pg_copy;
mod position;
mod postgres;
mod row_columns;
mod sqlite;
mod sqlite_direct;
mod sqlite_rows;

pub use audit::{AuditFilter, AuditRow};
pub use columns::{ColumnLimits, Limit, TextColumn};
pub use db_errors::{Problem, Refusal};
#[cfg(feature = "bench")]
pub use postgres::COLUMNS as PG_COLUMNS;
#[cfg(feature = "bench")]
pub use postgres::FULL_COPY as PG_FULL_COPY;
#[cfg(feature = "bench")]
pub use sqlite_rows::FULL_SQL as SQLITE_FULL_SQL;

use chrono::{DateTime, Utc};

use crate::{
    model::{NewPattern, PatternRow, PatternStatus},
    snapshot::Records,
};

/// Where a load left off; the next delta reads what changed after it. Opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// SQLite: the highest revision the load saw.
    Sqlite {
        /// Highest revision visible to the load.
        revision: i64,
    },
    /// PostgreSQL: the load's MVCC snapshot, as `pg_snapshot` text (`xmin:xmax:xip,...`),
    /// and the WAL timeline of the server that took it.
    Postgres {
        /// The snapshot text.
        snapshot: String,
        /// The server's WAL timeline when the load read (`None`: unknown, as for a position a
        /// client sent, or a server that does not tell it). A promoted standby runs on a new
        /// timeline, and may hand out again the transaction ids of commits it never received:
        /// a snapshot from another timeline cannot say what a delta has seen.
        timeline: Option<u32>,
    },
}

/// Every served row (`enabled AND status = 'approved'`), read in one consistent snapshot.
#[derive(Debug)]
pub struct FullLoad {
    /// The served rows, in no particular order, packed as the snapshot keeps them (decoded
    /// straight from the driver's rows: no `PatternRow` is made per row).
    pub rows: Records,
    /// Where the next delta starts.
    pub cursor: Cursor,
    /// The store revision: the newest change (row or tombstone) visible to this load.
    pub revision: i64,
    /// Database connections that read the rows in parallel (in one snapshot): 2 for a large
    /// PostgreSQL table when the pool had one to spare, otherwise 1.
    pub readers: usize,
}

/// The rows changed since a cursor, served or not, and the ids deleted since it.
#[derive(Debug, Clone)]
pub struct DeltaLoad {
    /// Rows inserted or changed since the cursor (including ones now disabled or pending, so the
    /// caller can stop serving them).
    pub changed: Vec<PatternRow>,
    /// Ids of rows hard-deleted since the cursor.
    pub deleted: Vec<i64>,
    /// Where the next delta starts.
    pub cursor: Cursor,
    /// The store revision: the newest change visible to this load.
    pub revision: i64,
}

impl DeltaLoad {
    /// Number of rows read from the store (changed rows plus tombstones).
    pub fn rows_read(&self) -> usize {
        self.changed.len() + self.deleted.len()
    }
}

/// What `learn` did.
#[derive(Debug, Clone)]
pub struct LearnOutcome {
    /// The row as stored after the upsert.
    pub row: PatternRow,
    /// A new row was inserted.
    pub created: bool,
    /// An existing row's category, confidence or metadata changed.
    pub updated: bool,
}

/// A page request for `list`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Return rows with `id > after_id`, ascending.
    pub after_id: i64,
    /// At most this many rows.
    pub limit: i64,
    /// Only rows with this status.
    pub status: Option<PatternStatus>,
    /// Only rows with this category.
    pub category: Option<String>,
}

/// Aggregated hits for one pattern, flushed in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct HitDelta {
    /// Pattern id.
    pub id: i64,
    /// Matches since the last flush.
    pub count: i64,
    /// Time of the latest of those matches.
    pub last_used_at: DateTime<Utc>,
}

/// Store failures, each saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one hotplane supports.
    #[error("unsupported database URL scheme in {0:?}: use postgres:// or sqlite://")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("connecting to the {backend} database failed: {source}")]
    Connect {
        /// "postgres" or "sqlite".
        backend: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("running {backend} migrations failed: {source}")]
    Migrate {
        /// "postgres" or "sqlite".
        backend: &'static str,
        /// The migration error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("{what} failed: {source}")]
    Query {
        /// What was being done, e.g. "reading changed patterns".
        what: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// The database refused the values written: a data error or a broken constraint
    /// (PostgreSQL SQLSTATE classes 22 and 23; SQLite's constraint, too-big, mismatch and range
    /// errors). Permanent: the same request fails again until the input or the table changes.
    #[error("{what} failed: the database refused it ({refusal}): {source}")]
    Refused {
        /// What was being done.
        what: &'static str,
        /// What was refused, and in which column when known.
        refusal: Refusal,
        /// The driver error (logged, never sent to callers).
        #[source]
        source: sqlx::Error,
    },
    /// A stored row could not be decoded (e.g. metadata that is not JSON).
    #[error("pattern id {id}: {reason}")]
    BadRow {
        /// The row id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// A cursor from the other backend was passed.
    #[error("cursor does not belong to this store")]
    ForeignCursor,
    /// Tombstones the cursor had not read have been pruned: a delta could miss deletes, so the
    /// caller must do a full load.
    #[error("the delta cursor is older than the tombstone pruning horizon: a full load is needed")]
    CursorTooOld,
    /// The database is on another WAL timeline than the load the cursor came from (a failover
    /// to a standby, or a point-in-time restore): commits the cursor saw may be gone and their
    /// transaction ids handed out again, so a delta could miss new commits for good. The
    /// caller must do a full load.
    #[error(
        "the database moved from WAL timeline {was} to {now} since the last load (a failover or \
         a restore): transaction ids may repeat, so a full load is needed"
    )]
    TimelineChanged {
        /// The cursor's timeline.
        was: u32,
        /// The server's timeline now.
        now: u32,
    },
    /// Decoding rows on the blocking pool did not finish (the task panicked or was cancelled).
    #[error("{what} failed: decoding the rows did not finish: {reason}")]
    Decode {
        /// What was being done.
        what: &'static str,
        /// The task error.
        reason: String,
    },
}

/// Deltas with more rows than this are decoded on the blocking pool: decoding is CPU work
/// proportional to the rows (a 200k-row re-import is a large delta), and the runtime's
/// workers answer requests. Smaller deltas decode in place, where a thread hop would cost more.
pub(crate) const DECODE_OFF_RUNTIME_ABOVE: usize = 2_000;

/// Runs `decode` over `rows` on the blocking pool when there are many, in place otherwise.
pub(crate) async fn decode_off_runtime<R: Send + 'static>(
    rows: Vec<R>,
    what: &'static str,
    decode: fn(&[R]) -> Result<Vec<PatternRow>, StoreError>,
) -> Result<Vec<PatternRow>, StoreError> {
    if rows.len() <= DECODE_OFF_RUNTIME_ABOVE {
        return decode(&rows);
    }
    tokio::task::spawn_blocking(move || decode(&rows))
        .await
        .map_err(|e| StoreError::Decode {
            what,
            reason: e.to_string(),
        })?
}

impl StoreError {
    /// The error of a failed statement: [`StoreError::Refused`] when the database refused the
    /// values (see `db_errors`), else [`StoreError::Query`].
    pub(crate) fn query(what: &'static str, source: sqlx::Error) -> StoreError {
        match db_errors::refusal(&source) {
            Some(refusal) => StoreError::Refused {
                what,
                refusal,
                source,
            },
            None => StoreError::Query { what, source },
        }
    }

    /// Whether the database could not be reached (refused or lost connection, no connection
    /// within the pool's timeout, a server shutting down or out of connections, memory or disk;
    /// SQLite's file cannot be opened or read), as opposed to one that answered the request
    /// with an error: the same request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        let source = match self {
            StoreError::Connect { .. } => return true,
            StoreError::Query { source, .. } => source,
            _ => return false,
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db_errors::unreachable(db.as_ref()),
            _ => false,
        }
    }

    /// Whether the same request may succeed if retried later: the database was unavailable
    /// ([`StoreError::is_unavailable`]) or the request lost a race for a lock (serialization
    /// failure, deadlock, lock timeout, SQLite busy). Everything else is permanent: retrying
    /// cannot help until the input, the data or the table changes.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Query {
                source: sqlx::Error::Database(db),
                ..
            } if db_errors::contended(db.as_ref()) => true,
            e => e.is_unavailable(),
        }
    }

    /// What the database refused, when it did.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            StoreError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `postgres://...` or `sqlite://path` (`sqlite::memory:` for tests).
    pub url: String,
    /// PostgreSQL schema holding the tables; created if missing. Ignored for SQLite.
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: std::time::Duration,
}

/// The pattern store, PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub enum Store {
    /// PostgreSQL.
    Postgres(postgres::PgStore),
    /// SQLite.
    Sqlite(sqlite::SqliteStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Postgres($s) => $e,
            Store::Sqlite($s) => $e,
        }
    };
}

impl Store {
    /// Opens a pool for the URL (creating the SQLite file if missing). Does not migrate.
    pub async fn connect(opts: &StoreOptions) -> Result<Store, StoreError> {
        if opts.url.starts_with("postgres://") || opts.url.starts_with("postgresql://") {
            Ok(Store::Postgres(postgres::PgStore::connect(opts).await?))
        } else if opts.url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::connect(opts).await?))
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(&opts.url)))
        }
    }

    /// The URL it was opened with, its password redacted: what status and logs show.
    pub fn url(&self) -> &str {
        dispatch!(self, s => &s.url)
    }

    /// The PostgreSQL schema holding its tables; `None` for SQLite.
    pub fn schema(&self) -> Option<&str> {
        match self {
            Store::Postgres(s) => Some(&s.schema),
            Store::Sqlite(_) => None,
        }
    }

    /// "postgres" or "sqlite".
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Runs the migrations. Against an existing legacy table they only add what is missing.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// Reads every served row in one snapshot.
    pub async fn load_full(&self) -> Result<FullLoad, StoreError> {
        dispatch!(self, s => s.load_full().await)
    }

    /// Reads the rows changed and the ids deleted since `since`. When nothing changed this is one
    /// cheap indexed query and returns empty vectors.
    pub async fn load_delta(&self, since: &Cursor) -> Result<DeltaLoad, StoreError> {
        dispatch!(self, s => s.load_delta(since).await)
    }

    /// Deletes tombstones written before `before` and records the pruning horizon (deltas from
    /// an older cursor then fail with [`StoreError::CursorTooOld`]). Returns how many went.
    pub async fn prune_tombstones(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_tombstones(before).await)
    }

    /// Reads rows by id, served or not. Ids not returned no longer exist.
    pub async fn load_ids(&self, ids: &[i64]) -> Result<Vec<PatternRow>, StoreError> {
        dispatch!(self, s => s.load_ids(ids).await)
    }

    /// The current store revision (newest change, row or tombstone). One cheap query.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.revision().await)
    }

    /// One row by id, served or not.
    pub async fn get(&self, id: i64) -> Result<Option<PatternRow>, StoreError> {
        dispatch!(self, s => s.get(id).await)
    }

    /// A page of rows by ascending id.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<PatternRow>, StoreError> {
        dispatch!(self, s => s.list(q).await)
    }

    /// The live table's declared limits of the text columns hotplane writes, as read when the
    /// store was last migrated (or a value was refused as too long since). Validation uses the
    /// smaller of these and hotplane's own.
    pub fn column_limits(&self) -> std::sync::Arc<ColumnLimits> {
        dispatch!(self, s => s.limits.load_full())
    }

    /// Upserts a learned pattern keyed on its normalized text, without a check-then-insert race.
    pub async fn learn(&self, p: &NewPattern) -> Result<LearnOutcome, StoreError> {
        dispatch!(self, s => s.learn(p).await)
    }

    /// Sets status and enabled on a row; `None` if the id does not exist.
    pub async fn set_status(
        &self,
        id: i64,
        status: PatternStatus,
        enabled: bool,
    ) -> Result<Option<PatternRow>, StoreError> {
        dispatch!(self, s => s.set_status(id, status, enabled).await)
    }

    /// Hard-deletes a row; false if the id does not exist.
    pub async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(id).await)
    }

    /// Adds hit counts in one batch (`times_used += count`, `last_used_at = max(...)`). Does not
    /// change the row revision: hit counts are not served content. Never waits for a row lock:
    /// answers the ids whose rows another transaction held, whose counts were not written (the
    /// caller keeps them for the next flush).
    pub async fn flush_hits(&self, hits: &[HitDelta]) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, s => s.flush_hits(hits).await)
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

/// The URL with any password replaced by `***`, for logs and status.
pub fn redact_url(url: &str) -> String {
    // Parsed as database and Redis clients parse it (the WHATWG rules of the url crate): the
    // userinfo ends at the authority's *last* `@`, so a raw `@` in a password stays in it.
    let secret_key = |k: &str| {
        let k = k.to_ascii_lowercase();
        k.contains("password") || k == "pass" || k == "pwd"
    };
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL (e.g. a Sentinel URL's list of hosts): hide everything between the scheme
        // and the last `@`, if any, and every secret value of the query.
        let after_at = url.rfind('@').map_or(0, |at| at + 1);
        let (base, query) = match url[after_at..].find('?') {
            Some(q) => (&url[..after_at + q], Some(&url[after_at + q + 1..])),
            None => (url, None),
        };
        let base = match (base.find("://"), base.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}://***{}", &base[..s], &base[at..]),
            _ => base.to_owned(),
        };
        let Some(query) = query else { return base };
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_key(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        return format!("{base}?{}", query.join("&"));
    };
    let in_query = parsed.query_pairs().any(|(k, _)| secret_key(&k));
    if parsed.password().is_none() && !in_query {
        return url.to_owned(); // nothing to hide: shown exactly as given
    }
    if parsed.password().is_some() {
        // Cannot fail: a URL with a password has a host.
        let _ = parsed.set_password(Some("***"));
    }
    if in_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_key(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://hotplane.db"), "sqlite://hotplane.db");
        // Not a URL to the url crate (a host list), with a password in the query.
        assert_eq!(
            redact_url("redis+sentinel://u:s3cret@h1:26379,h2:26379/m?db=1&password=s3cret"),
            "redis+sentinel://***@h1:26379,h2:26379/m?db=1&password=***"
        );
    }
}

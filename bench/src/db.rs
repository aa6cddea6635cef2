//! Bench databases: a fresh PostgreSQL database (`hotplane_bench_<pid>_<n>_<nanos>`, created
//! through the admin URL and dropped at the end) or a fresh SQLite file in a temporary
//! directory; filled fast (COPY on PostgreSQL, one transaction of prepared multi-row INSERTs on
//! SQLite), and the raw fetch that is the floor of a full reload.

use std::{
    path::PathBuf,
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::SecondsFormat;
use hotplane::{
    model::PatternRow,
    store::{Store, StoreOptions, redact_url},
};
use hotplane_testkit::db::{unique_suffix, with_database};
use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection,
    postgres::{PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
};

/// Which store a measurement runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// PostgreSQL through the admin URL.
    Postgres,
    /// An SQLite file in a temporary directory.
    Sqlite,
}

impl Backend {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Columns the bench writes (the rest take their defaults; the triggers stamp revisions).
const INSERT_COLUMNS: &str = "pattern, normalized_pattern, category, confidence, times_used, \
     times_correct, accuracy, created_at, created_by, enabled, status, metadata";
const INSERT_PARAMS: usize = 12;

/// Rows per SQLite INSERT statement (12 parameters each; SQLite allows 32,766 per statement).
const SQLITE_ROWS_PER_INSERT: usize = 500;

enum Kind {
    Postgres { admin_url: String, name: String },
    Sqlite { dir: PathBuf },
}

/// A fresh bench database, removed by [`BenchDb::remove`] (or, as a fallback, when dropped).
pub struct BenchDb {
    backend: Backend,
    url: String,
    kind: Kind,
    removed: bool,
}

impl BenchDb {
    /// Creates an empty database and runs hotplane's migrations in it.
    pub async fn create(backend: Backend, admin_url: &str) -> anyhow::Result<BenchDb> {
        let db = match backend {
            Backend::Postgres => {
                let name = format!("hotplane_bench_{}", unique_suffix());
                let mut admin = PgConnection::connect(admin_url).await.with_context(|| {
                    format!(
                        "connecting to PostgreSQL at {} (--database-url)",
                        redact_url(admin_url)
                    )
                })?;
                admin
                    .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                let _ = admin.close().await;
                BenchDb {
                    backend,
                    url: with_database(admin_url, &name),
                    kind: Kind::Postgres {
                        admin_url: admin_url.to_owned(),
                        name,
                    },
                    removed: false,
                }
            }
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("hotplane-bench-{}", unique_suffix()));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                BenchDb {
                    backend,
                    url: format!("sqlite://{}", dir.join("hotplane.db").display()),
                    kind: Kind::Sqlite { dir },
                    removed: false,
                }
            }
        };
        db.store(1).await?.close().await;
        Ok(db)
    }

    /// The database URL, as hotplane is configured with it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connected, migrated hotplane store.
    pub async fn store(&self, max_connections: u32) -> anyhow::Result<Store> {
        let store = Store::connect(&StoreOptions {
            url: self.url.clone(),
            schema: "public".into(),
            max_connections,
            acquire_timeout: Duration::from_secs(30),
        })
        .await
        .context("connecting the store")?;
        store.migrate().await.context("migrating the store")?;
        Ok(store)
    }

    /// A plain driver pool on the database: another client, as far as hotplane can tell.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(match self.backend {
            Backend::Postgres => Client::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&self.url)
                    .await
                    .context("connecting a raw PostgreSQL client")?,
            ),
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(&self.url)?
                    .busy_timeout(Duration::from_secs(30));
                Client::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await
                        .context("connecting a raw SQLite client")?,
                    self.sqlite_file()
                        .context("an SQLite bench database has a file")?,
                )
            }
        })
    }

    /// Inserts `rows` (in order, so ids are `1..=n`) and leaves the database as a steady
    /// state would: PostgreSQL vacuumed and analyzed, the SQLite WAL checkpointed.
    pub async fn fill(&self, rows: &[PatternRow]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        match self.client().await? {
            Client::Postgres(pool) => {
                copy_rows(&pool, rows).await?;
                pool.execute("VACUUM (ANALYZE) auto_learned_patterns")
                    .await
                    .context("vacuuming after the bulk load")?;
                pool.close().await;
            }
            Client::Sqlite(pool, _) => {
                insert_rows(&pool, rows).await?;
                pool.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    .await
                    .context("checkpointing the WAL")?;
                pool.close().await;
            }
        }
        Ok(started.elapsed())
    }

    /// The SQLite database file; `None` on PostgreSQL.
    fn sqlite_file(&self) -> Option<PathBuf> {
        match &self.kind {
            Kind::Sqlite { dir } => Some(dir.join("hotplane.db")),
            Kind::Postgres { .. } => None,
        }
    }

    /// Drops the database (PostgreSQL) or deletes its directory (SQLite).
    pub async fn remove(mut self) -> anyhow::Result<()> {
        self.removed = true;
        match &self.kind {
            Kind::Postgres { admin_url, name } => {
                let mut admin = PgConnection::connect(admin_url).await?;
                admin
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await
                    .with_context(|| format!("dropping database {name}"))?;
                let _ = admin.close().await;
            }
            Kind::Sqlite { dir } => {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

impl Drop for BenchDb {
    /// The fallback when a scenario failed before [`BenchDb::remove`]: drop the database on a
    /// private thread with its own runtime (we may be inside the bench's runtime here).
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        match &self.kind {
            Kind::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Kind::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async {
                        let mut admin = PgConnection::connect(&admin_url).await?;
                        admin
                            .execute(AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            )))
                            .await?;
                        let _ = admin.close().await;
                        anyhow::Ok(())
                    })
                })
                .join();
                if !matches!(dropped, Ok(Ok(()))) {
                    eprintln!("note: could not drop bench database {}", self.url);
                }
            }
        }
    }
}

/// A raw driver pool on a bench database.
pub enum Client {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite, and the database file (for the direct reader's floors).
    Sqlite(SqlitePool, PathBuf),
}

impl Client {
    /// The floor of a full reload: the store's SELECT of every served row, fetched by the same
    /// driver into a `Vec` of driver rows, with nothing decoded or built. Returns the row count.
    pub async fn raw_fetch(&self) -> anyhow::Result<usize> {
        self.raw_fetch_ordered("").await
    }

    /// The floor a full load is measured against: the raw fetch of the load's SELECT by the
    /// driver the store's full load reads with (sqlx on PostgreSQL, rusqlite on SQLite).
    pub async fn load_floor(&self) -> anyhow::Result<usize> {
        match self {
            Client::Postgres(_) => self.raw_fetch().await,
            Client::Sqlite(..) => Ok(self.rusqlite_fetch(true).await?.unwrap_or(0)),
        }
    }

    /// How [`Self::load_floor`] is named in reports.
    pub fn load_floor_name(&self) -> &'static str {
        match self {
            Client::Postgres(_) => "raw fetch (same SELECT and driver: sqlx)",
            Client::Sqlite(..) => "raw fetch (same SELECT and driver: rusqlite)",
        }
    }

    /// [`Self::raw_fetch`] with `order` (e.g. `ORDER BY id`, a constant of the bench's own)
    /// appended: what sorting in SQL would add to the load's fetch.
    pub async fn raw_fetch_ordered(&self, order: &'static str) -> anyhow::Result<usize> {
        let n = match self {
            Client::Postgres(p) => {
                let sql = format!(
                    "SELECT {} FROM auto_learned_patterns \
                     WHERE enabled AND status = 'approved' {order}",
                    hotplane::store::PG_COLUMNS
                );
                sqlx::query(AssertSqlSafe(sql)).fetch_all(p).await?.len()
            }
            Client::Sqlite(p, _) => {
                let sql = format!("{} {order}", hotplane::store::SQLITE_FULL_SQL);
                sqlx::query(AssertSqlSafe(sql)).fetch_all(p).await?.len()
            }
        };
        Ok(n)
    }

    /// PostgreSQL only: the bytes of the full load's binary COPY, received and dropped (what the
    /// store's full load reads before parsing anything); `None` on SQLite.
    pub async fn raw_copy(&self) -> anyhow::Result<Option<usize>> {
        use sqlx::postgres::PgPoolCopyExt;
        use tokio_stream::StreamExt;
        let Client::Postgres(p) = self else {
            return Ok(None);
        };
        let mut stream = p.copy_out_raw(hotplane::store::PG_FULL_COPY).await?;
        let mut bytes = 0;
        while let Some(chunk) = stream.next().await {
            bytes += chunk?.len();
        }
        Ok(Some(bytes))
    }

    /// SQLite only: the store's full-load SELECT stepped in process by the library its full
    /// load reads with (rusqlite, on a blocking thread, one read transaction), each row's
    /// values copied into owned driver values: the raw fetch of that driver. With `copy` false,
    /// each value is only borrowed and touched (what stepping alone costs). Returns the row
    /// count; `None` on PostgreSQL.
    pub async fn rusqlite_fetch(&self, copy: bool) -> anyhow::Result<Option<usize>> {
        use rusqlite::{OpenFlags, types::Value};
        let Client::Sqlite(_, file) = self else {
            return Ok(None);
        };
        let file = file.clone();
        let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let mut conn = rusqlite::Connection::open_with_flags(
                &file,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            let tx = conn.transaction()?;
            let mut statement = tx.prepare(hotplane::store::SQLITE_FULL_SQL)?;
            let columns = statement.column_count();
            let mut found = statement.query([])?;
            let (mut owned, mut touched, mut n) = (Vec::new(), 0usize, 0);
            while let Some(row) = found.next()? {
                n += 1;
                if copy {
                    let values = (0..columns)
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    owned.push(values);
                } else {
                    for i in 0..columns {
                        touched += match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => t.len(),
                            _ => 1,
                        };
                    }
                }
            }
            std::hint::black_box((owned, touched));
            Ok(n)
        })
        .await??;
        Ok(Some(rows))
    }

    /// PostgreSQL only: the same COPY written by the server to `/dev/null` (what producing the
    /// rows costs PostgreSQL alone, with no client); `None` on SQLite or when the role may not
    /// write server files.
    pub async fn server_copy(&self) -> Option<Duration> {
        let Client::Postgres(p) = self else {
            return None;
        };
        let sql = hotplane::store::PG_FULL_COPY.replace("TO STDOUT", "TO '/dev/null'");
        let t0 = Instant::now();
        p.execute(AssertSqlSafe(sql)).await.ok()?;
        Some(t0.elapsed())
    }

    /// Runs one statement; returns the rows affected.
    pub async fn exec(&self, sql: &str) -> anyhow::Result<u64> {
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Client::Postgres(p) => p.execute(sql).await?.rows_affected(),
            Client::Sqlite(p, _) => p.execute(sql).await?.rows_affected(),
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Client::Postgres(p) => p.close().await,
            Client::Sqlite(p, _) => p.close().await,
        }
    }
}

/// PostgreSQL: one `COPY ... FROM STDIN (FORMAT csv)`, streamed in ~1 MiB chunks.
async fn copy_rows(pool: &PgPool, rows: &[PatternRow]) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY auto_learned_patterns ({INSERT_COLUMNS}) FROM STDIN (FORMAT csv)"
        ))
        .await
        .context("starting COPY")?;
    let mut buf = String::with_capacity(1 << 20);
    for r in rows {
        csv_row(&mut buf, r);
        if buf.len() >= 1 << 20 {
            copy.send(buf.as_bytes())
                .await
                .context("sending COPY data")?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_bytes())
            .await
            .context("sending COPY data")?;
    }
    copy.finish().await.context("finishing COPY")?;
    Ok(())
}

/// One CSV line: text quoted (quotes doubled), NULL metadata as an unquoted empty field.
fn csv_row(buf: &mut String, r: &PatternRow) {
    use std::fmt::Write as _;
    let quoted = |buf: &mut String, s: &str| {
        buf.push('"');
        buf.push_str(&s.replace('"', "\"\""));
        buf.push('"');
    };
    quoted(buf, &r.pattern);
    buf.push(',');
    quoted(buf, &r.normalized_pattern);
    buf.push(',');
    quoted(buf, &r.category);
    let _ = write!(
        buf,
        ",{},{},{},{},{},",
        r.confidence,
        r.times_used,
        r.times_correct,
        r.accuracy,
        r.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    quoted(buf, &r.created_by);
    let _ = write!(buf, ",{},", r.enabled);
    quoted(buf, r.status.as_str());
    buf.push(',');
    if let Some(m) = &r.metadata {
        quoted(buf, m);
    }
    buf.push('\n');
}

/// SQLite: one transaction of prepared multi-row INSERTs (the statement for a full chunk is
/// prepared once and reused from the driver's statement cache).
async fn insert_rows(pool: &SqlitePool, rows: &[PatternRow]) -> anyhow::Result<()> {
    let statement = |n: usize| {
        let one = format!("({})", ["?"; INSERT_PARAMS].join(", "));
        format!(
            "INSERT INTO auto_learned_patterns ({INSERT_COLUMNS}) VALUES {}",
            vec![one; n].join(", ")
        )
    };
    let full = statement(SQLITE_ROWS_PER_INSERT);
    let mut tx = pool.begin().await?;
    for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
        let sql = if chunk.len() == SQLITE_ROWS_PER_INSERT {
            full.clone()
        } else {
            statement(chunk.len())
        };
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.pattern)
                .bind(&r.normalized_pattern)
                .bind(&r.category)
                .bind(r.confidence)
                .bind(r.times_used)
                .bind(r.times_correct)
                .bind(r.accuracy)
                .bind(r.created_at.to_rfc3339_opts(SecondsFormat::Millis, true))
                .bind(&r.created_by)
                .bind(r.enabled)
                .bind(r.status.as_str())
                .bind(r.metadata.clone());
        }
        q.execute(&mut *tx).await.context("inserting rows")?;
    }
    tx.commit().await.context("committing the inserts")?;
    Ok(())
}

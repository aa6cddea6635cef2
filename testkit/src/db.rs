//! Test databases: a fresh PostgreSQL database or a fresh SQLite file per test, plus a raw SQL
//! client that plays "another service writing to the table".
//!
//! PostgreSQL: databases are created through the admin URL in `HOTPLANE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), named `hotplane_test_<pid>_<n>_<nanos>`, and
//! dropped (`WITH (FORCE)`) when the [`TestDb`] is dropped, also when the test panics. A test
//! process that is killed leaves its database behind; `scripts/test.sh` drops idle
//! `hotplane_test_*` databases older than 30 minutes before each run.
//!
//! SQLite: a `hotplane.db` file in a temporary directory, removed with the [`TestDb`].

use std::{
    str::FromStr,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hotplane::store::{Store, StoreOptions};
use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection,
    postgres::{PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
};

/// Admin URL used when `HOTPLANE_TEST_PG_URL` is not set.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Every test database name starts with this (the test script cleans up by this prefix).
pub const DB_PREFIX: &str = "hotplane_test_";

/// The admin URL for creating and dropping test databases.
pub fn admin_url() -> String {
    std::env::var("HOTPLANE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A name no other test (in this or another process) uses: pid, a per-process counter and the
/// clock. Lower case ASCII, so it is a plain identifier for PostgreSQL.
pub fn unique_suffix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{n}_{nanos}", std::process::id())
}

/// `url` with its database path replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

enum Kind {
    Postgres { admin_url: String, name: String },
    Sqlite { _dir: tempfile::TempDir },
}

/// A fresh, empty database, removed when dropped.
pub struct TestDb {
    url: String,
    kind: Kind,
}

impl TestDb {
    /// Creates a fresh PostgreSQL database.
    pub async fn postgres() -> TestDb {
        TestDb::postgres_on(admin_url()).await
    }

    /// Creates a fresh PostgreSQL database on the server of `admin_url` (a private server).
    pub async fn postgres_on(admin_url: String) -> TestDb {
        let name = format!("{DB_PREFIX}{}", unique_suffix());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test PostgreSQL at {} ({e}); start it (./scripts/test.sh \
                 does) or set HOTPLANE_TEST_PG_URL",
                hotplane::store::redact_url(&admin_url)
            )
        });
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let _ = admin.close().await;
        TestDb {
            url: with_database(&admin_url, &name),
            kind: Kind::Postgres { admin_url, name },
        }
    }

    /// Creates a fresh SQLite file in a new temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory for the SQLite test db");
        let url = format!("sqlite://{}", dir.path().join("hotplane.db").display());
        TestDb {
            url,
            kind: Kind::Sqlite { _dir: dir },
        }
    }

    /// The database URL for the application.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Store options for this database and `schema` (ignored by SQLite).
    pub fn options_in(&self, schema: &str) -> StoreOptions {
        StoreOptions {
            url: self.url.clone(),
            schema: schema.to_owned(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        }
    }

    /// Store options for this database, schema `public`.
    pub fn options(&self) -> StoreOptions {
        self.options_in("public")
    }

    /// A connected, migrated store (schema `public`).
    pub async fn store(&self) -> Store {
        self.store_in("public").await
    }

    /// A connected, migrated store in `schema`.
    pub async fn store_in(&self, schema: &str) -> Store {
        let store = Store::connect(&self.options_in(schema))
            .await
            .expect("store connects");
        store.migrate().await.expect("store migrates");
        store
    }

    /// A separate raw SQL client on the same database: another service, as far as the store
    /// can tell. Its session uses the server defaults (search_path `public` on PostgreSQL).
    pub async fn client(&self) -> SqlClient {
        match &self.kind {
            Kind::Postgres { .. } => SqlClient::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .connect(&self.url)
                    .await
                    .expect("raw PostgreSQL client connects"),
            ),
            Kind::Sqlite { .. } => {
                let options = SqliteConnectOptions::from_str(&self.url)
                    .expect("sqlite url")
                    .busy_timeout(Duration::from_secs(10));
                SqlClient::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(2)
                        .connect_with(options)
                        .await
                        .expect("raw SQLite client connects"),
                )
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            return; // the TempDir field removes the SQLite file
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs outside any async context we could await in (and maybe while panicking):
        // do the DROP on a private thread with its own small runtime. Best effort: a failure
        // leaves the database for the test script's cleanup.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                admin
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("note: could not drop test database {}: {e}", self.url);
        }
    }
}

/// Raw SQL on a test database, for writes "by another client" and for checks.
pub enum SqlClient {
    /// PostgreSQL pool.
    Postgres(PgPool),
    /// SQLite pool.
    Sqlite(SqlitePool),
}

impl SqlClient {
    /// Runs one statement (or several, without parameters); returns the rows affected.
    pub async fn exec(&self, sql: &str) -> u64 {
        let sql = AssertSqlSafe(sql.to_owned());
        let done = match self {
            SqlClient::Postgres(p) => p.execute(sql).await.map(|r| r.rows_affected()),
            SqlClient::Sqlite(p) => p.execute(sql).await.map(|r| r.rows_affected()),
        };
        done.unwrap_or_else(|e| panic!("raw SQL failed: {e}"))
    }

    /// The single integer a query returns.
    pub async fn int(&self, sql: &str) -> i64 {
        let sql = AssertSqlSafe(sql.to_owned());
        let v = match self {
            SqlClient::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            SqlClient::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        };
        v.unwrap_or_else(|e| panic!("raw SQL query failed: {e}"))
    }

    /// The single text a query returns (NULL as `None`).
    pub async fn text(&self, sql: &str) -> Option<String> {
        let sql = AssertSqlSafe(sql.to_owned());
        let v = match self {
            SqlClient::Postgres(p) => {
                sqlx::query_scalar::<_, Option<String>>(sql)
                    .fetch_one(p)
                    .await
            }
            SqlClient::Sqlite(p) => {
                sqlx::query_scalar::<_, Option<String>>(sql)
                    .fetch_one(p)
                    .await
            }
        };
        v.unwrap_or_else(|e| panic!("raw SQL query failed: {e}"))
    }

    /// The PostgreSQL pool (panics on SQLite: for PostgreSQL-only tests).
    pub fn pg(&self) -> &PgPool {
        match self {
            SqlClient::Postgres(p) => p,
            SqlClient::Sqlite(_) => panic!("this test needs PostgreSQL"),
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            SqlClient::Postgres(p) => p.close().await,
            SqlClient::Sqlite(p) => p.close().await,
        }
    }
}

/// Which of the existing deployment's definitions of its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// As it was first created there: `TIMESTAMP` without time zone, `created_by VARCHAR(50)`.
    Created,
    /// As its own migration leaves it: `TIMESTAMPTZ NOT NULL` timestamps, `created_by
    /// VARCHAR(20)` and an `updated_at` column.
    Migrated,
}

/// The existing deployment's table in `schema`, as `which` defines it.
pub fn legacy_ddl(schema: &str, which: Legacy) -> String {
    let (created_at, last_used_at, created_by, extra) = match which {
        Legacy::Created => ("TIMESTAMP DEFAULT NOW()", "TIMESTAMP", "VARCHAR(50)", ""),
        Legacy::Migrated => (
            "TIMESTAMPTZ NOT NULL DEFAULT NOW()",
            "TIMESTAMPTZ",
            "VARCHAR(20)",
            ",\n            updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()",
        ),
    };
    format!(
        "CREATE TABLE {schema}.auto_learned_patterns (
            id SERIAL PRIMARY KEY,
            pattern VARCHAR(200) UNIQUE NOT NULL,
            normalized_pattern VARCHAR(200) NOT NULL,
            category VARCHAR(50),
            confidence FLOAT,
            times_used INTEGER DEFAULT 0,
            times_correct INTEGER DEFAULT 0,
            accuracy FLOAT DEFAULT 0,
            created_at {created_at},
            last_used_at {last_used_at},
            created_by {created_by} DEFAULT 'llm',
            enabled BOOLEAN DEFAULT TRUE,
            status VARCHAR(20) DEFAULT 'pending'{extra}
        )"
    )
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

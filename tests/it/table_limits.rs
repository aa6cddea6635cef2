//! Writes the table refuses (issue 16, item 6): a value longer than the live table's column, or
//! one that breaks a NOT NULL, CHECK or UNIQUE constraint. The caller gets INVALID_ARGUMENT
//! naming the request field (FAILED_PRECONDITION when no request field is at fault, or another
//! row conflicts), never UNAVAILABLE (which tells clients to retry); nothing is stored and the
//! server keeps serving.
//!
//! The legacy deployment's table here is the one its own migration made, narrower than
//! `db::Legacy::Created`: `created_by VARCHAR(20)` and `TIMESTAMPTZ NOT NULL` timestamps.

use std::str::FromStr;

use hotplane::{config::Config, normalize::Profile, pb};
use sqlx::{AssertSqlSafe, Connection, Executor, SqliteConnection, sqlite::SqliteConnectOptions};
use tonic::{Code, Status};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

use crate::{
    db::{Legacy, TestDb, legacy_ddl},
    helpers::{TestApp, learn_req, served, sql},
};

/// A server on a fresh PostgreSQL database holding the legacy table in schema `pilotpros`,
/// with one approved row ("workflow attivi") and one pending row ("in attesa", id 2).
async fn legacy_app() -> TestApp {
    let db = TestDb::postgres().await;
    let url = db.url().to_owned();
    sql(
        &db,
        &[
            "CREATE SCHEMA pilotpros",
            &legacy_ddl("pilotpros", Legacy::Migrated),
            "INSERT INTO pilotpros.auto_learned_patterns \
                 (pattern, normalized_pattern, category, confidence, status) \
             VALUES ('Workflow attivi?', 'workflow attivi', 'workflow', 0.95, 'approved'), \
                    ('In attesa?', 'in attesa', 'pending', 0.95, 'pending')",
        ],
    )
    .await;
    let mut config = Config::for_database(&url);
    config.database_schema = "pilotpros".into();
    config.normalize_profile = Profile::PilotPros;
    let app = TestApp::start(config, db).await;
    app.wait_ready().await;
    app
}

/// The BadRequest field a status names, if any.
fn field_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
}

/// Asserts INVALID_ARGUMENT naming `field`, with every one of `words` in the message.
fn assert_invalid(status: &Status, field: &str, words: &[&str]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(field_of(status).as_deref(), Some(field), "{status:?}");
    for w in words {
        assert!(status.message().contains(w), "{w:?} in {status:?}");
    }
}

/// Health is still SERVING, the approved row still served, and the table holds `rows` rows.
async fn still_serving(app: &mut TestApp, table: &str, rows: i64) {
    let health = app
        .health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    assert!(
        served(app, "workflow attivi").await.is_some(),
        "the last good state keeps serving"
    );
    let sql = app.db.client().await;
    let count = sql.int(&format!("SELECT count(*) FROM {table}")).await;
    sql.close().await;
    assert_eq!(count, rows, "nothing was stored");
}

fn learn_by(query: &str, category: &str, created_by: &str) -> pb::LearnPatternRequest {
    pb::LearnPatternRequest {
        created_by: created_by.into(),
        ..learn_req(query, category, 0.95)
    }
}

/// On the legacy table, a 21-character `created_by` is refused before any SQL with
/// INVALID_ARGUMENT naming the field and the table's limit; 20 characters are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_legacy_created_by_longer_than_the_column_is_invalid_argument() {
    let mut app = legacy_app().await;
    let err = app
        .patterns
        .learn_pattern(learn_by("quanti errori oggi", "errors", &"a".repeat(21)))
        .await
        .expect_err("21 characters do not fit VARCHAR(20)");
    assert_invalid(
        &err,
        "created_by",
        &["at most 20 characters", "the table's column limit"],
    );
    still_serving(&mut app, "pilotpros.auto_learned_patterns", 2).await;

    let ok = app
        .patterns
        .learn_pattern(learn_by("quanti errori oggi", "errors", &"a".repeat(20)))
        .await
        .expect("20 characters fit")
        .into_inner();
    assert!(ok.created);
    assert_eq!(ok.pattern.expect("row").created_by, "a".repeat(20));
}

/// Refusals that validation cannot see (the table changed after start): a column narrowed
/// below hotplane's limit, CHECK constraints and a UNIQUE index added with SQL. Each is a
/// permanent error: INVALID_ARGUMENT naming the field when a request field is at fault,
/// FAILED_PRECONDITION otherwise, never UNAVAILABLE; the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_constraint_and_data_errors_past_validation_are_not_unavailable() {
    let mut app = legacy_app().await;
    sql(
        &app.db,
        &[
            "ALTER TABLE pilotpros.auto_learned_patterns ALTER COLUMN category TYPE VARCHAR(10)",
            "ALTER TABLE pilotpros.auto_learned_patterns \
                 ADD CONSTRAINT no_bots CHECK (created_by <> 'bot')",
            "ALTER TABLE pilotpros.auto_learned_patterns \
                 ADD CONSTRAINT never_disabled CHECK (status <> 'disabled')",
        ],
    )
    .await;
    let table = "pilotpros.auto_learned_patterns";

    // 22001: PostgreSQL names no column; hotplane works it out from the live limits.
    let long_category = "c".repeat(15);
    for attempt in ["at the database", "before SQL, now that the limit is known"] {
        let err = app
            .patterns
            .learn_pattern(learn_by("quanti errori oggi", &long_category, ""))
            .await
            .expect_err(attempt);
        assert_invalid(
            &err,
            "category",
            &["at most 10 characters", "the table's column limit"],
        );
    }
    // 23514: a CHECK on a column the request sets.
    let err = app
        .patterns
        .learn_pattern(learn_by("quanti errori oggi", "errors", "bot"))
        .await
        .expect_err("CHECK no_bots");
    assert_invalid(&err, "created_by", &["no_bots"]);
    // A CHECK on a column no request field sets: the table's state, not the caller's input.
    let err = app
        .patterns
        .disable_pattern(pb::DisablePatternRequest {
            id: 1,
            reason: "test".into(),
            ..Default::default()
        })
        .await
        .expect_err("CHECK never_disabled");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("never_disabled"), "{err:?}");
    still_serving(&mut app, table, 2).await;

    // 23505: another row holds the value of a unique index the table gained.
    sql(
        &app.db,
        &["CREATE UNIQUE INDEX one_per_category ON pilotpros.auto_learned_patterns (category)"],
    )
    .await;
    let err = app
        .patterns
        .learn_pattern(learn_by("quanti errori oggi", "workflow", ""))
        .await
        .expect_err("unique category");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("one_per_category"), "{err:?}");
    still_serving(&mut app, table, 2).await;
}

/// hotplane's own SQLite table, made before the first start with `created_by` declared
/// `VARCHAR(20)` (SQLite does not enforce it; hotplane does) and `category` checked at 10
/// characters: the declared limit is refused before SQL, the CHECK at the database, both as
/// INVALID_ARGUMENT naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_declared_limits_and_check_errors_are_invalid_argument() {
    let db = TestDb::sqlite().await;
    sqlite_table(&db, "CHECK (length(category) <= 10)").await;
    let app = TestApp::start(Config::for_database(db.url()), db).await;
    app.wait_ready().await;
    let mut app = app;

    let err = app
        .patterns
        .learn_pattern(learn_by("quanti errori oggi", "errors", &"a".repeat(21)))
        .await
        .expect_err("21 characters over the declared VARCHAR(20)");
    assert_invalid(
        &err,
        "created_by",
        &["at most 20 characters", "the table's column limit"],
    );
    let err = app
        .patterns
        .learn_pattern(learn_by("quanti errori oggi", &"c".repeat(15), ""))
        .await
        .expect_err("CHECK length(category) <= 10");
    assert_invalid(&err, "category", &["check constraint"]);
    still_serving(&mut app, "auto_learned_patterns", 1).await;
}

/// A blue/green store swap reads the new table's limits: after moving to a SQLite file whose
/// `created_by` is declared `VARCHAR(20)` (which SQLite alone would not enforce), 21 characters
/// are refused, and nothing reaches the new table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_swap_reads_the_new_tables_limits() {
    let mut app = TestApp::spawn(crate::helpers::Backend::Postgres).await;
    let long_by = learn_by("quanti errori oggi", "errors", &"a".repeat(21));
    app.patterns
        .learn_pattern(long_by.clone())
        .await
        .expect("hotplane's own table takes 50 characters");
    let green = TestDb::sqlite().await;
    sqlite_table(&green, "CHECK (length(category) <= 50)").await;
    app.reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Store.into(),
            database_url: green.url().into(),
            reason: "move database".into(),
            ..Default::default()
        })
        .await
        .expect("store swap");

    let err = app
        .patterns
        .learn_pattern(long_by)
        .await
        .expect_err("the new table declares VARCHAR(20)");
    assert_invalid(
        &err,
        "created_by",
        &["at most 20 characters", "the table's column limit"],
    );
    let sql = green.client().await;
    let stored = sql.int("SELECT count(*) FROM auto_learned_patterns").await;
    sql.close().await;
    assert_eq!(stored, 1, "only the seeded row");
}

/// Makes hotplane's own SQLite table in `db`'s (new) file, as another tool would before
/// hotplane's first start, with `created_by` declared `VARCHAR(20)` and unchecked, and the
/// category check replaced by `category_check`; then one approved row ("workflow attivi").
async fn sqlite_table(db: &TestDb, category_check: &str) {
    let migration =
        include_str!("../../migrations/sqlite/20250101000001_auto_learned_patterns.sql");
    let start = migration
        .find("CREATE TABLE IF NOT EXISTS auto_learned_patterns (")
        .expect("the table's DDL");
    let len = migration[start..].find("\n);").expect("end of the DDL") + 3;
    let mut ddl = migration[start..start + len].to_owned();
    for (from, to) in [
        (
            "created_by         TEXT NOT NULL DEFAULT 'llm' CHECK (length(created_by) <= 50)",
            "created_by         VARCHAR(20) NOT NULL DEFAULT 'llm'",
        ),
        ("CHECK (length(category) <= 50)", category_check),
    ] {
        assert!(ddl.contains(from), "the migration still has {from:?}");
        ddl = ddl.replace(from, to);
    }
    // The file does not exist yet: this client creates it, as the other tool would.
    let options = SqliteConnectOptions::from_str(db.url())
        .expect("sqlite url")
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .expect("create the SQLite file");
    for statement in [
        ddl.as_str(),
        "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, confidence, \
             status) VALUES ('Workflow attivi?', 'workflow attivi', 'workflow', 0.95, 'approved')",
    ] {
        conn.execute(AssertSqlSafe(statement.to_owned()))
            .await
            .expect("prepare the table");
    }
    conn.close().await.expect("close");
}

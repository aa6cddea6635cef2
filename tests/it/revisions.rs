//! Revisions follow commit order on PostgreSQL (issue 15): a writer whose transaction took a
//! lower id and commits after a higher one has been served is neither skipped by a delta nor
//! the cause of a refused full load. Each interleaving runs on two real connections to the
//! test database: `late` opens its transaction (and takes its id) first and commits last;
//! `other` writes in between, in autocommit.

use std::time::Duration;

use hotplane::{config::Config, pb};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::{
    helpers::{Backend, TestApp, learn_req, reload_req, served},
    served::assert_serves_store,
};

/// A raw connection to the test database: another client of the table.
pub async fn connect(app: &TestApp) -> PgConnection {
    PgConnection::connect(app.db.url())
        .await
        .expect("raw PostgreSQL connection")
}

/// Runs SQL on `conn`, panicking with the statement on failure.
pub async fn exec(conn: &mut PgConnection, sql: &str) {
    conn.execute(AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `BEGIN` on `conn` and the transaction id it takes at once (so it is the lower one).
pub async fn begin_early(conn: &mut PgConnection) -> i64 {
    exec(conn, "BEGIN").await;
    sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *conn)
        .await
        .expect("the transaction id")
}

/// A replica on a fresh PostgreSQL database with the backstop poll off: every load in these
/// tests is one the test asks for.
pub async fn replica() -> TestApp {
    replica_with(|_| {}).await
}

/// [`replica`], with the config adjusted by `tweak` first.
pub async fn replica_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(Backend::Postgres, |c| {
        c.poll_interval = Duration::ZERO;
        tweak(c);
    })
    .await
}

/// A Reload of the patterns that must succeed (`full`, or a delta).
pub async fn reload(app: &mut TestApp, full: bool) -> pb::ReloadResponse {
    let what = if full { "full" } else { "delta" };
    app.reload
        .reload(reload_req(full, None))
        .await
        .unwrap_or_else(|e| panic!("the {what} reload is refused: {e:?}"))
        .into_inner()
}

/// What the late transaction does to row R before committing.
#[derive(Debug, Clone, Copy)]
enum Late {
    Disable,
    Update,
    Delete,
    /// Deletes R and inserts it again under the same id with new content.
    Reinsert,
}

const TEXT: &str = "late committing revision row";

/// The interleaving of the issue: R is served; `late` begins (lower id); `other` updates R and
/// a delta serves R at the higher id; `late` changes R and commits; then a delta and a full
/// reload must each serve what the store says.
async fn late_commit(kind: Late) {
    let mut app = replica().await;
    let learned = app
        .patterns
        .learn_pattern(learn_req(TEXT, "ops", 0.9))
        .await
        .expect("learn")
        .into_inner();
    let r = learned.pattern.expect("the stored row");
    assert!(learned.served, "auto-approved: served at once");

    let mut late = connect(&app).await;
    let mut other = connect(&app).await;
    let low = begin_early(&mut late).await;
    exec(
        &mut other,
        &format!(
            "UPDATE auto_learned_patterns SET confidence = 0.97 WHERE id = {}",
            r.id
        ),
    )
    .await;
    let first = reload(&mut app, false).await;
    assert_eq!(first.mode, pb::LoadMode::Delta as i32, "{first:?}");
    let now = served(&mut app, TEXT).await.expect("R is served");
    assert_eq!(now.confidence, 0.97);
    let high = app
        .engine
        .current()
        .snapshot
        .get(r.id)
        .expect("R served")
        .revision();
    assert!(low < high, "the late transaction took the lower id");

    let change = match kind {
        Late::Disable => format!(
            "UPDATE auto_learned_patterns SET enabled = false WHERE id = {}",
            r.id
        ),
        Late::Update => format!(
            "UPDATE auto_learned_patterns SET category = 'late' WHERE id = {}",
            r.id
        ),
        Late::Delete => format!("DELETE FROM auto_learned_patterns WHERE id = {}", r.id),
        Late::Reinsert => format!(
            "DELETE FROM auto_learned_patterns WHERE id = {id}; \
             INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, \
                 confidence, status, enabled) \
             VALUES ({id}, '{pattern}', '{norm}', 'reborn', 0.5, 'approved', true)",
            id = r.id,
            pattern = r.pattern,
            norm = r.normalized_pattern,
        ),
    };
    exec(&mut late, &change).await;
    exec(&mut late, "COMMIT").await;

    let expect = |m: Option<pb::MatchedPattern>, after: &str| match kind {
        Late::Disable | Late::Delete => {
            assert!(
                m.is_none(),
                "{kind:?}: R still served after the {after}: {m:?}"
            )
        }
        Late::Update => {
            let m = m.unwrap_or_else(|| panic!("{kind:?}: R not served after the {after}"));
            assert_eq!(m.category, "late", "{kind:?} after the {after}");
        }
        Late::Reinsert => {
            let m = m.unwrap_or_else(|| panic!("{kind:?}: R not served after the {after}"));
            assert_eq!(
                (m.category.as_str(), m.confidence),
                ("reborn", 0.5),
                "{kind:?} after the {after}"
            );
        }
    };
    let delta = reload(&mut app, false).await;
    assert_eq!(delta.mode, pb::LoadMode::Delta as i32, "{delta:?}");
    expect(served(&mut app, TEXT).await, "delta");
    let store = app.db.store().await;
    assert_serves_store(&app.engine, &store, "after the delta").await;

    let full = reload(&mut app, true).await;
    assert_eq!(full.mode, pb::LoadMode::Full as i32, "{full:?}");
    assert!(
        !full.changed,
        "the delta had already served it all: {full:?}"
    );
    expect(served(&mut app, TEXT).await, "full reload");
    assert_serves_store(&app.engine, &store, "after the full reload").await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_late_disable_is_served_by_delta_and_full() {
    late_commit(Late::Disable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_late_update_is_served_by_delta_and_full() {
    late_commit(Late::Update).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_late_delete_is_served_by_delta_and_full() {
    late_commit(Late::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_late_reinsert_is_served_by_delta_and_full() {
    late_commit(Late::Reinsert).await;
}

mod bulk;
mod fleet;
mod prune;
mod quarantine;
mod sqlite_replace;

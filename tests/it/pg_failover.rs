//! A PostgreSQL failover under a running replica: a private primary with an asynchronous
//! streaming standby; the standby is promoted after the primary committed transactions it never
//! received, and the database's address moves to it (a proxy plays the virtual IP).
//!
//! The promoted server hands out again the transaction ids of the commits it lost, so a delta
//! read against a snapshot from before the failover would take new commits for ones it had
//! already seen, and miss them for good; and rows only the old primary had would stay served.
//! A load on another timeline must therefore be a full one.

use std::sync::Arc;

use hotplane::{config::Config, pb};

use crate::{
    db::{SqlClient, TestDb},
    helpers::{TestApp, eventually, reload_req, served},
    proxy::Proxy,
};
use hotplane_testkit::pg_server::PgServer;

async fn insert(sql: &SqlClient, text: &str) {
    sql.exec(&format!(
        "INSERT INTO auto_learned_patterns \
             (pattern, normalized_pattern, category, confidence, status, enabled) \
         VALUES ('{text}', '{text}', 'ops', 0.9, 'approved', true)"
    ))
    .await;
}

/// The standby has replayed everything the primary has written so far.
async fn caught_up(primary: &SqlClient, standby: &SqlClient) -> bool {
    let written = primary
        .text("SELECT pg_current_wal_lsn()::text")
        .await
        .expect("an LSN");
    standby
        .int(&format!(
            "SELECT (pg_last_wal_replay_lsn() >= '{written}'::pg_lsn)::int::bigint"
        ))
        .await
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_lost_commits_is_followed_by_a_full_load() {
    let primary = PgServer::primary().await;
    let db = Arc::new(TestDb::postgres_on(primary.admin_url()).await);
    let mut proxy = Proxy::postgres(db.url()).await;
    let mut app = TestApp::start(Config::for_database(&proxy.url), Arc::clone(&db)).await;
    app.wait_ready().await;
    let old = db.client().await;
    insert(&old, "kept alpha").await;

    let standby = primary.standby().await;
    let standby_url = db.url().replacen(&primary.addr(), &standby.addr(), 1);
    let new = SqlClient::Postgres(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&standby_url)
            .expect("a standby URL"),
    );
    eventually("the standby to replay the primary's WAL", || async {
        caught_up(&old, &new).await.then_some(())
    })
    .await;

    // The standby stops hearing from the primary, which then commits what it will lose.
    standby.stop(false).await;
    for n in 0..5 {
        insert(&old, &format!("lost {n}")).await;
    }
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("reload");
    assert!(
        served(&mut app, "lost 4").await.is_some(),
        "the primary's commits are served"
    );

    // The primary dies; the standby is promoted and takes over the database's address.
    proxy.cut().await;
    primary.stop(true).await;
    standby.start().await;
    standby.promote().await;
    proxy.restore_to(&standby.addr()).await;

    // The new primary commits a row: its transaction id is one a lost commit had.
    insert(&new, "after failover").await;
    let answer = eventually("a reload on the new primary", || {
        let mut reload = app.reload.clone();
        async move { reload.reload(reload_req(false, None)).await.ok() }
    })
    .await
    .into_inner();
    assert!(
        served(&mut app, "after failover").await.is_some(),
        "a commit on the new primary is served ({answer:?})"
    );
    assert!(
        served(&mut app, "lost 0").await.is_none(),
        "rows only the old primary had are no longer served"
    );
    assert!(served(&mut app, "kept alpha").await.is_some());
    assert_eq!(answer.mode(), pb::LoadMode::Full, "{answer:?}");
    old.close().await;
    new.close().await;
}

//! Tombstone pruning (issue 15 item 6): tombstones past the retention are deleted, and no
//! replica misses a delete because of it. Replica B reads nothing while a row is deleted and its
//! tombstone pruned (as a replica stopped across the prune would); its next delta is refused by
//! the store's pruning horizon and becomes a full load, which drops the row.

use std::{sync::Arc, time::Duration};

use hotplane::{config::Config, pb};

use super::reload;
use crate::{
    both_backends,
    db::TestDb,
    helpers::{Backend, TestApp, served, sql},
    served::assert_serves_store,
};

fn insert(id: i64, text: &str) -> String {
    format!(
        "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, status, \
             enabled) VALUES ({id}, 'raw {id}', '{text}', 'ops', 'approved', true)"
    )
}

async fn replica(db: &Arc<TestDb>) -> TestApp {
    let mut config = Config::for_database(db.url());
    config.poll_interval = Duration::ZERO;
    let app = TestApp::start(config, Arc::clone(db)).await;
    app.wait_ready().await;
    app
}

async fn a_replica_older_than_a_prune_does_a_full_load(backend: Backend) {
    let db = Arc::new(match backend {
        Backend::Postgres => TestDb::postgres().await,
        Backend::Sqlite => TestDb::sqlite().await,
    });
    let mut a = replica(&db).await;
    let mut b = replica(&db).await;
    sql(
        &db,
        &[
            &insert(1, "prune deleted row"),
            &insert(2, "prune kept row"),
        ],
    )
    .await;
    for app in [&mut a, &mut b] {
        reload(app, false).await;
        assert!(served(app, "prune deleted row").await.is_some());
    }

    sql(&db, &["DELETE FROM auto_learned_patterns WHERE id = 1"]).await;
    reload(&mut a, false).await;
    assert!(served(&mut a, "prune deleted row").await.is_none());
    let pruned = a
        .engine
        .prune_tombstones(Duration::ZERO)
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    let client = db.client().await;
    assert_eq!(
        client
            .int("SELECT count(*) FROM auto_learned_patterns_tombstones")
            .await,
        0
    );
    client.close().await;

    // B's cursor predates the prune: the delta it asks for is a full load.
    let r = reload(&mut b, false).await;
    assert_eq!(r.mode, pb::LoadMode::Full as i32, "{r:?}");
    assert!(served(&mut b, "prune deleted row").await.is_none());
    assert!(served(&mut b, "prune kept row").await.is_some());
    // From there on, deltas again.
    sql(&db, &[&insert(3, "prune new row")]).await;
    let r = reload(&mut b, false).await;
    assert_eq!(r.mode, pb::LoadMode::Delta as i32, "{r:?}");
    let store = db.store().await;
    assert_serves_store(&b.engine, &store, "B after the prune").await;
    reload(&mut a, false).await;
    assert_serves_store(&a.engine, &store, "A after the prune").await;
    store.close().await;
}

both_backends!(a_replica_older_than_a_prune_does_a_full_load);

//! Engine unit tests for invalidation (it stops serving at once without reading the store, it
//! lasts until a load that reads the row, and it rides in the single flight with reloads) and
//! for rollback by content hash.

use std::time::Duration;

use super::*;
use crate::{
    model::{NewPattern, PatternStatus},
    store::StoreOptions,
};

async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let store = Store::connect(&StoreOptions {
        url: format!("sqlite://{}", dir.path().join("t.db").display()),
        schema: "public".into(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    })
    .await
    .expect("sqlite store");
    store.migrate().await.expect("migrations");
    store
}

async fn learn(store: &Store, text: &str) -> i64 {
    store
        .learn(&NewPattern {
            pattern: text.into(),
            normalized_pattern: text.into(),
            category: "c".into(),
            confidence: 0.95,
            metadata: serde_json::Value::Null,
            created_by: "test".into(),
            initial_status: PatternStatus::Approved,
        })
        .await
        .expect("learn")
        .row
        .id
}

fn req(scope: Scope) -> LoadRequest {
    LoadRequest {
        scope,
        source: Source::Bus,
        reason: "unit".into(),
    }
}

fn served(engine: &Engine, id: i64) -> bool {
    engine.current().snapshot.is_winner(id)
}

#[tokio::test]
async fn invalidate_stops_serving_at_once_until_a_load_reads_the_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite_store(&dir).await;
    let (a, b) = (learn(&store, "alpha").await, learn(&store, "beta").await);
    let engine = Engine::start(store.clone(), EngineOptions::default());

    // Before the first load nothing is served: an invalidation changes nothing, not even
    // readiness.
    let (r, _) = engine
        .reload(req(Scope::Invalidate(vec![a])), None)
        .await
        .expect("ignored");
    assert_eq!(r.generation_after, 0);
    assert!(!*engine.ready().borrow());

    engine
        .reload(req(Scope::Full), None)
        .await
        .expect("first load");
    assert!(served(&engine, a) && served(&engine, b));

    // No store read: it works with the store closed, as its own generation.
    let revision = engine.current().store_revision;
    store.close().await;
    let (r, _) = engine
        .reload(req(Scope::Invalidate(vec![a, 999])), None)
        .await
        .expect("invalidated");
    assert_eq!((r.generation_before, r.generation_after), (1, 2));
    assert_eq!(
        (r.mode, r.rows_read, r.counts.removed),
        (LoadMode::Invalidate, 0, 1)
    );
    assert!(!served(&engine, a) && served(&engine, b));
    assert_eq!(engine.current().mode, LoadMode::Invalidate);
    assert_eq!(
        engine.current().store_revision,
        revision,
        "the store was not read"
    );

    // A delta that does not see the row change keeps it out; a load of the row brings it back.
    let store = sqlite_store(&dir).await;
    let engine = Engine::start(store.clone(), EngineOptions::default());
    engine
        .reload(req(Scope::Full), None)
        .await
        .expect("first load");
    engine
        .reload(req(Scope::Invalidate(vec![a])), None)
        .await
        .expect("invalidated");
    let (r, _) = engine.reload(req(Scope::Delta), None).await.expect("delta");
    assert_eq!(r.mode, LoadMode::Noop);
    assert!(
        !served(&engine, a),
        "an unchanged store does not say otherwise"
    );
    engine
        .reload(req(Scope::Ids(vec![a])), None)
        .await
        .expect("reload a");
    assert!(served(&engine, a), "the store says it is served");
}

#[tokio::test]
async fn invalidations_coalesce_with_reloads_into_one_batch() {
    // A current-thread runtime: the loader cannot run between the pushes below, so they all
    // land in one batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite_store(&dir).await;
    let (a, b) = (learn(&store, "alpha").await, learn(&store, "beta").await);
    let engine = Engine::start(store.clone(), EngineOptions::default());
    engine
        .reload(req(Scope::Full), None)
        .await
        .expect("first load");
    let before = engine.health();

    let mut events = engine.subscribe();
    for _ in 0..100 {
        engine.request(req(Scope::Invalidate(vec![a])), None);
        engine.request(req(Scope::Invalidate(vec![b])), None);
    }
    // Invalidate b, then read b in the same batch: the read wins, as it comes after.
    let (r, _) = engine
        .reload(req(Scope::Ids(vec![b])), None)
        .await
        .expect("batch");
    let after = engine.health();
    assert_eq!(
        after.loads_total,
        before.loads_total + 1,
        "one batch for 201 requests"
    );
    assert_eq!(after.coalesced_total, before.coalesced_total + 200);
    assert!(!served(&engine, a) && served(&engine, b));
    assert_eq!(r.mode, LoadMode::Single);
    // Two generations: the invalidation (a and b out), then the load (b back).
    let mut modes = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EventKind::ReloadSucceeded { generation, .. } = e.kind {
            modes.push((generation.number, generation.mode));
        }
    }
    assert_eq!(
        modes,
        vec![(2, LoadMode::Invalidate), (3, LoadMode::Single)]
    );
}

/// A rollback by content hash (what a replica does for another's broadcast rollback) finds the
/// retained generation with that content whatever its number, pins the generation served when
/// it already has the content, and refuses content it does not retain, changing nothing.
#[tokio::test]
async fn rollback_to_hash_finds_retained_content_pins_in_place_or_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite_store(&dir).await;
    let engine = Engine::start(store.clone(), EngineOptions::default());
    learn(&store, "alpha").await;
    engine
        .reload(req(Scope::Full), None)
        .await
        .expect("first load");
    let good = engine.current().snapshot.content_hash();
    let bad_id = learn(&store, "beta").await;
    engine.reload(req(Scope::Delta), None).await.expect("delta");
    let bad = engine.current().snapshot.content_hash();
    assert_ne!(good, bad);

    let err = engine
        .rollback_to_hash(
            "0000000000000000",
            "unit".into(),
            crate::audit::Origin::of_source(crate::audit::Source::Bus),
        )
        .await
        .expect_err("not retained");
    assert!(matches!(err, LoadError::ContentNotRetained { .. }), "{err}");
    assert_eq!(
        engine.current().snapshot.content_hash(),
        bad,
        "nothing changed"
    );
    assert!(engine.health().pinned.is_none());

    let r = engine
        .rollback_to_hash(
            &good,
            "unit".into(),
            crate::audit::Origin::of_source(crate::audit::Source::Bus),
        )
        .await
        .expect("retained");
    assert_eq!(r.current.snapshot.content_hash(), good);
    assert!(!served(&engine, bad_id));
    assert_eq!(engine.health().pinned, Some(r.generation_after));

    // Asked again (a second announcement, or content this replica already served): pinned in
    // place, no new generation.
    let again = engine
        .rollback_to_hash(
            &good,
            "unit".into(),
            crate::audit::Origin::of_source(crate::audit::Source::Bus),
        )
        .await
        .expect("already served");
    assert_eq!(
        (again.generation_before, again.generation_after),
        (r.generation_after, r.generation_after)
    );
    assert_eq!(engine.health().pinned, Some(r.generation_after));
}

//! The swap engine driven directly (no gRPC): events, retained generations, no-op reloads and
//! failures, over a real SQLite store.

use hotplane::{
    engine::{Engine, EngineOptions, EventKind, LoadMode, LoadRequest, Scope, Source},
    model::{NewPattern, PatternStatus},
};

use crate::{db::TestDb, helpers::sql};

fn request(scope: Scope) -> LoadRequest {
    LoadRequest {
        scope,
        source: Source::Grpc,
        reason: "engine test".into(),
    }
}

fn pattern(text: &str) -> NewPattern {
    NewPattern {
        pattern: text.into(),
        normalized_pattern: text.into(),
        category: "c".into(),
        confidence: 0.95,
        metadata: serde_json::Value::Null,
        created_by: "test".into(),
        initial_status: PatternStatus::Approved,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_retention_noops_and_failures() {
    let db = TestDb::sqlite().await;
    let store = db.store().await;
    let engine = Engine::start(
        store.clone(),
        EngineOptions {
            retain: 2,
            event_capacity: 64,
            sink: None,
            ..EngineOptions::default()
        },
    );
    let mut events = engine.subscribe();
    let (first, coalesced) = engine
        .reload(request(Scope::Full), None)
        .await
        .expect("first load");
    assert!(!coalesced);
    assert_eq!((first.generation_before, first.generation_after), (0, 1));
    assert!(*engine.ready().borrow(), "ready after the first load");

    // Every load announces itself: started, then succeeded with the new generation.
    let started = events.recv().await.expect("event");
    assert!(matches!(
        started.kind,
        EventKind::ReloadStarted {
            source: Source::Grpc
        }
    ));
    let done = events.recv().await.expect("event");
    assert!(done.id > started.id, "event ids increase");
    match done.kind {
        EventKind::ReloadSucceeded { generation, .. } => assert_eq!(generation.number, 1),
        other => panic!("unexpected {other:?}"),
    }

    // Four changes make generations 2..=5; only the last two previous ones are retained.
    for i in 0..4 {
        let row = store
            .learn(&pattern(&format!("text {i}")))
            .await
            .expect("learn")
            .row;
        let (r, _) = engine
            .reload(request(Scope::Ids(vec![row.id])), None)
            .await
            .expect("load");
        assert_eq!(r.mode, LoadMode::Single);
        assert_eq!(r.generation_after, 2 + i);
    }
    let retained: Vec<u64> = engine.retained().iter().map(|g| g.number).collect();
    assert_eq!(retained, vec![4, 3]);

    // An unchanged store: a delta is a no-op that keeps the generation.
    let (noop, _) = engine
        .reload(request(Scope::Delta), None)
        .await
        .expect("delta");
    let (noop2, _) = engine
        .reload(request(Scope::Delta), None)
        .await
        .expect("delta");
    assert_eq!(noop2.mode, LoadMode::Noop, "after {:?}", noop.mode);
    assert_eq!(noop2.generation_after, 5);

    // A failing load keeps generation 5 serving and is reported, and announced.
    sql(&db, &["ALTER TABLE auto_learned_patterns RENAME TO gone"]).await;
    let err = engine
        .reload(request(Scope::Full), None)
        .await
        .expect_err("fails");
    assert!(
        err.to_string().contains("reading the store failed"),
        "{err}"
    );
    assert_eq!(engine.current().number, 5);
    assert_eq!(engine.current().snapshot.len(), 4);
    let h = engine.health();
    assert_eq!(h.consecutive_failures, 1);
    assert!(h.last_error.is_some() && !h.loading());
    let failed = loop {
        let e = events.recv().await.expect("event");
        if let EventKind::ReloadFailed { error, .. } = e.kind {
            break error;
        }
    };
    assert!(failed.contains("reading the store failed"));

    // validate_only never swaps, even when it would change something.
    sql(&db, &["ALTER TABLE gone RENAME TO auto_learned_patterns"]).await;
    store.learn(&pattern("validate me")).await.expect("learn");
    let v = engine.validate(Scope::Full).await.expect("validate");
    assert_eq!(v.counts.added, 1);
    assert_eq!(engine.current().number, 5);

    engine.shutdown();
    let closed = engine
        .reload(request(Scope::Delta), None)
        .await
        .expect_err("closed");
    assert!(closed.to_string().contains("shutting down"));
}

/// Blue/green store swap: everything is read from the new store before anything is swapped;
/// a store that cannot be read is refused and the old one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_store_is_all_or_nothing() {
    let blue = TestDb::sqlite().await;
    let green = TestDb::sqlite().await;
    let broken = TestDb::sqlite().await;
    let blue_store = blue.store().await;
    blue_store
        .learn(&pattern("solo in blu"))
        .await
        .expect("learn");
    let green_store = green.store().await;
    green_store
        .learn(&pattern("solo in verde"))
        .await
        .expect("learn");
    green_store
        .learn(&pattern("anche in verde"))
        .await
        .expect("learn");
    let engine = Engine::start(blue_store, EngineOptions::default());
    engine
        .reload(request(Scope::Full), None)
        .await
        .expect("first load");
    let served = |e: &Engine, text: &str| e.current().snapshot.lookup(text, None).is_some();
    assert!(served(&engine, "solo in blu"));

    // A store whose table is gone: refused, nothing changes.
    broken.store().await.close().await; // migrated, then broken below
    sql(
        &broken,
        &["ALTER TABLE auto_learned_patterns RENAME TO gone"],
    )
    .await;
    let before = engine.current().number;
    let err = engine
        .swap_store(
            &broken.options_in("public"),
            "bad".into(),
            hotplane::audit::Origin::of_source(hotplane::audit::Source::Grpc),
        )
        .await
        .expect_err("unreadable store refused");
    assert!(
        err.to_string().contains("reading the store failed"),
        "{err}"
    );
    assert_eq!(engine.current().number, before);
    assert!(served(&engine, "solo in blu"));
    engine
        .store()
        .learn(&pattern("ancora in blu"))
        .await
        .expect("writes still go to blue");
    assert_eq!(
        blue.client()
            .await
            .int("SELECT count(*) FROM auto_learned_patterns")
            .await,
        2
    );

    // The green store: swapped in with its content, as a new generation.
    let report = engine
        .swap_store(
            &green.options_in("public"),
            "move to green".into(),
            hotplane::audit::Origin::of_source(hotplane::audit::Source::Grpc),
        )
        .await
        .expect("swap");
    assert_eq!(report.generation_after, before + 1);
    assert_eq!(report.mode, LoadMode::Full);
    assert!(served(&engine, "solo in verde") && served(&engine, "anche in verde"));
    assert!(!served(&engine, "solo in blu"));
    engine
        .store()
        .learn(&pattern("scritto dopo lo scambio"))
        .await
        .expect("learn");
    assert_eq!(
        green
            .client()
            .await
            .int("SELECT count(*) FROM auto_learned_patterns")
            .await,
        3,
        "writes go to the new store"
    );
    // Deltas now follow the new store.
    let (r, _) = engine
        .reload(request(Scope::Delta), None)
        .await
        .expect("delta");
    assert!(r.counts.added == 1 && served(&engine, "scritto dopo lo scambio"));
}

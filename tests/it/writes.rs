//! Pattern writes driven directly (no gRPC), over a real SQLite store: each write is served
//! before it answers, announced after the reload that served it, and a refused one changes
//! nothing and announces nothing.

use std::sync::{Arc, Mutex};

use hotplane::{
    bus::Bus,
    config::{Config, live::LiveConfig},
    engine::{Engine, EngineOptions, EventKind, LoadRequest, Scope, Source},
    learn::Proposal,
    writes::{PatternWrites, WriteError, WriteKind},
};

use crate::db::TestDb;

/// What the engine's sink and the writes' sink saw, in order: (what, generation).
type Seen = Arc<Mutex<Vec<(String, Option<u64>)>>>;

async fn writes(db: &TestDb, min_confidence: f64) -> (PatternWrites, Engine, Seen) {
    let seen: Seen = Arc::default();
    let engine_seen = Arc::clone(&seen);
    let engine = Engine::start(
        db.store().await,
        EngineOptions {
            sink: Some(Arc::new(move |event| {
                if let EventKind::ReloadSucceeded { generation, .. } = &event.kind {
                    let entry = ("reloaded".to_owned(), Some(generation.number));
                    engine_seen.lock().expect("not poisoned").push(entry);
                }
            })),
            ..EngineOptions::default()
        },
    );
    engine
        .reload(
            LoadRequest {
                scope: Scope::Full,
                source: Source::Startup,
                reason: "first load".into(),
            },
            None,
        )
        .await
        .expect("first load");
    let mut config = Config::for_database(db.url());
    config.learn_auto_approve = true;
    config.learn_min_confidence = min_confidence;
    let live = Arc::new(LiveConfig::new(config.clone(), config, None));
    let write_seen = Arc::clone(&seen);
    let writes = PatternWrites::new(
        engine.clone(),
        live,
        Bus::disabled(),
        Arc::new(move |event| {
            let entry = (
                format!("{:?} {}", event.kind, event.id),
                event.generation.map(|g| g.number),
            );
            write_seen.lock().expect("not poisoned").push(entry);
        }),
    );
    seen.lock().expect("not poisoned").clear();
    (writes, engine, seen)
}

fn proposal(query: &str, confidence: f64) -> Proposal {
    Proposal {
        query: query.into(),
        category: "billing".into(),
        confidence,
        metadata: serde_json::json!({"team": "a"}),
        created_by: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_write_is_served_then_announced_after_its_reload() {
    let db = TestDb::sqlite().await;
    let (writes, engine, seen) = writes(&db, 0.5).await;

    let learned = writes
        .learn(proposal("refund my order", 0.9), "tester".into())
        .await
        .expect("learn");
    let id = learned.outcome.row.id;
    assert!(learned.outcome.created);
    assert!(
        learned.served,
        "auto-approved: served when the call returns"
    );
    assert_eq!(engine.current().number, learned.write.generation);
    assert!(engine.current().snapshot.is_winner(id));
    assert_eq!(
        learned.write.publish_error, None,
        "no bus: nothing to report"
    );

    let (row, disabled) = writes
        .set_status(id, false, "spam", "tester".into())
        .await
        .expect("disable");
    assert!(!row.enabled);
    assert!(
        !engine.current().snapshot.is_winner(id),
        "disabled: not served"
    );

    let (_, approved) = writes
        .set_status(id, true, "fine after all", "tester".into())
        .await
        .expect("approve");
    assert!(engine.current().snapshot.is_winner(id));

    let deleted = writes
        .delete(id, "cleanup", "tester".into())
        .await
        .expect("delete");
    assert!(engine.current().snapshot.get(id).is_none());

    // Each write: the reload that served it, then the write's own event naming that generation.
    let want = [
        (WriteKind::Learned, learned.write.generation),
        (WriteKind::Disabled, disabled.generation),
        (WriteKind::Approved, approved.generation),
        (WriteKind::Deleted, deleted.generation),
    ]
    .iter()
    .flat_map(|(kind, g)| {
        [
            ("reloaded".to_owned(), Some(*g)),
            (format!("{kind:?} {id}"), Some(*g)),
        ]
    })
    .collect::<Vec<_>>();
    assert_eq!(*seen.lock().expect("not poisoned"), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_changes_nothing_and_announces_nothing() {
    let db = TestDb::sqlite().await;
    let (writes, engine, seen) = writes(&db, 0.8).await;
    let before = engine.current().number;

    // The learning rules: below the configured confidence, named by the request's field.
    match writes
        .learn(proposal("refund my order", 0.5), "t".into())
        .await
    {
        Err(WriteError::Rejected(v)) => assert_eq!(v.field, "confidence"),
        other => panic!("expected the rules to refuse it, got {other:?}"),
    }
    // No such row: nothing written, no reload.
    match writes.set_status(4242, true, "r", "t".into()).await {
        Err(WriteError::NotFound(4242)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    match writes.delete(4242, "r", "t".into()).await {
        Err(WriteError::NotFound(4242)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }

    assert_eq!(engine.current().number, before, "no new generation");
    assert!(
        engine.current().snapshot.is_empty(),
        "nothing stored or served"
    );
    assert!(
        seen.lock().expect("not poisoned").is_empty(),
        "nothing announced"
    );
    let all = hotplane::store::ListQuery {
        limit: 100,
        ..Default::default()
    };
    let stored = db.store().await.list(&all).await.expect("list");
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
}

//! Rollback and pinning: a retained generation is served again as a new generation, automatic
//! reloads are held while pinned, and an explicit reload unpins with a full read.

use hotplane::{
    engine::{LoadRequest, Scope, Source},
    pb::{self, EventKind},
};
use tonic::Code;

use crate::helpers::{Backend, DEADLINE, TestApp, learn_req, patterns_status, reload_req, served};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_pins_holds_automatic_reloads_and_an_explicit_reload_unpins() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let mut events = app
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect("watch")
        .into_inner();
    app.patterns
        .learn_pattern(learn_req("primo pattern", "a", 0.95))
        .await
        .expect("learn");
    let good = patterns_status(&app).await.current.expect("gen");
    app.patterns
        .learn_pattern(learn_req("pattern sbagliato", "b", 0.95))
        .await
        .expect("learn");
    assert!(served(&mut app, "pattern sbagliato").await.is_some());

    let r = app
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            to_generation: 0,
            reason: "bad batch".into(),
            ..Default::default()
        })
        .await
        .expect("rollback")
        .into_inner();
    let cur = r.current.expect("current");
    assert!(r.pinned);
    assert_eq!(
        cur.generation,
        r.generation_before + 1,
        "a rollback is a new generation"
    );
    assert_eq!(
        cur.content_hash, good.content_hash,
        "with the retained generation's content"
    );
    assert_eq!(cur.source, pb::ReloadSource::Rollback as i32);
    assert!(served(&mut app, "pattern sbagliato").await.is_none());
    assert!(served(&mut app, "primo pattern").await.is_some());

    // Automatic reloads (bus, poll) are held while pinned.
    for source in [Source::Poll, Source::Bus] {
        let (held, _) = app
            .engine
            .reload(LoadRequest {
                scope: Scope::Full,
                source,
                reason: "auto".into(),
            })
            .await
            .expect("held");
        assert_eq!(held.generation_after, cur.generation);
    }
    let t = patterns_status(&app).await;
    assert!(t.pinned);
    assert_eq!(t.pending_changes, 2);
    assert!(
        served(&mut app, "pattern sbagliato").await.is_none(),
        "still rolled back"
    );

    // An explicit reload unpins and reads everything, even when only a delta was asked for.
    let r = app
        .reload
        .reload(reload_req(false, None))
        .await
        .expect("reload")
        .into_inner();
    assert_eq!(r.mode, pb::LoadMode::Full as i32);
    assert!(served(&mut app, "pattern sbagliato").await.is_some());
    let t = patterns_status(&app).await;
    assert!(!t.pinned && t.pending_changes == 0);

    // The stream showed rollback, pin and unpin, in that order.
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(e) = events.message().await.expect("stream") {
            if [EventKind::Rollback, EventKind::Pin, EventKind::Unpin]
                .iter()
                .any(|k| *k as i32 == e.kind)
            {
                seen.push(e.kind);
                if e.kind == EventKind::Unpin as i32 {
                    break;
                }
            }
        }
    })
    .await
    .expect("events before the deadline");
    assert_eq!(
        seen,
        vec![
            EventKind::Rollback as i32,
            EventKind::Pin as i32,
            EventKind::Unpin as i32
        ]
    );

    // Errors: an unknown generation, a broadcast (needs the bus: there is none here), a missing
    // target.
    let err = app
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            to_generation: 99,
            ..Default::default()
        })
        .await
        .expect_err("not retained");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("not retained"), "{}", err.message());
    let err = app
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            broadcast: true,
            ..Default::default()
        })
        .await
        .expect_err("broadcast");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("--redis-url"), "{}", err.message());
    let err = app
        .reload
        .rollback(pb::RollbackRequest::default())
        .await
        .expect_err("no target");
    assert_eq!(err.code(), Code::InvalidArgument);
}

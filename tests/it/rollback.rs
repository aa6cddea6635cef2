//! Rollback and pinning: a retained generation is served again as a new generation, automatic
//! reloads are held while pinned, and an explicit reload unpins with a full read. With
//! broadcast, every replica that retains the content rolls back to it too.

use std::{sync::Arc, time::Duration};

use hotplane::{
    engine::{LoadRequest, Scope, Source},
    pb::{self, EventKind},
};
use tonic::Code;

use crate::{
    bus::{bus_config, bus_status, channel, redis_url, start, status, wait_served},
    db::TestDb,
    helpers::{
        Backend, DEADLINE, TestApp, eventually, learn_req, patterns_status, reload_req, served,
    },
};

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
            .reload(
                LoadRequest {
                    scope: Scope::Full,
                    source,
                    reason: "auto".into(),
                },
                None,
            )
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

/// Broadcast: the origin rolls back and announces the content hash; a replica that retains that
/// content serves it too (pinned), one that does not (it started after the bad batch) keeps
/// serving and says why, in its status, its fleet entry and on WatchStatus. The origin's wait
/// ends as soon as every instance either converged or refused, and names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_rollback_moves_every_replica_that_retains_the_content() {
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:rollback");
    let config = || {
        let mut c = bus_config(&db, &redis_url(), &ch);
        // Only signed messages (or an operator's explicit opt-in) may pin a replica.
        c.bus_secret = Some(hotplane::bus::Secret::new("rollback test secret"));
        c.fleet_heartbeat = Duration::from_millis(100);
        c
    };
    let mut a = start(config(), &db).await;
    let mut b = start(config(), &db).await;
    a.patterns
        .learn_pattern(learn_req("risposta buona", "good", 0.95))
        .await
        .expect("learn");
    wait_served(&mut b, "risposta buona").await;
    let good = patterns_status(&a).await.current.expect("gen").content_hash;
    a.patterns
        .learn_pattern(learn_req("risposta sbagliata", "bad", 0.95))
        .await
        .expect("learn");
    wait_served(&mut b, "risposta sbagliata").await;
    // C starts now: it never served the good content, so it cannot roll back to it.
    let mut c = start(config(), &db).await;
    let c_id = status(&c).await.instance_id;
    let mut c_events = c
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest {
            kinds: vec![EventKind::RollbackFailed.into()],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    eventually("three members", || async {
        let f = status(&a).await.fleet.expect("fleet");
        (f.members.len() == 3).then_some(())
    })
    .await;

    let r = a
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            broadcast: true,
            wait_for_fleet: Some(prost_types::Duration {
                seconds: 20,
                nanos: 0,
            }),
            reason: "bad batch everywhere".into(),
            ..Default::default()
        })
        .await
        .expect("rollback")
        .into_inner();
    assert_eq!(r.current.as_ref().expect("current").content_hash, good);
    assert_eq!(r.publish_error, "", "announced");
    assert!(!r.fleet_converged, "C could not follow: {r:?}");
    assert_eq!(r.fleet.len(), 3);
    for m in &r.fleet {
        if m.instance_id == c_id {
            assert!(!m.converged, "{m:?}");
            assert!(m.rollback_error.contains(&good), "{m:?}");
        } else {
            assert!(m.converged && m.content_hash == good, "{m:?}");
        }
    }

    // B serves the good content, pinned; C keeps serving what it served, and says why.
    assert!(served(&mut b, "risposta sbagliata").await.is_none());
    assert!(served(&mut b, "risposta buona").await.is_some());
    let tb = patterns_status(&b).await;
    assert!(tb.pinned);
    assert_eq!(
        tb.current.expect("gen").source,
        pb::ReloadSource::Rollback as i32
    );
    assert_eq!(bus_status(&b).await.rollbacks_followed, 1);
    assert!(served(&mut c, "risposta sbagliata").await.is_some());
    assert!(!patterns_status(&c).await.pinned);
    let sc = bus_status(&c).await;
    assert_eq!((sc.rollbacks_failed, sc.rollbacks_followed), (1, 0));
    assert!(
        sc.last_rollback_error.contains(&good),
        "{}",
        sc.last_rollback_error
    );
    let failed = tokio::time::timeout(DEADLINE, async {
        loop {
            let e = c_events
                .message()
                .await
                .expect("stream ok")
                .expect("stream open");
            if e.kind() == EventKind::RollbackFailed {
                return e;
            }
        }
    })
    .await
    .expect("a ROLLBACK_FAILED event");
    assert!(failed.error.contains(&good), "{}", failed.error);

    // Legacy messages keep working beside the new kind: an explicit reload unpins B and the
    // bad pattern is served again, announced the old way.
    let reloaded = b
        .reload
        .reload(pb::ReloadRequest {
            broadcast: true,
            ..reload_req(false, None)
        })
        .await
        .expect("reload")
        .into_inner();
    assert_eq!(reloaded.publish_error, "");
    assert!(served(&mut b, "risposta sbagliata").await.is_some());
    assert!(!patterns_status(&b).await.pinned);
}

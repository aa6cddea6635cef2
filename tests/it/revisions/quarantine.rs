//! Deltas never stall on one row (issue 15 item 5): a row the store says to serve that breaks an
//! invariant is quarantined (not served), the rest of the load is applied, GetStatus and a
//! WatchStatus event name the row and the reason, and the row is served again once fixed.

use std::time::Duration;

use hotplane::pb;
use tonic::Streaming;

use super::reload;
use crate::{
    both_backends,
    helpers::{Backend, DEADLINE, TestApp, patterns_status, served, sql},
    served::assert_serves_store,
};

fn insert(id: i64, text: &str) -> String {
    format!(
        "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, \
             times_used, times_correct, status, enabled) \
         VALUES ({id}, 'raw {id}', '{text}', 'ops', 3, 1, 'approved', true)"
    )
}

async fn next_event(stream: &mut Streaming<pb::WatchStatusResponse>) -> pb::WatchStatusResponse {
    loop {
        let e = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("an event before the deadline")
            .expect("stream ok")
            .expect("stream open");
        // The stream starts with a snapshot; heartbeats come and go.
        if e.kind != pb::EventKind::Snapshot as i32 && e.kind != pb::EventKind::Heartbeat as i32 {
            return e;
        }
    }
}

async fn quarantined_row_is_left_out_and_served_again_once_fixed(backend: Backend) {
    let mut app = TestApp::spawn_with(backend, |c| c.poll_interval = Duration::ZERO).await;
    sql(
        &app.db,
        &[
            &insert(1, "quarantine bad row"),
            &insert(2, "quarantine disabled row"),
        ],
    )
    .await;
    reload(&mut app, false).await;
    let mut events = app
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest {
            kinds: vec![
                pb::EventKind::PatternQuarantined.into(),
                pb::EventKind::PatternReleased.into(),
            ],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();

    // Row 1 breaks an invariant (as hit counts waiting in memory can make it); in the same
    // delta, row 2 is disabled and row 3 inserted.
    sql(
        &app.db,
        &[
            "UPDATE auto_learned_patterns SET times_correct = 9 WHERE id = 1",
            "UPDATE auto_learned_patterns SET enabled = false WHERE id = 2",
            &insert(3, "quarantine new row"),
        ],
    )
    .await;
    let r = reload(&mut app, false).await;
    assert_eq!(r.mode, pb::LoadMode::Delta as i32, "{r:?}");
    assert!(served(&mut app, "quarantine bad row").await.is_none());
    assert!(served(&mut app, "quarantine disabled row").await.is_none());
    assert!(served(&mut app, "quarantine new row").await.is_some());
    let status = patterns_status(&app).await;
    assert_eq!(status.quarantined_total, 1, "{status:?}");
    let q = &status.quarantined[0];
    assert_eq!(q.pattern_id, 1);
    assert!(
        q.reason.contains("times_correct 9 exceeds times_used 3"),
        "{}",
        q.reason
    );
    assert!(
        status.last_error.is_empty(),
        "the load succeeded: {status:?}"
    );
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.kind, e.pattern_id),
        (pb::EventKind::PatternQuarantined as i32, 1)
    );
    assert!(e.error.contains("times_correct"), "{e:?}");

    // The next delta is not held up either, and a full reload quarantines the same row.
    let full = reload(&mut app, true).await;
    assert!(!full.changed, "{full:?}");
    assert_eq!(patterns_status(&app).await.quarantined_total, 1);

    sql(
        &app.db,
        &["UPDATE auto_learned_patterns SET times_correct = 2 WHERE id = 1"],
    )
    .await;
    reload(&mut app, false).await;
    assert!(served(&mut app, "quarantine bad row").await.is_some());
    let status = patterns_status(&app).await;
    assert_eq!((status.quarantined_total, status.quarantined.len()), (0, 0));
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.kind, e.pattern_id),
        (pb::EventKind::PatternReleased as i32, 1)
    );
    let store = app.db.store().await;
    assert_serves_store(&app.engine, &store, "after the fix").await;
    store.close().await;
}

both_backends!(quarantined_row_is_left_out_and_served_again_once_fixed);

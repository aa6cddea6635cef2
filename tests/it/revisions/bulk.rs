//! A bulk UPDATE of 10,000 rows whose transaction began before, and commits after, a burst of
//! LearnPattern calls on some of the same rows: the learned rows were served at higher ids, and
//! the bulk change must still replace them.

use hotplane::pb;
use tokio::task::JoinSet;

use super::{begin_early, connect, exec, reload, replica_with};
use crate::{
    helpers::{learn_req, served},
    served::assert_serves_store,
};

const ROWS: usize = 10_000;
/// Existing rows the burst learns again (changing their category and confidence).
const RELEARNED: usize = 40;
/// New rows the burst learns.
const NEW: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_bulk_update_committing_after_a_learn_burst_is_served() {
    let mut app = replica_with(|c| c.auth.admin_burst = (RELEARNED + NEW + 10) as u32).await;
    let mut other = connect(&app).await;
    exec(
        &mut other,
        &format!(
            "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, \
                 confidence, status, enabled) \
             SELECT 'bulk raw ' || g, 'bulk row ' || g, 'before', 0.5, 'approved', true \
               FROM generate_series(1, {ROWS}) AS g"
        ),
    )
    .await;
    let first = reload(&mut app, false).await;
    assert_eq!(first.added as usize, ROWS, "{first:?}");

    let mut late = connect(&app).await;
    let low = begin_early(&mut late).await;

    // The burst: concurrent learns, each served at once on this replica (single-row loads).
    let mut burst = JoinSet::new();
    for i in 1..=RELEARNED {
        let mut client = app.patterns.clone();
        burst.spawn(async move {
            client
                .learn_pattern(learn_req(&format!("bulk row {i}"), "learned", 0.9))
                .await
        });
    }
    for i in 1..=NEW {
        let mut client = app.patterns.clone();
        burst.spawn(async move {
            client
                .learn_pattern(learn_req(&format!("fresh burst row {i}"), "learned", 0.9))
                .await
        });
    }
    while let Some(done) = burst.join_next().await {
        let learned = done.expect("learn task").expect("learn").into_inner();
        assert!(learned.served, "{learned:?}");
        let revision = learned.pattern.expect("row").revision;
        assert!(
            revision > low,
            "the burst's ids are above the bulk transaction's"
        );
    }
    let relearned = served(&mut app, "bulk row 1").await.expect("served");
    assert_eq!(relearned.category, "learned");

    exec(
        &mut late,
        "UPDATE auto_learned_patterns SET category = 'bulk', confidence = 0.6 \
          WHERE normalized_pattern LIKE 'bulk row %'",
    )
    .await;
    exec(&mut late, "COMMIT").await;

    let delta = reload(&mut app, false).await;
    assert_eq!(delta.mode, pb::LoadMode::Delta as i32, "{delta:?}");
    for i in [1, RELEARNED / 2, RELEARNED, RELEARNED + 1, ROWS] {
        let m = served(&mut app, &format!("bulk row {i}"))
            .await
            .unwrap_or_else(|| panic!("bulk row {i} served"));
        assert_eq!(
            (m.category.as_str(), m.confidence),
            ("bulk", 0.6),
            "bulk row {i}"
        );
    }
    let store = app.db.store().await;
    assert_serves_store(&app.engine, &store, "after the delta").await;
    assert_eq!(app.engine.current().snapshot.len(), ROWS + NEW);

    let full = reload(&mut app, true).await;
    assert!(!full.changed, "the delta had served it all: {full:?}");
    assert_serves_store(&app.engine, &store, "after the full reload").await;
    store.close().await;
}

//! Reloads of changes made by other database clients, duplicate resolution, and failures that
//! keep the last good generation serving.

use hotplane::pb;

use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::{
    both_backends,
    db::{Legacy, TestDb, legacy_ddl},
    helpers::{Backend, TestApp, reload_req, served, sql},
};

fn insert(id: i64, norm: &str, category: &str, accuracy: f64, used: i64) -> String {
    format!(
        "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, confidence, \
         times_used, times_correct, accuracy, created_by, enabled, status) VALUES \
         ({id}, 'raw {id}', '{norm}', '{category}', 0.95, {used}, 0, {accuracy}, 'manual', true, 'approved')"
    )
}

async fn direct_sql_changes_are_served_after_a_delta_reload(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let many: Vec<String> = (1..=50)
        .map(|i| insert(i, &format!("riga {i}"), "bulk", 0.5, 0))
        .collect();
    sql(
        &app.db,
        &many.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let r = app
        .reload
        .reload(reload_req(false, None))
        .await
        .expect("reload")
        .into_inner();
    assert_eq!((r.added, r.mode), (50, pb::LoadMode::Delta as i32));

    // Another client inserts, updates, disables and hard-deletes rows with plain SQL.
    sql(
        &app.db,
        &[
            &insert(100, "inserito da sql", "direct", 0.7, 1),
            "UPDATE auto_learned_patterns SET category = 'changed' WHERE id = 1",
            "UPDATE auto_learned_patterns SET enabled = false WHERE id = 2",
            "DELETE FROM auto_learned_patterns WHERE id = 3",
        ],
    )
    .await;
    assert!(
        served(&mut app, "inserito da sql").await.is_none(),
        "not served before a reload"
    );
    let r = app
        .reload
        .reload(reload_req(false, None))
        .await
        .expect("reload")
        .into_inner();
    assert_eq!(r.mode, pb::LoadMode::Delta as i32);
    assert_eq!(
        (r.added, r.updated, r.removed),
        (1, 1, 2),
        "only the four changed rows: {r:?}"
    );
    assert_eq!(r.generation_after, r.generation_before + 1);
    assert_eq!(
        served(&mut app, "inserito da sql")
            .await
            .expect("served")
            .category,
        "direct"
    );
    assert_eq!(
        served(&mut app, "riga 1").await.expect("served").category,
        "changed"
    );
    assert!(served(&mut app, "riga 2").await.is_none());
    assert!(served(&mut app, "riga 3").await.is_none());
    assert!(served(&mut app, "riga 4").await.is_some());

    // A full reload finds nothing else to change.
    let r = app
        .reload
        .reload(reload_req(true, None))
        .await
        .expect("full")
        .into_inner();
    assert_eq!((r.mode, r.changed), (pb::LoadMode::Full as i32, false));

    // Reload of one pattern id reads just that row.
    sql(
        &app.db,
        &["UPDATE auto_learned_patterns SET category = 'single' WHERE id = 4"],
    )
    .await;
    let r = app
        .reload
        .reload(reload_req(false, Some(4)))
        .await
        .expect("single")
        .into_inner();
    assert_eq!(
        (r.mode, r.updated, r.added, r.removed),
        (pb::LoadMode::Single as i32, 1, 0, 0)
    );
    assert_eq!(
        served(&mut app, "riga 4").await.expect("served").category,
        "single"
    );
    // The single-row load moved the delta cursor past what it read: the next delta reads
    // nothing and says so.
    let r = app
        .reload
        .reload(reload_req(false, None))
        .await
        .expect("delta")
        .into_inner();
    assert_eq!(
        (r.mode, r.changed),
        (pb::LoadMode::Noop as i32, false),
        "{r:?}"
    );

    // A row the store does not have: NOT_FOUND, not a quiet success; a deleted row is
    // dropped from the served set by the same reload, and then says so too.
    for validate_only in [false, true] {
        let err = app
            .reload
            .reload(pb::ReloadRequest {
                validate_only,
                ..reload_req(false, Some(987_654))
            })
            .await
            .expect_err("unknown id");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert!(
            err.message().contains("pattern id 987654"),
            "{}",
            err.message()
        );
    }
    sql(&app.db, &["DELETE FROM auto_learned_patterns WHERE id = 4"]).await;
    let err = app
        .reload
        .reload(reload_req(false, Some(4)))
        .await
        .expect_err("deleted id");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(served(&mut app, "riga 4").await.is_none());
}

async fn duplicates_resolve_to_the_best_row(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    sql(
        &app.db,
        &[
            &insert(1, "doppione", "worst", 0.2, 50),
            &insert(2, "doppione", "best", 0.9, 3),
            &insert(3, "doppione", "second", 0.9, 2),
        ],
    )
    .await;
    app.reload
        .reload(reload_req(true, None))
        .await
        .expect("reload");
    assert_eq!(
        served(&mut app, "doppione").await.expect("served").category,
        "best"
    );
    // Disabling the best promotes the next best, never the worst.
    sql(
        &app.db,
        &["UPDATE auto_learned_patterns SET status = 'disabled' WHERE id = 2"],
    )
    .await;
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("reload");
    assert_eq!(
        served(&mut app, "doppione").await.expect("served").category,
        "second"
    );
    let got = app
        .patterns
        .get_pattern(pb::GetPatternRequest {
            id: 1,
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert!(!got.served, "a losing duplicate is not reported as served");
}

/// The table disappears (renamed away) during a reload: the reload fails, the old generation
/// keeps answering matches without touching the database, and status reports the error until a
/// later reload succeeds.
async fn failed_loads_keep_serving(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    app.patterns
        .learn_pattern(pb::LearnPatternRequest {
            query: "resta servito".into(),
            category: "kept".into(),
            confidence: 0.95,
            ..Default::default()
        })
        .await
        .expect("learn");
    let before = app.engine.current().number;
    sql(
        &app.db,
        &["ALTER TABLE auto_learned_patterns RENAME TO auto_learned_patterns_away"],
    )
    .await;

    for full in [false, true] {
        let err = app
            .reload
            .reload(reload_req(full, None))
            .await
            .expect_err("reload must fail");
        // A missing table is permanent until an operator fixes it: not UNAVAILABLE, which
        // tells clients to retry.
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    }
    // Still serving, from memory only: the table does not exist.
    assert_eq!(
        served(&mut app, "resta servito")
            .await
            .expect("still served")
            .category,
        "kept"
    );
    assert_eq!(app.engine.current().number, before);
    let status = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let t = &status.targets[0];
    assert!(!t.last_error.is_empty(), "status reports the error");
    assert_eq!(t.consecutive_failures, 2);
    assert!(t.failures_total >= 2 && t.last_error_at.is_some());
    assert_eq!(t.current.as_ref().expect("current").generation, before);
    let health = app
        .health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health");
    assert_eq!(
        health.into_inner().status,
        ServingStatus::Serving as i32,
        "a failed reload does not unserve"
    );

    sql(
        &app.db,
        &["ALTER TABLE auto_learned_patterns_away RENAME TO auto_learned_patterns"],
    )
    .await;
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("recovers");
    let status = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.targets[0].last_error.is_empty());
    assert_eq!(status.targets[0].consecutive_failures, 0);
}

/// Against the legacy `pilotpros` table (no CHECK constraints), a row that breaks an invariant
/// does not hold up the first load: it is quarantined and named in status, every other row is
/// served and health turns SERVING; once the row is fixed, a reload serves it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_table_invalid_row_is_quarantined_until_fixed() {
    let db = TestDb::postgres().await;
    let url = db.url().to_owned();
    sql(&db, &[
        "CREATE SCHEMA pilotpros",
        &legacy_ddl("pilotpros", Legacy::Created),
        "INSERT INTO pilotpros.auto_learned_patterns (pattern, normalized_pattern, category, confidence, times_used, times_correct, accuracy, status) \
         VALUES ('Workflow attivi?', 'workflow attivi', 'workflow', 0.95, 10, 8, 0.8, 'approved'), \
                ('rotto', 'rotto', 'broken', 0.95, 1, 5, 0.5, 'approved')",
    ])
    .await;
    let mut config = hotplane::config::Config::for_database(&url);
    config.database_schema = "pilotpros".into();
    config.normalize_profile = hotplane::normalize::Profile::PilotPros;
    let mut app = TestApp::start(config, db).await;
    app.wait_ready().await;

    let m = served(&mut app, "Workflow attivi OGGI?")
        .await
        .expect("legacy row served");
    assert_eq!(m.category, "workflow");
    assert!(
        served(&mut app, "rotto").await.is_none(),
        "the invalid row is not served"
    );
    let t = crate::helpers::patterns_status(&app).await;
    assert!(t.last_error.is_empty() && t.failures_total == 0, "{t:?}");
    assert_eq!(t.quarantined_total, 1);
    assert_eq!(t.quarantined[0].pattern_id, 2);
    assert!(
        t.quarantined[0]
            .reason
            .contains("times_correct 5 exceeds times_used 1"),
        "{}",
        t.quarantined[0].reason
    );

    sql(
        &app.db,
        &["UPDATE pilotpros.auto_learned_patterns SET times_correct = 1 WHERE id = 2"],
    )
    .await;
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("reload");
    assert_eq!(
        served(&mut app, "rotto")
            .await
            .expect("fixed row served")
            .category,
        "broken"
    );
    assert_eq!(
        crate::helpers::patterns_status(&app)
            .await
            .quarantined_total,
        0
    );
}

both_backends!(
    direct_sql_changes_are_served_after_a_delta_reload,
    duplicates_resolve_to_the_best_row,
    failed_loads_keep_serving,
);

/// A hit-count flush that fails keeps the counts, reports the failure, never blocks matching,
/// and writes everything once the store is back.
async fn failed_hit_flushes_are_kept_and_retried(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let id = app
        .patterns
        .learn_pattern(crate::helpers::learn_req("conta anche dopo", "hits", 0.95))
        .await
        .expect("learn")
        .into_inner()
        .pattern
        .expect("row")
        .id;
    sql(
        &app.db,
        &["ALTER TABLE auto_learned_patterns RENAME TO auto_learned_patterns_away"],
    )
    .await;
    for _ in 0..4 {
        assert!(
            served(&mut app, "conta anche dopo").await.is_some(),
            "matching never blocks"
        );
    }
    let reload = app.reload.clone();
    let store = crate::helpers::eventually("a failed hit flush to be reported", || {
        let mut reload = reload.clone();
        async move {
            let s = reload
                .get_status(pb::GetStatusRequest {})
                .await
                .ok()?
                .into_inner()
                .store?;
            (s.hit_flush_failures > 0).then_some(s)
        }
    })
    .await;
    assert_eq!(store.hits_pending, 4, "the counts are kept for the retry");
    assert!(!store.hit_flush_last_error.is_empty());

    sql(
        &app.db,
        &["ALTER TABLE auto_learned_patterns_away RENAME TO auto_learned_patterns"],
    )
    .await;
    let patterns = app.patterns.clone();
    crate::helpers::eventually("the kept hits to reach the store", || {
        let mut patterns = patterns.clone();
        async move {
            let p = patterns
                .get_pattern(pb::GetPatternRequest {
                    id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            (p.pattern?.times_used == 4).then_some(())
        }
    })
    .await;
    let s = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let store = s.store.expect("store");
    assert_eq!(store.hits_pending, 0);
    assert!(
        store.hit_flush_last_error.is_empty(),
        "a success clears the error"
    );
}

both_backends!(failed_hit_flushes_are_kept_and_retried);

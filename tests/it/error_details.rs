//! The structured details of the errors a client may act on, decoded from real server answers
//! as a client does (tonic-types `StatusExt`): one test per `ErrorInfo` reason a client can
//! meet, each asserting the code, the reason and domain, the metadata the proto documents, and
//! the reason's other details (ResourceInfo, PreconditionFailure, RetryInfo).

use std::{collections::HashMap, time::Duration};

use hotplane::pb;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{
    db::TestDb,
    helpers::{Backend, TestApp, learn_req, match_req, reload_req, sql},
    proxy::Proxy,
};

/// The ErrorInfo of `err`, checked for `code`, `reason` and the hotplane domain; its metadata.
fn error_info(err: &Status, code: Code, reason: &str) -> HashMap<String, String> {
    assert_eq!(err.code(), code, "{err:?}");
    let details = err.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {err:?}"));
    assert_eq!(info.reason, reason, "{err:?}");
    assert_eq!(info.domain, "hotplane.dev");
    info.metadata.clone()
}

/// The ResourceInfo of `err`: its type and name.
fn resource(err: &Status) -> (String, String) {
    let details = err.get_error_details();
    let r = details.resource_info().expect("a ResourceInfo");
    (r.resource_type.clone(), r.resource_name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_behind_says_which_generation_is_served() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let served = app.engine.current().number;
    let err = app
        .patterns
        .match_pattern(pb::MatchPatternRequest {
            min_generation: served + 5,
            ..match_req("qualunque cosa")
        })
        .await
        .expect_err("ahead of this replica");
    let meta = error_info(&err, Code::FailedPrecondition, "GENERATION_BEHIND");
    assert_eq!(meta["served_generation"], served.to_string());
    assert_eq!(meta["min_generation"], (served + 5).to_string());
    let details = err.get_error_details();
    let violation = &details
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations[0];
    assert_eq!(
        (violation.r#type.as_str(), violation.subject.as_str()),
        ("GENERATION", "min_generation")
    );
    assert!(details.retry_info().is_none(), "not an UNAVAILABLE");
    // The batch answers the same way.
    let err = app
        .patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: vec!["a".into(), "b".into()],
            min_generation: served + 1,
            ..Default::default()
        })
        .await
        .expect_err("ahead of this replica");
    let meta = error_info(&err, Code::FailedPrecondition, "GENERATION_BEHIND");
    assert_eq!(meta["served_generation"], served.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_not_found_names_the_pattern() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let get = app
        .patterns
        .get_pattern(pb::GetPatternRequest {
            id: 424_242,
            ..Default::default()
        })
        .await
        .expect_err("no such row");
    let delete = app
        .patterns
        .delete_pattern(pb::DeletePatternRequest {
            id: 424_243,
            reason: "test".into(),
        })
        .await
        .expect_err("no such row");
    let reload = app
        .reload
        .reload(reload_req(false, Some(424_244)))
        .await
        .expect_err("no such row in the store");
    for (err, id) in [(get, 424_242), (delete, 424_243), (reload, 424_244)] {
        let meta = error_info(&err, Code::NotFound, "PATTERN_NOT_FOUND");
        assert_eq!(meta["pattern_id"], id.to_string());
        assert_eq!(resource(&err), ("pattern".into(), id.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_not_retained_lists_what_is() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    // Two served writes: two generations after the first load, the older ones retained.
    for q in ["prima riga", "seconda riga"] {
        let id = app
            .patterns
            .learn_pattern(learn_req(q, "cat", 0.95))
            .await
            .expect("learn")
            .into_inner()
            .pattern
            .expect("row")
            .id;
        app.patterns
            .approve_pattern(pb::ApprovePatternRequest {
                id,
                reason: "test".into(),
                ..Default::default()
            })
            .await
            .expect("approve");
    }
    let status = crate::helpers::patterns_status(&app).await;
    let retained: Vec<String> = status
        .retained
        .iter()
        .map(|g| g.generation.to_string())
        .collect();
    assert!(!retained.is_empty(), "{status:?}");
    let err = app
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            to_generation: 999,
            reason: "test".into(),
            ..Default::default()
        })
        .await
        .expect_err("not retained");
    let meta = error_info(&err, Code::NotFound, "GENERATION_NOT_RETAINED");
    assert_eq!(meta["requested_generation"], "999");
    assert_eq!(meta["retained_generations"], retained.join(","));
    assert_eq!(resource(&err), ("generation".into(), "999".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_unavailable_carries_retry_info() {
    let db = TestDb::postgres().await;
    let mut proxy = Proxy::postgres(db.url()).await;
    let mut config = hotplane::config::Config::for_database(&proxy.url);
    config.database_acquire_timeout = Duration::from_secs(1);
    let mut app = TestApp::start(config, db).await;
    app.wait_ready().await;
    proxy.cut().await;
    let err = app
        .patterns
        .get_pattern(pb::GetPatternRequest {
            id: 1,
            ..Default::default()
        })
        .await
        .expect_err("the database is gone");
    error_info(&err, Code::Unavailable, "STORE_UNAVAILABLE");
    let retry = err.get_error_details();
    let delay = retry.retry_info().expect("RetryInfo").retry_delay;
    assert_eq!(delay, Some(Duration::from_secs(1)));
    // A reload meets the same outage.
    let err = app
        .reload
        .reload(reload_req(true, None))
        .await
        .expect_err("the database is gone");
    error_info(&err, Code::Unavailable, "STORE_UNAVAILABLE");
    assert!(err.get_error_details().retry_info().is_some());
    proxy.restore().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failed_is_permanent() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    sql(
        &app.db,
        &["ALTER TABLE auto_learned_patterns RENAME TO auto_learned_patterns_away"],
    )
    .await;
    let err = app
        .reload
        .reload(reload_req(true, None))
        .await
        .expect_err("no table");
    error_info(&err, Code::FailedPrecondition, "STORE_FAILED");
    assert!(err.get_error_details().retry_info().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_refused_when_another_row_holds_the_value() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    app.patterns
        .learn_pattern(learn_req("la prima della categoria", "unica", 0.95))
        .await
        .expect("learn");
    sql(
        &app.db,
        &["CREATE UNIQUE INDEX one_per_category ON auto_learned_patterns (category)"],
    )
    .await;
    let err = app
        .patterns
        .learn_pattern(learn_req("la seconda della categoria", "unica", 0.95))
        .await
        .expect_err("unique category");
    error_info(&err, Code::FailedPrecondition, "STORE_REFUSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_swap_failed_names_the_stage() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.database_acquire_timeout = Duration::from_secs(1);
    })
    .await;
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Store.into(),
            database_url: "postgres://postgres@127.0.0.1:1/nowhere".into(),
            reason: "test".into(),
            ..Default::default()
        })
        .await
        .expect_err("unreachable");
    let meta = error_info(&err, Code::FailedPrecondition, "STORE_SWAP_FAILED");
    assert_eq!(meta["stage"], "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_not_configured_for_a_broadcast() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            broadcast: true,
            ..reload_req(false, None)
        })
        .await
        .expect_err("no bus");
    error_info(&err, Code::FailedPrecondition, "BUS_NOT_CONFIGURED");
    // A broadcast rollback and a bus swap need it too.
    let err = app
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            broadcast: true,
            ..Default::default()
        })
        .await
        .expect_err("no bus");
    error_info(&err, Code::FailedPrecondition, "BUS_NOT_CONFIGURED");
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Bus.into(),
            ..Default::default()
        })
        .await
        .expect_err("no bus to swap");
    error_info(&err, Code::FailedPrecondition, "BUS_NOT_CONFIGURED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_rejected_says_why() {
    // Started without --config: there is no file to re-read.
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Config.into(),
            ..Default::default()
        })
        .await
        .expect_err("no config file");
    let meta = error_info(&err, Code::FailedPrecondition, "CONFIG_REJECTED");
    assert_eq!(meta["cause"], "no_config_file");

    // A config file that is gone when the reload reads it.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hotplane.toml");
    std::fs::write(&path, "[poll]\ninterval = \"30s\"\n").expect("write config");
    let mut app =
        TestApp::spawn_with(Backend::Sqlite, |c| c.config_file = Some(path.clone())).await;
    std::fs::remove_file(&path).expect("remove config");
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Config.into(),
            ..Default::default()
        })
        .await
        .expect_err("the file is gone");
    let meta = error_info(&err, Code::FailedPrecondition, "CONFIG_REJECTED");
    assert_eq!(meta["cause"], "unreadable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_too_large_gives_the_limit() {
    const LIMIT: usize = 64 * 1024; // the smallest --max-response-bytes
    let mut app = TestApp::spawn_with(Backend::Sqlite, |c| c.max_response_bytes = LIMIT).await;
    let blob = "x".repeat(15_000);
    app.patterns
        .learn_pattern(pb::LearnPatternRequest {
            metadata_json: format!(r#"{{"blob":"{blob}"}}"#),
            ..learn_req("una risposta enorme", "big", 0.95)
        })
        .await
        .expect("learn");
    for as_json in [false, true] {
        let err = app
            .patterns
            .batch_match_patterns(pb::BatchMatchPatternsRequest {
                queries: vec!["una risposta enorme".into(); 10],
                metadata_as_json: as_json,
                ..Default::default()
            })
            .await
            .expect_err("over the limit");
        let meta = error_info(&err, Code::ResourceExhausted, "RESPONSE_TOO_LARGE");
        assert_eq!(meta["max_response_bytes"], LIMIT.to_string());
        let at_least: usize = meta["answer_bytes"].parse().expect("decimal");
        assert!(at_least > LIMIT, "{meta:?}");
        assert!(err.get_error_details().retry_info().is_none());
    }
}

/// The refusals made before any handler runs carry their reason too: a draining replica's
/// UNAVAILABLE (with RetryInfo), the write rate limit (RetryInfo: when the next call is
/// allowed) and the per-caller WatchStatus stream limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_handler_carry_their_reason() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.admin_rate = 0.001;
        c.auth.admin_burst = 1;
        c.watch_max_streams_per_caller = 1;
    })
    .await;
    // One stream is allowed; the second is refused while the first is open.
    let _first = app
        .reload
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect("the first stream");
    let err = app
        .reload
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect_err("a second stream");
    let meta = error_info(&err, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    assert_eq!(meta["limit"], "1");

    // The burst of one state-changing call is spent by the first reload.
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("within the burst");
    let err = app
        .reload
        .reload(reload_req(false, None))
        .await
        .expect_err("past the rate");
    error_info(&err, Code::ResourceExhausted, "RATE_LIMITED");
    let retry = err
        .get_error_details()
        .retry_info()
        .expect("RetryInfo")
        .retry_delay;
    assert!(retry.is_some_and(|d| d > Duration::ZERO), "{retry:?}");

    // Draining refuses new work with DRAINING (on a replica whose rate bucket is full).
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    app.drain
        .start_drain(pb::StartDrainRequest::default())
        .await
        .expect("drain");
    let err = app
        .patterns
        .match_pattern(match_req("qualunque"))
        .await
        .expect_err("draining");
    error_info(&err, Code::Unavailable, "DRAINING");
    assert!(err.get_error_details().retry_info().is_some(), "{err:?}");
}

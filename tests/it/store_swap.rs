//! Reload(TARGET_STORE): a blue/green swap of the database pool under concurrent load.

use hotplane::{
    model::{NewPattern, PatternStatus},
    pb,
};
use tonic::Code;

use crate::{
    db::TestDb,
    helpers::{Backend, TestApp, learn_req, patterns_status, served},
    load::Load,
};

fn store_reload(url: &str) -> pb::ReloadRequest {
    pb::ReloadRequest {
        target: pb::Target::Store.into(),
        database_url: url.into(),
        reason: "move database".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_swap_under_load_drops_no_request_and_failures_keep_the_old_store() {
    // A short acquire timeout: the unreachable store below fails in 1 s, not 5. The writer
    // learns in a loop on purpose: the per-caller rate limit is off (see auth.rs).
    let mut app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.database_acquire_timeout = std::time::Duration::from_secs(1);
        c.auth.admin_rate = 0.0;
    })
    .await;
    app.patterns
        .learn_pattern(learn_req("dal database blu", "blue", 0.95))
        .await
        .expect("learn");
    let green = TestDb::postgres().await;
    let green_store = green.store().await;
    green_store
        .learn(&NewPattern {
            pattern: "dal database verde".into(),
            normalized_pattern: "dal database verde".into(),
            category: "green".into(),
            confidence: 0.95,
            metadata: serde_json::Value::Null,
            created_by: "test".into(),
            initial_status: PatternStatus::Approved,
        })
        .await
        .expect("seed green");
    green_store.close().await;

    // Concurrent readers and a writer run through the swap: requests succeed before it begins
    // and after it returned (so the load really spans it), and every one of them succeeds.
    let load = Load::start(&app, 3, "dal database blu", "scritto durante lo scambio");
    let before = patterns_status(&app).await.current.expect("gen").generation;
    let mut client = app.reload.clone();
    let r = load
        .around(20, client.reload(store_reload(green.url())))
        .await
        .expect("swap")
        .into_inner();
    assert_eq!(r.target, pb::Target::Store as i32);
    assert!(r.generation_after > before && r.changed);
    assert_eq!(r.mode, pb::LoadMode::Full as i32);
    load.stop().await.assert_none_failed();
    assert!(served(&mut app, "dal database verde").await.is_some());
    assert!(served(&mut app, "dal database blu").await.is_none());
    // New writes go to the green database.
    app.patterns
        .learn_pattern(learn_req("dopo lo scambio", "after", 0.95))
        .await
        .expect("learn");
    let green_sql = green.client().await;
    assert_eq!(
        green_sql
            .int("SELECT count(*) FROM auto_learned_patterns WHERE pattern = 'dopo lo scambio'")
            .await,
        1
    );

    // A store that cannot be reached, or an unsupported URL: refused, green keeps serving.
    let err = app
        .reload
        .reload(store_reload("postgres://postgres@127.0.0.1:1/nowhere"))
        .await
        .expect_err("unreachable");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("current store keeps serving"),
        "{}",
        err.message()
    );
    let err = app
        .reload
        .reload(store_reload("mysql://x/y"))
        .await
        .expect_err("unsupported");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(served(&mut app, "dal database verde").await.is_some());
    let status = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let url = status.store.expect("store").url;
    assert!(
        url.ends_with(green.url().rsplit('/').next().expect("db name")),
        "{url}"
    );
}

async fn store_status(app: &TestApp) -> pb::StoreStatus {
    crate::helpers::status(app)
        .await
        .store
        .expect("store status")
}

/// GetStatus describes the store that serves, however it got there: a Reload(TARGET_STORE)
/// from SQLite to PostgreSQL shows PostgreSQL's schema, and a swap made through the engine
/// (embedders, tests) shows the new URL too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_describes_the_store_that_serves_after_any_swap() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.database_schema = "hp_swap".into()).await;
    let s = store_status(&app).await;
    assert_eq!((s.backend.as_str(), s.schema.as_str()), ("sqlite", ""));

    let pg = TestDb::postgres().await;
    app.reload
        .clone()
        .reload(store_reload(pg.url()))
        .await
        .expect("swap to postgres");
    let s = store_status(&app).await;
    assert_eq!(s.backend, "postgres");
    assert_eq!(s.schema, "hp_swap", "the schema of the store now serving");
    let pg_name = pg.url().rsplit('/').next().expect("db name");
    assert!(s.url.ends_with(pg_name), "{}", s.url);

    // Back to a SQLite file, through the engine itself.
    let sqlite = TestDb::sqlite().await;
    app.engine
        .swap_store(
            &sqlite.options_in(""),
            "back to sqlite".into(),
            hotplane::audit::Origin::of_source(hotplane::audit::Source::Grpc),
        )
        .await
        .expect("swap through the engine");
    let s = store_status(&app).await;
    assert_eq!((s.backend.as_str(), s.schema.as_str()), ("sqlite", ""));
    assert!(!s.url.contains(pg_name), "{}", s.url);
    let sqlite_name = sqlite.url().rsplit('/').next().expect("file name");
    assert!(s.url.ends_with(sqlite_name), "{} vs {sqlite_name}", s.url);
}

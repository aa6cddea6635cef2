//! Drain and graceful shutdown: health goes NOT_SERVING, new work is refused with UNAVAILABLE,
//! running work finishes — over gRPC and with a real SIGTERM to a real process.

use std::time::Duration;

use hotplane::pb::{self, drain_client::DrainClient, patterns_client::PatternsClient};
use sqlx::{Connection, Executor, PgConnection};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::{
    db::TestDb,
    helpers::{Backend, TestApp, eventually, learn_req, match_req},
};

const LEARN: &str = "/hotplane.v1.Patterns/LearnPattern";

/// Holds an exclusive lock on the patterns table, so a write blocks until it is released.
async fn lock_table(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    conn.execute("BEGIN").await.expect("begin");
    conn.execute("LOCK TABLE auto_learned_patterns IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    conn
}

async fn health(client: &mut HealthClient<Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

async fn wait_in_flight(drain: &DrainClient<Channel>, n: u32) {
    eventually("the blocked write to be in flight", || {
        let mut drain = drain.clone();
        async move {
            let s = drain
                .get_drain_status(pb::GetDrainStatusRequest {})
                .await
                .ok()?;
            (s.into_inner().status?.in_flight_requests == n).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_work_and_waits_for_running_work() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut drain = DrainClient::new(channel);
    app.patterns
        .learn_pattern(learn_req("gia servito", "x", 0.95))
        .await
        .expect("learn");

    let mut lock = lock_table(app.db.url()).await;
    let mut writer = app.patterns.clone();
    let running = tokio::spawn(async move {
        writer
            .learn_pattern(learn_req("scritto durante il drain", "x", 0.95))
            .await
    });
    wait_in_flight(&drain, 1).await;

    // Waiting with a short grace reports what is still running.
    let r = drain
        .start_drain(pb::StartDrainRequest {
            reason: "deploy".into(),
            grace: Some(prost_types::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
            wait: true,
        })
        .await
        .expect("start drain")
        .into_inner();
    assert!(!r.completed);
    assert_eq!(r.still_running, vec![LEARN.to_owned()]);
    let status = r.status.expect("status");
    assert!(status.draining && status.reason == "deploy" && status.since.is_some());
    assert_eq!(status.in_flight_requests, 1);

    // Out of rotation: health says so, new work is refused with a retry hint, status still answers.
    for service in ["", "hotplane.v1.Patterns"] {
        assert_eq!(
            health(&mut app.health, service).await,
            ServingStatus::NotServing as i32
        );
    }
    let refused = app
        .patterns
        .match_pattern(match_req("gia servito"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.get_error_details().retry_info().is_some(),
        "carries RetryInfo"
    );
    let s = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(s.drain.expect("drain").draining);

    // The running write finishes and succeeds once the database lets it.
    lock.execute("ROLLBACK").await.expect("unlock");
    let learned = running
        .await
        .expect("task")
        .expect("the accepted request succeeds");
    assert!(learned.into_inner().created);
    let r = drain
        .start_drain(pb::StartDrainRequest {
            wait: true,
            ..Default::default()
        })
        .await
        .expect("wait")
        .into_inner();
    assert!(r.completed && r.still_running.is_empty());
    assert_eq!(r.status.expect("status").in_flight_requests, 0);

    // StopDrain takes work again.
    let stopped = drain
        .stop_drain(pb::StopDrainRequest {})
        .await
        .expect("stop")
        .into_inner();
    assert!(!stopped.status.expect("status").draining);
    assert_eq!(
        health(&mut app.health, "").await,
        ServingStatus::Serving as i32
    );
    assert!(
        app.patterns
            .match_pattern(match_req("scritto durante il drain"))
            .await
            .expect("match")
            .into_inner()
            .matched
    );
}

/// A real process, a real SIGTERM while a write is running: the write succeeds, the process
/// goes NOT_SERVING at once, refuses new work, and exits 0 once the write is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_requests_then_exits_cleanly() {
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = crate::binary::start(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            db.url(),
            "--shutdown-grace",
            "30s",
        ],
    )
    .await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let health_client = HealthClient::new(channel.clone());
    let mut patterns = PatternsClient::new(channel.clone());
    let drain = DrainClient::new(channel.clone());
    eventually("SERVING", || {
        let mut h = health_client.clone();
        async move { (health(&mut h, "").await == ServingStatus::Serving as i32).then_some(()) }
    })
    .await;

    let mut lock = lock_table(db.url()).await;
    let mut writer = patterns.clone();
    let running = tokio::spawn(async move {
        writer
            .learn_pattern(learn_req("scritto durante sigterm", "x", 0.95))
            .await
    });
    wait_in_flight(&drain, 1).await;

    crate::helpers::send_signal(child.id().expect("pid"), rustix::process::Signal::TERM);
    eventually("NOT_SERVING after SIGTERM", || {
        let mut h = health_client.clone();
        async move { (health(&mut h, "").await == ServingStatus::NotServing as i32).then_some(()) }
    })
    .await;
    let refused = patterns
        .match_pattern(match_req("x y z"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running while work is in flight"
    );

    lock.execute("ROLLBACK").await.expect("unlock");
    let learned = running
        .await
        .expect("task")
        .expect("the accepted request succeeds");
    assert!(learned.into_inner().created);
    drop((health_client, patterns, drain, channel));
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits before the deadline")
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
    let client = db.client().await;
    assert_eq!(
        client.int("SELECT count(*) FROM auto_learned_patterns WHERE pattern = 'scritto durante sigterm'").await,
        1
    );
}

/// Shutdown during a database outage ends within the grace: the audit writer, which would
/// retry its queue against the dead database (each attempt waiting for a connection), and the
/// store's close are bounded like every other wait on the shutdown path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_database_outage_is_bounded_by_the_grace() {
    let db = TestDb::postgres().await;
    let mut proxy = crate::proxy::Proxy::postgres(db.url()).await;
    let mut config = hotplane::config::Config::for_database(&proxy.url);
    config.shutdown_delay = Duration::ZERO;
    config.shutdown_grace = Duration::from_secs(1);
    let app = TestApp::start(config, db).await;
    app.wait_ready().await;
    proxy.cut().await;
    // Audited changes made during the outage: the drains are applied, their audit rows wait
    // for a database that does not come back.
    drain_and_resume(&app, &["outage one", "outage two"]).await;
    tokio::time::timeout(crate::helpers::DEADLINE, app.stop())
        .await
        .expect("shutdown ended within the deadline, not after the audit writer's retries")
        .expect("a clean stop");
}

/// Starts and stops a drain once per reason: audited changes that need no database.
pub async fn drain_and_resume(app: &TestApp, reasons: &[&str]) {
    let mut drain = app.drain.clone();
    for reason in reasons {
        drain
            .start_drain(pb::StartDrainRequest {
                reason: (*reason).into(),
                ..Default::default()
            })
            .await
            .expect("a drain needs no database");
        drain
            .stop_drain(pb::StopDrainRequest::default())
            .await
            .expect("stop drain");
    }
}

//! Liveness apart from readiness: the `liveness` health name stays SERVING while the replica
//! drains (readiness goes NOT_SERVING), and goes NOT_SERVING only when the engine is wedged (a
//! load running past `--liveness-load-timeout`), back to SERVING once it makes progress.

use std::time::Duration;

use hotplane::pb;
use sqlx::{Connection, Executor, PgConnection};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::helpers::{Backend, DEADLINE, TestApp, reload_req};

const LIVENESS: &str = "liveness";

async fn status_of(app: &TestApp, service: &str) -> ServingStatus {
    let r = app
        .health
        .clone()
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner();
    ServingStatus::try_from(r.status).expect("a known status")
}

/// Waits on the health Watch stream of `service` until it reports `want`.
async fn wait_for(app: &TestApp, service: &str, want: ServingStatus) {
    let mut stream = app
        .health
        .clone()
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health watch")
        .into_inner();
    tokio::time::timeout(DEADLINE, async {
        while let Some(m) = stream.message().await.expect("health stream") {
            if m.status == want as i32 {
                return;
            }
        }
        panic!("the health stream of {service:?} ended");
    })
    .await
    .unwrap_or_else(|_| panic!("{service:?} did not become {want:?}"));
}

/// Draining takes readiness down and leaves liveness up: a liveness probe must not restart a
/// replica that is being taken out of rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_takes_readiness_down_and_leaves_liveness_up() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(status_of(&app, LIVENESS).await, ServingStatus::Serving);
    app.drain
        .clone()
        .start_drain(pb::StartDrainRequest {
            reason: "liveness test".into(),
            ..Default::default()
        })
        .await
        .expect("drain");
    wait_for(&app, "", ServingStatus::NotServing).await;
    assert_eq!(
        status_of(&app, "hotplane.v1.Patterns").await,
        ServingStatus::NotServing
    );
    assert_eq!(status_of(&app, LIVENESS).await, ServingStatus::Serving);
}

/// A load stuck behind a lock another client holds, past the limit, is a wedged engine:
/// liveness goes NOT_SERVING while readiness stays SERVING (the last good generation serves);
/// once the lock goes and the load finishes, liveness is SERVING again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_stuck_past_the_limit_takes_liveness_down_until_it_finishes() {
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.liveness_load_timeout = Duration::from_millis(400);
    })
    .await;
    let mut locker = PgConnection::connect(app.db.url()).await.expect("connects");
    locker.execute("BEGIN").await.expect("begin");
    locker
        .execute("LOCK TABLE auto_learned_patterns IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut reload = app.reload.clone();
    let stuck = tokio::spawn(async move { reload.reload(reload_req(true, None)).await });

    wait_for(&app, LIVENESS, ServingStatus::NotServing).await;
    assert_eq!(status_of(&app, "").await, ServingStatus::Serving);

    locker.execute("ROLLBACK").await.expect("unlock");
    stuck
        .await
        .expect("no panic")
        .expect("the load finishes once the lock is gone");
    wait_for(&app, LIVENESS, ServingStatus::Serving).await;
}

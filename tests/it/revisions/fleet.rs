//! `Reload{broadcast, wait_for_fleet}` on three replicas, where replica B has loaded a write
//! with a higher transaction id before a lower one commits: B's store revision is already the
//! highest the store has, yet B has not read the late commit, so the wait must not count it as
//! converged until it serves the change.

use std::{sync::Arc, time::Duration};

use hotplane::{config::Config, pb};

use super::{begin_early, connect, exec};
use crate::{
    bus::{bus_config, channel, redis_url, start, status, wait_served},
    db::TestDb,
    helpers::{TestApp, eventually, learn_req, reload_req, served},
};

fn fleet_config(db: &TestDb, ch: &str) -> Config {
    let mut c = bus_config(db, &redis_url(), ch);
    c.fleet_heartbeat = Duration::from_millis(100);
    c.fleet_ttl = Duration::from_secs(3);
    c
}

fn broadcast(wait: Duration) -> pb::ReloadRequest {
    pb::ReloadRequest {
        broadcast: true,
        wait_for_fleet: Some(prost_types::Duration {
            seconds: wait.as_secs() as i64,
            nanos: wait.subsec_nanos() as i32,
        }),
        ..reload_req(false, None)
    }
}

async fn members(app: &TestApp) -> usize {
    status(app).await.fleet.map_or(0, |f| f.members.len())
}

const TEXT: &str = "fleet late commit row";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_fleet_wait_converges_only_when_every_replica_read_the_late_commit() {
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:revisions-fleet");
    let mut a = start(fleet_config(&db, &ch), &db).await;
    let mut b = start(fleet_config(&db, &ch), &db).await;
    let mut c = start(fleet_config(&db, &ch), &db).await;
    let r = a
        .patterns
        .learn_pattern(learn_req(TEXT, "ops", 0.9))
        .await
        .expect("learn")
        .into_inner()
        .pattern
        .expect("row");
    for app in [&mut a, &mut b, &mut c] {
        wait_served(app, TEXT).await;
    }
    eventually("three members", || async {
        (members(&a).await == 3).then_some(())
    })
    .await;

    // The late transaction takes the lower id; another client updates R (higher id), and B
    // alone reads that update.
    let mut late = connect(&a).await;
    let mut other = connect(&a).await;
    begin_early(&mut late).await;
    exec(
        &mut other,
        &format!(
            "UPDATE auto_learned_patterns SET confidence = 0.97 WHERE id = {}",
            r.id
        ),
    )
    .await;
    b.reload
        .reload(reload_req(false, None))
        .await
        .expect("B's delta");
    assert_eq!(served(&mut b, TEXT).await.expect("served").confidence, 0.97);
    let b_revision = b.engine.current().store_revision;
    // B is held where it is: pinned to the content it serves (a rollback to it), so it cannot
    // read the late commit before the wait decides.
    let hash = b.engine.current().snapshot.content_hash();
    b.engine
        .rollback_to_hash(
            &hash,
            "test: hold B".into(),
            hotplane::audit::Origin::of_source(hotplane::audit::Source::Bus),
        )
        .await
        .expect("pin B");

    exec(
        &mut late,
        &format!(
            "UPDATE auto_learned_patterns SET enabled = false WHERE id = {}",
            r.id
        ),
    )
    .await;
    exec(&mut late, "COMMIT").await;

    let held = a
        .reload
        .reload(broadcast(Duration::from_secs(2)))
        .await
        .expect("reload")
        .into_inner();
    let a_current = held.current.clone().expect("current");
    assert!(
        b_revision >= a_current.store_revision,
        "the late commit's lower id replaced R's higher one: by revision B ({b_revision}) \
         would count as past A ({})",
        a_current.store_revision
    );
    assert!(
        !held.fleet_converged,
        "B still serves the disabled row, so the fleet has not converged: {held:?}"
    );
    assert!(served(&mut b, TEXT).await.is_some(), "B still serves R");
    let b_member = held
        .fleet
        .iter()
        .find(|m| m.addr == b.addr.to_string())
        .expect("B is listed");
    assert!(!b_member.converged, "{b_member:?}");

    // An explicit reload on B unpins it (a full read); now the wait converges, and every
    // replica stops serving R by the time the answer arrives.
    b.reload
        .reload(reload_req(false, None))
        .await
        .expect("B unpins");
    let done = a
        .reload
        .reload(broadcast(Duration::from_secs(20)))
        .await
        .expect("reload")
        .into_inner();
    assert!(done.fleet_converged, "{done:?}");
    let position = done.current.expect("current").store_position;
    assert!(position.starts_with("pg:"), "{position}");
    assert!(
        done.fleet
            .iter()
            .all(|m| m.converged && !m.store_position.is_empty())
    );
    for app in [&mut a, &mut b, &mut c] {
        assert!(
            served(app, TEXT).await.is_none(),
            "R served at {}",
            app.addr
        );
    }
}

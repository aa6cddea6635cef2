//! The fleet: every instance heartbeats its state to Redis; GetStatus lists the live instances
//! and whether they agree, and Reload with broadcast and wait_for_fleet answers once every live
//! instance serves the new revision, or names the ones that did not.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hotplane::{config::Config, pb};
use tonic::Code;

use crate::{
    bus::{bus_config, channel, insert, redis_url, register_member, start, status},
    db::TestDb,
    helpers::{eventually, learn_req, reload_req, served, sql},
};

/// Bus settings with a quick heartbeat.
fn fleet_config(db: &TestDb, ch: &str) -> Config {
    let mut c = bus_config(db, &redis_url(), ch);
    c.fleet_heartbeat = Duration::from_millis(100);
    c.fleet_ttl = Duration::from_secs(3);
    c
}

async fn fleet(app: &crate::helpers::TestApp) -> pb::FleetStatus {
    status(app).await.fleet.expect("fleet status with a bus")
}

fn broadcast(wait: Option<Duration>) -> pb::ReloadRequest {
    pb::ReloadRequest {
        broadcast: true,
        wait_for_fleet: wait.map(|d| prost_types::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }),
        ..reload_req(false, None)
    }
}

/// GetStatus lists every live instance (address, generation, hash, revision) and whether they
/// agree; an instance that stops leaves the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_status_lists_the_live_fleet_and_whether_it_agrees() {
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:fleet-status");
    let mut a = start(fleet_config(&db, &ch), &db).await;
    let b = start(fleet_config(&db, &ch), &db).await;
    let c = start(fleet_config(&db, &ch), &db).await;
    let f = eventually("three members that agree", || async {
        let f = fleet(&a).await;
        (f.members.len() == 3 && f.converged).then_some(f)
    })
    .await;
    let mut ids: Vec<String> = Vec::new();
    for app in [&a, &b, &c] {
        ids.push(status(app).await.instance_id);
    }
    ids.sort();
    let listed: Vec<String> = f.members.iter().map(|m| m.instance_id.clone()).collect();
    assert_eq!(listed, ids);
    let me = f
        .members
        .iter()
        .find(|m| m.addr == a.addr.to_string())
        .expect("A lists itself at its address");
    assert!(me.converged && me.generation >= 1 && me.updated_at.is_some());

    // A change on A: the fleet disagrees for a moment, then agrees on the new content.
    a.patterns
        .learn_pattern(learn_req("quanti nodi nel cluster", "infra", 0.95))
        .await
        .expect("learn");
    let hash = status(&a).await.targets[0]
        .current
        .clone()
        .expect("current")
        .content_hash;
    eventually("every member on the new content", || async {
        let f = fleet(&a).await;
        (f.converged && f.members.iter().all(|m| m.content_hash == hash)).then_some(())
    })
    .await;

    c.stop().await.expect("C stops cleanly");
    eventually("C to leave the fleet", || async {
        (fleet(&a).await.members.len() == 2).then_some(())
    })
    .await;
    drop(b);
}

/// Reload with broadcast and wait_for_fleet returns once every instance serves the new
/// revision: a row inserted with SQL is served by all three when the call returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_broadcast_waits_for_every_instance() {
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:fleet-wait");
    let mut a = start(fleet_config(&db, &ch), &db).await;
    let mut b = start(fleet_config(&db, &ch), &db).await;
    let mut c = start(fleet_config(&db, &ch), &db).await;
    eventually("three members", || async {
        (fleet(&a).await.members.len() == 3).then_some(())
    })
    .await;

    sql(&db, &[&insert(2001, "aspetta la flotta")]).await;
    let r = a
        .reload
        .reload(broadcast(Some(Duration::from_secs(10))))
        .await
        .expect("reload")
        .into_inner();
    assert!(r.fleet_converged, "{r:?}");
    assert_eq!((r.publish_error.as_str(), r.fleet_error.as_str()), ("", ""));
    assert_eq!(r.fleet.len(), 3);
    let revision = r.current.expect("current").store_revision;
    assert!(
        r.fleet
            .iter()
            .all(|m| m.converged && m.store_revision == revision && !m.store_position.is_empty()),
        "{:?}",
        r.fleet
    );
    // No waiting here: the call returned when every instance served the row.
    for app in [&mut a, &mut b, &mut c] {
        assert!(served(app, "aspetta la flotta").await.is_some());
    }

    // wait_for_fleet needs broadcast, and a bounded duration.
    let mut bad = broadcast(Some(Duration::from_secs(1)));
    bad.broadcast = false;
    let err = a.reload.reload(bad).await.expect_err("needs broadcast");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = a
        .reload
        .reload(broadcast(Some(Duration::from_secs(301))))
        .await
        .expect_err("too long");
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// An instance that never reaches the revision (here a stale registry entry that keeps beating)
/// makes the wait end at its deadline, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_converge_is_named_when_the_wait_ends() {
    let db = Arc::new(TestDb::sqlite().await);
    let ch = channel("hotplane:fleet-lag");
    let mut a = start(fleet_config(&db, &ch), &db).await;
    let ghost = r#"{"instance_id":"ghost","addr":"10.0.0.9:50051","generation":1,
        "content_hash":"0","store_revision":-1,"item_count":0,"draining":false,
        "updated_at_ms":0}"#;
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    register_member(&ch, "ghost", ghost).await;

    sql(&db, &[&insert(4, "non converge")]).await;
    let started = Instant::now();
    let r = a
        .reload
        .reload(broadcast(Some(Duration::from_millis(300))))
        .await
        .expect("reload")
        .into_inner();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!r.fleet_converged);
    let lagging: Vec<&str> = r
        .fleet
        .iter()
        .filter(|m| !m.converged)
        .map(|m| m.instance_id.as_str())
        .collect();
    assert_eq!(lagging, ["ghost"]);
    assert_eq!(r.fleet.len(), 2, "the ghost and A itself");
    assert!(served(&mut a, "non converge").await.is_some());
    redis::cmd("DEL")
        .arg(format!("{ch}:fleet:ghost"))
        .query_async::<()>(&mut conn)
        .await
        .expect("remove the ghost");
}

/// WatchStatus announces fleet members joining and leaving, with their state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_status_announces_members_joining_and_leaving() {
    let db = Arc::new(TestDb::sqlite().await);
    let ch = channel("hotplane:fleet-events");
    let a = start(fleet_config(&db, &ch), &db).await;
    let mut events = a
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest {
            kinds: vec![
                pb::EventKind::FleetMemberJoined.into(),
                pb::EventKind::FleetMemberLeft.into(),
            ],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let db_b = Arc::new(TestDb::sqlite().await);
    let b = start(fleet_config(&db_b, &ch), &db_b).await;
    let b_id = status(&b).await.instance_id;
    let mut next_about_b = async || loop {
        let e = tokio::time::timeout(crate::helpers::DEADLINE, events.message())
            .await
            .expect("an event before the deadline")
            .expect("stream ok")
            .expect("stream open");
        if let Some(m) = &e.fleet_member
            && m.instance_id == b_id
        {
            return (e.kind(), m.addr.clone());
        }
    };
    assert_eq!(
        next_about_b().await,
        (pb::EventKind::FleetMemberJoined, b.addr.to_string())
    );
    b.stop().await.expect("B stops");
    assert_eq!(next_about_b().await.0, pb::EventKind::FleetMemberLeft);
}

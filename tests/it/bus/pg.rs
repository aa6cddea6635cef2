//! The PostgreSQL bus (`--bus postgres`): replicas on one database and no Redis at all. Rows
//! written with plain SQL are served everywhere through the store's NOTIFY trigger and each
//! replica's LISTEN connection, with no Reload, no publisher and the poll disabled; the LISTEN
//! connection comes back after being killed and catches up; the fleet is a table.

use std::{sync::Arc, time::Duration};

use hotplane::{
    bus::{PG_APPLICATION_NAME, PG_CHANNEL},
    config::{BusMode, Config},
    pb,
};
use sqlx::{Connection, Executor, PgConnection};

use crate::{
    bus::{insert, settle, wait_bus, wait_not_served, wait_served},
    db::TestDb,
    helpers::{TestApp, eventually, reload_req, sql, status},
};

/// PostgreSQL bus settings for tests: quick reconnects, pings and heartbeats, no poll, no Redis.
fn pg_config(db: &TestDb) -> Config {
    let mut c = Config::for_database(db.url());
    c.bus_mode = BusMode::Postgres;
    c.redis_url = None;
    c.poll_interval = Duration::ZERO;
    c.hit_flush_interval = Duration::from_millis(50);
    c.bus_reconnect_min = Duration::from_millis(50);
    c.bus_reconnect_max = Duration::from_millis(500);
    c.bus_ping_interval = Duration::from_millis(200);
    c.bus_timeout = Duration::from_secs(1);
    c.fleet_heartbeat = Duration::from_millis(100);
    c.fleet_ttl = Duration::from_secs(3);
    c
}

/// Starts a replica and waits until it serves and LISTENs (its catch-up settled).
async fn start(db: &Arc<TestDb>) -> TestApp {
    let app = TestApp::start(pg_config(db), Arc::clone(db)).await;
    app.wait_ready().await;
    wait_bus(&app, "the postgres bus to listen", |b| b.connected).await;
    settle(&app).await;
    app
}

/// The LISTEN connections of hotplane replicas on this database, by `pg_stat_activity`.
async fn listeners(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(PG_APPLICATION_NAME)
    .fetch_one(conn)
    .await
    .expect("pg_stat_activity")
}

/// Three replicas, no Redis: a plain SQL INSERT, UPDATE and DELETE are served (or stop being
/// served) on all three without any Reload; the status says what listens; the fleet table lists
/// the three, and a wait for the fleet converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_is_served_on_every_replica_without_redis_or_reload() {
    let db = Arc::new(TestDb::postgres().await);
    let mut a = start(&db).await;
    let mut b = start(&db).await;
    let mut c = start(&db).await;
    let st = status(&a).await.bus.expect("bus status");
    assert!(st.enabled && st.connected, "{st:?}");
    assert_eq!(
        (st.channel.as_str(), st.redis_url.as_str()),
        (PG_CHANNEL, "")
    );

    let mut conn = PgConnection::connect(db.url()).await.expect("connects");
    assert_eq!(listeners(&mut conn).await, 3, "one LISTEN connection each");
    let loads_before = a.engine.health().loads_total;

    sql(&db, &[&insert(7001, "riga da sql")]).await;
    for app in [&mut a, &mut b, &mut c] {
        assert_eq!(wait_served(app, "riga da sql").await.id, 7001);
        assert_eq!(app.engine.current().source, hotplane::engine::Source::Bus);
    }
    sql(
        &db,
        &["UPDATE auto_learned_patterns SET normalized_pattern = 'riga cambiata' WHERE id = 7001"],
    )
    .await;
    for app in [&mut a, &mut b, &mut c] {
        assert_eq!(wait_served(app, "riga cambiata").await.id, 7001);
    }
    sql(&db, &["DELETE FROM auto_learned_patterns WHERE id = 7001"]).await;
    for app in [&a, &b, &c] {
        wait_not_served(app, "riga cambiata").await;
    }
    let st = status(&a).await.bus.expect("bus status");
    assert!(
        st.messages_applied >= 3,
        "one notification per statement: {st:?}"
    );
    assert!(a.engine.health().loads_total > loads_before);

    // Hit counters are not served content: an UPDATE of them alone notifies nobody.
    sql(&db, &[&insert(7002, "contatori")]).await;
    wait_served(&mut a, "contatori").await;
    settle(&a).await;
    let received = status(&a).await.bus.expect("bus").messages_received;
    sql(
        &db,
        &["UPDATE auto_learned_patterns SET times_used = times_used + 1 WHERE id = 7002"],
    )
    .await;
    // A change after it is heard; had the counter update notified, it would be counted first.
    sql(&db, &[&insert(7003, "dopo i contatori")]).await;
    wait_served(&mut a, "dopo i contatori").await;
    let st = status(&a).await.bus.expect("bus");
    assert_eq!(st.messages_received, received + 1, "{st:?}");

    // The fleet: a table, listing every replica, and a wait for every one of them.
    let f = eventually("three members that agree", || async {
        let f = status(&a)
            .await
            .fleet
            .expect("fleet status with the postgres bus");
        (f.members.len() == 3 && f.converged).then_some(f)
    })
    .await;
    let mut ids = Vec::new();
    for app in [&a, &b, &c] {
        ids.push(status(app).await.instance_id);
    }
    ids.sort();
    let listed: Vec<String> = f.members.iter().map(|m| m.instance_id.clone()).collect();
    assert_eq!(listed, ids);
    sql(&db, &[&insert(7004, "aspetta la flotta pg")]).await;
    let r = a
        .reload
        .reload(pb::ReloadRequest {
            broadcast: true,
            wait_for_fleet: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
            ..reload_req(false, None)
        })
        .await
        .expect("reload")
        .into_inner();
    assert!(r.fleet_converged, "{r:?}");
    assert_eq!((r.publish_error.as_str(), r.fleet_error.as_str()), ("", ""));
    assert_eq!(r.fleet.len(), 3);
    for app in [&mut a, &mut b, &mut c] {
        assert_eq!(wait_served(app, "aspetta la flotta pg").await.id, 7004);
    }

    // A broadcast rollback needs the Redis bus: refused up front, naming why.
    let err = a
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            to_generation: 1,
            broadcast: true,
            ..Default::default()
        })
        .await
        .expect_err("no rollbacks on the postgres bus");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("PostgreSQL bus"),
        "{}",
        err.message()
    );

    c.stop().await.expect("C stops cleanly");
    eventually("C to leave the fleet", || async {
        let f = status(&a).await.fleet.expect("fleet");
        (f.members.len() == 2).then_some(())
    })
    .await;
    drop(b);
}

/// 10,000 single-row commits, each notifying on its own, cost far fewer loads than commits (the
/// requests coalesce in the engine as the Redis bus's do), and every row is served in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commits_coalesce_into_far_fewer_loads() {
    const COMMITS: i64 = 10_000;
    const WRITERS: i64 = 4;
    let db = Arc::new(TestDb::postgres().await);
    let app = start(&db).await;
    let before = app.engine.health();

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = db.url().to_owned();
        writers.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await.expect("writer connects");
            for i in (w..COMMITS).step_by(WRITERS as usize) {
                // One statement per commit (autocommit).
                conn.execute(sqlx::AssertSqlSafe(insert(
                    100_000 + i,
                    &format!("burst riga {i}"),
                )))
                .await
                .expect("insert");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let received = status(&app).await.bus.expect("bus").messages_received;
        let served = app.engine.current().snapshot.len() as i64;
        if received >= COMMITS as u64 && served == COMMITS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{received} notifications heard, {served} rows served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&app).await;
    assert_eq!(app.engine.current().snapshot.len() as i64, COMMITS);
    let after = app.engine.health();
    let loads = after.loads_total - before.loads_total;
    println!("{COMMITS} commits cost {loads} loads");
    // Loads follow the load rate, not the commit rate: each one reads every commit made while
    // the previous one ran.
    assert!(
        loads * 2 < COMMITS as u64,
        "{COMMITS} commits cost {loads} loads"
    );
    assert!(
        after.coalesced_total - before.coalesced_total >= COMMITS as u64 - loads,
        "every other notification joined a load: {after:?}"
    );
}

/// The LISTEN connection killed with `pg_terminate_backend` while the database accepts no new
/// connections: a row written meanwhile is not heard (nobody listens), and is served by the
/// catch-up once the replica LISTENs again; the status shows the loss and the reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_comes_back_and_catches_up() {
    let db = Arc::new(TestDb::postgres().await);
    let mut a = start(&db).await;
    let mut b = start(&db).await;
    // Opened first: the writer keeps working while new connections are refused.
    let mut writer = PgConnection::connect(db.url()).await.expect("connects");
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut writer)
        .await
        .expect("name");
    let mut admin = PgConnection::connect(&crate::db::admin_url())
        .await
        .expect("admin connects");
    let allow = |on: bool| format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {on}");

    admin
        .execute(sqlx::AssertSqlSafe(allow(false)))
        .await
        .expect("refuse new connections");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(PG_APPLICATION_NAME)
    .fetch_all(&mut writer)
    .await
    .expect("terminate");
    assert_eq!(killed, [true, true], "both listeners killed");
    for app in [&a, &b] {
        wait_bus(app, "the listener to be lost", |s| {
            !s.connected && !s.last_error.is_empty()
        })
        .await;
    }
    writer
        .execute(sqlx::AssertSqlSafe(insert(8001, "scritta al buio")))
        .await
        .expect("insert while nobody listens");
    let generation = a.engine.current().number;

    admin
        .execute(sqlx::AssertSqlSafe(allow(true)))
        .await
        .expect("accept connections again");
    for app in [&mut a, &mut b] {
        assert_eq!(wait_served(app, "scritta al buio").await.id, 8001);
        let st = wait_bus(app, "the listener to be back", |s| s.connected).await;
        assert!(st.reconnects >= 1, "{st:?}");
        // The loss, or a retry refused while the database accepted no connections.
        let kept = [
            "LISTEN connection lost",
            "not currently accepting connections",
        ];
        assert!(kept.iter().any(|e| st.last_error.contains(e)), "{st:?}");
    }
    assert!(a.engine.current().number > generation);
    assert_eq!(
        listeners(&mut writer).await,
        2,
        "each replica LISTENs again"
    );
}

/// `--bus postgres` needs a PostgreSQL store and no Redis URL: refused at start, naming the flag.
#[tokio::test]
async fn the_postgres_bus_is_refused_without_a_postgres_store() {
    let mut c = Config::for_database("sqlite://somewhere.db");
    c.bus_mode = BusMode::Postgres;
    let err = c
        .validate()
        .expect_err("a SQLite store cannot carry the bus");
    assert_eq!(err.field, "bus");
    assert!(err.reason.contains("PostgreSQL store"), "{}", err.reason);

    let mut c = Config::for_database("postgres://db/hotplane");
    c.bus_mode = BusMode::Postgres;
    c.redis_url = Some("redis://cache:6379".into());
    let err = c.validate().expect_err("both buses at once");
    assert_eq!(err.field, "bus");
    assert!(err.reason.contains("--redis-url"), "{}", err.reason);
    c.redis_url = None;
    c.validate().expect("a postgres store and no Redis");
}

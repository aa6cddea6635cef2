//! The Redis bus end to end: real Redis, real PostgreSQL (or SQLite where the store does not
//! matter), real gRPC. Each test uses its own channel on the shared Redis
//! (`HOTPLANE_TEST_REDIS_URL`); tests that stop Redis start a private `redis-server` on a free
//! port and never touch the shared one. No test sleeps to synchronise: each waits on the engine
//! or on `GetStatus`, with a deadline.
//!
//! The poll is disabled (`--poll-interval 0s`) except in the backstop test, so that whatever
//! converges here converged through the bus (or its catch-up).
//!
//! Here: messages (legacy, bad, signed, invalidate, bursts) and replicas converging.
//! `connection`: private redis-servers that stop, pause, want passwords or speak TLS.
//! `fleet`: heartbeats, fleet status and waiting for the fleet.
//! `flood`: memory given back to the system once a burst of messages is over.
//! `cluster`: Redis Cluster, a node killed under load.
//! `sentinel`: Redis Sentinel, the bus following a failover under load.
//! `swap`: `Reload(TARGET_BUS)`, blue/green swaps of the Redis connection under load.

mod broadcast;
mod cluster;
mod connection;
mod fleet;
mod flood;
mod frozen;
mod hash_scheme;
mod hostile;
mod pg;
mod reconnect;
mod sentinel;
mod swap;

use std::{sync::Arc, time::Duration};

use hotplane::{
    bus::Secret,
    config::Config,
    engine::{LoadMode, LoadRequest, Scope, Source},
    pb,
};
use tokio::process::Command;

use crate::{
    db::{TestDb, unique_suffix},
    helpers::{TestApp, eventually, learn_req, served, sql},
};

pub(crate) use hotplane_testkit::redis_url;

/// A test's own connection to a Redis process it started, with generous timeouts: the crate's
/// defaults (1 s to connect, 500 ms per reply) are shorter than a TLS handshake can take on a
/// loaded 2-core machine, where a check would then fail for no fault of the code under test.
pub(crate) async fn patient_conn(
    client: &redis::Client,
) -> Option<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()
}

pub(crate) fn channel(prefix: &str) -> String {
    format!("{prefix}:{}", unique_suffix())
}

/// Bus settings for tests: quick reconnects and PINGs, no poll.
pub(crate) fn bus_config(db: &TestDb, redis: &str, channel: &str) -> Config {
    let mut c = Config::for_database(db.url());
    c.hit_flush_interval = Duration::from_millis(50);
    c.redis_url = Some(redis.to_owned());
    c.bus_channel = channel.to_owned();
    c.poll_interval = Duration::ZERO;
    c.bus_reconnect_min = Duration::from_millis(50);
    c.bus_reconnect_max = Duration::from_millis(500);
    c.bus_ping_interval = Duration::from_millis(200);
    c.bus_timeout = Duration::from_secs(1);
    c
}

pub(crate) use crate::helpers::status;

/// Registers a fleet member `id` with its JSON `record` beside the real ones, as a replica's
/// heartbeat would (for a minute): a stand-in for a replica of another version or state.
pub(crate) async fn register_member(ch: &str, id: &str, record: &str) {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    redis::pipe()
        .cmd("SET")
        .arg(format!("{ch}:fleet:{id}"))
        .arg(record)
        .arg("PX")
        .arg(60_000)
        .ignore()
        .cmd("SADD")
        .arg(format!("{ch}:fleet"))
        .arg(id)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
        .expect("register the member");
}

pub(crate) async fn bus_status(app: &TestApp) -> pb::BusStatus {
    status(app).await.bus.expect("bus status")
}

/// Waits until the bus status satisfies `ok`, and returns it.
pub(crate) async fn wait_bus(
    app: &TestApp,
    what: &str,
    ok: impl Fn(&pb::BusStatus) -> bool,
) -> pb::BusStatus {
    eventually(what, || async {
        let b = bus_status(app).await;
        ok(&b).then_some(b)
    })
    .await
}

/// Waits until every request the engine has queued so far is served (e.g. the catch-up after
/// subscribing): a request pushed now joins their batch or a later one.
pub(crate) async fn settle(app: &TestApp) {
    app.engine
        .reload(
            LoadRequest {
                scope: Scope::Delta,
                source: Source::Grpc,
                reason: "test: settle".into(),
            },
            None,
        )
        .await
        .expect("settle");
}

/// Starts an app, waits for SERVING and for the bus subscription, then settles.
pub(crate) async fn start(config: Config, db: &Arc<TestDb>) -> TestApp {
    let app = TestApp::start(config, Arc::clone(db)).await;
    app.wait_ready().await;
    wait_bus(&app, "the bus to subscribe", |b| b.connected).await;
    settle(&app).await;
    app
}

pub(crate) async fn wait_served(app: &mut TestApp, query: &str) -> pb::MatchedPattern {
    let what = format!("{query:?} to be served");
    eventually(&what, || {
        let mut app = app.patterns.clone();
        async move {
            app.match_pattern(pb::MatchPatternRequest {
                query: query.into(),
                ..Default::default()
            })
            .await
            .expect("match")
            .into_inner()
            .pattern
        }
    })
    .await
}

pub(crate) async fn wait_not_served(app: &TestApp, query: &str) {
    let what = format!("{query:?} to stop being served");
    eventually(&what, || {
        let mut app = app.patterns.clone();
        async move {
            let r = app
                .match_pattern(pb::MatchPatternRequest {
                    query: query.into(),
                    ..Default::default()
                })
                .await
                .expect("match")
                .into_inner();
            (!r.matched).then_some(())
        }
    })
    .await
}

/// A served row written by "another service", with plain SQL.
pub(crate) fn insert(id: i64, normalized: &str) -> String {
    format!(
        "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, confidence, \
         times_used, times_correct, accuracy, created_by, enabled, status) VALUES \
         ({id}, 'raw {id}', '{normalized}', 'bus', 0.95, 0, 0, 0.5, 'manual', true, 'approved')"
    )
}

/// PUBLISHes with a client of our own; returns how many subscribers received it.
pub(crate) async fn publish(url: &str, channel: &str, payload: impl AsRef<[u8]>) -> i64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("test publisher connects to Redis");
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload.as_ref())
        .query_async(&mut conn)
        .await
        .expect("PUBLISH")
}

/// Runs `redis-cli` against `url`, as an operator would; returns its stdout.
async fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .await
        .expect("redis-cli runs (./scripts/test.sh installs it with redis-server)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The old system's publisher, unchanged, on its own channel name: a row inserted with SQL and a
/// `{"action":"reload","pattern_id":null}` make every subscribed replica serve it; with a
/// pattern_id, just that row is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_publisher_works_unchanged_on_a_configured_channel() {
    let db = Arc::new(TestDb::postgres().await);
    let url = redis_url();
    let ch = channel("pilotpros:patterns:reload");
    let mut a = start(bus_config(&db, &url, &ch), &db).await;
    let mut b = start(bus_config(&db, &url, &ch), &db).await;

    let numsub = redis_cli(&url, &["PUBSUB", "NUMSUB", &ch]).await;
    assert_eq!(
        numsub.split_whitespace().collect::<Vec<_>>(),
        [ch.as_str(), "2"],
        "both replicas are subscribed"
    );

    sql(&db, &[&insert(1001, "riga legacy uno")]).await;
    assert!(served(&mut a, "riga legacy uno").await.is_none());
    let receivers = redis_cli(
        &url,
        &["PUBLISH", &ch, r#"{"action":"reload","pattern_id":null}"#],
    )
    .await;
    assert_eq!(receivers.trim(), "2");
    for app in [&mut a, &mut b] {
        assert_eq!(wait_served(app, "riga legacy uno").await.id, 1001);
        assert_eq!(app.engine.current().source, Source::Bus);
    }

    sql(&db, &[&insert(1002, "riga legacy due")]).await;
    publish(&url, &ch, r#"{"action":"reload","pattern_id":1002}"#).await;
    for app in [&mut a, &mut b] {
        assert_eq!(wait_served(app, "riga legacy due").await.id, 1002);
        assert_eq!(app.engine.current().mode, LoadMode::Single);
    }
    let st = bus_status(&a).await;
    assert_eq!((st.messages_received, st.messages_applied), (2, 2));
    assert_eq!(st.channel, ch);
    assert!(st.rejected.values().all(|n| *n == 0), "{:?}", st.rejected);
}

/// Three replicas on one database and one channel: a pattern learned on A is served by B and C,
/// A skips its own event (one load for the learn, not two), and a disable on B reaches A and C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_converge_and_the_origin_does_not_reload_twice() {
    let db = Arc::new(TestDb::postgres().await);
    let (url, ch) = (redis_url(), channel("hotplane:fleet"));
    let mut a = start(bus_config(&db, &url, &ch), &db).await;
    let mut b = start(bus_config(&db, &url, &ch), &db).await;
    let mut c = start(bus_config(&db, &url, &ch), &db).await;
    let loads_before = a.engine.health().loads_total;

    let learned = a
        .patterns
        .learn_pattern(learn_req("quanti workflow sono attivi", "workflow", 0.95))
        .await
        .expect("learn")
        .into_inner();
    assert!(learned.served);
    assert_eq!(learned.publish_error, "", "announced on the bus");
    let id = learned.pattern.expect("row").id;
    for app in [&mut b, &mut c] {
        assert_eq!(wait_served(app, "quanti workflow sono attivi").await.id, id);
    }
    // A received its own event and skipped it: the learn cost A exactly one load.
    wait_bus(&a, "A to see its own event", |s| s.self_skipped == 1).await;
    settle(&a).await;
    assert_eq!(
        a.engine.health().loads_total,
        loads_before + 2,
        "one load for the learn, one for this test's settle; none for A's own event"
    );
    let sa = bus_status(&a).await;
    assert_eq!((sa.published, sa.messages_applied), (1, 0));
    assert_eq!(bus_status(&b).await.messages_applied, 1);

    let disabled = b
        .patterns
        .disable_pattern(pb::DisablePatternRequest {
            id,
            reason: "test".into(),
            ..Default::default()
        })
        .await
        .expect("disable")
        .into_inner();
    assert_eq!(disabled.publish_error, "");
    for app in [&a, &c] {
        wait_not_served(app, "quanti workflow sono attivi").await;
    }
}

/// Each kind of bad message is counted under its reason and changes nothing: no load, no new
/// generation, matches keep working. Our own event is skipped and counted apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_counted_by_reason_and_trigger_nothing() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:bad"));
    let mut app = start(bus_config(&db, &url, &ch), &db).await;
    app.patterns
        .learn_pattern(learn_req("stato dei server", "infra", 0.95))
        .await
        .expect("learn");
    // The learn's own announcement comes back first, and is skipped.
    let base = wait_bus(&app, "our own event", |s| s.self_skipped == 1)
        .await
        .messages_received;
    let instance_id = status(&app).await.instance_id;
    let (loads, generation) = (app.engine.health().loads_total, app.engine.current().number);

    let too_large = format!(r#"{{"action":"reload","pad":"{}"}}"#, "x".repeat(64 * 1024));
    let own = format!(r#"{{"action":"reload","pattern_id":1,"origin":"{instance_id}"}}"#);
    let table: Vec<(&str, &[u8])> = vec![
        ("too_large", too_large.as_bytes()),
        ("not_json", b"reload everything please"),
        ("not_json", b"\xff\xfe\x00"),
        ("not_object", b"[1,2,3]"),
        ("wrong_type", br#"{"action":"reload","pattern_id":"12"}"#),
        ("wrong_type", br#"{"action":"reload","ts":"yesterday"}"#),
        ("unknown_action", br#"{"action":"drop_table"}"#),
        ("unknown_action", br#"{"pattern_id":1}"#),
        (
            "missing_pattern_id",
            br#"{"action":"invalidate","pattern_id":null}"#,
        ),
        ("self", own.as_bytes()),
    ];
    for (i, (reason, payload)) in table.iter().enumerate() {
        assert_eq!(publish(&url, &ch, payload).await, 1, "{reason}");
        let received = base + (i + 1) as u64;
        wait_bus(&app, reason, |s| s.messages_received == received).await;
    }
    let st = bus_status(&app).await;
    for reason in [
        "too_large",
        "not_json",
        "not_object",
        "wrong_type",
        "unknown_action",
        "missing_pattern_id",
    ] {
        let expected = table.iter().filter(|(r, _)| *r == reason).count() as u64;
        assert_eq!(st.rejected[reason], expected, "{reason}: {:?}", st.rejected);
    }
    for reason in ["bad_signature", "unsigned", "stale", "replayed"] {
        assert_eq!(st.rejected[reason], 0, "{reason} is listed, at zero");
    }
    assert_eq!((st.self_skipped, st.messages_applied), (2, 0));
    assert!(st.connected, "still subscribed");
    assert_eq!(
        app.engine.health().loads_total,
        loads,
        "no load was triggered"
    );
    assert_eq!(app.engine.current().number, generation);
    assert!(served(&mut app, "stato dei server").await.is_some());
}

/// An `invalidate` stops serving a row at once; the next load that reads the row serves it
/// again. (Unsigned, it needs `--bus-allow-unsigned-rollback`; see `hostile`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_stops_serving_until_a_load_reads_the_row() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:invalidate"));
    let mut config = bus_config(&db, &url, &ch);
    config.bus_allow_unsigned_rollback = true;
    let mut app = start(config, &db).await;
    let id = app
        .patterns
        .learn_pattern(learn_req("fatture scadute", "billing", 0.95))
        .await
        .expect("learn")
        .into_inner()
        .pattern
        .expect("row")
        .id;
    // A delta moves the store cursor past the learn, so the next one does not read the row.
    settle(&app).await;
    publish(
        &url,
        &ch,
        format!(r#"{{"action":"invalidate","pattern_id":{id}}}"#),
    )
    .await;
    wait_not_served(&app, "fatture scadute").await;
    assert_eq!(app.engine.current().mode, LoadMode::Invalidate);
    // A delta of an unchanged store does not bring it back; a reload of the row does.
    settle(&app).await;
    assert!(served(&mut app, "fatture scadute").await.is_none());
    publish(
        &url,
        &ch,
        format!(r#"{{"action":"reload","pattern_id":{id}}}"#),
    )
    .await;
    assert_eq!(wait_served(&mut app, "fatture scadute").await.id, id);
}

/// The Python publisher in docs/bus.md (the ```python block that defines `bus_message`, run with
/// python3) produces the message for `fields`, signed when `secret` is given.
async fn python_message(fields: &str, secret: Option<&str>) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/bus.md"))
        .expect("docs/bus.md");
    let block = readme
        .split("```python\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(code, _)| code))
        .find(|code| code.contains("def bus_message("))
        .expect("docs/bus.md has a python block defining bus_message");
    let program = format!(
        "{block}\nimport json, sys\nprint(bus_message(json.loads(sys.argv[1]), *sys.argv[2:]))\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(program).arg(fields).args(secret);
    let out = cmd.output().await.expect("python3 runs");
    assert!(out.status.success(), "python3: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Signed mode, with messages signed the way docs/bus.md tells a Python publisher to: a valid
/// one is applied; forged, unsigned, stale and replayed ones are rejected under their reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mode_applies_valid_messages_and_rejects_the_rest() {
    const SECRET: &str = "s3cret for the bus tests";
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:signed"));
    let mut config = bus_config(&db, &url, &ch);
    config.reload_message_secret = Some(Secret::new(SECRET)); // the legacy variable's name
    let mut app = start(config, &db).await;
    assert!(bus_status(&app).await.signed);

    let reload_all = r#"{"action":"reload","pattern_id":null}"#;
    let forged = python_message(reload_all, Some("not the secret")).await;
    let unsigned = python_message(reload_all, None).await;
    let stale_ts = chrono::Utc::now().timestamp() - 3600;
    let stale = python_message(
        &format!(r#"{{"action":"reload","pattern_id":null,"ts":{stale_ts}}}"#),
        Some(SECRET),
    )
    .await;
    let valid = python_message(reload_all, Some(SECRET)).await;

    sql(&db, &[&insert(7, "firmato e valido")]).await;
    let rejected = [
        ("bad_signature", &forged),
        ("unsigned", &unsigned),
        ("stale", &stale),
        ("unsigned", &reload_all.to_owned()),
    ];
    for (i, (reason, msg)) in rejected.iter().enumerate() {
        publish(&url, &ch, msg).await;
        let received = (i + 1) as u64;
        wait_bus(&app, reason, |s| s.messages_received == received).await;
    }
    assert!(
        served(&mut app, "firmato e valido").await.is_none(),
        "nothing applied yet"
    );

    publish(&url, &ch, &valid).await;
    assert_eq!(wait_served(&mut app, "firmato e valido").await.id, 7);
    publish(&url, &ch, &valid).await; // the same event again
    let st = wait_bus(&app, "the replay", |s| s.messages_received == 6).await;
    assert_eq!(st.messages_applied, 1);
    let counts: Vec<(&str, u64)> = ["bad_signature", "unsigned", "stale", "replayed"]
        .iter()
        .map(|r| (*r, st.rejected[*r]))
        .collect();
    assert_eq!(
        counts,
        [
            ("bad_signature", 1),
            ("unsigned", 2),
            ("stale", 1),
            ("replayed", 1)
        ]
    );
}

/// In signed mode, what a replica announces is signed with the shared secret and accepted by
/// its peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_announcements_are_accepted_by_peers() {
    let db = Arc::new(TestDb::postgres().await);
    let (url, ch) = (redis_url(), channel("hotplane:signed-peers"));
    let signed = || {
        let mut c = bus_config(&db, &url, &ch);
        c.bus_secret = Some(Secret::new("shared by the fleet"));
        c
    };
    let mut a = start(signed(), &db).await;
    let mut b = start(signed(), &db).await;
    let learned = a
        .patterns
        .learn_pattern(learn_req("annuncio firmato", "x", 0.95))
        .await
        .expect("learn")
        .into_inner();
    assert_eq!(learned.publish_error, "");
    wait_served(&mut b, "annuncio firmato").await;
    let st = bus_status(&b).await;
    assert_eq!(st.messages_applied, 1);
    assert!(st.rejected.values().all(|n| *n == 0), "{:?}", st.rejected);
    wait_bus(&a, "A to skip its own event", |s| s.self_skipped == 1).await;
    assert!(served(&mut a, "annuncio firmato").await.is_some());
}

/// With Redis unreachable from the start, hotplane still starts and serves, reports the bus as
/// disconnected, and the backstop poll alone serves a change made with SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backstop_poll_serves_changes_without_any_message() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let db = Arc::new(TestDb::sqlite().await);
    let mut config = bus_config(&db, &format!("redis://127.0.0.1:{nobody}"), "hotplane:none");
    config.poll_interval = Duration::from_millis(200);
    let mut app = TestApp::start(config, Arc::clone(&db)).await;
    app.wait_ready().await;
    let st = wait_bus(&app, "a connection error", |s| !s.last_error.is_empty()).await;
    assert!(st.enabled && !st.connected);
    assert!(st.next_retry_at.is_some());

    sql(&db, &[&insert(3, "solo dal poll")]).await;
    assert_eq!(wait_served(&mut app, "solo dal poll").await.id, 3);
    assert_eq!(app.engine.current().source, Source::Poll);
}

/// A burst of 1,000 messages coalesces into a handful of loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_messages_costs_a_handful_of_loads() {
    const BURST: u64 = 1000;
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:burst"));
    let app = start(bus_config(&db, &url, &ch), &db).await;
    let before = app.engine.health();

    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let mut pipe = redis::pipe();
    for i in 1..=BURST {
        pipe.cmd("PUBLISH")
            .arg(&ch)
            .arg(format!(r#"{{"action":"reload","pattern_id":{i}}}"#))
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.expect("burst");
    wait_bus(&app, "the whole burst", |s| s.messages_applied == BURST).await;
    settle(&app).await;

    let after = app.engine.health();
    let loads = after.loads_total - before.loads_total;
    println!("{BURST} messages cost {loads} loads (including the settle)");
    assert!(loads <= 20, "{BURST} messages cost {loads} loads");
    assert!(after.coalesced_total - before.coalesced_total >= BURST - 20);
}

/// Without a Redis URL (unset, or empty as in `HOTPLANE_REDIS_URL=`), hotplane runs alone: the
/// status says the bus is disabled, there is no fleet, and a broadcast reload and a bus swap
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_redis_url_there_is_no_bus() {
    let mut app = TestApp::spawn_with(crate::helpers::Backend::Sqlite, |c| {
        c.redis_url = Some(String::new());
    })
    .await;
    let st = status(&app).await;
    assert!(!st.bus.expect("bus status").enabled);
    assert!(st.fleet.is_none());
    let learned = app
        .patterns
        .learn_pattern(learn_req("nessun bus", "x", 0.95))
        .await
        .expect("learn")
        .into_inner();
    assert_eq!(
        learned.publish_error, "",
        "nothing to announce, nothing failed"
    );
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            broadcast: true,
            ..crate::helpers::reload_req(false, None)
        })
        .await
        .expect_err("broadcast needs a bus");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // There is no bus to swap either; the answer says how to get one.
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Bus.into(),
            redis_url: redis_url(),
            ..Default::default()
        })
        .await
        .expect_err("no bus to swap");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("--redis-url"), "{}", err.message());
}

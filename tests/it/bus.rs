//! The Redis bus end to end: real Redis, real PostgreSQL (or SQLite where the store does not
//! matter), real gRPC. Each test uses its own channel on the shared Redis
//! (`HOTPLANE_TEST_REDIS_URL`); tests that stop Redis start a private `redis-server` on a free
//! port and never touch the shared one. No test sleeps to synchronise: each waits on the engine
//! or on `GetStatus`, with a deadline.
//!
//! The poll is disabled (`--poll-interval 0s`) except in the backstop test, so that whatever
//! converges here converged through the bus (or its catch-up).

use std::{process::Stdio, sync::Arc, time::Duration};

use hotplane::{
    bus::Secret,
    config::Config,
    engine::{LoadMode, LoadRequest, Scope, Source},
    pb,
};
use tokio::process::{Child, Command};

use crate::{
    db::{TestDb, unique_suffix},
    helpers::{TestApp, eventually, learn_req, served, sql},
};

pub(crate) fn redis_url() -> String {
    std::env::var("HOTPLANE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
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

pub(crate) async fn status(app: &TestApp) -> pb::GetStatusResponse {
    app.reload
        .clone()
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner()
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
        .reload(LoadRequest {
            scope: Scope::Delta,
            source: Source::Grpc,
            reason: "test: settle".into(),
        })
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
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_stops_serving_until_a_load_reads_the_row() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:invalidate"));
    let mut app = start(bus_config(&db, &url, &ch), &db).await;
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

/// The README's Python publisher (the ```python block that defines `bus_message`, run with
/// python3) produces the message for `fields`, signed when `secret` is given.
async fn python_message(fields: &str, secret: Option<&str>) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let block = readme
        .split("```python\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(code, _)| code))
        .find(|code| code.contains("def bus_message("))
        .expect("README.md has a python block defining bus_message");
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

/// Signed mode, with messages signed the way the README tells a Python publisher to: a valid
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

/// A `redis-server` of the test's own, on a free port, killed when dropped.
struct PrivateRedis {
    /// Its port (plain or TLS).
    port: u16,
    /// Server arguments besides the port.
    args: Vec<String>,
    /// The URL that reaches it, with credentials.
    url: String,
    /// A client of the test's own (trusting the test CA for TLS): readiness probes, PUBLISH.
    client: redis::Client,
    /// The running server.
    child: Option<Child>,
}

impl PrivateRedis {
    /// A plain server, no password.
    async fn start() -> PrivateRedis {
        Self::start_with(&[], "", None).await
    }

    /// A server with extra `args`, reached as `redis://{userinfo}127.0.0.1:port`, or over TLS
    /// (`rediss://`) trusting `tls_ca` when given.
    async fn start_with(args: &[&str], userinfo: &str, tls_ca: Option<&[u8]>) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let scheme = if tls_ca.is_some() { "rediss" } else { "redis" };
        let url = format!("{scheme}://{userinfo}127.0.0.1:{port}");
        let client = match tls_ca {
            None => redis::Client::open(url.as_str()),
            Some(ca) => redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                },
            ),
        }
        .expect("a client for the private redis-server");
        let mut port_args = vec!["--port".to_owned(), port.to_string()];
        if tls_ca.is_some() {
            port_args = ["--port", "0", "--tls-port"].map(String::from).to_vec();
            port_args.push(port.to_string());
        }
        let mut redis = PrivateRedis {
            port,
            args: port_args
                .into_iter()
                .chain(args.iter().map(|a| (*a).to_owned()))
                .collect(),
            url,
            client,
            child: None,
        };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    /// Starts it (again, on the same port) and waits until it answers.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (./scripts/test.sh installs it)");
        self.child = Some(child);
        let what = format!("the private redis-server on port {} to answer", self.port);
        eventually(&what, || async {
            let mut conn = self.client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        })
        .await;
    }

    /// PUBLISHes with the test's own client; returns how many subscribers received it.
    async fn publish(&self, channel: &str, payload: &str) -> i64 {
        let mut conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .expect("connects to the private redis-server");
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .expect("PUBLISH")
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the server process.
    async fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .await
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }
}

/// A password (the default user) and an ACL user in the URL both work, and status shows the URL
/// without the password; a wrong password is a connection error the status explains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_with_a_password_or_an_acl_user_work() {
    let redis = PrivateRedis::start_with(
        &[
            "--requirepass",
            "adminpw",
            "--user",
            "bus",
            "on",
            ">buspw",
            "~*",
            "&*",
            "+@all",
        ],
        ":adminpw@",
        None,
    )
    .await;
    let ch = channel("hotplane:acl");
    let acl_url = format!("redis://bus:buspw@127.0.0.1:{}", redis.port);
    let db = Arc::new(TestDb::sqlite().await);
    let mut app = start(bus_config(&db, &acl_url, &ch), &db).await;
    assert_eq!(
        bus_status(&app).await.redis_url,
        format!("redis://bus:***@127.0.0.1:{}", redis.port)
    );
    sql(&db, &[&insert(11, "utente acl")]).await;
    assert_eq!(
        redis
            .publish(&ch, r#"{"action":"reload","pattern_id":11}"#)
            .await,
        1
    );
    wait_served(&mut app, "utente acl").await;

    let db2 = Arc::new(TestDb::sqlite().await);
    let _password_only = start(bus_config(&db2, &redis.url(), &ch), &db2).await;

    let db3 = Arc::new(TestDb::sqlite().await);
    let wrong = format!("redis://bus:wrong@127.0.0.1:{}", redis.port);
    let refused = TestApp::start(bus_config(&db3, &wrong, &ch), Arc::clone(&db3)).await;
    refused.wait_ready().await;
    let st = wait_bus(&refused, "an auth error", |s| !s.last_error.is_empty()).await;
    assert!(!st.connected);
    assert!(
        st.last_error.to_lowercase().contains("pass")
            || st.last_error.to_lowercase().contains("auth"),
        "{}",
        st.last_error
    );
}

/// Throwaway TLS files made with openssl: a CA, and a server certificate it signed for
/// 127.0.0.1 and localhost.
struct TlsFiles {
    /// Keeps the files.
    dir: tempfile::TempDir,
}

impl TlsFiles {
    async fn make() -> TlsFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=hotplane test CA",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .await
                .expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        }
        TlsFiles { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// `rediss://` with a private CA (`--redis-ca-file`) connects and carries messages; without the
/// CA the server's certificate is refused and the status says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_works_with_a_private_ca() {
    let tls = TlsFiles::make().await;
    let ca = std::fs::read(tls.path("ca.pem")).expect("ca.pem");
    let (cert, key, ca_file) = (
        tls.path("server.pem"),
        tls.path("server.key"),
        tls.path("ca.pem"),
    );
    let redis = PrivateRedis::start_with(
        &[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
        ],
        "",
        Some(&ca),
    )
    .await;
    let ch = channel("hotplane:tls");
    let db = Arc::new(TestDb::sqlite().await);
    let mut config = bus_config(&db, &redis.url(), &ch);
    config.redis_ca_file = Some(ca_file.clone().into());
    let mut app = start(config, &db).await;
    sql(&db, &[&insert(12, "via tls")]).await;
    assert_eq!(
        redis
            .publish(&ch, r#"{"action":"reload","pattern_id":null}"#)
            .await,
        1
    );
    wait_served(&mut app, "via tls").await;

    let db2 = Arc::new(TestDb::sqlite().await);
    let untrusting = TestApp::start(bus_config(&db2, &redis.url(), &ch), Arc::clone(&db2)).await;
    untrusting.wait_ready().await;
    let st = wait_bus(&untrusting, "a certificate error", |s| {
        !s.last_error.is_empty()
    })
    .await;
    assert!(!st.connected);
    assert!(
        st.last_error.to_lowercase().contains("certificate"),
        "{}",
        st.last_error
    );
}

/// Redis goes away while serving: replicas keep answering, a learn still succeeds (and says its
/// announcement failed), the database changes meanwhile; when Redis is back, the other replica
/// converges through the catch-up reload alone (no poll, and no message was ever delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_catch_up_reload_converges() {
    let mut redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::postgres().await);
    let ch = channel("hotplane:outage");
    let mut a = start(bus_config(&db, &redis.url(), &ch), &db).await;
    let mut b = start(bus_config(&db, &redis.url(), &ch), &db).await;
    a.patterns
        .learn_pattern(learn_req("prima del guasto", "x", 0.95))
        .await
        .expect("learn");
    wait_served(&mut b, "prima del guasto").await;

    redis.stop().await;
    for app in [&a, &b] {
        wait_bus(app, "the bus to notice the outage", |s| !s.connected).await;
    }
    for app in [&mut a, &mut b] {
        assert!(
            served(app, "prima del guasto").await.is_some(),
            "still answering"
        );
    }
    let learned = a
        .patterns
        .learn_pattern(learn_req("durante il guasto", "x", 0.95))
        .await
        .expect("a learn succeeds without Redis")
        .into_inner();
    assert!(learned.served);
    assert!(!learned.publish_error.is_empty(), "the failure is reported");
    assert_eq!(bus_status(&a).await.publish_failures, 1);
    sql(&db, &[&insert(5001, "scritto con sql durante il guasto")]).await;
    assert!(served(&mut b, "durante il guasto").await.is_none());

    redis.restart().await;
    wait_bus(&b, "B to resubscribe", |s| s.connected && s.reconnects == 1).await;
    wait_served(&mut b, "durante il guasto").await;
    wait_served(&mut b, "scritto con sql durante il guasto").await;
    wait_served(&mut a, "scritto con sql durante il guasto").await;
}

/// A server that stops answering without closing the connection (SIGSTOP) is detected by the
/// PING timeout and the subscription is replaced once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_detected_and_replaced() {
    let redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::sqlite().await);
    let ch = channel("hotplane:halfopen");
    let mut config = bus_config(&db, &redis.url(), &ch);
    config.bus_ping_interval = Duration::from_millis(100);
    config.bus_timeout = Duration::from_millis(500);
    let mut app = start(config, &db).await;
    // WatchStatus announces the loss and the new subscription.
    let mut events = app
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest {
            targets: vec![pb::Target::Bus.into()],
            kinds: vec![
                pb::EventKind::BusConnected.into(),
                pb::EventKind::BusDisconnected.into(),
            ],
            after_event_id: 0,
        })
        .await
        .expect("watch")
        .into_inner();

    redis.signal("STOP").await;
    let st = wait_bus(&app, "the PING timeout", |s| !s.connected).await;
    redis.signal("CONT").await;
    assert!(st.last_error.contains("PING"), "{}", st.last_error);
    assert!(st.next_retry_at.is_some());
    wait_bus(&app, "a new subscription", |s| {
        s.connected && s.reconnects >= 1
    })
    .await;
    let mut seen = Vec::new();
    while seen.last() != Some(&pb::EventKind::BusConnected) {
        let e = tokio::time::timeout(crate::helpers::DEADLINE, events.message())
            .await
            .expect("an event before the deadline")
            .expect("stream ok")
            .expect("stream open");
        match e.kind() {
            pb::EventKind::Snapshot => continue,
            kind => seen.push(kind),
        }
    }
    assert_eq!(
        seen,
        [pb::EventKind::BusDisconnected, pb::EventKind::BusConnected]
    );

    // The new subscription works.
    sql(&db, &[&insert(9, "dopo la pausa")]).await;
    publish(&redis.url(), &ch, r#"{"action":"reload","pattern_id":9}"#).await;
    wait_served(&mut app, "dopo la pausa").await;
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
/// status says the bus is disabled, there is no fleet, and a broadcast reload is refused.
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
}

/// A Redis that stopped answering (SIGSTOP) does not hold up shutdown: the subscriber, the
/// heartbeat and the fleet removal all give up within the bus timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_an_unresponsive_redis() {
    let redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::sqlite().await);
    let mut config = bus_config(&db, &redis.url(), &channel("hotplane:shutdown"));
    config.bus_timeout = Duration::from_secs(2);
    config.fleet_heartbeat = Duration::from_millis(50);
    let app = start(config, &db).await;
    redis.signal("STOP").await;
    let started = std::time::Instant::now();
    app.stop().await.expect("stops cleanly");
    let took = started.elapsed();
    redis.signal("CONT").await;
    assert!(took < Duration::from_millis(3500), "shutdown took {took:?}");
}

//! Connections that go wrong or need credentials: each test starts a private `redis-server` on
//! a free port (and kills it), never touching the shared one: outages with catch-up, half-open
//! connections, passwords and ACL users, TLS, and shutdown with an unresponsive Redis.

use std::{process::Stdio, sync::Arc, time::Duration};

use hotplane::pb;
use rustix::process::Signal;
use tokio::process::{Child, Command};

use super::{bus_config, bus_status, channel, insert, publish, start, wait_bus, wait_served};
use crate::{
    db::TestDb,
    helpers::{TestApp, eventually, learn_req, send_signal, served, sql},
};

/// A `redis-server` of the test's own, on a free port, killed when dropped.
pub(crate) struct PrivateRedis {
    /// Its port (plain or TLS).
    pub(crate) port: u16,
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
    pub(crate) async fn start() -> PrivateRedis {
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

    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    /// Starts it (again, on the same port) and waits until it answers.
    pub(crate) async fn restart(&mut self) {
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
    pub(crate) async fn publish(&self, channel: &str, payload: &str) -> i64 {
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

    /// A command connection of the test's own.
    pub(crate) async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client
            .get_multiplexed_async_connection()
            .await
            .expect("connects to the private redis-server")
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Sends a signal (`Signal::STOP` freezes it, `Signal::CONT` thaws it) to the server.
    pub(crate) fn signal(&self, sig: Signal) {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        send_signal(pid, sig);
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
/// 127.0.0.1 and localhost. Shared by the TLS tests of one Redis, Sentinel and Cluster; the
/// certificate is for client authentication too, since cluster nodes present it to each other
/// on the cluster bus, which always asks for one.
pub(crate) struct TlsFiles {
    /// Keeps the files.
    dir: tempfile::TempDir,
}

impl TlsFiles {
    pub(crate) async fn make() -> TlsFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
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

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `redis-server` arguments serving TLS with these files, client certificates not asked
    /// for (the port arguments are the caller's: `--port 0 --tls-port N` for TLS only).
    pub(crate) fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.path("server.pem"),
            "--tls-key-file".into(),
            self.path("server.key"),
            "--tls-ca-cert-file".into(),
            self.path("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// A client of the test's own for a `rediss://` URL, trusting this CA.
    pub(crate) fn client(&self, url: &str) -> redis::Client {
        let ca = std::fs::read(self.path("ca.pem")).expect("ca.pem");
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            },
        )
        .expect("a TLS client")
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

/// `rediss+sentinel://` and `rediss+cluster://` verify the server's certificate against
/// `--redis-ca-file`: with a CA that did not sign it, the bus reports a certificate error and
/// stays disconnected (no panic, and no plaintext attempt: the server has no plaintext port,
/// and a plaintext hello on its TLS port would fail otherwise). A plaintext Sentinel or Cluster
/// URL with `--redis-ca-file` is refused, naming `redis_url` and the TLS scheme to use, without
/// echoing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_cluster_tls_refuse_a_certificate_the_ca_did_not_sign() {
    let (tls, other) = (TlsFiles::make().await, TlsFiles::make().await);
    let ca = std::fs::read(tls.path("ca.pem")).expect("ca.pem");
    let args = tls.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let redis = PrivateRedis::start_with(&args, "", Some(&ca)).await;
    let ch = channel("hotplane:tls-refused");
    for url in [
        format!("rediss+sentinel://127.0.0.1:{}/mymaster", redis.port),
        format!("rediss+cluster://127.0.0.1:{}", redis.port),
    ] {
        let db = Arc::new(TestDb::sqlite().await);
        let mut config = bus_config(&db, &url, &ch);
        config.redis_ca_file = Some(other.path("ca.pem").into());
        let app = TestApp::start(config, Arc::clone(&db)).await;
        app.wait_ready().await;
        let st = wait_bus(&app, "a certificate error", |s| !s.last_error.is_empty()).await;
        assert!(!st.connected, "{url}");
        assert!(
            st.last_error.to_lowercase().contains("certificate"),
            "{url}: {}",
            st.last_error
        );

        for (plain, tls_scheme) in [
            (
                format!("redis+sentinel://:s3cret@127.0.0.1:{}/m", redis.port),
                "rediss+sentinel://",
            ),
            (
                format!("redis+cluster://:s3cret@127.0.0.1:{}", redis.port),
                "rediss+cluster://",
            ),
        ] {
            let err = app
                .reload
                .clone()
                .reload(pb::ReloadRequest {
                    target: pb::Target::Bus.into(),
                    redis_url: plain,
                    reason: "test".into(),
                    ..Default::default()
                })
                .await
                .expect_err("a plaintext URL with --redis-ca-file");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            let m = err.message();
            assert!(m.contains("redis_url") && m.contains(tls_scheme), "{m}");
            assert!(!m.contains("s3cret"), "the password is not echoed: {m}");
        }
    }
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
    assert_eq!(
        learned.publish_error, "",
        "queued: published after the answer"
    );
    let st = wait_bus(&a, "the failed announcement", |s| s.publish_failures == 1).await;
    assert!(
        st.last_publish_error.contains("PUBLISH"),
        "{}",
        st.last_publish_error
    );
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

    redis.signal(Signal::STOP);
    let st = wait_bus(&app, "the PING timeout", |s| !s.connected).await;
    redis.signal(Signal::CONT);
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

/// A Redis that stopped answering (SIGSTOP) does not hold up shutdown: the subscriber, the
/// heartbeat and the fleet removal all give up (each within the bus timeout), so the server
/// stops well before the test's deadline instead of hanging on the frozen server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_an_unresponsive_redis() {
    let redis = PrivateRedis::start().await;
    let db = Arc::new(TestDb::sqlite().await);
    let mut config = bus_config(&db, &redis.url(), &channel("hotplane:shutdown"));
    config.bus_timeout = Duration::from_secs(2);
    config.fleet_heartbeat = Duration::from_millis(50);
    let app = start(config, &db).await;
    redis.signal(Signal::STOP);
    let stopped = tokio::time::timeout(crate::helpers::DEADLINE, app.stop()).await;
    redis.signal(Signal::CONT);
    stopped
        .expect("shutdown does not wait for the frozen Redis")
        .expect("stops cleanly");
}

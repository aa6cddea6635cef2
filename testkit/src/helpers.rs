//! The test application: the real server on a port-0 listener over a fresh database, with
//! generated gRPC clients. Every integration test starts from here.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hotplane::{
    config::Config,
    engine::Engine,
    pb,
    pb::{
        drain_client::DrainClient, hot_reload_client::HotReloadClient,
        patterns_client::PatternsClient,
    },
    startup::Application,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::{Channel, ClientTlsConfig};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::db::TestDb;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh PostgreSQL database.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// Longest a test waits for something the server does in the background (a deadline, not a
/// sleep: the wait ends as soon as the condition holds).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Sends `signal` to process `pid` (a child the test started) with the kill(2) system call, not
/// the external `kill` program: a minimal Debian has no procps, and the tests run no program
/// that `scripts/test.sh` does not install.
pub fn send_signal(pid: u32, signal: rustix::process::Signal) {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .unwrap_or_else(|| panic!("{pid} is not a process id"));
    rustix::process::kill_process(target, signal)
        .unwrap_or_else(|e| panic!("kill({pid}, {signal:?}): {e}"));
}

/// A running server and clients connected to it.
pub struct TestApp {
    /// Bound address.
    pub addr: SocketAddr,
    /// The plaintext health-only listener's address (`--health-listen`, with TLS on).
    pub health_addr: Option<SocketAddr>,
    /// The admin listener's address (`--admin-listen`: /metrics), when configured.
    pub admin_addr: Option<SocketAddr>,
    /// The server's TLS settings, when TLS is on.
    pub tls: Option<Arc<hotplane::auth::ServerTls>>,
    /// Patterns client.
    pub patterns: PatternsClient<Channel>,
    /// HotReload client.
    pub reload: HotReloadClient<Channel>,
    /// grpc.health.v1 client.
    pub health: HealthClient<Channel>,
    /// Drain client.
    pub drain: DrainClient<Channel>,
    /// The server's engine (to wait on generations without polling).
    pub engine: Engine,
    /// The database behind the server (dropped after the server stops; several apps may share
    /// one, and the last to go drops it).
    pub db: Arc<TestDb>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts a server on a fresh database of `backend` with default settings.
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a server on a fresh database, letting the test adjust the config first.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let db = match backend {
            Backend::Postgres => TestDb::postgres().await,
            Backend::Sqlite => TestDb::sqlite().await,
        };
        let mut config = Config::for_database(db.url());
        config.hit_flush_interval = Duration::from_millis(50);
        tweak(&mut config);
        let app = TestApp::start(config, db).await;
        app.wait_ready().await;
        app
    }

    /// Builds and starts a server with a prepared config, without waiting for readiness. Pass
    /// an `Arc<TestDb>` clone to start several servers on one database.
    pub async fn start(config: Config, db: impl Into<Arc<TestDb>>) -> TestApp {
        Self::start_tls(config, db, None).await
    }

    /// [`TestApp::start`] for a server whose config may turn TLS on: with `client_tls`, the
    /// app's clients reach it over TLS (as `localhost`) with that client config, connecting at
    /// their first call (a server that requires client certificates refuses a client without
    /// one only then, which is what a TLS test asserts).
    pub async fn start_tls(
        config: Config,
        db: impl Into<Arc<TestDb>>,
        client_tls: Option<ClientTlsConfig>,
    ) -> TestApp {
        let app = Application::build(config)
            .await
            .expect("application builds");
        let (addr, health_addr, tls) = (app.local_addr(), app.health_addr(), app.tls());
        let admin_addr = app.admin_addr();
        let engine = app.engine().clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stop_rx.await;
        }));
        // The listener is already bound, so connecting cannot race the server start.
        let channel = match client_tls {
            None => Channel::from_shared(format!("http://{addr}"))
                .expect("valid uri")
                .connect()
                .await
                .expect("connects to the test server"),
            Some(client_tls) => Channel::from_shared(format!("https://localhost:{}", addr.port()))
                .expect("valid uri")
                .tls_config(client_tls)
                .expect("client tls")
                .connect_lazy(),
        };
        TestApp {
            addr,
            health_addr,
            admin_addr,
            tls,
            patterns: PatternsClient::new(channel.clone()),
            reload: HotReloadClient::new(channel.clone()),
            health: HealthClient::new(channel.clone()),
            drain: DrainClient::new(channel),
            engine,
            db: db.into(),
            stop: Some(stop_tx),
            server: Some(server),
        }
    }

    /// Waits until health reports SERVING (after the first pattern load).
    pub async fn wait_ready(&self) {
        wait_serving(&self.health).await;
    }

    /// Stops the server gracefully and returns what `run_until_stopped` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(h) => h.await.expect("server task did not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Waits until the overall health is SERVING, as a client would: on the health Watch stream,
/// not by polling.
pub async fn wait_serving(health: &HealthClient<Channel>) {
    let mut stream = health
        .clone()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health watch")
        .into_inner();
    tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = stream.message().await.expect("health stream") {
            if msg.status == ServingStatus::Serving as i32 {
                return;
            }
        }
        panic!("health stream ended before SERVING");
    })
    .await
    .expect("SERVING before the deadline");
}

/// GetStatus of `app`.
pub async fn status(app: &TestApp) -> pb::GetStatusResponse {
    app.reload
        .clone()
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// The pattern target's status, from GetStatus.
pub async fn patterns_status(app: &TestApp) -> pb::TargetStatus {
    status(app).await.targets.remove(0)
}

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline. For state that
/// the server changes in the background (hit flushes); each poll is a real query.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Generates one `#[tokio::test]` per backend for an `async fn(Backend)` test body.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            }
        )+
    };
}

/// Runs SQL statements directly against the test's database, as another client of the same
/// database would (bypassing hotplane entirely).
pub async fn sql(db: &TestDb, statements: &[&str]) {
    let client = db.client().await;
    for s in statements {
        client.exec(s).await;
    }
    client.close().await;
}

/// A LearnPattern request with no metadata.
pub fn learn_req(query: &str, category: &str, confidence: f64) -> pb::LearnPatternRequest {
    pb::LearnPatternRequest {
        query: query.into(),
        category: category.into(),
        confidence,
        ..Default::default()
    }
}

/// A MatchPattern request with no options.
pub fn match_req(query: &str) -> pb::MatchPatternRequest {
    pb::MatchPatternRequest {
        query: query.into(),
        ..Default::default()
    }
}

/// A Reload of the pattern cache: delta, `full`, or one row.
pub fn reload_req(full: bool, pattern_id: Option<i64>) -> pb::ReloadRequest {
    pb::ReloadRequest {
        target: pb::Target::Patterns.into(),
        pattern_id,
        full,
        reason: "test".into(),
        ..Default::default()
    }
}

/// MatchPattern of one query, expected to succeed.
pub async fn matches(app: &mut TestApp, query: &str) -> pb::MatchPatternResponse {
    app.patterns
        .match_pattern(match_req(query))
        .await
        .expect("match succeeds")
        .into_inner()
}

/// The pattern a query matches, if any.
pub async fn served(app: &mut TestApp, query: &str) -> Option<pb::MatchedPattern> {
    app.patterns
        .match_pattern(pb::MatchPatternRequest {
            query: query.into(),
            ..Default::default()
        })
        .await
        .expect("match")
        .into_inner()
        .pattern
}

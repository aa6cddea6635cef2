//! Building and running the server: bind first (port 0 allowed), then serve until an injected
//! shutdown future resolves. `main` and the tests drive exactly this code.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use chrono::Utc;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};
use tracing::{info, warn};

use crate::{
    api::{AppState, DrainApi, HotReloadApi, MAX_MESSAGE_BYTES, PatternsApi},
    config::Config,
    engine::{Engine, EngineOptions, LoadRequest, Scope, Source},
    hits::HitCounter,
    learn::LearnRules,
    normalize::Normalizer,
    pb,
    store::{Store, StoreOptions, redact_url},
};

/// gRPC service names whose health is reported (besides the overall `""`).
pub const SERVICE_NAMES: [&str; 3] = [
    "hotplane.v1.HotReload",
    "hotplane.v1.Patterns",
    "hotplane.v1.Drain",
];

/// Opens the store described by the config (without migrating).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&StoreOptions {
        url: config.database_url.clone(),
        schema: config.database_schema.clone(),
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout,
    })
    .await
    .with_context(|| {
        format!(
            "opening the pattern store at {}; check --database-url / HOTPLANE_DATABASE_URL",
            redact_url(&config.database_url)
        )
    })
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    health: HealthReporter,
    config: Config,
    stop_tx: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Opens and migrates the store, binds the listener and starts the engine. The first
    /// pattern load runs in the background (retried until it succeeds); health reports
    /// NOT_SERVING until then.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        config.validate()?;
        let store = open_store(&config).await?;
        store
            .migrate()
            .await
            .context("migrating the pattern store; the database user needs DDL rights")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the gRPC listener on {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;

        let engine = Engine::start(
            store.clone(),
            EngineOptions {
                retain: config.retain_generations,
                event_capacity: config.event_capacity,
            },
        );
        let health = HealthReporter::new();
        set_health(&health, ServingStatus::NotServing).await;

        let state = Arc::new(AppState {
            engine: engine.clone(),
            normalizer: Normalizer::new(config.normalize_profile, config.stop_words.clone()),
            rules: LearnRules {
                min_confidence: config.learn_min_confidence,
                min_chars: config.learn_min_chars,
                auto_approve: config.learn_auto_approve,
            },
            hits: Arc::new(HitCounter::default()),
            instance_id: instance_id(addr),
            started_at: Utc::now(),
            store_url: redact_url(&config.database_url),
            store_schema: if store.backend() == "postgres" {
                config.database_schema.clone()
            } else {
                String::new()
            },
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let background = vec![
            tokio::spawn(initial_load(engine.clone(), stop_rx.clone())),
            tokio::spawn(serve_when_ready(engine, health.clone(), stop_rx.clone())),
            tokio::spawn(Arc::clone(&state.hits).run_flusher(
                store,
                config.hit_flush_interval,
                config.hit_flush_batch,
                stop_rx,
            )),
        ];
        Ok(Application {
            listener,
            addr,
            state,
            health,
            config,
            stop_tx,
            background,
        })
    }

    /// The bound gRPC address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The swap engine, for tests and embedding.
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// This process's instance id.
    pub fn instance_id(&self) -> &str {
        &self.state.instance_id
    }

    /// Serves until `shutdown` resolves, then stops accepting, waits up to the shutdown grace
    /// for running requests, flushes hit counts and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("building reflection v1alpha")?;
        let state = &self.state;
        let router = Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                HealthService::from_health_reporter(self.health.clone()),
            ))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                pb::hot_reload_server::HotReloadServer::new(HotReloadApi::new(Arc::clone(state)))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                pb::patterns_server::PatternsServer::new(PatternsApi::new(Arc::clone(state)))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(pb::drain_server::DrainServer::new(DrainApi));

        let health = self.health.clone();
        let (signalled_tx, mut signalled_rx) = watch::channel(false);
        let serve = router.serve_with_incoming_shutdown(
            TcpListenerStream::new(self.listener),
            async move {
                shutdown.await;
                info!("shutting down: health NOT_SERVING, no new connections");
                set_health(&health, ServingStatus::NotServing).await;
                signalled_tx.send_replace(true);
            },
        );
        info!(addr = %self.addr, instance_id = %state.instance_id, "hotplane listening");
        let grace = self.config.shutdown_grace;
        tokio::select! {
            r = serve => r.context("serving gRPC")?,
            _ = async {
                let _ = signalled_rx.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => warn!(grace_ms = grace.as_millis() as u64, "shutdown grace expired with requests still running; closing them"),
        }

        self.stop_tx.send_replace(true);
        state.engine.shutdown();
        for task in self.background {
            let _ = task.await;
        }
        state.engine.store().close().await;
        info!("hotplane stopped");
        Ok(())
    }
}

/// Reflection over every type a client can meet: the hotplane API, the health service, and the
/// `google.rpc` error details carried by INVALID_ARGUMENT (so grpcurl can print `BadRequest`).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Runs the first load, retrying with capped exponential backoff until it succeeds: a database
/// that is briefly unreachable at start delays SERVING instead of crashing the process.
async fn initial_load(engine: Engine, mut stop: watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = engine.reload(LoadRequest {
            scope: Scope::Full,
            source: Source::Startup,
            reason: "startup".into(),
        });
        tokio::select! {
            r = attempt => match r {
                Ok(_) => return,
                Err(e) => warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "initial pattern load failed; still NOT_SERVING"),
            },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Sets health SERVING once the first load has succeeded.
async fn serve_when_ready(engine: Engine, health: HealthReporter, mut stop: watch::Receiver<bool>) {
    let mut ready = engine.ready();
    let became_ready = tokio::select! {
        ok = async { ready.wait_for(|r| *r).await.is_ok() } => ok,
        _ = async { stop.wait_for(|s| *s).await.is_ok() } => false,
    };
    if became_ready {
        set_health(&health, ServingStatus::Serving).await;
        info!(
            generation = engine.current().number,
            "first pattern load done: SERVING"
        );
    }
}

/// A process-unique instance id: host name, process id and a hash of the start time and
/// bound address, so two processes (even on one host, or reusing a pid) never share one.
fn instance_id(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let salt =
        xxhash_rust::xxh3::xxh3_64(format!("{nanos}:{addr}:{}", std::process::id()).as_bytes());
    format!("{host}-{}-{:08x}", std::process::id(), salt as u32)
}

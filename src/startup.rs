//! Building and running the server: bind first (port 0 allowed), then serve until an injected
//! shutdown future resolves. `main` and the tests drive exactly this code.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use chrono::Utc;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::{
    Server,
    server::{Router, TcpIncoming},
};
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};
use tracing::{info, warn};

use crate::{
    api::{
        AppState, DrainApi, HotReloadApi, MAX_MESSAGE_BYTES, PatternsApi, StreamSlots,
        WatchOptions, bus_event_sink, drain_pb, generation_pb,
    },
    audit::{self, Auditor},
    auth::{AuthLayer, Authenticator, RateLimit, RateLimiter, ServerTls},
    bus::{
        Bus, BusOptions, backstop,
        fleet::{Member, Reporter},
    },
    config::Config,
    engine::{Engine, EngineOptions, EventKind, EventSink, LoadRequest, Scope, Source},
    events::EventHub,
    hits::HitCounter,
    lifecycle::{Drain, InFlightLayer},
    live_config::{self, LiveConfig},
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
    Store::connect(&store_options(config))
        .await
        .with_context(|| {
            format!(
                "opening the pattern store at {}; check --database-url / HOTPLANE_DATABASE_URL",
                redact_url(&config.database_url)
            )
        })
}

/// How long the server waits, once it stopped accepting, for the last streams to end.
const STREAM_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The store settings of a config.
fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        url: config.database_url.clone(),
        schema: config.database_schema.clone(),
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout,
    }
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    /// The plaintext health-only listener (`--health-listen`, with TLS on).
    health_listener: Option<(TcpListener, SocketAddr)>,
    /// TLS of the gRPC port, when configured (reloadable).
    tls: Option<Arc<ServerTls>>,
    /// The auth layer (credentials, scopes, rate limits), shared by every connection.
    auth: AuthLayer,
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
    ///
    /// `config` is the base (flags, environment, defaults); a config file it names is read over
    /// it (see [`crate::config_file`]) and becomes the live config's first generation.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let base = config;
        let (config, loaded) = live_config::startup_config(&base)?;
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
        // Shared with the live config, which applies `limits.*` changes to it.
        let limiter = Arc::new(RateLimiter::new(RateLimit {
            per_second: config.auth.admin_rate,
            burst: config.auth.admin_burst,
        }));
        let (auth, tls, health_listener) = security(&config, Arc::clone(&limiter)).await?;

        let events = EventHub::new(config.event_capacity);
        let engine = Engine::start(
            store.clone(),
            EngineOptions {
                retain: config.retain_generations,
                event_capacity: config.event_capacity,
                sink: Some(engine_event_sink(events.clone())),
                max_served_metadata_bytes: config.max_served_metadata_bytes,
            },
        );
        let health = HealthReporter::new();
        set_health(&health, ServingStatus::NotServing).await;

        let (stop_tx, stop_rx) = watch::channel(false);
        let instance_id = instance_id(addr);
        // Attached before the first load, so the startup load is recorded too.
        let (auditor, audit_queue) = Auditor::new(config.audit_queue_capacity);
        engine.attach_audit(auditor.clone());
        // Redis being down is not an error here: the subscriber connects in the background and
        // keeps retrying. Only a malformed URL stops startup.
        // An empty URL (e.g. `HOTPLANE_REDIS_URL=` in a compose file) means no bus, like unset.
        let (bus, bus_task) = match config.redis_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let opts = bus_options(&config, url, &instance_id);
                let sink = bus_event_sink(events.clone());
                let (bus, task) = Bus::start(opts, engine.clone(), Some(sink), stop_rx.clone())
                    .context("starting the Redis bus; check --redis-url / HOTPLANE_REDIS_URL")?;
                (bus, Some(task))
            }
            None => (Bus::disabled(), None),
        };

        let state = Arc::new(AppState {
            engine: engine.clone(),
            live: Arc::new({
                let live = LiveConfig::new(base, config.clone(), loaded.as_ref());
                live.attach_rate_limiter(limiter);
                live
            }),
            security: crate::auth::Security {
                tls: tls.clone(),
                auth: Arc::clone(auth.authenticator()),
            },
            hits: Arc::new(HitCounter::default()),
            instance_id,
            started_at: Utc::now(),
            store_url: arc_swap::ArcSwap::from_pointee(redact_url(&config.database_url)),
            store_options: store_options(&config),
            store_schema: if store.backend() == "postgres" {
                config.database_schema.clone()
            } else {
                String::new()
            },
            drain: Drain::default(),
            shutdown_grace: config.shutdown_grace,
            events: events.clone(),
            watch: WatchOptions {
                heartbeat: config.watch_heartbeat,
                max_age: config.watch_max_age,
            },
            closing: watch::channel(false).0,
            bus,
            audit: auditor,
            audit_retention_days: config.audit_retention_days,
            watch_slots: StreamSlots::new(config.watch_max_streams_per_caller),
            max_response_bytes: config.max_response_bytes,
        });
        let mut background = vec![
            tokio::spawn(audit::writer::run(
                audit_queue,
                engine.clone(),
                audit::writer::WriterOptions {
                    instance: state.instance_id.clone(),
                    retention: (config.audit_retention_days > 0).then(|| {
                        Duration::from_secs(u64::from(config.audit_retention_days) * 86_400)
                    }),
                },
                stop_rx.clone(),
            )),
            tokio::spawn(initial_load(engine.clone(), stop_rx.clone())),
            tokio::spawn(crate::engine::prune::run(
                engine.clone(),
                (config.tombstone_retention_hours > 0).then(|| {
                    Duration::from_secs(u64::from(config.tombstone_retention_hours) * 3600)
                }),
                stop_rx.clone(),
            )),
            tokio::spawn(forward_drain_events(Arc::clone(&state), stop_rx.clone())),
            tokio::spawn(follow_health(
                engine.clone(),
                state.drain.clone(),
                health.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(Arc::clone(&state.hits).run_flusher(
                engine.clone(),
                config.hit_flush_interval,
                config.hit_flush_batch,
                stop_rx.clone(),
            )),
            tokio::spawn(backstop::run(
                state.engine.clone(),
                state.live.poll_interval(),
                stop_rx.clone(),
            )),
        ];
        background.extend(bus_task);
        let advertised = config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| addr.to_string());
        background.extend(state.bus.start_fleet(
            fleet_reporter(&state, advertised),
            state.engine.clone(),
            state.live.fleet_timing(),
            stop_rx,
        ));
        Ok(Application {
            listener,
            addr,
            health_listener,
            tls,
            auth,
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

    /// The bound address of the plaintext health-only listener, when `--health-listen` is set.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The TLS settings of the gRPC port, when TLS is on: `reload()` re-reads the certificate
    /// files for new connections.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
    }

    /// The swap engine, for tests and embedding.
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// This process's instance id.
    pub fn instance_id(&self) -> &str {
        &self.state.instance_id
    }

    /// A handle that re-reads the config file (what SIGHUP does), usable after `run_until_stopped`
    /// took the application.
    pub fn config_reloader(&self) -> ConfigReloader {
        ConfigReloader(Arc::clone(&self.state))
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
        // Auth outermost: a refused request is neither counted nor served.
        let router = Server::builder()
            .http2_keepalive_interval(Some(self.config.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(self.config.http2_keepalive_timeout))
            .layer(self.auth.clone())
            .layer(InFlightLayer::new(state.drain.clone()))
            .add_service(health_service(&self.health))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                pb::hot_reload_server::HotReloadServer::new(HotReloadApi::new(Arc::clone(state)))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                crate::api::wire::patterns_server::PatternsServer::new(PatternsApi::new(
                    Arc::clone(state),
                ))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                pb::drain_server::DrainServer::new(DrainApi::new(Arc::clone(state)))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            );

        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let closed = async move {
            let _ = close_rx.await;
        };
        let mut serve: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > = match &self.tls {
            Some(tls) => Box::pin(
                router
                    .serve_with_incoming_shutdown(Arc::clone(tls).incoming(self.listener), closed),
            ),
            // TCP_NODELAY: gRPC writes headers, data and trailers as separate small frames;
            // with Nagle's algorithm a reply can wait for the peer's delayed ACK (~40 ms).
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                closed,
            )),
        };
        let (health_stop, health_task) = match self.health_listener {
            Some((listener, addr)) => {
                info!(%addr, "plaintext health listening");
                let (stop, task) = serve_health_only(listener, &self.health);
                (Some(stop), Some(task))
            }
            None => (None, None),
        };
        info!(addr = %self.addr, instance_id = %state.instance_id, tls = self.tls.is_some(), "hotplane listening");

        // Serve until the shutdown signal (or until the server fails).
        let signalled = tokio::select! {
            r = &mut serve => { r.context("serving gRPC")?; false }
            _ = shutdown => true,
        };
        // Every wait from here on ends by this deadline (what the drain leaves of it goes to the
        // background tasks), or shortly after it where a final flush deserves a moment.
        let deadline = tokio::time::Instant::now()
            + if signalled {
                self.config.shutdown_delay
            } else {
                Duration::ZERO
            }
            + self.config.shutdown_grace;
        if signalled {
            // The drain sequence, serving all along: NOT_SERVING and refuse new work; give load
            // balancers the pre-stop delay to notice; wait for running work up to the grace.
            let drain = &state.drain;
            if !drain.is_draining() {
                let origin = audit::Origin {
                    caller: "signal".into(),
                    action: audit::action::DRAIN_START,
                    target: "drain".into(),
                };
                crate::api::record_drain(state, origin, Source::Signal, "shutdown");
            }
            drain.start_final("shutdown");
            info!(
                delay_ms = self.config.shutdown_delay.as_millis() as u64,
                grace_ms = self.config.shutdown_grace.as_millis() as u64,
                in_flight = drain.snapshot().in_flight_requests,
                "shutting down: draining (health NOT_SERVING, new work refused)"
            );
            set_health(&self.health, ServingStatus::NotServing).await;
            let waited = async {
                tokio::time::sleep(self.config.shutdown_delay).await;
                drain.wait_idle(self.config.shutdown_grace).await
            };
            tokio::select! {
                r = &mut serve => r.context("serving gRPC")?,
                (idle, still) = waited => if !idle {
                    warn!(?still, "shutdown grace expired with requests still running; closing them");
                },
            }
            // WatchStatus streams send a final event and end; then stop accepting connections
            // and let the server close. Streams that would keep it open (health watches) are cut
            // after a short bound.
            state.closing.send_replace(true);
            let _ = tokio::time::timeout(STREAM_CLOSE_GRACE, drain.wait_streams_closed()).await;
            let _ = close_tx.send(());
            if tokio::time::timeout(STREAM_CLOSE_GRACE, &mut serve)
                .await
                .is_err()
            {
                info!("closing the remaining streams");
            }
        }

        if let (Some(stop), Some(mut task)) = (health_stop, health_task) {
            let _ = stop.send(());
            if tokio::time::timeout(STREAM_CLOSE_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        self.stop_tx.send_replace(true);
        state.engine.shutdown();
        // The background tasks (the audit writer flushing its queue, the bus, the poll) end on
        // the stop signal, but the audit writer may be retrying against a database that is down:
        // they get what is left of the grace, at least STREAM_CLOSE_GRACE, then are stopped.
        let deadline = deadline.max(tokio::time::Instant::now() + STREAM_CLOSE_GRACE);
        let mut stopped = 0;
        for task in self.background {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                stopped += 1;
            }
        }
        if stopped > 0 {
            warn!(
                tasks = stopped,
                "background tasks were still running at the end of the shutdown grace and were stopped (is the database down? audit rows still queued are lost)"
            );
        }
        if tokio::time::timeout(STREAM_CLOSE_GRACE, state.engine.store().close())
            .await
            .is_err()
        {
            warn!("the store's connections did not close in time; leaving them");
        }
        info!("hotplane stopped");
        Ok(())
    }
}

/// The security pieces of a config: the auth layer (credentials read, rate limits set), the TLS
/// settings (PEM files read), and the plaintext health-only listener, bound. Every file is read
/// here, so a bad path stops startup with a message naming the flag.
async fn security(
    config: &Config,
    limiter: Arc<RateLimiter>,
) -> anyhow::Result<(
    AuthLayer,
    Option<Arc<ServerTls>>,
    Option<(TcpListener, SocketAddr)>,
)> {
    let auth = &config.auth;
    let authenticator = Authenticator::from_config(auth)?;
    if !authenticator.has_credentials() {
        info!(
            "no credentials configured: read RPCs are open, state-changing RPCs accepted only from loopback"
        );
        if !config.listen.ip().is_loopback() {
            warn!(
                listen = %config.listen,
                "listening beyond loopback without credentials: state-changing RPCs from the network are refused until --auth-tokens-file, --auth-jwt-* or --tls-client-ca-file is set"
            );
        }
    }
    let layer = AuthLayer::new(Arc::new(authenticator), limiter);
    let tls = ServerTls::from_config(auth)?;
    let health = match auth.health_listen {
        Some(at) => {
            let listener = TcpListener::bind(at).await.with_context(|| {
                format!("binding the health listener on {at} (--health-listen)")
            })?;
            let addr = listener
                .local_addr()
                .context("reading the health address")?;
            Some((listener, addr))
        }
        None => None,
    };
    Ok((layer, tls, health))
}

fn health_service(
    health: &HealthReporter,
) -> tonic_health::pb::health_server::HealthServer<HealthService> {
    tonic_health::pb::health_server::HealthServer::new(HealthService::from_health_reporter(
        health.clone(),
    ))
}

/// Serves `grpc.health.v1` alone, in plaintext, until the returned sender fires: for probes
/// that cannot speak TLS. Nothing else is reachable on this port.
fn serve_health_only(
    listener: TcpListener,
    health: &HealthReporter,
) -> (tokio::sync::oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router: Router = Server::builder().add_service(health_service(health));
    let task = tokio::spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = stopped.await;
                },
            )
            .await;
        if let Err(e) = served {
            warn!(error = %e, "the plaintext health listener failed");
        }
    });
    (stop, task)
}

/// Re-reads the config file: the same path as `Reload(TARGET_CONFIG)`.
#[derive(Debug, Clone)]
pub struct ConfigReloader(Arc<AppState>);

impl ConfigReloader {
    /// Re-reads and applies the config file; failures are logged (with every key at fault),
    /// counted in status and announced on WatchStatus, and leave the running config unchanged.
    pub async fn reload(&self, source: Source) -> Result<pb::ReloadResponse, tonic::Status> {
        crate::api::reload_config(&self.0, source, false, "signal".into(), "SIGHUP")
            .await
            .map_err(tonic::Status::from)
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
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        let delay = backoff.next_delay();
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
    }
}

/// Keeps gRPC health in step with the engine and the drain: SERVING exactly when the first
/// pattern load has succeeded and the replica is not draining. The only writer of health while
/// serving, so the two sources can never race each other.
async fn follow_health(
    engine: Engine,
    drain: Drain,
    health: HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let mut ready = engine.ready();
    let mut draining = drain.subscribe();
    let mut last = None;
    loop {
        let serving = *ready.borrow_and_update() && !draining.borrow_and_update().draining;
        if last != Some(serving) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&health, status).await;
            info!(
                serving,
                generation = engine.current().number,
                "health changed"
            );
            last = Some(serving);
        }
        tokio::select! {
            r = ready.changed() => if r.is_err() { return },
            r = draining.changed() => if r.is_err() { return },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}

/// Turns the engine's reload events into WatchStatus events (called synchronously by the
/// engine, so a reload is announced before the requests it served get their answer).
fn engine_event_sink(hub: EventHub) -> EventSink {
    Arc::new(move |event| {
        let mut out = pb::WatchStatusResponse {
            target: pb::Target::Patterns.into(),
            ..Default::default()
        };
        match &event.kind {
            EventKind::ReloadStarted { .. } => out.kind = pb::EventKind::ReloadStarted.into(),
            EventKind::ReloadSucceeded { generation, .. } => {
                out.kind = pb::EventKind::ReloadSucceeded.into();
                out.generation = Some(generation_pb(generation));
            }
            EventKind::ReloadFailed { error, .. } => {
                out.kind = pb::EventKind::ReloadFailed.into();
                out.error = error.clone();
            }
            EventKind::RolledBack { generation, .. } => {
                out.kind = pb::EventKind::Rollback.into();
                out.generation = Some(generation_pb(generation));
                hub.publish(out.clone());
                out.kind = pb::EventKind::Pin.into();
            }
            EventKind::Unpinned { .. } => out.kind = pb::EventKind::Unpin.into(),
            // Held reloads show in status (pending_changes), on heartbeats and snapshots.
            EventKind::Held { .. } => return,
            EventKind::Quarantined { id, reason } => {
                out.kind = pb::EventKind::PatternQuarantined.into();
                out.pattern_id = *id;
                out.error = reason.clone();
            }
            EventKind::Released { id } => {
                out.kind = pb::EventKind::PatternReleased.into();
                out.pattern_id = *id;
            }
        }
        hub.publish(out);
    })
}

/// Publishes every change of the drain state (not of the in-flight counts) as an event.
async fn forward_drain_events(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut rx = state.drain.subscribe();
    let mut draining = rx.borrow_and_update().draining;
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        let snap = rx.borrow_and_update().clone();
        if snap.draining != draining {
            draining = snap.draining;
            let mut status = crate::api::hot_reload_status(&state);
            status.drain = Some(drain_pb(&snap));
            state.events.publish(pb::WatchStatusResponse {
                kind: pb::EventKind::DrainChanged.into(),
                status: Some(status),
                ..Default::default()
            });
        }
    }
}

/// What this instance tells the fleet about itself.
fn fleet_reporter(state: &AppState, addr: String) -> Reporter {
    let (engine, drain, instance_id) = (
        state.engine.clone(),
        state.drain.clone(),
        state.instance_id.clone(),
    );
    Arc::new(move || {
        let current = engine.current();
        let health = engine.health();
        Member {
            instance_id: instance_id.clone(),
            addr: addr.clone(),
            generation: current.number,
            content_hash: current.snapshot.content_hash(),
            content_hash_scheme: Some(crate::snapshot::scheme::CURRENT),
            store_revision: current.store_revision,
            // While pinned it serves an older generation than its last read: it claims no
            // position, so no fleet wait counts it as serving newer writes.
            store_position: match health.pinned {
                Some(_) => None,
                None => current.cursor.as_ref().map(|c| c.position()),
            },
            item_count: current.snapshot.len() as u64,
            draining: drain.snapshot().draining,
            last_error: health.last_error,
            rollback_error: None, // filled in by the heartbeat
            rollback_hash: None,
            updated_at_ms: Utc::now().timestamp_millis(),
        }
    })
}

/// Bus settings from the config.
fn bus_options(config: &Config, url: &str, instance_id: &str) -> BusOptions {
    BusOptions {
        redis_url: url.to_owned(),
        ca_file: config.redis_ca_file.clone(),
        channel: config.bus_channel.clone(),
        secret: config.bus_secret().cloned(),
        instance_id: instance_id.to_owned(),
        reconnect_min: config.bus_reconnect_min,
        reconnect_max: config.bus_reconnect_max,
        ping_interval: config.bus_ping_interval,
        timeout: config.bus_timeout,
        replay_window: config.bus_replay_window,
        allow_unsigned_rollback: config.bus_allow_unsigned_rollback,
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

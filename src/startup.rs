//! Building and running the server: bind first (port 0 allowed), then serve until an injected
//! shutdown future resolves. `main` and the tests drive exactly this code.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use chrono::Utc;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::server::HealthReporter;
use tracing::info;

use crate::{
    api::{
        DrainApi, DrainState, HotReloadApi, MAX_MESSAGE_BYTES, PatternsApi, PatternsState,
        ReloadState, StatusSources, StreamSlots, WatchOptions,
        events::{EventHub, bus_event_sink},
    },
    audit::{self, Auditor},
    auth::{AuthLayer, RateLimit, RateLimiter, ServerTls},
    broadcast::Fleetwide,
    bus::{Bus, BusOptions, PgBusOptions, backstop, fleet},
    config::{self, BusMode, Config, live::LiveConfig, reload::ConfigReloader},
    engine::{Engine, EngineOptions},
    hits::HitCounter,
    lifecycle::{Drain, InFlightLayer, health, shutdown},
    pb,
    store::{Store, StoreOptions, redact_url},
    writes::PatternWrites,
};

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
    /// The admin HTTP listener (`--admin-listen`: /metrics), when configured.
    admin: Option<crate::admin::Admin>,
    /// TLS of the gRPC port, when configured (reloadable).
    tls: Option<Arc<ServerTls>>,
    /// The auth layer (credentials, scopes, rate limits), shared by every connection.
    auth: AuthLayer,
    /// Every subsystem, for status and shutdown.
    status: StatusSources,
    /// Each gRPC service's state.
    services: Services,
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
    /// it (see [`crate::config::file`]) and becomes the live config's first generation.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let base = config;
        let (config, loaded) = config::live::startup_config(&base)?;
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
        let (auth, tls) = crate::auth::setup(&config.auth, config.listen, Arc::clone(&limiter))?;
        let health_listener = match config.auth.health_listen {
            Some(at) => Some(health::bind(at).await?),
            None => None,
        };

        let events = crate::api::events::EventHub::new(config.event_capacity);
        let engine = Engine::start(
            store.clone(),
            EngineOptions {
                retain: config.retain_generations,
                event_capacity: config.event_capacity,
                sink: Some(crate::api::events::engine_sink(events.clone())),
                max_served_metadata_bytes: config.max_served_metadata_bytes,
            },
        );
        let health = health::reporter().await;

        let (stop_tx, stop_rx) = watch::channel(false);
        let instance_id = instance_id(addr);
        // Attached before the first load, so the startup load is recorded too.
        let (auditor, audit_queue) = Auditor::new(config.audit_queue_capacity);
        engine.attach_audit(auditor.clone());
        let drain = Drain::default();
        drain.attach_audit(auditor.clone(), engine.clone());
        // Redis being down is not an error here: the subscriber connects in the background and
        // keeps retrying. Only a malformed URL stops startup.
        // An empty URL (e.g. `HOTPLANE_REDIS_URL=` in a compose file) means no bus, like unset.
        let redis_url = config.redis_url.as_deref().filter(|u| !u.is_empty());
        let (bus, bus_task) = match redis_url {
            // `--bus postgres` (validated: a PostgreSQL store, no Redis URL).
            _ if config.bus_mode == BusMode::Postgres => {
                let sink = bus_event_sink(events.clone());
                let opts = PgBusOptions {
                    instance_id: instance_id.clone(),
                    reconnect_min: config.bus_reconnect_min,
                    reconnect_max: config.bus_reconnect_max,
                    ping_interval: config.bus_ping_interval,
                    timeout: config.bus_timeout,
                };
                let (bus, task) =
                    Bus::start_postgres(opts, engine.clone(), Some(sink), stop_rx.clone());
                (bus, Some(task))
            }
            Some(url) => {
                let opts = bus_options(&config, url, &instance_id);
                let sink = bus_event_sink(events.clone());
                let (bus, task) = Bus::start(
                    opts,
                    engine.clone(),
                    Some(sink),
                    auditor.clone(),
                    stop_rx.clone(),
                )
                .context("starting the Redis bus; check --redis-url / HOTPLANE_REDIS_URL")?;
                (bus, Some(task))
            }
            None => (Bus::disabled(), None),
        };

        let live = Arc::new(LiveConfig::new(base, config.clone(), loaded.as_ref()));
        live.attach_rate_limiter(limiter);
        let status = StatusSources {
            engine: engine.clone(),
            live: Arc::clone(&live),
            drain,
            bus,
            hits: Arc::new(HitCounter::default()),
            audit: auditor,
            audit_retention_days: config.audit_retention_days,
            instance_id,
            started_at: Utc::now(),
        };
        let security = crate::auth::Security {
            tls: tls.clone(),
            auth: Arc::clone(auth.authenticator()),
        };
        let services = Services::new(&config, &status, security, &events);
        // Before the first load starts (below), so it is counted.
        let (admin, metrics_task) = match config.admin_listen {
            Some(at) => {
                let s = status.clone();
                let view: crate::admin::StatusSource =
                    Arc::new(move || crate::api::hot_reload_status(&s));
                let (admin, task) =
                    crate::admin::Admin::bind(at, Arc::clone(&view), &events, stop_rx.clone())
                        .await?;
                let dashboard = services.dashboard(&auth, view, &status);
                (Some(admin.with_dashboard(dashboard)), Some(task))
            }
            None => (None, None),
        };
        let mut background = vec![
            tokio::spawn(audit::writer::run(
                audit_queue,
                {
                    let engine = engine.clone();
                    Arc::new(move || engine.store())
                },
                audit::writer::WriterOptions {
                    instance: status.instance_id.clone(),
                    retention: (config.audit_retention_days > 0).then(|| {
                        Duration::from_secs(u64::from(config.audit_retention_days) * 86_400)
                    }),
                },
                stop_rx.clone(),
            )),
            tokio::spawn(crate::engine::initial::run(engine.clone(), stop_rx.clone())),
            tokio::spawn(crate::engine::prune::run(
                engine.clone(),
                (config.tombstone_retention_hours > 0).then(|| {
                    Duration::from_secs(u64::from(config.tombstone_retention_hours) * 3600)
                }),
                stop_rx.clone(),
            )),
            tokio::spawn(crate::api::events::forward_drain(
                status.clone(),
                events.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(health::watch_liveness(
                engine.clone(),
                config.liveness_load_timeout,
                health.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(health::follow(
                engine.clone(),
                status.drain.clone(),
                health.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(Arc::clone(&status.hits).run_flusher(
                engine.clone(),
                config.hit_flush_interval,
                config.hit_flush_batch,
                stop_rx.clone(),
            )),
            tokio::spawn(backstop::run(
                engine.clone(),
                live.poll_interval(),
                stop_rx.clone(),
            )),
        ];
        background.extend(bus_task);
        background.extend(metrics_task);
        let advertised = config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| addr.to_string());
        background.extend(status.bus.start_fleet(
            fleet::reporter(
                engine.clone(),
                status.drain.clone(),
                status.instance_id.clone(),
                advertised,
            ),
            engine,
            live.fleet_timing(),
            stop_rx,
        ));
        Ok(Application {
            listener,
            addr,
            health_listener,
            admin,
            tls,
            auth,
            status,
            services,
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

    /// The bound address of the admin listener (/metrics), when `--admin-listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// The TLS settings of the gRPC port, when TLS is on: `reload()` re-reads the certificate
    /// files for new connections.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
    }

    /// The swap engine, for tests and embedding.
    pub fn engine(&self) -> &Engine {
        &self.status.engine
    }

    /// This process's instance id.
    pub fn instance_id(&self) -> &str {
        &self.status.instance_id
    }

    /// A handle that re-reads the config file (what SIGHUP does), usable after `run_until_stopped`
    /// took the application.
    pub fn config_reloader(&self) -> ConfigReloader {
        self.services.reload.config_reloader.clone()
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
        let (status, services) = (&self.status, &self.services);
        // Metrics outermost (refusals are counted with their codes), then auth: a refused
        // request is neither counted in flight nor served.
        let metrics = self.admin.as_ref().map(|a| a.grpc_layer());
        let router = Server::builder()
            .http2_keepalive_interval(Some(self.config.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(self.config.http2_keepalive_timeout))
            .layer(metrics.unwrap_or_default())
            .layer(self.auth.clone())
            .layer(InFlightLayer::new(status.drain.clone()))
            .add_service(health::service(&self.health))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                pb::hot_reload_server::HotReloadServer::new(HotReloadApi::new(Arc::clone(
                    &services.reload,
                )))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                crate::api::wire::patterns_server::PatternsServer::new(PatternsApi::new(
                    Arc::clone(&services.patterns),
                ))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                pb::drain_server::DrainServer::new(DrainApi::new(Arc::clone(&services.drain)))
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
        let health_listener = match self.health_listener {
            Some((listener, addr)) => {
                info!(%addr, "plaintext health listening");
                Some(health::serve_only(listener, &self.health))
            }
            None => None,
        };
        let admin = self.admin.map(|a| a.serve(self.stop_tx.subscribe()));
        info!(addr = %self.addr, instance_id = %status.instance_id, tls = self.tls.is_some(), "hotplane listening");

        // Serve until the shutdown signal (or until the server fails).
        let signalled = tokio::select! {
            r = &mut serve => { r.context("serving gRPC")?; false }
            _ = shutdown => true,
        };
        // Every wait from here on ends by this deadline (what the drain leaves of it goes to the
        // background tasks), or shortly after it where a final flush deserves a moment.
        let timing = shutdown::Timing {
            delay: self.config.shutdown_delay,
            grace: self.config.shutdown_grace,
        };
        let deadline = timing.deadline(signalled);
        if signalled {
            let draining = shutdown::Draining {
                drain: &status.drain,
                health: &self.health,
                closing: &services.reload.closing,
                timing,
            };
            shutdown::drain(draining, &mut serve, close_tx)
                .await
                .context("serving gRPC")?;
        }
        self.stop_tx.send_replace(true);
        status.engine.shutdown();
        let left = shutdown::Leftovers {
            health_listener,
            background: self.background.into_iter().chain(admin).collect(),
            store: status.engine.store(),
        };
        shutdown::finish(left, deadline).await;
        info!("hotplane stopped");
        Ok(())
    }
}

/// Each gRPC service's state.
#[derive(Debug)]
struct Services {
    reload: Arc<ReloadState>,
    patterns: Arc<PatternsState>,
    drain: Arc<DrainState>,
}

impl Services {
    fn new(
        config: &Config,
        status: &StatusSources,
        security: crate::auth::Security,
        events: &EventHub,
    ) -> Services {
        let engine = &status.engine;
        let reload = ReloadState {
            engine: engine.clone(),
            bus: status.bus.clone(),
            fleetwide: Fleetwide::new(engine.clone(), status.bus.clone()),
            config_reloader: ConfigReloader::new(
                Arc::clone(&status.live),
                security,
                engine.clone(),
                status.audit.clone(),
                crate::api::events::config_sink(events.clone()),
            ),
            store_options: store_options(config),
            events: events.clone(),
            watch: WatchOptions {
                heartbeat: config.watch_heartbeat,
                max_age: config.watch_max_age,
            },
            watch_slots: StreamSlots::new(config.watch_max_streams_per_caller),
            closing: watch::channel(false).0,
            status: status.clone(),
        };
        let patterns = PatternsState {
            engine: engine.clone(),
            live: Arc::clone(&status.live),
            hits: Arc::clone(&status.hits),
            writes: PatternWrites::new(
                engine.clone(),
                Arc::clone(&status.live),
                status.bus.clone(),
                crate::api::events::write_sink(events.clone()),
            ),
            max_response_bytes: config.max_response_bytes,
        };
        let drain = DrainState {
            drain: status.drain.clone(),
            shutdown_grace: config.shutdown_grace,
        };
        Services {
            reload: Arc::new(reload),
            patterns: Arc::new(patterns),
            drain: Arc::new(drain),
        }
    }
}

impl Services {
    /// The dashboard on the admin listener: these services' handlers behind the gRPC port's
    /// credentials and rate limit.
    fn dashboard(
        &self,
        auth: &AuthLayer,
        status: crate::admin::StatusSource,
        sources: &StatusSources,
    ) -> crate::admin::Dashboard {
        crate::admin::Dashboard::new(crate::admin::DashboardParts {
            auth: Arc::clone(auth.authenticator()),
            limiter: Arc::clone(auth.limiter()),
            reload: HotReloadApi::new(Arc::clone(&self.reload)),
            drain: DrainApi::new(Arc::clone(&self.drain)),
            status,
            instance_id: sources.instance_id.clone(),
            lifecycle: sources.drain.clone(),
        })
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

//! The Redis bus: reload events between replicas, over one PubSub channel.
//!
//! - [`envelope`], [`signing`], [`verifier`]: the message format, its signature, and the checks
//!   every message passes (pure code).
//! - `subscriber`: one task that stays subscribed forever (reconnects with backoff, PINGs to
//!   catch half-open connections, runs a catch-up reload after every subscribe) and turns each
//!   valid message into an engine request.
//! - `publisher`: announces this replica's changes to the others.
//! - [`backstop`]: the periodic store poll that serves a lost message within one interval,
//!   with or without Redis.
//!
//! The bus never changes served state itself: it only asks the engine ([`Engine::request`]),
//! so bus reloads coalesce with every other source. It never blocks startup either: Redis being
//! down is a status, not an error.

pub mod backstop;
pub mod envelope;
pub mod fleet;
mod link;
mod publisher;
pub mod signing;
mod subscriber;
pub mod verifier;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::{sync::watch, task::JoinHandle};

pub use envelope::{Action, Reason};
pub use signing::Secret;

use crate::{engine::Engine, store::redact_url};

/// Bus settings (from `--redis-url` and the `--bus-*` flags).
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Redis URL: `redis://[user:password@]host[:port][/db]` or `rediss://` for TLS.
    pub redis_url: String,
    /// `rediss://`: PEM CA certificate(s) trusted instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// The PubSub channel.
    pub channel: String,
    /// Signed mode when set: every message must carry a valid `sig`, `ts` and `event_id`.
    pub secret: Option<Secret>,
    /// This instance's id, sent as `origin` and used to skip our own events.
    pub instance_id: String,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How often the subscription connection is PINGed.
    pub ping_interval: Duration,
    /// Longest a connect, subscribe, PING or PUBLISH may take before the connection is
    /// considered dead.
    pub timeout: Duration,
    /// Signed mode: how far `ts` may be from now, and how long event ids are remembered.
    pub replay_window: Duration,
    /// How often this instance writes its fleet state.
    pub fleet_heartbeat: Duration,
    /// How long a fleet state lives without a new heartbeat.
    pub fleet_ttl: Duration,
}

/// Why the bus could not start: bad settings only (an unreachable Redis is not an error).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL does not parse, or the CA file holds no usable certificate.
    #[error("setting up the Redis client for {url}: {source}")]
    Client {
        /// The URL without password.
        url: String,
        /// What redis-rs said.
        #[source]
        source: redis::RedisError,
    },
    /// The CA file cannot be read.
    #[error("reading the Redis CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a publish failed. The local change it announces has succeeded regardless.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing to Redis channel {channel} failed: {reason}")]
pub struct PublishError {
    /// The channel.
    pub channel: String,
    /// What went wrong.
    pub reason: String,
}

/// A change of the subscription's state, for whoever wants to announce it (WatchStatus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Subscribed (again, when `reconnect`); a catch-up reload was requested.
    Connected {
        /// Whether a previous subscription had been lost.
        reconnect: bool,
    },
    /// The subscription was lost, or the first attempt failed; retries go on.
    Disconnected {
        /// Why.
        error: String,
    },
}

/// Receives [`BusEvent`]s. Called on the subscriber task: it must not block.
pub type BusSink = Arc<dyn Fn(BusEvent) + Send + Sync>;

/// What `GetStatus` shows about the bus.
#[derive(Debug, Clone, Default)]
pub struct BusStatus {
    /// Whether a Redis URL is configured.
    pub enabled: bool,
    /// Whether the subscription is up now.
    pub connected: bool,
    /// The channel.
    pub channel: String,
    /// The Redis URL without password.
    pub redis_url: String,
    /// Whether messages must be signed.
    pub signed: bool,
    /// Since when the current subscription is up.
    pub connected_since: Option<DateTime<Utc>>,
    /// The most recent connection error (kept after reconnecting; see `last_error_at`).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the next connection attempt is due, while disconnected.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Subscriptions re-established after a lost connection.
    pub reconnects: u64,
    /// Messages received on the channel.
    pub messages_received: u64,
    /// Messages that became engine requests.
    pub messages_applied: u64,
    /// Rejected messages by reason (every reason listed, zeros included).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Our own events, skipped.
    pub self_skipped: u64,
    /// When the last message arrived.
    pub last_message_at: Option<DateTime<Utc>>,
    /// Events this instance published.
    pub published: u64,
    /// Publishes that failed.
    pub publish_failures: u64,
    /// The most recent publish error.
    pub last_publish_error: Option<String>,
}

/// Shared by the subscriber, the publisher and status readers. A std `Mutex`: held for a few
/// field updates, never across an `.await`.
struct Shared {
    /// Settings.
    opts: BusOptions,
    /// Told about connects and disconnects.
    sink: Option<BusSink>,
    /// The status being kept.
    status: Mutex<BusStatus>,
    /// Announces changes.
    publisher: publisher::Publisher,
    /// The command connection (publishing, fleet heartbeats).
    link: link::Link,
    /// The fleet as last read by the heartbeat.
    fleet: Mutex<fleet::FleetView>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn emit(&self, event: BusEvent) {
        if let Some(sink) = &self.sink {
            sink(event);
        }
    }

    fn status(&self) -> MutexGuard<'_, BusStatus> {
        // Counters stay usable even if a holder panicked.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fleet(&self) -> MutexGuard<'_, fleet::FleetView> {
        self.fleet.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to the bus; disabled when no Redis URL is configured. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Bus {
    /// `None` when disabled.
    shared: Option<Arc<Shared>>,
}

impl Bus {
    /// No bus: single-instance mode.
    pub fn disabled() -> Bus {
        Bus { shared: None }
    }

    /// Starts the subscriber task (it connects in the background and retries forever) and
    /// returns the handle and the task; `sink` hears of connects and disconnects. Fails only
    /// for bad settings (a malformed URL, an unreadable CA file).
    pub fn start(
        opts: BusOptions,
        engine: Engine,
        sink: Option<BusSink>,
        stop: watch::Receiver<bool>,
    ) -> Result<(Bus, JoinHandle<()>), BusError> {
        // rediss:// uses rustls, which needs a process-wide crypto provider. Installing fails
        // only when one is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match &opts.ca_file {
            None => redis::Client::open(opts.redis_url.as_str()),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| BusError::CaFile {
                    path: path.display().to_string(),
                    source,
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(opts.redis_url.as_str(), certs)
            }
        }
        .map_err(|source| BusError::Client {
            url: redact_url(&opts.redis_url),
            source,
        })?;
        let status = BusStatus {
            enabled: true,
            channel: opts.channel.clone(),
            redis_url: redact_url(&opts.redis_url),
            signed: opts.secret.is_some(),
            rejected: Reason::REJECTIONS.iter().map(|r| (r.as_str(), 0)).collect(),
            ..BusStatus::default()
        };
        let shared = Arc::new(Shared {
            publisher: publisher::Publisher::new(&opts),
            link: link::Link::new(client.clone(), opts.timeout),
            fleet: Mutex::new(fleet::FleetView::default()),
            opts,
            sink,
            status: Mutex::new(status),
        });
        let task = tokio::spawn(subscriber::run(Arc::clone(&shared), client, engine, stop));
        Ok((
            Bus {
                shared: Some(shared),
            },
            task,
        ))
    }

    /// Starts the fleet heartbeat (`None` when the bus is disabled): `reporter` says what this
    /// instance serves; a heartbeat follows every successful load of `engine`.
    pub fn start_fleet(
        &self,
        reporter: fleet::Reporter,
        engine: Engine,
        stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        let shared = Arc::clone(self.shared.as_ref()?);
        Some(tokio::spawn(fleet::run(shared, reporter, engine, stop)))
    }

    /// The live instances as the last heartbeat read them (`None` when the bus is disabled).
    pub fn fleet(&self) -> Option<fleet::FleetView> {
        self.shared.as_ref().map(|s| s.fleet().clone())
    }

    /// Waits up to `wait` until every live instance serves at least store `revision`
    /// (`None` when the bus is disabled).
    pub async fn wait_for_fleet(&self, revision: i64, wait: Duration) -> Option<fleet::FleetWait> {
        let shared = self.shared.as_ref()?;
        Some(fleet::wait(shared, revision, wait).await)
    }

    /// Whether a Redis URL is configured.
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// A snapshot of the bus status (`enabled: false` and nothing else when disabled).
    pub fn status(&self) -> BusStatus {
        match &self.shared {
            Some(s) => s.status().clone(),
            None => BusStatus::default(),
        }
    }

    /// Announces a change that this instance has already applied and served: a `reload` of
    /// `pattern_id` (or of whatever changed, without one) carrying our id as `origin`, so the
    /// other replicas reload and we skip it. `Ok` without publishing when the bus is disabled.
    pub async fn announce(
        &self,
        pattern_id: Option<i64>,
        revision: i64,
    ) -> Result<(), PublishError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let result = shared
            .publisher
            .publish(&shared.link, pattern_id, revision)
            .await;
        let mut st = shared.status();
        match &result {
            Ok(()) => st.published += 1,
            Err(e) => {
                st.publish_failures += 1;
                st.last_publish_error = Some(e.reason.clone());
                drop(st);
                tracing::warn!(
                    error = %e,
                    pattern_id,
                    "could not announce a change on the bus: the other replicas serve it after \
                     their next poll or catch-up. Check Redis (see GetStatus.bus)"
                );
            }
        }
        result
    }
}

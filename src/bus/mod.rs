//! The Redis bus: reload events between replicas, over one PubSub channel.
//!
//! - [`envelope`], [`signing`], [`verifier`]: the message format, its signature, and the checks
//!   every message passes (pure code).
//! - `subscriber`: one task that stays subscribed forever (reconnects with backoff, PINGs to
//!   catch half-open connections, runs a catch-up reload after every subscribe) and turns each
//!   valid message into an engine request.
//! - `publisher`: announces this replica's changes to the others.
//! - `follow`: follows other replicas' broadcast rollbacks (by content hash).
//! - `sentinel`: Redis Sentinel (`redis+sentinel://` URLs): the master is asked of the
//!   sentinels at every connection attempt (the subscriber's and the command link's), never
//!   cached, so a failover is followed like any reconnect, catch-up delta included.
//! - `cluster`: Redis Cluster (`redis+cluster://` URLs): subscribed on any node (classic PubSub
//!   is broadcast cluster-wide), commands routed by slot, fleet keys hash-tagged.
//! - [`backstop`]: the periodic store poll that serves a lost message within one interval,
//!   with or without Redis.
//! - `pg`, `pg_fleet`: the PostgreSQL bus (`--bus postgres`), the store's LISTEN/NOTIFY and a
//!   fleet table instead of Redis; same engine requests, status and fleet view.
//!
//! The bus never changes served state itself: it only asks the engine ([`Engine::request`],
//! [`Engine::rollback_to_hash`]), so bus reloads coalesce with every other source. It never
//! blocks startup either: Redis being down is a status, not an error.
//!
//! **Swapping the connection** ([`Bus::swap`], `Reload(TARGET_BUS)`, in `swap`): the new Redis URL is
//! connected and subscribed first (any failure leaves everything as it was); then the
//! subscriber task adopts it: the publisher and the fleet heartbeat switch to it, the old
//! connection is unsubscribed, the messages it had received are handled, and only then is it
//! closed. So every message published meanwhile reaches one of the two subscriptions; one that
//! reached both (same Redis) is applied once when it carries an `event_id`, and coalesces in
//! the engine otherwise (every action is idempotent).

pub mod backstop;
mod cluster;
mod conn;
pub mod envelope;
pub mod fleet;
mod follow;
mod intake;
mod link;
pub mod memory;
mod outbox;
mod pg;
mod pg_fleet;
mod publisher;
mod reconnect;
mod sentinel;
pub mod signing;
mod status;
mod subscriber;
mod swap;
mod target;
pub mod verifier;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};

pub use envelope::{Action, Reason};
pub use pg::{APPLICATION_NAME as PG_APPLICATION_NAME, CHANNEL as PG_CHANNEL, PgBusOptions};
pub use signing::Secret;
pub use status::{BusEvent, BusSink, BusStatus};
pub use swap::{SwapError, Swapped};

use crate::{audit::Auditor, engine::Engine, snapshot::scheme, store::Cursor};
use conn::Conn;

/// Bus settings (from `--redis-url` and the `--bus-*` flags).
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Redis URL: `redis://[user:password@]host[:port][/db]`, `redis+sentinel://` for Redis
    /// Sentinel (the form is in `sentinel`) or `redis+cluster://` for Redis Cluster (in
    /// `cluster`); `rediss://`, `rediss+sentinel://` and `rediss+cluster://` are the same over
    /// TLS, to every server the URL leads to.
    pub redis_url: String,
    /// TLS only (`rediss…://`): PEM CA certificate(s) trusted instead of the system's roots,
    /// for every server the URL leads to (sentinels, master, cluster nodes).
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
    /// Unsigned mode: whether messages may pin (`rollback`) or bypass the store (`invalidate`).
    pub allow_unsigned_rollback: bool,
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
    /// A `redis+sentinel://` or `redis+cluster://` URL that does not parse (`bus::sentinel`
    /// and `bus::cluster` describe the forms).
    #[error("the Redis URL {url}: {reason}")]
    Url {
        /// The URL without passwords.
        url: String,
        /// What is wrong with it.
        reason: String,
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

/// Shared by the subscriber, the publisher and status readers. A std `Mutex`: held for a few
/// field updates, never across an `.await`.
struct Shared {
    /// Settings.
    opts: BusOptions,
    /// Told about connects, disconnects and swaps.
    sink: Option<BusSink>,
    /// Records connection swaps in the audit trail.
    audit: Auditor,
    /// What this instance serves (the generation an audit row names).
    engine: Engine,
    /// The status being kept.
    status: Mutex<BusStatus>,
    /// Announces changes.
    publisher: publisher::Publisher,
    /// Announcements waiting to be published (handlers never wait for Redis).
    outbox: outbox::Outbox,
    /// The current connection (swapped by `Bus::reload`, only by the subscriber task).
    conn: ArcSwap<Conn>,
    /// The fleet as last read by the heartbeat.
    fleet: Mutex<fleet::FleetView>,
    /// Asks the fleet task for a heartbeat now (after a swap, or a rollback not followed).
    fleet_kick: Notify,
    /// Hands a new, subscribed connection to the subscriber task.
    handovers: mpsc::Sender<subscriber::Handover>,
    /// One swap at a time.
    swapping: tokio::sync::Mutex<()>,
    /// Set while a swap subscribes a new connection, until the old one is drained: event ids
    /// handled meanwhile may reach the new subscription too (see `subscriber::Handler`).
    overlap: std::sync::atomic::AtomicBool,
    /// The last broadcast rollback not followed; reported in the fleet while the generation
    /// served then is served.
    rollback_error: Mutex<Option<Refusal>>,
}

/// A broadcast rollback this instance could not follow.
#[derive(Debug, Clone)]
struct Refusal {
    /// The generation served when it was refused.
    generation: u64,
    /// The content hash asked for.
    content_hash: String,
    /// Why it could not be followed.
    error: String,
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

    fn rollback_error(&self) -> MutexGuard<'_, Option<Refusal>> {
        self.rollback_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The current connection.
    fn conn(&self) -> Arc<Conn> {
        self.conn.load_full()
    }

    /// Publishes `what`, counting and logging the outcome.
    async fn announce(
        &self,
        what: publisher::Announcement,
        revision: i64,
    ) -> Result<(), PublishError> {
        let conn = self.conn();
        let result = self.publisher.publish(&conn.link, &what, revision).await;
        let mut st = self.status();
        match &result {
            Ok(()) => st.published += 1,
            Err(e) => {
                st.publish_failures += 1;
                st.last_publish_error = Some(e.reason.clone());
                drop(st);
                tracing::warn!(
                    error = %e,
                    announcement = ?what,
                    "could not announce a change on the bus: the other replicas serve it after \
                     their next poll or catch-up. Check Redis (see GetStatus.bus)"
                );
            }
        }
        result
    }
}

/// Handle to the bus: the Redis bus, the PostgreSQL bus (`pg`), or disabled (no Redis URL and
/// not `--bus postgres`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Bus {
    /// The Redis bus; `None` when disabled or PostgreSQL.
    shared: Option<Arc<Shared>>,
    /// The PostgreSQL bus; `None` when disabled or Redis.
    pg: Option<Arc<pg::PgBus>>,
}

impl Bus {
    /// No bus: single-instance mode.
    pub fn disabled() -> Bus {
        Bus::default()
    }

    /// Starts the PostgreSQL bus (`--bus postgres`): a task that LISTENs on the engine's store
    /// forever (see `pg`); returns the handle and the task. Nothing can fail here: a database
    /// that cannot be reached, or a store that is not PostgreSQL, is a status, retried.
    pub fn start_postgres(
        opts: PgBusOptions,
        engine: Engine,
        sink: Option<BusSink>,
        stop: watch::Receiver<bool>,
    ) -> (Bus, JoinHandle<()>) {
        let bus = Arc::new(pg::PgBus::new(opts, engine, sink));
        let task = tokio::spawn(pg::run(Arc::clone(&bus), stop));
        (
            Bus {
                shared: None,
                pg: Some(bus),
            },
            task,
        )
    }

    /// Starts the subscriber task (it connects in the background and retries forever) and
    /// returns the handle and the task; `sink` hears of connects, disconnects and swaps, and
    /// swaps are recorded on `audit`. Fails only for bad settings (a malformed URL, an
    /// unreadable CA file).
    pub fn start(
        opts: BusOptions,
        engine: Engine,
        sink: Option<BusSink>,
        audit: Auditor,
        stop: watch::Receiver<bool>,
    ) -> Result<(Bus, JoinHandle<()>), BusError> {
        let conn = Conn::new(&opts.redis_url, opts.ca_file.as_deref(), opts.timeout)?;
        let status = BusStatus {
            enabled: true,
            channel: opts.channel.clone(),
            redis_url: conn.redacted(),
            signed: opts.secret.is_some(),
            rejected: Reason::REJECTIONS.iter().map(|r| (r.as_str(), 0)).collect(),
            ..BusStatus::default()
        };
        let (handovers, handover_rx) = mpsc::channel(1);
        let (outbox, queued) = outbox::Outbox::new();
        let shared = Arc::new(Shared {
            publisher: publisher::Publisher::new(&opts),
            outbox,
            conn: ArcSwap::from_pointee(conn),
            fleet: Mutex::new(fleet::FleetView::default()),
            fleet_kick: Notify::new(),
            handovers,
            swapping: tokio::sync::Mutex::new(()),
            overlap: std::sync::atomic::AtomicBool::new(false),
            rollback_error: Mutex::new(None),
            opts,
            sink,
            audit,
            engine: engine.clone(),
            status: Mutex::new(status),
        });
        let (asks, ask_rx) = watch::channel(None);
        let subscriber = subscriber::run(
            Arc::clone(&shared),
            engine.clone(),
            handover_rx,
            asks,
            stop.clone(),
        );
        let outbox = outbox::run(Arc::clone(&shared), queued, stop.clone());
        let follower = follow::run(Arc::clone(&shared), engine, ask_rx, stop);
        let task = tokio::spawn(async move {
            tokio::join!(subscriber, follower, outbox);
        });
        Ok((
            Bus {
                shared: Some(shared),
                pg: None,
            },
            task,
        ))
    }

    /// Starts the fleet heartbeat (`None` when the bus is disabled): `reporter` says what this
    /// instance serves; a heartbeat follows every successful load of `engine`; `timing` is
    /// the live heartbeat interval and TTL.
    pub fn start_fleet(
        &self,
        reporter: fleet::Reporter,
        engine: Engine,
        timing: watch::Receiver<fleet::FleetTiming>,
        stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        if let Some(pg) = &self.pg {
            let pg = Arc::clone(pg);
            return Some(tokio::spawn(pg_fleet::run(
                pg, reporter, engine, timing, stop,
            )));
        }
        let shared = Arc::clone(self.shared.as_ref()?);
        Some(tokio::spawn(fleet::run(
            shared, reporter, engine, timing, stop,
        )))
    }

    /// The live instances as the last heartbeat read them (`None` when the bus is disabled).
    pub fn fleet(&self) -> Option<fleet::FleetView> {
        if let Some(pg) = &self.pg {
            return Some(pg.fleet_view());
        }
        self.shared.as_ref().map(|s| s.fleet().clone())
    }

    /// Waits up to `wait` until every live instance serves a store state that includes every
    /// commit `position` includes (`None` when the bus is disabled). Compared in commit order
    /// ([`Cursor::covers`]), never by revision: a member that read a write with a higher
    /// transaction id before a lower one committed is not past the lower one. A member that
    /// reports no position (pinned, not loaded yet, or an older version) is not converged.
    pub async fn wait_for_fleet(
        &self,
        position: &Cursor,
        wait: Duration,
    ) -> Option<fleet::FleetWait> {
        let verdict = |m: &fleet::Member| fleet::Verdict::from(m.has_read(position));
        self.fleet_wait(wait, verdict).await
    }

    /// Waits up to `wait` until every live instance serves `content_hash`, or reported that it
    /// cannot roll back to it (`None` when the bus is disabled).
    pub async fn wait_for_content(
        &self,
        content_hash: &str,
        wait: Duration,
    ) -> Option<fleet::FleetWait> {
        let verdict = |m: &fleet::Member| {
            let ours =
                scheme::compare_with_ours(content_hash, &m.content_hash, m.content_hash_scheme);
            if ours == scheme::Comparison::Same {
                fleet::Verdict::Converged
            } else if m.rollback_hash.as_deref() == Some(content_hash) {
                fleet::Verdict::Failed
            } else {
                fleet::Verdict::Pending
            }
        };
        self.fleet_wait(wait, verdict).await
    }

    /// Reads the fleet (from whichever registry this bus keeps) until no live member is
    /// pending by `verdict`, or `wait` ends; `None` when the bus is disabled.
    async fn fleet_wait(
        &self,
        wait: std::time::Duration,
        verdict: impl Fn(&fleet::Member) -> fleet::Verdict,
    ) -> Option<fleet::FleetWait> {
        if let Some(pg) = &self.pg {
            return Some(fleet::wait(|| pg.read_fleet(), wait, verdict).await);
        }
        let shared = self.shared.as_ref()?;
        let keys = fleet::Keys::new(&shared.opts.channel);
        let read = || {
            // The current connection on every read: a swap during the wait moves it along.
            let (conn, keys) = (shared.conn(), keys.clone());
            async move { keys.read(&conn.link).await }
        };
        Some(fleet::wait(read, wait, verdict).await)
    }

    /// Whether a bus is configured (Redis or PostgreSQL).
    pub fn enabled(&self) -> bool {
        self.shared.is_some() || self.pg.is_some()
    }

    /// Whether this bus can broadcast rollbacks: only the Redis bus can (the PostgreSQL bus
    /// carries store changes only).
    pub fn carries_rollbacks(&self) -> bool {
        self.shared.is_some()
    }

    /// A snapshot of the bus status (`enabled: false` and nothing else when disabled).
    pub fn status(&self) -> BusStatus {
        match (&self.shared, &self.pg) {
            (Some(s), _) => s.status().clone(),
            (None, Some(pg)) => pg.status().clone(),
            (None, None) => BusStatus::default(),
        }
    }

    /// Announces a change that this instance has already applied and served: a `reload` of
    /// `pattern_id` (or of whatever changed, without one) carrying our id as `origin`, so the
    /// other replicas reload and we skip it. `Ok` without publishing when the bus is disabled.
    /// On the PostgreSQL bus the store's trigger announced the write at commit already; this
    /// sends one more NOTIFY (in the background), so that every replica reads a store state at
    /// least as new as ours: what a fleet wait after `Reload(broadcast)` needs.
    pub async fn announce(
        &self,
        pattern_id: Option<i64>,
        revision: i64,
    ) -> Result<(), PublishError> {
        match (&self.shared, &self.pg) {
            (Some(shared), _) => {
                let what = publisher::Announcement::Reload(pattern_id);
                shared.outbox.push(shared, what, revision)
            }
            (None, Some(pg)) => {
                pg::announce(pg);
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    /// Announces a rollback this instance has made: the other replicas serve their retained
    /// generation with `content_hash` (pinned). `Ok` without publishing when the bus is
    /// disabled.
    pub async fn announce_rollback(
        &self,
        content_hash: &str,
        revision: i64,
    ) -> Result<(), PublishError> {
        match &self.shared {
            None => Ok(()),
            Some(shared) => {
                let what = publisher::Announcement::Rollback(content_hash.to_owned());
                shared.outbox.push(shared, what, revision)
            }
        }
    }
}

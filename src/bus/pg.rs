//! The PostgreSQL bus (`--bus postgres`): the store's own LISTEN/NOTIFY instead of Redis.
//!
//! - **Who announces.** Nobody in hotplane: statement-level triggers on `auto_learned_patterns`
//!   (migration `20261207000002_bus_notify.sql`) NOTIFY channel [`CHANNEL`] with the schema's
//!   name whenever a statement changes served content, whoever ran it: plain SQL from another
//!   service, a hotplane replica, a migration script. One notification per statement (PostgreSQL
//!   also folds identical ones within a transaction), none for hit-counter updates. NOTIFY is
//!   transactional: it is delivered at commit, never for a rolled-back write.
//! - **Who listens.** Each replica holds one dedicated connection (not from the store's pool;
//!   `application_name` [`APPLICATION_NAME`] in `pg_stat_activity`) LISTENing on [`CHANNEL`].
//!   A notification naming our schema becomes a `Scope::Delta` request with [`Source::Bus`]:
//!   the same request, source and coalescing as a Redis `reload` without a pattern id, so a
//!   burst of 10,000 commits costs a handful of loads. Notifications for other schemas of the
//!   same database (and other replicas' pings) are ignored.
//! - **Reconnects.** PostgreSQL keeps nothing for a listener that was away, so the connection is
//!   re-made forever with the Redis subscriber's backoff (`reconnect`), and every (re)LISTEN is
//!   followed by a catch-up delta, requested before the status says connected. A store swap
//!   (`Reload(TARGET_STORE)`) moves the LISTEN to the new database within one ping interval.
//! - **Half-open connections.** Every `--bus-ping-interval` the replica NOTIFYs a ping of its own
//!   through the store's pool and expects to hear it on the LISTEN connection within
//!   `--bus-timeout`; if it does not, the connection is dropped and re-made (as after a lost
//!   Redis PING). A ping that cannot be sent (the database is down) proves nothing and is not
//!   counted against the connection.
//! - **What it does not carry.** Rollbacks (`Rollback(broadcast)` needs the Redis bus) and
//!   `Reload(TARGET_BUS)` swaps: there is no connection of its own to swap, it follows the store.
//!   Fleet membership is a table (`pg_fleet`).
//!
//! Like the Redis bus it never changes served state itself and never blocks startup: a database
//! that is down is a status (`GetStatus.bus.connected`, `last_error`), and the backstop poll
//! still runs.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use chrono::Utc;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::{BusEvent, BusSink, BusStatus, fleet, reconnect::Reconnect};
use crate::{
    audit::Origin,
    engine::{Engine, LoadRequest, Scope, Source},
    store::Store,
};

/// The NOTIFY channel of every schema (the payload names the schema): channel names are
/// identifiers of at most 63 bytes, too short to hold any schema name beside a prefix.
pub const CHANNEL: &str = "hotplane_patterns";

/// The `application_name` of each replica's LISTEN connection.
pub const APPLICATION_NAME: &str = "hotplane-bus";

/// Settings of the PostgreSQL bus (the `--bus-*` flags that apply to it).
#[derive(Debug, Clone)]
pub struct PgBusOptions {
    /// This instance's id (its fleet row; its own pings).
    pub instance_id: String,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How often the LISTEN connection is proven alive by a ping of our own.
    pub ping_interval: Duration,
    /// Longest a connect, LISTEN, ping or fleet statement may take.
    pub timeout: Duration,
}

/// Shared by the listener task, the fleet heartbeat and status readers.
pub(super) struct PgBus {
    /// Settings.
    pub(super) opts: PgBusOptions,
    /// Whose store is listened to, and who is asked for deltas.
    pub(super) engine: Engine,
    /// Told about connects and disconnects (WatchStatus).
    sink: Option<BusSink>,
    /// The status being kept. A std `Mutex`: held for a few field updates, never across an
    /// `.await`.
    status: Mutex<BusStatus>,
    /// The fleet as last read by the heartbeat.
    pub(super) fleet: Mutex<fleet::FleetView>,
    /// Never notified in this mode (nothing asks for an early heartbeat but loads); the fleet
    /// schedule wants one.
    pub(super) fleet_kick: Notify,
}

impl std::fmt::Debug for PgBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBus")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl PgBus {
    pub(super) fn new(opts: PgBusOptions, engine: Engine, sink: Option<BusSink>) -> PgBus {
        let status = BusStatus {
            enabled: true,
            channel: CHANNEL.to_owned(),
            rejected: super::Reason::REJECTIONS
                .iter()
                .map(|r| (r.as_str(), 0))
                .collect(),
            ..BusStatus::default()
        };
        PgBus {
            opts,
            engine,
            sink,
            status: Mutex::new(status),
            fleet: Mutex::new(fleet::FleetView::default()),
            fleet_kick: Notify::new(),
        }
    }

    pub(super) fn emit(&self, event: BusEvent) {
        if let Some(sink) = &self.sink {
            sink(event);
        }
    }

    pub(super) fn status(&self) -> MutexGuard<'_, BusStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn fleet_view(&self) -> fleet::FleetView {
        self.fleet.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The pool and schema of `store`, or why it cannot carry this bus.
pub(super) fn postgres(store: &Store) -> Result<(&PgPool, &str), String> {
    match store {
        Store::Postgres(pg) => Ok((pg.pool(), pg.schema())),
        Store::Sqlite(_) => Err(
            "the store is SQLite: the PostgreSQL bus needs a PostgreSQL \
                                 store (swap back with Reload(TARGET_STORE))"
                .into(),
        ),
    }
}

/// Asks every replica for a delta, as the trigger does, through the store's pool: in the
/// background, bounded by `--bus-timeout`, counted in the status as a publish.
pub(super) fn announce(bus: &Arc<PgBus>) {
    let bus = Arc::clone(bus);
    tokio::spawn(async move {
        let store = bus.engine.store();
        let sent = match postgres(&store) {
            Ok((pool, schema)) => {
                let notify = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(schema)
                    .execute(pool);
                match tokio::time::timeout(bus.opts.timeout, notify).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("NOTIFY failed: {e}")),
                    Err(_) => Err(format!("NOTIFY took over {:?}", bus.opts.timeout)),
                }
            }
            Err(e) => Err(e),
        };
        let mut st = bus.status();
        match sent {
            Ok(()) => st.published += 1,
            Err(e) => {
                st.publish_failures += 1;
                st.last_publish_error = Some(e.clone());
                drop(st);
                warn!(error = %e, "could not NOTIFY the other replicas; they read the change \
                    from the trigger's own notification, their next catch-up or the poll");
            }
        }
    });
}

/// Why serving one LISTEN connection ended.
enum Ended {
    /// The process is stopping.
    Stopped,
    /// The store was swapped: listen on the new one at once.
    Moved,
    /// The connection was lost (the text says how).
    Lost(String),
}

/// Keeps a LISTEN connection up until `stop` turns true.
pub(super) async fn run(bus: Arc<PgBus>, mut stop: watch::Receiver<bool>) {
    let opts = &bus.opts;
    let mut backoff = Reconnect::new(opts.reconnect_min, opts.reconnect_max, Instant::now());
    let mut listened_before = false;
    // Whether a Disconnected event is owed: once per loss, not once per retry.
    let mut up = true;
    loop {
        let store = bus.engine.store();
        let node = database_node(store.url());
        let attempt = tokio::select! {
            r = listen(&store, opts.timeout) => r,
            _ = stopped(&mut stop) => return,
        };
        let error = match attempt {
            Ok(listener) => {
                backoff.subscribed(Instant::now());
                // Before the status says "connected": whoever waits for that finds the
                // catch-up already queued.
                bus.engine.request(
                    LoadRequest {
                        scope: Scope::Delta,
                        source: Source::Bus,
                        reason: "postgres bus listening: catch-up".into(),
                    },
                    Some(Origin::reload("bus:postgres")),
                );
                let reconnect = listened_before;
                {
                    let mut st = bus.status();
                    st.connected = true;
                    st.connected_since = Some(Utc::now());
                    st.next_retry_at = None;
                    if reconnect {
                        st.reconnects += 1;
                    }
                }
                info!(
                    channel = CHANNEL,
                    reconnect, "postgres bus listening; catch-up reload requested"
                );
                bus.emit(BusEvent::Connected {
                    reconnect,
                    node: node.clone(),
                });
                listened_before = true;
                up = true;
                let ended = serve(&bus, listener, &store, &mut stop).await;
                {
                    let mut st = bus.status();
                    st.connected = false;
                    st.connected_since = None;
                }
                match ended {
                    Ended::Stopped => return,
                    Ended::Moved => {
                        info!("the store was swapped: the postgres bus listens on the new one");
                        continue;
                    }
                    Ended::Lost(e) => format!("LISTEN connection lost: {e}"),
                }
            }
            Err(e) => e,
        };
        if std::mem::replace(&mut up, false) {
            bus.emit(BusEvent::Disconnected {
                error: error.clone(),
                node: node.clone(),
            });
        }
        let delay = backoff.next_delay(Instant::now());
        bus.status().retrying(&error, delay);
        warn!(
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "postgres bus not listening; serving on, retrying. Changes made meanwhile are picked \
             up by the catch-up reload after it listens again (and by the poll)"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Opens a dedicated connection to `store`'s database and LISTENs on [`CHANNEL`], within
/// `timeout`.
async fn listen(store: &Store, timeout: Duration) -> Result<PgListener, String> {
    let Store::Postgres(pg) = store else {
        return Err(postgres(store).err().unwrap_or_default());
    };
    // A pool of one, only because PgListener is built on one; it never hands the connection to
    // anyone else, and the listener is dropped (not reconnected by sqlx) when it is lost, so
    // every LISTEN is followed by our catch-up.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(timeout)
        .connect_lazy_with(pg.connect_options_named(APPLICATION_NAME));
    let attempt = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(e)) => Err(format!("connecting or LISTENing: {e}")),
        Err(_) => Err(format!("connecting or LISTENing took over {timeout:?}")),
    }
}

/// Aborts a task when dropped (the reader, whichever way serving ends).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves one LISTEN connection: a reader task turns notifications into requests, while this
/// loop pings, notices a store swap, and stops.
async fn serve(
    bus: &Arc<PgBus>,
    listener: PgListener,
    store: &Arc<Store>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let Ok((pool, schema)) = postgres(store) else {
        return Ended::Moved;
    };
    let (ping_interval, timeout) = (bus.opts.ping_interval, bus.opts.timeout);
    let token = format!("ping:{}", bus.opts.instance_id);
    let (pong_tx, mut pong) = watch::channel(());
    // Its own task: `try_recv` is not cancelled by the pings and ticks below (a notification
    // half read must not be lost), only with the whole connection.
    let mut reader = tokio::spawn(read(
        Arc::clone(bus),
        listener,
        schema.to_owned(),
        token.clone(),
        pong_tx,
    ));
    let _abort = AbortOnDrop(reader.abort_handle());
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut awaiting: Option<Instant> = None;
    loop {
        tokio::select! {
            ended = &mut reader => return Ended::Lost(match ended {
                Ok(why) => why,
                Err(e) => format!("the listener task failed: {e}"),
            }),
            Ok(()) = pong.changed() => awaiting = None,
            _ = tick.tick() => {
                if !Arc::ptr_eq(&bus.engine.store(), store) {
                    return Ended::Moved;
                }
                if let Some(sent) = awaiting && sent.elapsed() > timeout {
                    return Ended::Lost(format!(
                        "our own ping was not heard back within {timeout:?} (half-open \
                         connection?)"
                    ));
                }
                if awaiting.is_none() {
                    let ping = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(CHANNEL)
                        .bind(&token)
                        .execute(pool);
                    if let Ok(Ok(_)) = tokio::time::timeout(timeout, ping).await {
                        awaiting = Some(Instant::now());
                    }
                }
            }
            _ = stopped(stop) => return Ended::Stopped,
        }
    }
}

/// Receives notifications until the connection is lost; returns how it was lost.
async fn read(
    bus: Arc<PgBus>,
    mut listener: PgListener,
    schema: String,
    token: String,
    pong: watch::Sender<()>,
) -> String {
    loop {
        let n = match listener.try_recv().await {
            Ok(Some(n)) => n,
            Ok(None) => return "closed by the server".into(),
            Err(e) => return e.to_string(),
        };
        if n.payload() == token {
            pong.send_replace(());
            continue;
        }
        if n.payload() != schema {
            // Another schema's change, or another replica's ping.
            continue;
        }
        {
            let mut st = bus.status();
            st.messages_received += 1;
            st.messages_applied += 1;
            st.last_message_at = Some(Utc::now());
        }
        bus.engine.request(
            LoadRequest {
                scope: Scope::Delta,
                source: Source::Bus,
                reason: "postgres bus: notify".into(),
            },
            Some(Origin::reload("bus:postgres")),
        );
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

/// The database a store URL names, as `host:port` (what the bus status calls its node); the
/// redacted URL when it does not parse.
fn database_node(url: &str) -> String {
    let parsed = url::Url::parse(url).ok();
    match parsed
        .as_ref()
        .and_then(|u| Some((u.host_str()?, u.port().unwrap_or(5432))))
    {
        Some((host, port)) => format!("{host}:{port}"),
        None => crate::store::redact_url(url),
    }
}

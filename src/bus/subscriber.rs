//! The subscriber task: stays subscribed to the bus channel for the life of the process.
//!
//! - It never gives up: a failed connect or a lost connection is retried after a jittered,
//!   capped exponential backoff, shaped by `reconnect`: the first retries of an outage are
//!   capped at about a second, and the backoff starts over only after a connection stayed
//!   healthy for a while (a flapping Redis is not hammered).
//! - It notices half-open connections (a peer that stopped answering without closing the
//!   socket): the subscription connection is PINGed every `ping_interval` and is dropped when a
//!   reply takes longer than `timeout`. RESP2 PubSub connections accept PING while subscribed.
//! - Where it subscribes is asked of the connection's target at every attempt (`conn`): the
//!   one Redis, the master the sentinels name now (`sentinel`; while subscribed, every PING
//!   tick also checks that they still name this node), or the next node of a cluster
//!   (`cluster`). The node is in the status (`node`, `node_changes`) and in the events.
//! - After every subscribe, it asks the engine for a catch-up delta: Redis keeps nothing for a
//!   disconnected subscriber, so whatever was published meanwhile is found in the store instead.
//! - Messages reach the handler through a bounded intake (`intake`): a flood faster than the
//!   handler is dropped and counted (`overflow`) past a fixed queue, and one catch-up delta
//!   stands in for the dropped messages, so memory stays bounded however fast Redis sends.
//! - Once a burst of messages is over, the allocator is asked to give back the memory it freed
//!   (`memory`): glibc keeps it otherwise, and a flood would leave the process that much larger.
//! - Each valid message becomes an engine request and nothing more (fire-and-forget, so a burst
//!   coalesces in the engine's single flight); a `rollback` goes to the follower (`follow`).
//!   Bad messages are counted by reason, logged at most once per reason per [`WARN_EVERY`], and
//!   dropped: they never reach the engine.
//! - It adopts a new connection when `Bus::reload` hands one over (already subscribed): the
//!   current connection is switched first, then the old subscription is unsubscribed and what
//!   it had received is handled before it is dropped (see [`Handover`]).

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::Poll,
    time::{Duration, Instant},
};

use chrono::Utc;
use redis::aio::{PubSub, PubSubStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tracing::{debug, info, warn};

use super::{
    BusEvent, Conn, Shared,
    envelope::{Action, Envelope, Reason, Rejected, decode, reject},
    follow::Ask,
    intake::{Intake, Taken},
    memory::{self, Burst},
    publisher::Announcement,
    reconnect::Reconnect,
    target::Target,
    verifier::{REPLAY_MEMORY, Verifier},
};
use crate::engine::{Engine, LoadRequest, Scope, Source};

/// At most one warning per rejection reason per this long (the rest are counted).
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Longest `origin` quoted in a generation's reason.
const MAX_ORIGIN_IN_REASON: usize = 64;

/// Most event ids of an old subscription remembered to skip their copies on the new one.
const MAX_HANDOVER_IDS: usize = 4096;

/// A new connection for the subscriber, already subscribed to the channel by `Bus::reload`.
pub(super) struct Handover {
    /// The connection that becomes current (publisher, fleet, later reconnects).
    pub(super) conn: Arc<Conn>,
    /// Its subscription; messages published since it subscribed wait in it.
    pub(super) pubsub: PubSub,
    /// The node it is on, `host:port`.
    pub(super) node: String,
    /// Told once the subscription is the one being served and the old one is gone.
    pub(super) done: oneshot::Sender<()>,
}

/// Why serving a subscription ended.
enum Ended {
    /// The process is stopping.
    Stopped,
    /// The connection was lost (the text says how).
    Lost(String),
    /// A new connection replaces this one (already adopted; the old one is drained).
    Replaced(Handover),
}

/// Turns messages into engine requests (and rollbacks into asks for the follower), with the
/// state that outlives any one connection: the replay memory, warning limits, and the event ids
/// of a drained old subscription.
struct Handler {
    shared: Arc<Shared>,
    engine: Engine,
    verifier: Verifier,
    warnings: RateLimit,
    /// Event ids handled while a swap was under way (from its start until the old subscription
    /// was drained), a superset of the messages that reached both subscriptions: their copies
    /// on the new one are skipped. Cleared at the first later message with another id: messages
    /// on the new subscription arrive in publish order, and every one published before the old
    /// subscription ended is in this set.
    handed_over: HashSet<String>,
    /// Broadcast rollbacks, for the follower (latest wins).
    rollbacks: watch::Sender<Option<Ask>>,
    /// The message rate, to give memory back once a burst is over.
    burst: Burst,
}

/// Runs until `stop` turns true.
pub(super) async fn run(
    shared: Arc<Shared>,
    engine: Engine,
    mut handovers: mpsc::Receiver<Handover>,
    rollbacks: watch::Sender<Option<Ask>>,
    mut stop: watch::Receiver<bool>,
) {
    let opts = &shared.opts;
    let mut handler = Handler {
        // Started now, before the first subscribe: see the verifier's start floor.
        verifier: Verifier::new(
            opts.secret.clone(),
            &opts.instance_id,
            opts.replay_window,
            REPLAY_MEMORY,
        )
        .started_at(Utc::now().timestamp_micros() as f64 / 1e6),
        warnings: RateLimit::default(),
        handed_over: HashSet::new(),
        rollbacks,
        burst: Burst::default(),
        engine: engine.clone(),
        shared: Arc::clone(&shared),
    };
    let mut backoff = Reconnect::new(opts.reconnect_min, opts.reconnect_max, Instant::now());
    let mut subscribed_before = false;
    // Whether a Disconnected event is owed: once per loss (or for the first failed attempt),
    // not once per retry.
    let mut up = true;
    // A handover adopted while serving: its subscription is served next, without connecting.
    let mut adopted: Option<Handover> = None;
    loop {
        let attempt = match adopted.take() {
            Some(h) => Ok((h.pubsub, h.node, Some(h.done))),
            None => {
                let target = shared.conn().target.clone();
                tokio::select! {
                    r = connect(&target, &opts.channel, opts.timeout) => {
                        r.map(|(p, node)| (p, node, None))
                    }
                    Some(h) = handovers.recv() => {
                        adopt(&shared, &h.conn);
                        // No old subscription to drain: nothing can reach both.
                        shared.overlap.store(false, Ordering::SeqCst);
                        Ok((h.pubsub, h.node, Some(h.done)))
                    }
                    _ = stopped(&mut stop) => return,
                }
            }
        };
        let error = match attempt {
            Ok((pubsub, node, done)) => {
                backoff.subscribed(Instant::now());
                // Requested before the status says "connected", so whoever waits for that sees
                // the catch-up already queued in the engine.
                engine.request(
                    LoadRequest {
                        scope: Scope::Delta,
                        source: Source::Bus,
                        reason: "bus subscribed: catch-up".into(),
                    },
                    None,
                );
                let reconnect = subscribed_before && done.is_none();
                let moved = subscribed_on(&shared, &engine, &node, reconnect);
                info!(
                    channel = %opts.channel,
                    node = %node,
                    moved,
                    reconnect,
                    swap = done.is_some(),
                    "bus subscribed; catch-up reload requested"
                );
                shared.emit(BusEvent::Connected {
                    reconnect,
                    node: node.clone(),
                });
                if let Some(done) = done {
                    // The caller may have gone away; the swap stands regardless.
                    let _ = done.send(());
                }
                subscribed_before = true;
                up = true;
                match serve(pubsub, &node, &mut handler, &mut handovers, &mut stop).await {
                    Ended::Replaced(h) => {
                        adopted = Some(h);
                        continue;
                    }
                    ended => {
                        let mut st = shared.status();
                        st.connected = false;
                        st.connected_since = None;
                        match ended {
                            Ended::Lost(e) => format!("connection to {node} lost: {e}"),
                            _ => return,
                        }
                    }
                }
            }
            Err(e) => e,
        };
        if std::mem::replace(&mut up, false) {
            shared.emit(BusEvent::Disconnected {
                error: error.clone(),
                node: shared.status().node.clone(),
            });
        }
        let delay = backoff.next_delay(Instant::now());
        shared.status().retrying(&error, delay);
        warn!(
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            channel = %opts.channel,
            "bus disconnected; serving on, retrying. Changes made elsewhere meanwhile are picked \
             up by the catch-up reload after reconnecting (and by the poll)"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            Some(h) = handovers.recv() => {
                adopt(&shared, &h.conn);
                shared.overlap.store(false, Ordering::SeqCst);
                adopted = Some(h);
            }
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Records a subscription on `node` in the status; tells whether it is on another node than
/// the one before (a failover, or a move to another cluster node).
fn subscribed_on(shared: &Shared, engine: &Engine, node: &str, reconnect: bool) -> bool {
    let moved = {
        let mut st = shared.status();
        st.connected = true;
        st.connected_since = Some(Utc::now());
        st.next_retry_at = None;
        if reconnect {
            st.reconnects += 1;
        }
        let moved = !st.node.is_empty() && st.node != node;
        if moved {
            st.node_changes += 1;
        }
        node.clone_into(&mut st.node);
        moved
    };
    let conn = shared.conn();
    conn.link.listening_on(node);
    if moved && conn.target.is_sentinel() {
        // The command link may still hold a connection to the old node (a demoted master that
        // is alive): connect anew, to where the subscription is.
        conn.link.reset();
        // What this replica announced on the old node after the others had moved reached
        // nobody: one "read what changed" on the new node covers it (the receivers' delta
        // coalesces with their own catch-up).
        let revision = engine.current().store_revision;
        let _ = shared
            .outbox
            .push(shared, Announcement::Reload(None), revision);
    }
    moved
}

/// Makes `conn` the current connection: publishing and the fleet heartbeat use it from now on,
/// and so do later reconnects.
fn adopt(shared: &Shared, conn: &Arc<Conn>) {
    shared.conn.store(Arc::clone(conn));
    let mut st = shared.status();
    st.redis_url = conn.redacted();
    st.swaps += 1;
    st.swapped_at = Some(Utc::now());
    drop(st);
    info!(redis_url = %conn.redacted(), "bus: swapped to a new Redis connection");
}

/// Asks `target` where to connect (with Sentinel: the master now), connects and subscribes,
/// within `timeout` (a server that accepts TCP but never answers, e.g. a stopped process, must
/// not hang the loop); returns the subscription and the node's address.
pub(super) async fn connect(
    target: &Target,
    channel: &str,
    timeout: Duration,
) -> Result<(PubSub, String), String> {
    let attempt = async {
        let node = target.node(timeout).await?;
        let subscribed = async {
            let mut pubsub = node.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(p) => Ok((p, node.addr)),
            Err(e) => Err(format!("connecting or subscribing to {}: {e}", node.addr)),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("connecting or subscribing took over {timeout:?}")),
    }
}

/// Handles messages until the connection is lost, the process stops, or a new connection is
/// handed over.
async fn serve(
    pubsub: PubSub,
    node: &str,
    handler: &mut Handler,
    handovers: &mut mpsc::Receiver<Handover>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let shared = Arc::clone(&handler.shared);
    let (ping_interval, timeout) = (shared.opts.ping_interval, shared.opts.timeout);
    let (mut sink, messages) = pubsub.split();
    let mut intake = Intake::start(messages);
    let mut ping_sink = sink.clone();
    let target = shared.conn().target.clone();
    // Runs beside the message loop (in the same select), so a slow PING never delays messages.
    // With Sentinel it also asks, every tick, whether the sentinels still name this node: a
    // master cut off from them keeps answering PING while another one was promoted.
    let pinger = async move {
        let start = tokio::time::Instant::now() + ping_interval;
        let mut tick = tokio::time::interval_at(start, ping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(timeout, ping_sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("PING failed: {e}"),
                Err(_) => {
                    return format!("no PING reply within {timeout:?} (half-open connection)");
                }
            }
            if let Some(moved) = master_moved(&target, node, timeout).await {
                return moved;
            }
        }
    };
    tokio::pin!(pinger);
    loop {
        let burst_over = handler.burst.over_at();
        tokio::select! {
            taken = intake.next() => match taken {
                Some(taken) => handler.take(taken),
                None => return Ended::Lost("closed by the server".into()),
            },
            () = at(burst_over) => handler.release_memory(),
            Some(h) = handovers.recv() => {
                adopt(&shared, &h.conn);
                // The new subscription is up: from here every message reaches it. What this
                // one received before its UNSUBSCRIBE was answered is already in its buffer
                // (Redis answers in order), so nothing falls between the two.
                let unsubscribed =
                    tokio::time::timeout(timeout, sink.unsubscribe(&shared.opts.channel)).await;
                if !matches!(unsubscribed, Ok(Ok(()))) {
                    debug!("the old subscription did not confirm UNSUBSCRIBE; dropping it");
                }
                let (queued, messages) = intake.stop().await;
                let mut drained = queued.len();
                for taken in queued {
                    handler.take(taken);
                }
                if let Some(mut messages) = messages {
                    drained += drain(&mut messages, handler).await;
                }
                shared.overlap.store(false, Ordering::SeqCst);
                info!(drained, "old bus subscription drained and closed");
                return Ended::Replaced(h);
            }
            why = &mut pinger => return Ended::Lost(why),
            _ = stopped(stop) => return Ended::Stopped,
        }
    }
}

/// With Sentinel: why the subscription on `node` must move, when the sentinels name another
/// master. Sentinels that cannot be asked now are no reason to drop a working subscription.
async fn master_moved(target: &Target, node: &str, timeout: Duration) -> Option<String> {
    if !target.is_sentinel() {
        return None;
    }
    match target.node(timeout).await {
        Ok(master) if master.addr != node => Some(format!(
            "the sentinels name {} as master now, not {node}",
            master.addr
        )),
        Ok(_) => None,
        Err(e) => {
            debug!(error = %e, "bus: could not ask the sentinels for the master; staying on {node}");
            None
        }
    }
}

/// Resolves at `when`; never without one.
async fn at(when: Option<tokio::time::Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

/// Handles every message already buffered in an old subscription, without waiting for more;
/// returns how many. Unconstrained by tokio's cooperative budget, which would otherwise report
/// a long buffer as empty part-way through.
async fn drain(messages: &mut PubSubStream, handler: &mut Handler) -> usize {
    let mut drained = 0;
    tokio::task::unconstrained(std::future::poll_fn(|cx| {
        while let Poll::Ready(Some(msg)) = Pin::new(&mut *messages).poll_next(cx) {
            handler.handle(msg.get_payload_bytes());
            drained += 1;
        }
        Poll::Ready(())
    }))
    .await;
    drained
}

impl Handler {
    /// Handles a message from the intake, after accounting for the ones dropped before it.
    fn take(&mut self, taken: Taken) {
        self.burst
            .arrived(1 + taken.dropped_before, tokio::time::Instant::now());
        if taken.dropped_before > 0 {
            self.overflowed(taken.dropped_before);
        }
        self.handle(&taken.payload);
    }

    /// A burst of messages is over: asks the allocator, on the blocking pool, to give back what
    /// the burst left free; counted once done.
    fn release_memory(&mut self) {
        self.burst.ended();
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let released = memory::release();
            shared.status().memory_releases += 1;
            info!(
                released,
                duration_ms = started.elapsed().as_secs_f64() * 1e3,
                "a burst of bus messages is over: asked the allocator to give freed memory back"
            );
        });
    }

    /// Counts messages the intake dropped (its queue was full) and asks for one catch-up delta
    /// in their place: the store has whatever they announced.
    fn overflowed(&mut self, dropped: u64) {
        {
            let mut st = self.shared.status();
            st.messages_received += dropped;
            *st.rejected.entry(Reason::Overflow.as_str()).or_default() += dropped;
        }
        self.engine.request(
            LoadRequest {
                scope: Scope::Delta,
                source: Source::Bus,
                reason: "bus: catch-up for messages dropped in a flood".into(),
            },
            None,
        );
        let r = Rejected {
            reason: Reason::Overflow,
            detail: format!(
                "{dropped} messages dropped: the intake queue was full (a flood faster than they \
                 can be handled); a catch-up delta reads what they announced"
            ),
        };
        self.warnings.warn(&r, 0);
    }

    /// Checks one message and, if valid, hands it to the engine (or the follower).
    fn handle(&mut self, bytes: &[u8]) {
        if self.skip_handed_over(bytes) {
            let mut st = self.shared.status();
            st.messages_received += 1;
            st.handover_duplicates += 1;
            debug!("bus: skipped the second copy of an event received during a swap");
            return;
        }
        let now = Utc::now();
        let checked = self
            .verifier
            .check(bytes, now.timestamp_micros() as f64 / 1e6)
            .and_then(|e| self.trust(e));
        {
            let mut st = self.shared.status();
            st.messages_received += 1;
            st.last_message_at = Some(now);
            match &checked {
                Ok(_) => st.messages_applied += 1,
                Err(r) if r.reason == Reason::SelfOrigin => st.self_skipped += 1,
                Err(r) => *st.rejected.entry(r.reason.as_str()).or_default() += 1,
            }
        }
        match checked {
            Ok(envelope) => match (&envelope.action, &envelope.content_hash) {
                (Action::Rollback, Some(hash)) => {
                    self.rollbacks.send_replace(Some(Ask {
                        content_hash: hash.clone(),
                        content_hash_scheme: envelope.content_hash_scheme,
                        origin: origin(&envelope),
                    }));
                }
                _ => self
                    .engine
                    .request(request_for(&envelope), Some(origin_of(&envelope))),
            },
            Err(r) if r.reason == Reason::SelfOrigin => debug!("bus: skipped our own event"),
            Err(r) => self.warnings.warn(&r, bytes.len()),
        }
    }

    /// What an unsigned message may do. Without a secret, a message proves nothing about who
    /// sent it (and the content hash it would name is public), so unless the operator enabled
    /// unsigned rollbacks it may only make this replica read the store: a `rollback`, which
    /// would pin the replica and hold every later change, is refused; an `invalidate`, which
    /// would stop serving a row whatever the store says, reads that row like a `reload` (so it
    /// still takes out a row the store no longer serves). Signed messages are trusted.
    fn trust(&self, mut e: Envelope) -> Result<Envelope, Rejected> {
        let opts = &self.shared.opts;
        if opts.secret.is_some() || opts.allow_unsigned_rollback {
            return Ok(e);
        }
        match e.action {
            Action::Rollback => reject(
                Reason::UnsignedRollback,
                "unsigned rollbacks are refused: sign the bus (HOTPLANE_BUS_SECRET) or enable \
                 --bus-allow-unsigned-rollback",
            ),
            Action::Invalidate => {
                e.action = Action::Reload;
                Ok(e)
            }
            Action::Reload => Ok(e),
        }
    }

    /// Remembers the event ids handled while a swap is under way, and tells whether a message
    /// received after it is a copy of one of them.
    fn skip_handed_over(&mut self, bytes: &[u8]) -> bool {
        let recording = self.shared.overlap.load(Ordering::SeqCst);
        if !recording && self.handed_over.is_empty() {
            return false;
        }
        let Some(id) = decode(bytes).ok().and_then(|d| d.envelope.event_id) else {
            return false;
        };
        if recording {
            if self.handed_over.len() < MAX_HANDOVER_IDS {
                self.handed_over.insert(id);
            }
            return false;
        }
        if self.handed_over.remove(&id) {
            return true;
        }
        // Published after the old subscription ended: no copies can follow.
        self.handed_over.clear();
        false
    }
}

/// The message's origin, shortened for a generation's reason.
fn origin(e: &Envelope) -> String {
    e.origin
        .as_deref()
        .unwrap_or("unknown")
        .chars()
        .take(MAX_ORIGIN_IN_REASON)
        .collect()
}

/// Who asked, for the audit trail: the publishing instance (`bus:<origin>`). The pattern id
/// is in the reason, so a burst from one publisher is one requester of the load it causes.
fn origin_of(e: &Envelope) -> crate::audit::Origin {
    crate::audit::Origin {
        action: match e.action {
            Action::Invalidate => crate::audit::action::INVALIDATE,
            Action::Reload | Action::Rollback => crate::audit::action::RELOAD,
        },
        ..crate::audit::Origin::reload(format!("bus:{}", origin(e)))
    }
}

/// The engine request a valid message asks for.
fn request_for(e: &Envelope) -> LoadRequest {
    let scope = match (e.action, e.pattern_id) {
        (Action::Reload, Some(id)) => Scope::Ids(vec![id]),
        (Action::Reload, None) => Scope::Delta,
        (Action::Invalidate, Some(id)) => Scope::Invalidate(vec![id]),
        // decode() rejects an invalidate without an id, and the handler sends rollbacks to the
        // follower; a delta is the safe reading anyway.
        (Action::Invalidate, None) | (Action::Rollback, _) => Scope::Delta,
    };
    let origin = origin(e);
    let what = match e.pattern_id {
        Some(id) => format!("{} {id}", e.action.as_str()),
        None => e.action.as_str().to_owned(),
    };
    LoadRequest {
        scope,
        source: Source::Bus,
        reason: format!("bus: {what} from {origin}"),
    }
}

/// Rate-limits rejection warnings per reason; what it holds back is counted and reported with
/// the next warning (the status counters are exact regardless).
#[derive(Default)]
struct RateLimit {
    /// Per reason: when it was last logged, and how many were held back since.
    last: HashMap<Reason, (Instant, u64)>,
}

impl RateLimit {
    fn warn(&mut self, r: &Rejected, bytes: usize) {
        let now = Instant::now();
        if let Some((at, held)) = self.last.get_mut(&r.reason)
            && now.duration_since(*at) < WARN_EVERY
        {
            *held += 1;
            return;
        }
        let held_back = self.last.get(&r.reason).map_or(0, |e| e.1);
        self.last.insert(r.reason, (now, 0));
        // An overflow is this replica falling behind a flood, not a bad message.
        let what_to_do = if r.reason == Reason::Overflow {
            "nothing is wrong with the messages: publishers sent faster than this replica \
             handles them (reload messages are coalesced into the catch-up delta; if this \
             repeats, have publishers send one message per change batch, not per row)"
        } else {
            "fix the publisher that sent it"
        };
        warn!(
            reason = r.reason.as_str(),
            detail = %r.detail,
            bytes,
            held_back,
            "bus message rejected and ignored (counted in GetStatus.bus.rejected; at most one \
             such warning per reason every 10s): {what_to_do}"
        );
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_to_engine_requests() {
        let env = |action, pattern_id| Envelope {
            action,
            pattern_id,
            content_hash: None,
            content_hash_scheme: None,
            event_id: None,
            origin: Some("x".repeat(500)),
            revision: None,
            ts: None,
            sig: None,
        };
        let r = request_for(&env(Action::Reload, Some(4)));
        assert_eq!((r.scope, r.source), (Scope::Ids(vec![4]), Source::Bus));
        assert!(r.reason.len() < 100, "origin is truncated: {}", r.reason);
        assert_eq!(request_for(&env(Action::Reload, None)).scope, Scope::Delta);
        assert_eq!(
            request_for(&env(Action::Invalidate, Some(9))).scope,
            Scope::Invalidate(vec![9])
        );
    }

    #[test]
    fn warnings_are_rate_limited_per_reason() {
        let mut rl = RateLimit::default();
        let r = |reason| Rejected {
            reason,
            detail: String::new(),
        };
        rl.warn(&r(Reason::NotJson), 1);
        rl.warn(&r(Reason::NotJson), 1);
        rl.warn(&r(Reason::NotJson), 1);
        rl.warn(&r(Reason::Stale), 1);
        assert_eq!(rl.last[&Reason::NotJson].1, 2, "two held back");
        assert_eq!(
            rl.last[&Reason::Stale].1,
            0,
            "another reason logs on its own"
        );
    }
}

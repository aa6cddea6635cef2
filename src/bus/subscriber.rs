//! The subscriber task: stays subscribed to the bus channel for the life of the process.
//!
//! - It never gives up: a failed connect or a lost connection is retried after a jittered,
//!   capped exponential backoff (`retry::Backoff`), reset once a subscribe succeeds.
//! - It notices half-open connections (a peer that stopped answering without closing the
//!   socket): the subscription connection is PINGed every `ping_interval` and is dropped when a
//!   reply takes longer than `timeout`. RESP2 PubSub connections accept PING while subscribed.
//! - After every subscribe, it asks the engine for a catch-up delta: Redis keeps nothing for a
//!   disconnected subscriber, so whatever was published meanwhile is found in the store instead.
//! - Each valid message becomes an engine request and nothing more (fire-and-forget, so a burst
//!   coalesces in the engine's single flight). Bad messages are counted by reason, logged at
//!   most once per reason per [`WARN_EVERY`], and dropped: they never reach the engine.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use redis::aio::PubSub;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use super::{
    BusEvent, Shared,
    envelope::{Action, Envelope, Reason, Rejected},
    verifier::{REPLAY_MEMORY, Verifier},
};
use crate::{
    engine::{Engine, LoadRequest, Scope, Source},
    retry::Backoff,
};

/// At most one warning per rejection reason per this long (the rest are counted).
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Longest `origin` quoted in a generation's reason.
const MAX_ORIGIN_IN_REASON: usize = 64;

/// Why serving a subscription ended.
enum Ended {
    /// The process is stopping.
    Stopped,
    /// The connection was lost (the text says how).
    Lost(String),
}

/// Runs until `stop` turns true.
pub(super) async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    engine: Engine,
    mut stop: watch::Receiver<bool>,
) {
    let opts = &shared.opts;
    let mut verifier = Verifier::new(
        opts.secret.clone(),
        &opts.instance_id,
        opts.replay_window,
        REPLAY_MEMORY,
    );
    let mut backoff = Backoff::new(opts.reconnect_min, opts.reconnect_max);
    let mut warnings = RateLimit::default();
    let mut subscribed_before = false;
    // Whether a Disconnected event is owed: once per loss (or for the first failed attempt),
    // not once per retry.
    let mut up = true;
    loop {
        let attempt = tokio::select! {
            r = connect(&client, &opts.channel, opts.timeout) => r,
            _ = stopped(&mut stop) => return,
        };
        let error = match attempt {
            Ok(pubsub) => {
                backoff.reset();
                // Requested before the status says "connected", so whoever waits for that sees
                // the catch-up already queued in the engine.
                engine.request(LoadRequest {
                    scope: Scope::Delta,
                    source: Source::Bus,
                    reason: "bus subscribed: catch-up".into(),
                });
                {
                    let mut st = shared.status();
                    st.connected = true;
                    st.connected_since = Some(Utc::now());
                    st.next_retry_at = None;
                    if subscribed_before {
                        st.reconnects += 1;
                    }
                }
                info!(
                    channel = %opts.channel,
                    reconnect = subscribed_before,
                    "bus subscribed; catch-up reload requested"
                );
                shared.emit(BusEvent::Connected {
                    reconnect: subscribed_before,
                });
                subscribed_before = true;
                up = true;
                let ended = serve(
                    pubsub,
                    &shared,
                    &engine,
                    &mut verifier,
                    &mut warnings,
                    &mut stop,
                )
                .await;
                let mut st = shared.status();
                st.connected = false;
                st.connected_since = None;
                match ended {
                    Ended::Stopped => return,
                    Ended::Lost(e) => format!("connection lost: {e}"),
                }
            }
            Err(e) => e,
        };
        if std::mem::replace(&mut up, false) {
            shared.emit(BusEvent::Disconnected {
                error: error.clone(),
            });
        }
        let delay = backoff.next_delay();
        {
            let mut st = shared.status();
            st.last_error = Some(error.clone());
            st.last_error_at = Some(Utc::now());
            st.next_retry_at = chrono::Duration::from_std(delay)
                .ok()
                .map(|d| Utc::now() + d);
        }
        warn!(
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            channel = %opts.channel,
            "bus disconnected; serving on, retrying. Changes made elsewhere meanwhile are picked \
             up by the catch-up reload after reconnecting (and by the poll)"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Connects and subscribes, within `timeout` (a server that accepts TCP but never answers,
/// e.g. a stopped process, must not hang the loop).
async fn connect(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> Result<PubSub, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(format!("connecting or subscribing: {e}")),
        Err(_) => Err(format!("connecting or subscribing took over {timeout:?}")),
    }
}

/// Handles messages until the connection is lost or the process stops.
async fn serve(
    pubsub: PubSub,
    shared: &Shared,
    engine: &Engine,
    verifier: &mut Verifier,
    warnings: &mut RateLimit,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let (ping_interval, timeout) = (shared.opts.ping_interval, shared.opts.timeout);
    let (mut sink, mut messages) = pubsub.split();
    // Runs beside the message loop (in the same select), so a slow PING never delays messages.
    let pinger = async move {
        let start = tokio::time::Instant::now() + ping_interval;
        let mut tick = tokio::time::interval_at(start, ping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("PING failed: {e}"),
                Err(_) => {
                    return format!("no PING reply within {timeout:?} (half-open connection)");
                }
            }
        }
    };
    tokio::pin!(pinger);
    loop {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(msg) => handle(msg.get_payload_bytes(), shared, engine, verifier, warnings),
                None => return Ended::Lost("closed by the server".into()),
            },
            why = &mut pinger => return Ended::Lost(why),
            _ = stopped(stop) => return Ended::Stopped,
        }
    }
}

/// Checks one message and, if valid, hands it to the engine.
fn handle(
    bytes: &[u8],
    shared: &Shared,
    engine: &Engine,
    verifier: &mut Verifier,
    warnings: &mut RateLimit,
) {
    let now = Utc::now();
    let checked = verifier.check(bytes, now.timestamp_micros() as f64 / 1e6);
    {
        let mut st = shared.status();
        st.messages_received += 1;
        st.last_message_at = Some(now);
        match &checked {
            Ok(_) => st.messages_applied += 1,
            Err(r) if r.reason == Reason::SelfOrigin => st.self_skipped += 1,
            Err(r) => *st.rejected.entry(r.reason.as_str()).or_default() += 1,
        }
    }
    match checked {
        Ok(envelope) => engine.request(request_for(&envelope)),
        Err(r) if r.reason == Reason::SelfOrigin => debug!("bus: skipped our own event"),
        Err(r) => warnings.warn(&r, bytes.len()),
    }
}

/// The engine request a valid message asks for.
fn request_for(e: &Envelope) -> LoadRequest {
    let scope = match (e.action, e.pattern_id) {
        (Action::Reload, Some(id)) => Scope::Ids(vec![id]),
        (Action::Reload, None) => Scope::Delta,
        (Action::Invalidate, Some(id)) => Scope::Invalidate(vec![id]),
        // decode() rejects an invalidate without an id; a delta is the safe reading anyway.
        (Action::Invalidate, None) => Scope::Delta,
    };
    let origin: String = e
        .origin
        .as_deref()
        .unwrap_or("unknown")
        .chars()
        .take(MAX_ORIGIN_IN_REASON)
        .collect();
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
        warn!(
            reason = r.reason.as_str(),
            detail = %r.detail,
            bytes,
            held_back,
            "bus message rejected and ignored (counted in GetStatus.bus.rejected; at most one \
             such warning per reason every 10s). Fix the publisher"
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

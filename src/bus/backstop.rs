//! The backstop poll: a delta reload request on every tick, with or without Redis.
//!
//! Bus messages can be lost (published while this replica was disconnected, or by a publisher
//! that failed); the catch-up after a reconnect covers the first case, this covers every case
//! within one interval. A delta against an unchanged store is one cheap indexed query per table
//! and creates no new generation, and it coalesces with any other pending request.

use std::time::Duration;

use tokio::sync::watch;

use crate::engine::{Engine, LoadRequest, Scope, Source};

/// Requests a delta every `interval` until `stop` turns true; returns at once for a zero
/// interval (the poll is disabled).
pub async fn run(engine: Engine, interval: Duration, mut stop: watch::Receiver<bool>) {
    if interval.is_zero() {
        return;
    }
    let start = tokio::time::Instant::now() + interval;
    let mut tick = tokio::time::interval_at(start, interval);
    // After a stall, one poll is enough: the delta reads everything since the last load.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => engine.request(LoadRequest {
                scope: Scope::Delta,
                source: Source::Poll,
                reason: "backstop poll".into(),
            }),
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}

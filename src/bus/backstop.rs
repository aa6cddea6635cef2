//! The backstop poll: a delta reload request on every tick, with or without Redis.
//!
//! Bus messages can be lost (published while this replica was disconnected, or by a publisher
//! that failed); the catch-up after a reconnect covers the first case, this covers every case
//! within one interval. A delta against an unchanged store is one cheap indexed query per table
//! and creates no new generation, and it coalesces with any other pending request.

use std::time::Duration;

use tokio::sync::watch;

use crate::engine::{Engine, LoadRequest, Scope, Source};

/// Requests a delta every `interval` until `stop` turns true. A new interval (the config file's
/// `poll.interval`) takes effect at once, the next poll one new interval away; zero pauses the
/// poll until a non-zero interval arrives.
pub async fn run(
    engine: Engine,
    mut interval: watch::Receiver<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let every = *interval.borrow_and_update();
        let poll = async {
            if every.is_zero() {
                return std::future::pending::<()>().await;
            }
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // After a stall, one poll is enough: the delta reads everything since the last load.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                engine.request(
                    LoadRequest {
                        scope: Scope::Delta,
                        source: Source::Poll,
                        reason: "backstop poll".into(),
                    },
                    None,
                );
            }
        };
        tokio::select! {
            () = poll => {}
            r = interval.changed() => if r.is_err() {
                // The live config is gone (shutting down): keep the last interval until stop.
                let _ = stop.wait_for(|s| *s).await;
                return;
            },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}

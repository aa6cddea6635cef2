//! Drain state and in-flight accounting.
//!
//! [`Drain`] owns whether this replica is draining and counts the work running in it: unary
//! requests and open server streams, per method, registered by the [`super::InFlightLayer`]
//! around every service (not by each handler, so no handler can forget). The counting is on
//! every request's path, so it is lock-free ([`super::counts`]); the drain state itself changes
//! rarely and sits behind a lock. Waiting for "zero in flight" is a notification, never a poll.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::info;

use super::counts::{Counts, Slot};
use crate::{
    audit::{Auditor, Entry, Origin, Outcome, Source, action},
    engine::Engine,
};

/// What the drain reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainSnapshot {
    /// Whether the replica is draining.
    pub draining: bool,
    /// When draining started.
    pub since: Option<DateTime<Utc>>,
    /// Why.
    pub reason: String,
    /// Unary requests running now.
    pub in_flight_requests: u32,
    /// Server streams open now.
    pub open_streams: u32,
}

#[derive(Debug, Default)]
struct State {
    draining: bool,
    since: Option<DateTime<Utc>>,
    reason: String,
    /// Set by process shutdown: draining can no longer be stopped.
    final_drain: bool,
}

/// Shared drain handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Drain {
    /// A std `Mutex`: held for a few field updates on start/stop, never across an `.await`.
    state: Arc<Mutex<State>>,
    /// `state.draining`, readable without the lock: every request asks it.
    draining: Arc<AtomicBool>,
    /// Running requests and open streams per method.
    counts: Arc<Counts>,
    /// Publishes drain state changes (start/stop), so the health task reacts without polling.
    /// Not sent on every request: that would wake the observers twice per RPC.
    changes: Arc<watch::Sender<DrainSnapshot>>,
    /// Records starts and stops in the audit trail, with the generation served then.
    audit: Arc<OnceLock<(Auditor, Engine)>>,
}

impl Default for Drain {
    fn default() -> Self {
        let (tx, _) = watch::channel(DrainSnapshot::default());
        Drain {
            state: Arc::default(),
            draining: Arc::default(),
            counts: Arc::default(),
            changes: Arc::new(tx),
            audit: Arc::default(),
        }
    }
}

/// Decrements its method's counter when dropped (the request finished or the stream closed).
#[derive(Debug)]
pub struct Tracked {
    counts: Arc<Counts>,
    slot: Slot,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.counts.end(&self.slot);
    }
}

impl Drain {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot_of(&self, s: &State) -> DrainSnapshot {
        let (in_flight_requests, open_streams) = self.counts.totals();
        DrainSnapshot {
            draining: s.draining,
            since: s.since,
            reason: s.reason.clone(),
            in_flight_requests,
            open_streams,
        }
    }

    /// Changes the drain state and publishes the change, if any.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let changed = {
            let mut s = self.lock();
            let before = (s.draining, s.since, s.reason.clone());
            f(&mut s);
            self.draining.store(s.draining, Ordering::SeqCst);
            (before != (s.draining, s.since, s.reason.clone())).then(|| self.snapshot_of(&s))
        };
        if let Some(snap) = changed {
            self.changes.send_replace(snap);
        }
    }

    /// Counts a request (or stream) on `path` until the returned guard is dropped.
    pub fn track(&self, path: &str, stream: bool) -> Tracked {
        Tracked {
            slot: self.counts.start(path, stream),
            counts: Arc::clone(&self.counts),
        }
    }

    /// Records starts and stops on `auditor` from now on; `engine` gives the generation served.
    pub fn attach_audit(&self, auditor: Auditor, engine: Engine) {
        let _ = self.audit.set((auditor, engine));
    }

    /// Starts draining for `caller` (idempotent: a second call keeps the first time and
    /// reason). Returns whether this call started it; a start is logged and audited.
    pub fn start(&self, reason: &str, caller: &str, source: Source) -> bool {
        let mut started = false;
        self.update(|s| {
            if !s.draining {
                s.draining = true;
                s.since = Some(Utc::now());
                s.reason = reason.to_owned();
                started = true;
            }
        });
        if started {
            info!(
                reason,
                caller, "draining: health NOT_SERVING, new work refused"
            );
            self.record(action::DRAIN_START, caller, source, reason);
        }
        started
    }

    /// Starts the drain of a process shutdown (a signal's), which `stop` cannot undo.
    pub fn start_final(&self, reason: &str) {
        self.start(reason, "signal", Source::Signal);
        self.update(|s| s.final_drain = true);
    }

    /// Stops draining for `caller`. Returns whether it was draining (a stop is logged and
    /// audited), or an error during shutdown.
    pub fn stop(&self, caller: &str) -> Result<bool, &'static str> {
        let mut result = Ok(false);
        self.update(|s| {
            if s.final_drain {
                result = Err("the process is shutting down; its drain cannot be stopped");
                return;
            }
            result = Ok(s.draining);
            s.draining = false;
            s.since = None;
            s.reason.clear();
        });
        if result == Ok(true) {
            info!(caller, "drain stopped: taking work again");
            self.record(action::DRAIN_STOP, caller, Source::Grpc, "StopDrain");
        }
        result
    }

    fn record(&self, action: &'static str, caller: &str, source: Source, reason: &str) {
        let Some((auditor, engine)) = self.audit.get() else {
            return;
        };
        let origin = Origin {
            caller: caller.to_owned(),
            action,
            target: "drain".into(),
        };
        let generation = engine.current().number;
        auditor.record(Entry::finished(
            origin,
            source,
            reason,
            (generation, generation),
            Ok(Outcome::Ok),
            Duration::ZERO,
        ));
    }

    /// Whether new work is refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The current state.
    pub fn snapshot(&self) -> DrainSnapshot {
        self.snapshot_of(&self.lock())
    }

    /// Follows drain state changes (start, stop; not in-flight counts).
    pub fn subscribe(&self) -> watch::Receiver<DrainSnapshot> {
        self.changes.subscribe()
    }

    /// Waits until no server stream is open (shutdown, after the streams were told to end).
    pub async fn wait_streams_closed(&self) {
        self.counts.wait_until(|_, streams| streams == 0).await;
    }

    /// Waits until no unary request is running, or `grace` passes. Returns whether it became
    /// idle, and the paths still running otherwise (with their counts, `path xN`).
    pub async fn wait_idle(&self, grace: Duration) -> (bool, Vec<String>) {
        // Returns at once when already idle.
        let idle = tokio::time::timeout(grace, self.counts.wait_until(|requests, _| requests == 0))
            .await
            .is_ok();
        if idle {
            return (true, Vec::new());
        }
        let still = self
            .counts
            .running_requests()
            .into_iter()
            .map(
                |(path, n)| {
                    if n > 1 { format!("{path} x{n}") } else { path }
                },
            )
            .collect();
        (false, still)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_method_and_wait_idle_ends_when_the_last_guard_drops() {
        let d = Drain::default();
        let a = d.track("/p/A", false);
        let b = d.track("/p/A", false);
        let s = d.track("/p/W", true);
        let snap = d.snapshot();
        assert_eq!((snap.in_flight_requests, snap.open_streams), (2, 1));
        let (idle, still) = d.wait_idle(Duration::from_millis(20)).await;
        assert!(!idle);
        assert_eq!(still, vec!["/p/A x2".to_owned()]);
        drop(a);
        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.wait_idle(Duration::from_secs(30)).await })
        };
        drop(b);
        assert_eq!(waiter.await.expect("join"), (true, vec![]));
        // Streams do not hold up the unary wait; they are counted separately.
        assert_eq!(d.snapshot().open_streams, 1);
        drop(s);
        assert_eq!(d.snapshot(), DrainSnapshot::default());
    }

    #[test]
    fn start_is_idempotent_and_stop_clears() {
        let d = Drain::default();
        assert!(d.start("deploy", "test", Source::Grpc));
        let since = d.snapshot().since;
        assert!(!d.start("again", "test", Source::Grpc));
        assert_eq!(d.snapshot().reason, "deploy");
        assert_eq!(d.snapshot().since, since);
        assert_eq!(d.stop("test"), Ok(true));
        assert!(!d.is_draining() && d.stop("test") == Ok(false));
        d.start_final("SIGTERM");
        assert!(d.stop("test").is_err() && d.is_draining());
    }
}

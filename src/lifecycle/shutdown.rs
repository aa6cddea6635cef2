//! The shutdown sequence, and a bound on every wait in it.
//!
//! After a signal ([`drain`]): the replica drains while it keeps serving (NOT_SERVING, new work
//! refused), gives load balancers the pre-stop delay (`--shutdown-delay`) to notice, waits for
//! running work up to the grace (`--shutdown-grace`), lets WatchStatus streams send their last
//! event, then stops accepting. After that, whatever stopped the server ([`finish`]): the
//! background tasks (audit writer, bus, poll, fleet, hit flusher) get what is left of the same
//! deadline, at least [`CLOSE_GRACE`], and are stopped after it; the store's connections get
//! [`CLOSE_GRACE`]. So the process exits within delay + grace (plus a few short bounds) even
//! while its database or Redis is unreachable.

use std::{future::Future, time::Duration};

use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use super::{Drain, health};
use crate::store::Store;

/// How long the last streams, the health listener and the store's connections get to close
/// once the server stopped accepting.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The shutdown timing (`--shutdown-delay`, `--shutdown-grace`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long the replica keeps serving while NOT_SERVING, for load balancers to notice.
    pub delay: Duration,
    /// How long running work may take after the delay.
    pub grace: Duration,
}

impl Timing {
    /// When every wait of the shutdown must have ended: delay + grace after a signal; the grace
    /// alone when the server stopped by itself (nothing to drain for).
    pub fn deadline(&self, signalled: bool) -> Instant {
        let delay = if signalled {
            self.delay
        } else {
            Duration::ZERO
        };
        Instant::now() + delay + self.grace
    }
}

/// What the drain acts on.
pub struct Draining<'a> {
    /// The drain state and in-flight counts.
    pub drain: &'a Drain,
    /// Health, set NOT_SERVING.
    pub health: &'a HealthReporter,
    /// Tells WatchStatus streams to send their last event and end.
    pub closing: &'a watch::Sender<bool>,
    /// The timing.
    pub timing: Timing,
}

/// Drains after a signal, while `serve` (the server) keeps running: NOT_SERVING and new work
/// refused, the pre-stop delay, running work waited for up to the grace, streams told to end;
/// then `stop_accepting` fires and the server gets [`CLOSE_GRACE`] to close the rest.
/// `Err` when the server itself failed meanwhile.
pub async fn drain<E>(
    d: Draining<'_>,
    serve: &mut (impl Future<Output = Result<(), E>> + Unpin),
    stop_accepting: tokio::sync::oneshot::Sender<()>,
) -> Result<(), E> {
    d.drain.start_final("shutdown");
    info!(
        delay_ms = d.timing.delay.as_millis() as u64,
        grace_ms = d.timing.grace.as_millis() as u64,
        in_flight = d.drain.snapshot().in_flight_requests,
        "shutting down: draining (health NOT_SERVING, new work refused)"
    );
    health::set(d.health, ServingStatus::NotServing).await;
    let waited = async {
        tokio::time::sleep(d.timing.delay).await;
        d.drain.wait_idle(d.timing.grace).await
    };
    tokio::select! {
        r = &mut *serve => return r,
        (idle, still) = waited => if !idle {
            warn!(?still, "shutdown grace expired with requests still running; closing them");
        },
    }
    // WatchStatus streams send a final event and end; then stop accepting connections and let
    // the server close. Streams that would keep it open (health watches) are cut after a short
    // bound.
    d.closing.send_replace(true);
    let _ = tokio::time::timeout(CLOSE_GRACE, d.drain.wait_streams_closed()).await;
    let _ = stop_accepting.send(());
    match tokio::time::timeout(CLOSE_GRACE, serve).await {
        Ok(r) => r,
        Err(_) => {
            info!("closing the remaining streams");
            Ok(())
        }
    }
}

/// What is left to stop once the server stopped.
pub struct Leftovers {
    /// The plaintext health listener: its stop sender and task.
    pub health_listener: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
    /// The background tasks, already told to stop.
    pub background: Vec<JoinHandle<()>>,
    /// The store, closed last.
    pub store: std::sync::Arc<Store>,
}

/// Stops what is left, every wait bounded: the health listener ([`CLOSE_GRACE`]), the
/// background tasks (until `deadline`, at least [`CLOSE_GRACE`]; the audit writer may be
/// retrying against a database that is down), then the store's connections ([`CLOSE_GRACE`]).
/// Returns how many background tasks had to be stopped.
pub async fn finish(left: Leftovers, deadline: Instant) -> usize {
    if let Some((stop, mut task)) = left.health_listener {
        let _ = stop.send(());
        if tokio::time::timeout(CLOSE_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
    let deadline = deadline.max(Instant::now() + CLOSE_GRACE);
    let mut stopped = 0;
    for task in left.background {
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
    if tokio::time::timeout(CLOSE_GRACE, left.store.close())
        .await
        .is_err()
    {
        warn!("the store's connections did not close in time; leaving them");
    }
    stopped
}

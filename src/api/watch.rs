//! The WatchStatus stream: a snapshot (or a replay from `after_event_id`), then live events and
//! heartbeats, from a producer task per stream.
//!
//! The producer owns nothing shared: it reads the hub's broadcast and writes to a small bounded
//! channel that tonic drains to the client. A slow client blocks only its own producer, whose
//! broadcast receiver then lags and is answered with a `resync` snapshot. A client that goes away
//! closes the channel and ends the producer; the maximum stream age and process shutdown end it
//! cleanly (shutdown first sends a final status event).
//!
//! Ids on a stream never go back: heartbeats, resync snapshots and the final status carry the id
//! of the last event this stream passed (sent, or left out by its filter), not the hub's newest,
//! which may belong to an event still queued for this stream. Else that event would arrive with
//! an id the client has already seen: one resuming from the highest id seen would skip it, one
//! dropping repeated ids (the dashboard page, `hotplane ctl watch`) would hide it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::debug;

use super::{
    ReloadState,
    events::{Event, Start},
    status::status_pb,
};
use crate::pb;

/// Messages buffered per stream before its producer waits (and then lags and resyncs).
const STREAM_BUFFER: usize = 64;

/// Stream settings.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Streams end cleanly after this long, so clients reconnect and rebalance; zero: never.
    pub max_age: Duration,
}

/// Which events a stream wants.
struct Filter {
    targets: Vec<i32>,
    kinds: Vec<i32>,
}

impl Filter {
    fn new(req: &pb::WatchStatusRequest) -> Self {
        let unspecified = |v: &i32| *v != 0;
        Filter {
            targets: req.targets.iter().copied().filter(unspecified).collect(),
            kinds: req.kinds.iter().copied().filter(unspecified).collect(),
        }
    }

    /// Events without a target (drain, bus) pass a target filter.
    fn pass(&self, e: &pb::WatchStatusResponse) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.targets.is_empty() || e.target == 0 || self.targets.contains(&e.target))
    }
}

fn status_event(
    state: &ReloadState,
    kind: pb::EventKind,
    id: u64,
    resync: bool,
) -> pb::WatchStatusResponse {
    pb::WatchStatusResponse {
        event_id: id,
        at: Some(super::convert::timestamp(chrono::Utc::now())),
        kind: kind.into(),
        resync,
        status: Some(status_pb(&state.status)),
        ..Default::default()
    }
}

/// Opens a stream for `req`.
pub fn open(
    state: Arc<ReloadState>,
    req: pb::WatchStatusRequest,
    opts: WatchOptions,
    slot: super::streams::Slot,
) -> ReceiverStream<Result<pb::WatchStatusResponse, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        produce(state, req, opts, tx).await;
        // The caller's slot is free once the producer ends (client gone, age, shutdown).
        drop(slot);
    });
    ReceiverStream::new(rx)
}

/// Runs a stream until its client goes away, its maximum age, or shutdown, whichever comes
/// first, even while the producer waits to send to a client that stopped reading: the age and
/// shutdown are raced against the whole stream, not polled between sends.
async fn produce(
    state: Arc<ReloadState>,
    req: pb::WatchStatusRequest,
    opts: WatchOptions,
    tx: mpsc::Sender<Result<pb::WatchStatusResponse, Status>>,
) {
    let mut closing = state.closing.subscribe();
    // Subscribed here, so the final status has an id even before the stream's first message.
    let (start, live, last_id) = state.events.subscribe(req.after_event_id);
    let seen = AtomicU64::new(last_id);
    let expires = async {
        if opts.max_age.is_zero() {
            std::future::pending::<()>().await
        } else {
            tokio::time::sleep(opts.max_age).await
        }
    };
    tokio::select! {
        () = stream(&state, &req, opts, &tx, Subscription { start, live, seen: &seen }) => {}
        () = expires => debug!("watch stream reached its maximum age"),
        _ = closing.wait_for(|c| *c) => {
            // A final status for a client that reads; one that does not gets nothing more.
            let last = seen.load(Ordering::Relaxed);
            let _ = tx.try_send(Ok(status_event(&state, pb::EventKind::DrainChanged, last, false)));
        }
    }
}

/// A stream's place in the hub: where it starts, its live receiver, and the id of the last
/// event it passed (what its heartbeats, resync snapshots and final status carry).
struct Subscription<'a> {
    start: Start,
    live: tokio::sync::broadcast::Receiver<Event>,
    /// Starts at the hub's newest id when subscribing: the snapshot's, or the replay's last.
    seen: &'a AtomicU64,
}

/// The stream's body: the start (snapshot or replay), then live events and heartbeats, until
/// the client goes away or the hub closes.
async fn stream(
    state: &ReloadState,
    req: &pb::WatchStatusRequest,
    opts: WatchOptions,
    tx: &mpsc::Sender<Result<pb::WatchStatusResponse, Status>>,
    sub: Subscription<'_>,
) {
    let filter = Filter::new(req);
    let Subscription {
        start,
        mut live,
        seen,
    } = sub;
    // A send fails only when the client went away: then the producer just ends.
    let send = |msg: pb::WatchStatusResponse| async move { tx.send(Ok(msg)).await.is_ok() };
    let first_ok = match start {
        Start::Snapshot { resync } => {
            send(status_event(
                state,
                pb::EventKind::Snapshot,
                seen.load(Ordering::Relaxed),
                resync,
            ))
            .await
        }
        Start::Replay(events) => {
            let mut ok = true;
            for e in events.iter().filter(|e| filter.pass(e)) {
                if !send(Event::unwrap_or_clone(Arc::clone(e))).await {
                    ok = false;
                    break;
                }
            }
            ok
        }
    };
    if !first_ok {
        return;
    }
    let mut heartbeat = tokio::time::interval(opts.heartbeat.max(Duration::from_millis(10)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await; // the first tick is immediate; the snapshot just went out
    loop {
        let sent = tokio::select! {
            _ = tx.closed() => return,
            _ = heartbeat.tick() => {
                send(status_event(state, pb::EventKind::Heartbeat, seen.load(Ordering::Relaxed), false)).await
            }
            r = live.recv() => match r {
                // At or below `seen`: queued before a resync snapshot that already includes it.
                Ok(e) if e.event_id <= seen.load(Ordering::Relaxed) => true,
                Ok(e) => {
                    seen.store(e.event_id, Ordering::Relaxed);
                    if filter.pass(&e) { send(Event::unwrap_or_clone(e)).await } else { true }
                }
                Err(RecvError::Lagged(n)) => {
                    debug!(missed = n, "watch stream fell behind; sending a resync snapshot");
                    // The snapshot shows every event published so far: those still queued for
                    // this stream are skipped (above), so no id goes back after it.
                    let last = state.events.last_id();
                    seen.store(last, Ordering::Relaxed);
                    send(status_event(state, pb::EventKind::Snapshot, last, true)).await
                }
                Err(RecvError::Closed) => return,
            },
        };
        if !sent {
            return;
        }
    }
}

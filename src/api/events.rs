//! The status event hub: one sequence of numbered events for every WatchStatus stream.
//!
//! Sources (the engine's reloads and drain changes, through the feeds at the end of this file;
//! pattern writes; bus connects and disconnects, through `super::bus`) publish here; the hub gives each event the next id, keeps the newest ones in a bounded replay
//! buffer for `after_event_id` resumption, and fans them out on a bounded broadcast channel. A
//! stream that falls behind the channel is told it lagged and resyncs with a snapshot: no
//! subscriber can slow a publisher or another subscriber.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use chrono::Utc;
use tokio::sync::broadcast;

use tokio::sync::watch;

use super::{
    StatusSources, convert, drain_pb, generation_pb,
    status::{config_generation_pb, member_pb},
};
use crate::{
    bus::{BusEvent, BusSink},
    config::reload::{ConfigEvent, ConfigEventSink},
    engine::{EventKind, EventSink},
    pb,
    writes::{WriteEvent, WriteEventSink, WriteKind},
};

/// A published event (shared by every stream that sends it).
pub type Event = Arc<pb::WatchStatusResponse>;

/// Where a new subscriber starts.
#[derive(Debug)]
pub enum Start {
    /// Send these buffered events (all after the requested id), then follow live.
    Replay(Vec<Event>),
    /// The requested id is older than the buffer (or 0): start with a snapshot. `resync` is true
    /// when the client asked to resume and could not.
    Snapshot {
        /// Whether the client asked to resume from an id the buffer no longer holds.
        resync: bool,
    },
}

#[derive(Debug)]
struct Ring {
    next_id: u64,
    buffer: VecDeque<Event>,
}

/// The hub (cheap to clone).
#[derive(Debug, Clone)]
pub struct EventHub {
    /// A std `Mutex`: publishing (id, buffer push, broadcast send) and subscribing (replay copy,
    /// receiver creation) happen under it, so a new subscriber sees every event exactly once.
    ring: Arc<Mutex<Ring>>,
    capacity: usize,
    tx: broadcast::Sender<Event>,
}

impl EventHub {
    /// A hub keeping the last `capacity` events for replay and as the live channel's bound.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (tx, _) = broadcast::channel(capacity);
        EventHub {
            ring: Arc::new(Mutex::new(Ring {
                next_id: 1,
                buffer: VecDeque::with_capacity(capacity),
            })),
            capacity,
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an event: `event_id` and `at` are set here. Returns the id.
    pub fn publish(&self, mut event: pb::WatchStatusResponse) -> u64 {
        let mut ring = self.lock();
        let id = ring.next_id;
        ring.next_id += 1;
        event.event_id = id;
        event.at = Some(convert::timestamp(Utc::now()));
        let event = Arc::new(event);
        if ring.buffer.len() == self.capacity {
            ring.buffer.pop_front();
        }
        ring.buffer.push_back(Arc::clone(&event));
        // No stream open is normal.
        let _ = self.tx.send(event);
        id
    }

    /// The id of the newest event (0 if none yet).
    pub fn last_id(&self) -> u64 {
        self.lock().next_id - 1
    }

    /// Subscribes for events after `after_event_id` (0: from now, starting with a snapshot).
    /// Also returns the id of the newest event at that moment (what a snapshot reflects).
    pub fn subscribe(&self, after_event_id: u64) -> (Start, broadcast::Receiver<Event>, u64) {
        let ring = self.lock();
        let rx = self.tx.subscribe();
        let last = ring.next_id - 1;
        let oldest = ring.buffer.front().map_or(ring.next_id, |e| e.event_id);
        let start = if after_event_id == 0 {
            Start::Snapshot { resync: false }
        } else if after_event_id > last {
            // An id from the future (another process, or before a restart): the client's view
            // cannot be trusted, so resync.
            Start::Snapshot { resync: true }
        } else if after_event_id + 1 < oldest {
            Start::Snapshot { resync: true }
        } else {
            Start::Replay(
                ring.buffer
                    .iter()
                    .filter(|e| e.event_id > after_event_id)
                    .cloned()
                    .collect(),
            )
        };
        (start, rx, last)
    }
}

// ---------------------------------------------------------------------------------------------
// Feeds: what the engine and the drain publish here, translated to WatchStatus events.

/// Turns the config reload's events into WatchStatus events with target CONFIG.
pub fn config_sink(hub: EventHub) -> ConfigEventSink {
    Arc::new(move |event| {
        let mut out = pb::WatchStatusResponse {
            target: pb::Target::Config.into(),
            ..Default::default()
        };
        match event {
            ConfigEvent::Started => out.kind = pb::EventKind::ReloadStarted.into(),
            ConfigEvent::Succeeded(generation) => {
                out.kind = pb::EventKind::ReloadSucceeded.into();
                out.generation = Some(config_generation_pb(&generation));
            }
            ConfigEvent::Failed(error) => {
                out.kind = pb::EventKind::ReloadFailed.into();
                out.error = error;
            }
        }
        hub.publish(out);
    })
}

/// Turns served pattern writes into WatchStatus events with target PATTERNS (after the
/// reload events of the load that served them).
pub fn write_sink(hub: EventHub) -> WriteEventSink {
    Arc::new(move |event: WriteEvent| {
        let kind = match event.kind {
            WriteKind::Learned => pb::EventKind::PatternLearned,
            WriteKind::Approved => pb::EventKind::PatternApproved,
            WriteKind::Disabled => pb::EventKind::PatternDisabled,
            WriteKind::Deleted => pb::EventKind::PatternDeleted,
        };
        hub.publish(pb::WatchStatusResponse {
            kind: kind.into(),
            target: pb::Target::Patterns.into(),
            pattern_id: event.id,
            generation: event.generation.as_deref().map(generation_pb),
            ..Default::default()
        });
    })
}

/// Turns the engine's reload events into WatchStatus events (called synchronously by the
/// engine, so a reload is announced before the requests it served get their answer).
pub fn engine_sink(hub: EventHub) -> EventSink {
    Arc::new(move |event| {
        let mut out = pb::WatchStatusResponse {
            target: pb::Target::Patterns.into(),
            ..Default::default()
        };
        match &event.kind {
            EventKind::ReloadStarted { .. } => out.kind = pb::EventKind::ReloadStarted.into(),
            EventKind::ReloadSucceeded { generation, .. } => {
                out.kind = pb::EventKind::ReloadSucceeded.into();
                out.generation = Some(generation_pb(generation));
            }
            EventKind::ReloadFailed { error, .. } => {
                out.kind = pb::EventKind::ReloadFailed.into();
                out.error = error.clone();
            }
            EventKind::RolledBack { generation, .. } => {
                out.kind = pb::EventKind::Rollback.into();
                out.generation = Some(generation_pb(generation));
                hub.publish(out.clone());
                out.kind = pb::EventKind::Pin.into();
            }
            EventKind::Unpinned { .. } => out.kind = pb::EventKind::Unpin.into(),
            // Held reloads show in status (pending_changes), on heartbeats and snapshots.
            EventKind::Held { .. } => return,
            EventKind::Quarantined { id, reason } => {
                out.kind = pb::EventKind::PatternQuarantined.into();
                out.pattern_id = *id;
                out.error = reason.clone();
            }
            EventKind::Released { id } => {
                out.kind = pb::EventKind::PatternReleased.into();
                out.pattern_id = *id;
            }
        }
        hub.publish(out);
    })
}

/// Publishes the bus's events on WatchStatus: connects and disconnects (target BUS), fleet
/// members joining and leaving, and broadcast rollbacks not followed (target PATTERNS).
pub fn bus_event_sink(hub: EventHub) -> BusSink {
    Arc::new(move |event| {
        let mut out = pb::WatchStatusResponse {
            target: pb::Target::Bus.into(),
            ..Default::default()
        };
        match event {
            BusEvent::Connected { node, .. } => {
                out.kind = pb::EventKind::BusConnected.into();
                out.bus_node = node;
            }
            BusEvent::Disconnected { error, node } => {
                out.kind = pb::EventKind::BusDisconnected.into();
                out.error = error;
                out.bus_node = node;
            }
            BusEvent::MemberJoined(m) => {
                out.kind = pb::EventKind::FleetMemberJoined.into();
                out.fleet_member = Some(member_pb(&m, false));
            }
            BusEvent::MemberLeft(m) => {
                out.kind = pb::EventKind::FleetMemberLeft.into();
                out.fleet_member = Some(member_pb(&m, false));
            }
            BusEvent::SwapStarted => out.kind = pb::EventKind::ReloadStarted.into(),
            BusEvent::Swapped { .. } => out.kind = pb::EventKind::ReloadSucceeded.into(),
            BusEvent::SwapFailed { error } => {
                out.kind = pb::EventKind::ReloadFailed.into();
                out.error = error;
            }
            BusEvent::RollbackFailed { error } => {
                out.kind = pb::EventKind::RollbackFailed.into();
                out.target = pb::Target::Patterns.into();
                out.error = error;
            }
        }
        hub.publish(out);
    })
}

/// Publishes every change of the drain state (not of the in-flight counts) as an event.
pub async fn forward_drain(
    state: StatusSources,
    events: EventHub,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = state.drain.subscribe();
    let mut draining = rx.borrow_and_update().draining;
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        let snap = rx.borrow_and_update().clone();
        if snap.draining != draining {
            draining = snap.draining;
            let mut status = super::hot_reload_status(&state);
            status.drain = Some(drain_pb(&snap));
            events.publish(pb::WatchStatusResponse {
                kind: pb::EventKind::DrainChanged.into(),
                status: Some(status),
                ..Default::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: pb::EventKind) -> pb::WatchStatusResponse {
        pb::WatchStatusResponse {
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn ids_increase_and_resume_replays_exactly_what_was_missed() {
        let hub = EventHub::new(4);
        for _ in 0..6 {
            hub.publish(event(pb::EventKind::Heartbeat));
        }
        assert_eq!(hub.last_id(), 6);
        // Buffer holds 3..=6: resuming after 2 or later replays; after 1 must resync.
        match hub.subscribe(4).0 {
            Start::Replay(events) => {
                assert_eq!(
                    events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
                    vec![5, 6]
                )
            }
            other => panic!("{other:?}"),
        }
        match hub.subscribe(2).0 {
            Start::Replay(events) => assert_eq!(events.len(), 4),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            hub.subscribe(1).0,
            Start::Snapshot { resync: true }
        ));
        assert!(matches!(
            hub.subscribe(99).0,
            Start::Snapshot { resync: true }
        ));
        assert!(matches!(
            hub.subscribe(0).0,
            Start::Snapshot { resync: false }
        ));
        assert!(matches!(hub.subscribe(6).0, Start::Replay(ref v) if v.is_empty()));
    }

    #[tokio::test]
    async fn a_subscriber_sees_later_events_live_and_lags_instead_of_blocking() {
        let hub = EventHub::new(2);
        let (_, mut rx, _) = hub.subscribe(0);
        hub.publish(event(pb::EventKind::Heartbeat));
        assert_eq!(rx.recv().await.expect("live").event_id, 1);
        for _ in 0..5 {
            hub.publish(event(pb::EventKind::Heartbeat)); // never blocks on the slow receiver
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}

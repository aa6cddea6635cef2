//! The JSON the dashboard page reads: a small serde view of the protobuf messages (which have no
//! serde), holding only what the page shows. Times are Unix milliseconds (what JavaScript's
//! `Date` takes), durations milliseconds, enums their proto names without the prefix.

use serde::Serialize;

use crate::pb;

/// Unix milliseconds of a timestamp (0 when unset).
fn millis(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    })
}

/// Milliseconds of a duration, fractional (0 when unset).
fn duration_ms(d: Option<&prost_types::Duration>) -> f64 {
    d.map_or(0.0, |d| {
        d.seconds as f64 * 1000.0 + f64::from(d.nanos) / 1e6
    })
}

/// An enum's proto name without its type prefix (`RELOAD_SOURCE_GRPC` → `GRPC`).
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

/// One WatchStatus message, as an SSE event's data.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// The hub's event id (snapshots and heartbeats repeat the last one).
    pub id: u64,
    /// When it was published (ms).
    pub at: i64,
    /// `SNAPSHOT`, `RELOAD_SUCCEEDED`, `HEARTBEAT`, ...
    pub kind: String,
    /// A snapshot sent because the client's position could not be resumed.
    pub resync: bool,
    /// `PATTERNS`, `CONFIG`, `BUS`, or `UNSPECIFIED` for events of no target.
    pub target: String,
    /// The generation a reload or rollback produced.
    pub generation: Option<GenerationView>,
    /// The pattern a pattern event is about (0: none).
    pub pattern_id: i64,
    /// What failed, for failure events.
    pub error: String,
    /// The fleet member that joined or left.
    pub member: Option<MemberView>,
    /// The whole status (snapshots, heartbeats, drain changes).
    pub status: Option<StatusView>,
}

impl EventView {
    /// The view of `e`.
    pub fn of(e: &pb::WatchStatusResponse) -> EventView {
        EventView {
            id: e.event_id,
            at: millis(e.at.as_ref()),
            kind: short(e.kind().as_str_name(), "EVENT_KIND_"),
            resync: e.resync,
            target: short(e.target().as_str_name(), "TARGET_"),
            generation: e.generation.as_ref().map(GenerationView::of),
            pattern_id: e.pattern_id,
            error: e.error.clone(),
            member: e.fleet_member.as_ref().map(MemberView::of),
            status: e.status.as_ref().map(StatusView::of),
        }
    }
}

/// One generation of a target.
#[derive(Debug, Serialize)]
pub struct GenerationView {
    /// The generation number (0 before the first load).
    pub generation: u64,
    /// Hash of what is served.
    pub content_hash: String,
    /// Patterns served (or config keys set).
    pub item_count: u64,
    /// The store revision it reflects.
    pub store_revision: i64,
    /// What asked for the load: `STARTUP`, `GRPC`, `BUS`, `POLL`, `SIGNAL`, ...
    pub source: String,
    /// `FULL`, `DELTA`, `SINGLE`, `NOOP`.
    pub mode: String,
    /// When it was loaded (ms).
    pub loaded_at: i64,
    /// How long the load took (ms).
    pub load_ms: f64,
    /// The reason given.
    pub reason: String,
}

impl GenerationView {
    fn of(g: &pb::GenerationInfo) -> GenerationView {
        GenerationView {
            generation: g.generation,
            content_hash: g.content_hash.clone(),
            item_count: g.item_count,
            store_revision: g.store_revision,
            source: short(g.source().as_str_name(), "RELOAD_SOURCE_"),
            mode: short(g.mode().as_str_name(), "LOAD_MODE_"),
            loaded_at: millis(g.loaded_at.as_ref()),
            load_ms: duration_ms(g.load_duration.as_ref()),
            reason: g.reason.clone(),
        }
    }
}

/// A target's state (patterns, config).
#[derive(Debug, Serialize)]
pub struct TargetView {
    /// `PATTERNS` or `CONFIG`.
    pub target: String,
    /// What is served.
    pub current: Option<GenerationView>,
    /// The last load's error (empty after a success).
    pub last_error: String,
    /// When the last load failed (ms; 0: never).
    pub last_error_at: i64,
    /// Loads failed in a row.
    pub consecutive_failures: u32,
    /// A load is running.
    pub loading: bool,
    /// Pinned by a rollback (automatic reloads held).
    pub pinned: bool,
    /// Automatic reloads held while pinned.
    pub pending_changes: u32,
    /// Generations kept for rollback, newest first.
    pub retained: Vec<GenerationView>,
}

impl TargetView {
    fn of(t: &pb::TargetStatus) -> TargetView {
        TargetView {
            target: short(t.target().as_str_name(), "TARGET_"),
            current: t.current.as_ref().map(GenerationView::of),
            last_error: t.last_error.clone(),
            last_error_at: millis(t.last_error_at.as_ref()),
            consecutive_failures: t.consecutive_failures,
            loading: t.loading,
            pinned: t.pinned,
            pending_changes: t.pending_changes,
            retained: t.retained.iter().map(GenerationView::of).collect(),
        }
    }
}

/// The drain.
#[derive(Debug, Serialize)]
pub struct DrainView {
    /// Draining: new work refused, health NOT_SERVING.
    pub draining: bool,
    /// Since when (ms; 0 when not draining).
    pub since: i64,
    /// Why.
    pub reason: String,
    /// Requests being served.
    pub in_flight: u32,
    /// WatchStatus streams open.
    pub open_streams: u32,
}

impl DrainView {
    /// The view of `d`.
    pub fn of(d: &pb::DrainStatus) -> DrainView {
        DrainView {
            draining: d.draining,
            since: millis(d.since.as_ref()),
            reason: d.reason.clone(),
            in_flight: d.in_flight_requests,
            open_streams: d.open_streams,
        }
    }
}

/// The Redis bus.
#[derive(Debug, Serialize)]
pub struct BusView {
    /// A bus is configured.
    pub enabled: bool,
    /// The subscription is connected.
    pub connected: bool,
    /// The channel.
    pub channel: String,
    /// The last connection error.
    pub last_error: String,
    /// When (ms).
    pub last_error_at: i64,
    /// Reconnections since start.
    pub reconnects: u64,
    /// Messages received since start.
    pub received: u64,
    /// Received messages by outcome: applied, self_skipped, handover_duplicate, rejected.
    pub outcomes: Vec<(String, u64)>,
    /// Announcements published, and failed.
    pub published: u64,
    /// Announcements that could not be published.
    pub publish_failures: u64,
}

impl BusView {
    fn of(b: &pb::BusStatus) -> BusView {
        BusView {
            enabled: b.enabled,
            connected: b.connected,
            channel: b.channel.clone(),
            last_error: b.last_error.clone(),
            last_error_at: millis(b.last_error_at.as_ref()),
            reconnects: b.reconnects,
            received: b.messages_received,
            outcomes: vec![
                ("applied".into(), b.messages_applied),
                ("self_skipped".into(), b.self_skipped),
                ("handover_duplicate".into(), b.handover_duplicates),
                ("rejected".into(), b.rejected.values().sum()),
            ],
            published: b.published,
            publish_failures: b.publish_failures,
        }
    }
}

/// One fleet member as this replica sees it.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Its instance id.
    pub instance_id: String,
    /// Its advertised address.
    pub addr: String,
    /// The generation it serves.
    pub generation: u64,
    /// Hash of what it serves.
    pub content_hash: String,
    /// Serving what this replica serves.
    pub converged: bool,
    /// Draining.
    pub draining: bool,
    /// Its last load or rollback error.
    pub last_error: String,
    /// Its last report (ms).
    pub last_seen: i64,
}

impl MemberView {
    fn of(m: &pb::FleetMember) -> MemberView {
        let last_error = if m.rollback_error.is_empty() {
            m.last_error.clone()
        } else {
            m.rollback_error.clone()
        };
        MemberView {
            instance_id: m.instance_id.clone(),
            addr: m.addr.clone(),
            generation: m.generation,
            content_hash: m.content_hash.clone(),
            converged: m.converged,
            draining: m.draining,
            last_error,
            last_seen: millis(m.updated_at.as_ref()),
        }
    }
}

/// The fleet (only with a bus).
#[derive(Debug, Serialize)]
pub struct FleetView {
    /// Every member, this replica included.
    pub members: Vec<MemberView>,
    /// Every member serves the same content.
    pub converged: bool,
    /// Why the view could not be read, if so.
    pub error: String,
    /// When it was read (ms).
    pub read_at: i64,
}

/// Everything the page shows of one replica.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// This replica's instance id.
    pub instance_id: String,
    /// The server's version.
    pub version: String,
    /// When this process started (ms).
    pub started_at: i64,
    /// The patterns target.
    pub patterns: Option<TargetView>,
    /// The config target.
    pub config: Option<TargetView>,
    /// The drain.
    pub drain: Option<DrainView>,
    /// The bus.
    pub bus: Option<BusView>,
    /// The fleet, with a bus.
    pub fleet: Option<FleetView>,
}

impl StatusView {
    /// The view of `s`.
    pub fn of(s: &pb::GetStatusResponse) -> StatusView {
        let target = |which: pb::Target| {
            s.targets
                .iter()
                .find(|t| t.target() == which)
                .map(TargetView::of)
        };
        StatusView {
            instance_id: s.instance_id.clone(),
            version: s.version.clone(),
            started_at: millis(s.started_at.as_ref()),
            patterns: target(pb::Target::Patterns),
            config: target(pb::Target::Config),
            drain: s.drain.as_ref().map(DrainView::of),
            bus: s.bus.as_ref().map(BusView::of),
            fleet: s.fleet.as_ref().map(|f| FleetView {
                members: f.members.iter().map(MemberView::of).collect(),
                converged: f.converged,
                error: f.error.clone(),
                read_at: millis(f.read_at.as_ref()),
            }),
        }
    }
}

/// A Reload's answer.
#[derive(Debug, Serialize)]
pub struct ReloadView {
    /// Before.
    pub generation_before: u64,
    /// After (the same when nothing changed).
    pub generation_after: u64,
    /// Whether the served content changed.
    pub changed: bool,
    /// Rows added, updated, removed.
    pub added: u32,
    /// Rows updated.
    pub updated: u32,
    /// Rows removed.
    pub removed: u32,
    /// `FULL`, `DELTA`, ...
    pub mode: String,
    /// Folded into a load already running.
    pub coalesced: bool,
}

impl ReloadView {
    /// The view of `r`.
    pub fn of(r: &pb::ReloadResponse) -> ReloadView {
        ReloadView {
            generation_before: r.generation_before,
            generation_after: r.generation_after,
            changed: r.changed,
            added: r.added,
            updated: r.updated,
            removed: r.removed,
            mode: short(r.mode().as_str_name(), "LOAD_MODE_"),
            coalesced: r.coalesced,
        }
    }
}

/// A Rollback's answer.
#[derive(Debug, Serialize)]
pub struct RollbackView {
    /// Before.
    pub generation_before: u64,
    /// What is served now.
    pub current: Option<GenerationView>,
    /// Pinned (automatic reloads held until a manual Reload).
    pub pinned: bool,
}

impl RollbackView {
    /// The view of `r`.
    pub fn of(r: &pb::RollbackResponse) -> RollbackView {
        RollbackView {
            generation_before: r.generation_before,
            current: r.current.as_ref().map(GenerationView::of),
            pinned: r.pinned,
        }
    }
}

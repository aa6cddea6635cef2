//! The API side of `crate::bus`: `Reload(TARGET_BUS)`, the broadcast part of `Rollback`, the
//! checks of `wait_for_fleet`, status views of the bus and the fleet, and the WatchStatus events
//! the bus produces.

use std::{sync::Arc, time::Duration, time::Instant};

use super::{
    ReloadField, ReloadState, check_reload_fields, convert,
    error::{ApiError, ApiResult, Reason},
    events::EventHub,
    generation_pb,
};
use crate::{
    bus::{
        Bus, BusEvent, BusSink, BusStatus, SwapError,
        fleet::{FleetView, FleetWait, Member},
    },
    engine::{Generation, LoadReport},
    pb,
    snapshot::scheme,
};

/// Longest `wait_for_fleet` accepted.
const MAX_FLEET_WAIT: Duration = Duration::from_secs(300);

/// Checks `Reload.wait_for_fleet`: needs broadcast, at most [`MAX_FLEET_WAIT`].
pub(super) fn fleet_wait(req: &pb::ReloadRequest) -> ApiResult<Option<Duration>> {
    check_fleet_wait(req.wait_for_fleet.as_ref(), req.broadcast)
}

/// Checks a `wait_for_fleet`: needs broadcast, at most [`MAX_FLEET_WAIT`].
fn check_fleet_wait(
    wait: Option<&prost_types::Duration>,
    broadcast: bool,
) -> ApiResult<Option<Duration>> {
    let Some(d) = wait else {
        return Ok(None);
    };
    if !broadcast {
        return Err(ApiError::invalid(
            "wait_for_fleet",
            "needs broadcast (the other instances learn of the reload from the bus)",
        ));
    }
    match convert::std_duration(d) {
        Some(wait) if wait <= MAX_FLEET_WAIT => Ok(Some(wait)),
        _ => Err(ApiError::invalid(
            "wait_for_fleet",
            "must be a non-negative duration of at most 5 minutes",
        )),
    }
}

/// Fleet view of one member.
pub(super) fn member_pb(m: &Member, converged: bool) -> pb::FleetMember {
    pb::FleetMember {
        instance_id: m.instance_id.clone(),
        addr: m.addr.clone(),
        generation: m.generation,
        content_hash: m.content_hash.clone(),
        content_hash_scheme: m.content_hash_scheme.unwrap_or(0),
        store_revision: m.store_revision,
        store_position: m.store_position.clone().unwrap_or_default(),
        item_count: m.item_count,
        draining: m.draining,
        last_error: m.last_error.clone().unwrap_or_default(),
        rollback_error: m.rollback_error.clone().unwrap_or_default(),
        updated_at: chrono::DateTime::from_timestamp_millis(m.updated_at_ms)
            .map(convert::timestamp),
        converged,
    }
}

/// Status view of the fleet; a member is `converged` when it serves what this instance does.
pub(super) fn fleet_pb(v: &FleetView, me: &Generation) -> pb::FleetStatus {
    let hash = me.snapshot.content_hash();
    pb::FleetStatus {
        members: v
            .members
            .iter()
            .map(|m| {
                let same = m.serves(&hash, Some(scheme::CURRENT), me.store_revision);
                member_pb(m, same)
            })
            .collect(),
        converged: v.agrees(),
        read_at: v.read_at.map(convert::timestamp),
        error: v.error.clone().unwrap_or_default(),
        truncated: v.truncated,
    }
}

/// Status view of the bus.
pub(super) fn bus_pb(b: &BusStatus) -> pb::BusStatus {
    pb::BusStatus {
        enabled: b.enabled,
        connected: b.connected,
        channel: b.channel.clone(),
        redis_url: b.redis_url.clone(),
        signed: b.signed,
        connected_since: b.connected_since.map(convert::timestamp),
        last_error: b.last_error.clone().unwrap_or_default(),
        last_error_at: b.last_error_at.map(convert::timestamp),
        next_retry_at: b.next_retry_at.map(convert::timestamp),
        reconnects: b.reconnects,
        messages_received: b.messages_received,
        messages_applied: b.messages_applied,
        rejected: b
            .rejected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        self_skipped: b.self_skipped,
        last_message_at: b.last_message_at.map(convert::timestamp),
        published: b.published,
        publish_failures: b.publish_failures,
        last_publish_error: b.last_publish_error.clone().unwrap_or_default(),
        swaps: b.swaps,
        swapped_at: b.swapped_at.map(convert::timestamp),
        handover_duplicates: b.handover_duplicates,
        rollbacks_followed: b.rollbacks_followed,
        rollbacks_failed: b.rollbacks_failed,
        last_rollback_error: b.last_rollback_error.clone().unwrap_or_default(),
        memory_releases: b.memory_releases,
    }
}

/// `Reload(TARGET_BUS)`: checks the request, then [`crate::bus::Bus::swap`] (which announces
/// and records the swap) and translates.
pub(super) async fn reload_bus(
    state: &ReloadState,
    req: pb::ReloadRequest,
    started: Instant,
    caller: String,
) -> ApiResult<pb::ReloadResponse> {
    use ReloadField::*;
    check_reload_fields(
        &req,
        pb::Target::Bus,
        &[PatternId, Full, Broadcast, DatabaseUrl],
    )?;
    let url = Some(req.redis_url.as_str()).filter(|u| !u.is_empty());
    let swapped = state
        .bus
        .swap(url, req.validate_only, caller, &req.reason)
        .await
        .map_err(|e| match e {
            SwapError::InvalidUrl(m) => ApiError::invalid("redis_url", m),
            e @ SwapError::Disabled => {
                ApiError::reasoned(Reason::BusNotConfigured, e.to_string(), vec![])
            }
            e => ApiError::reasoned(Reason::BusSwapFailed, e.to_string(), vec![]),
        })?;
    let current = state.engine.current();
    Ok(pb::ReloadResponse {
        target: pb::Target::Bus.into(),
        generation_before: current.number,
        generation_after: current.number,
        duration: Some(convert::duration(started.elapsed())),
        validate_only: req.validate_only,
        current: Some(generation_pb(&current)),
        redis_url: swapped.url,
        previous_redis_url: swapped.previous_url,
        ..Default::default()
    })
}

/// Checks a broadcast rollback before anything is rolled back: it needs the bus, and a valid
/// `wait_for_fleet`.
pub(super) fn check_rollback(bus: &Bus, req: &pb::RollbackRequest) -> ApiResult<Option<Duration>> {
    let wait = check_fleet_wait(req.wait_for_fleet.as_ref(), req.broadcast)?;
    if req.broadcast && !bus.enabled() {
        return Err(ApiError::reasoned(
            Reason::BusNotConfigured,
            "broadcast needs the Redis bus: start hotplane with --redis-url \
             (HOTPLANE_REDIS_URL), or roll back each replica",
            vec![],
        ));
    }
    Ok(wait)
}

/// After a local rollback with broadcast: announces the content hash now served, and with a
/// wait, waits for every live instance to serve it (or to report that it cannot).
pub(super) async fn broadcast_rollback(
    bus: &Bus,
    report: &LoadReport,
    wait: Option<Duration>,
    response: &mut pb::RollbackResponse,
) {
    let hash = report.current.snapshot.content_hash();
    let revision = report.current.store_revision;
    if let Err(e) = bus.announce_rollback(&hash, revision).await {
        response.publish_error = e.to_string();
    }
    if let Some(wait) = wait
        && let Some(found) = bus.wait_for_content(&hash, wait).await
    {
        let (members, converged, error) = fleet_result(found);
        response.fleet = members;
        response.fleet_converged = converged;
        response.fleet_error = error;
    }
}

/// A fleet wait's outcome, as response fields: members, converged, error.
pub(super) fn fleet_result(found: FleetWait) -> (Vec<pb::FleetMember>, bool, String) {
    let members = found
        .members
        .iter()
        .map(|(m, ok)| member_pb(m, *ok))
        .collect();
    (members, found.converged, found.error.unwrap_or_default())
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
            BusEvent::Connected { .. } => out.kind = pb::EventKind::BusConnected.into(),
            BusEvent::Disconnected { error } => {
                out.kind = pb::EventKind::BusDisconnected.into();
                out.error = error;
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

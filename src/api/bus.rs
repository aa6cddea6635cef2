//! The API side of `crate::bus`: `Reload(TARGET_BUS)`, the checks of `broadcast` and
//! `wait_for_fleet`, and the fleet's answer as response fields (telling the fleet is
//! `crate::broadcast`'s). The bus's status views are `super::status`'s; its WatchStatus
//! events, `super::events`'s.

use std::{time::Duration, time::Instant};

use super::{
    ReloadField, ReloadState, check_reload_fields, convert,
    error::{ApiError, ApiResult, Reason},
    generation_pb,
    status::member_pb,
};
use crate::{
    broadcast::Told,
    bus::{Bus, SwapError, fleet::FleetWait},
    pb,
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
    if req.broadcast && !bus.carries_rollbacks() {
        return Err(ApiError::reasoned(
            Reason::BusNotConfigured,
            "broadcast needs the Redis bus (the PostgreSQL bus carries store changes only): \
             start hotplane with --redis-url (HOTPLANE_REDIS_URL), or roll back each replica",
            vec![],
        ));
    }
    Ok(wait)
}

/// What telling the fleet gave, as response fields: publish error, members, converged, error.
pub(super) fn told_fields(told: Told) -> (String, Vec<pb::FleetMember>, bool, String) {
    let (members, converged, error) = told.fleet.map(fleet_result).unwrap_or_default();
    (
        told.publish_error.unwrap_or_default(),
        members,
        converged,
        error,
    )
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

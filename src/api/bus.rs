//! Status views of the Redis bus and the fleet, and the check of `Reload.wait_for_fleet`: the
//! API side of `crate::bus`.

use std::time::Duration;

use super::{
    convert,
    error::{ApiError, ApiResult},
};
use crate::{
    bus::{
        BusStatus,
        fleet::{FleetView, Member},
    },
    engine::Generation,
    pb,
};

/// Longest `wait_for_fleet` accepted.
const MAX_FLEET_WAIT: Duration = Duration::from_secs(300);

/// Checks `wait_for_fleet`: needs broadcast, at most [`MAX_FLEET_WAIT`].
pub(super) fn fleet_wait(req: &pb::ReloadRequest) -> ApiResult<Option<Duration>> {
    let Some(d) = &req.wait_for_fleet else {
        return Ok(None);
    };
    if !req.broadcast {
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
        store_revision: m.store_revision,
        item_count: m.item_count,
        draining: m.draining,
        last_error: m.last_error.clone().unwrap_or_default(),
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
                let same = m.content_hash == hash && m.store_revision == me.store_revision;
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
    }
}

//! Status views: what GetStatus, WatchStatus snapshots and heartbeats, and reload answers say
//! about generations and targets (patterns and config), translated from the engine and the
//! live config. Read-only: nothing here changes state.

use super::{StatusSources, convert};
use crate::{
    bus::{
        BusStatus,
        fleet::{FleetView, Member},
    },
    config::live::{Change, ConfigGeneration},
    config::source::Pinned,
    engine::{Generation, LoadMode, Source},
    pb,
    snapshot::scheme,
};

/// Status of the pattern target.
pub(super) fn patterns_target(state: &StatusSources) -> pb::TargetStatus {
    let engine = &state.engine;
    let h = engine.health();
    let current = engine.current();
    pb::TargetStatus {
        target: pb::Target::Patterns.into(),
        current: (current.number > 0).then(|| generation_pb(&current)),
        last_success_at: h.last_success_at.map(convert::timestamp),
        last_error: h.last_error.unwrap_or_default(),
        last_error_at: h.last_error_at.map(convert::timestamp),
        consecutive_failures: h.consecutive_failures,
        loads_total: h.loads_total,
        failures_total: h.failures_total,
        loading: h.loading_since.is_some(),
        retained: engine.retained().iter().map(|g| generation_pb(g)).collect(),
        pinned: h.pinned.is_some(),
        pending_changes: h.pending_changes,
        coalesced_total: h.coalesced_total,
        quarantined: quarantined_pb(current.snapshot.quarantined()),
        quarantined_total: current.snapshot.quarantined().len() as u32,
    }
}

/// Most quarantined rows listed in a status (the total is reported beside them).
const MAX_QUARANTINED_LISTED: usize = 100;

fn quarantined_pb(rows: &std::collections::BTreeMap<i64, String>) -> Vec<pb::QuarantinedPattern> {
    rows.iter()
        .take(MAX_QUARANTINED_LISTED)
        .map(|(id, reason)| pb::QuarantinedPattern {
            pattern_id: *id,
            reason: reason.clone(),
        })
        .collect()
}

/// The full status of this instance (GetStatus, and WatchStatus snapshots and heartbeats).
pub fn status_pb(s: &StatusSources) -> pb::GetStatusResponse {
    let flush = s.hits.stats();
    pb::GetStatusResponse {
        instance_id: s.instance_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: Some(convert::timestamp(s.started_at)),
        targets: vec![patterns_target(s), config_target(s)],
        store: Some({
            let store = s.engine.store();
            pb::StoreStatus {
                backend: store.backend().to_owned(),
                url: store.url().to_owned(),
                schema: store.schema().unwrap_or_default().to_owned(),
                hit_flush_failures: flush.failures,
                hit_flush_last_error: flush.last_error.unwrap_or_default(),
                hits_pending: s.hits.pending(),
            }
        }),
        drain: Some(super::drain_pb(&s.drain.snapshot())),
        bus: Some(bus_pb(&s.bus.status())),
        fleet: s.bus.fleet().map(|v| fleet_pb(&v, &s.engine.current())),
        audit: Some(super::audit_status_pb(
            &s.audit.stats(),
            s.audit_retention_days,
        )),
        config: Some(config_status(s)),
    }
}

pub(super) fn source_pb(s: Source) -> pb::ReloadSource {
    match s {
        Source::Startup => pb::ReloadSource::Startup,
        Source::Grpc => pb::ReloadSource::Grpc,
        Source::Bus => pb::ReloadSource::Bus,
        Source::Poll => pb::ReloadSource::Poll,
        Source::Signal => pb::ReloadSource::Signal,
        Source::Write => pb::ReloadSource::Write,
        Source::Rollback => pb::ReloadSource::Rollback,
    }
}

pub(super) fn mode_pb(m: LoadMode) -> pb::LoadMode {
    match m {
        LoadMode::Full => pb::LoadMode::Full,
        LoadMode::Delta => pb::LoadMode::Delta,
        LoadMode::Single => pb::LoadMode::Single,
        LoadMode::Noop => pb::LoadMode::Noop,
        LoadMode::Invalidate => pb::LoadMode::Invalidate,
    }
}

/// Status view of one generation.
pub fn generation_pb(g: &Generation) -> pb::GenerationInfo {
    pb::GenerationInfo {
        generation: g.number,
        content_hash: g.snapshot.content_hash(),
        content_hash_scheme: crate::snapshot::scheme::CURRENT,
        store_revision: g.store_revision,
        store_position: g.cursor.as_ref().map(|c| c.position()).unwrap_or_default(),
        loaded_at: Some(convert::timestamp(g.loaded_at)),
        source: source_pb(g.source).into(),
        load_duration: Some(convert::duration(g.load_duration)),
        item_count: g.snapshot.len() as u64,
        mode: mode_pb(g.mode).into(),
        reason: g.reason.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// The bus and the fleet

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
        node: b.node.clone(),
        node_changes: b.node_changes,
    }
}

// ---------------------------------------------------------------------------------------------
// The config target

/// A pinned key as a `ConfigChange`: the value in effect is old, the file's (ignored) is new.
pub(super) fn pinned_pb(p: &Pinned) -> pb::ConfigChange {
    pb::ConfigChange {
        key: p.key.to_owned(),
        old_value: p.value.clone(),
        new_value: p.file_value.clone(),
        pinned_by: p.by.clone(),
        ..Default::default()
    }
}

pub(super) fn change_pb(c: &Change) -> pb::ConfigChange {
    pb::ConfigChange {
        key: c.key.to_owned(),
        old_value: c.old.clone(),
        new_value: c.new.clone(),
        restart_reason: c.restart_reason.to_owned(),
        pinned_by: String::new(),
    }
}

/// The config generation as a `GenerationInfo`: the file's hash, the keys it sets as the item
/// count.
pub(super) fn config_generation_pb(g: &ConfigGeneration) -> pb::GenerationInfo {
    pb::GenerationInfo {
        generation: g.number,
        content_hash: g.content_hash.clone(),
        content_hash_scheme: 0, // a file's hash, never compared across versions
        store_revision: 0,
        store_position: String::new(),
        loaded_at: Some(convert::timestamp(g.loaded_at)),
        source: source_pb(g.source).into(),
        load_duration: Some(convert::duration(g.load_duration)),
        item_count: g.keys_set as u64,
        mode: pb::LoadMode::Full.into(),
        reason: String::new(),
    }
}

/// TARGET_CONFIG in `GetStatus.targets`: the file generation and reload health.
pub(super) fn config_target(state: &StatusSources) -> pb::TargetStatus {
    let h = state.live.health();
    pb::TargetStatus {
        target: pb::Target::Config.into(),
        current: state.live.generation().map(|g| config_generation_pb(&g)),
        last_success_at: h.last_success_at.map(convert::timestamp),
        last_error: h.last_error.unwrap_or_default(),
        last_error_at: h.last_error_at.map(convert::timestamp),
        consecutive_failures: h.consecutive_failures,
        loads_total: h.loads_total,
        failures_total: h.failures_total,
        ..Default::default()
    }
}

/// `GetStatus.config`: the runtime settings in effect.
pub(super) fn config_status(state: &StatusSources) -> pb::ConfigStatus {
    let s = state.live.settings();
    let c = &s.config;
    pb::ConfigStatus {
        path: state
            .live
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        log_filter: s.log_filter.clone(),
        normalize_profile: c.normalize_profile.to_string(),
        stop_words: s.normalizer.stop_words(),
        learn_min_confidence: s.rules.min_confidence,
        learn_min_chars: u32::try_from(s.rules.min_chars).unwrap_or(u32::MAX),
        learn_auto_approve: s.rules.auto_approve,
        poll_interval: Some(convert::duration(s.poll_interval)),
        fleet_heartbeat: Some(convert::duration(s.fleet.heartbeat)),
        fleet_ttl: Some(convert::duration(s.fleet.ttl)),
        restart_pending: state.live.restart_pending().iter().map(change_pb).collect(),
        pinned: state.live.pinned().iter().map(pinned_pb).collect(),
        admin_rate: s.rate_limit.per_second,
        admin_burst: s.rate_limit.burst,
    }
}

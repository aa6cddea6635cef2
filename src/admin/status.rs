//! Metrics read from the instance's status at scrape time: the same `GetStatusResponse` that
//! GetStatus answers (served generations, drain, bus, fleet, hit flushing, audit), turned into
//! gauges and counters when Prometheus asks. Nothing is counted twice and the request path pays
//! nothing: the figures already exist for GetStatus.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use crate::pb;

/// Where the status comes from (a closure over the application state, made at wiring).
pub type StatusSource = Arc<dyn Fn() -> pb::GetStatusResponse + Send + Sync>;

/// The collector; registered once, called on every scrape.
pub(super) struct StatusCollector {
    pub(super) status: StatusSource,
}

impl std::fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCollector").finish_non_exhaustive()
    }
}

/// Label pairs of one sample.
type Labels = Vec<(&'static str, String)>;

/// One sample: its labels and value.
type Sample = (Labels, f64);

/// Writes one family of samples (`kind` counter or gauge).
fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[Sample],
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    let write = |value: f64, sample: MetricEncoder<'_>| match kind {
        // Counters here are totals kept since start, so whole numbers.
        MetricType::Counter => ConstCounter::new(value as u64).encode(sample),
        _ => ConstGauge::new(value).encode(sample),
    };
    if let [(labels, value)] = samples
        && labels.is_empty()
    {
        return write(*value, metric);
    }
    for (labels, value) in samples {
        write(*value, metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn one(value: f64) -> Vec<Sample> {
    vec![(Vec::new(), value)]
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn target_name(t: &pb::TargetStatus) -> String {
    let name = t.target().as_str_name();
    name.strip_prefix("TARGET_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// Per-target samples of `value`.
fn per_target(s: &pb::GetStatusResponse, value: impl Fn(&pb::TargetStatus) -> f64) -> Vec<Sample> {
    s.targets
        .iter()
        .map(|t| (vec![("target", target_name(t))], value(t)))
        .collect()
}

impl Collector for StatusCollector {
    // One line per metric reads as the table it is.
    #[rustfmt::skip]
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let s = (self.status)();
        let e = &mut enc;
        let version = vec![("version", s.version.clone())];
        family(e, "hotplane_build_info", "Always 1; the version in a label.", Gauge, &[(version, 1.0)])?;
        let started = s.started_at.as_ref().map_or(0.0, |t| t.seconds as f64);
        family(e, "hotplane_start_time_seconds", "When this process started (Unix time).", Gauge, &one(started))?;

        // Targets (patterns, config): what is served and how loading goes.
        let current = |t: &pb::TargetStatus| t.current.clone().unwrap_or_default();
        family(e, "hotplane_generation", "The generation served, by target (0 before the first load).", Gauge, &per_target(&s, |t| current(t).generation as f64))?;
        family(e, "hotplane_items", "Items in the served generation, by target: patterns served, or keys the config file sets.", Gauge, &per_target(&s, |t| current(t).item_count as f64))?;
        family(e, "hotplane_generation_loaded_timestamp_seconds", "When the served generation was loaded (Unix time), by target.", Gauge, &per_target(&s, |t| current(t).loaded_at.map_or(0.0, |l| l.seconds as f64)))?;
        family(e, "hotplane_loads", "Loads that succeeded since start, by target.", Counter, &per_target(&s, |t| t.loads_total as f64))?;
        family(e, "hotplane_load_failures", "Loads that failed since start, by target.", Counter, &per_target(&s, |t| t.failures_total as f64))?;
        family(e, "hotplane_load_consecutive_failures", "Loads failed in a row since the last success, by target (alert when it stays above 0).", Gauge, &per_target(&s, |t| f64::from(t.consecutive_failures)))?;
        let patterns = s.targets.iter().find(|t| t.target() == pb::Target::Patterns).cloned().unwrap_or_default();
        family(e, "hotplane_store_revision", "The store revision the served patterns reflect.", Gauge, &one(current(&patterns).store_revision as f64))?;
        family(e, "hotplane_patterns_loading", "1 while a pattern load runs.", Gauge, &one(flag(patterns.loading)))?;
        family(e, "hotplane_patterns_pinned", "1 while the patterns are pinned by a rollback (automatic reloads are held).", Gauge, &one(flag(patterns.pinned)))?;
        family(e, "hotplane_patterns_pending_changes", "Automatic reloads held while pinned.", Gauge, &one(f64::from(patterns.pending_changes)))?;
        family(e, "hotplane_reloads_coalesced", "Pattern reload requests folded into a load already running or queued.", Counter, &one(patterns.coalesced_total as f64))?;
        family(e, "hotplane_quarantined_patterns", "Rows the store says to serve that break an invariant and are not served.", Gauge, &one(f64::from(patterns.quarantined_total)))?;

        // Hit counting and flushing.
        let store = s.store.clone().unwrap_or_default();
        family(e, "hotplane_hits_pending", "Match hits counted in memory and not yet written to the store (the hit-flush lag).", Gauge, &one(store.hits_pending as f64))?;
        family(e, "hotplane_hit_flush_failures", "Hit flushes that failed since start.", Counter, &one(store.hit_flush_failures as f64))?;

        // Drain.
        let drain = s.drain.clone().unwrap_or_default();
        family(e, "hotplane_draining", "1 while this instance drains (refuses new work, health NOT_SERVING).", Gauge, &one(flag(drain.draining)))?;
        family(e, "hotplane_in_flight_requests", "Requests being served (drain waits for them).", Gauge, &one(f64::from(drain.in_flight_requests)))?;
        family(e, "hotplane_open_streams", "WatchStatus streams open.", Gauge, &one(f64::from(drain.open_streams)))?;

        // The bus.
        let bus = s.bus.clone().unwrap_or_default();
        family(e, "hotplane_bus_enabled", "1 when a Redis bus is configured.", Gauge, &one(flag(bus.enabled)))?;
        family(e, "hotplane_bus_connected", "1 while the bus subscription is connected.", Gauge, &one(flag(bus.connected)))?;
        family(e, "hotplane_bus_reconnects", "Bus reconnections since start.", Counter, &one(bus.reconnects as f64))?;
        family(e, "hotplane_bus_messages_received", "Bus messages received since start.", Counter, &one(bus.messages_received as f64))?;
        let outcomes = [
            ("applied", bus.messages_applied),
            ("self_skipped", bus.self_skipped),
            ("handover_duplicate", bus.handover_duplicates),
            ("rejected", bus.rejected.values().sum()),
        ];
        let outcomes: Vec<Sample> = outcomes.into_iter().map(|(o, v)| (vec![("outcome", o.to_owned())], v as f64)).collect();
        family(e, "hotplane_bus_messages", "Bus messages received, by outcome: applied, self_skipped (this instance's own), handover_duplicate (seen on both connections of a swap), rejected.", Counter, &outcomes)?;
        let mut rejected: Vec<Sample> = bus.rejected.iter().map(|(r, v)| (vec![("reason", r.clone())], *v as f64)).collect();
        rejected.sort_by(|a, b| a.0.cmp(&b.0));
        family(e, "hotplane_bus_messages_rejected", "Bus messages rejected, by reason.", Counter, &rejected)?;
        family(e, "hotplane_bus_published", "Change announcements this instance published.", Counter, &one(bus.published as f64))?;
        family(e, "hotplane_bus_publish_failures", "Change announcements that could not be published.", Counter, &one(bus.publish_failures as f64))?;
        family(e, "hotplane_bus_swaps", "Blue/green swaps of the Redis connection (Reload(TARGET_BUS)).", Counter, &one(bus.swaps as f64))?;
        family(e, "hotplane_bus_rollbacks_followed", "Broadcast rollbacks from other instances followed here.", Counter, &one(bus.rollbacks_followed as f64))?;
        family(e, "hotplane_bus_rollbacks_failed", "Broadcast rollbacks that could not be followed (content not retained).", Counter, &one(bus.rollbacks_failed as f64))?;

        // The fleet (only with a bus: without one there is no fleet to report).
        if let Some(fleet) = &s.fleet {
            let size = fleet.members.len() as f64;
            let converged = fleet.members.iter().filter(|m| m.converged).count() as f64;
            family(e, "hotplane_fleet_members", "Instances in this instance's fleet view (itself included).", Gauge, &one(size))?;
            family(e, "hotplane_fleet_converged_members", "Fleet members serving what this instance serves.", Gauge, &one(converged))?;
            family(e, "hotplane_fleet_converged", "1 when every fleet member serves the same content.", Gauge, &one(flag(fleet.converged)))?;
        }

        // The audit trail.
        let audit = s.audit.clone().unwrap_or_default();
        family(e, "hotplane_audit_queued", "Audit entries waiting to be written.", Gauge, &one(audit.queued as f64))?;
        family(e, "hotplane_audit_written", "Audit entries written since start.", Counter, &one(audit.written as f64))?;
        family(e, "hotplane_audit_dropped", "Audit entries dropped because the queue was full.", Counter, &one(audit.dropped as f64))?;
        family(e, "hotplane_audit_write_failures", "Audit batch writes that failed.", Counter, &one(audit.write_failures as f64))?;
        family(e, "hotplane_audit_rows_lost", "Audit entries lost after their write failed for good.", Counter, &one(audit.rows_lost as f64))?;
        Ok(())
    }
}

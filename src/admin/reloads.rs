//! Metrics counted from the status event hub (the events WatchStatus streams): reloads by
//! target, mode and outcome with their durations, rollbacks, content-hash changes, and every
//! event by kind. A task follows the hub, so the paths that publish pay nothing new; if it ever
//! falls behind the hub's bounded channel, what it missed is counted, never guessed.

use std::{collections::HashMap, sync::Arc};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tokio::sync::{broadcast, watch};

use crate::{api::events::Event, pb};

/// Buckets of `hotplane_reload_duration_seconds`: a single-row delta takes about a
/// millisecond, a full load of a million rows tens of seconds.
const RELOAD_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    target: String,
    mode: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// The families fed by the hub.
#[derive(Debug)]
pub(super) struct ReloadMetrics {
    reloads: Family<ReloadLabels, Counter>,
    durations: Family<ReloadLabels, Histogram, fn() -> Histogram>,
    rollbacks: Family<TargetLabel, Counter>,
    hash_changes: Family<TargetLabel, Counter>,
    events: Family<KindLabel, Counter>,
    missed: Counter,
}

impl ReloadMetrics {
    pub(super) fn register(registry: &mut Registry) -> Arc<ReloadMetrics> {
        let m = ReloadMetrics {
            reloads: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(RELOAD_BUCKETS)),
            rollbacks: Family::default(),
            hash_changes: Family::default(),
            events: Family::default(),
            missed: Counter::default(),
        };
        registry.register(
            "hotplane_reloads",
            "Reloads finished, by target (patterns, config, store, bus), mode (full, delta, single, noop, invalidate; none when the target reports no mode, as for failures) and outcome (success, failure)",
            m.reloads.clone(),
        );
        registry.register(
            "hotplane_reload_duration_seconds",
            "How long reloads took, by target, mode and outcome: the generation's load duration, else the time from the reload's start event to its end event",
            m.durations.clone(),
        );
        registry.register(
            "hotplane_rollbacks",
            "Rollbacks to a retained generation applied on this instance, by target",
            m.rollbacks.clone(),
        );
        registry.register(
            "hotplane_content_hash_changes",
            "Reloads and rollbacks whose content hash differs from the one served before (the first load after start is not a change), by target",
            m.hash_changes.clone(),
        );
        registry.register(
            "hotplane_status_events",
            "Status events published to WatchStatus streams, by kind (reload_succeeded, pattern_learned, bus_connected, drain_changed, ...)",
            m.events.clone(),
        );
        registry.register(
            "hotplane_metrics_events_missed",
            "Status events the metrics follower missed because it fell behind the event hub's bounded channel (the counts above undercount by at most this)",
            m.missed.clone(),
        );
        Arc::new(m)
    }

    /// Follows the hub until `stop` turns true. `served` holds the content hash each target
    /// serves at subscription time (by `pb::Target` number).
    pub(super) async fn follow(
        self: Arc<Self>,
        mut rx: broadcast::Receiver<Event>,
        served: HashMap<i32, String>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut state = Follower {
            hashes: served,
            started: HashMap::new(),
        };
        loop {
            let event = tokio::select! {
                r = rx.recv() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match event {
                Ok(event) => self.count(&mut state, &event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.missed.inc_by(n);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn count(&self, state: &mut Follower, event: &pb::WatchStatusResponse) {
        let kind = event.kind();
        self.events
            .get_or_create(&KindLabel {
                kind: short_name(kind.as_str_name(), "EVENT_KIND_"),
            })
            .inc();
        let target = event.target;
        let target_name = || short_name(event.target().as_str_name(), "TARGET_");
        let at = event.at.as_ref().map(seconds);
        match kind {
            pb::EventKind::ReloadStarted => {
                if let Some(at) = at {
                    state.started.insert(target, at);
                }
            }
            pb::EventKind::ReloadSucceeded | pb::EventKind::ReloadFailed => {
                let success = kind == pb::EventKind::ReloadSucceeded;
                let generation = event.generation.as_ref().filter(|_| success);
                let labels = ReloadLabels {
                    target: target_name(),
                    mode: generation.map_or_else(
                        || "none".to_owned(),
                        |g| short_name(g.mode().as_str_name(), "LOAD_MODE_"),
                    ),
                    outcome: if success { "success" } else { "failure" },
                };
                self.reloads.get_or_create(&labels).inc();
                let started = state.started.remove(&target);
                let took = generation
                    .and_then(|g| g.load_duration.as_ref())
                    .map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
                    .or_else(|| Some(at? - started?).filter(|s| *s >= 0.0));
                if let Some(took) = took {
                    self.durations.get_or_create(&labels).observe(took);
                }
                if let Some(g) = generation {
                    self.hash_changed(state, target, &g.content_hash, target_name);
                }
            }
            pb::EventKind::Rollback => {
                self.rollbacks
                    .get_or_create(&TargetLabel {
                        target: target_name(),
                    })
                    .inc();
                if let Some(g) = &event.generation {
                    self.hash_changed(state, target, &g.content_hash, target_name);
                }
            }
            _ => {}
        }
    }

    fn hash_changed(
        &self,
        state: &mut Follower,
        target: i32,
        hash: &str,
        name: impl Fn() -> String,
    ) {
        let before = state.hashes.insert(target, hash.to_owned());
        if before.is_some_and(|b| !b.is_empty() && b != hash) {
            self.hash_changes
                .get_or_create(&TargetLabel { target: name() })
                .inc();
        }
    }
}

/// What the follower remembers between events.
struct Follower {
    /// The content hash last served, per target.
    hashes: HashMap<i32, String>,
    /// When the running reload of each target started (seconds since the epoch).
    started: HashMap<i32, f64>,
}

fn seconds(t: &prost_types::Timestamp) -> f64 {
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

/// `EVENT_KIND_RELOAD_SUCCEEDED` → `reload_succeeded`.
fn short_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: pb::EventKind, target: pb::Target, at: i64) -> pb::WatchStatusResponse {
        pb::WatchStatusResponse {
            kind: kind.into(),
            target: target.into(),
            at: Some(prost_types::Timestamp {
                seconds: at,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    fn encoded(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry).expect("encodes");
        out
    }

    #[test]
    fn reloads_are_counted_by_target_mode_and_outcome_with_durations() {
        let mut registry = Registry::default();
        let m = ReloadMetrics::register(&mut registry);
        let mut state = Follower {
            hashes: HashMap::from([(pb::Target::Patterns as i32, "a".to_owned())]),
            started: HashMap::new(),
        };
        let mut ok = event(pb::EventKind::ReloadSucceeded, pb::Target::Patterns, 10);
        ok.generation = Some(pb::GenerationInfo {
            mode: pb::LoadMode::Delta.into(),
            content_hash: "b".into(),
            load_duration: Some(prost_types::Duration {
                seconds: 0,
                nanos: 2_000_000,
            }),
            ..Default::default()
        });
        m.count(&mut state, &ok);
        m.count(
            &mut state,
            &event(pb::EventKind::ReloadStarted, pb::Target::Config, 20),
        );
        m.count(
            &mut state,
            &event(pb::EventKind::ReloadFailed, pb::Target::Config, 23),
        );
        let text = encoded(&registry);
        for line in [
            r#"hotplane_reloads_total{target="patterns",mode="delta",outcome="success"} 1"#,
            r#"hotplane_reloads_total{target="config",mode="none",outcome="failure"} 1"#,
            r#"hotplane_reload_duration_seconds_sum{target="patterns",mode="delta",outcome="success"} 0.002"#,
            r#"hotplane_reload_duration_seconds_sum{target="config",mode="none",outcome="failure"} 3.0"#,
            r#"hotplane_content_hash_changes_total{target="patterns"} 1"#,
            r#"hotplane_status_events_total{kind="reload_started"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}

//! Tombstone pruning: a scheduled task that deletes tombstones past the retention, so the table
//! of deletes does not grow forever. It never changes served state. No replica misses a delete
//! because of it: the store records a pruning horizon, and a delta from a cursor older than the
//! horizon is refused by the store, which the loader answers with a full load.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tracing::{info, warn};

use super::Engine;

/// How often tombstones past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Engine {
    /// Deletes tombstones written more than `retention` ago (now, for zero) and returns how
    /// many went. Replicas whose cursor predates the pruning do a full load on their next delta.
    pub async fn prune_tombstones(
        &self,
        retention: Duration,
    ) -> Result<u64, crate::store::StoreError> {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let before = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        self.store().prune_tombstones(before).await
    }
}

/// Prunes every hour until `stop` turns true; `None` keeps tombstones forever.
pub async fn run(engine: Engine, retention: Option<Duration>, mut stop: watch::Receiver<bool>) {
    let Some(retention) = retention else {
        return;
    };
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        match engine.prune_tombstones(retention).await {
            Ok(0) => {}
            Ok(n) => info!(tombstones = n, "pruned tombstones past the retention"),
            Err(e) => warn!(
                error = %e,
                "pruning tombstones failed; retrying in an hour (deltas are unaffected)"
            ),
        }
    }
}

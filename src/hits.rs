//! Hit counting: `times_used` / `last_used_at` aggregated in memory and flushed in batches.
//!
//! The match path only bumps a counter in one of several small shards (a std `Mutex` held for a
//! hash-map update, so concurrent matchers rarely meet). A background task takes the whole map
//! every interval and writes it in batches; a failed write puts the counts back to be retried
//! with the next flush and is reported, so a database outage never blocks or fails a match and
//! loses no hits while the process lives.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{
    engine::Engine,
    store::{HitDelta, Store},
};

const SHARDS: usize = 16;

/// Pending hits of one shard: pattern id → (count, time of the latest hit).
type Shard = HashMap<i64, (i64, DateTime<Utc>)>;

/// Flush outcome counters, for status.
#[derive(Debug, Clone, Default)]
pub struct FlushStats {
    /// Flushes that failed since start.
    pub failures: u64,
    /// The last failure, cleared by a success.
    pub last_error: Option<String>,
    /// Hits written since start.
    pub flushed: u64,
}

/// In-memory hit counters.
#[derive(Debug)]
pub struct HitCounter {
    shards: Vec<Mutex<Shard>>,
    /// Hits taken by a flush that has not written them yet (they are still pending).
    writing: AtomicU64,
    stats: Mutex<FlushStats>,
}

impl Default for HitCounter {
    fn default() -> Self {
        HitCounter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            writing: AtomicU64::new(0),
            stats: Mutex::new(FlushStats::default()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HitCounter {
    /// Counts one match of pattern `id`.
    pub fn record(&self, id: i64) {
        let now = Utc::now();
        let mut shard = lock(&self.shards[id.rem_euclid(SHARDS as i64) as usize]);
        let entry = shard.entry(id).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
    }

    /// Hits counted and not yet written (those a flush is writing now included).
    pub fn pending(&self) -> u64 {
        let counted: u64 = self
            .shards
            .iter()
            .map(|s| lock(s).values().map(|(n, _)| *n as u64).sum::<u64>())
            .sum();
        counted + self.writing.load(Ordering::SeqCst)
    }

    /// Flush counters.
    pub fn stats(&self) -> FlushStats {
        lock(&self.stats).clone()
    }

    /// Takes every pending count for writing, leaving the counters empty (the taken counts stay
    /// pending until [`Self::written`] or [`Self::restore`]).
    fn take(&self) -> Vec<HitDelta> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let taken = std::mem::take(&mut *shard);
            // Under the shard's lock, so a status read never sees the hits in neither place.
            let count: u64 = taken.values().map(|(n, _)| *n as u64).sum();
            self.writing.fetch_add(count, Ordering::SeqCst);
            drop(shard);
            out.extend(taken.into_iter().map(|(id, (count, at))| HitDelta {
                id,
                count,
                last_used_at: at,
            }));
        }
        out
    }

    /// Taken counts that reached the store.
    fn written(&self, hits: &[HitDelta]) {
        let count: u64 = hits.iter().map(|h| h.count as u64).sum();
        self.writing.fetch_sub(count, Ordering::SeqCst);
        lock(&self.stats).flushed += count;
    }

    /// Puts taken counts back after a failed write, merging with hits counted meanwhile.
    fn restore(&self, hits: Vec<HitDelta>) {
        for h in hits {
            let mut shard = lock(&self.shards[h.id.rem_euclid(SHARDS as i64) as usize]);
            let entry = shard.entry(h.id).or_insert((0, h.last_used_at));
            entry.0 += h.count;
            entry.1 = entry.1.max(h.last_used_at);
            self.writing.fetch_sub(h.count as u64, Ordering::SeqCst);
        }
    }

    /// Writes every pending count in batches of at most `batch`; answers how many patterns'
    /// counts were written. Counts of rows another transaction held (the store skips them
    /// rather than wait: see [`Store::flush_hits`]) are kept for the next flush, which is not a
    /// failure. On failure the unwritten counts are kept for the next flush and the error is
    /// returned.
    pub async fn flush(&self, store: &Store, batch: usize) -> Result<usize, String> {
        let mut hits = self.take();
        let mut written = 0;
        while !hits.is_empty() {
            let rest = hits.split_off(hits.len().min(batch.max(1)));
            match store.flush_hits(&hits).await {
                Ok(held) => {
                    let (kept, done): (Vec<_>, Vec<_>) = hits
                        .into_iter()
                        .partition(|h| held.binary_search(&h.id).is_ok());
                    if !kept.is_empty() {
                        debug!(
                            patterns = kept.len(),
                            "hit counts of rows another transaction holds are kept for the next flush"
                        );
                    }
                    written += done.len();
                    self.written(&done);
                    self.restore(kept);
                }
                Err(e) => {
                    let msg = e.to_string();
                    hits.extend(rest);
                    self.restore(hits);
                    let mut stats = lock(&self.stats);
                    stats.failures += 1;
                    stats.last_error = Some(msg.clone());
                    return Err(msg);
                }
            }
            hits = rest;
        }
        lock(&self.stats).last_error = None;
        Ok(written)
    }

    /// Flushes every `interval` until `stop` turns true, then flushes one last time. Each flush
    /// writes to the engine's current store, so a blue/green store swap takes the counts along.
    pub async fn run_flusher(
        self: Arc<Self>,
        engine: Engine,
        interval: Duration,
        batch: usize,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            match self.flush(&engine.store(), batch).await {
                Ok(0) => {}
                Ok(n) => debug!(patterns = n, "hit counts flushed"),
                Err(e) => warn!(
                    error = %e,
                    pending = self.pending(),
                    "hit-count flush failed; counts are kept and retried on the next flush"
                ),
            }
        }
        if let Err(e) = self.flush(&engine.store(), batch).await {
            warn!(error = %e, lost = self.pending(), "final hit-count flush failed at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aggregate_and_restore_merges() {
        let c = HitCounter::default();
        for _ in 0..3 {
            c.record(7);
        }
        c.record(-2);
        assert_eq!(c.pending(), 4);
        let mut taken = c.take();
        taken.sort_by_key(|h| h.id);
        assert_eq!(
            taken.iter().map(|h| (h.id, h.count)).collect::<Vec<_>>(),
            vec![(-2, 1), (7, 3)]
        );
        // Taken for writing, not written: still pending (status must not show them as gone).
        assert_eq!(c.pending(), 4);
        c.record(7);
        assert_eq!(c.pending(), 5);
        c.restore(taken);
        assert_eq!(c.pending(), 5);
        let taken = c.take();
        c.written(&taken);
        assert_eq!(c.pending(), 0);
        assert_eq!(c.stats().flushed, 5);
    }
}

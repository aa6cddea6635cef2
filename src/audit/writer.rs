//! The audit writer: empties the queue in batches into the engine's current store (which a
//! blue/green swap may replace), and deletes rows past the retention.
//!
//! A failed batch is retried a few times with a short backoff, then dropped, counted
//! (`write_failures`, `rows_lost`) and logged: the writer never waits forever, so the queue
//! keeps draining once the database is back. Entries that arrive meanwhile wait in the bounded
//! queue; when it is full they are dropped and counted by the recorder.

use std::{sync::atomic::Ordering, time::Duration};

use chrono::Utc;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{AuditQueue, Entry};
use crate::engine::Engine;

/// Most rows per insert.
pub const MAX_BATCH: usize = 256;

/// Attempts per batch before it is dropped.
const ATTEMPTS: u32 = 3;

/// How often rows past the retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The instance id written on every row.
    pub instance: String,
    /// Rows older than this are deleted (`None`: kept forever).
    pub retention: Option<Duration>,
}

/// Runs until `stop` turns true, then writes what is still queued and returns.
pub async fn run(
    mut queue: AuditQueue,
    engine: Engine,
    opts: WriterOptions,
    mut stop: watch::Receiver<bool>,
) {
    let mut purge = tokio::time::interval(PURGE_EVERY);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = queue.rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return; // every recorder is gone
                }
                write(&queue, &engine, &opts.instance, &mut batch).await;
            }
            _ = purge.tick() => {
                if let Some(retention) = opts.retention {
                    purge_expired(&engine, retention).await;
                }
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
    // Shutdown: what was recorded before the stop (the final drain, the last reloads) is
    // written before the store closes.
    while !queue.rx.is_empty() {
        queue.rx.recv_many(&mut batch, MAX_BATCH).await;
        write(&queue, &engine, &opts.instance, &mut batch).await;
    }
}

/// Writes and clears `batch`, retrying a few times.
async fn write(queue: &AuditQueue, engine: &Engine, instance: &str, batch: &mut Vec<Entry>) {
    let c = &queue.counters;
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        // The current store on every attempt: a swap may have replaced it.
        match engine.store().insert_audit(instance, batch).await {
            Ok(()) => {
                c.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                return;
            }
            Err(e) if attempt < ATTEMPTS => {
                warn!(error = %e, attempt, rows = batch.len(), "writing audit rows failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                c.write_failures.fetch_add(1, Ordering::Relaxed);
                c.rows_lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                *super::lock(&c.last_error) = Some((e.to_string(), Utc::now()));
                warn!(
                    error = %e,
                    rows = batch.len(),
                    "writing audit rows failed {ATTEMPTS} times; these rows are lost (counted \
                     in GetStatus.audit). Check the database and that reload_audit exists \
                     (hotplane migrate)"
                );
                batch.clear();
            }
        }
    }
}

async fn purge_expired(engine: &Engine, retention: Duration) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return;
    };
    let Some(before) = Utc::now().checked_sub_signed(retention) else {
        return;
    };
    match engine.store().purge_audit(before).await {
        Ok(0) => {}
        Ok(n) => info!(rows = n, %before, "deleted audit rows past the retention"),
        Err(e) => warn!(error = %e, "deleting expired audit rows failed; retrying in an hour"),
    }
}

//! The audit writer: empties the queue in batches into the engine's current store (which a
//! blue/green swap may replace), and deletes rows past the retention.
//!
//! While the database cannot be reached, the batch in hand is kept and retried with a capped
//! backoff, and entries recorded meanwhile wait in the bounded queue (past it they are dropped
//! and counted by the recorder): an outage loses no rows that fit in the queue, and they are
//! written once the database is back. A batch the database itself refuses (a missing table, a
//! rejected row) is retried a few times, then dropped and counted (`rows_lost`), so it never
//! blocks the queue. At shutdown what is still queued gets one attempt per batch; what cannot
//! be written then is counted as lost too.
use std::{sync::atomic::Ordering, time::Duration};

use chrono::Utc;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{AuditQueue, Entry};
use crate::store::Store;

/// The store audit rows go to: the engine's current one, read at each write (a blue/green swap
/// moves the audit trail with the patterns).
pub type CurrentStore = std::sync::Arc<dyn Fn() -> std::sync::Arc<Store> + Send + Sync>;

/// Most rows per insert.
pub const MAX_BATCH: usize = 256;

/// Attempts per batch before a batch the database refuses is dropped.
const ATTEMPTS: u32 = 3;

/// First and longest wait between attempts.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

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
    store: CurrentStore,
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
                if let Written::Stopped = write(&queue, &store, &opts.instance, &mut batch, &mut stop).await {
                    break;
                }
            }
            _ = purge.tick() => {
                if let Some(retention) = opts.retention {
                    purge_expired(&store, retention).await;
                }
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
    // Shutdown: what was recorded before the stop (the final drain, the last reloads) is
    // written before the store closes, one attempt per batch (the shutdown is bounded).
    loop {
        if batch.is_empty() {
            if queue.rx.is_empty() {
                return;
            }
            queue.rx.recv_many(&mut batch, MAX_BATCH).await;
        }
        if let Err(e) = attempt(&queue, &store, &opts.instance, &mut batch).await {
            lose(&queue, &mut batch, &e, "at shutdown");
        }
    }
}

/// How a [`write`] ended.
enum Written {
    /// The batch was written, or dropped and counted.
    Done,
    /// The stop came while waiting to retry: the batch is still in hand.
    Stopped,
}

/// Writes and clears `batch`: retried for as long as the database is unreachable, a few times
/// when it refuses the rows.
async fn write(
    queue: &AuditQueue,
    store: &CurrentStore,
    instance: &str,
    batch: &mut Vec<Entry>,
    stop: &mut watch::Receiver<bool>,
) -> Written {
    let mut delay = FIRST_RETRY;
    let mut refused = 0;
    loop {
        let Err(e) = attempt(queue, store, instance, batch).await else {
            return Written::Done;
        };
        if e.is_unavailable() {
            warn!(error = %e, rows = batch.len(), queued = queue.rx.len(), retry_in_ms = delay.as_millis() as u64,
                "the database is unreachable: audit rows are kept and written when it is back");
        } else {
            refused += 1;
            if refused >= ATTEMPTS {
                lose(queue, batch, &e, &format!("{ATTEMPTS} times"));
                return Written::Done;
            }
            warn!(error = %e, attempt = refused, rows = batch.len(), "writing audit rows failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Written::Stopped,
        }
        delay = (delay * 2).min(LONGEST_RETRY);
    }
}

/// One insert of `batch` into the current store (a swap may have replaced it); counted.
async fn attempt(
    queue: &AuditQueue,
    store: &CurrentStore,
    instance: &str,
    batch: &mut Vec<Entry>,
) -> Result<(), crate::store::StoreError> {
    let c = &queue.counters;
    match store().insert_audit(instance, batch).await {
        Ok(()) => {
            c.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
            Ok(())
        }
        Err(e) => {
            c.write_failures.fetch_add(1, Ordering::Relaxed);
            *super::lock(&c.last_error) = Some((e.to_string(), Utc::now()));
            Err(e)
        }
    }
}

/// Drops `batch`, counted and logged.
fn lose(queue: &AuditQueue, batch: &mut Vec<Entry>, e: &crate::store::StoreError, when: &str) {
    queue
        .counters
        .rows_lost
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    warn!(
        error = %e,
        rows = batch.len(),
        "writing audit rows failed {when}; these rows are lost (counted in GetStatus.audit). \
         Check the database and that reload_audit exists (hotplane migrate)"
    );
    batch.clear();
}

async fn purge_expired(store: &CurrentStore, retention: Duration) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return;
    };
    let Some(before) = Utc::now().checked_sub_signed(retention) else {
        return;
    };
    match store().purge_audit(before).await {
        Ok(0) => {}
        Ok(n) => info!(rows = n, %before, "deleted audit rows past the retention"),
        Err(e) => warn!(error = %e, "deleting expired audit rows failed; retrying in an hour"),
    }
}

//! The audit trail: one row in `reload_audit` for every change of served state, whatever asked
//! for it (a gRPC call, a bus message, the backstop poll, a signal, the startup load).
//!
//! Where rows come from: the swap engine records every load, rollback and store swap itself
//! (each request carries an [`Origin`]: who asked, for what), so no source can change served
//! state without a row; pattern writes reach the engine with their own action; drain start/stop,
//! which is not engine state, is recorded where it happens (the Drain handlers and shutdown).
//! The engine's broadcast channel is not used: it may lag, and a lagging audit would lose rows
//! without a trace.
//!
//! Recording never blocks and never touches the database: [`Auditor::record`] puts the entry
//! on a bounded queue (`try_send`); a full queue drops the entry, counts it and logs it
//! (rate-limited). The [`writer`] task empties the queue in batches into the current store.

pub mod writer;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::warn;

/// What asked for a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The first load at process start.
    Startup,
    /// An explicit `HotReload.Reload`.
    Grpc,
    /// A Redis bus event.
    Bus,
    /// The periodic revision poll.
    Poll,
    /// A process signal.
    Signal,
    /// A write through this replica's Patterns RPCs.
    Write,
    /// A `HotReload.Rollback`.
    Rollback,
}

impl Source {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Startup => "startup",
            Source::Grpc => "grpc",
            Source::Bus => "bus",
            Source::Poll => "poll",
            Source::Signal => "signal",
            Source::Write => "write",
            Source::Rollback => "rollback",
        }
    }

    /// Automatic sources are held (recorded as pending) while the target is pinned; explicit
    /// ones (gRPC, writes, signals, startup) unpin it.
    pub fn is_automatic(self) -> bool {
        matches!(self, Source::Bus | Source::Poll)
    }
}

/// Every action a row can record (the `action` column).
pub mod action {
    /// A pattern load (delta, full, named rows), from any source.
    pub const RELOAD: &str = "reload";
    /// A bus `invalidate`: rows dropped without a store read.
    pub const INVALIDATE: &str = "invalidate";
    /// A retained generation served again, and the target pinned.
    pub const ROLLBACK: &str = "rollback";
    /// A blue/green swap to another database.
    pub const STORE_SWAP: &str = "store_swap";
    /// A blue/green swap of the Redis bus connection.
    pub const BUS_SWAP: &str = "bus_swap";
    /// Draining started (StartDrain or shutdown).
    pub const DRAIN_START: &str = "drain_start";
    /// Draining stopped (StopDrain).
    pub const DRAIN_STOP: &str = "drain_stop";
    /// LearnPattern wrote a row and served it.
    pub const PATTERN_LEARN: &str = "pattern_learn";
    /// ApprovePattern.
    pub const PATTERN_APPROVE: &str = "pattern_approve";
    /// DisablePattern.
    pub const PATTERN_DISABLE: &str = "pattern_disable";
    /// DeletePattern.
    pub const PATTERN_DELETE: &str = "pattern_delete";
    /// The config file re-read (`Reload(TARGET_CONFIG)` or SIGHUP), applied or rejected.
    pub const CONFIG_RELOAD: &str = "config_reload";

    /// Every action, for filter validation.
    pub const ALL: [&str; 12] = [
        RELOAD,
        INVALIDATE,
        ROLLBACK,
        STORE_SWAP,
        BUS_SWAP,
        DRAIN_START,
        DRAIN_STOP,
        PATTERN_LEARN,
        PATTERN_APPROVE,
        PATTERN_DISABLE,
        PATTERN_DELETE,
        CONFIG_RELOAD,
    ];
}

/// How a recorded change ended (the `result` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It changed served state.
    Ok,
    /// It ran and found nothing to change (same generation).
    Noop,
    /// It failed; the previous state keeps serving (see `error`).
    Failed,
}

impl Outcome {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Noop => "noop",
            Outcome::Failed => "failed",
        }
    }
}

/// Who asked for a change and what they asked for, carried with an engine request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The caller: the authenticated name, `peer:<ip>` for an unauthenticated gRPC peer, the
    /// bus message's origin instance (`bus:<id>`), or the source itself (`poll`, `startup`).
    pub caller: String,
    /// One of [`action`].
    pub action: &'static str,
    /// What was changed: `patterns`, `pattern:<id>`, `store`, `bus`, `drain`.
    pub target: String,
}

impl Origin {
    /// A plain reload of the pattern set by `caller`.
    pub fn reload(caller: impl Into<String>) -> Origin {
        Origin {
            caller: caller.into(),
            action: action::RELOAD,
            target: "patterns".into(),
        }
    }

    /// A write to one pattern row by `caller`.
    pub fn pattern(caller: impl Into<String>, action: &'static str, id: i64) -> Origin {
        Origin {
            caller: caller.into(),
            action,
            target: format!("pattern:{id}"),
        }
    }

    /// The origin of a request that named none: the source is the caller.
    pub fn of_source(source: Source) -> Origin {
        Origin::reload(source.as_str())
    }
}

/// One audit row, before the writer adds the instance id.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When the change finished.
    pub at: DateTime<Utc>,
    /// Who asked.
    pub caller: String,
    /// One of [`action`].
    pub action: &'static str,
    /// What was changed.
    pub target: String,
    /// Where the request came from (`grpc`, `bus`, `poll`, `signal`, `startup`, `write`, ...).
    pub source: &'static str,
    /// The free-text reason given.
    pub reason: String,
    /// Generation served before.
    pub generation_before: u64,
    /// Generation served after.
    pub generation_after: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, when it failed.
    pub error: String,
    /// How long it took.
    pub duration: Duration,
}

impl Entry {
    /// The entry of a change `origin` asked for, finished now: `result` is how it ended, or
    /// the error it failed with.
    pub fn finished(
        origin: Origin,
        source: Source,
        reason: &str,
        generations: (u64, u64),
        result: Result<Outcome, String>,
        duration: Duration,
    ) -> Entry {
        let (outcome, error) = match result {
            Ok(outcome) => (outcome, String::new()),
            Err(e) => (Outcome::Failed, e),
        };
        Entry {
            at: Utc::now(),
            caller: origin.caller,
            action: origin.action,
            target: origin.target,
            source: source.as_str(),
            reason: reason.to_owned(),
            generation_before: generations.0,
            generation_after: generations.1,
            outcome,
            error,
            duration,
        }
    }
}

/// Audit queue counters, for GetStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Entries waiting in the queue.
    pub queued: u64,
    /// The queue's bound.
    pub capacity: u64,
    /// Rows written.
    pub written: u64,
    /// Entries dropped because the queue was full.
    pub dropped: u64,
    /// Failed write attempts (each retry counts; during an outage the rows are kept).
    pub write_failures: u64,
    /// Rows given up on: refused by the database several times, or unwritten at shutdown.
    pub rows_lost: u64,
    /// The most recent write error.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    write_failures: AtomicU64,
    rows_lost: AtomicU64,
    last_error: Mutex<Option<(String, DateTime<Utc>)>>,
    /// When a drop was last logged, and drops since then not logged.
    drop_log: Mutex<(Option<Instant>, u64)>,
}

/// How often a full queue is logged at most.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// The recording handle (cheap to clone). See the module docs.
#[derive(Debug, Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Entry>,
    capacity: usize,
    counters: Arc<Counters>,
}

/// The receiving end of the queue, for the [`writer`].
#[derive(Debug)]
pub struct AuditQueue {
    rx: mpsc::Receiver<Entry>,
    counters: Arc<Counters>,
}

impl Auditor {
    /// A recorder with a queue of `capacity` entries (at least 1), and the queue's receiver.
    pub fn new(capacity: usize) -> (Auditor, AuditQueue) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        (
            Auditor {
                tx,
                capacity,
                counters: Arc::clone(&counters),
            },
            AuditQueue { rx, counters },
        )
    }

    /// Queues an entry. Never blocks: when the queue is full (or the writer is gone) the entry
    /// is dropped, counted and logged.
    pub fn record(&self, entry: Entry) {
        if let Err(e) = self.tx.try_send(entry) {
            let entry = match e {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let mut log = lock(&self.counters.drop_log);
            let now = Instant::now();
            if log
                .0
                .is_none_or(|at| now.duration_since(at) >= DROP_LOG_EVERY)
            {
                warn!(
                    dropped_total = dropped,
                    not_logged = log.1,
                    capacity = self.capacity,
                    action = entry.action,
                    caller = %entry.caller,
                    "audit queue full: entry dropped (the database is slow or down; see \
                     GetStatus.audit, raise --audit-queue-capacity if this is a burst)"
                );
                *log = (Some(now), 0);
            } else {
                log.1 += 1;
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> AuditStats {
        let c = &self.counters;
        let last = lock(&c.last_error).clone();
        AuditStats {
            queued: (self.capacity - self.tx.capacity()) as u64,
            capacity: self.capacity as u64,
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            write_failures: c.write_failures.load(Ordering::Relaxed),
            rows_lost: c.rows_lost.load(Ordering::Relaxed),
            last_error_at: last.as_ref().map(|(_, at)| *at),
            last_error: last.map(|(e, _)| e),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters only: a panic elsewhere cannot leave them inconsistent in a way that matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The caller of a gRPC request, for the audit and per-caller limits: the name the auth layer
/// attached (`crate::auth::Caller`: a token's or JWT's name, a certificate subject). Without
/// credentials configured the name (`loopback`, `anonymous`) says nothing about who it was, so
/// the peer address is added: `loopback:127.0.0.1`. With no caller attached (a server built
/// without the auth layer), `peer:<ip>`.
pub fn caller_of<T>(req: &tonic::Request<T>) -> String {
    use crate::auth::{Caller, CredentialKind};
    let peer = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.peer)
        .or_else(|| req.remote_addr());
    match (req.extensions().get::<Caller>(), peer) {
        (Some(c), Some(addr))
            if matches!(c.via, CredentialKind::Loopback | CredentialKind::Anonymous) =>
        {
            format!("{}:{}", c.name, addr.ip())
        }
        (Some(c), _) => c.name.clone(),
        (None, Some(addr)) => format!("peer:{}", addr.ip()),
        (None, None) => "peer:unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        Entry {
            at: Utc::now(),
            caller: "test".into(),
            action: action::RELOAD,
            target: "patterns".into(),
            source: "grpc",
            reason: String::new(),
            generation_before: n,
            generation_after: n + 1,
            outcome: Outcome::Ok,
            error: String::new(),
            duration: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        let (auditor, mut queue) = Auditor::new(2);
        for n in 0..5 {
            auditor.record(entry(n)); // never waits, though nobody reads
        }
        let stats = auditor.stats();
        assert_eq!((stats.queued, stats.capacity, stats.dropped), (2, 2, 3));
        // The first two were kept, in order.
        assert_eq!(queue.rx.recv().await.map(|e| e.generation_before), Some(0));
        assert_eq!(queue.rx.recv().await.map(|e| e.generation_before), Some(1));
        assert_eq!(auditor.stats().queued, 0);
        auditor.record(entry(9));
        assert_eq!(auditor.stats().dropped, 3, "room again: nothing dropped");
    }

    #[tokio::test]
    async fn a_gone_writer_counts_drops() {
        let (auditor, queue) = Auditor::new(4);
        drop(queue);
        auditor.record(entry(0));
        assert_eq!(auditor.stats().dropped, 1);
    }
}

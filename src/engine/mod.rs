//! The swap engine: the one place where the served pattern cache changes.
//!
//! Every reload, whatever asked for it (startup, gRPC, a pattern write, a bus message, the
//! backstop poll), is a [`LoadRequest`] handed to [`Engine::reload`] or [`Engine::request`]; a
//! bus `invalidate` is one too ([`Scope::Invalidate`]). One loader task executes them:
//! requests that arrive while a load runs are merged into at most one further load (single
//! flight), so a burst of N requests costs about two loads. A load builds a complete new
//! [`PatternSnapshot`] off to the side, then publishes it with one `ArcSwap` store; readers get
//! the current [`Generation`] with one atomic load, never a lock, never a torn state. A failed load
//! changes nothing that is served: the last good generation keeps serving and the failure is
//! recorded in [`TargetHealth`].
//!
//! The engine never touches the network or parses requests: handlers translate, the engine
//! decides, the store reads.

mod flight;
pub mod initial;
mod loader;
pub mod prune;
#[cfg(test)]
mod tests;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, oneshot, watch};

use crate::{
    audit::{Auditor, Origin},
    snapshot::{ChangeCounts, PatternSnapshot},
    store::{Cursor, Store, StoreError, StoreOptions},
};

pub use crate::audit::Source;
pub use flight::Flight;

/// Why `Reload(TARGET_STORE)` did not swap the store. The current store keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum StoreSwapError {
    /// The URL names no supported database.
    #[error("{0}")]
    InvalidUrl(String),
    /// The new database could not be connected to.
    #[error("connecting to the new store failed; the current store keeps serving: {0}")]
    Connect(StoreError),
    /// The new database could not be migrated.
    #[error("migrating the new store failed; the current store keeps serving: {0}")]
    Migrate(StoreError),
    /// The patterns could not be read from the new database.
    #[error("loading patterns from the new store failed; the current store keeps serving: {0}")]
    Load(LoadError),
}

/// The audit trail's view of a load's result.
fn as_outcome(result: &Result<LoadReport, LoadError>) -> Result<&LoadReport, String> {
    result.as_ref().map_err(ToString::to_string)
}

/// How the store was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Every served row.
    Full,
    /// The rows changed since the previous cursor.
    Delta,
    /// Named rows, read with the delta since the previous cursor, which held nothing else.
    Single,
    /// Nothing changed in the store.
    Noop,
    /// No store read: named rows were dropped from the served set (a bus `invalidate`).
    Invalidate,
}

/// What a load should read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The changes since the current generation (a full read if there is no generation yet).
    Delta,
    /// Every served row.
    Full,
    /// These rows only (served, changed or removed as the store says).
    Ids(Vec<i64>),
    /// Stop serving these rows now, without reading the store, until a load that reads them
    /// says otherwise (a full load, a load of the id, or a delta that sees the row change).
    /// Applied before the load of the batch it is merged into; ignored before the first load.
    Invalidate(Vec<i64>),
}

/// A request for a new generation.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// What to read.
    pub scope: Scope,
    /// Who asked.
    pub source: Source,
    /// Why (free text, recorded on the generation).
    pub reason: String,
}

/// One generation of the pattern cache: the snapshot plus where it came from.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generation number, starting at 1 for the first successful load (0: nothing loaded yet).
    pub number: u64,
    /// The served patterns.
    pub snapshot: Arc<PatternSnapshot>,
    /// The store revision the snapshot reflects.
    pub store_revision: i64,
    /// Where the next delta read starts; `None` before the first load.
    pub cursor: Option<Cursor>,
    /// When the generation was swapped in.
    pub loaded_at: DateTime<Utc>,
    /// Who asked for it.
    pub source: Source,
    /// How long building it took.
    pub load_duration: Duration,
    /// How the store was read.
    pub mode: LoadMode,
    /// Why it was loaded.
    pub reason: String,
}

impl Generation {
    /// Generation 0: nothing served yet. Every later snapshot is built from its snapshot, and
    /// so keeps its served-metadata limit.
    fn empty(max_metadata: usize) -> Self {
        Generation {
            number: 0,
            snapshot: Arc::new(PatternSnapshot::with_max_metadata(max_metadata)),
            store_revision: 0,
            cursor: None,
            loaded_at: Utc::now(),
            source: Source::Startup,
            load_duration: Duration::ZERO,
            mode: LoadMode::Noop,
            reason: String::new(),
        }
    }
}

/// The result of a load, shared by every request it served.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Generation served before the load.
    pub generation_before: u64,
    /// Generation served after it (unchanged when nothing changed or validating only).
    pub generation_after: u64,
    /// What changed (or would change, when validating).
    pub counts: ChangeCounts,
    /// How the store was read.
    pub mode: LoadMode,
    /// Rows read from the store.
    pub rows_read: usize,
    /// The generation served after the load.
    pub current: Arc<Generation>,
    /// Time spent reading and building.
    pub duration: Duration,
    /// Named rows (`Scope::Ids`, or ids merged into a delta) the store does not have: nothing
    /// is served under these ids.
    pub absent: Vec<i64>,
}

/// Why a load failed. The previous generation keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The store could not be read now (unreachable, or a lock contended); a later load may
    /// succeed.
    #[error("reading the store failed: {0}")]
    Store(String),
    /// The store answered the read with an error retrying will not fix (a missing table or
    /// column, a row that does not decode): an operator must fix the cause.
    #[error("reading the store failed: {0}")]
    StoreFailed(String),
    /// The data read would make an invalid snapshot.
    #[error("rejected invalid data: {0}")]
    Invalid(String),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    Closed,
    /// A rollback named a generation that is not retained.
    #[error("generation {wanted} is not retained (retained: {retained:?})")]
    NotRetained {
        /// The generation asked for (0: the previous one).
        wanted: u64,
        /// The generations that are retained, newest first.
        retained: Vec<u64>,
    },
    /// A rollback by content hash found no retained generation with that content.
    #[error(
        "no retained generation has content hash {content_hash} ({retained} generations retained)"
    )]
    ContentNotRetained {
        /// The content hash asked for.
        content_hash: String,
        /// How many generations are retained.
        retained: usize,
    },
}

impl From<crate::store::StoreError> for LoadError {
    fn from(e: crate::store::StoreError) -> LoadError {
        if e.is_transient() {
            LoadError::Store(e.to_string())
        } else {
            LoadError::StoreFailed(e.to_string())
        }
    }
}

/// A change the engine announces on its event channel.
#[derive(Debug, Clone)]
pub struct EngineEvent {
    /// Increasing id.
    pub id: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

/// Kinds of engine events.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// A load started.
    ReloadStarted {
        /// Who asked.
        source: Source,
    },
    /// A load succeeded.
    ReloadSucceeded {
        /// The generation served after it.
        generation: Arc<Generation>,
        /// What changed.
        counts: ChangeCounts,
    },
    /// A load failed.
    ReloadFailed {
        /// Who asked.
        source: Source,
        /// The error.
        error: String,
    },
    /// A retained generation is served again (as a new generation) and the target is pinned.
    RolledBack {
        /// The new generation (content of the retained one).
        generation: Arc<Generation>,
        /// The retained generation whose content it serves.
        from: u64,
    },
    /// The target was unpinned by an explicit reload; `pending` automatic changes were held.
    Unpinned {
        /// Automatic reloads that were held while pinned.
        pending: u32,
    },
    /// An automatic reload was held because the target is pinned.
    Held {
        /// Who asked.
        source: Source,
        /// Held so far.
        pending: u32,
    },
    /// A row the store says to serve breaks an invariant: it is not served (quarantined) and
    /// the rest of the load was applied.
    Quarantined {
        /// The row.
        id: i64,
        /// Which invariant it breaks.
        reason: String,
    },
    /// A quarantined row was read again valid (served again), disabled or deleted.
    Released {
        /// The row.
        id: i64,
    },
}

/// Load health of the pattern target.
#[derive(Debug, Clone, Default)]
pub struct TargetHealth {
    /// When a load last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failed load's error, cleared by a success.
    pub last_error: Option<String>,
    /// When the last load failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Loads attempted.
    pub loads_total: u64,
    /// Loads failed.
    pub failures_total: u64,
    /// Requests served by a load that another request started.
    pub coalesced_total: u64,
    /// Since when the running load has run; `None` while no load runs.
    pub loading_since: Option<std::time::Instant>,
    /// The generation a rollback pinned, while pinned.
    pub pinned: Option<u64>,
    /// Automatic reloads held since the pin.
    pub pending_changes: u32,
}

impl TargetHealth {
    /// Whether a load is running.
    pub fn loading(&self) -> bool {
        self.loading_since.is_some()
    }
}

/// A function every engine event is handed to synchronously, before the requests served by
/// that load get their answer: so an observer (the status stream) sees a reload before anything
/// a caller does after it. It must be quick and must not block.
pub type EventSink = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

/// Engine settings.
#[derive(Clone)]
pub struct EngineOptions {
    /// Previous generations kept for rollback.
    pub retain: usize,
    /// Capacity of the event channel (slow subscribers lag, they never slow the engine).
    pub event_capacity: usize,
    /// Optional synchronous observer of every event.
    pub sink: Option<EventSink>,
    /// Longest metadata text served (`--max-served-metadata-bytes`); a row with more is
    /// quarantined at load.
    pub max_served_metadata_bytes: usize,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("retain", &self.retain)
            .field("event_capacity", &self.event_capacity)
            .field("sink", &self.sink.is_some())
            .field("max_served_metadata_bytes", &self.max_served_metadata_bytes)
            .finish()
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            retain: 10,
            event_capacity: 1024,
            sink: None,
            max_served_metadata_bytes: crate::snapshot::DEFAULT_MAX_SERVED_METADATA_BYTES,
        }
    }
}

/// State behind the engine's mutex: bookkeeping only, never touched on the read path.
/// A std `Mutex` because it is held for a few field updates and never across an `.await`.
#[derive(Debug, Default)]
struct Book {
    health: TargetHealth,
    retained: VecDeque<Arc<Generation>>,
    next_event_id: u64,
}

struct Inner {
    current: ArcSwap<Generation>,
    /// Held by the loader for a whole load and by a rollback: the two never interleave, so a
    /// load built from the pre-rollback generation cannot overwrite the rollback.
    commit: tokio::sync::Mutex<()>,
    /// The pattern store; swapped blue/green by `swap_store`.
    store: ArcSwap<Store>,
    book: Mutex<Book>,
    flight: Flight,
    events: broadcast::Sender<EngineEvent>,
    ready: watch::Sender<bool>,
    opts: EngineOptions,
    /// The audit trail, once attached: every load, rollback and swap is recorded here.
    audit: std::sync::OnceLock<Auditor>,
    /// Whether the loader task runs (false once it ended, by a shutdown or a panic).
    loader_alive: std::sync::atomic::AtomicBool,
}

/// Cheap-to-clone handle to the swap engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("generation", &self.inner.current.load().number)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates the engine and spawns its loader task. Nothing is served until the first load.
    pub fn start(store: Store, opts: EngineOptions) -> Engine {
        let (events, _) = broadcast::channel(opts.event_capacity.max(1));
        let (ready, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            current: ArcSwap::from_pointee(Generation::empty(opts.max_served_metadata_bytes)),
            commit: tokio::sync::Mutex::new(()),
            store: ArcSwap::from_pointee(store),
            book: Mutex::new(Book::default()),
            flight: Flight::default(),
            events,
            ready,
            opts,
            audit: std::sync::OnceLock::new(),
            loader_alive: std::sync::atomic::AtomicBool::new(true),
        });
        tokio::spawn(loader::run(Arc::clone(&inner)));
        Engine { inner }
    }

    /// The generation served now: one atomic load, no lock.
    pub fn current(&self) -> arc_swap::Guard<Arc<Generation>> {
        self.inner.current.load()
    }

    /// Asks for a load and waits for the load that serves the request. Requests arriving while
    /// a load runs are coalesced into one further load. `origin` is who asked, for the audit
    /// trail; `None`: the request's source itself (the poll, the first load, a bus catch-up).
    pub async fn reload(
        &self,
        req: LoadRequest,
        origin: Option<Origin>,
    ) -> Result<(LoadReport, bool), LoadError> {
        let (tx, rx) = oneshot::channel();
        self.inner.flight.push(req, origin, Some(tx));
        rx.await.map_err(|_| LoadError::Closed)?
    }

    /// Asks for a load without waiting for it (for fire-and-forget sources such as the bus);
    /// `origin` as in [`Engine::reload`].
    pub fn request(&self, req: LoadRequest, origin: Option<Origin>) {
        self.inner.flight.push(req, origin, None);
    }

    /// Records every later load, rollback and store swap on `auditor` (the first call wins).
    pub fn attach_audit(&self, auditor: Auditor) {
        let _ = self.inner.audit.set(auditor);
    }

    /// Builds and validates a generation without swapping it in, and reports what would change.
    pub async fn validate(&self, scope: Scope) -> Result<LoadReport, LoadError> {
        loader::build(&self.inner, &scope)
            .await
            .map(|built| built.report)
    }

    /// Serves a retained generation again, as a new generation, and pins the target: automatic
    /// reloads (bus, poll) are then held as pending changes until an explicit reload (which
    /// reads everything) unpins it. `to` 0 means the previous generation. `origin`: who asked.
    pub async fn rollback(
        &self,
        to: u64,
        reason: String,
        origin: Origin,
    ) -> Result<LoadReport, LoadError> {
        self.rollback_audited(loader::Pick::Number(to), reason, Source::Grpc, origin)
            .await
    }

    /// Like [`Engine::rollback`], to the retained generation whose content hash is
    /// `content_hash` (what another replica rolled back to: generation numbers are per
    /// process, content hashes are not). When the current generation already has that content,
    /// it is pinned in place. `LoadError::ContentNotRetained` when no retained generation has it.
    pub async fn rollback_to_hash(
        &self,
        content_hash: &str,
        reason: String,
        origin: Origin,
    ) -> Result<LoadReport, LoadError> {
        let pick = loader::Pick::Hash(content_hash.to_owned());
        self.rollback_audited(pick, reason, Source::Bus, origin)
            .await
    }

    async fn rollback_audited(
        &self,
        pick: loader::Pick,
        reason: String,
        source: Source,
        origin: Origin,
    ) -> Result<LoadReport, LoadError> {
        let started = std::time::Instant::now();
        let before = self.current().number;
        let origin = Origin {
            action: crate::audit::action::ROLLBACK,
            ..origin
        };
        let result = loader::rollback(&self.inner, pick, reason.clone()).await;
        self.inner.audit_one(
            source,
            &origin,
            &reason,
            before,
            as_outcome(&result),
            started,
        );
        result
    }

    /// Replaces the store (blue/green, `Reload(TARGET_STORE)`): opens and migrates a pool with
    /// `opts`, reads everything from it and, only if all that succeeds, swaps both the store and
    /// the served generation, then closes the old pool once its running queries finish. On
    /// failure the old store keeps serving and the new pool is closed. `origin`: who asked; the
    /// swap is recorded in the audit trail unless the URL was refused before anything was tried.
    pub async fn swap_store(
        &self,
        opts: &StoreOptions,
        reason: String,
        origin: Origin,
    ) -> Result<LoadReport, StoreSwapError> {
        let started = std::time::Instant::now();
        let before = self.current().number;
        let origin = Origin {
            action: crate::audit::action::STORE_SWAP,
            target: "store".into(),
            ..origin
        };
        let result = async {
            let new = Store::connect(opts).await.map_err(|e| match e {
                StoreError::UnsupportedUrl(_) => StoreSwapError::InvalidUrl(e.to_string()),
                e => StoreSwapError::Connect(e),
            })?;
            if let Err(e) = new.migrate().await {
                new.close().await;
                return Err(StoreSwapError::Migrate(e));
            }
            loader::swap_store(&self.inner, new, reason.clone())
                .await
                .map_err(StoreSwapError::Load)
        }
        .await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "store swap failed; the current store keeps serving");
        }
        if !matches!(result, Err(StoreSwapError::InvalidUrl(_))) {
            let outcome = result.as_ref().map_err(ToString::to_string);
            self.inner
                .audit_one(Source::Grpc, &origin, &reason, before, outcome, started);
        }
        result
    }

    /// The store behind the engine.
    pub fn store(&self) -> Arc<Store> {
        self.inner.store.load_full()
    }

    /// Load health.
    pub fn health(&self) -> TargetHealth {
        self.inner.book().health.clone()
    }

    /// Retained previous generations, newest first.
    pub fn retained(&self) -> Vec<Arc<Generation>> {
        self.inner.book().retained.iter().cloned().collect()
    }

    /// Subscribes to engine events. A subscriber that falls behind loses the oldest events
    /// (`RecvError::Lagged`) rather than slowing the engine.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Becomes true once the first load succeeded.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.inner.ready.subscribe()
    }

    /// Why the engine cannot make progress, if it cannot: its loader task ended without a
    /// shutdown (a panic), or one load has run longer than `limit`. A database outage is not
    /// that (loads fail, quickly, and the last good generation keeps serving): this is what a
    /// liveness probe asks, where only a restart helps.
    pub fn wedged(&self, limit: std::time::Duration) -> Option<String> {
        use std::sync::atomic::Ordering;
        if !self.inner.loader_alive.load(Ordering::Acquire) && !self.inner.flight.is_closed() {
            return Some("the loader task has stopped".into());
        }
        let since = self.inner.book().health.loading_since?;
        let running = since.elapsed();
        (running > limit).then(|| {
            format!(
                "one load has run for {} s, over --liveness-load-timeout ({} s)",
                running.as_secs(),
                limit.as_secs_f64()
            )
        })
    }

    /// Stops the loader after the load in progress; pending waiters get `LoadError::Closed`.
    pub fn shutdown(&self) {
        self.inner.flight.close();
    }
}

impl Inner {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave `Book` inconsistent in a way that matters
        // more than stopping status reporting, so recover the guard instead of propagating.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, kind: EventKind) {
        let id = {
            let mut book = self.book();
            book.next_event_id += 1;
            book.next_event_id
        };
        let event = EngineEvent {
            id,
            at: Utc::now(),
            kind,
        };
        if let Some(sink) = &self.opts.sink {
            sink(&event);
        }
        // No subscribers is normal.
        let _ = self.events.send(event);
    }

    /// Records one requester's change on the audit trail (if attached). Automatic sources (bus,
    /// poll) that changed nothing are not recorded: an idle backstop poll is not a change.
    fn audit_one(
        &self,
        source: Source,
        origin: &Origin,
        reason: &str,
        before: u64,
        result: Result<&LoadReport, String>,
        started: std::time::Instant,
    ) {
        use crate::audit::{Entry, Outcome, action};
        let Some(audit) = self.audit.get() else {
            return;
        };
        let (after, outcome, error) = match result {
            // A swapped store is a change even when it holds the same content, and a rollback
            // pins even when it serves the current content.
            Ok(r)
                if r.generation_after != before
                    || matches!(origin.action, action::STORE_SWAP | action::ROLLBACK) =>
            {
                (r.generation_after, Outcome::Ok, String::new())
            }
            Ok(r) => (r.generation_after, Outcome::Noop, String::new()),
            Err(e) => (self.current.load().number, Outcome::Failed, e),
        };
        if source.is_automatic() && outcome == Outcome::Noop {
            return;
        }
        audit.record(Entry {
            at: Utc::now(),
            caller: origin.caller.clone(),
            action: origin.action,
            target: origin.target.clone(),
            source: source.as_str(),
            reason: reason.to_owned(),
            generation_before: before,
            generation_after: after,
            outcome,
            error,
            duration: started.elapsed(),
        });
    }
}

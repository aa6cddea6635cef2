//! The loader task: takes merged batches from the flight, builds a generation off the request
//! threads, and swaps it in. It is the only code that stores into `Inner::current`.

use std::{sync::Arc, time::Instant};

use chrono::Utc;
use tracing::{Instrument, info, info_span, warn};

use super::{
    EventKind, Generation, Inner, LoadError, LoadMode, LoadReport, Scope, Source,
    flight::{Batch, Plan},
};
use crate::{
    model::PatternRow,
    snapshot::{ChangeCounts, PatternSnapshot},
    store::{Cursor, Store, StoreError},
};

/// A generation built but not yet swapped in.
pub(super) struct Built {
    /// The content and position the next generation would have.
    snapshot: Arc<PatternSnapshot>,
    cursor: Option<Cursor>,
    store_revision: i64,
    /// What the build found.
    pub(super) report: LoadReport,
}

/// Runs until the flight is closed.
pub(super) async fn run(inner: Arc<Inner>) {
    /// Marks the loader gone however it ends, a panic included (see `Engine::wedged`).
    struct Alive<'a>(&'a Inner);
    impl Drop for Alive<'_> {
        fn drop(&mut self) {
            self.0
                .loader_alive
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
    let _alive = Alive(&inner);
    while let Some(batch) = inner.flight.next().await {
        let span = info_span!(
            "reload",
            target = "patterns",
            source = batch.source.as_str(),
            requests = batch.requests,
            reason = %batch.reason,
        );
        execute(&inner, batch).instrument(span).await;
    }
}

async fn execute(inner: &Inner, mut batch: Batch) {
    let _commit = inner.commit.lock().await;
    let started = Instant::now();
    let before = inner.current.load().number;
    if inner.book().health.pinned.is_some() {
        if !batch.explicit {
            hold(inner, batch);
            return;
        }
        // Unpinning: the served content is an old generation's, so only a full read brings
        // it back in line with the store.
        batch.plan = Some(Plan::Full);
    }
    {
        let mut book = inner.book();
        book.health.loading_since = Some(std::time::Instant::now());
        book.health.loads_total += 1;
        book.health.coalesced_total += batch.requests.saturating_sub(1) as u64;
    }
    inner.emit(EventKind::ReloadStarted {
        source: batch.source,
    });
    if batch.invalidate_dropped > 0 {
        warn!(
            dropped = batch.invalidate_dropped,
            limit = super::flight::MAX_INVALIDATE,
            "too many invalidations pending at once; the extra ones were dropped (their rows \
             keep serving until the store says otherwise)"
        );
    }
    // Invalidations first, as their own generation: they must take effect even if the load
    // that follows fails. Before the first load nothing is served, so there is nothing to drop.
    let mut result = None;
    if !batch.invalidate.is_empty() && inner.current.load().number > 0 {
        result = Some(match build_invalidate(inner, &batch.invalidate).await {
            Ok(built) => Ok(commit(inner, built, batch.source, &batch.reason)),
            Err(e) => {
                record_failure(inner, batch.source, &e);
                Err(e)
            }
        });
    }
    if let Some(plan) = &batch.plan {
        result = Some(
            match build_plan(inner, plan, &inner.store.load_full()).await {
                Ok(built) => {
                    let report = commit(inner, built, batch.source, &batch.reason);
                    unpin(inner);
                    Ok(report)
                }
                Err(e) => {
                    record_failure(inner, batch.source, &e);
                    Err(e)
                }
            },
        );
    }
    let result = result.unwrap_or_else(|| Ok(unchanged(inner)));
    inner.book().health.loading_since = None;
    let last = batch.origins.len().saturating_sub(1);
    for (i, (source, origin, reason)) in batch.origins.iter().enumerate() {
        let reason = match batch.origins_extra {
            n if n > 0 && i == last => format!("{reason} (and {n} more requesters)"),
            _ => reason.clone(),
        };
        inner.audit_one(
            *source,
            origin,
            &reason,
            before,
            super::as_outcome(&result),
            started,
        );
    }
    for (i, waiter) in batch.waiters.into_iter().enumerate() {
        // A caller that went away is normal (e.g. a cancelled RPC).
        let _ = waiter.send(result.clone().map(|r| (r, i > 0)));
    }
}

/// Records an automatic batch as pending while pinned, and answers its waiters with the
/// current (pinned) generation.
fn hold(inner: &Inner, batch: Batch) {
    let pending = {
        let mut book = inner.book();
        book.health.pending_changes += batch.requests as u32;
        book.health.pending_changes
    };
    info!(
        source = batch.source.as_str(),
        pending, "pinned: automatic reload held"
    );
    inner.emit(EventKind::Held {
        source: batch.source,
        pending,
    });
    let report = unchanged(inner);
    for waiter in batch.waiters {
        let _ = waiter.send(Ok((report.clone(), true)));
    }
}

/// The report of a batch that changed nothing: the current generation, as it is.
fn unchanged(inner: &Inner) -> LoadReport {
    let cur = inner.current.load_full();
    LoadReport {
        generation_before: cur.number,
        generation_after: cur.number,
        counts: ChangeCounts::default(),
        mode: LoadMode::Noop,
        rows_read: 0,
        current: cur,
        duration: std::time::Duration::ZERO,
        absent: Vec::new(),
    }
}

fn unpin(inner: &Inner) {
    let pending = {
        let mut book = inner.book();
        if book.health.pinned.take().is_none() {
            return;
        }
        std::mem::take(&mut book.health.pending_changes)
    };
    info!(pending, "unpinned by an explicit reload");
    inner.emit(EventKind::Unpinned { pending });
}

/// Which retained generation a rollback serves again.
pub(super) enum Pick {
    /// By number; 0 is the previous generation.
    Number(u64),
    /// By content hash (a broadcast rollback from another replica, whose numbers differ).
    Hash(String),
}

/// See [`super::Engine::rollback`] and [`super::Engine::rollback_to_hash`].
pub(super) async fn rollback(
    inner: &Inner,
    pick: Pick,
    reason: String,
) -> Result<LoadReport, LoadError> {
    let _commit = inner.commit.lock().await;
    let cur = inner.current.load_full();
    if let Pick::Hash(hash) = &pick
        && cur.snapshot.content_hash() == *hash
    {
        // Already serving that content (e.g. the same bad batch never reached this replica):
        // pin it in place, so automatic reloads do not move it away from what the fleet serves.
        return Ok(pin_current(inner, cur));
    }
    let target = {
        let book = inner.book();
        let found = match &pick {
            Pick::Number(0) => book.retained.front(),
            Pick::Number(to) => book.retained.iter().find(|g| g.number == *to),
            Pick::Hash(hash) => book
                .retained
                .iter()
                .find(|g| g.snapshot.content_hash() == *hash),
        };
        found.cloned().ok_or_else(|| match &pick {
            Pick::Number(to) => LoadError::NotRetained {
                wanted: *to,
                retained: book.retained.iter().map(|g| g.number).collect(),
            },
            Pick::Hash(hash) => LoadError::ContentNotRetained {
                content_hash: hash.clone(),
                retained: book.retained.len(),
            },
        })?
    };
    let counts = cur.snapshot.diff(&target.snapshot);
    let next = Arc::new(Generation {
        number: cur.number + 1,
        snapshot: Arc::clone(&target.snapshot),
        store_revision: target.store_revision,
        // The cursor stays where the store was read last; unpinning reads everything anyway.
        cursor: cur.cursor.clone(),
        loaded_at: Utc::now(),
        source: super::Source::Rollback,
        load_duration: std::time::Duration::ZERO,
        mode: target.mode,
        reason,
    });
    inner.current.store(Arc::clone(&next));
    let expired = {
        let mut book = inner.book();
        book.retained.push_front(Arc::clone(&cur));
        let expired = expire(&mut book.retained, inner.opts.retain);
        book.health.pinned = Some(next.number);
        book.health.pending_changes = 0;
        expired
    };
    drop_off_thread(expired);
    info!(
        generation = next.number,
        from = target.number,
        content_hash = %next.snapshot.content_hash(),
        "rolled back and pinned"
    );
    inner.emit(EventKind::RolledBack {
        generation: Arc::clone(&next),
        from: target.number,
    });
    Ok(LoadReport {
        generation_before: cur.number,
        generation_after: next.number,
        counts,
        mode: next.mode,
        rows_read: 0,
        current: next,
        duration: std::time::Duration::ZERO,
        absent: Vec::new(),
    })
}

/// Pins the generation being served, as a rollback to it.
fn pin_current(inner: &Inner, cur: Arc<Generation>) -> LoadReport {
    {
        let mut book = inner.book();
        if book.health.pinned.is_none() {
            book.health.pending_changes = 0;
        }
        book.health.pinned = Some(cur.number);
    }
    info!(
        generation = cur.number,
        content_hash = %cur.snapshot.content_hash(),
        "rollback target already served; pinned"
    );
    inner.emit(EventKind::RolledBack {
        generation: Arc::clone(&cur),
        from: cur.number,
    });
    LoadReport {
        generation_before: cur.number,
        generation_after: cur.number,
        counts: ChangeCounts::default(),
        mode: cur.mode,
        rows_read: 0,
        current: cur,
        duration: std::time::Duration::ZERO,
        absent: Vec::new(),
    }
}

/// See [`super::Engine::swap_store`].
pub(super) async fn swap_store(
    inner: &Inner,
    new: Store,
    reason: String,
) -> Result<LoadReport, LoadError> {
    let _commit = inner.commit.lock().await;
    inner.emit(EventKind::ReloadStarted {
        source: Source::Grpc,
    });
    // Everything is read from the new store before anything is swapped: on any failure the old
    // store and the old generation keep serving.
    let built = match build_plan(inner, &Plan::Full, &new).await {
        Ok(built) => built,
        Err(e) => {
            record_failure(inner, Source::Grpc, &e);
            new.close().await;
            return Err(e);
        }
    };
    let old = inner.store.swap(Arc::new(new));
    let report = commit(inner, built, Source::Grpc, &reason);
    unpin(inner);
    info!(
        old = old.backend(),
        new = inner.store.load().backend(),
        generation = report.generation_after,
        "store swapped; closing the old pool once its running queries finish"
    );
    // Closing waits for checked-out connections to come back, so queries already running on
    // the old pool finish; nothing new is sent to it.
    tokio::spawn(async move { old.close().await });
    Ok(report)
}

/// Builds what `scope` asks for from the current generation, without swapping.
pub(super) async fn build(inner: &Inner, scope: &Scope) -> Result<Built, LoadError> {
    match scope {
        Scope::Full => build_plan(inner, &Plan::Full, &inner.store.load_full()).await,
        Scope::Delta => build_plan(inner, &Plan::Delta(Vec::new()), &inner.store.load_full()).await,
        Scope::Ids(ids) => {
            build_plan(inner, &Plan::Ids(ids.clone()), &inner.store.load_full()).await
        }
        Scope::Invalidate(ids) => build_invalidate(inner, ids).await,
    }
}

/// The current generation without `ids`: no store read, same cursor and revision (the store
/// has not been asked anything new).
async fn build_invalidate(inner: &Inner, ids: &[i64]) -> Result<Built, LoadError> {
    let started = Instant::now();
    let cur = inner.current.load_full();
    let (snapshot, counts) = apply(&cur.snapshot, Vec::new(), ids.to_vec()).await?;
    Ok(Built {
        report: LoadReport {
            generation_before: cur.number,
            generation_after: cur.number,
            counts,
            mode: LoadMode::Invalidate,
            rows_read: 0,
            current: Arc::clone(&cur),
            duration: started.elapsed(),
            absent: Vec::new(),
        },
        snapshot,
        cursor: cur.cursor.clone(),
        store_revision: cur.store_revision,
    })
}

/// Builds `plan` from `store` (the current one, or a blue/green replacement).
async fn build_plan(inner: &Inner, plan: &Plan, store: &Store) -> Result<Built, LoadError> {
    let started = Instant::now();
    let cur = inner.current.load_full();
    let store_err = LoadError::from;

    let mut absent = Vec::new();
    // A delta (or named rows with it) when there is a cursor; `None` reads everything, also
    // when tombstones the cursor had not read have been pruned.
    let delta = match (plan, &cur.cursor) {
        (Plan::Delta(ids) | Plan::Ids(ids), Some(since)) => read_delta(store, since, ids).await?,
        _ => None,
    };
    let (snapshot, counts, mode, rows_read, cursor, store_revision) = match delta {
        None => {
            // No "the revision went backwards" guard: revisions are transaction ids on
            // PostgreSQL, not commit order, and loads are serialized, so this read is at least
            // as new as the one served (see "Store positions" in docs/architecture.md).
            let full = store.load_full().await.map_err(store_err)?;
            let rows_read = full.rows.len();
            let prev = Arc::clone(&cur.snapshot);
            // Rows that did not change are shared with the current snapshot (and so with the
            // retained generations), and the counts come out of the same pass.
            let (next, counts) =
                off_thread(move || PatternSnapshot::from_records_after(&prev, full.rows)).await?;
            (
                Arc::new(next),
                counts,
                LoadMode::Full,
                rows_read,
                Some(full.cursor),
                full.revision,
            )
        }
        Some(read) => {
            // A named-row load reads the delta too, in the same pass: the cursor then moves on
            // (the next delta does not read the row again), and the generation's position and
            // revision say what was read.
            let single = matches!(plan, Plan::Ids(_));
            absent.clone_from(&read.absent);
            let mode = match () {
                _ if single && read.others == 0 => LoadMode::Single,
                _ if read.changed.is_empty() && read.deleted.is_empty() => LoadMode::Noop,
                _ => LoadMode::Delta,
            };
            if mode == LoadMode::Noop {
                (
                    Arc::clone(&cur.snapshot),
                    ChangeCounts::default(),
                    mode,
                    0,
                    Some(read.cursor),
                    read.revision,
                )
            } else {
                let rows_read = read.changed.len() + read.deleted.len();
                let (next, counts) = apply(&cur.snapshot, read.changed, read.deleted).await?;
                (
                    next,
                    counts,
                    mode,
                    rows_read,
                    Some(read.cursor),
                    read.revision,
                )
            }
        }
    };

    let duration = started.elapsed();
    Ok(Built {
        report: LoadReport {
            generation_before: cur.number,
            generation_after: cur.number,
            counts,
            mode,
            rows_read,
            current: Arc::clone(&cur),
            duration,
            absent,
        },
        snapshot,
        cursor,
        store_revision,
    })
}

/// What a delta read (plus named rows) found.
struct DeltaRead {
    /// Changed rows, each id once, newest read last.
    changed: Vec<PatternRow>,
    /// Ids gone.
    deleted: Vec<i64>,
    /// Rows and ids the delta found that were not named.
    others: usize,
    /// Named ids the store does not have.
    absent: Vec<i64>,
    /// Where the next delta starts.
    cursor: Cursor,
    /// The newest revision visible to the delta: a label of the store state (equal for
    /// replicas that read the same state), not an order (see `Cursor::covers`).
    revision: i64,
}

/// Reads what changed since `since`, then the rows named by `ids` (read after the delta, so
/// their version wins over the delta's copy; one the named read finds gone is deleted).
/// `None` when the cursor is older than the tombstone pruning horizon, or from another WAL
/// timeline (a failover): only a full load is sure to drop the rows deleted (or lost) since.
async fn read_delta(
    store: &Store,
    since: &Cursor,
    ids: &[i64],
) -> Result<Option<DeltaRead>, LoadError> {
    let delta = match store.load_delta(since).await {
        Ok(delta) => delta,
        Err(StoreError::CursorTooOld) => {
            info!("the delta cursor is older than the tombstone pruning horizon: full load");
            return Ok(None);
        }
        Err(StoreError::TimelineChanged { was, now }) => {
            warn!(
                was,
                now,
                "the database failed over or was restored since the last load (WAL timeline \
                 changed): commits the old server had may be gone, so a full load replaces \
                 the served set"
            );
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let named: std::collections::HashSet<i64> = ids.iter().copied().collect();
    let mut changed = delta.changed;
    let mut deleted = delta.deleted;
    changed.retain(|r| !named.contains(&r.id));
    deleted.retain(|id| !named.contains(id));
    let others = changed.len() + deleted.len();
    let extra = load_named(store, ids, &mut deleted).await?;
    let absent = deleted[others - changed.len()..].to_vec();
    changed.extend(extra);
    Ok(Some(DeltaRead {
        changed,
        deleted,
        others,
        absent,
        cursor: delta.cursor,
        revision: delta.revision,
    }))
}

/// Reads named rows; ids the store no longer has are added to `deleted`.
async fn load_named(
    store: &Store,
    ids: &[i64],
    deleted: &mut Vec<i64>,
) -> Result<Vec<PatternRow>, LoadError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = store.load_ids(ids).await.map_err(LoadError::from)?;
    deleted.extend(ids.iter().filter(|id| !rows.iter().any(|r| r.id == **id)));
    Ok(rows)
}

async fn apply(
    prev: &Arc<PatternSnapshot>,
    changed: Vec<PatternRow>,
    deleted: Vec<i64>,
) -> Result<(Arc<PatternSnapshot>, ChangeCounts), LoadError> {
    let prev = Arc::clone(prev);
    let (next, counts) = off_thread(move || prev.apply(changed, &deleted)).await?;
    Ok((Arc::new(next), counts))
}

/// Builds snapshots on the blocking pool, so a large build never runs on (or stalls) the
/// threads that answer requests.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LoadError::Invalid(format!("snapshot build panicked: {e}")))?
        .map_err(LoadError::Invalid)
}

/// Swaps the built generation in (a new number only if the content changed, or on the first
/// load) and records the success.
fn commit(inner: &Inner, built: Built, source: Source, reason: &str) -> LoadReport {
    let cur = built.report.current;
    let first = cur.number == 0;
    let changed = first || built.report.counts.any();
    let next = Arc::new(Generation {
        number: if changed { cur.number + 1 } else { cur.number },
        snapshot: built.snapshot,
        store_revision: built.store_revision,
        cursor: built.cursor,
        loaded_at: if changed { Utc::now() } else { cur.loaded_at },
        source: if changed { source } else { cur.source },
        load_duration: if changed {
            built.report.duration
        } else {
            cur.load_duration
        },
        mode: if changed { built.report.mode } else { cur.mode },
        reason: if changed {
            reason.to_owned()
        } else {
            cur.reason.clone()
        },
    });
    inner.current.store(Arc::clone(&next));
    let expired = {
        let mut book = inner.book();
        let mut expired = Vec::new();
        if changed && !first {
            book.retained.push_front(Arc::clone(&cur));
            expired = expire(&mut book.retained, inner.opts.retain);
        }
        let h = &mut book.health;
        h.last_success_at = Some(Utc::now());
        h.last_error = None;
        h.consecutive_failures = 0;
        expired
    };
    drop_off_thread(expired);
    if first {
        inner.ready.send_replace(true);
    }
    announce_quarantine(inner, &cur.snapshot, &next.snapshot);
    let counts = built.report.counts;
    info!(
        generation = next.number,
        mode = ?built.report.mode,
        rows_read = built.report.rows_read,
        added = counts.added,
        updated = counts.updated,
        removed = counts.removed,
        served = next.snapshot.len(),
        store_revision = next.store_revision,
        duration_ms = built.report.duration.as_secs_f64() * 1e3,
        "reload succeeded"
    );
    inner.emit(EventKind::ReloadSucceeded {
        generation: Arc::clone(&next),
        counts,
    });
    LoadReport {
        generation_after: next.number,
        current: next,
        ..built.report
    }
}

/// Most quarantine changes announced (as events and warnings) per load; the rest show in status.
const MAX_QUARANTINE_EVENTS: usize = 100;

/// Announces rows that entered or left the quarantine between `before` and `after`.
fn announce_quarantine(inner: &Inner, before: &PatternSnapshot, after: &PatternSnapshot) {
    let (old, new) = (before.quarantined(), after.quarantined());
    if std::ptr::eq(old, new) || (old.is_empty() && new.is_empty()) {
        return;
    }
    let entered = new
        .iter()
        .filter(|(id, reason)| old.get(*id) != Some(*reason));
    for (id, reason) in entered.take(MAX_QUARANTINE_EVENTS) {
        warn!(
            pattern_id = id,
            reason = %reason,
            "a row the store says to serve breaks an invariant: it is quarantined (not served) and \
             the rest of the load was applied. Fix the row; the next load serves it again"
        );
        inner.emit(EventKind::Quarantined {
            id: *id,
            reason: reason.clone(),
        });
    }
    let left = old.keys().filter(|id| !new.contains_key(*id));
    for id in left.take(MAX_QUARANTINE_EVENTS) {
        info!(
            pattern_id = id,
            "a quarantined row was read again and released"
        );
        inner.emit(EventKind::Released { id: *id });
    }
}

/// Takes the generations past the `keep` newest out of `retained`.
fn expire(
    retained: &mut std::collections::VecDeque<Arc<Generation>>,
    keep: usize,
) -> Vec<Arc<Generation>> {
    if retained.len() <= keep {
        return Vec::new();
    }
    retained.drain(keep..).collect()
}

/// Drops expired generations on the blocking pool: freeing a large snapshot (its index, and the
/// rows no newer generation shares) takes long enough to stall a request thread, and must not
/// happen under the book lock either.
fn drop_off_thread(expired: Vec<Arc<Generation>>) {
    if !expired.is_empty() {
        tokio::task::spawn_blocking(move || drop(expired));
    }
}

fn record_failure(inner: &Inner, source: Source, e: &LoadError) {
    let failures = {
        let mut book = inner.book();
        let h = &mut book.health;
        h.last_error = Some(e.to_string());
        h.last_error_at = Some(Utc::now());
        h.consecutive_failures += 1;
        h.failures_total += 1;
        h.consecutive_failures
    };
    warn!(
        error = %e,
        consecutive_failures = failures,
        generation = inner.current.load().number,
        "reload failed; the last good generation keeps serving. Check the database \
         connection and the rows named in the error, then retry with HotReload.Reload"
    );
    inner.emit(EventKind::ReloadFailed {
        source,
        error: e.to_string(),
    });
}

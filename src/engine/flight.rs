//! Single flight: merges the load requests that arrive while a load runs into one further load.
//!
//! Pushing never waits and allocates per request only its waiter and, for the first
//! `MAX_ORIGINS` distinct requesters of a batch, their audit origin; so a burst of bus messages
//! costs a few set insertions, not a queue of loads. The set of named ids is bounded:
//! past `MAX_IDS` the batch becomes a delta read, which covers any named row that changed.
//!
//! Invalidations (bus `invalidate`: stop serving these ids now) ride in the same batch and are
//! applied before its load. They cannot be widened into a read the way ids can (a read could
//! serve the row again), so past `MAX_INVALIDATE` pending ids further ones are dropped and
//! counted; the loader reports them.

use std::{
    collections::BTreeSet,
    sync::{Mutex, MutexGuard},
};

use tokio::sync::{Notify, oneshot};

use super::{LoadError, LoadReport, LoadRequest, Scope, Source};
use crate::audit::{Origin, action};

/// Most distinct ids one batch names before it turns into a delta read.
const MAX_IDS: usize = 1024;

/// Most distinct ids one batch invalidates; more are dropped (and reported).
pub(super) const MAX_INVALIDATE: usize = 4096;

/// Most distinct requesters (source and origin) one batch remembers for the audit trail; the
/// rest are counted (a burst from one bus publisher is one requester).
pub(super) const MAX_ORIGINS: usize = 64;

/// Where a waiting request receives its result and whether it was coalesced.
pub(super) type Waiter = oneshot::Sender<Result<(LoadReport, bool), LoadError>>;

/// What one load must do to serve every request merged into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// Read every served row.
    Full,
    /// Read the changes since the cursor, and also these ids (may be empty).
    Delta(Vec<i64>),
    /// Read only these ids.
    Ids(Vec<i64>),
}

/// A set of merged requests, taken by the loader in one go.
pub(super) struct Batch {
    /// Ids to stop serving before the load (sorted, distinct).
    pub(super) invalidate: Vec<i64>,
    /// Invalidations dropped because the batch already held `MAX_INVALIDATE`.
    pub(super) invalidate_dropped: usize,
    /// The load, if any request asked for one (`None`: the batch only invalidates).
    pub(super) plan: Option<Plan>,
    /// Source and reason of the first request (the one that started the batch).
    pub(super) source: Source,
    pub(super) reason: String,
    /// Requests merged into this batch.
    pub(super) requests: usize,
    /// Whether any merged request came from an explicit source (see `Source::is_automatic`).
    pub(super) explicit: bool,
    pub(super) waiters: Vec<Waiter>,
    /// Who asked, for the audit trail: distinct (source, origin), each with its first reason.
    pub(super) origins: Vec<(Source, Origin, String)>,
    /// Requests whose requester did not fit in `origins`.
    pub(super) origins_extra: usize,
}

#[derive(Default)]
struct Pending {
    requests: usize,
    /// Requests that asked for a load (not only an invalidation).
    loads: usize,
    /// Ids to stop serving before the load (bounded by `MAX_INVALIDATE`).
    invalidate: BTreeSet<i64>,
    /// Invalidations refused because the set was full.
    invalidate_dropped: usize,
    explicit: bool,
    full: bool,
    delta: bool,
    ids: BTreeSet<i64>,
    first: Option<(Source, String)>,
    waiters: Vec<Waiter>,
    origins: Vec<(Source, Origin, String)>,
    origins_extra: usize,
    closed: bool,
}

/// The pending-request slot shared by request sources and the loader.
#[derive(Default)]
pub struct Flight {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl Flight {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a request to the next batch, with its requester for the audit trail (`None`: the
    /// source itself). After `close` the waiter is dropped at once, so the caller sees
    /// `LoadError::Closed`.
    pub(super) fn push(&self, req: LoadRequest, origin: Option<Origin>, waiter: Option<Waiter>) {
        let mut p = self.lock();
        if p.closed {
            return;
        }
        let origin = origin.unwrap_or_else(|| match req.scope {
            Scope::Invalidate(_) => Origin {
                action: action::INVALIDATE,
                ..Origin::of_source(req.source)
            },
            _ => Origin::of_source(req.source),
        });
        if p.origins
            .iter()
            .any(|(s, o, _)| *s == req.source && *o == origin)
        {
        } else if p.origins.len() < MAX_ORIGINS {
            p.origins.push((req.source, origin, req.reason.clone()));
        } else {
            p.origins_extra += 1;
        }
        p.requests += 1;
        p.explicit |= !req.source.is_automatic();
        if p.first.is_none() {
            p.first = Some((req.source, req.reason));
        }
        if !matches!(req.scope, Scope::Invalidate(_)) {
            p.loads += 1;
        }
        match req.scope {
            Scope::Invalidate(ids) => {
                for id in ids {
                    if p.invalidate.len() < MAX_INVALIDATE || p.invalidate.contains(&id) {
                        p.invalidate.insert(id);
                    } else {
                        p.invalidate_dropped += 1;
                    }
                }
            }
            Scope::Full => p.full = true,
            Scope::Delta => p.delta = true,
            Scope::Ids(ids) => {
                p.ids.extend(ids);
                if p.ids.len() > MAX_IDS {
                    p.ids.clear();
                    p.delta = true;
                }
            }
        }
        p.waiters.extend(waiter);
        drop(p);
        // notify_one stores a permit when the loader is busy, so no request is ever missed.
        self.notify.notify_one();
    }

    /// Waits for the next batch; `None` once closed.
    pub(super) async fn next(&self) -> Option<Batch> {
        loop {
            {
                let mut p = self.lock();
                if p.closed {
                    return None;
                }
                if p.requests > 0 {
                    let taken = std::mem::take(&mut *p);
                    return Some(taken.into_batch());
                }
            }
            self.notify.notified().await;
        }
    }

    /// Whether [`Flight::close`] was called.
    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Stops accepting requests and drops every waiter.
    pub(super) fn close(&self) {
        let mut p = self.lock();
        p.closed = true;
        p.waiters.clear();
        drop(p);
        self.notify.notify_one();
    }
}

impl Pending {
    fn into_batch(self) -> Batch {
        let ids: Vec<i64> = self.ids.into_iter().collect();
        let plan = if self.loads == 0 {
            None
        } else if self.full {
            Some(Plan::Full)
        } else if self.delta {
            Some(Plan::Delta(ids))
        } else {
            Some(Plan::Ids(ids))
        };
        let (source, reason) = self.first.unwrap_or((Source::Grpc, String::new()));
        Batch {
            invalidate: self.invalidate.into_iter().collect(),
            invalidate_dropped: self.invalidate_dropped,
            plan,
            source,
            reason,
            requests: self.requests,
            explicit: self.explicit,
            waiters: self.waiters,
            origins: self.origins,
            origins_extra: self.origins_extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(scope: Scope) -> LoadRequest {
        LoadRequest {
            scope,
            source: Source::Bus,
            reason: String::new(),
        }
    }

    #[tokio::test]
    async fn merges_everything_pushed_before_the_loader_takes_it() {
        let f = Flight::default();
        f.push(req(Scope::Ids(vec![3, 1])), None, None);
        f.push(req(Scope::Ids(vec![1, 2])), None, None);
        let b = f.next().await.expect("batch");
        assert_eq!(b.plan, Some(Plan::Ids(vec![1, 2, 3])));
        assert_eq!(b.requests, 2);
        f.push(req(Scope::Ids(vec![9])), None, None);
        f.push(req(Scope::Delta), None, None);
        assert_eq!(
            f.next().await.expect("batch").plan,
            Some(Plan::Delta(vec![9]))
        );
        f.push(req(Scope::Delta), None, None);
        f.push(req(Scope::Full), None, None);
        assert_eq!(f.next().await.expect("batch").plan, Some(Plan::Full));
    }

    #[tokio::test]
    async fn too_many_ids_become_a_delta() {
        let f = Flight::default();
        for id in 0..(MAX_IDS as i64 + 1) {
            f.push(req(Scope::Ids(vec![id])), None, None);
        }
        assert_eq!(
            f.next().await.expect("batch").plan,
            Some(Plan::Delta(vec![]))
        );
    }

    #[tokio::test]
    async fn invalidations_merge_into_the_batch_and_alone_need_no_load() {
        let f = Flight::default();
        f.push(req(Scope::Invalidate(vec![5, 3])), None, None);
        f.push(req(Scope::Invalidate(vec![3])), None, None);
        let b = f.next().await.expect("batch");
        assert_eq!((b.invalidate, b.plan, b.requests), (vec![3, 5], None, 2));
        // Mixed with reloads: invalidate first, then one load for all the reloads.
        f.push(req(Scope::Invalidate(vec![7])), None, None);
        f.push(req(Scope::Ids(vec![7])), None, None);
        f.push(req(Scope::Delta), None, None);
        let b = f.next().await.expect("batch");
        assert_eq!(b.invalidate, vec![7]);
        assert_eq!(b.plan, Some(Plan::Delta(vec![7])));
    }

    #[tokio::test]
    async fn invalidations_past_the_bound_are_dropped_and_counted() {
        let f = Flight::default();
        let ids: Vec<i64> = (0..(MAX_INVALIDATE as i64 + 10)).collect();
        f.push(req(Scope::Invalidate(ids)), None, None);
        // An id already pending is not a drop.
        f.push(req(Scope::Invalidate(vec![0])), None, None);
        let b = f.next().await.expect("batch");
        assert_eq!(b.invalidate.len(), MAX_INVALIDATE);
        assert_eq!(b.invalidate_dropped, 10);
    }

    #[tokio::test]
    async fn requesters_are_remembered_once_each_and_bounded() {
        let f = Flight::default();
        let bus = |caller: &str| Some(Origin::reload(caller));
        f.push(req(Scope::Delta), bus("bus:a"), None);
        f.push(req(Scope::Ids(vec![1])), bus("bus:a"), None);
        f.push(req(Scope::Invalidate(vec![2])), None, None);
        let b = f.next().await.expect("batch");
        let callers: Vec<_> = b
            .origins
            .iter()
            .map(|(_, o, _)| (o.caller.as_str(), o.action))
            .collect();
        assert_eq!(callers, vec![("bus:a", "reload"), ("bus", "invalidate")]);
        for n in 0..MAX_ORIGINS + 3 {
            f.push(req(Scope::Delta), bus(&format!("bus:{n}")), None);
        }
        let b = f.next().await.expect("batch");
        assert_eq!((b.origins.len(), b.origins_extra), (MAX_ORIGINS, 3));
    }

    #[tokio::test]
    async fn close_ends_the_loader_and_drops_waiters() {
        let f = Flight::default();
        let (tx, rx) = oneshot::channel();
        f.push(req(Scope::Delta), None, Some(tx));
        f.close();
        assert!(f.next().await.is_none());
        assert!(rx.await.is_err());
    }
}

//! In-flight counters per gRPC method, cheap enough to run on every request.
//!
//! Every request passes through here twice (start and end), so the common case takes no lock
//! and allocates nothing: the methods of this service's proto get a slot each (an index fixed
//! when the counters are built, from the compiled descriptor set) holding atomic counters, and a
//! request keeps its slot's index. Only a path the proto does not know (a client calling a
//! method that does not exist, which the router answers at once) falls back to a map under a
//! lock, so `still_running` stays exact for every path.
//!
//! Waiting for "zero in flight" is a [`Notify`] fired when a total reaches zero, never a poll,
//! and nothing is sent to anyone while work is running.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU32, Ordering},
    },
};

use tokio::sync::Notify;

/// What a request counts against.
#[derive(Debug)]
pub(super) enum Slot {
    /// A method of the proto, by index into [`Counts`]' tables.
    Known { index: usize, stream: bool },
    /// Any other path (rare), counted in the locked fallback map.
    Other { path: String, stream: bool },
}

/// The counters.
#[derive(Debug)]
pub(super) struct Counts {
    /// Method path → slot index. Read-only after construction, so lookups take no lock.
    index: HashMap<Box<str>, usize>,
    /// The path of each slot (for `still_running`).
    paths: Vec<Box<str>>,
    /// Running unary requests per slot.
    requests: Vec<AtomicU32>,
    /// Open server streams per slot.
    streams: Vec<AtomicU32>,
    /// Counts of paths without a slot: (path, is a stream) → count.
    other: Mutex<BTreeMap<(String, bool), u32>>,
    /// Sum over every path: running unary requests.
    total_requests: AtomicU32,
    /// Sum over every path: open streams.
    total_streams: AtomicU32,
    /// Woken when a total drops to zero (what `wait_idle` and shutdown wait for).
    zero: Notify,
}

impl Default for Counts {
    fn default() -> Self {
        Counts::for_paths(proto_methods())
    }
}

/// Every RPC path of the compiled proto (`/package.Service/Method`). The descriptor set is
/// generated at build time, so decoding cannot fail in practice; if it did, every path would
/// be counted through the fallback map, correctly but with a lock.
fn proto_methods() -> Vec<String> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                out.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    out
}

impl Counts {
    /// Counters with a slot for each of `paths`.
    fn for_paths(paths: Vec<String>) -> Counts {
        let paths: Vec<Box<str>> = paths.into_iter().map(String::into_boxed_str).collect();
        let index = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i))
            .collect();
        Counts {
            index,
            requests: paths.iter().map(|_| AtomicU32::new(0)).collect(),
            streams: paths.iter().map(|_| AtomicU32::new(0)).collect(),
            paths,
            other: Mutex::default(),
            total_requests: AtomicU32::new(0),
            total_streams: AtomicU32::new(0),
            zero: Notify::new(),
        }
    }

    fn other(&self) -> MutexGuard<'_, BTreeMap<(String, bool), u32>> {
        // A map of numbers: a panic elsewhere cannot leave it inconsistent.
        self.other.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn total(&self, stream: bool) -> &AtomicU32 {
        if stream {
            &self.total_streams
        } else {
            &self.total_requests
        }
    }

    /// Counts one request (or stream) on `path`; the returned slot must be given to [`end`].
    ///
    /// [`end`]: Counts::end
    pub(super) fn start(&self, path: &str, stream: bool) -> Slot {
        let slot = match self.index.get(path) {
            Some(&index) => {
                let table = if stream {
                    &self.streams
                } else {
                    &self.requests
                };
                table[index].fetch_add(1, Ordering::Relaxed);
                Slot::Known { index, stream }
            }
            None => {
                *self.other().entry((path.to_owned(), stream)).or_default() += 1;
                Slot::Other {
                    path: path.to_owned(),
                    stream,
                }
            }
        };
        // SeqCst on the totals: a waiter that reads a non-zero total must see the decrement to
        // zero's notification (see `wait_until`).
        self.total(stream).fetch_add(1, Ordering::SeqCst);
        slot
    }

    /// Ends what [`Counts::start`] counted.
    pub(super) fn end(&self, slot: &Slot) {
        let stream = match slot {
            Slot::Known { index, stream } => {
                let table = if *stream {
                    &self.streams
                } else {
                    &self.requests
                };
                table[*index].fetch_sub(1, Ordering::Relaxed);
                *stream
            }
            Slot::Other { path, stream } => {
                let mut other = self.other();
                let key = (path.clone(), *stream);
                if let Some(n) = other.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        other.remove(&key);
                    }
                }
                *stream
            }
        };
        if self.total(stream).fetch_sub(1, Ordering::SeqCst) == 1 {
            self.zero.notify_waiters();
        }
    }

    /// (running unary requests, open streams).
    pub(super) fn totals(&self) -> (u32, u32) {
        (
            self.total_requests.load(Ordering::SeqCst),
            self.total_streams.load(Ordering::SeqCst),
        )
    }

    /// Waits until `done(requests, streams)` holds.
    pub(super) async fn wait_until(&self, done: impl Fn(u32, u32) -> bool) {
        loop {
            // Created before reading the totals: a `notify_waiters` after the read wakes it
            // even though it is not polled yet, so a drop to zero cannot slip in between.
            let zero = self.zero.notified();
            let (requests, streams) = self.totals();
            if done(requests, streams) {
                return;
            }
            zero.await;
        }
    }

    /// The paths with unary requests running, with their counts, in path order.
    pub(super) fn running_requests(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .paths
            .iter()
            .zip(&self.requests)
            .filter_map(|(path, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then(|| (path.to_string(), n))
            })
            .collect();
        out.extend(
            self.other()
                .iter()
                .filter(|((_, stream), _)| !stream)
                .map(|((path, _), n)| (path.clone(), *n)),
        );
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_methods_get_slots_other_paths_are_counted_too() {
        let c = Counts::default();
        assert!(
            c.index.contains_key("/hotplane.v1.Patterns/MatchPattern"),
            "{:?}",
            c.paths
        );
        let a = c.start("/hotplane.v1.Patterns/MatchPattern", false);
        let b = c.start("/hotplane.v1.Patterns/MatchPattern", false);
        let x = c.start("/no.such/Method", false);
        let s = c.start("/hotplane.v1.HotReload/WatchStatus", true);
        assert!(matches!(a, Slot::Known { .. }) && matches!(x, Slot::Other { .. }));
        assert_eq!(c.totals(), (3, 1));
        assert_eq!(
            c.running_requests(),
            vec![
                ("/hotplane.v1.Patterns/MatchPattern".to_owned(), 2),
                ("/no.such/Method".to_owned(), 1)
            ]
        );
        for slot in [a, b, x, s] {
            c.end(&slot);
        }
        assert_eq!(c.totals(), (0, 0));
        assert!(c.running_requests().is_empty() && c.other().is_empty());
    }
}

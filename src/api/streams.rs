//! Per-caller bounds on long-lived streams: a caller (the audit's caller: authenticated name or
//! peer address) may hold at most a configured number of WatchStatus streams at once, so one
//! client cannot hold the server's memory and producer tasks with thousands of idle streams.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tonic::Status;

use crate::reason::Reason;

/// Open streams per caller, bounded.
#[derive(Debug)]
pub struct StreamSlots {
    max: u32,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

/// One caller's open stream; releases its slot when dropped (when the stream's producer ends).
#[derive(Debug)]
pub struct Slot {
    caller: String,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

impl StreamSlots {
    /// At most `max` open streams per caller (0: no limit).
    pub fn new(max: u32) -> Self {
        StreamSlots {
            max,
            open: Arc::default(),
        }
    }

    /// Takes a slot for `caller`, or answers RESOURCE_EXHAUSTED when it holds the maximum.
    pub fn acquire(&self, caller: &str) -> Result<Slot, Status> {
        let mut open = lock(&self.open);
        let n = open.entry(caller.to_owned()).or_default();
        if self.max > 0 && *n >= self.max {
            return Err(Reason::TooManyStreams.status(
                format!(
                    "{caller} already holds {} WatchStatus streams, the limit per caller \
                     (--watch-max-streams-per-caller); close one or reuse it",
                    self.max
                ),
                vec![("limit", self.max.to_string())],
            ));
        }
        *n += 1;
        Ok(Slot {
            caller: caller.to_owned(),
            open: Arc::clone(&self.open),
        })
    }

    /// Streams `caller` holds now.
    pub fn held(&self, caller: &str) -> u32 {
        lock(&self.open).get(caller).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A counter map: nothing a panic elsewhere could leave half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_gets_its_own_bound_and_dropping_frees_a_slot() {
        let slots = StreamSlots::new(2);
        let a1 = slots.acquire("a").expect("1st");
        let _a2 = slots.acquire("a").expect("2nd");
        let err = slots.acquire("a").expect_err("3rd is over the limit");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        let _b = slots.acquire("b").expect("another caller is not affected");
        drop(a1);
        assert_eq!(slots.held("a"), 1);
        let _a3 = slots.acquire("a").expect("a slot was freed");
        let unlimited = StreamSlots::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.acquire("a")).collect();
        assert!(held.iter().all(Result::is_ok));
    }
}

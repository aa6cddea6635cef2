//! Giving memory back after a flood of bus messages.
//!
//! A flood allocates on whichever threads handle it (redis-rs's reads, the intake's copies, the
//! decoding, the loads it asks for), and glibc's allocator keeps what those threads free in
//! their arenas: after 200,000 messages the process stayed 16–23 MB above where it started, for
//! good. So once a burst is over, the subscriber asks the allocator, once, to return its
//! free pages to the system (`malloc_trim(0)`, on the blocking pool: it walks and locks every
//! arena in turn, a few milliseconds that must not hold up messages).
//!
//! A burst is [`BURST`] messages (dropped ones included) with no pause of [`QUIET`] between
//! them; it is over once [`QUIET`] passes without a message. Not after every message, nor on a
//! timer: a trim costs a walk of the whole heap, and only a burst leaves enough freed memory
//! behind to be worth one. Messages that trickle in with pauses never add up to a burst.
//!
//! Why not an allocator that returns memory by itself (jemalloc with background threads): on
//! the same flood it started 2–4 MB higher, peaked no lower, and 15 s later still held 25–30 MB,
//! where the trim brings glibc back to 21–24 MB within 5 s (BENCHMARKS.md, "Bus flood"); and it
//! would have swapped the allocator under every request for the sake of the bus.
//!
//! This module holds the crate's one `unsafe` block (the crate denies `unsafe_code`): the call
//! into glibc.

use std::time::Duration;

use tokio::time::Instant;

/// Messages without a pause of [`QUIET`] that make a burst worth a trim.
pub const BURST: u64 = 1024;

/// The pause that ends a burst.
pub const QUIET: Duration = Duration::from_secs(1);

/// Follows the message rate to tell when a burst is over.
#[derive(Debug, Default)]
pub(super) struct Burst {
    /// Messages since the last pause of [`QUIET`].
    messages: u64,
    /// When the last one arrived.
    last: Option<Instant>,
}

impl Burst {
    /// Counts `n` messages arrived at `now` (one taken and the ones dropped before it).
    pub(super) fn arrived(&mut self, n: u64, now: Instant) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) >= QUIET)
        {
            self.messages = 0;
        }
        self.messages = self.messages.saturating_add(n);
        self.last = Some(now);
    }

    /// When the burst under way is over if nothing more arrives; `None` without one.
    pub(super) fn over_at(&self) -> Option<Instant> {
        match self.last {
            Some(last) if self.messages >= BURST => Some(last + QUIET),
            _ => None,
        }
    }

    /// The burst is over (its memory is being given back): the next one starts from zero.
    pub(super) fn ended(&mut self) {
        self.messages = 0;
    }
}

/// Asks the allocator to return the memory it holds free to the system; returns whether it
/// gave any back. glibc keeps what a thread frees in that thread's arena and returns only the
/// top of the main heap by itself; `malloc_trim(0)` releases the free pages of every arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(super) fn release() -> bool {
    // SAFETY: malloc_trim takes no pointer and touches only glibc's own free lists, under the
    // arena locks every other allocator call takes too.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Elsewhere nothing: musl, macOS and Windows have no such call (their allocators return large
/// blocks by themselves).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_is_over_after_a_quiet_pause_and_counts_once() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        for i in 0..BURST - 1 {
            burst.arrived(1, t0 + MS * i as u32 / 4);
            assert_eq!(burst.over_at(), None, "not a burst yet");
        }
        let last = t0 + MS * 400;
        burst.arrived(1, last);
        assert_eq!(burst.over_at(), Some(last + QUIET));
        burst.ended();
        assert_eq!(burst.over_at(), None, "one trim per burst");
    }

    #[test]
    fn dropped_messages_count_toward_a_burst() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        burst.arrived(1 + BURST, t0);
        assert_eq!(burst.over_at(), Some(t0 + QUIET));
    }

    #[test]
    fn a_trickle_with_pauses_never_adds_up_to_a_burst() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        for i in 0..3 * BURST as u32 {
            burst.arrived(1, t0 + QUIET * i);
            assert_eq!(burst.over_at(), None);
        }
        // After a pause, a burst starts from zero.
        let later = t0 + QUIET * 4 * BURST as u32;
        burst.arrived(BURST - 1, later);
        assert_eq!(burst.over_at(), None);
        burst.arrived(1, later + QUIET - MS);
        assert_eq!(burst.over_at(), Some(later + QUIET - MS + QUIET));
    }
}

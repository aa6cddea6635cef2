//! The one retry policy for loops that retry forever (the first pattern load, the Redis bus
//! reconnect): exponential backoff with jitter and a hard cap, reset after a success.
//!
//! `backon` computes the delays. Its jitter adds a random fraction of the delay on top (a delay
//! `d` becomes something in `[d, 2d)`), so the builder's own ceiling is half the cap: jittered
//! delays stay below the cap and still spread out once they reach it, which keeps replicas that
//! lost Redis at the same moment from reconnecting in lockstep.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Retry delays: the first in `[min, 2·min)`, then doubling, never above `cap`.
#[derive(Debug)]
pub struct Backoff {
    /// The policy, kept to start over after a success.
    builder: ExponentialBuilder,
    /// The delays still ahead (an endless sequence: no limit on attempts).
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    /// No delay is longer than this.
    cap: Duration,
}

impl Backoff {
    /// A policy starting at `min` and capped at `cap` (a `min` above `cap` is lowered to it).
    pub fn new(min: Duration, cap: Duration) -> Backoff {
        let min = min.min(cap);
        let builder = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay((cap / 2).max(min))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
            cap,
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // `without_max_times` makes the sequence endless; the fallback only guards the type.
        self.delays.next().unwrap_or(self.cap).min(self.cap)
    }

    /// Starts over at the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_under_the_cap_and_reset() {
        let (min, cap) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, cap);
        let first = b.next_delay();
        assert!(first >= min && first < min * 2, "{first:?}");
        let later: Vec<Duration> = (0..40).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= cap), "{later:?}");
        assert!(later[30..].iter().all(|d| *d >= cap / 2), "{later:?}");
        // Jitter: capped delays still differ from each other.
        assert!(later[30..].windows(2).any(|w| w[0] != w[1]), "{later:?}");
        b.reset();
        assert!(b.next_delay() < min * 2);
    }

    #[test]
    fn a_minimum_above_the_cap_is_lowered() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(1));
        assert!((0..10).all(|_| b.next_delay() <= Duration::from_secs(1)));
    }
}

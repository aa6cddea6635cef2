//! When the subscriber reconnects: the backoff between attempts, shaped for two failures.
//!
//! - **An outage** (Redis restarted, failed over, briefly unreachable): the first retries after
//!   a healthy connection is lost are capped at [`FAST_CAP`] for [`FAST_FOR`], so a replica is
//!   back about a second after Redis is; only a longer outage backs off towards
//!   `--bus-reconnect-max`.
//! - **A flapping Redis** (connections that are accepted, then dropped): the backoff starts over
//!   only after a connection stayed up for [`HEALTHY_AFTER`]. A subscribe that is lost sooner
//!   neither resets the delay nor starts a new outage, so the delays keep growing and a flapping
//!   server is not hammered.

use std::time::{Duration, Instant};

use crate::retry::Backoff;

/// A connection up this long was healthy: losing it starts a new outage with fresh delays.
pub(super) const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// How long after an outage began the retries stay capped at [`FAST_CAP`].
pub(super) const FAST_FOR: Duration = Duration::from_secs(30);

/// Longest delay between the first retries of an outage (unless `--bus-reconnect-min` is
/// longer).
pub(super) const FAST_CAP: Duration = Duration::from_secs(1);

/// The reconnect policy's state.
#[derive(Debug)]
pub(super) struct Reconnect {
    /// Exponential, jittered delays, from `--bus-reconnect-min` to `--bus-reconnect-max`.
    backoff: Backoff,
    /// The cap of the first retries: [`FAST_CAP`], or the minimum delay when longer.
    fast_cap: Duration,
    /// When the current outage began (the last healthy connection was lost, or the start).
    outage_since: Instant,
    /// When the current subscription came up, while it is up.
    up_since: Option<Instant>,
}

impl Reconnect {
    /// A policy whose first outage starts `now` (nothing is connected yet).
    pub(super) fn new(min: Duration, max: Duration, now: Instant) -> Reconnect {
        Reconnect {
            backoff: Backoff::new(min, max),
            fast_cap: FAST_CAP.max(min).min(max),
            outage_since: now,
            up_since: None,
        }
    }

    /// The subscription is up.
    pub(super) fn subscribed(&mut self, now: Instant) {
        self.up_since = Some(now);
    }

    /// The subscription was lost (or an attempt failed): the delay before the next attempt.
    pub(super) fn next_delay(&mut self, now: Instant) -> Duration {
        if let Some(up) = self.up_since.take()
            && now.saturating_duration_since(up) >= HEALTHY_AFTER
        {
            self.backoff.reset();
            self.outage_since = now;
        }
        let delay = self.backoff.next_delay();
        if now.saturating_duration_since(self.outage_since) >= FAST_FOR || delay <= self.fast_cap {
            return delay;
        }
        // Capped, but still spread (in [cap/2, cap)), so replicas that lost Redis together do
        // not retry in step: the backoff's own jittered delay picks the point.
        let half = self.fast_cap / 2;
        let spread = delay.as_nanos() % half.as_nanos().max(1);
        half + Duration::from_nanos(spread as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn the_first_retries_of_an_outage_are_capped_then_back_off() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(MIN, MAX, t0);
        r.subscribed(t0);
        let lost = t0 + HEALTHY_AFTER;
        let mut now = lost;
        let mut delays = Vec::new();
        while now < lost + FAST_FOR {
            let d = r.next_delay(now);
            delays.push(d);
            now += d;
        }
        assert!(delays.iter().all(|d| *d <= FAST_CAP), "{delays:?}");
        assert!(delays.len() > 20, "retried about every second: {delays:?}");
        let later = r.next_delay(now);
        assert!(later > FAST_CAP * 2, "a long outage backs off: {later:?}");
    }

    #[test]
    fn short_lived_connections_do_not_reset_the_backoff() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(MIN, MAX, t0);
        let mut now = t0 + FAST_FOR; // past the fast retries of the first outage
        let mut delays = Vec::new();
        for _ in 0..8 {
            r.subscribed(now);
            now += HEALTHY_AFTER / 2; // flapping: lost before it counts as healthy
            let d = r.next_delay(now);
            delays.push(d);
            now += d;
        }
        assert!(
            delays.windows(2).all(|w| w[1] >= w[0] || w[1] >= MAX / 2),
            "{delays:?}"
        );
        assert!(delays[7] >= MIN * 64, "still growing: {delays:?}");
        // A connection that stayed up resets it.
        r.subscribed(now);
        let d = r.next_delay(now + HEALTHY_AFTER);
        assert!(d < MIN * 2, "{d:?}");
    }

    #[test]
    fn a_minimum_above_the_fast_cap_is_kept() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(Duration::from_secs(5), MAX, t0);
        assert!(r.next_delay(t0) >= Duration::from_secs(5) / 2);
    }
}

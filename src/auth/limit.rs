//! Per-caller token buckets for state-changing RPCs. Coalescing already protects the engine
//! from a burst of reloads; this protects the database, the bus and the audit trail from a
//! caller stuck in a loop, without slowing other callers.
//!
//! A std `Mutex` over a small map: the critical section is a few arithmetic operations and is
//! never held across an await. The map is bounded: past [`MAX_CALLERS`] names, buckets that
//! have refilled (idle callers, indistinguishable from new ones) are forgotten first.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Most callers tracked at once.
pub const MAX_CALLERS: usize = 10_000;

/// Average rate and burst of one caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (0: no limit).
    pub per_second: f64,
    /// Bucket size: calls allowed at once.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by caller name.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: RateLimit,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// A limiter applying `limit` to every caller.
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            state: Mutex::new(State {
                limit,
                buckets: HashMap::new(),
            }),
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> RateLimit {
        self.lock().limit
    }

    /// Applies a new limit from now on (a config reload). Buckets keep their tokens, capped
    /// at the new burst, so a reload neither grants a fresh burst nor takes one away.
    pub fn set_limit(&self, limit: RateLimit) {
        let mut state = self.lock();
        let burst = f64::from(limit.burst.max(1));
        for bucket in state.buckets.values_mut() {
            bucket.tokens = bucket.tokens.min(burst);
        }
        state.limit = limit;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain map of numbers: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a token from `caller`'s bucket, or says how long until one is there.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let mut state = self.lock();
        let RateLimit { per_second, burst } = state.limit;
        if per_second <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        let buckets = &mut state.buckets;
        let refill = |b: &mut Bucket| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * per_second).min(burst);
            b.at = now;
        };
        let take = |b: &mut Bucket| {
            refill(b);
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(Duration::from_secs_f64((1.0 - b.tokens) / per_second))
            }
        };
        // A known caller: no allocation (the name is copied only the first time it is seen).
        if let Some(bucket) = buckets.get_mut(caller) {
            return take(bucket);
        }
        if buckets.len() >= MAX_CALLERS {
            buckets.retain(|_, b| {
                refill(b);
                b.tokens < burst
            });
            if buckets.len() >= MAX_CALLERS {
                // Every tracked caller is mid-burst: refuse newcomers rather than grow.
                return Err(Duration::from_secs_f64(1.0 / per_second));
            }
        }
        take(buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate_per_caller() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(limiter.check("ci"), Ok(()));
        }
        let wait = limiter.check("ci").expect_err("burst used up");
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(
            limiter.check("ops"),
            Ok(()),
            "other callers are not limited"
        );
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(limiter.check("ci").is_err(), "not yet refilled");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(limiter.check("ci"), Ok(()), "one token after 500 ms");
        assert!(limiter.check("ci").is_err());
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..3 {
            assert_eq!(limiter.check("ci"), Ok(()), "refills up to the burst only");
        }
        assert!(limiter.check("ci").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_limit_applies_at_once_without_a_fresh_burst() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 10,
        });
        for _ in 0..8 {
            assert_eq!(limiter.check("ci"), Ok(()));
        }
        limiter.set_limit(RateLimit {
            per_second: 0.5,
            burst: 1,
        });
        assert_eq!(limiter.check("ci"), Ok(()), "2 tokens left, capped at 1");
        assert_eq!(
            limiter.check("ci"),
            Err(Duration::from_secs(2)),
            "the new rate"
        );
        assert_eq!(limiter.check("new"), Ok(()));
        assert!(limiter.check("new").is_err(), "the new burst");
        limiter.set_limit(RateLimit {
            per_second: 0.0,
            burst: 1,
        });
        assert_eq!(limiter.check("ci"), Ok(()), "0: no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_rate_means_no_limit() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 1,
        });
        for _ in 0..1000 {
            assert_eq!(limiter.check("loop"), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_is_bounded_idle_callers_are_forgotten_first() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        });
        for i in 0..MAX_CALLERS {
            assert_eq!(limiter.check(&format!("c{i}")), Ok(()));
        }
        assert!(
            limiter.check("newcomer").is_err(),
            "all buckets are mid-burst"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            limiter.check("newcomer"),
            Ok(()),
            "refilled buckets were dropped"
        );
        assert!(limiter.lock().buckets.len() <= MAX_CALLERS);
    }
}

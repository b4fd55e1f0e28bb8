//! The token bucket: `capacity` tokens, refilled continuously at `rate_per_sec` (fractional
//! tokens), one taken per admitted request. Time is passed in, so tests are exact.

use std::time::{Duration, Instant};

use crate::client::{Decision, Limits};

/// One client's bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    pub limits: Limits,
    /// Current level, `0.0..=capacity`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last_refill: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self::with_tokens(limits, limits.capacity as f64, now)
    }

    /// A bucket at a given level (clamped into range), e.g. restored from disk.
    pub fn with_tokens(limits: Limits, tokens: f64, now: Instant) -> Self {
        Self {
            limits,
            tokens: clamp(tokens, limits.capacity),
            last_refill: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> Decision {
        let decision = self.check(1, now);
        if decision.allowed {
            self.take_checked(1)
        } else {
            decision
        }
    }

    /// Whether `cost` tokens are there now, taking nothing: what [`Self::take_checked`] would
    /// leave, or, refused, how long until they are. A cost above the capacity is never allowed.
    pub fn check(&mut self, cost: u32, now: Instant) -> Decision {
        self.refill(now);
        let allowed = self.tokens >= f64::from(cost);
        let left = if allowed {
            self.tokens - f64::from(cost)
        } else {
            self.tokens
        };
        Decision {
            allowed,
            remaining: left.floor() as u64,
            retry_after: self.until(f64::from(cost.max(1))),
        }
    }

    /// Takes `cost` tokens that [`Self::check`] just found there.
    pub fn take_checked(&mut self, cost: u32) -> Decision {
        self.tokens = (self.tokens - f64::from(cost)).max(0.0);
        Decision {
            allowed: true,
            remaining: self.tokens.floor() as u64,
            retry_after: self.until(1.0),
        }
    }

    /// The level now, without taking anything.
    pub fn tokens(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Whether the bucket is full at `now` (a full bucket of an unknown client carries no
    /// information and can be dropped).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.tokens(now) >= self.limits.capacity as f64
    }

    /// New limits take effect at once: a lowered capacity clamps the tokens, a raised one does
    /// not refill.
    pub fn set_limits(&mut self, limits: Limits, now: Instant) {
        self.refill(now);
        self.limits = limits;
        self.tokens = clamp(self.tokens, limits.capacity);
    }

    /// Credits `elapsed` of refill (time the balancer was down), capped at capacity.
    pub fn credit(&mut self, elapsed: Duration) {
        let refill = elapsed.as_secs_f64() * self.limits.rate_per_sec;
        self.tokens = clamp(self.tokens + refill, self.limits.capacity);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_refill);
        self.last_refill = self.last_refill.max(now);
        self.credit(elapsed);
    }

    /// Until `wanted` tokens are there, rounded up to the microsecond so that waiting exactly
    /// this long is always enough (zero when they are).
    fn until(&self, wanted: f64) -> Duration {
        if self.tokens >= wanted {
            Duration::ZERO
        } else {
            let micros = (wanted - self.tokens) / self.limits.rate_per_sec * 1e6;
            Duration::from_micros(micros.ceil() as u64)
        }
    }
}

fn clamp(tokens: f64, capacity: u64) -> f64 {
    tokens.clamp(0.0, capacity as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(capacity: u64, rate_per_sec: f64) -> Limits {
        Limits::new(capacity, rate_per_sec)
    }

    /// A fresh bucket admits exactly its capacity at once, then says how long to wait.
    #[test]
    fn admits_a_burst_of_capacity_then_refuses() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(limits(5, 2.0), now);
        for left in (0..5).rev() {
            let d = bucket.try_take(now);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let refused = bucket.try_take(now);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert!(bucket.try_take(now + Duration::from_millis(500)).allowed);
    }

    /// Lowering capacity clamps the level; raising it does not refill.
    #[test]
    fn limit_changes_clamp_but_never_refill() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(limits(10, 1.0), now);
        bucket.set_limits(limits(3, 1.0), now);
        assert_eq!(bucket.tokens(now), 3.0);
        bucket.set_limits(limits(100, 1.0), now);
        assert_eq!(bucket.tokens(now), 3.0);
    }

    /// Downtime is credited at the refill rate, capped at capacity.
    #[test]
    fn credit_is_capped_at_capacity() {
        let now = Instant::now();
        let mut bucket = TokenBucket::with_tokens(limits(10, 2.0), 1.0, now);
        bucket.credit(Duration::from_secs(2));
        assert_eq!(bucket.tokens(now), 5.0);
        bucket.credit(Duration::from_secs(3600));
        assert_eq!(bucket.tokens(now), 10.0);
    }

    proptest! {
        /// Tokens stay within 0..=capacity whatever the sequence of requests and pauses.
        #[test]
        fn tokens_stay_in_range(capacity in 1u64..1000, rate in 0.01f64..1000.0,
                                steps in proptest::collection::vec(0u64..5000, 1..200)) {
            let start = Instant::now();
            let mut bucket = TokenBucket::new(limits(capacity, rate), start);
            let mut now = start;
            for step in steps {
                now += Duration::from_millis(step);
                bucket.try_take(now);
                let level = bucket.tokens(now);
                prop_assert!((0.0..=capacity as f64).contains(&level));
            }
        }

        /// Over any t seconds a fresh bucket admits at most capacity + rate × t.
        #[test]
        fn admits_at_most_capacity_plus_refill(capacity in 1u64..200, rate in 0.1f64..200.0,
                                                gaps in proptest::collection::vec(0u64..50, 1..500)) {
            let start = Instant::now();
            let mut bucket = TokenBucket::new(limits(capacity, rate), start);
            let mut now = start;
            let mut admitted = 0u64;
            for gap in gaps {
                now += Duration::from_millis(gap);
                admitted += u64::from(bucket.try_take(now).allowed);
            }
            let bound = capacity as f64 + rate * (now - start).as_secs_f64();
            prop_assert!(admitted as f64 <= bound + 1e-6, "{} > {}", admitted, bound);
        }

        /// A refused client that waits retry_after is admitted.
        #[test]
        fn waiting_retry_after_is_enough(capacity in 1u64..50, rate in 0.01f64..100.0, extra in 0u64..5) {
            let now = Instant::now();
            let mut bucket = TokenBucket::new(limits(capacity, rate), now);
            for _ in 0..capacity + extra {
                bucket.try_take(now);
            }
            let refused = bucket.try_take(now);
            prop_assert!(!refused.allowed);
            prop_assert!(bucket.try_take(now + refused.retry_after).allowed);
        }
    }
}

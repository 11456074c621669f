//! Token buckets for rate limits (shares per session; registrations and
//! unproven sessions' verifications per source address).

/// A time this much earlier than the last is the wall clock stepping back,
/// not callers out of order.
pub(crate) const CLOCK_STEP_MS: u64 = 2_000;

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// Full bucket holding `capacity` tokens, refilled at `per_sec`.
    pub(crate) fn new(capacity: f64, per_sec: f64, now_ms: u64) -> Self {
        TokenBucket { capacity, per_sec, tokens: capacity, last_ms: now_ms }
    }

    /// Whether the bucket has refilled to capacity by `now_ms` (an idle
    /// bucket, equivalent to a new one: safe to forget).
    pub(crate) fn is_full(&self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens + elapsed * self.per_sec >= self.capacity
    }

    /// The tokens there by `now_ms`.
    pub(crate) fn level(&self, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        (self.tokens + elapsed * self.per_sec).min(self.capacity)
    }

    /// The part of its capacity the bucket holds by `now_ms`.
    pub(crate) fn fullness(&self, now_ms: u64) -> f64 {
        self.level(now_ms) / self.capacity.max(f64::MIN_POSITIVE)
    }

    /// Whether a token is there by `now_ms` (taking none), or how many
    /// seconds until one is.
    pub(crate) fn has_token(&self, now_ms: u64) -> Result<(), u64> {
        let tokens = self.level(now_ms);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - tokens) / self.per_sec.max(1e-9)).ceil().max(1.0) as u64)
        }
    }

    /// Takes a token, or says how many seconds until one is available.
    pub(crate) fn try_take(&mut self, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        // The later of the two (callers' times a few milliseconds out of
        // order must not refill a gap twice), unless the wall clock stepped
        // back: then the refill goes on from the new time, instead of
        // stopping for the length of the step.
        if now_ms > self.last_ms || self.last_ms - now_ms > CLOCK_STEP_MS {
            self.last_ms = now_ms;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.per_sec.max(1e-9)).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wall clock stepped back an hour: the bucket refills at its rate
    /// from the new time on, rather than not at all for an hour.
    #[test]
    fn a_clock_stepped_back_does_not_stop_the_refill() {
        let hour = 3_600_000;
        let mut bucket = TokenBucket::new(2.0, 1.0, hour);
        assert!(bucket.try_take(hour).is_ok() && bucket.try_take(hour).is_ok());
        assert!(bucket.try_take(1_000).is_err(), "the step itself refills nothing");
        assert!(bucket.try_take(2_100).is_ok(), "a second later, a token");
    }

    /// Callers whose times come a little out of order get no refill twice.
    #[test]
    fn times_a_little_out_of_order_refill_nothing_twice() {
        let mut bucket = TokenBucket::new(1.0, 1.0, 0);
        assert!(bucket.try_take(0).is_ok());
        assert!(bucket.try_take(1_000).is_ok(), "a second's refill");
        assert!(bucket.try_take(500).is_err(), "an earlier time: nothing");
        assert!(bucket.try_take(1_600).is_err(), "the half second before it is not refilled again");
        assert!(bucket.try_take(2_000).is_ok(), "a second after the last refill");
    }

    #[test]
    fn allows_bursts_then_the_refill_rate() {
        let mut bucket = TokenBucket::new(3.0, 2.0, 0);
        assert!((0..3).all(|_| bucket.try_take(0).is_ok()));
        assert_eq!(bucket.try_take(0), Err(1));
        assert!(bucket.try_take(500).is_ok(), "half a second refills one token at 2/s");
        assert!(bucket.try_take(500).is_err());
        assert!(!bucket.is_full(500) && bucket.is_full(2000));
        assert_eq!(bucket.has_token(500), Err(1));
        assert_eq!((bucket.has_token(1000), bucket.has_token(1000)), (Ok(()), Ok(())), "looking takes nothing");
    }
}

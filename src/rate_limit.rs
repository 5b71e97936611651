//! Token buckets: a burst, then a steady rate. [`Buckets`] keeps one per key (a client address)
//! in a bounded table, for limits on what outsiders may do: when the table is full, keys idle
//! long enough to have refilled are forgotten (which changes nothing for them), and if none
//! are, new keys share one overflow bucket, so a flood of new keys can neither grow the table
//! nor get around the limit.
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Full, holding `burst` tokens, refilled at `per_second`.
    pub fn new(burst: f64, per_second: f64, now: Instant) -> Self {
        Self {
            burst,
            per_second,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token.
    pub fn wait(&self, now: Instant) -> Duration {
        let mut later = *self;
        later.refill(now);
        if later.tokens >= 1.0 || self.per_second <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - later.tokens) / self.per_second)
        }
    }

    /// Whether it would be full again by `now` (so forgetting it changes nothing).
    pub fn refilled(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.per_second
            >= self.burst
    }
}

pub struct Buckets<K> {
    burst: f64,
    per_second: f64,
    max_keys: usize,
    keys: HashMap<K, Bucket>,
    overflow: Bucket,
}

impl<K: Hash + Eq> Buckets<K> {
    pub fn new(burst: f64, per_second: f64, max_keys: usize) -> Self {
        Self {
            burst,
            per_second,
            max_keys,
            keys: HashMap::new(),
            overflow: Bucket::new(burst, per_second, Instant::now()),
        }
    }

    /// Takes a token from `key`'s bucket: `Ok`, or `Err(how long until the next one)`.
    pub fn take(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        if !self.keys.contains_key(&key) && self.keys.len() >= self.max_keys {
            self.keys.retain(|_, bucket| !bucket.refilled(now));
        }
        let (burst, per_second) = (self.burst, self.per_second);
        let bucket = if self.keys.len() < self.max_keys || self.keys.contains_key(&key) {
            self.keys
                .entry(key)
                .or_insert_with(|| Bucket::new(burst, per_second, now))
        } else {
            &mut self.overflow
        };
        if bucket.take(now) {
            Ok(())
        } else {
            Err(bucket.wait(now))
        }
    }

    pub fn tracked(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let mut buckets = Buckets::new(4.0, 2.0, 10);
        let now = Instant::now();
        let admitted = (0..10).filter(|_| buckets.take("a", now).is_ok()).count();
        assert_eq!(admitted, 4);
        assert_eq!(buckets.take("a", now), Err(Duration::from_millis(500)));
        assert!(
            buckets.take("b", now).is_ok(),
            "another key has its own bucket"
        );
        let later = now + Duration::from_secs(1);
        let refilled = (0..10).filter(|_| buckets.take("a", later).is_ok()).count();
        assert_eq!(refilled, 2);
    }

    #[test]
    fn new_keys_past_the_table_share_one_bucket() {
        let mut buckets = Buckets::new(2.0, 1.0, 100);
        let now = Instant::now();
        let admitted = (0..1000u32)
            .filter(|k| buckets.take(*k, now).is_ok())
            .count();
        assert!(buckets.tracked() <= 100);
        assert_eq!(
            admitted,
            100 + 2,
            "100 tracked keys, then the shared overflow bucket"
        );
        // Keys that have refilled are forgotten to make room.
        let later = now + Duration::from_secs(10);
        assert!(buckets.take(5000, later).is_ok());
        assert_eq!(buckets.tracked(), 1);
    }
}

//! Login throttling: after `max_failures` failed logins for one username within `window`,
//! further attempts are refused until the oldest failure leaves the window.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl LoginLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Arc::default(),
        }
    }

    /// `Err(seconds to wait)` when `username` is locked out now.
    pub fn check(&self, username: &str) -> Result<(), u64> {
        self.check_at(username, Instant::now())
    }

    pub fn record_failure(&self, username: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(username.to_owned()).or_default();
        Self::prune(entry, now, self.window);
        entry.push_back(now);
        // Forget usernames nobody is hammering, so the map can't grow without bound.
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, q| {
                Self::prune(q, now, window);
                !q.is_empty()
            });
        }
    }

    pub fn record_success(&self, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(username);
    }

    fn check_at(&self, username: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = map.get_mut(username) else {
            return Ok(());
        };
        Self::prune(entry, now, self.window);
        if entry.len() < self.max_failures {
            return Ok(());
        }
        let oldest = entry.front().copied().unwrap_or(now);
        let wait = (oldest + self.window).saturating_duration_since(now);
        Err(wait.as_secs().max(1))
    }

    fn prune(entry: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while entry
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            entry.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_unlocks_after_window() {
        let limiter = LoginLimiter::new(2, Duration::from_millis(50));
        assert!(limiter.check("ann").is_ok());
        limiter.record_failure("ann");
        limiter.record_failure("ann");
        assert!(limiter.check("ann").is_err());
        assert!(limiter.check("bob").is_ok());
        assert!(limiter
            .check_at("ann", Instant::now() + Duration::from_millis(60))
            .is_ok());
    }

    #[test]
    fn success_clears_failures() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        limiter.record_failure("ann");
        limiter.record_success("ann");
        limiter.record_failure("ann");
        assert!(limiter.check("ann").is_ok());
    }
}

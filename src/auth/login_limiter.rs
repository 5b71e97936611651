//! Password throttling, per username: at most `max_failures` password checks that failed or are
//! still running within `window`. Counting the checks in flight, not only the finished failures,
//! is what stops N parallel wrong passwords from all reaching bcrypt before the first one fails.
//! Every path that checks a password (login, password change, account deletion) takes an
//! [`Attempt`] here first, under the account's username. (How checks from different client
//! addresses share the bcrypt threads is the hasher's business: see `password.rs`.)
use super::password::PasswordHasher;
use crate::error::{AppError, ErrorCode};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Usernames tracked before the idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Clone)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    book: Arc<Mutex<HashMap<String, Record>>>,
}

#[derive(Default)]
struct Record {
    failures: VecDeque<Instant>,
    in_flight: usize,
}

/// One password check under way. Settle it with [`Attempt::failed`] or
/// [`Attempt::succeeded`]; dropped unsettled (the client went away, or an error), it counts
/// as a failure, so abandoning checks is no way around the limit.
#[must_use]
pub struct Attempt {
    limiter: LoginLimiter,
    username: String,
    settled: bool,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Failed,
    Succeeded,
    NotChecked,
}

impl LoginLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            book: Arc::default(),
        }
    }

    fn book(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A password check for `username` may start, or `Err(seconds to wait)`.
    pub fn begin(&self, username: &str) -> Result<Attempt, u64> {
        self.begin_at(username, Instant::now())
    }

    fn begin_at(&self, username: &str, now: Instant) -> Result<Attempt, u64> {
        let mut book = self.book();
        let accounts = &mut *book;
        if accounts.len() >= MAX_TRACKED && !accounts.contains_key(username) {
            let window = self.window;
            accounts.retain(|_, r| {
                prune(&mut r.failures, now, window);
                r.in_flight > 0 || !r.failures.is_empty()
            });
        }
        let record = accounts.entry(username.to_owned()).or_default();
        prune(&mut record.failures, now, self.window);
        if record.failures.len() + record.in_flight >= self.max_failures {
            let wait = match record.failures.front() {
                Some(oldest) => (*oldest + self.window).saturating_duration_since(now),
                // Only checks in flight: they finish within a second or so.
                None => Duration::from_secs(1),
            };
            return Err(wait.as_secs().max(1));
        }
        record.in_flight += 1;
        Ok(Attempt {
            limiter: self.clone(),
            username: username.to_owned(),
            settled: false,
        })
    }

    /// Checks `password` for the account `username` against `hash` within the limit:
    /// `Ok(false)` for a wrong password, 429 `rate_limited` (with Retry-After) over the limit.
    pub async fn verify(
        &self,
        hasher: &PasswordHasher,
        username: &str,
        client: Option<IpAddr>,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, AppError> {
        let attempt = self.begin(username).map_err(|wait| {
            let mut err = AppError::new(
                ErrorCode::RateLimited,
                format!("too many failed password attempts for this account; retry in {wait} s"),
            );
            err.retry_after = Some(wait);
            err
        })?;
        let ok = match hasher.verify(password, hash, client).await {
            Ok(ok) => ok,
            // Not checked (the queue was full, or hashing broke): not the client's failure.
            Err(err) => {
                attempt.not_checked();
                return Err(err);
            }
        };
        if ok {
            attempt.succeeded();
        } else {
            attempt.failed();
        }
        Ok(ok)
    }

    fn settle(&self, username: &str, outcome: Outcome) {
        let mut book = self.book();
        let Some(record) = book.get_mut(username) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => record.failures.push_back(Instant::now()),
            Outcome::Succeeded => record.failures.clear(),
            Outcome::NotChecked => {}
        }
        if record.in_flight == 0 && record.failures.is_empty() {
            book.remove(username);
        }
    }
}

impl Attempt {
    pub fn failed(mut self) {
        self.settle(Outcome::Failed);
    }

    pub fn succeeded(mut self) {
        self.settle(Outcome::Succeeded);
    }

    /// The password was never checked (the server could not): nothing is counted.
    pub fn not_checked(mut self) {
        self.settle(Outcome::NotChecked);
    }

    fn settle(&mut self, outcome: Outcome) {
        self.settled = true;
        self.limiter.settle(&self.username, outcome);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.settle(&self.username, Outcome::Failed);
        }
    }
}

fn prune(failures: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while failures
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_unlocks_after_window() {
        let limiter = LoginLimiter::new(2, Duration::from_millis(50));
        limiter.begin("ann").unwrap().failed();
        limiter.begin("ann").unwrap().failed();
        assert!(limiter.begin("ann").is_err());
        assert!(limiter.begin("bob").is_ok());
        assert!(limiter
            .begin_at("ann", Instant::now() + Duration::from_millis(60))
            .is_ok());
    }

    #[test]
    fn checks_in_flight_count_against_the_limit() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let running: Vec<Attempt> = (0..3).map(|_| limiter.begin("ann").unwrap()).collect();
        assert_eq!(limiter.begin("ann").err(), Some(1));
        drop(running);
        assert!(
            limiter.begin("ann").is_err(),
            "abandoned checks count as failures"
        );
    }

    #[test]
    fn success_clears_failures() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        limiter.begin("ann").unwrap().failed();
        limiter.begin("ann").unwrap().succeeded();
        limiter.begin("ann").unwrap().failed();
        assert!(limiter.begin("ann").is_ok());
    }

    #[test]
    fn checks_the_server_could_not_run_count_for_nothing() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        for _ in 0..5 {
            limiter.begin("ann").unwrap().not_checked();
        }
        assert!(limiter.begin("ann").is_ok());
    }
}

//! Password throttling, per username: at most `max_failures` password checks that failed or are
//! still running within `window`. Counting the checks in flight, not only the finished failures,
//! is what stops N parallel wrong passwords from all reaching bcrypt before the first one fails.
//! Every path that checks a password (login, password change, account deletion) takes an
//! [`Attempt`] here first, under the account's username and the client's address.
//!
//! Per client address, at most [`MAX_IN_FLIGHT_PER_CLIENT`] checks run or wait at once, over
//! all accounts: a flood from one address holds only that many places in the bcrypt queue, so
//! other people's logins don't wait behind it.
use super::password::PasswordHasher;
use crate::error::{AppError, ErrorCode};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Usernames tracked before the idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;
/// Password checks one client address may have running or waiting at once.
pub const MAX_IN_FLIGHT_PER_CLIENT: usize = 4;

#[derive(Clone)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    book: Arc<Mutex<Book>>,
}

#[derive(Default)]
struct Book {
    accounts: HashMap<String, Record>,
    /// Checks in flight per client address; an address leaves when its count is back to 0,
    /// so this holds at most one entry per check in flight.
    clients: HashMap<IpAddr, usize>,
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
    client: Option<IpAddr>,
    settled: bool,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Failed,
    Succeeded,
    NotChecked,
}

/// Why a password check may not start now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many failed or running checks for the account: retry in this many seconds.
    Account(u64),
    /// Too many checks from this client address at once.
    Client,
}

impl LoginLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            book: Arc::default(),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A password check for `username` from `client` may start, or why not.
    pub fn begin(&self, username: &str, client: Option<IpAddr>) -> Result<Attempt, Refused> {
        self.begin_at(username, client, Instant::now())
    }

    fn begin_at(
        &self,
        username: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Refused> {
        let mut book = self.book();
        if let Some(ip) = client {
            if book.clients.get(&ip).copied().unwrap_or(0) >= MAX_IN_FLIGHT_PER_CLIENT {
                return Err(Refused::Client);
            }
        }
        let accounts = &mut book.accounts;
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
            return Err(Refused::Account(wait.as_secs().max(1)));
        }
        record.in_flight += 1;
        if let Some(ip) = client {
            *book.clients.entry(ip).or_default() += 1;
        }
        Ok(Attempt {
            limiter: self.clone(),
            username: username.to_owned(),
            client,
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
        let attempt = self.begin(username, client).map_err(|refused| {
            let (message, wait) = match refused {
                Refused::Account(wait) => (
                    format!(
                        "too many failed password attempts for this account; retry in {wait} s"
                    ),
                    wait,
                ),
                Refused::Client => (
                    "too many password checks from this address at once; retry shortly".to_owned(),
                    1,
                ),
            };
            let mut err = AppError::new(ErrorCode::RateLimited, message);
            err.retry_after = Some(wait);
            err
        })?;
        let ok = match hasher.verify(password, hash).await {
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

    fn settle(&self, username: &str, client: Option<IpAddr>, outcome: Outcome) {
        let mut book = self.book();
        if let Some(ip) = client {
            if let Some(count) = book.clients.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    book.clients.remove(&ip);
                }
            }
        }
        let Some(record) = book.accounts.get_mut(username) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => record.failures.push_back(Instant::now()),
            Outcome::Succeeded => record.failures.clear(),
            Outcome::NotChecked => {}
        }
        if record.in_flight == 0 && record.failures.is_empty() {
            book.accounts.remove(username);
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
        self.limiter.settle(&self.username, self.client, outcome);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter
                .settle(&self.username, self.client, Outcome::Failed);
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
        limiter.begin("ann", None).unwrap().failed();
        limiter.begin("ann", None).unwrap().failed();
        assert!(limiter.begin("ann", None).is_err());
        assert!(limiter.begin("bob", None).is_ok());
        assert!(limiter
            .begin_at("ann", None, Instant::now() + Duration::from_millis(60))
            .is_ok());
    }

    #[test]
    fn checks_in_flight_count_against_the_limit() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let running: Vec<Attempt> = (0..3)
            .map(|_| limiter.begin("ann", None).unwrap())
            .collect();
        assert_eq!(limiter.begin("ann", None).err(), Some(Refused::Account(1)));
        drop(running);
        assert!(
            limiter.begin("ann", None).is_err(),
            "abandoned checks count as failures"
        );
    }

    #[test]
    fn success_clears_failures() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        limiter.begin("ann", None).unwrap().failed();
        limiter.begin("ann", None).unwrap().succeeded();
        limiter.begin("ann", None).unwrap().failed();
        assert!(limiter.begin("ann", None).is_ok());
    }

    #[test]
    fn checks_the_server_could_not_run_count_for_nothing() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        for _ in 0..5 {
            limiter.begin("ann", None).unwrap().not_checked();
        }
        assert!(limiter.begin("ann", None).is_ok());
    }

    #[test]
    fn one_address_holds_at_most_a_few_checks_at_once() {
        let limiter = LoginLimiter::new(100, Duration::from_secs(60));
        let flood: IpAddr = "198.51.100.1".parse().unwrap();
        let running: Vec<Attempt> = (0..MAX_IN_FLIGHT_PER_CLIENT)
            .map(|i| limiter.begin(&format!("user{i}"), Some(flood)).unwrap())
            .collect();
        assert_eq!(
            limiter.begin("another", Some(flood)).err(),
            Some(Refused::Client)
        );
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(limiter.begin("another", Some(other)).is_ok());
        drop(running);
        assert!(limiter.begin("another", Some(flood)).is_ok());
        assert!(limiter.book().clients.len() <= 1);
    }
}

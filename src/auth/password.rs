//! bcrypt hashing on its own bounded set of threads: at most `concurrency` hashes run at once,
//! so a flood of logins waits its turn instead of starving everything else, and those threads
//! run at a lower CPU priority, so that on a busy machine signaling and presence come first.
//! At most `queue_limit` jobs wait for a thread; past that a request gets 503 `overloaded` at
//! once, and a job whose client has gone while it waited is dropped unhashed.
//! bcrypt is the one CPU-heavy thing the broker does: at normal priority two hashes on a
//! two-core machine pushed relay latency p99 from 0.5 ms to 30 ms (docs/benchmarks.md).
use crate::error::{AppError, ErrorCode, StartupError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// The hashing threads' nice value: when the CPU is contended they get roughly a tenth of the
/// share of a normal thread; when it is idle they run at full speed.
const HASHING_NICENESS: i32 = 10;

/// bcrypt reads at most this many bytes of a password.
pub const MAX_PASSWORD_BYTES: usize = 72;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    /// Hashing jobs for the bcrypt threads, which stop once every clone of this is dropped.
    jobs: mpsc::Sender<Job>,
    /// Jobs sent but not started yet, and how many may be.
    waiting: Arc<AtomicUsize>,
    queue_limit: usize,
    /// Verified against when the user doesn't exist, so both failures take the same time.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(cost: u32, concurrency: usize, queue_limit: usize) -> Result<Self, StartupError> {
        let dummy =
            bcrypt::hash("switchboard-dummy-password", cost).map_err(StartupError::Bcrypt)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..concurrency.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || hashing_thread(&queue))
                .map_err(|source| StartupError::Io {
                    what: "the bcrypt threads",
                    source,
                })?;
        }
        Ok(Self {
            cost,
            jobs,
            waiting: Arc::default(),
            queue_limit,
            dummy_hash: dummy.into(),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        let cost = self.cost;
        self.bounded(move || bcrypt::hash(password, cost).map_err(AppError::internal))
            .await
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is none. A
    /// password longer than bcrypt's 72-byte input never matches: bcrypt would check only its
    /// first 72 bytes, so `"A" * 72 + anything` would pass for a password of 72 A's.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, AppError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .bounded(move || Ok(bcrypt::verify(password, &hash).unwrap_or(false)))
            .await?;
        Ok(ok && real)
    }

    async fn bounded<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let mut err = AppError::new(
                ErrorCode::Overloaded,
                "too many password checks are waiting; retry shortly",
            );
            err.retry_after = Some(1);
            return Err(err);
        }
        let (done, result) = oneshot::channel();
        let waiting = self.waiting.clone();
        let job: Job = Box::new(move || {
            waiting.fetch_sub(1, Ordering::SeqCst);
            // The request was dropped (its client went away) while this waited.
            if done.is_closed() {
                return;
            }
            let _ = done.send(f());
        });
        if self.jobs.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(AppError::internal("the bcrypt threads are gone"));
        }
        result.await.map_err(AppError::internal)?
    }
}

/// Runs hashing jobs, one at a time, until every PasswordHasher is dropped.
fn hashing_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    // On Linux this renices the calling thread only. Raising niceness needs no privilege; should
    // it fail anyway, hashing runs at normal priority, as it did before.
    // SAFETY: setpriority changes nothing but this thread's scheduling priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICENESS);
    }
    loop {
        // The lock is released before the job runs, so the other threads can take the next one.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panicking hash fails its own request (its sender is dropped) and nothing else.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// Occupies the only bcrypt thread until `release` is sent.
    async fn occupy(hasher: &PasswordHasher) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let busy = hasher.clone();
        tokio::spawn(async move {
            let _ = busy
                .bounded(move || {
                    let _ = started.send(());
                    let _ = wait.recv();
                    Ok(())
                })
                .await;
        });
        running.await.expect("the job runs");
        release
    }

    #[tokio::test]
    async fn jobs_past_the_queue_limit_are_refused_and_abandoned_ones_never_run() {
        let hasher = PasswordHasher::new(4, 1, 2).expect("hasher");
        let release = occupy(&hasher).await;

        let ran = Arc::new(AtomicBool::new(false));
        let abandoned = {
            let (hasher, ran) = (hasher.clone(), ran.clone());
            tokio::spawn(async move {
                hasher
                    .bounded(move || {
                        ran.store(true, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            })
        };
        let waiting = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.bounded(|| Ok(7)).await })
        };
        while hasher.waiting.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = hasher.bounded(|| Ok(())).await.expect_err("over the limit");
        assert_eq!(
            (refused.code, refused.retry_after),
            (ErrorCode::Overloaded, Some(1))
        );

        abandoned.abort();
        let _ = abandoned.await;
        release.send(()).expect("release");
        assert_eq!(waiting.await.expect("joined").expect("hashed"), 7);
        assert!(!ran.load(Ordering::SeqCst), "an abandoned job was run");
        assert_eq!(hasher.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn passwords_longer_than_bcrypt_reads_never_match() {
        let hasher = PasswordHasher::new(4, 1, 8).expect("hasher");
        let hash = hasher.hash("A".repeat(72)).await.expect("hash");
        assert!(hasher
            .verify("A".repeat(72), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("A".repeat(73), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify(format!("{}anything", "A".repeat(72)), Some(hash))
            .await
            .unwrap());
    }
}

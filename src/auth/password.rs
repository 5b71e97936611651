//! bcrypt hashing on its own bounded set of threads: at most `concurrency` hashes run at once,
//! so a flood of logins waits its turn instead of starving everything else, and those threads
//! run at a lower CPU priority, so that on a busy machine signaling and presence come first.
//! bcrypt is the one CPU-heavy thing the broker does: at normal priority two hashes on a
//! two-core machine pushed relay latency p99 from 0.5 ms to 30 ms (docs/benchmarks.md).
//!
//! Jobs wait in one queue per client address, and the threads take them round robin, so a
//! flood from one address delays another client's login by about one hash, not by the whole
//! flood. At most `queue_limit` jobs wait in all, and [`PER_CLIENT_WAITING`] per address; past
//! either a request gets 503 `overloaded` at once. A job whose client has gone while it waited
//! is dropped unhashed.
use crate::error::{AppError, ErrorCode, StartupError};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// The hashing threads' nice value: when the CPU is contended they get roughly a tenth of the
/// share of a normal thread; when it is idle they run at full speed.
const HASHING_NICENESS: i32 = 10;

/// bcrypt reads at most this many bytes of a password.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Jobs one client address may have waiting at once.
pub const PER_CLIENT_WAITING: usize = 32;

type Job = Box<dyn FnOnce() + Send>;

/// The waiting jobs, by client address (`None`: the address is unknown), and the order in
/// which addresses with jobs get their next turn.
#[derive(Default)]
struct Queue {
    jobs: HashMap<Option<IpAddr>, VecDeque<Job>>,
    turns: VecDeque<Option<IpAddr>>,
    waiting: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Closes the queue (the threads finish what they hold and stop) once the last
/// [`PasswordHasher`] is dropped.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.queue().closed = true;
        self.0.ready.notify_all();
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
    queue_limit: usize,
    /// Verified against when the user doesn't exist, so both failures take the same time.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(cost: u32, concurrency: usize, queue_limit: usize) -> Result<Self, StartupError> {
        let dummy =
            bcrypt::hash("switchboard-dummy-password", cost).map_err(StartupError::Bcrypt)?;
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            ready: Condvar::new(),
        });
        for n in 0..concurrency.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || hashing_thread(&shared))
                .map_err(|source| StartupError::Io {
                    what: "the bcrypt threads",
                    source,
                })?;
        }
        Ok(Self {
            cost,
            _owner: Arc::new(Owner(shared.clone())),
            shared,
            queue_limit,
            dummy_hash: dummy.into(),
        })
    }

    /// Hashes a new password for a request from `client`.
    pub async fn hash(&self, password: String, client: Option<IpAddr>) -> Result<String, AppError> {
        let cost = self.cost;
        self.bounded(client, move || {
            bcrypt::hash(password, cost).map_err(AppError::internal)
        })
        .await
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is none. A
    /// password longer than bcrypt's 72-byte input never matches: bcrypt would check only its
    /// first 72 bytes, so `"A" * 72 + anything` would pass for a password of 72 A's.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
        client: Option<IpAddr>,
    ) -> Result<bool, AppError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .bounded(client, move || {
                Ok(bcrypt::verify(password, &hash).unwrap_or(false))
            })
            .await?;
        Ok(ok && real)
    }

    async fn bounded<T: Send + 'static>(
        &self,
        client: Option<IpAddr>,
        f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The request was dropped (its client went away) while this waited.
            if done.is_closed() {
                return;
            }
            let _ = done.send(f());
        });
        {
            let mut queue = self.shared.queue();
            let mine = queue.jobs.get(&client).map_or(0, VecDeque::len);
            if queue.waiting >= self.queue_limit || mine >= PER_CLIENT_WAITING {
                let mut err = AppError::new(
                    ErrorCode::Overloaded,
                    "too many password checks are waiting; retry shortly",
                );
                err.retry_after = Some(1);
                return Err(err);
            }
            if mine == 0 {
                queue.turns.push_back(client);
            }
            queue.jobs.entry(client).or_default().push_back(job);
            queue.waiting += 1;
            crate::metrics::get().bcrypt_queue.inc();
        }
        self.shared.ready.notify_one();
        result.await.map_err(AppError::internal)?
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.shared.queue().waiting
    }
}

/// Runs jobs, one at a time, taking the next client address's turn each time, until the queue
/// is closed.
fn hashing_thread(shared: &Shared) {
    // On Linux this renices the calling thread only. Raising niceness needs no privilege; should
    // it fail anyway, hashing runs at normal priority, as it did before.
    // SAFETY: setpriority changes nothing but this thread's scheduling priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICENESS);
    }
    loop {
        let job = {
            let mut queue = shared.queue();
            while queue.waiting == 0 && !queue.closed {
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            if queue.waiting == 0 {
                return;
            }
            next_job(&mut queue)
        };
        // The lock is released before the job runs, so the other threads can take the next one.
        // A panicking hash fails its own request (its sender is dropped) and nothing else.
        if let Some(job) = job {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }
}

/// The first job of the client whose turn it is; that client goes to the back of the line if
/// it has more.
fn next_job(queue: &mut Queue) -> Option<Job> {
    let client = queue.turns.pop_front()?;
    let jobs = queue.jobs.get_mut(&client)?;
    let job = jobs.pop_front();
    if jobs.is_empty() {
        queue.jobs.remove(&client);
    } else {
        queue.turns.push_back(client);
    }
    queue.waiting -= usize::from(job.is_some());
    crate::metrics::get()
        .bcrypt_queue
        .sub(i64::from(job.is_some()));
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Occupies the only bcrypt thread until `release` is sent.
    async fn occupy(hasher: &PasswordHasher) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let busy = hasher.clone();
        tokio::spawn(async move {
            let _ = busy
                .bounded(None, move || {
                    let _ = started.send(());
                    let _ = wait.recv();
                    Ok(())
                })
                .await;
        });
        running.await.expect("the job runs");
        release
    }

    async fn until_waiting(hasher: &PasswordHasher, n: usize) {
        while hasher.waiting() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
                    .bounded(None, move || {
                        ran.store(true, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            })
        };
        let waiting = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.bounded(None, || Ok(7)).await })
        };
        until_waiting(&hasher, 2).await;
        let refused = hasher
            .bounded(None, || Ok(()))
            .await
            .expect_err("over the limit");
        assert_eq!(
            (refused.code, refused.retry_after),
            (ErrorCode::Overloaded, Some(1))
        );

        abandoned.abort();
        let _ = abandoned.await;
        release.send(()).expect("release");
        assert_eq!(waiting.await.expect("joined").expect("hashed"), 7);
        assert!(!ran.load(Ordering::SeqCst), "an abandoned job was run");
        assert_eq!(hasher.waiting(), 0);
    }

    #[tokio::test]
    async fn clients_take_turns_so_a_flood_does_not_delay_another_address() {
        let hasher = PasswordHasher::new(4, 1, 64).expect("hasher");
        let release = occupy(&hasher).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let flood: IpAddr = "198.51.100.1".parse().unwrap();
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        let mut tasks = Vec::new();
        for (i, client) in [flood, flood, flood, flood, other].into_iter().enumerate() {
            let (job_hasher, order) = (hasher.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                job_hasher
                    .bounded(Some(client), move || {
                        order.lock().unwrap().push(i);
                        Ok(())
                    })
                    .await
            }));
            until_waiting(&hasher, i + 1).await;
        }
        release.send(()).expect("release");
        for task in tasks {
            task.await.expect("joined").expect("ran");
        }
        assert_eq!(
            *order.lock().unwrap(),
            [0, 4, 1, 2, 3],
            "the other address went second"
        );
    }

    #[tokio::test]
    async fn one_address_may_hold_only_its_share_of_the_queue() {
        let hasher = PasswordHasher::new(4, 1, 1000).expect("hasher");
        let release = occupy(&hasher).await;
        let flood: IpAddr = "198.51.100.1".parse().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..PER_CLIENT_WAITING {
            let hasher = hasher.clone();
            tasks.push(tokio::spawn(async move {
                hasher.bounded(Some(flood), || Ok(())).await
            }));
        }
        until_waiting(&hasher, PER_CLIENT_WAITING).await;
        let refused = hasher
            .bounded(Some(flood), || Ok(()))
            .await
            .expect_err("over its share");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        let served = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.bounded(Some(other), || Ok(1)).await })
        };
        release.send(()).expect("release");
        assert_eq!(served.await.expect("joined").expect("served"), 1);
        for task in tasks {
            task.await.expect("joined").expect("ran");
        }
    }

    #[tokio::test]
    async fn passwords_longer_than_bcrypt_reads_never_match() {
        let hasher = PasswordHasher::new(4, 1, 8).expect("hasher");
        let hash = hasher.hash("A".repeat(72), None).await.expect("hash");
        assert!(hasher
            .verify("A".repeat(72), Some(hash.clone()), None)
            .await
            .unwrap());
        assert!(!hasher
            .verify("A".repeat(73), Some(hash.clone()), None)
            .await
            .unwrap());
        assert!(!hasher
            .verify(format!("{}anything", "A".repeat(72)), Some(hash), None)
            .await
            .unwrap());
    }
}

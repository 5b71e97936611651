//! bcrypt hashing on its own bounded set of threads: at most `concurrency` hashes run at once,
//! so a flood of logins waits its turn instead of starving everything else, and those threads
//! run at a lower CPU priority, so that on a busy machine signaling and presence come first.
//! bcrypt is the one CPU-heavy thing the broker does: at normal priority two hashes on a
//! two-core machine pushed relay latency p99 from 0.5 ms to 30 ms (docs/benchmarks.md).
use crate::error::{AppError, StartupError};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// The hashing threads' nice value: when the CPU is contended they get roughly a tenth of the
/// share of a normal thread; when it is idle they run at full speed.
const HASHING_NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    /// Hashing jobs for the bcrypt threads, which stop once every clone of this is dropped.
    jobs: mpsc::Sender<Job>,
    /// Verified against when the user doesn't exist, so both failures take the same time.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(cost: u32, concurrency: usize) -> Result<Self, StartupError> {
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
            dummy_hash: dummy.into(),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        let cost = self.cost;
        self.bounded(move || bcrypt::hash(password, cost).map_err(AppError::internal))
            .await
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is none.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, AppError> {
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
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        self.jobs
            .send(job)
            .map_err(|_| AppError::internal("the bcrypt threads are gone"))?;
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

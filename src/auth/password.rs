//! bcrypt hashing, off the async workers and bounded: at most `concurrency` hashes run at once,
//! so a flood of logins waits its turn instead of starving everything else.
use crate::error::AppError;
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// Verified against when the user doesn't exist, so both failures take the same time.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(cost: u32, concurrency: usize) -> Result<Self, String> {
        let dummy = bcrypt::hash("switchboard-dummy-password", cost)
            .map_err(|e| format!("bcrypt setup failed: {e}"))?;
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
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
        let _permit = self.permits.acquire().await.map_err(AppError::internal)?;
        actix_web::web::block(f).await?
    }
}

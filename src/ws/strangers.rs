//! Sockets that have not authenticated yet cost memory and a descriptor while proving nothing,
//! so there may be at most `--ws-max-unauthenticated` of them in all and
//! `--ws-max-unauthenticated-per-address` from one client address. An upgrade past either is
//! refused before it happens (503 `overloaded` for the total, 429 `rate_limited` for one
//! address, both with Retry-After). A socket holds its [`Ticket`] until it authenticates or
//! closes.
use crate::error::{AppError, ErrorCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Count {
    total: usize,
    /// An address leaves when its count is back to 0: at most one entry per socket.
    per_address: HashMap<Option<IpAddr>, usize>,
}

#[derive(Clone)]
pub struct Strangers {
    count: Arc<Mutex<Count>>,
    max_total: usize,
    max_per_address: usize,
}

/// One unauthenticated socket's place; given back when dropped.
pub struct Ticket {
    count: Arc<Mutex<Count>>,
    address: Option<IpAddr>,
}

fn lock(count: &Mutex<Count>) -> MutexGuard<'_, Count> {
    count.lock().unwrap_or_else(|p| p.into_inner())
}

impl Strangers {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            count: Arc::default(),
            max_total,
            max_per_address,
        }
    }

    pub fn admit(&self, address: Option<IpAddr>) -> Result<Ticket, AppError> {
        let mut count = lock(&self.count);
        let mine = count.per_address.get(&address).copied().unwrap_or(0);
        let refusal = if count.total >= self.max_total {
            Some((
                ErrorCode::Overloaded,
                "too many sockets are waiting to authenticate",
            ))
        } else if mine >= self.max_per_address {
            Some((
                ErrorCode::RateLimited,
                "too many sockets from this address are waiting to authenticate",
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            let mut err = AppError::new(code, message);
            err.retry_after = Some(1);
            return Err(err);
        }
        count.total += 1;
        *count.per_address.entry(address).or_default() += 1;
        Ok(Ticket {
            count: self.count.clone(),
            address,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut count = lock(&self.count);
        count.total = count.total.saturating_sub(1);
        if let Some(mine) = count.per_address.get_mut(&self.address) {
            *mine -= 1;
            if *mine == 0 {
                count.per_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_address_and_in_all_and_given_back() {
        let strangers = Strangers::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let first = strangers.admit(Some(a)).unwrap();
        let _second = strangers.admit(Some(a)).unwrap();
        assert_eq!(
            strangers.admit(Some(a)).err().map(|e| e.code),
            Some(ErrorCode::RateLimited)
        );
        let _third = strangers.admit(Some(b)).unwrap();
        assert_eq!(
            strangers.admit(Some(b)).err().map(|e| e.code),
            Some(ErrorCode::Overloaded)
        );
        drop(first);
        assert!(strangers.admit(Some(b)).is_ok());
        assert_eq!(lock(&strangers.count).per_address.len(), 2);
    }
}

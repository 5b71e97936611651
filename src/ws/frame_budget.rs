//! Budgets for client frames: `rate` frames per second sustained, bursts up to twice that. One
//! per socket, and one per user shared by all their sockets ([`UserBudgets`]), so that ten
//! devices don't make ten times the allowance. A client that keeps exceeding either is
//! disconnected.
use crate::ids::UserId;
use crate::rate_limit::Bucket;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

pub struct FrameBudget(Bucket);

impl FrameBudget {
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self(Bucket::new(rate * 2.0, rate, Instant::now()))
    }

    /// Spends one frame; false when the budget is exhausted.
    pub fn take(&mut self) -> bool {
        self.0.take(Instant::now())
    }

    /// Whether it has refilled, so that a new one would be the same.
    pub fn is_full(&self) -> bool {
        self.0.refilled(Instant::now())
    }
}

/// A user's budget, shared by their sockets.
pub type SharedBudget = Arc<Mutex<FrameBudget>>;

/// Every active user's shared budget. An entry lives as long as one of the user's sockets
/// holds it (sockets let go of a budget once it has refilled); dead entries are swept when the table has doubled since the last sweep.
pub struct UserBudgets {
    rate: u32,
    table: Mutex<Table>,
}

struct Table {
    budgets: HashMap<UserId, Weak<Mutex<FrameBudget>>>,
    /// Sweep dead entries once the table has grown to this size.
    sweep_at: usize,
}

impl UserBudgets {
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            table: Mutex::new(Table {
                budgets: HashMap::new(),
                sweep_at: 64,
            }),
        }
    }

    /// `user`'s budget, made on their first socket.
    pub fn of(&self, user: &UserId) -> SharedBudget {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = table.budgets.get(user).and_then(Weak::upgrade) {
            return live;
        }
        if table.budgets.len() >= table.sweep_at {
            table.budgets.retain(|_, budget| budget.strong_count() > 0);
            table.sweep_at = (table.budgets.len() * 2).max(64);
        }
        let budget = Arc::new(Mutex::new(FrameBudget::new(self.rate)));
        table.budgets.insert(user.clone(), Arc::downgrade(&budget));
        budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_a_burst_of_twice_its_rate() {
        let mut budget = FrameBudget::new(10);
        assert_eq!((0..100).filter(|_| budget.take()).count(), 20);
    }

    #[test]
    fn a_budget_is_full_until_spent() {
        let mut budget = FrameBudget::new(10);
        assert!(budget.is_full());
        assert!(budget.take());
        assert!(!budget.is_full(), "a frame was just spent");
    }

    #[test]
    fn a_users_sockets_share_one_budget_and_it_goes_with_the_last() {
        let budgets = UserBudgets::new(10);
        let amy = UserId::from("amy");
        let (phone, laptop) = (budgets.of(&amy), budgets.of(&amy));
        let spent = (0..30)
            .filter(|i| {
                let device = if i % 2 == 0 { &phone } else { &laptop };
                device.lock().unwrap().take()
            })
            .count();
        assert_eq!(spent, 20, "two devices, one burst");
        drop((phone, laptop));
        let fresh = budgets.of(&amy);
        assert!(
            fresh.lock().unwrap().take(),
            "a new budget once the old sockets are gone"
        );
    }
}

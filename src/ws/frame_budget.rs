//! A token bucket for client frames: `rate` frames per second sustained, bursts up to twice
//! that. A client that keeps exceeding it is disconnected.
use std::time::Instant;

pub struct FrameBudget {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

impl FrameBudget {
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            refilled: Instant::now(),
        }
    }

    /// Spends one frame; false when the budget is exhausted.
    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_bursts_then_the_sustained_rate() {
        let mut budget = FrameBudget::new(10);
        let start = Instant::now();
        assert!((0..20).all(|_| budget.take_at(start)));
        assert!(!budget.take_at(start));
        // 100 ms later one more frame's worth has accrued.
        assert!(budget.take_at(start + Duration::from_millis(100)));
        assert!(!budget.take_at(start + Duration::from_millis(100)));
    }
}

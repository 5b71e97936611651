//! Pairs of users whose friendship just ended (unfriend, block, account deletion). The presence
//! hub and the call router each keep one: a device that read its friend list from the database
//! just before the change, or an invite checked against the database just before it, may reach
//! the actor just after, and must not bring the friendship back. A pair is remembered for a
//! while (longer than any such read can take), forgotten at once if the two become friends
//! again, and the table is bounded.
use crate::ids::UserId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a severed pair is remembered.
const WINDOW: Duration = Duration::from_secs(120);
/// Past this many pairs, the expired ones are dropped at once; past twice as many, the oldest.
const MAX_PAIRS: usize = 65_536;

#[derive(Default)]
pub struct SeveredPairs {
    pairs: HashMap<(UserId, UserId), Instant>,
}

fn key(a: &UserId, b: &UserId) -> (UserId, UserId) {
    if a.as_str() <= b.as_str() {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

impl SeveredPairs {
    pub fn sever(&mut self, a: &UserId, b: &UserId, now: Instant) {
        if self.pairs.len() >= MAX_PAIRS {
            self.pairs
                .retain(|_, at| now.saturating_duration_since(*at) < WINDOW);
        }
        if self.pairs.len() >= 2 * MAX_PAIRS {
            if let Some(oldest) = self
                .pairs
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
            {
                self.pairs.remove(&oldest);
            }
        }
        self.pairs.insert(key(a, b), now);
    }

    /// They became friends again.
    pub fn restore(&mut self, a: &UserId, b: &UserId) {
        self.pairs.remove(&key(a, b));
    }

    pub fn contains(&self, a: &UserId, b: &UserId, now: Instant) -> bool {
        self.pairs
            .get(&key(a, b))
            .is_some_and(|at| now.saturating_duration_since(*at) < WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_severed_both_ways_until_restored_or_expired() {
        let (a, b, c) = (UserId::from("a"), UserId::from("b"), UserId::from("c"));
        let mut severed = SeveredPairs::default();
        let now = Instant::now();
        severed.sever(&a, &b, now);
        assert!(severed.contains(&b, &a, now));
        assert!(!severed.contains(&a, &c, now));
        assert!(!severed.contains(&a, &b, now + WINDOW));
        severed.restore(&b, &a);
        assert!(!severed.contains(&a, &b, now));
    }
}

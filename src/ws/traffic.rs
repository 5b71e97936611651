//! What a socket's recent traffic leaves behind: its own frame budget, its hold on the budget
//! its user's sockets share, and its backlog (what it was sent and has not shown it read).
//! Once all three have settled (the budgets refilled, everything sent acknowledged by a pong)
//! they are the same as new ones, so the session drops them: it keeps a [`Traffic`] boxed and
//! only while there is traffic, and an idle socket holds none of it (see docs/benchmarks.md,
//! idle memory).
use super::backlog::Backlog;
use super::frame_budget::{FrameBudget, SharedBudget};
use std::time::{Duration, Instant};

pub struct Traffic {
    /// This socket's frames.
    pub budget: FrameBudget,
    /// The user's budget, taken at the first frame after `welcome`.
    pub user_budget: Option<SharedBudget>,
    pub backlog: Backlog,
}

impl Traffic {
    pub fn new(frame_rate: u32) -> Box<Self> {
        Box::new(Self {
            budget: FrameBudget::new(frame_rate),
            user_budget: None,
            backlog: Backlog::default(),
        })
    }

    /// Whether new budgets and an empty backlog would be the same as these.
    pub fn settled(&self) -> bool {
        self.backlog.settled()
            && self.budget.is_full()
            && self
                .user_budget
                .as_ref()
                .is_none_or(|b| b.lock().unwrap_or_else(|p| p.into_inner()).is_full())
    }
}

/// The traffic in `held`, made if there was none.
pub fn get(held: &mut Option<Box<Traffic>>, frame_rate: u32) -> &mut Traffic {
    held.get_or_insert_with(|| Traffic::new(frame_rate))
}

/// How long the oldest unanswered ping of `traffic` has waited (none: nothing is waiting).
pub fn stuck_for(traffic: Option<&Traffic>, now: Instant) -> Duration {
    traffic.map_or(Duration::ZERO, |t| t.backlog.stuck_for(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::ws::frame_budget::UserBudgets;

    #[test]
    fn traffic_settles_once_acknowledged_and_refilled() {
        let mut traffic = Traffic::new(10);
        assert!(traffic.settled(), "new");
        traffic.backlog.sent(100);
        assert!(!traffic.settled(), "100 bytes unread");
        let ping = traffic.backlog.ping(Instant::now());
        assert!(!traffic.settled(), "a ping out");
        traffic.backlog.pong(&ping);
        assert!(traffic.settled(), "all read");
        assert!(traffic.budget.take());
        assert!(!traffic.settled(), "a frame just spent");

        let mut traffic = Traffic::new(10);
        let budgets = UserBudgets::new(10);
        let shared = budgets.of(&UserId::from("amy"));
        assert!(shared.lock().unwrap().take());
        traffic.user_budget = Some(shared);
        assert!(!traffic.settled(), "the user's budget was just spent");
    }
}

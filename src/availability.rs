//! Whether a user can be rung, as the two realtime actors tell each other: the call router says
//! who is in a call (`SetBusy`, shown as `busy` presence), the presence hub says who is on
//! do-not-disturb (`DndChanged`, which makes invites end as `busy`). Both actors depend on this
//! module and hold a `Recipient` for the other; neither imports the other.
use crate::ids::UserId;
use actix::Message;

/// The call router to the presence hub: a user entered or left a call.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetBusy {
    pub user: UserId,
    pub busy: bool,
}

/// The presence hub to the call router: a user's do-not-disturb state changed (also sent,
/// `false`, when a user goes offline).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DndChanged {
    pub user: UserId,
    pub dnd: bool,
}

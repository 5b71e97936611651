//! Presence: who is online, with what status, and telling their friends.
pub mod hub;

use crate::db::users::UserRow;
use crate::ids::UserId;
use crate::vocabulary::PresenceStatus;
use crate::wire::protocol::PresenceInfo;
use std::collections::HashMap;

/// A user's presence: live from the hub's `online` answer, or offline with the stored
/// last_seen.
pub fn of(user: &UserRow, online: &HashMap<UserId, PresenceInfo>) -> PresenceInfo {
    online
        .get(&user.id)
        .cloned()
        .unwrap_or_else(|| PresenceInfo {
            username: user.username.clone(),
            status: PresenceStatus::Offline,
            message: None,
            last_seen: user.last_seen,
        })
}

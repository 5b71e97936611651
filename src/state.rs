//! The shared handles every request handler and actor is given at start-up, and the hooks
//! through which REST changes reach the realtime side.
use crate::auth::{login_limiter::LoginLimiter, password::PasswordHasher};
use crate::calls::router::{CallRouter, PeersBlocked};
use crate::config::Config;
use crate::db::{users::UserRow, Db};
use crate::ids::UserId;
use crate::presence::hub::{PresenceHub, PresenceOf, RelationChanged, RevokeSessions};
use crate::ws::protocol::{Person, PresenceInfo};
use actix::Addr;
use std::collections::HashMap;
use std::sync::Arc;

/// A change between two users made over REST, which the realtime side pushes to devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationChange {
    /// `actor` asked `other` to be friends.
    Requested,
    /// `actor` and `other` became friends.
    Accepted,
    /// `actor` ended the friendship with `other` (or deleted their account).
    Removed,
    /// `actor` blocked `other`: friendship and requests are gone.
    Blocked,
}

pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub hasher: PasswordHasher,
    pub login_limiter: LoginLimiter,
    pub presence: Addr<PresenceHub>,
    pub router: Addr<CallRouter>,
    /// ICE servers and credentials for clients; the embedded TURN relay if it runs.
    pub ice: crate::ice::Ice,
}

impl AppState {
    /// These sessions no longer exist: close their sockets.
    pub fn sessions_revoked(&self, user: &UserId, token_hashes: Vec<String>) {
        if !token_hashes.is_empty() {
            self.presence.do_send(RevokeSessions {
                user: user.clone(),
                token_hashes,
            });
        }
    }

    /// The relation between two users changed: tell their devices, start or stop presence.
    pub fn relation_changed(&self, actor: &UserRow, other: &UserRow, change: RelationChange) {
        let person = |u: &UserRow| {
            (
                u.user_id(),
                Person {
                    username: u.username.clone(),
                    display_name: u.display_name.clone(),
                },
            )
        };
        if change == RelationChange::Blocked {
            // A call between them loses its relay at once.
            self.router.do_send(PeersBlocked {
                users: [actor.user_id(), other.user_id()],
            });
        }
        self.presence.do_send(RelationChanged {
            actor: person(actor),
            other: person(other),
            change,
        });
    }

    /// Live presence of the online ones among `users`.
    pub async fn presence_of(&self, users: Vec<UserId>) -> HashMap<UserId, PresenceInfo> {
        self.presence
            .send(PresenceOf { users })
            .await
            .unwrap_or_default()
    }
}

//! The handles the two edges (REST and the socket) share, given to every handler at start-up:
//! configuration, the database, the password hasher, the actors' addresses, ICE. Also the
//! hooks through which REST changes reach the realtime side, and the lookups both edges need.
use crate::auth::{login_limiter::LoginLimiter, password::PasswordHasher};
use crate::calls::router::{CallRouter, PeersBefriended, PeersSevered};
use crate::cluster::{directory, Cluster};
use crate::config::Config;
use crate::db::{self, users::UserRow, Db};
use crate::error::{AppError, ErrorCode};
use crate::ice::Ice;
use crate::ids::UserId;
use crate::people::{Party, Person};
use crate::presence::hub::{
    PresenceHub, PresenceOf, RelationChange, RelationChanged, RevokeSessions,
};
use crate::push::Push;
use crate::rate_limit::Buckets;
use crate::wire::protocol::PresenceInfo;
use actix::Addr;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub hasher: PasswordHasher,
    pub login_limiter: LoginLimiter,
    /// Registrations per client address (`--registrations-per-hour`); `None` when off.
    pub registrations: Option<Mutex<Buckets<IpAddr>>>,
    pub presence: Addr<PresenceHub>,
    pub router: Addr<CallRouter>,
    /// ICE servers and credentials for clients; the embedded TURN relay if it runs.
    pub ice: Ice,
    /// Web Push: the VAPID key, the subscriptions, the sender.
    pub push: Push,
    /// The cluster this node belongs to (`--redis-url`); `None` when running alone.
    pub cluster: Option<Cluster>,
}

impl AppState {
    /// These sessions no longer exist: their relay credentials die, their push subscriptions
    /// (deleted with them by the database) are forgotten, and their sockets close, on this
    /// node and, in a cluster, on every other.
    pub fn sessions_revoked(&self, user: &UserId, token_hashes: Vec<String>) {
        if !token_hashes.is_empty() {
            self.ice.revoke_sessions(user, &token_hashes);
            self.push.unsubscribed(user, &token_hashes);
            if let Some(cluster) = &self.cluster {
                cluster.sessions_revoked(user, &token_hashes);
            }
            self.presence.do_send(RevokeSessions {
                user: user.clone(),
                token_hashes,
            });
        }
    }

    /// The relation between two users changed: tell their devices, start or stop presence,
    /// end a call between former friends. Returns once both actors have applied it, so that
    /// after the REST request returns nothing crosses between two users who are no longer
    /// friends: no presence, no ring, no signal.
    pub async fn relation_changed(&self, actor: &UserRow, other: &UserRow, change: RelationChange) {
        let users = [actor.user_id(), other.user_id()];
        let applied = match change {
            RelationChange::Removed | RelationChange::Blocked => {
                self.router.send(PeersSevered { users }).await
            }
            RelationChange::Accepted => self.router.send(PeersBefriended { users }).await,
            RelationChange::Requested => Ok(()),
        };
        let told = self
            .presence
            .send(RelationChanged {
                actor: (actor.user_id(), Person::from(actor)),
                other: (other.user_id(), Person::from(other)),
                change,
            })
            .await;
        if applied.is_err() || told.is_err() {
            log::error!("a relation change did not reach the realtime actors (shutting down?)");
        }
    }

    /// Live presence of the online ones among `users`: in a cluster, on any node (the
    /// directory), merged with what this node knows; without Redis, what this node knows.
    pub async fn presence_of(&self, users: Vec<UserId>) -> HashMap<UserId, PresenceInfo> {
        let elsewhere = match &self.cluster {
            Some(cluster) => match cluster.read(&users).await {
                Ok(found) => found,
                Err(why) => {
                    log::warn!("presence on other nodes unknown: {why}");
                    HashMap::new()
                }
            },
            None => HashMap::new(),
        };
        let mut online = self
            .presence
            .send(PresenceOf { users })
            .await
            .unwrap_or_default();
        for (user, views) in elsewhere {
            if let std::collections::hash_map::Entry::Vacant(entry) = online.entry(user) {
                if let Some(info) = directory::merge(views.iter().map(|(_, v)| v)) {
                    entry.insert(info);
                }
            }
        }
        online
    }

    /// The callee named `name`, if they are `caller`'s friend (`call.invite` and
    /// `POST /calls`). Unknown users and blockers give the same `not_friends` as strangers, so
    /// nothing is revealed.
    pub async fn callable_friend(&self, caller: &UserId, name: String) -> Result<Party, AppError> {
        let caller = caller.clone();
        let callee = self
            .db
            .run(move |conn| {
                let not_friends =
                    || AppError::new(ErrorCode::NotFriends, "you can only call your friends");
                db::users::find_named_if(conn, &name, not_friends, |conn, callee| {
                    db::relations::are_friends(conn, &caller, &callee.id)
                })
            })
            .await?;
        Ok(Party::from(&callee))
    }
}

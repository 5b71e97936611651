//! What the broker knows, in memory, to decide who gets a push without a database query: each
//! user's subscriptions (one per session), and which sessions were rung by push for each
//! ringing call. Loaded at start from the database, changed by the REST handlers and session
//! deletion. Which sessions have a device connected is not kept here: the actors that own the
//! devices (the router, the hub) say so when they ask. Bounded by the sessions that exist.
use super::subscription::Target;
use crate::auth::token::{self, HashKey};
use crate::ids::{CallId, UserId};
use std::collections::HashMap;
use std::sync::Arc;

/// A session, as the index tells sessions apart: the key of its token hash, the same key a
/// connected device carries (`DeviceHandle::session_key`).
pub type SessionKey = HashKey;

/// One session's subscription.
#[derive(Clone)]
pub struct Subscribed {
    pub token_hash: Arc<str>,
    pub key: SessionKey,
    pub target: Arc<Target>,
}

#[derive(Default)]
pub struct Index {
    subscriptions: HashMap<UserId, Vec<Subscribed>>,
    /// Ringing calls that were pushed: the callee and the sessions that got the push.
    rung: HashMap<CallId, (UserId, Vec<SessionKey>)>,
    /// Reads of a user's subscriptions from the database under way (a cluster node heard
    /// they changed elsewhere), by number: only the latest one's answer is applied, and none
    /// once the subscriptions changed here meanwhile. An entry lives while its read does.
    reloads: HashMap<UserId, u64>,
    last_reload: u64,
    /// Changes made here so far: a read of every subscription applies only if none came
    /// while it ran.
    changes: u64,
}

impl Index {
    /// Sets the session's subscription, replacing its earlier one.
    pub fn subscribe(&mut self, user: &UserId, token_hash: &str, target: Target) {
        self.reloads.remove(user);
        self.changes += 1;
        self.insert(user, token_hash, target);
    }

    fn insert(&mut self, user: &UserId, token_hash: &str, target: Target) {
        let key = token::key(token_hash);
        let list = self.subscriptions.entry(user.clone()).or_default();
        list.retain(|s| &*s.token_hash != token_hash);
        list.push(Subscribed {
            token_hash: token_hash.into(),
            key,
            target: Arc::new(target),
        });
    }

    /// A read of `user`'s subscriptions from the database starts: its number.
    pub fn reload_started(&mut self, user: &UserId) -> u64 {
        self.last_reload += 1;
        self.reloads.insert(user.clone(), self.last_reload);
        self.last_reload
    }

    /// The read numbered `reload` found these subscriptions (token hash and target) of
    /// `user`: they are the user's, and no others, unless a later read or a change here came
    /// since.
    pub fn reloaded(&mut self, user: &UserId, reload: u64, subscriptions: Vec<(String, Target)>) {
        if self.reloads.get(user) != Some(&reload) {
            return;
        }
        self.reloads.remove(user);
        self.subscriptions.remove(user);
        for (token_hash, target) in subscriptions {
            self.insert(user, &token_hash, target);
        }
    }

    /// The read numbered `reload` failed: nothing to apply.
    pub fn reload_failed(&mut self, user: &UserId, reload: u64) {
        if self.reloads.get(user) == Some(&reload) {
            self.reloads.remove(user);
        }
    }

    /// How many changes were made here so far (see [`Self::replace_all`]).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Every user's subscriptions are those of `read`, an index read from the database when
    /// [`Self::changes`] said `since`; reads of one user under way are dropped. Not applied
    /// (false) if a change came here meanwhile.
    pub fn replace_all(&mut self, read: Index, since: u64) -> bool {
        if self.changes != since {
            return false;
        }
        self.reloads.clear();
        self.subscriptions = read.subscriptions;
        true
    }

    /// Forgets the subscriptions of these sessions of `user`.
    pub fn unsubscribe(&mut self, user: &UserId, token_hashes: &[String]) {
        self.reloads.remove(user);
        self.changes += 1;
        if let Some(list) = self.subscriptions.get_mut(user) {
            list.retain(|s| !token_hashes.iter().any(|h| **h == *s.token_hash));
            if list.is_empty() {
                self.subscriptions.remove(user);
            }
        }
    }

    /// Forgets the session's subscription if it still points at `endpoint` (the push service
    /// said it is gone).
    pub fn prune(&mut self, user: &UserId, token_hash: &str, endpoint: &http::Uri) {
        if let Some(list) = self.subscriptions.get_mut(user) {
            list.retain(|s| !(&*s.token_hash == token_hash && s.target.endpoint == *endpoint));
            if list.is_empty() {
                self.subscriptions.remove(user);
            }
        }
    }

    /// The subscriptions of `user` whose session is not among `open`, the sessions of the
    /// user's connected devices.
    pub fn closed(&self, user: &UserId, open: &[SessionKey]) -> Vec<Subscribed> {
        self.subscriptions
            .get(user)
            .map(|list| {
                list.iter()
                    .filter(|s| !open.contains(&s.key))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Notes the sessions pushed for a ringing call, for the follow-up.
    pub fn rang(&mut self, call: &CallId, callee: &UserId, sessions: Vec<SessionKey>) {
        self.rung.insert(call.clone(), (callee.clone(), sessions));
    }

    /// The subscriptions (as they are now) of the sessions pushed for `call`, which stops
    /// ringing.
    pub fn stop_ringing(&mut self, call: &CallId) -> Vec<Subscribed> {
        let Some((callee, sessions)) = self.rung.remove(call) else {
            return Vec::new();
        };
        self.subscriptions
            .get(&callee)
            .map(|list| {
                list.iter()
                    .filter(|s| sessions.contains(&s.key))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::parse(
            "https://push.example.com/x",
            "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY",
            "_ordMnz7uTCmrpBTeUV4Bw",
            false,
        )
        .unwrap()
    }

    #[test]
    fn only_sessions_without_a_connected_device_are_closed() {
        let (mut index, ben) = (Index::default(), UserId::from("ben"));
        let (phone, laptop) = ("a".repeat(64), "b".repeat(64));
        index.subscribe(&ben, &phone, target());
        index.subscribe(&ben, &laptop, target());
        assert_eq!(index.closed(&ben, &[]).len(), 2);
        let closed = index.closed(&ben, &[token::key(&laptop)]);
        assert_eq!(closed.len(), 1);
        assert_eq!(&*closed[0].token_hash, phone);
        index.unsubscribe(&ben, &[phone]);
        assert_eq!(index.closed(&ben, &[]).len(), 1);
    }

    #[test]
    fn only_the_latest_read_of_a_users_subscriptions_is_applied_and_none_after_a_change_here() {
        let (mut index, ben) = (Index::default(), UserId::from("ben"));
        let (phone, laptop) = ("a".repeat(64), "b".repeat(64));
        // Two reads under way: the older one answers last and is dropped.
        let older = index.reload_started(&ben);
        let newer = index.reload_started(&ben);
        index.reloaded(&ben, newer, vec![(phone.clone(), target())]);
        index.reloaded(&ben, older, vec![]);
        assert_eq!(index.closed(&ben, &[]).len(), 1);
        // A read under way when the subscriptions change here is dropped too.
        let stale = index.reload_started(&ben);
        index.subscribe(&ben, &laptop, target());
        index.reloaded(&ben, stale, vec![]);
        assert_eq!(index.closed(&ben, &[]).len(), 2);
        assert!(index.reloads.is_empty(), "no read is left noted");
        // A read of everything applies only if nothing changed here while it ran.
        let since = index.changes();
        index.unsubscribe(&ben, &[phone]);
        assert!(!index.replace_all(Index::default(), since));
        assert_eq!(index.closed(&ben, &[]).len(), 1);
        assert!(index.replace_all(Index::default(), index.changes()));
        assert!(index.closed(&ben, &[]).is_empty());
    }

    #[test]
    fn a_replaced_subscription_is_not_pruned_by_the_old_ones_failure() {
        let (mut index, ben) = (Index::default(), UserId::from("ben"));
        let session = "c".repeat(64);
        index.subscribe(&ben, &session, target());
        let gone: http::Uri = "https://push.example.com/old".parse().unwrap();
        index.prune(&ben, &session, &gone);
        assert_eq!(index.closed(&ben, &[]).len(), 1);
        index.prune(&ben, &session, &target().endpoint);
        assert!(index.closed(&ben, &[]).is_empty());
    }
}

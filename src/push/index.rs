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
}

impl Index {
    /// Sets the session's subscription, replacing its earlier one.
    pub fn subscribe(&mut self, user: &UserId, token_hash: &str, target: Target) {
        let key = token::key(token_hash);
        let list = self.subscriptions.entry(user.clone()).or_default();
        list.retain(|s| &*s.token_hash != token_hash);
        list.push(Subscribed {
            token_hash: token_hash.into(),
            key,
            target: Arc::new(target),
        });
    }

    /// `user`'s subscriptions are these (token hash and target), and no others.
    pub fn replace(&mut self, user: &UserId, subscriptions: Vec<(String, Target)>) {
        self.subscriptions.remove(user);
        for (token_hash, target) in subscriptions {
            self.subscribe(user, &token_hash, target);
        }
    }

    /// Forgets the subscriptions of these sessions of `user`.
    pub fn unsubscribe(&mut self, user: &UserId, token_hashes: &[String]) {
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

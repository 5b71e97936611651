//! The presence hub's side of a cluster (docs/cluster.md): what it writes to the directory,
//! tells other nodes, and learns from them. Alone (no `--redis-url`), every function here is
//! a no-op and `remote` stays empty.
//!
//! A user's presence is the merge of every node's view (`cluster::directory::merge`): this
//! hub's own (`Online`) and the others' (`Remote`). Friends here hear a change when the merge
//! changes. Which friends here follow a user held only elsewhere is learnt from the channel a
//! message arrived on (each friend's channel gets its copy), kept in `Remote::watchers`.
use super::{Online, PresenceHub};
use crate::auth::token::HashKey;
use crate::availability::SetBusy;
use crate::cluster::bus::{Body, Envelope, FriendChange};
use crate::cluster::directory::{self, NodeView};
use crate::cluster::ClusterEvent;
use crate::error::AppError;
use crate::ids::UserId;
use crate::people::Person;
use crate::time::now_ms;
use crate::vocabulary::{ChosenStatus, PresenceStatus};
use crate::wire::protocol::{PresenceInfo, ServerFrame};
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Other nodes' views of one user.
#[derive(Default)]
pub(super) struct Remote {
    /// (node, its view): a node or two, so a list.
    views: Vec<(String, NodeView)>,
    /// Users online here, friends of this user, who were told about them.
    pub(super) watchers: Vec<UserId>,
}

/// Users whose presence one resync re-reads at most; the rest converge on their next change.
const RESYNC_READ: usize = 50_000;

impl Online {
    fn view(&self) -> NodeView {
        NodeView {
            username: self.username.clone(),
            devices: self.devices.len() as u32,
            status: self.status,
            message: self.message.as_deref().map(String::from),
            since: self.since,
            busy: self.busy,
            sessions: self
                .devices
                .iter()
                .map(|d| crate::cluster::session_marker(d.session_key()))
                .collect(),
        }
    }
}

fn offline(username: String) -> PresenceInfo {
    PresenceInfo {
        username,
        status: PresenceStatus::Offline,
        message: None,
        last_seen: Some(now_ms()),
    }
}

fn same(a: &Option<PresenceInfo>, b: &Option<PresenceInfo>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.status == b.status && a.message == b.message,
        _ => false,
    }
}

impl PresenceHub {
    /// The user's presence over the whole cluster; `None`: offline.
    pub(super) fn presence(&self, user: &UserId) -> Option<PresenceInfo> {
        let here = self.users.get(user).map(|o| o.view());
        let elsewhere = self.remote.get(user).into_iter().flat_map(|r| &r.views);
        directory::merge(here.iter().chain(elsewhere.map(|(_, v)| v)))
    }

    /// The user's presence on other nodes only.
    pub(super) fn remote_presence(&self, user: &UserId) -> Option<PresenceInfo> {
        let views = self.remote.get(user)?.views.iter().map(|(_, v)| v);
        directory::merge(views)
    }

    /// Writes this node's view of `user` to the directory, telling nobody (a device more or
    /// less changes no presence).
    pub(super) fn write_view(&self, user: &UserId) {
        if let (Some(cluster), Some(online)) = (&self.cluster, self.users.get(user)) {
            cluster.write_view(user, Some(&online.view()));
        }
    }

    /// Writes this node's view of `user` and tells their friends and their other nodes.
    pub(super) fn publish_view(&self, user: &UserId) {
        if let (Some(cluster), Some(online)) = (&self.cluster, self.users.get(user)) {
            cluster.view_changed(user, Some(&online.view()), &online.friends);
        }
    }

    /// Tells `friend`'s nodes about `user`, if `user` is here.
    pub(super) fn publish_view_to(&self, user: &UserId, friend: &UserId) {
        if let (Some(cluster), Some(online)) = (&self.cluster, self.users.get(user)) {
            cluster.view_changed(user, Some(&online.view()), [friend]);
        }
    }

    /// `user` just came online here: listen on their channel, publish them.
    pub(super) fn joined_node(&mut self, user: &UserId) {
        if let Some(cluster) = &self.cluster {
            cluster.hold(user, true);
        }
        self.publish_view(user);
    }

    /// `user` is about to go offline here (still in `users`): remove this node's view, and
    /// keep following them for their friends here if they are online elsewhere.
    pub(super) fn left_node(&mut self, user: &UserId) {
        let (Some(cluster), Some(online)) = (&self.cluster, self.users.get(user)) else {
            return;
        };
        cluster.view_changed(user, None, &online.friends);
        cluster.hold(user, false);
        let watchers: Vec<UserId> = online
            .friends
            .iter()
            .filter(|f| self.users.contains_key(*f))
            .cloned()
            .collect();
        if let Some(remote) = self.remote.get_mut(user) {
            remote.watchers = watchers;
        }
    }

    /// Sends `to`'s nodes elsewhere a relation change with `friend` and the frame for `to`.
    pub(super) fn tell_node_of(
        &self,
        to: &UserId,
        friend: &UserId,
        change: FriendChange,
        frame: Option<&bytestring::ByteString>,
    ) {
        if let Some(cluster) = &self.cluster {
            cluster.send_to(
                to,
                Body::Relation {
                    friend: friend.to_string(),
                    change,
                    frame: frame.map(|f| f.to_string()),
                },
            );
        }
    }

    /// `me` no longer follows `friend` here, nor the other way round.
    pub(super) fn unwatch(&mut self, me: &UserId, friend: &UserId) {
        if let Some(remote) = self.remote.get_mut(friend) {
            remote.watchers.retain(|w| w != me);
        }
    }

    /// Records `node`'s view of `user` (`None`: gone from that node). Answers the presence
    /// before and after.
    fn set_remote(
        &mut self,
        user: &UserId,
        node: &str,
        view: Option<NodeView>,
    ) -> (Option<PresenceInfo>, Option<PresenceInfo>) {
        let before = self.presence(user);
        let remote = self.remote.entry(user.clone()).or_default();
        remote.views.retain(|(n, _)| n != node);
        if let Some(view) = view {
            remote.views.push((node.to_owned(), view));
        }
        let after = self.presence(user);
        self.forget_if_gone(user);
        (before, after)
    }

    /// Drops what is known of a user no node holds any more.
    fn forget_if_gone(&mut self, user: &UserId) {
        if self.remote.get(user).is_some_and(|r| r.views.is_empty()) {
            self.remote.remove(user);
        }
    }

    /// Tells the friends here about `user`'s new presence: their friend list if the user is
    /// here, else `watchers` (taken before the change, which may have dropped the entry).
    fn tell_followers(&self, user: &UserId, info: &PresenceInfo, watchers: &[UserId]) {
        if self.users.contains_key(user) {
            self.fan_out(user, info);
            return;
        }
        let frame = ServerFrame::Presence(info).encode();
        for watcher in watchers {
            if self.is_friend_here(watcher, user) {
                self.deliver_to_user(watcher, &frame);
            }
        }
    }

    /// A status chosen on another node, newer than the one here, becomes the one here.
    fn adopt_status(&mut self, user: &UserId, view: &NodeView) {
        let Some(online) = self.users.get_mut(user) else {
            return;
        };
        if view.since <= online.since {
            return;
        }
        let was_dnd = online.status == ChosenStatus::Dnd;
        online.status = view.status;
        online.message = view.message.clone().map(String::into_boxed_str);
        online.since = view.since;
        let is_dnd = view.status == ChosenStatus::Dnd;
        if was_dnd != is_dnd {
            self.dnd_listener.do_send(crate::availability::DndChanged {
                user: user.clone(),
                dnd: is_dnd,
            });
        }
        self.write_view(user);
    }

    fn remote_presence_arrived(
        &mut self,
        to: &UserId,
        from: &str,
        user: UserId,
        view: Option<NodeView>,
    ) {
        // Only for users here: a message for a channel just left is stale.
        if !self.users.contains_key(to) {
            return;
        }
        let follows = to != &user && self.is_friend_here(to, &user);
        if to != &user && !follows {
            return;
        }
        if let Some(cluster) = &self.cluster {
            if cluster.is_lost(from) && view.is_some() {
                return;
            }
        }
        if to == &user {
            if let Some(view) = &view {
                self.adopt_status(&user, view);
            }
        }
        // Whoever follows the user here, `to` included, hears of a change.
        let mut newly = false;
        let remote = self.remote.entry(user.clone()).or_default();
        if follows && !remote.watchers.contains(to) {
            remote.watchers.push(to.clone());
            newly = true;
        }
        let watchers = remote.watchers.clone();
        let username = view.as_ref().map(|v| v.username.clone());
        let (before, after) = self.set_remote(&user, from, view);
        if same(&before, &after) {
            // Nothing changed for those who knew; one who just started following hears it.
            if let (true, Some(info)) = (newly, &after) {
                self.deliver_to_user(to, &ServerFrame::Presence(info).encode());
            }
            return;
        }
        let username = username
            .or_else(|| before.as_ref().map(|b| b.username.clone()))
            .unwrap_or_default();
        let info = after.unwrap_or_else(|| offline(username));
        self.tell_followers(&user, &info, &watchers);
    }

    fn relation_arrived(
        &mut self,
        to: &UserId,
        friend: UserId,
        change: FriendChange,
        frame: Option<String>,
    ) {
        let mut deliver = true;
        match change {
            FriendChange::Added => {
                self.severed.restore(to, &friend);
                if let Some(online) = self.users.get_mut(to) {
                    if !online.friends.contains(&friend) {
                        online.friends.push(friend.clone());
                    }
                }
                self.publish_view_to(to, &friend);
            }
            FriendChange::Removed | FriendChange::Blocked => {
                self.severed.sever(to, &friend, Instant::now());
                let mut was_friend = false;
                if let Some(online) = self.users.get_mut(to) {
                    if let Some(at) = online.friends.iter().position(|f| f == &friend) {
                        online.friends.swap_remove(at);
                        was_friend = true;
                    }
                }
                self.unwatch(to, &friend);
                deliver = change == FriendChange::Removed || was_friend;
            }
            FriendChange::None => {}
        }
        if let (true, Some(frame)) = (deliver, frame) {
            self.deliver_to_user(to, &frame.into());
        }
    }

    /// A node is gone: its views go, and friends here hear of those now offline.
    fn node_lost(&mut self, node: &str) {
        let held: Vec<UserId> = self
            .remote
            .iter()
            .filter(|(_, r)| r.views.iter().any(|(n, _)| n == node))
            .map(|(u, _)| u.clone())
            .collect();
        for user in held {
            let username = self
                .remote
                .get(&user)
                .and_then(|r| r.views.first())
                .map(|(_, v)| v.username.clone())
                .unwrap_or_default();
            let watchers = self
                .remote
                .get(&user)
                .map(|r| r.watchers.clone())
                .unwrap_or_default();
            let (before, after) = self.set_remote(&user, node, None);
            if !same(&before, &after) {
                let info = after.unwrap_or_else(|| offline(username));
                self.tell_followers(&user, &info, &watchers);
            }
        }
    }

    /// Redis is back, or lost this node's state: write and publish every user here again
    /// now, and once every live node has had the time to do the same, re-read every user
    /// followed here and tell friends what changed meanwhile. Reading at once would find the
    /// users of nodes that have not noticed yet missing, and show them offline for a moment.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        for (user, online) in &self.users {
            cluster.hold(user, true);
            cluster.view_changed(user, Some(&online.view()), &online.friends);
        }
        log::info!(
            "cluster: resync: {} user(s) here written again",
            self.users.len()
        );
        self.close_revoked_meanwhile(ctx);
        // Push subscriptions changed elsewhere may have been announced meanwhile.
        let (push, db) = (self.push.clone(), self.db.clone());
        ctx.spawn(
            async move {
                if let Err(e) = push.reload_all(&db).await {
                    log::warn!("cluster: resync could not read the push subscriptions: {e}");
                }
            }
            .into_actor(self),
        );
        if let Some(pending) = self.reread.take() {
            ctx.cancel_future(pending);
        }
        self.reread = Some(ctx.run_later(cluster.settle_time(), |hub, ctx| {
            hub.reread = None;
            hub.reread_followed(ctx);
        }));
    }

    /// Closes the sockets here of sessions revoked on other nodes while this one may not have
    /// heard (part of a resync): their markers in Redis say so.
    fn close_revoked_meanwhile(&self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let sessions: Vec<HashKey> = self
            .users
            .values()
            .flat_map(|online| online.devices.iter().map(|d| *d.session_key()))
            .collect();
        if sessions.is_empty() {
            return;
        }
        let check = async move { cluster.revoked_among(sessions).await };
        ctx.spawn(check.into_actor(self).map(|found, hub, _| match found {
            Ok(revoked) if !revoked.is_empty() => {
                log::info!(
                    "cluster: resync: {} session(s) revoked elsewhere meanwhile; closing",
                    revoked.len()
                );
                hub.revoke_relay_of(&revoked);
                let sessions: HashSet<HashKey> = revoked.into_keys().collect();
                hub.close_revoked(&sessions);
            }
            Ok(_) => {}
            Err(why) => log::warn!("cluster: resync could not check revocations: {why}"),
        }));
    }

    /// A friend request for `user`, who has no device here nor on a node this hub follows
    /// them on: pushed to their closed apps, unless the directory says an app of theirs is
    /// open on another node (it shows the request). Outside a cluster, or when Redis cannot
    /// say, pushed at once.
    pub(super) fn push_friend_request(&self, user: UserId, from: Person, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            self.push.friend_request(&user, &from);
            return;
        };
        let read = async move {
            let views = cluster.read(std::slice::from_ref(&user)).await;
            let open = views.is_ok_and(|mut v| {
                v.remove(&user)
                    .is_some_and(|views| views.iter().any(|(_, view)| view.devices > 0))
            });
            (user, from, open)
        };
        ctx.spawn(read.into_actor(self).map(|(user, from, open), hub, _| {
            if !open {
                hub.push.friend_request(&user, &from);
            }
        }));
    }

    /// The relay credentials of `revoked` sessions (with their keys in relay credentials)
    /// of devices here are refused from now on.
    fn revoke_relay_of(&self, revoked: &HashMap<HashKey, String>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        for (user, online) in &self.users {
            let keys: Vec<String> = online
                .devices
                .iter()
                .filter_map(|d| revoked.get(d.session_key()).cloned())
                .collect();
            if !keys.is_empty() {
                cluster.revoke_relay(user, &keys);
            }
        }
    }

    /// Re-reads every user followed here from the directory (part of a resync).
    fn reread_followed(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let mut followed: HashSet<UserId> = self.remote.keys().cloned().collect();
        for (user, online) in &self.users {
            followed.insert(user.clone());
            followed.extend(online.friends.iter().cloned());
        }
        let users: Vec<UserId> = followed.into_iter().take(RESYNC_READ).collect();
        log::info!("cluster: resync: {} followed user(s) re-read", users.len());
        let read = async move {
            let found = cluster.read(&users).await;
            (users, found)
        };
        ctx.spawn(read.into_actor(self).map(|(users, found), hub, ctx| {
            let found = match found {
                Ok(found) => found,
                Err(why) => {
                    log::warn!("cluster: resync could not read the directory: {why}");
                    return;
                }
            };
            hub.replace_remote(users, found);
            hub.drop_stuck(ctx);
        }));
    }

    /// Replaces what is known of `users` on other nodes with `found`, telling friends here.
    fn replace_remote(
        &mut self,
        users: Vec<UserId>,
        mut found: HashMap<UserId, Vec<(String, NodeView)>>,
    ) {
        // Who follows whom here, from the friend lists.
        let mut followers: HashMap<&UserId, Vec<UserId>> = HashMap::new();
        for (user, online) in &self.users {
            for friend in &online.friends {
                followers.entry(friend).or_default().push(user.clone());
            }
        }
        let followers: HashMap<UserId, Vec<UserId>> =
            followers.into_iter().map(|(k, v)| (k.clone(), v)).collect();
        for user in users {
            let views = found.remove(&user).unwrap_or_default();
            let before = self.presence(&user);
            let username = before
                .as_ref()
                .map(|b| b.username.clone())
                .or_else(|| views.first().map(|(_, v)| v.username.clone()))
                .unwrap_or_default();
            if let Some(view) = views.iter().map(|(_, v)| v).max_by_key(|v| v.since) {
                let view = view.clone();
                self.adopt_status(&user, &view);
            }
            let watchers = followers.get(&user).cloned().unwrap_or_default();
            let remote = self.remote.entry(user.clone()).or_default();
            remote.views = views;
            remote.watchers = watchers.clone();
            let after = self.presence(&user);
            if !same(&before, &after) {
                let info = after.unwrap_or_else(|| offline(username));
                let frame = ServerFrame::Presence(&info).encode();
                for watcher in &watchers {
                    self.deliver_to_user(watcher, &frame);
                }
            }
            self.forget_if_gone(&user);
        }
    }

    /// The rest of `Connect` in a cluster: friends (and the user's own other devices) held by
    /// other nodes are read from the directory, and the answer is the merged snapshot. A
    /// directory that does not answer leaves the snapshot to this node's knowledge.
    pub(super) fn read_remote(
        &mut self,
        user: UserId,
        friends: Vec<UserId>,
    ) -> ResponseActFuture<Self, Result<HashMap<UserId, PresenceInfo>, AppError>> {
        let Some(cluster) = self.cluster.clone() else {
            return Box::pin(actix::fut::ready(Ok(self.snapshot(&friends))));
        };
        let mut users = friends.clone();
        users.push(user.clone());
        let read = async move { cluster.read(&users).await };
        Box::pin(read.into_actor(self).map(move |found, hub, ctx| {
            match found {
                Ok(mut found) => {
                    if let Some(views) = found.remove(&user) {
                        if let Some(newest) = views.iter().map(|(_, v)| v).max_by_key(|v| v.since) {
                            let newest = newest.clone();
                            hub.adopt_status(&user, &newest);
                        }
                        hub.remote.entry(user.clone()).or_default().views = views;
                    }
                    let friends_now = hub
                        .users
                        .get(&user)
                        .map(|o| o.friends.clone())
                        .unwrap_or_default();
                    for (friend, views) in found {
                        if !friends_now.contains(&friend) {
                            continue;
                        }
                        let remote = hub.remote.entry(friend).or_default();
                        remote.views = views;
                        if !remote.watchers.contains(&user) {
                            remote.watchers.push(user.clone());
                        }
                    }
                }
                Err(why) => log::warn!("cluster: friends elsewhere unknown at connect: {why}"),
            }
            hub.drop_stuck(ctx);
            let friends_now = hub
                .users
                .get(&user)
                .map(|o| o.friends.clone())
                .unwrap_or_default();
            Ok(hub.snapshot(&friends_now))
        }))
    }
}

impl Handler<ClusterEvent> for PresenceHub {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, ctx: &mut Context<Self>) {
        match event {
            ClusterEvent::ForUser {
                user: to,
                envelope: Envelope { from, body },
            } => match body {
                Body::Presence { user, view } => {
                    self.remote_presence_arrived(&to, &from, UserId::from(user), view)
                }
                Body::Relation {
                    friend,
                    change,
                    frame,
                } => self.relation_arrived(&to, UserId::from(friend), change, frame),
                // A call on another node has this user (held here too) busy, or no more.
                Body::Busy { busy } => self.busy_set(SetBusy { user: to, busy }, ctx),
                _ => {}
            },
            ClusterEvent::NodeLost { node } => self.node_lost(&node),
            ClusterEvent::Revoked { user, sessions } => {
                self.push.unsubscribed(&user, &sessions);
                self.close_sessions(&user, &sessions);
            }
            ClusterEvent::PushChanged { user } => {
                let (push, db) = (self.push.clone(), self.db.clone());
                ctx.spawn(
                    async move {
                        if let Err(e) = push.reload(&db, &user).await {
                            log::warn!("cluster: {user}'s push subscriptions not read again: {e}");
                        }
                    }
                    .into_actor(self),
                );
            }
            ClusterEvent::Resync => self.resync(ctx),
        }
        self.drop_stuck(ctx);
    }
}

//! The PresenceHub: every online user with their devices, chosen status and friend set. It
//! pushes presence changes to online friends only, forwards relation changes made over REST to
//! the devices concerned, and closes sockets whose session was revoked.
use crate::auth::token::{self, HashKey};
use crate::availability::{DndChanged, SetBusy};
use crate::cluster::bus::FriendChange;
use crate::cluster::Cluster;
use crate::db::Db;
use crate::error::{AppError, ErrorCode};
use crate::ids::{DeviceId, UserId};
use crate::people::Person;
use crate::push::Push;
use crate::severed::SeveredPairs;
use crate::time::now_ms;
use crate::vocabulary::{ChosenStatus, PresenceStatus};
use crate::wire::close;
use crate::wire::device::{DeviceHandle, Kick};
use crate::wire::protocol::{FriendPresence, PresenceInfo, ServerFrame};
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

mod cluster;
use cluster::Remote;

struct Online {
    username: String,
    /// Connected devices (each knows its session). A handful at most
    /// (`--max-devices-per-user`), so a list, sized for one, not a map.
    devices: Vec<DeviceHandle>,
    status: ChosenStatus,
    /// Boxed rather than a `String`: a word less keeps the entry in a smaller size class.
    message: Option<Box<str>>,
    /// When the status was chosen (ms; 0: never, the default). In a cluster the newest choice
    /// on any node is the user's status.
    since: i64,
    busy: bool,
    /// Read once per connect and only walked after that (a change is one push or removal), so a
    /// list: no hash table per online user.
    friends: Vec<UserId>,
    /// Runs while the last device is gone; the user turns offline when it fires.
    offline_timer: Option<SpawnHandle>,
}

impl Online {
    fn info(&self) -> PresenceInfo {
        PresenceInfo {
            username: self.username.clone(),
            status: if self.busy {
                PresenceStatus::Busy
            } else {
                self.status.into()
            },
            message: self.message.as_deref().map(String::from),
            last_seen: None,
        }
    }
}

pub struct PresenceHub {
    /// Boxed: a hash table keeps a quarter to a half of its slots empty, and an empty slot
    /// then costs a pointer rather than a whole entry.
    users: HashMap<UserId, Box<Online>>,
    /// Friendships that just ended, which a device's stale friend list must not restore.
    severed: SeveredPairs,
    /// Devices found stuck while delivering, dropped once the message at hand is handled.
    stuck: std::cell::RefCell<Vec<(UserId, DeviceId)>>,
    grace: Duration,
    /// Sockets one user may have at once (0: no limit).
    max_devices: usize,
    /// How long a call waits for a dropped participant (`--reconnect-grace`): someone in a call
    /// stays present at least that long, so friends see no offline/online flap when they
    /// resume it.
    call_grace: Duration,
    db: Db,
    /// Told whenever a user's do-not-disturb state changes, so the router can refuse calls.
    dnd_listener: Recipient<DndChanged>,
    /// Friend requests to users with no open app go out as pushes.
    push: Push,
    census: crate::census::Census<2>,
    /// Users who went offline and when, not written to the database yet.
    last_seen: Vec<(UserId, i64)>,
    writing_last_seen: bool,
    /// The cluster this node belongs to; `None` when the broker runs alone.
    cluster: Option<Cluster>,
    /// Other nodes' views of users this hub has a reason to know about: friends of its online
    /// users, and its own users' devices elsewhere. Fed by the cluster (`cluster.rs`); empty
    /// when alone.
    remote: HashMap<UserId, Box<Remote>>,
    /// The directory re-read of a resync, waiting for the other nodes to resync too.
    reread: Option<SpawnHandle>,
}

/// Last-seen times waiting at most while a write is under way; past it (a database that far
/// behind) the rest are not written, and their friends only had the `offline` frame's time.
const MAX_LAST_SEEN: usize = 100_000;

impl PresenceHub {
    pub fn new(
        db: Db,
        grace: Duration,
        call_grace: Duration,
        max_devices: usize,
        dnd_listener: Recipient<DndChanged>,
        push: Push,
        cluster: Option<Cluster>,
    ) -> Self {
        Self {
            cluster,
            remote: HashMap::new(),
            reread: None,
            push,
            users: HashMap::new(),
            severed: SeveredPairs::default(),
            stuck: std::cell::RefCell::default(),
            grace,
            max_devices,
            call_grace,
            db,
            dnd_listener,
            census: Default::default(),
            last_seen: Vec::new(),
            writing_last_seen: false,
        }
    }

    fn deliver_to_user(&self, user: &UserId, frame: &bytestring::ByteString) {
        if let Some(online) = self.users.get(user) {
            for device in &online.devices {
                if !device.send(frame.clone()) {
                    self.stuck.borrow_mut().push((user.clone(), device.id()));
                }
            }
        }
    }

    /// Devices that stopped taking their frames leave, as if their socket had closed.
    fn drop_stuck(&mut self, ctx: &mut Context<Self>) {
        let stuck = std::mem::take(&mut *self.stuck.borrow_mut());
        for (user, device) in stuck {
            self.disconnect(user, device, ctx);
        }
    }

    /// A device is gone; the user goes offline after the grace if it was their last.
    fn disconnect(&mut self, user: UserId, device: DeviceId, ctx: &mut Context<Self>) {
        let Some(online) = self.users.get_mut(&user) else {
            return;
        };
        let Some(at) = online.devices.iter().position(|d| d.id() == device) else {
            return;
        };
        online.devices.swap_remove(at);
        self.write_view(&user);
        let Some(online) = self.users.get_mut(&user) else {
            return;
        };
        if !online.devices.is_empty() {
            return;
        }
        let grace = if online.busy {
            self.grace.max(self.call_grace)
        } else {
            self.grace
        };
        if let Some(timer) = online.offline_timer.take() {
            ctx.cancel_future(timer);
        }
        online.offline_timer =
            Some(ctx.run_later(grace, move |hub, ctx| hub.go_offline(&user, ctx)));
    }

    /// Pushes `user`'s presence to each friend online here: from their friend list when the
    /// user is here, else to the friends who follow them on another node.
    fn fan_out(&self, user: &UserId, info: &PresenceInfo) {
        let frame = ServerFrame::Presence(info).encode();
        if let Some(online) = self.users.get(user) {
            for friend in &online.friends {
                self.deliver_to_user(friend, &frame);
            }
        } else if let Some(remote) = self.remote.get(user) {
            for watcher in &remote.watchers {
                if self.is_friend_here(watcher, user) {
                    self.deliver_to_user(watcher, &frame);
                }
            }
        }
    }

    /// Whether `user` is online here and has `friend` in their friend list.
    fn is_friend_here(&self, user: &UserId, friend: &UserId) -> bool {
        self.users
            .get(user)
            .is_some_and(|o| o.friends.contains(friend))
    }

    fn go_offline(&mut self, user: &UserId, ctx: &mut Context<Self>) {
        let Some(online) = self.users.get(user) else {
            return;
        };
        if !online.devices.is_empty() {
            return;
        }
        let now = now_ms();
        let here = online.info();
        let offline = PresenceInfo {
            username: online.username.clone(),
            status: PresenceStatus::Offline,
            message: None,
            last_seen: Some(now),
        };
        // Still online on another node: friends here see that presence instead.
        match self.remote_presence(user) {
            Some(elsewhere)
                if elsewhere.status != here.status || elsewhere.message != here.message =>
            {
                self.fan_out(user, &elsewhere)
            }
            Some(_) => {}
            None => self.fan_out(user, &offline),
        }
        self.left_node(user);
        self.users.remove(user);
        crate::metrics::get().users_online.dec();
        self.dnd_listener.do_send(DndChanged {
            user: user.clone(),
            dnd: false,
        });
        if self.last_seen.len() < MAX_LAST_SEEN {
            self.last_seen.push((user.clone(), now));
        }
        self.write_last_seen(ctx);
    }

    /// Writes the last-seen times not written yet, in one database call, unless a write is
    /// already under way: those gathered meanwhile follow when it is done. A mass disconnect
    /// costs one blocking thread at a time, not one per user.
    fn write_last_seen(&mut self, ctx: &mut Context<Self>) {
        if self.writing_last_seen || self.last_seen.is_empty() {
            return;
        }
        self.writing_last_seen = true;
        let seen = std::mem::take(&mut self.last_seen);
        let db = self.db.clone();
        let write = async move {
            db.run(move |conn| crate::db::users::set_last_seen_each(conn, &seen))
                .await
        };
        ctx.spawn(write.into_actor(self).map(|written, hub, ctx| {
            if let Err(e) = written {
                log::error!("could not record last_seen: {e}");
            }
            hub.writing_last_seen = false;
            hub.write_last_seen(ctx);
        }));
    }

    fn friend_presence(
        &self,
        user: &UserId,
        display_name: String,
        username: String,
    ) -> FriendPresence {
        let presence = match self.presence(user) {
            Some(info) => info,
            None => PresenceInfo {
                username,
                status: PresenceStatus::Offline,
                message: None,
                last_seen: None,
            },
        };
        FriendPresence {
            display_name,
            presence,
        }
    }
}

impl Actor for PresenceHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(cluster) = &self.cluster {
            cluster.start(ctx.address().recipient());
        }
        ctx.run_interval(crate::census::EVERY, |hub, _| {
            let devices = hub.users.values().map(|o| o.devices.len()).sum();
            hub.census.report(
                "presence hub",
                [("users online", hub.users.len()), ("devices", devices)],
            );
        });
    }
}

/// A device authenticated. Answers with the presence of each friend who is online, or
/// `too_many_devices` when the user already has `--max-devices-per-user` sockets.
#[derive(Message)]
#[rtype(result = "Result<HashMap<UserId, PresenceInfo>, AppError>")]
pub struct Connect {
    pub user: UserId,
    pub username: String,
    pub device: DeviceHandle,
    pub friends: Vec<UserId>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub user: UserId,
    pub device: DeviceId,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetStatus {
    pub user: UserId,
    pub status: ChosenStatus,
    pub message: Option<String>,
}

/// A change between two users made over REST, which the hub pushes to their devices.
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

/// A relation changed over REST between `actor` and `other`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelationChanged {
    pub actor: (UserId, Person),
    pub other: (UserId, Person),
    pub change: RelationChange,
}

/// These sessions were revoked: close their sockets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RevokeSessions {
    pub user: UserId,
    pub token_hashes: Vec<String>,
}

/// Current presence of these users (for `GET /api/v1/friends`).
#[derive(Message)]
#[rtype(result = "HashMap<UserId, PresenceInfo>")]
pub struct PresenceOf {
    pub users: Vec<UserId>,
}

/// Closes every socket; answers when all were told and last_seen is written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll;

impl Handler<Connect> for PresenceHub {
    type Result = ResponseActFuture<Self, Result<HashMap<UserId, PresenceInfo>, AppError>>;

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) -> Self::Result {
        let Some(cluster) = self.cluster.clone() else {
            let answer = self.connected(msg, 0, ctx);
            self.drop_stuck(ctx);
            return Box::pin(actix::fut::ready(answer));
        };
        // In a cluster, the user's devices on other nodes count towards the limit, and
        // friends online on other nodes are read from the directory.
        let user = msg.user.clone();
        let read = async move { cluster.read(std::slice::from_ref(&user)).await };
        Box::pin(read.into_actor(self).then(move |found, hub, ctx| {
            let elsewhere = match found {
                Ok(views) => views
                    .values()
                    .flatten()
                    .map(|(_, view)| view.devices as usize)
                    .sum(),
                Err(why) => {
                    log::warn!("cluster: devices elsewhere unknown at connect: {why}");
                    0
                }
            };
            let (user, friends) = (msg.user.clone(), msg.friends.clone());
            let answer = hub.connected(msg, elsewhere, ctx);
            hub.drop_stuck(ctx);
            match answer {
                Ok(_) => hub.read_remote(user, friends),
                Err(err) => Box::pin(actix::fut::ready(Err(err))),
            }
        }))
    }
}

impl PresenceHub {
    /// `elsewhere`: the user's devices on other nodes of a cluster, which count towards
    /// `--max-devices-per-user` too.
    fn connected(
        &mut self,
        msg: Connect,
        elsewhere: usize,
        ctx: &mut Context<Self>,
    ) -> Result<HashMap<UserId, PresenceInfo>, AppError> {
        let devices = self.users.get(&msg.user).map_or(0, |o| o.devices.len()) + elsewhere;
        if self.max_devices > 0 && devices >= self.max_devices {
            return Err(AppError::new(
                ErrorCode::TooManyDevices,
                format!(
                    "you already have {} connected devices; close one first",
                    self.max_devices
                ),
            ));
        }
        let before = self.remote_presence(&msg.user);
        let entry = self.users.entry(msg.user.clone());
        let is_new = matches!(entry, std::collections::hash_map::Entry::Vacant(_));
        crate::metrics::get().users_online.add(i64::from(is_new));
        let online = entry.or_insert_with(|| {
            Box::new(Online {
                username: msg.username.clone(),
                devices: Vec::with_capacity(1),
                status: ChosenStatus::Online,
                message: None,
                since: 0,
                busy: false,
                friends: Vec::new(),
                offline_timer: None,
            })
        });
        if let Some(timer) = online.offline_timer.take() {
            ctx.cancel_future(timer);
        }
        // The list was read from the database a moment ago; a friendship ended since then
        // stays ended.
        let now = Instant::now();
        let severed = &self.severed;
        online.friends = msg
            .friends
            .into_iter()
            .filter(|f| !severed.contains(&msg.user, f, now))
            .collect();
        online.devices.push(msg.device);
        let friends: Vec<UserId> = online.friends.to_vec();
        if is_new {
            // Online on another node already: their friends here knew that.
            if let Some(info) = self.presence(&msg.user) {
                if before.is_none_or(|b| b.status != info.status || b.message != info.message) {
                    self.fan_out(&msg.user, &info);
                }
            }
            self.joined_node(&msg.user);
        } else {
            self.write_view(&msg.user);
        }
        Ok(self.snapshot(&friends))
    }

    /// The presence of each online friend among `friends`.
    fn snapshot(&self, friends: &[UserId]) -> HashMap<UserId, PresenceInfo> {
        friends
            .iter()
            .filter_map(|f| self.presence(f).map(|info| (f.clone(), info)))
            .collect()
    }
}

impl Handler<Disconnect> for PresenceHub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.disconnect(msg.user, msg.device, ctx);
    }
}

impl Handler<SetStatus> for PresenceHub {
    type Result = ();

    fn handle(&mut self, msg: SetStatus, ctx: &mut Context<Self>) {
        self.status_set(msg, ctx);
        self.drop_stuck(ctx);
    }
}

impl PresenceHub {
    fn status_set(&mut self, msg: SetStatus, _: &mut Context<Self>) {
        let Some(online) = self.users.get_mut(&msg.user) else {
            return;
        };
        let was_dnd = online.status == ChosenStatus::Dnd;
        online.status = msg.status;
        online.message = msg.message.map(String::into_boxed_str);
        online.since = now_ms();
        let info = online.info();
        let is_dnd = msg.status == ChosenStatus::Dnd;
        if was_dnd != is_dnd {
            self.dnd_listener.do_send(DndChanged {
                user: msg.user.clone(),
                dnd: is_dnd,
            });
        }
        self.publish_view(&msg.user);
        let info = self.presence(&msg.user).unwrap_or(info);
        self.fan_out(&msg.user, &info);
    }
}

impl Handler<SetBusy> for PresenceHub {
    type Result = ();

    fn handle(&mut self, msg: SetBusy, ctx: &mut Context<Self>) {
        self.busy_set(msg, ctx);
        self.drop_stuck(ctx);
    }
}

impl PresenceHub {
    fn busy_set(&mut self, msg: SetBusy, ctx: &mut Context<Self>) {
        let Some(online) = self.users.get_mut(&msg.user) else {
            return;
        };
        if online.busy == msg.busy {
            return;
        }
        online.busy = msg.busy;
        // The call ended while this user was away, kept present for the call's grace: from
        // now on the ordinary presence grace applies.
        if !msg.busy && online.devices.is_empty() {
            if let Some(timer) = online.offline_timer.take() {
                ctx.cancel_future(timer);
            }
            let user = msg.user.clone();
            online.offline_timer =
                Some(ctx.run_later(self.grace, move |hub, ctx| hub.go_offline(&user, ctx)));
        }
        let info = online.info();
        self.publish_view(&msg.user);
        let info = self.presence(&msg.user).unwrap_or(info);
        self.fan_out(&msg.user, &info);
    }
}

impl Handler<RelationChanged> for PresenceHub {
    type Result = ();

    fn handle(&mut self, msg: RelationChanged, ctx: &mut Context<Self>) {
        self.relation_changed(msg, ctx);
        self.drop_stuck(ctx);
    }
}

impl PresenceHub {
    fn relation_changed(&mut self, msg: RelationChanged, ctx: &mut Context<Self>) {
        let ((a, a_person), (b, b_person)) = (msg.actor, msg.other);
        match msg.change {
            RelationChange::Requested => {
                let frame = ServerFrame::FriendRequest { from: &a_person }.encode();
                self.deliver_to_user(&b, &frame);
                self.tell_node_of(&b, &a, FriendChange::None, Some(&frame));
                // No open app to show it: ring their closed ones, if they have any.
                if self.users.get(&b).is_none_or(|o| o.devices.is_empty())
                    && self.remote_presence(&b).is_none()
                {
                    self.push_friend_request(b, a_person, ctx);
                }
            }
            RelationChange::Accepted => {
                self.severed.restore(&a, &b);
                for (me, friend) in [(&a, &b), (&b, &a)] {
                    if let Some(online) = self.users.get_mut(me) {
                        if !online.friends.contains(friend) {
                            online.friends.push(friend.clone());
                        }
                    }
                }
                let a_view = self.friend_presence(&a, a_person.display_name, a_person.username);
                let b_view = self.friend_presence(&b, b_person.display_name, b_person.username);
                let to_b = ServerFrame::FriendAccepted { friend: &a_view }.encode();
                let to_a = ServerFrame::FriendAccepted { friend: &b_view }.encode();
                self.deliver_to_user(&b, &to_b);
                self.deliver_to_user(&a, &to_a);
                self.tell_node_of(&b, &a, FriendChange::Added, Some(&to_b));
                self.tell_node_of(&a, &b, FriendChange::Added, Some(&to_a));
                // Each one's node elsewhere learns to tell the other about them.
                for (me, friend) in [(&a, &b), (&b, &a)] {
                    self.publish_view_to(me, friend);
                }
            }
            RelationChange::Removed | RelationChange::Blocked => {
                self.severed.sever(&a, &b, Instant::now());
                let mut were_friends = false;
                for (me, friend) in [(&a, &b), (&b, &a)] {
                    if let Some(online) = self.users.get_mut(me) {
                        if let Some(at) = online.friends.iter().position(|f| f == friend) {
                            online.friends.swap_remove(at);
                            were_friends = true;
                        }
                    }
                    self.unwatch(me, friend);
                }
                // Only former friends hear about it: a block must not reveal itself otherwise.
                // A node elsewhere checks the same for its own devices.
                let (to_b, to_a) = (
                    ServerFrame::FriendRemoved {
                        username: &a_person.username,
                    }
                    .encode(),
                    ServerFrame::FriendRemoved {
                        username: &b_person.username,
                    }
                    .encode(),
                );
                if were_friends || msg.change == RelationChange::Removed {
                    self.deliver_to_user(&b, &to_b);
                    self.deliver_to_user(&a, &to_a);
                }
                let change = if msg.change == RelationChange::Removed {
                    FriendChange::Removed
                } else {
                    FriendChange::Blocked
                };
                self.tell_node_of(&b, &a, change, Some(&to_b));
                self.tell_node_of(&a, &b, change, Some(&to_a));
            }
        }
    }
}

impl Handler<RevokeSessions> for PresenceHub {
    type Result = ();

    fn handle(&mut self, msg: RevokeSessions, _: &mut Context<Self>) {
        self.close_sessions(&msg.user, &msg.token_hashes);
    }
}

impl PresenceHub {
    /// Closes the sockets of `user` whose session is one of `token_hashes` (revoked here, or
    /// on another node of the cluster).
    pub(super) fn close_sessions(&self, user: &UserId, token_hashes: &[String]) {
        let Some(online) = self.users.get(user) else {
            return;
        };
        let revoked: HashSet<HashKey> = token_hashes.iter().map(|h| token::key(h)).collect();
        close_revoked(&online.devices, &revoked);
    }

    /// Closes every device here whose session is in `revoked`, whoever its user.
    pub(super) fn close_revoked(&self, revoked: &HashSet<HashKey>) {
        for online in self.users.values() {
            close_revoked(&online.devices, revoked);
        }
    }
}

impl Handler<PresenceOf> for PresenceHub {
    type Result = MessageResult<PresenceOf>;

    fn handle(&mut self, msg: PresenceOf, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.users
                .into_iter()
                .filter_map(|u| self.presence(&u).map(|info| (u, info)))
                .collect(),
        )
    }
}

impl Handler<CloseAll> for PresenceHub {
    type Result = ResponseFuture<()>;

    /// Closes every socket and records everyone online as last seen now.
    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> Self::Result {
        // A cluster node drains: its clients reconnect to the others, where their calls go on
        // (the census taken as the calls were handed over found one alive).
        let others = self.cluster.as_ref().and_then(|c| c.other_alive(&[]));
        let kick = match others {
            Some(_) => Kick {
                code: close::RESTART,
                reason: "server restarting, reconnect",
            },
            None => Kick {
                code: close::SHUTDOWN,
                reason: "server shutting down",
            },
        };
        for online in self.users.values() {
            for device in &online.devices {
                device.kick(kick);
            }
        }
        let users: Vec<UserId> = self.users.keys().cloned().collect();
        let gone = std::mem::take(&mut self.last_seen);
        let db = self.db.clone();
        Box::pin(async move {
            let now = now_ms();
            let written = db
                .run(move |conn| {
                    crate::db::users::set_last_seen_each(conn, &gone)?;
                    crate::db::users::set_last_seen_many(conn, &users, now)
                })
                .await;
            if let Err(e) = written {
                log::warn!("could not record last_seen at shutdown: {e}");
            }
        })
    }
}

/// Closes those of `devices` whose session is in `revoked`.
fn close_revoked(devices: &[DeviceHandle], revoked: &HashSet<HashKey>) {
    for device in devices {
        if revoked.contains(device.session_key()) {
            device.kick(Kick {
                code: close::REVOKED,
                reason: "session revoked",
            });
        }
    }
}

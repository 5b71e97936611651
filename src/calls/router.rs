//! The CallRouter: owns every live call, runs the state machine in `state.rs` and executes its
//! effects (frames to devices, timers, records, busy presence), and relays `signal` frames
//! between the two devices of an active call. It knows each connected device of every user, so
//! ringing reaches all of them.
use super::recorder::{CallRecorder, Flush, WriteRecord};
use super::state::{Call, CallError, Effect, Event, Invite, Notice, Phase, Record, Role, Target};
use crate::availability::{DndChanged, SetBusy};
use crate::cluster::bus::RemoteAction;
use crate::error::{AppError, ErrorCode};
use crate::ice::{Ice, Scope};
use crate::ids::{CallId, DeviceId, UserId};
use crate::people::Party;
use crate::push::{index::SessionKey, Push};
use crate::severed::SeveredPairs;
use crate::time::now_ms;
use crate::vocabulary::{Direction, LiveState, Media, SignalKind};
use crate::wire::device::{DeviceHandle, LiveDevice};
use crate::wire::protocol::{CallSummary, ClientRef, ServerFrame};
use actix::prelude::*;
use serde_json::value::RawValue;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod cluster;
use cluster::{Elsewhere, Remote};

struct Slot {
    call: Call,
    ring_timer: Option<SpawnHandle>,
    /// Reconnect grace timers, caller then callee.
    grace: [Option<SpawnHandle>; 2],
    /// The devices signals flow between, caller then callee, held strongly from their first
    /// signal until the call is over (see [`LiveDevice`]); replaced when a side resumes on
    /// another device.
    live: [Option<LiveDevice>; 2],
    /// Other nodes whose devices of `UserId` rang for the call: told when it is over.
    nodes: Vec<(String, UserId)>,
    /// The sessions of the callee's devices on other nodes when the call was placed: their
    /// apps are open, so they are not rung by push.
    open_elsewhere: Box<[SessionKey]>,
}

impl Slot {
    /// Holds the call's device in `role` strongly, if it is connected and not held yet.
    fn hold(&mut self, devices: &HashMap<UserId, Devices>, role: Role) {
        if self.held(role).is_some() {
            return;
        }
        let Some(id) = self.call.device(role) else {
            return;
        };
        let user = &self.call.party(role).user;
        let device = devices
            .get(user)
            .and_then(|ds| ds.iter().find(|d| d.id() == *id));
        self.live[role_index(role)] = device.and_then(DeviceHandle::live);
    }

    /// The call's device in `role`, if it is held.
    fn held(&self, role: Role) -> Option<&LiveDevice> {
        let held = self.live[role_index(role)].as_ref()?;
        (self.call.device(role) == Some(&held.id())).then_some(held)
    }
}

/// A user's connected devices: a handful at most, changed only when one connects or leaves, so a
/// boxed slice (two words in the table, where a `Vec` takes three).
type Devices = Box<[DeviceHandle]>;

/// The sessions of `user`'s connected devices, here and `elsewhere` (on other nodes): their
/// push subscriptions are not rung, the devices are.
fn open_sessions(
    devices: &HashMap<UserId, Devices>,
    user: &UserId,
    elsewhere: &[SessionKey],
) -> Vec<SessionKey> {
    let here = devices.get(user).into_iter().flat_map(|ds| ds.iter());
    here.map(|d| *d.session_key())
        .chain(elsewhere.iter().copied())
        .collect()
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Caller => 0,
        Role::Callee => 1,
    }
}

pub struct CallRouter {
    /// Connected devices per user, oldest first.
    devices: HashMap<UserId, Devices>,
    calls: HashMap<CallId, Slot>,
    /// The one call each user is part of (ringing or active).
    user_call: HashMap<UserId, CallId>,
    dnd: HashSet<UserId>,
    presence: Recipient<SetBusy>,
    recorder: Addr<CallRecorder>,
    ring_timeout: Duration,
    reconnect_grace: Duration,
    /// Call credentials for the relay, granted and revoked as the state machine says.
    ice: Ice,
    /// Set once shutdown began: no new calls.
    shutting_down: bool,
    /// Devices found stuck while sending, to drop once the event at hand is done.
    stuck: Vec<(UserId, DeviceId)>,
    /// While an ActOnCall is dispatched: the end record it causes gets a commit waiter, left
    /// in `awaiting_end` for the handler to wait on before it answers.
    acting: bool,
    awaiting_end: Option<oneshot::Receiver<()>>,
    /// Friendships that just ended: invites checked against the database before that are
    /// refused.
    severed: SeveredPairs,
    census: crate::census::Census<3>,
    /// Rings closed apps by Web Push, and learns which sessions have a connected device.
    push: Push,
    /// The cluster this node is part of, if any, and what the router knows through it.
    cluster: Option<crate::cluster::Cluster>,
    remote: Remote,
}

impl CallRouter {
    pub fn new(
        presence: Recipient<SetBusy>,
        recorder: Addr<CallRecorder>,
        ring_timeout: Duration,
        reconnect_grace: Duration,
        ice: Ice,
        push: Push,
        cluster: Option<crate::cluster::Cluster>,
    ) -> Self {
        Self {
            devices: HashMap::new(),
            calls: HashMap::new(),
            user_call: HashMap::new(),
            dnd: HashSet::new(),
            presence,
            recorder,
            ring_timeout,
            reconnect_grace,
            ice,
            shutting_down: false,
            stuck: Vec::new(),
            acting: false,
            awaiting_end: None,
            severed: SeveredPairs::default(),
            census: Default::default(),
            push,
            cluster,
            remote: Remote::default(),
        }
    }

    fn handle_of(&self, user: &UserId, device: &DeviceId) -> Option<&DeviceHandle> {
        self.devices.get(user)?.iter().find(|d| d.id() == *device)
    }

    fn send_to(&mut self, user: &UserId, device: &DeviceId, frame: bytestring::ByteString) {
        if let Some(handle) = self.handle_of(user, device) {
            if !handle.send(frame) {
                self.stuck.push((user.clone(), *device));
            }
        } else {
            self.send_remote(user, device, &frame);
        }
    }

    /// Devices that stopped taking their frames leave, as if their socket had closed: their
    /// calls enter the reconnect grace.
    fn drop_stuck(&mut self, ctx: &mut Context<Self>) {
        while let Some((user, device)) = self.stuck.pop() {
            self.detach(user, device, false, ctx);
        }
    }

    fn reply_error(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        reference: &ClientRef,
        err: &AppError,
    ) {
        crate::metrics::get().error_frame(err.code);
        let frame = ServerFrame::Error {
            reference: reference.as_ref(),
            error: err.code,
            message: &err.message,
        };
        self.send_to(user, device, frame.encode());
    }

    /// Applies `event` to a call and executes what follows from it.
    fn dispatch(
        &mut self,
        id: &CallId,
        event: Event,
        ctx: &mut Context<Self>,
    ) -> Result<(), AppError> {
        let Some(mut slot) = self.calls.remove(id) else {
            return Err(AppError::new(ErrorCode::CallNotFound, "no such call"));
        };
        // A refused event leaves the call untouched, so it simply goes back.
        let (released, outcome) = match slot.call.apply(event, now_ms()) {
            Ok(effects) => (self.execute(&mut slot, effects, ctx), Ok(())),
            Err(CallError::InvalidTransition) => (
                false,
                Err(AppError::new(
                    ErrorCode::InvalidTransition,
                    "the call can't do that in its current state",
                )),
            ),
        };
        if !released {
            self.calls.insert(id.clone(), slot);
        }
        self.drop_stuck(ctx);
        outcome
    }

    /// Runs effects; returns whether the call was released.
    fn execute(&mut self, slot: &mut Slot, effects: Vec<Effect>, ctx: &mut Context<Self>) -> bool {
        let mut released = false;
        for effect in effects {
            match effect {
                Effect::Notify(Target::Device(user, device), notice) => {
                    let frame = encode_notice(&slot.call, &user, notice, &self.ice);
                    self.send_to(&user, &device, frame);
                }
                Effect::Persist(record) => {
                    super::metrics::count(&slot.call, &record);
                    // An end that a client's request caused is acknowledged only once it is
                    // committed, so an acknowledged end survives a crash.
                    let written = match (&record, self.awaiting_end.is_none()) {
                        (Record::Ended { .. }, true) if self.acting => {
                            let (tx, rx) = oneshot::channel();
                            self.awaiting_end = Some(rx);
                            Some(tx)
                        }
                        _ => None,
                    };
                    self.recorder.do_send(WriteRecord { record, written });
                }
                Effect::StartRingTimer => {
                    // Counted from when the call was placed: a ringing call handed over by a
                    // draining node keeps its deadline.
                    let rung = u64::try_from(now_ms() - slot.call.created_at).unwrap_or(0);
                    let left = self
                        .ring_timeout
                        .saturating_sub(Duration::from_millis(rung));
                    let id = slot.call.id.clone();
                    slot.ring_timer = Some(ctx.run_later(left, move |router, ctx| {
                        let _ = router.dispatch(&id, Event::RingTimeout, ctx);
                    }));
                }
                Effect::CancelRingTimer => {
                    if let Some(timer) = slot.ring_timer.take() {
                        ctx.cancel_future(timer);
                    }
                }
                Effect::StartGrace(role) => {
                    let id = slot.call.id.clone();
                    slot.grace[role_index(role)] =
                        Some(ctx.run_later(self.reconnect_grace, move |router, ctx| {
                            let _ = router.dispatch(&id, Event::GraceExpired { role }, ctx);
                        }));
                }
                Effect::CancelGrace(role) => {
                    if let Some(timer) = slot.grace[role_index(role)].take() {
                        ctx.cancel_future(timer);
                    }
                }
                Effect::SetBusy(busy) => {
                    if busy {
                        self.publish_live(&slot.call, false);
                    }
                    for party in [&slot.call.caller, &slot.call.callee] {
                        self.presence.do_send(SetBusy {
                            user: party.user.clone(),
                            busy,
                        });
                        self.publish_busy(&party.user, busy);
                    }
                }
                Effect::GrantRelay(role) => {
                    self.ice.grant(&slot.call.id, &slot.call.party(role).user);
                }
                Effect::RevokeRelay(role) => {
                    self.ice.revoke(&slot.call.id, &slot.call.party(role).user);
                }
                Effect::Push(notice) => {
                    let callee = &slot.call.callee.user;
                    let open = open_sessions(&self.devices, callee, &slot.open_elsewhere);
                    self.push.call(&slot.call, notice, &open);
                }
                Effect::Release => {
                    released = true;
                    for party in [&slot.call.caller, &slot.call.callee] {
                        if self.user_call.get(&party.user) == Some(&slot.call.id) {
                            self.user_call.remove(&party.user);
                        }
                    }
                    let reason = match slot.call.phase {
                        Phase::Ended(reason) => Some(reason),
                        _ => None,
                    };
                    self.forget_remote(&slot.call.id, reason, &slot.nodes);
                    self.publish_live(&slot.call, true);
                }
            }
        }
        released
    }

    fn summary(call: &Call, user: &UserId) -> Option<CallSummary> {
        let role = call.role_of(user)?;
        let peer = match role {
            Role::Caller => &call.callee,
            Role::Callee => &call.caller,
        };
        let state = match call.phase {
            Phase::Ringing if role == Role::Callee => LiveState::Ringing,
            Phase::Ringing => LiveState::Calling,
            Phase::Active => LiveState::Active,
            Phase::Ended(_) => return None,
        };
        Some(CallSummary {
            call_id: call.id.clone(),
            peer: peer.username.clone(),
            direction: match role {
                Role::Caller => Direction::Outgoing,
                Role::Callee => Direction::Incoming,
            },
            media: call.media,
            state,
        })
    }
}

fn encode_notice(call: &Call, to: &UserId, notice: Notice, ice: &Ice) -> bytestring::ByteString {
    let id = &call.id;
    let peer = if *to == call.caller.user {
        &call.callee
    } else {
        &call.caller
    };
    let ice_servers = match notice {
        Notice::Accepted { .. } => ice.servers(to, Scope::Call(&call.id)),
        _ => Vec::new(),
    };
    match notice {
        Notice::Incoming => ServerFrame::CallIncoming {
            call_id: id,
            from: &call.caller.username,
            display_name: &call.caller.display_name,
            media: call.media,
        },
        Notice::Ringing => ServerFrame::CallRinging { call_id: id },
        Notice::Accepted { offerer } => ServerFrame::CallAccepted {
            call_id: id,
            peer: &peer.username,
            offerer,
            ice_servers: &ice_servers,
        },
        Notice::AnsweredElsewhere => ServerFrame::CallAnsweredElsewhere { call_id: id },
        Notice::Resumed => ServerFrame::CallResumed {
            call_id: id,
            peer: &peer.username,
        },
        Notice::Ended(reason) => ServerFrame::CallEnded {
            call_id: id,
            reason,
        },
    }
    .encode()
}

impl Actor for CallRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.cluster.is_some() {
            // Live calls' keys expire unless written again (crate::cluster::calls).
            ctx.run_interval(crate::cluster::calls::CALL_REFRESH, |router, _| {
                for slot in router.calls.values() {
                    router.publish_live(&slot.call, false);
                }
            });
        }
        ctx.run_interval(crate::census::EVERY, |router, _| {
            let devices = router.devices.values().map(|d| d.len()).sum();
            router.census.report(
                "call router",
                [
                    ("calls", router.calls.len()),
                    ("users in calls", router.user_call.len()),
                    ("devices", devices),
                ],
            );
        });
    }
}

/// A device authenticated. Answers with the call ringing for the user, or the user's call to
/// resume, if any.
#[derive(Message)]
#[rtype(result = "Vec<CallSummary>")]
pub struct Attach {
    pub user: UserId,
    pub device: DeviceHandle,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub user: UserId,
    pub device: DeviceId,
    /// The device's session was revoked: its call credential is revoked with it.
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct Placed {
    pub call_id: CallId,
    /// The invite met the callee's own invite (glare) and joined that call.
    pub merged: bool,
}

/// Start a call. Friendship was checked by the sender. Without a device (REST), the caller's
/// most recently connected device takes the call.
#[derive(Message)]
#[rtype(result = "Result<Placed, AppError>")]
pub struct PlaceCall {
    pub caller: Party,
    pub device: Option<DeviceId>,
    pub callee: Party,
    pub media: Media,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAction {
    Accept,
    Reject {
        reason: Option<String>,
    },
    Cancel,
    Hangup {
        reason: Option<String>,
    },
    Resume,
    /// Whatever ends the call from where it stands (REST): cancel, reject or hang up.
    End,
}

#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub struct ActOnCall {
    pub user: UserId,
    pub device: Option<DeviceId>,
    pub call_id: CallId,
    pub action: CallAction,
}

/// A `signal` frame from a device; answered with `ack`/`error` frames, not a reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelaySignal {
    pub user: UserId,
    pub device: DeviceId,
    pub reference: ClientRef,
    pub call_id: CallId,
    pub kind: SignalKind,
    /// Raw JSON as the client sent it (the SDP was checked by the session).
    pub sdp: Option<Box<RawValue>>,
    pub candidate: Option<Box<RawValue>>,
}

/// The friendship of `users[0]` and `users[1]` ended (`users[0]` unfriended or blocked the
/// other, or deleted their account): a call between them ends, losing its relay credentials,
/// and no invite between them is placed from now on, even one checked against the database
/// just before. Answered once done, so the REST request returns after it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeersSevered {
    pub users: [UserId; 2],
}

/// How long the ack of an end waits for its record's commit (a few milliseconds normally);
/// past it, during an outage, the ack goes out and the record waits in the recorder.
const END_COMMIT_WAIT: Duration = Duration::from_secs(2);

/// How long shutdown waits for the last call records to be written.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// `users[0]` and `users[1]` became friends again: invites between them are placed again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeersBefriended {
    pub users: [UserId; 2],
}

/// End every call with `server_shutdown`: answers once every participant was sent its
/// `call.ended` (the records are written by [`FlushRecords`]). A cluster node hands its calls
/// to another node instead, while one is alive, and answers once their new owner is recorded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndAllCalls;

/// Answers once every call record queued so far is written, or after [`SHUTDOWN_FLUSH`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushRecords;

impl Handler<Attach> for CallRouter {
    type Result = ResponseActFuture<Self, Vec<CallSummary>>;

    /// In a cluster, a user with no call here is looked up in Redis (their call may be
    /// owned by another node: the device can resume it here, or ring for it). The lookup
    /// waits until the directory entry the hub wrote for this device is sent: an invite
    /// reserves, then reads the directory, so it rings this node or this lookup finds it.
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        let (user, device) = (msg.user.clone(), msg.device.id());
        let here = self.attach(msg, ctx);
        let lookup = match &self.cluster {
            Some(cluster) if here.is_empty() && !self.user_call.contains_key(&user) => {
                cluster.clone()
            }
            _ => return Box::pin(fut::ready(here)),
        };
        let read = async move {
            lookup.flushed().await;
            lookup.call_of(&user).await.map(|found| (user, found))
        };
        Box::pin(read.into_actor(self).map(move |found, router, _| {
            match found {
                Ok((user, found)) => router
                    .attach_elsewhere(&user, device, found)
                    .into_iter()
                    .collect(),
                Err(why) => {
                    log::warn!("cluster: a call elsewhere is unknown at connect: {why}");
                    Vec::new()
                }
            }
        }))
    }
}

impl CallRouter {
    fn attach(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Vec<CallSummary> {
        let device = msg.device.id();
        match self.devices.entry(msg.user.clone()) {
            Entry::Vacant(vacant) => {
                vacant.insert(Box::new([msg.device]));
            }
            Entry::Occupied(mut devices) => {
                let mut list = std::mem::take(devices.get_mut()).into_vec();
                list.push(msg.device);
                *devices.get_mut() = list.into_boxed_slice();
            }
        }
        let Some(id) = self.user_call.get(&msg.user).cloned() else {
            return vec![];
        };
        let ringing_for_me = self
            .calls
            .get(&id)
            .is_some_and(|s| s.call.phase == Phase::Ringing && s.call.callee.user == msg.user);
        if ringing_for_me {
            let _ = self.dispatch(&id, Event::DeviceJoined { device }, ctx);
        }
        let slot = self.calls.get(&id);
        if slot.is_some_and(|s| s.call.phase == Phase::Active) {
            // Presence may have gone offline and back during the reconnect grace.
            self.presence.do_send(SetBusy {
                user: msg.user.clone(),
                busy: true,
            });
        }
        let summary = slot.and_then(|s| Self::summary(&s.call, &msg.user));
        summary.into_iter().collect()
    }
}

impl Handler<Detach> for CallRouter {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        self.detach(msg.user, msg.device, msg.revoked, ctx);
    }
}

impl CallRouter {
    /// The device is gone: forget it, and let its call know (which may start the grace).
    fn detach(&mut self, user: UserId, device: DeviceId, revoked: bool, ctx: &mut Context<Self>) {
        if let Some(devices) = self.devices.get_mut(&user) {
            let mut list = std::mem::take(devices).into_vec();
            list.retain(|d| d.id() != device);
            if list.is_empty() {
                self.devices.remove(&user);
            } else {
                *devices = list.into_boxed_slice();
            }
        }
        if let Some(id) = self.user_call.get(&user).cloned() {
            let _ = self.dispatch(&id, Event::DeviceLeft { device, revoked }, ctx);
        } else {
            self.forward_left(&user, device, revoked);
        }
    }
}

impl Handler<PlaceCall> for CallRouter {
    type Result = ResponseActFuture<Self, Result<Placed, AppError>>;

    /// In a cluster, both users are reserved first, then the directory is read (two Redis
    /// round trips): is the callee online, or busy, on other nodes? A call placed over REST
    /// by a caller whose devices are all on other nodes is placed on one of those.
    fn handle(&mut self, msg: PlaceCall, ctx: &mut Context<Self>) -> Self::Result {
        let device = match self.caller_device(&msg) {
            Ok(device) => device,
            // Over REST in a cluster, the caller's device may be on another node.
            Err(err) => {
                let elsewhere = match msg.device {
                    None => self.place_elsewhere(msg, ctx),
                    Some(_) => None,
                };
                return match elsewhere {
                    Some(placed) => Box::pin(placed.into_actor(self)),
                    None => Box::pin(fut::ready(Err(err))),
                };
            }
        };
        if let Some(merged) = self.glare_elsewhere(&msg.caller.user, &msg.callee.user, device, ctx)
        {
            return Box::pin(merged.into_actor(self));
        }
        let id = CallId::new();
        let Some(cluster) = self.cluster.clone() else {
            return Box::pin(fut::ready(self.place(msg, device, id, Ok(None), ctx)));
        };
        // Both users are reserved for the call in Redis, atomically, before anything rings:
        // a user is never in two calls, and invites that cross between nodes meet (glare).
        // The directory is read after: a device of the callee that joins a node meanwhile
        // either is in it, or finds the reservation when it attaches (see `Attach`).
        let live = cluster::LiveCall {
            owner: cluster.node().to_owned(),
            caller: msg.caller.user.to_string(),
            callee: msg.callee.user.to_string(),
            caller_name: msg.caller.username.clone(),
            callee_name: msg.callee.username.clone(),
            media: msg.media,
            active: false,
        };
        let users = [msg.caller.user.clone(), msg.callee.user.clone()];
        let reserving = id.clone();
        let read = async move {
            let reserved = cluster.reserve(&reserving, &live).await?;
            match cluster.read(std::slice::from_ref(&users[1])).await {
                Ok(views) => Ok((views, reserved)),
                Err(why) => {
                    // Placed as when Redis cannot be reached: without the reservation.
                    if reserved == crate::cluster::calls::Reserved::Ok {
                        cluster.call_live(&reserving, [&users[0], &users[1]], None);
                    }
                    Err(why)
                }
            }
        };
        Box::pin(read.into_actor(self).then(move |found, router, ctx| {
            let placed = router.place_reserved(msg, device, id, found, ctx);
            router.drop_stuck(ctx);
            placed
        }))
    }
}

impl CallRouter {
    /// The caller's device that places the call: the one given, else (REST) the most recently
    /// connected one.
    fn caller_device(&self, msg: &PlaceCall) -> Result<DeviceId, AppError> {
        match msg.device {
            Some(d) => Ok(d),
            None => self
                .devices
                .get(&msg.caller.user)
                .and_then(|ds| ds.last())
                .map(|d| d.id())
                .ok_or_else(|| {
                    AppError::new(
                        ErrorCode::NotConnected,
                        "connect a device over /ws to place calls",
                    )
                }),
        }
    }

    /// Places the call; `elsewhere` is what the directory says of the callee on other nodes
    /// (`Ok(None)` alone, `Err` when Redis could not say).
    fn place(
        &mut self,
        msg: PlaceCall,
        device: DeviceId,
        id: CallId,
        elsewhere: Result<Option<Elsewhere>, String>,
        ctx: &mut Context<Self>,
    ) -> Result<Placed, AppError> {
        if self.shutting_down {
            return Err(AppError::new(
                ErrorCode::Unavailable,
                "the server is shutting down",
            ));
        }
        if msg.caller.user == msg.callee.user {
            return Err(AppError::new(
                ErrorCode::CannotCallSelf,
                "you can't call yourself",
            ));
        }
        if self
            .severed
            .contains(&msg.caller.user, &msg.callee.user, Instant::now())
        {
            return Err(AppError::new(
                ErrorCode::NotFriends,
                "you can only call your friends",
            ));
        }
        if self.remote.away(&msg.caller.user).is_some() {
            return Err(AppError::new(
                ErrorCode::AlreadyInCall,
                "you are already in a call",
            ));
        }
        if let Some(existing) = self.user_call.get(&msg.caller.user).cloned() {
            // Glare: the callee is already ringing us; join their call instead of a second one.
            let glare = self.calls.get(&existing).is_some_and(|s| {
                s.call.phase == Phase::Ringing
                    && s.call.caller.user == msg.callee.user
                    && s.call.callee.user == msg.caller.user
            });
            if !glare {
                return Err(AppError::new(
                    ErrorCode::AlreadyInCall,
                    "you are already in a call",
                ));
            }
            let accept = Event::Accept {
                device,
                offerer: Role::Caller,
                announce: true,
            };
            self.dispatch(&existing, accept, ctx)?;
            return Ok(Placed {
                call_id: existing,
                merged: true,
            });
        }
        let callee_devices: Vec<DeviceId> = self
            .devices
            .get(&msg.callee.user)
            .map(|ds| ds.iter().map(|d| d.id()).collect())
            .unwrap_or_default();
        let elsewhere = match elsewhere {
            Ok(elsewhere) => elsewhere,
            // Redis cannot say: a callee with devices here still rings here.
            Err(why) if callee_devices.is_empty() => {
                return Err(AppError::new(
                    ErrorCode::Unavailable,
                    format!("the other servers cannot be reached: {why}"),
                ))
            }
            Err(_) => None,
        };
        let busy = self.user_call.contains_key(&msg.callee.user)
            || self.remote.away(&msg.callee.user).is_some()
            || self.dnd.contains(&msg.callee.user)
            || elsewhere.as_ref().is_some_and(|e| e.busy);
        let open_elsewhere: Box<[SessionKey]> = match &elsewhere {
            Some(e) => e.sessions.iter().copied().collect(),
            None => Box::new([]),
        };
        let open = open_sessions(&self.devices, &msg.callee.user, &open_elsewhere);
        let pushable = !busy && self.push.can_ring(&msg.callee.user, &open);
        let invite = Invite {
            id: id.clone(),
            caller: msg.caller,
            caller_device: Some(device),
            callee: msg.callee,
            media: msg.media,
            callee_devices,
            callee_busy: busy,
            callee_pushable: pushable,
            callee_elsewhere: elsewhere.as_ref().is_some_and(|e| !e.nodes.is_empty()),
        };
        let (call, effects) = Call::invite(invite, now_ms());
        let mut slot = Slot {
            call,
            ring_timer: None,
            grace: [None, None],
            live: [None, None],
            nodes: Vec::new(),
            open_elsewhere,
        };
        let ring_nodes = match elsewhere {
            Some(e) if !slot.call.is_over() && !busy => e.nodes,
            _ => Vec::new(),
        };
        if !slot.call.is_over() {
            self.user_call
                .insert(slot.call.caller.user.clone(), id.clone());
            self.user_call
                .insert(slot.call.callee.user.clone(), id.clone());
        }
        if !self.execute(&mut slot, effects, ctx) {
            self.publish_live(&slot.call, false);
            self.calls.insert(id.clone(), slot);
            self.ring_elsewhere(&id, &ring_nodes);
        }
        Ok(Placed {
            call_id: id,
            merged: false,
        })
    }
}

impl Handler<ActOnCall> for CallRouter {
    type Result = ResponseFuture<Result<(), AppError>>;

    /// Answers once the action is applied, and when it ended the call, once the end is
    /// committed to the database.
    fn handle(&mut self, msg: ActOnCall, ctx: &mut Context<Self>) -> Self::Result {
        if !self.calls.contains_key(&msg.call_id) {
            if let Some(forwarded) = self.act_elsewhere(&msg, ctx) {
                return forwarded;
            }
        }
        self.acting = true;
        let outcome = self.act(msg, ctx);
        self.acting = false;
        let written = self.awaiting_end.take();
        Box::pin(async move {
            if let Some(written) = written {
                // With the database down the record waits in the recorder's queue, to be written
                // when it is back; the client is not kept waiting for that.
                let _ = tokio::time::timeout(END_COMMIT_WAIT, written).await;
            }
            outcome
        })
    }
}

impl CallRouter {
    /// An action on a call of this user owned by another node goes there. An end over REST
    /// (no device) of a call this node knows nothing of is looked up in Redis first.
    fn act_elsewhere(
        &mut self,
        msg: &ActOnCall,
        ctx: &mut Context<Self>,
    ) -> Option<ResponseFuture<Result<(), AppError>>> {
        let away = self
            .remote
            .away(&msg.user)
            .filter(|a| a.call == msg.call_id);
        let Some(away) = away else {
            return match (&msg.device, &msg.action) {
                (None, CallAction::End) => self.end_elsewhere(msg, ctx),
                _ => None,
            };
        };
        let owner = away.owner.clone();
        let action = match &msg.action {
            CallAction::Accept => RemoteAction::Accept,
            CallAction::Reject { reason } => RemoteAction::Reject {
                reason: reason.clone(),
            },
            CallAction::Cancel => RemoteAction::Cancel,
            CallAction::Hangup { reason } => RemoteAction::Hangup {
                reason: reason.clone(),
            },
            CallAction::End => RemoteAction::End,
            CallAction::Resume => RemoteAction::Resume,
        };
        let call = msg.call_id.clone();
        Some(match msg.device {
            Some(device) => self.forward_act(&owner, &call, &msg.user, device, action, ctx),
            None if action == RemoteAction::End => self.forward_end(&owner, &call, &msg.user, ctx),
            None => Box::pin(async {
                Err(AppError::new(
                    ErrorCode::NotConnected,
                    "needs a connected device",
                ))
            }),
        })
    }

    fn act(&mut self, msg: ActOnCall, ctx: &mut Context<Self>) -> Result<(), AppError> {
        let not_found = || AppError::new(ErrorCode::CallNotFound, "no such call");
        let slot = self.calls.get(&msg.call_id).ok_or_else(not_found)?;
        // Strangers can't learn that a call exists.
        let role = slot.call.role_of(&msg.user).ok_or_else(not_found)?;
        let wrong_side = |what: &str| {
            AppError::new(
                ErrorCode::InvalidTransition,
                format!("only the {what} can do that"),
            )
        };
        let device = || {
            msg.device
                .ok_or_else(|| AppError::new(ErrorCode::NotConnected, "needs a connected device"))
        };
        let event = match (msg.action, role) {
            (CallAction::Accept, Role::Callee) => Event::Accept {
                device: device()?,
                offerer: Role::Caller,
                announce: false,
            },
            (CallAction::Reject { reason }, Role::Callee) => Event::Reject { reason },
            (CallAction::Accept | CallAction::Reject { .. }, Role::Caller) => {
                return Err(wrong_side("callee"))
            }
            (CallAction::Cancel, Role::Caller) => Event::Cancel,
            (CallAction::Cancel, Role::Callee) => return Err(wrong_side("caller")),
            (CallAction::Hangup { reason }, by) => Event::Hangup { by, reason },
            (CallAction::Resume, role) => Event::Resume {
                role,
                device: device()?,
            },
            (CallAction::End, by) => Event::Hangup { by, reason: None },
        };
        self.dispatch(&msg.call_id, event, ctx)
    }
}

impl Handler<RelaySignal> for CallRouter {
    type Result = ();

    fn handle(&mut self, msg: RelaySignal, ctx: &mut Context<Self>) {
        if !self.calls.contains_key(&msg.call_id) {
            let owner = self
                .remote
                .away(&msg.user)
                .filter(|a| a.call == msg.call_id)
                .map(|a| a.owner.clone());
            if let Some(owner) = owner {
                return self.forward_signal(&owner, msg);
            }
        }
        self.relay(msg, ctx);
    }
}

impl CallRouter {
    /// Relays a signal of a call here to the other side, wherever its device is.
    fn relay(&mut self, msg: RelaySignal, ctx: &mut Context<Self>) {
        let outcome = (|| {
            let slot = self
                .calls
                .get_mut(&msg.call_id)
                .filter(|s| s.call.role_of(&msg.user).is_some())
                .ok_or_else(|| AppError::new(ErrorCode::CallNotFound, "no such call"))?;
            let call = &slot.call;
            if call.phase != Phase::Active {
                return Err(AppError::new(
                    ErrorCode::InvalidTransition,
                    "signal only flows in an active call",
                ));
            }
            let (from, to) = if call.caller_device.as_ref() == Some(&msg.device) {
                (Role::Caller, Role::Callee)
            } else if call.callee_device.as_ref() == Some(&msg.device) {
                (Role::Callee, Role::Caller)
            } else {
                return Err(AppError::new(
                    ErrorCode::Forbidden,
                    "this device is not the one in the call",
                ));
            };
            slot.hold(&self.devices, to);
            let call = &slot.call;
            let peer = call.party(to);
            let frame = ServerFrame::Signal {
                call_id: &call.id,
                from: &call.party(from).username,
                kind: msg.kind,
                sdp: msg.sdp.as_deref(),
                candidate: msg.candidate.as_deref(),
            };
            let frame = frame.encode();
            crate::metrics::get().signal_relayed(frame.len());
            let reconnecting =
                || AppError::new(ErrorCode::NotConnected, "the other side is reconnecting");
            let Some(peer_device) = slot.held(to) else {
                // On another node, or gone.
                let device = call.device(to).ok_or_else(reconnecting)?;
                let sent = cluster::send_remote(
                    self.cluster.as_ref(),
                    &self.remote,
                    &peer.user,
                    device,
                    &frame,
                );
                return if sent { Ok(from) } else { Err(reconnecting()) };
            };
            if peer_device.send(frame) {
                Ok(from)
            } else {
                self.stuck.push((peer.user.clone(), peer_device.id()));
                Err(AppError::new(
                    ErrorCode::NotConnected,
                    "the other side is reconnecting",
                ))
            }
        })();
        match outcome {
            Ok(from) => {
                if let Some(reference) = msg.reference.as_ref() {
                    let ack = ServerFrame::Ack {
                        reference,
                        call_id: None,
                        merged: None,
                        ice_servers: None,
                    }
                    .encode();
                    let sender = self.calls.get_mut(&msg.call_id).and_then(|slot| {
                        slot.hold(&self.devices, from);
                        slot.held(from)
                    });
                    match sender {
                        Some(sender) => {
                            if !sender.send(ack) {
                                self.stuck.push((msg.user.clone(), msg.device));
                            }
                        }
                        None => self.send_to(&msg.user, &msg.device, ack),
                    }
                }
            }
            Err(err) => self.reply_error(&msg.user, &msg.device, &msg.reference, &err),
        }
        self.drop_stuck(ctx);
    }
}

impl Handler<DndChanged> for CallRouter {
    type Result = ();

    fn handle(&mut self, msg: DndChanged, _: &mut Context<Self>) {
        if msg.dnd {
            self.dnd.insert(msg.user);
        } else {
            self.dnd.remove(&msg.user);
        }
    }
}

impl Handler<PeersBefriended> for CallRouter {
    type Result = ();

    fn handle(&mut self, msg: PeersBefriended, _: &mut Context<Self>) {
        let [a, b] = &msg.users;
        self.severed.restore(a, b);
        if let Some(cluster) = &self.cluster {
            cluster.relation(&msg.users, false);
        }
    }
}

impl Handler<PeersSevered> for CallRouter {
    type Result = ();

    /// Ends any call between the two at once, as if `users[0]` hung up (cancelled, declined or
    /// completed, by the call's state); ending it revokes its relay credentials. In a
    /// cluster, every other node's router hears it too: the call may be owned there.
    fn handle(&mut self, msg: PeersSevered, ctx: &mut Context<Self>) {
        if let Some(cluster) = &self.cluster {
            cluster.relation(&msg.users, true);
        }
        self.sever(&msg.users, ctx);
    }
}

impl CallRouter {
    /// `users` are friends no more: no call between them from now on, and the one between
    /// them held here ends as if `users[0]` hung up.
    fn sever(&mut self, [blocker, blocked]: &[UserId; 2], ctx: &mut Context<Self>) {
        self.severed.sever(blocker, blocked, Instant::now());
        let Some(id) = self
            .user_call
            .get(blocker)
            .filter(|&id| self.user_call.get(blocked) == Some(id))
            .cloned()
        else {
            return;
        };
        let role = self.calls.get(&id).and_then(|s| s.call.role_of(blocker));
        if let Some(by) = role {
            let _ = self.dispatch(&id, Event::Hangup { by, reason: None }, ctx);
        }
    }
}

impl Handler<EndAllCalls> for CallRouter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: EndAllCalls, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        // In a cluster, which nodes are alive to take the calls is asked first.
        let cluster = self.cluster.clone();
        let counted = async move {
            if let Some(cluster) = cluster {
                cluster.count_nodes().await;
            }
        };
        Box::pin(
            counted
                .into_actor(self)
                .then(|(), router, ctx| router.end_or_hand_over(ctx).into_actor(router)),
        )
    }
}

impl CallRouter {
    fn end_or_hand_over(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = ()> {
        let ids: Vec<CallId> = self.calls.keys().cloned().collect();
        let mut handed = Vec::new();
        for id in ids {
            match self.hand_over(&id, ctx) {
                Some(recorded) => handed.push(recorded),
                None => {
                    let _ = self.dispatch(&id, Event::Shutdown, ctx);
                }
            }
        }
        async move {
            // Bounded: with the database away the new owners stay unrecorded (logged).
            let all = futures_util::future::join_all(handed);
            let _ = tokio::time::timeout(HANDOVER_RECORD_WAIT, all).await;
        }
    }
}

/// How long shutdown waits for the new owners of handed-over calls to be recorded.
const HANDOVER_RECORD_WAIT: Duration = Duration::from_secs(3);

impl Handler<FlushRecords> for CallRouter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: FlushRecords, _: &mut Context<Self>) -> Self::Result {
        let recorder = self.recorder.clone();
        Box::pin(async move {
            // Bounded: with the database down, the records stay queued and are lost with the
            // process rather than holding the shutdown forever.
            if tokio::time::timeout(SHUTDOWN_FLUSH, recorder.send(Flush))
                .await
                .is_err()
            {
                log::error!("shutting down with call records unwritten (database unavailable)");
            }
        })
    }
}

//! The call router's side of a cluster (docs/cluster.md, "Calls across nodes"). Alone (no
//! `--redis-url`), nothing here runs and its tables stay empty.
//!
//! A call lives on the node that placed it, its *owner* (the caller's node): its state machine
//! runs there, as on a single broker. The callee's devices on other nodes are *remote devices*
//! of that router: frames for them go to their node's channel (`call_frame`), and what they do
//! (accept, reject, hang up, signal, leave) comes back on the owner's channel (`call_act`,
//! `call_signal`). The node holding them keeps, per user, the call they are in and its owner
//! (`Away`), so it knows where to send what its devices do.
use super::super::recorder::SetOwner;
use super::{CallRouter, Placed, RelaySignal};
use crate::cluster::bus::{Body, Envelope, PlacedThere, RemoteAction, RemoteError};
pub(super) use crate::cluster::calls::LiveCall;
use crate::cluster::calls::{HandedCall, HandedParty, Reserved};
use crate::cluster::directory::{self, NodeView};
use crate::cluster::{CallEvent, Cluster};
use crate::error::{AppError, ErrorCode};
use crate::ids::{CallId, DeviceId, UserId};
use crate::push::index::SessionKey;
use crate::vocabulary::{Direction, LiveState};
use crate::vocabulary::{EndReason, PresenceStatus};
use crate::wire::protocol::CallSummary;
use crate::wire::protocol::ServerFrame;
use actix::prelude::*;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a device's action waits for the owner's answer before it is refused.
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// How long a node waits for a `call_place` to be answered: placing takes two Redis round
/// trips (reserve, then read the directory), each bounded by the Redis timeout.
const PLACE_WAIT: Duration = Duration::from_secs(2 * crate::cluster::bus::TIMEOUT.as_secs() + 1);

/// Devices of one user that one `call_ringing` may add to a call; more are ignored.
const MAX_RINGING: usize = 32;

/// The cluster state of one router.
#[derive(Default)]
pub(super) struct Remote {
    /// Owner side: devices on other nodes taking part in this node's calls, with their user
    /// and node. Only devices of users in a call here, and at most [`MAX_RINGING`] a node.
    devices: HashMap<DeviceId, (UserId, String)>,
    /// Device side: users held here who are in a call owned by another node. One entry per
    /// user at most, for users with a device here when the call rang.
    away: HashMap<UserId, Away>,
    /// Actions sent to an owner, waiting for its answer; the accepted ones note the call and
    /// user whose relay credential to honour here.
    pending: HashMap<u64, Pending>,
    next_reply: u64,
    /// Owner side: calls that ended lately, with why, for devices that answer `call_ringing`
    /// after the end (a cancel can overtake it): they are told `call.ended` too.
    ended: VecDeque<(CallId, EndReason)>,
}

/// Calls remembered in [`Remote::ended`].
const ENDED_KEPT: usize = 1024;

/// A call of a user held here, owned by another node.
pub(super) struct Away {
    pub call: CallId,
    pub owner: String,
    /// Who called: inviting them back while rung is glare.
    caller: UserId,
}

/// Places `msg` on `node`, which holds a device of its caller: see
/// [`CallRouter::place_elsewhere`].
#[derive(Message)]
#[rtype(result = "Result<Placed, AppError>")]
pub(super) struct PlaceOn {
    node: String,
    msg: super::PlaceCall,
}

impl Handler<PlaceOn> for CallRouter {
    type Result = ResponseFuture<Result<Placed, AppError>>;

    fn handle(&mut self, on: PlaceOn, ctx: &mut Context<Self>) -> Self::Result {
        let PlaceOn { node, msg } = on;
        let place = |reply| Body::CallPlace {
            caller: Box::new(HandedParty::new(&msg.caller, None)),
            callee: Box::new(HandedParty::new(&msg.callee, None)),
            media: msg.media,
            reply,
        };
        let asked = self.ask_owner(&node, None, place, PLACE_WAIT, ctx);
        Box::pin(async move {
            let placed = asked.await?.ok_or_else(|| {
                AppError::internal("the server that placed the call did not say which")
            })?;
            Ok(Placed {
                call_id: CallId::from(placed.call),
                merged: placed.merged,
            })
        })
    }
}

/// Ends `call` of `user`, owned by `owner`, over REST: see [`CallRouter::end_elsewhere`].
#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub(super) struct EndOn {
    owner: String,
    call: CallId,
    user: UserId,
}

impl Handler<EndOn> for CallRouter {
    type Result = ResponseFuture<Result<(), AppError>>;

    fn handle(&mut self, msg: EndOn, ctx: &mut Context<Self>) -> Self::Result {
        self.forward_end(&msg.owner, &msg.call, &msg.user, ctx)
    }
}

struct Pending {
    answer: oneshot::Sender<Result<Option<PlacedThere>, AppError>>,
    accepted: Option<(CallId, UserId)>,
}

/// Other nodes' views of some users, as the directory read gives them.
pub(super) type Directory = HashMap<UserId, Vec<(String, NodeView)>>;

/// What the directory says of a callee on other nodes.
pub(super) struct Elsewhere {
    /// The other nodes that have a device of theirs.
    pub nodes: Vec<String>,
    /// They are in a call or on do-not-disturb there.
    pub busy: bool,
    /// The sessions of their devices there: apps open elsewhere are not rung by push.
    pub sessions: Vec<SessionKey>,
}

impl Elsewhere {
    /// From the callee's directory entry, and whether they are in a live call owned by
    /// another node (one owned here is in the router's own tables).
    pub(super) fn from(views: &[(String, NodeView)], in_call: bool) -> Self {
        let merged = directory::merge(views.iter().map(|(_, v)| v));
        Self {
            nodes: views
                .iter()
                .filter(|(_, v)| v.devices > 0)
                .map(|(node, _)| node.clone())
                .collect(),
            busy: in_call
                || merged.is_some_and(|p| {
                    matches!(p.status, PresenceStatus::Busy | PresenceStatus::Dnd)
                }),
            sessions: views
                .iter()
                .filter(|(_, v)| v.devices > 0)
                .flat_map(|(_, v)| &v.sessions)
                .filter_map(|s| crate::cluster::marked_session(s))
                .collect(),
        }
    }
}

impl Remote {
    /// The node that holds `device` of `user` for a call here, if it is remote.
    pub(super) fn node_of(&self, user: &UserId, device: &DeviceId) -> Option<&str> {
        self.devices
            .get(device)
            .filter(|(u, _)| u == user)
            .map(|(_, node)| node.as_str())
    }

    /// The call `user` (held here) is in on another node.
    pub(super) fn away(&self, user: &UserId) -> Option<&Away> {
        self.away.get(user)
    }
}

impl CallRouter {
    /// Sends `frame` to a device of a call here that is held by another node; `false` if the
    /// device is not remote.
    pub(super) fn send_remote(
        &self,
        user: &UserId,
        device: &DeviceId,
        frame: &bytestring::ByteString,
    ) -> bool {
        send_remote(self.cluster.as_ref(), &self.remote, user, device, frame)
    }

    /// Tells every node holding `user` that a call has them busy, or no more.
    pub(super) fn publish_busy(&self, user: &UserId, busy: bool) {
        if let Some(cluster) = &self.cluster {
            cluster.send_to(user, Body::Busy { busy });
        }
    }

    /// Writes a call's owner and state to Redis (`over`: removes them), so that a device of
    /// its users connecting to another node finds it.
    pub(super) fn publish_live(&self, call: &super::Call, over: bool) {
        if let Some(cluster) = &self.cluster {
            self.publish_live_as(call, (!over).then(|| cluster.node()));
        }
    }

    /// Writes a call's state to Redis as held by `owner` (`None`: removes it).
    fn publish_live_as(&self, call: &super::Call, owner: Option<&str>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let live = owner.map(|owner| LiveCall {
            owner: owner.to_owned(),
            caller: call.caller.user.to_string(),
            callee: call.callee.user.to_string(),
            caller_name: call.caller.username.clone(),
            callee_name: call.callee.username.clone(),
            media: call.media,
            active: call.phase == super::Phase::Active,
        });
        cluster.call_live(
            &call.id,
            [&call.caller.user, &call.callee.user],
            live.as_ref(),
        );
    }

    /// Device side, at connect: the user's call owned by another node, for `welcome`. The
    /// device can resume it here (and rings, if the call rings for it).
    pub(super) fn attach_elsewhere(
        &mut self,
        user: &UserId,
        device: DeviceId,
        found: Option<(CallId, LiveCall)>,
    ) -> Option<CallSummary> {
        let cluster = self.cluster.as_ref()?;
        let (call, live) = found?;
        if live.owner == cluster.node() || self.user_call.contains_key(user) {
            return None;
        }
        let caller = UserId::from(live.caller.clone());
        let role = if *user == caller {
            super::Role::Caller
        } else {
            super::Role::Callee
        };
        let state = match (live.active, role) {
            (true, _) => LiveState::Active,
            (false, super::Role::Callee) => LiveState::Ringing,
            (false, super::Role::Caller) => LiveState::Calling,
        };
        if state == LiveState::Ringing {
            cluster.to_node(
                &live.owner,
                Body::CallRinging {
                    call: call.to_string(),
                    user: user.to_string(),
                    devices: vec![device],
                },
            );
        }
        let (peer, direction) = match role {
            super::Role::Caller => (live.callee_name, Direction::Outgoing),
            super::Role::Callee => (live.caller_name, Direction::Incoming),
        };
        self.remote.away.insert(
            user.clone(),
            Away {
                call: call.clone(),
                owner: live.owner,
                caller,
            },
        );
        Some(CallSummary {
            call_id: call,
            peer,
            direction,
            media: live.media,
            state,
        })
    }

    /// A call placed here rings the callee's devices on `nodes`, the other nodes that hold
    /// them by the directory. Each node's own channel, always subscribed: a node's
    /// subscription to a user's channel may still be on its way when the user just connected.
    pub(super) fn ring_elsewhere(&self, id: &CallId, nodes: &[String]) {
        let (Some(cluster), Some(slot)) = (&self.cluster, self.calls.get(id)) else {
            return;
        };
        let call = &slot.call;
        for node in nodes {
            let ring = Body::CallRing {
                call: call.id.to_string(),
                callee: call.callee.user.to_string(),
                caller: call.caller.user.to_string(),
                caller_name: call.caller.username.clone(),
                display_name: call.caller.display_name.clone(),
                media: call.media,
            };
            cluster.to_node(node, ring);
        }
    }

    /// A call here is released: the nodes that rang for it forget it, and its remote devices
    /// are dropped.
    pub(super) fn forget_remote(
        &mut self,
        id: &CallId,
        reason: Option<EndReason>,
        nodes: &[(String, UserId)],
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if let Some(reason) = reason {
            if self.remote.ended.len() == ENDED_KEPT {
                self.remote.ended.pop_front();
            }
            self.remote.ended.push_back((id.clone(), reason));
        }
        for (node, user) in nodes {
            cluster.to_node(
                node,
                Body::CallOver {
                    call: id.to_string(),
                    user: user.to_string(),
                },
            );
        }
        let users: Vec<&UserId> = nodes.iter().map(|(_, u)| u).collect();
        self.remote
            .devices
            .retain(|_, (u, _)| !users.contains(&&*u));
    }

    /// Device side: an action of a device here on a call owned by `owner`, sent there; the
    /// answer is the owner's.
    pub(super) fn forward_act(
        &mut self,
        owner: &str,
        call: &CallId,
        user: &UserId,
        device: DeviceId,
        action: RemoteAction,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<(), AppError>> {
        let accepted = (action == RemoteAction::Accept || action == RemoteAction::Glare)
            .then(|| (call.clone(), user.clone()));
        let act = |reply| Body::CallAct {
            call: call.to_string(),
            user: user.to_string(),
            device,
            action,
            reply: Some(reply),
        };
        let asked = self.ask_owner(owner, accepted, act, REPLY_WAIT, ctx);
        Box::pin(async move { asked.await.map(drop) })
    }

    /// Device-less side: `user` ends `call`, owned by `owner`, over REST; answers once the
    /// owner has (at most [`REPLY_WAIT`]).
    pub(super) fn forward_end(
        &mut self,
        owner: &str,
        call: &CallId,
        user: &UserId,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<(), AppError>> {
        let end = |reply| Body::CallEnd {
            call: call.to_string(),
            user: user.to_string(),
            reply,
        };
        let asked = self.ask_owner(owner, None, end, REPLY_WAIT, ctx);
        Box::pin(async move { asked.await.map(drop) })
    }

    /// Device-less side: `msg` ends over REST a call not known here. Redis says whether its
    /// user is in it and which node owns it, and the end goes there. `None` outside a cluster.
    pub(super) fn end_elsewhere(
        &mut self,
        msg: &super::ActOnCall,
        ctx: &mut Context<Self>,
    ) -> Option<ResponseFuture<Result<(), AppError>>> {
        let cluster = self.cluster.clone()?;
        let router = ctx.address();
        let (user, call) = (msg.user.clone(), msg.call_id.clone());
        Some(Box::pin(async move {
            let found = cluster.call_of(&user).await.map_err(|why| {
                AppError::new(
                    ErrorCode::Unavailable,
                    format!("the other servers cannot be reached: {why}"),
                )
            })?;
            let owner = match found {
                Some((id, live)) if id == call && live.owner != cluster.node() => live.owner,
                _ => return Err(AppError::new(ErrorCode::CallNotFound, "no such call")),
            };
            let asked = router.send(EndOn { owner, call, user });
            asked.await.map_err(AppError::internal)?
        }))
    }

    /// Device-less side: `msg` places a call over REST for a caller with no device here.
    /// The directory says which other node holds one; the call is placed there (and owned
    /// there). `None` outside a cluster.
    pub(super) fn place_elsewhere(
        &mut self,
        msg: super::PlaceCall,
        ctx: &mut Context<Self>,
    ) -> Option<ResponseFuture<Result<Placed, AppError>>> {
        let cluster = self.cluster.clone()?;
        let router = ctx.address();
        Some(Box::pin(async move {
            let caller = msg.caller.user.clone();
            let mut views = cluster
                .read(std::slice::from_ref(&caller))
                .await
                .map_err(|why| {
                    AppError::new(
                        ErrorCode::Unavailable,
                        format!("the other servers cannot be reached: {why}"),
                    )
                })?;
            let node = views
                .remove(&caller)
                .unwrap_or_default()
                .into_iter()
                .find(|(_, view)| view.devices > 0)
                .map(|(node, _)| node)
                .ok_or_else(|| {
                    AppError::new(
                        ErrorCode::NotConnected,
                        "connect a device over /ws to place calls",
                    )
                })?;
            router
                .send(PlaceOn { node, msg })
                .await
                .map_err(AppError::internal)?
        }))
    }

    /// Sends `owner` the message `ask` makes with a reply number, and answers with its
    /// `call_acted` (at most `wait`). `accepted`: the call and user whose relay credential
    /// this node's relay honours once the owner says yes.
    fn ask_owner(
        &mut self,
        owner: &str,
        accepted: Option<(CallId, UserId)>,
        ask: impl FnOnce(u64) -> Body,
        wait: Duration,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Option<PlacedThere>, AppError>> {
        let Some(cluster) = &self.cluster else {
            return Box::pin(async { Err(AppError::new(ErrorCode::CallNotFound, "no such call")) });
        };
        self.remote.next_reply += 1;
        let reply = self.remote.next_reply;
        let (answer, answered) = oneshot::channel();
        self.remote
            .pending
            .insert(reply, Pending { answer, accepted });
        cluster.to_node(owner, ask(reply));
        ctx.run_later(wait, move |router, _| {
            router.remote.pending.remove(&reply);
        });
        Box::pin(async move {
            match tokio::time::timeout(wait, answered).await {
                Ok(Ok(outcome)) => outcome,
                _ => Err(AppError::new(
                    ErrorCode::Unavailable,
                    "the server holding the call did not answer",
                )),
            }
        })
    }

    /// Places a call once its users' reservation in Redis answered (`found`: the callee's
    /// directory entry and the reservation, or why Redis could not say).
    pub(super) fn place_reserved(
        &mut self,
        msg: super::PlaceCall,
        device: DeviceId,
        id: CallId,
        found: Result<(Directory, Reserved), String>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Placed, AppError>> {
        let ready = |placed| -> ResponseActFuture<Self, Result<Placed, AppError>> {
            Box::pin(actix::fut::ready(placed))
        };
        let (mut views, reserved) = match found {
            Ok(found) => found,
            Err(why) => return ready(self.place(msg, device, id, Err(why), ctx)),
        };
        let views = views.remove(&msg.callee.user).unwrap_or_default();
        let me = self.cluster.as_ref().map(|c| c.node().to_owned());
        match reserved {
            Reserved::Glare { call, owner } if Some(&owner) != me.as_ref() => {
                // The callee is calling the caller from another node: answer that call.
                let (caller, callee) = (msg.caller.user.clone(), msg.callee.user.clone());
                let away = Away {
                    call: call.clone(),
                    owner: owner.clone(),
                    caller: callee,
                };
                self.remote.away.insert(caller.clone(), away);
                let answered =
                    self.forward_act(&owner, &call, &caller, device, RemoteAction::Glare, ctx);
                Box::pin(answered.into_actor(self).map(move |outcome, router, _| {
                    if outcome.is_err()
                        && router.remote.away(&caller).is_some_and(|a| a.call == call)
                    {
                        router.remote.away.remove(&caller);
                    }
                    outcome.map(|()| Placed {
                        call_id: call,
                        merged: true,
                    })
                }))
            }
            Reserved::Engaged if !self.user_call.contains_key(&msg.caller.user) => ready(Err(
                AppError::new(ErrorCode::AlreadyInCall, "you are already in a call"),
            )),
            reserved => {
                let busy = reserved == Reserved::Busy;
                let users = [msg.caller.user.clone(), msg.callee.user.clone()];
                let elsewhere = Ok(Some(Elsewhere::from(&views, busy)));
                let placed = self.place(msg, device, id.clone(), elsewhere, ctx);
                if placed.is_err() && reserved == Reserved::Ok {
                    // Refused here after all: the reservation goes.
                    if let Some(cluster) = &self.cluster {
                        cluster.call_live(&id, [&users[0], &users[1]], None);
                    }
                }
                ready(placed)
            }
        }
    }

    /// Device side: the user invites the caller of the call ringing them from another node
    /// (glare): the call is answered instead.
    pub(super) fn glare_elsewhere(
        &mut self,
        caller: &UserId,
        callee: &UserId,
        device: DeviceId,
        ctx: &mut Context<Self>,
    ) -> Option<ResponseFuture<Result<Placed, AppError>>> {
        let away = self.remote.away(caller).filter(|a| a.caller == *callee)?;
        let (call, owner) = (away.call.clone(), away.owner.clone());
        let answered = self.forward_act(&owner, &call, caller, device, RemoteAction::Glare, ctx);
        Some(Box::pin(async move {
            answered.await.map(|()| Placed {
                call_id: call,
                merged: true,
            })
        }))
    }

    /// Device side: a `signal` frame of a device here, for the call's owner to relay.
    pub(super) fn forward_signal(&self, owner: &str, msg: RelaySignal) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        cluster.to_node(
            owner,
            Body::CallSignal {
                call: msg.call_id.to_string(),
                user: msg.user.to_string(),
                device: msg.device,
                reference: msg.reference,
                kind: msg.kind,
                sdp: msg.sdp,
                candidate: msg.candidate,
            },
        );
    }

    /// Device side: a device here in a call owned elsewhere went away.
    pub(super) fn forward_left(&self, user: &UserId, device: DeviceId, revoked: bool) {
        let (Some(cluster), Some(away)) = (&self.cluster, self.remote.away(user)) else {
            return;
        };
        let call = &away.call;
        if revoked {
            self.ice.revoke(call, user);
        }
        cluster.to_node(
            &away.owner,
            Body::CallAct {
                call: call.to_string(),
                user: user.to_string(),
                device,
                action: RemoteAction::Left { revoked },
                reply: None,
            },
        );
    }

    /// Device side: the node owning calls of users here is gone: their calls end for them
    /// here. Owner side: devices on it leave their calls (the reconnect grace starts).
    fn remote_node_lost(&mut self, lost: &str, ctx: &mut Context<Self>) {
        // Calls it held whose both sides were on it: nobody here was told of them.
        self.recorder.do_send(super::super::recorder::CloseCallsOf {
            node: lost.to_owned(),
        });
        let orphans: Vec<(UserId, CallId)> = self
            .remote
            .away
            .iter()
            .filter(|(_, away)| away.owner == lost)
            .map(|(user, away)| (user.clone(), away.call.clone()))
            .collect();
        for (user, call) in orphans {
            self.remote.away.remove(&user);
            self.ice.revoke(&call, &user);
            // Its owner can no longer record the end: this node does, unless it is already
            // recorded (another node holding the other side may do the same).
            self.recorder.do_send(super::WriteRecord {
                record: super::Record::Ended {
                    id: call.clone(),
                    at: crate::time::now_ms(),
                    outcome: EndReason::ConnectionLost,
                    detail: None,
                },
                written: None,
            });
            let frame = ServerFrame::CallEnded {
                call_id: &call,
                reason: EndReason::ConnectionLost,
            }
            .encode();
            let devices: Vec<DeviceId> = self
                .devices
                .get(&user)
                .map(|ds| ds.iter().map(|d| d.id()).collect())
                .unwrap_or_default();
            for device in devices {
                self.send_to(&user, &device, frame.clone());
            }
            self.presence.do_send(crate::availability::SetBusy {
                user: user.clone(),
                busy: false,
            });
        }
        let gone: Vec<(DeviceId, UserId)> = self
            .remote
            .devices
            .iter()
            .filter(|(_, (_, node))| node == lost)
            .map(|(device, (user, _))| (*device, user.clone()))
            .collect();
        for (device, user) in gone {
            self.remote.devices.remove(&device);
            if let Some(id) = self.user_call.get(&user).cloned() {
                let left = super::Event::DeviceLeft {
                    device,
                    revoked: false,
                };
                let _ = self.dispatch(&id, left, ctx);
            }
        }
    }

    /// Device side: a call placed on another node rings `callee` here.
    fn rung(&mut self, owner: String, call: CallId, callee: UserId, ring: Ring) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let devices: Vec<DeviceId> = self
            .devices
            .get(&callee)
            .map(|ds| ds.iter().map(|d| d.id()).take(MAX_RINGING).collect())
            .unwrap_or_default();
        // In a call here or elsewhere already: the owner saw them busy, or will time out.
        let engaged =
            self.user_call.contains_key(&callee) || self.remote.away.contains_key(&callee);
        if devices.is_empty() || engaged {
            return;
        }
        cluster.to_node(
            &owner,
            Body::CallRinging {
                call: call.to_string(),
                user: callee.to_string(),
                devices: devices.clone(),
            },
        );
        let frame = ServerFrame::CallIncoming {
            call_id: &call,
            from: &ring.caller_name,
            display_name: &ring.display_name,
            media: ring.media,
        }
        .encode();
        for device in &devices {
            self.send_to(&callee, device, frame.clone());
        }
        let away = Away {
            call,
            owner,
            caller: ring.caller,
        };
        self.remote.away.insert(callee, away);
    }

    /// Owner side: devices of the callee on `node` ring for a call here.
    fn ringing_elsewhere(
        &mut self,
        node: String,
        call: CallId,
        user: UserId,
        devices: Vec<DeviceId>,
        ctx: &mut Context<Self>,
    ) {
        let Some(slot) = self.calls.get_mut(&call) else {
            // Over already: its devices hear how it ended, and that node forgets it.
            if let Some(cluster) = &self.cluster {
                let reason = self.remote.ended.iter().find(|(c, _)| *c == call);
                if let Some((_, reason)) = reason {
                    let frame = ServerFrame::CallEnded {
                        call_id: &call,
                        reason: *reason,
                    }
                    .encode();
                    let frame = as_raw(&frame);
                    for device in devices.into_iter().take(MAX_RINGING) {
                        let frame = Body::CallFrame {
                            user: user.to_string(),
                            device,
                            frame: frame.clone(),
                        };
                        cluster.to_node(&node, frame);
                    }
                }
                let over = Body::CallOver {
                    call: call.to_string(),
                    user: user.to_string(),
                };
                cluster.to_node(&node, over);
            }
            return;
        };
        if slot.call.callee.user != user {
            return;
        }
        if !slot.nodes.iter().any(|(n, _)| *n == node) {
            slot.nodes.push((node.clone(), user.clone()));
        }
        for device in devices.into_iter().take(MAX_RINGING) {
            self.remote
                .devices
                .insert(device, (user.clone(), node.clone()));
            let _ = self.dispatch(&call, super::Event::DeviceJoined { device }, ctx);
        }
    }

    /// Owner side: a device on another node acted on a call here; answered when asked.
    fn acted_elsewhere(&mut self, node: String, act: Act, ctx: &mut Context<Self>) {
        let Act {
            call,
            user,
            device,
            action,
            reply,
        } = act;
        if action == RemoteAction::Resume || action == RemoteAction::Glare {
            // A device of a participant, connected to `node`: it becomes the call's there. (A
            // glare may come before the callee's node answered `call_ringing`.)
            let glare = action == RemoteAction::Glare;
            let slot = self
                .calls
                .get_mut(&call)
                .filter(|s| match s.call.role_of(&user) {
                    Some(super::Role::Callee) => true,
                    Some(super::Role::Caller) => !glare,
                    None => false,
                });
            if let Some(slot) = slot {
                self.remote
                    .devices
                    .insert(device, (user.clone(), node.clone()));
                if !slot.nodes.iter().any(|(n, u)| *n == node && *u == user) {
                    slot.nodes.push((node.clone(), user.clone()));
                }
            }
        }
        if self.remote.node_of(&user, &device) != Some(node.as_str()) {
            // Not a device of this call: refused like a stranger's.
            self.answer(
                &node,
                reply,
                Err(AppError::new(ErrorCode::CallNotFound, "no such call")),
            );
            return;
        }
        let action = match action {
            RemoteAction::Left { revoked } => {
                self.remote.devices.remove(&device);
                if self.user_call.get(&user) == Some(&call) {
                    let left = super::Event::DeviceLeft { device, revoked };
                    let _ = self.dispatch(&call, left, ctx);
                }
                return;
            }
            RemoteAction::Glare => {
                let _ = self.dispatch(&call, super::Event::DeviceJoined { device }, ctx);
                let outcome = self.dispatch(
                    &call,
                    super::Event::Accept {
                        device,
                        offerer: super::Role::Caller,
                        announce: true,
                    },
                    ctx,
                );
                self.answer(&node, reply, outcome);
                return;
            }
            RemoteAction::Accept => super::CallAction::Accept,
            RemoteAction::Reject { reason } => super::CallAction::Reject { reason },
            RemoteAction::Cancel => super::CallAction::Cancel,
            RemoteAction::Hangup { reason } => super::CallAction::Hangup { reason },
            RemoteAction::End => super::CallAction::End,
            RemoteAction::Resume => super::CallAction::Resume,
        };
        let msg = super::ActOnCall {
            user,
            device: Some(device),
            call_id: call,
            action,
        };
        self.act_for(node, reply, msg, ctx);
    }

    /// Owner side: applies an action sent by `node`, and answers it there (with `reply`) once
    /// applied, and when it ended the call, once the end is committed, as on one node.
    fn act_for(
        &mut self,
        node: String,
        reply: Option<u64>,
        msg: super::ActOnCall,
        ctx: &mut Context<Self>,
    ) {
        if !self.calls.contains_key(&msg.call_id) {
            // Not held here (any more): never passed on again.
            let gone = AppError::new(ErrorCode::CallNotFound, "no such call");
            self.answer(&node, reply, Err(gone));
            return;
        }
        let answer = <Self as Handler<super::ActOnCall>>::handle(self, msg, ctx);
        let cluster = self.cluster.clone();
        actix::spawn(async move {
            let outcome = answer.await;
            if let (Some(cluster), Some(reply)) = (cluster, reply) {
                cluster.to_node(&node, acted(reply, outcome));
            }
        });
    }

    fn answer(&self, node: &str, reply: Option<u64>, outcome: Result<(), AppError>) {
        if let (Some(cluster), Some(reply)) = (&self.cluster, reply) {
            cluster.to_node(node, acted(reply, outcome));
        }
    }

    /// Owner side: a `signal` from a device on another node, relayed as if sent here.
    fn signalled_elsewhere(&mut self, node: &str, signal: RelaySignal, ctx: &mut Context<Self>) {
        if self.remote.node_of(&signal.user, &signal.device) != Some(node) {
            return;
        }
        self.relay(signal, ctx);
    }
}

impl CallRouter {
    /// This node drains: call `id` goes to another live node (the one holding the other side's
    /// device, if any), without a frame to anyone. Its devices here are closed with 1012 next
    /// and resume on whatever node they reconnect to. `None` alone, or with no other node: the
    /// call is then ended. The answer is the new owner's record in the database.
    pub(super) fn hand_over(
        &mut self,
        id: &CallId,
        ctx: &mut Context<Self>,
    ) -> Option<actix::dev::Request<super::CallRecorder, SetOwner>> {
        let cluster = self.cluster.clone()?;
        let slot = self.calls.get(id).filter(|s| !s.call.is_over())?;
        let call = &slot.call;
        let parties = [&call.caller.user, &call.callee.user];
        let remote = &self.remote.devices;
        let prefer: Vec<&str> = [call.caller_device, call.callee_device]
            .iter()
            .flatten()
            .filter_map(|d| remote.get(d).map(|(_, node)| node.as_str()))
            .chain(slot.nodes.iter().map(|(node, _)| node.as_str()))
            .collect();
        let Some(target) = cluster.other_alive(&prefer) else {
            log::warn!("no other node is alive to take call {id}: it ends");
            return None;
        };
        let elsewhere = |d: &Option<DeviceId>| d.filter(|d| remote.contains_key(d));
        let party = HandedParty::new;
        let state = HandedCall {
            call: id.to_string(),
            caller: party(&call.caller, elsewhere(&call.caller_device)),
            callee: party(&call.callee, elsewhere(&call.callee_device)),
            media: call.media,
            created_at: call.created_at,
            answered_at: call.answered_at,
            ringing: call
                .ringing
                .iter()
                .filter(|d| remote.contains_key(d))
                .copied()
                .collect(),
            caller_offers: call.offerer == super::Role::Caller,
            devices: remote
                .iter()
                .filter(|(_, (user, _))| parties.contains(&user))
                .map(|(d, (user, node))| (*d, user.to_string(), node.clone()))
                .collect(),
            nodes: slot
                .nodes
                .iter()
                .map(|(node, user)| (node.clone(), user.to_string()))
                .collect(),
        };
        let state = Box::new(state);
        cluster.to_node(&target, Body::CallHandover { state });
        let mut told: Vec<&str> = vec![target.as_str()];
        for (node, _) in &slot.nodes {
            if !told.contains(&node.as_str()) {
                told.push(node);
                let owner = Body::CallOwner {
                    call: id.to_string(),
                    owner: target.clone(),
                };
                cluster.to_node(node, owner);
            }
        }
        self.publish_live_as(call, Some(&target));
        // Forgotten here without ending: no frame, no record, no busy change.
        let slot = self.calls.remove(id)?;
        for timer in [slot.ring_timer].into_iter().chain(slot.grace).flatten() {
            ctx.cancel_future(timer);
        }
        for user in [&slot.call.caller.user, &slot.call.callee.user] {
            if self.user_call.get(user) == Some(id) {
                self.user_call.remove(user);
            }
        }
        let users = [&slot.call.caller.user, &slot.call.callee.user];
        self.remote
            .devices
            .retain(|_, (u, _)| !users.contains(&&*u));
        log::info!("handing call {id} over to node {target}");
        Some(self.recorder.send(SetOwner {
            call: id.clone(),
            owner: target,
        }))
    }

    /// A draining node handed a call over: it is held here from now on. Its devices on this
    /// node and on live others stay the call's; the ones on the draining node are gone, so
    /// their side is in the reconnect grace (or, ringing, the other devices still ring).
    fn adopt(&mut self, from: &str, state: HandedCall, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let id = CallId::from(state.call.clone());
        let (caller, callee) = (state.caller.party(), state.callee.party());
        let engaged = |user: &UserId| self.user_call.get(user).is_some_and(|c| *c != id);
        if self.calls.contains_key(&id) || engaged(&caller.user) || engaged(&callee.user) {
            log::warn!("call {id} handed over by {from} clashes with a call here; not taken");
            return;
        }
        for (device, user, node) in &state.devices {
            if node != from && node != cluster.node() && !cluster.is_lost(node) {
                let user = UserId::from(user.clone());
                self.remote.devices.insert(*device, (user, node.clone()));
            }
        }
        let known = |device: &DeviceId, user: &UserId| {
            self.handle_of(user, device).is_some() || self.remote.node_of(user, device).is_some()
        };
        let caller_device = state.caller.device.filter(|d| known(d, &caller.user));
        let callee_device = state.callee.device.filter(|d| known(d, &callee.user));
        let ringing = state
            .ringing
            .iter()
            .filter(|d| known(d, &callee.user))
            .copied()
            .collect();
        let phase = match state.answered_at {
            Some(_) => super::Phase::Active,
            None => super::Phase::Ringing,
        };
        for user in [&caller.user, &callee.user] {
            if self.remote.away(user).is_some_and(|a| a.call == id) {
                self.remote.away.remove(user);
            }
        }
        let nodes = state
            .nodes
            .into_iter()
            .filter(|(node, _)| node != from && node != cluster.node())
            .map(|(node, user)| (node, UserId::from(user)))
            .collect();
        let call = super::Call {
            id: id.clone(),
            caller,
            callee,
            media: state.media,
            created_at: state.created_at,
            answered_at: state.answered_at,
            phase,
            caller_device,
            callee_device,
            ringing,
            offerer: if state.caller_offers {
                super::Role::Caller
            } else {
                super::Role::Callee
            },
            pushed: false,
        };
        let mut slot = super::Slot {
            call,
            ring_timer: None,
            grace: [None, None],
            live: [None, None],
            nodes,
            open_elsewhere: Box::new([]),
        };
        let mut effects = Vec::new();
        if phase == super::Phase::Ringing {
            effects.push(super::Effect::StartRingTimer);
        }
        for role in [super::Role::Caller, super::Role::Callee] {
            let has_a_side = phase == super::Phase::Active || role == super::Role::Caller;
            if has_a_side && slot.call.device(role).is_none() {
                effects.push(super::Effect::StartGrace(role));
            }
        }
        self.execute(&mut slot, effects, ctx);
        for user in [&slot.call.caller.user, &slot.call.callee.user] {
            self.user_call.insert(user.clone(), id.clone());
        }
        self.publish_live(&slot.call, false);
        log::info!("took over call {id} from draining node {from}");
        self.calls.insert(id, slot);
    }
}

/// [`CallRouter::send_remote`], for where the router is borrowed in parts.
pub(super) fn send_remote(
    cluster: Option<&Cluster>,
    remote: &Remote,
    user: &UserId,
    device: &DeviceId,
    frame: &bytestring::ByteString,
) -> bool {
    let (Some(cluster), Some(node)) = (cluster, remote.node_of(user, device)) else {
        return false;
    };
    cluster.to_node(
        node,
        Body::CallFrame {
            user: user.to_string(),
            device: *device,
            frame: as_raw(frame),
        },
    );
    true
}

/// An encoded frame as the raw JSON it is, to travel in a `call_frame` unescaped.
fn as_raw(frame: &bytestring::ByteString) -> Box<RawValue> {
    RawValue::from_string(frame.to_string()).unwrap_or_else(|e| {
        // Every frame is encoded from a `ServerFrame` by serde_json: unreachable.
        log::error!("an encoded frame is not JSON: {e}");
        RawValue::NULL.to_owned()
    })
}

fn acted(reply: u64, outcome: Result<(), AppError>) -> Body {
    acted_with(reply, outcome.map(|()| None))
}

fn acted_with(reply: u64, outcome: Result<Option<PlacedThere>, AppError>) -> Body {
    let (placed, error) = match outcome {
        Ok(placed) => (placed, None),
        Err(e) => (
            None,
            Some(RemoteError {
                error: e.code,
                message: e.message,
            }),
        ),
    };
    Body::CallActed {
        reply,
        error,
        placed,
    }
}

/// What a `call_ring` says of the call, for the `call.incoming` frame.
struct Ring {
    caller: UserId,
    caller_name: String,
    display_name: String,
    media: crate::vocabulary::Media,
}

/// A `call_act`, read.
struct Act {
    call: CallId,
    user: UserId,
    device: DeviceId,
    action: RemoteAction,
    reply: Option<u64>,
}

impl Handler<CallEvent> for CallRouter {
    type Result = ();

    fn handle(&mut self, CallEvent(Envelope { from, body }): CallEvent, ctx: &mut Context<Self>) {
        match body {
            Body::CallRing {
                call,
                callee,
                caller,
                caller_name,
                display_name,
                media,
            } => self.rung(
                from,
                CallId::from(call),
                UserId::from(callee),
                Ring {
                    caller: UserId::from(caller),
                    caller_name,
                    display_name,
                    media,
                },
            ),
            Body::CallRinging {
                call,
                user,
                devices,
            } => self.ringing_elsewhere(from, CallId::from(call), UserId::from(user), devices, ctx),
            Body::CallFrame {
                user,
                device,
                frame,
            } => {
                let user = UserId::from(user);
                // Only frames for devices of calls the sender owns.
                if self.remote.away(&user).is_some_and(|a| a.owner == from) {
                    let frame = String::from(Box::<str>::from(frame));
                    self.send_to(&user, &device, frame.into());
                }
            }
            Body::CallAct {
                call,
                user,
                device,
                action,
                reply,
            } => self.acted_elsewhere(
                from,
                Act {
                    call: CallId::from(call),
                    user: UserId::from(user),
                    device,
                    action,
                    reply,
                },
                ctx,
            ),
            Body::CallActed {
                reply,
                error,
                placed,
            } => {
                if let Some(pending) = self.remote.pending.remove(&reply) {
                    let outcome = match error {
                        None => {
                            // The callee's credential for the call is honoured by this node's
                            // relay, the one its devices are given.
                            if let Some((call, user)) = &pending.accepted {
                                self.ice.grant(call, user);
                            }
                            Ok(placed)
                        }
                        Some(e) => Err(AppError::new(e.error, e.message)),
                    };
                    let _ = pending.answer.send(outcome);
                }
            }
            Body::CallSignal {
                call,
                user,
                device,
                reference,
                kind,
                sdp,
                candidate,
            } => {
                let signal = RelaySignal {
                    user: UserId::from(user),
                    device,
                    reference,
                    call_id: CallId::from(call),
                    kind,
                    sdp,
                    candidate,
                };
                self.signalled_elsewhere(&from, signal, ctx);
            }
            Body::CallOver { call, user } => {
                let user = UserId::from(user);
                let call = CallId::from(call);
                if self
                    .remote
                    .away(&user)
                    .is_some_and(|a| a.call == call && a.owner == from)
                {
                    self.remote.away.remove(&user);
                    self.ice.revoke(&call, &user);
                }
            }
            Body::CallHandover { state } => self.adopt(&from, *state, ctx),
            Body::CallOwner { call, owner } => {
                let call = CallId::from(call);
                for away in self.remote.away.values_mut() {
                    if away.call == call && away.owner == from {
                        away.owner = owner.clone();
                    }
                }
            }
            Body::NodeLost { node } => self.remote_node_lost(&node, ctx),
            Body::Severed { users } => self.sever(&users.map(UserId::from), ctx),
            Body::Befriended { users: [a, b] } => {
                self.severed.restore(&UserId::from(a), &UserId::from(b));
            }
            Body::CallPlace {
                caller,
                callee,
                media,
                reply,
            } => {
                let msg = super::PlaceCall {
                    caller: caller.party(),
                    device: None,
                    callee: callee.party(),
                    media,
                };
                if let Err(gone) = self.caller_device(&msg) {
                    // Its device went meanwhile: never passed on again.
                    if let Some(cluster) = &self.cluster {
                        cluster.to_node(&from, acted(reply, Err(gone)));
                    }
                } else {
                    let placing = <Self as Handler<super::PlaceCall>>::handle(self, msg, ctx);
                    ctx.spawn(placing.map(move |placed, router, _| {
                        let placed = placed.map(|p| {
                            Some(PlacedThere {
                                call: p.call_id.to_string(),
                                merged: p.merged,
                            })
                        });
                        if let Some(cluster) = &router.cluster {
                            cluster.to_node(&from, acted_with(reply, placed));
                        }
                    }));
                }
            }
            Body::CallEnd { call, user, reply } => {
                let msg = super::ActOnCall {
                    user: UserId::from(user),
                    device: None,
                    call_id: CallId::from(call),
                    action: super::CallAction::End,
                };
                self.act_for(from, Some(reply), msg, ctx);
            }
            Body::Presence { .. }
            | Body::Relation { .. }
            | Body::Revoke { .. }
            | Body::PushChanged { .. }
            | Body::Busy { .. } => {}
        }
        self.drop_stuck(ctx);
    }
}

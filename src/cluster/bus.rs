//! Delivery between nodes over Redis pub/sub. Each user has a channel (`PREFIX:user:USER`)
//! that every node holding a device of theirs subscribes to; reaching a user elsewhere is one
//! PUBLISH, whoever holds them. Node events go on `PREFIX:cluster`, which every node hears.
//!
//! Nothing here blocks an actor: writes and publishes go through a bounded queue to one task
//! that sends them in pipelined batches (a full queue drops, logged; the resync after an
//! outage repairs what was lost), and subscriptions are a wanted set that the subscriber task
//! catches up with, so churn while Redis is away costs nothing but the set.
use super::directory::NodeView;
use super::health::Health;
use super::keys::Keys;
use super::{CallEvent, ClusterEvent, OnCall};
use crate::error::ErrorCode;
use crate::ids::{DeviceId, UserId};
use crate::vocabulary::{Media, SignalKind};
use actix::Recipient;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// What one node tells others, as JSON on a channel: `{"from": NODE, "body": {TYPE: {...}}}`.
///
/// The body is tagged by its one key, not by a `type` field beside the others: serde reads
/// such a message in one pass, where a `type` field (or a flattened body) makes it buffer the
/// whole message first. That also lets frames and SDP travel as the raw JSON they already
/// are ([`RawValue`]), neither escaped into a string on one node nor unescaped on the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node: a node ignores what it sent itself.
    pub from: String,
    pub body: Body,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The sender's view of `user` changed (`None`: the sender no longer holds them).
    Presence {
        user: String,
        view: Option<NodeView>,
    },
    /// A relation of the channel's user with `friend` changed over REST on the sender: the
    /// friend list to update, and the frame (already encoded) for the user's devices.
    Relation {
        friend: String,
        change: FriendChange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frame: Option<String>,
    },
    /// On the cluster channel: this node is gone (lost, restarted or stopped); forget what
    /// it held.
    NodeLost { node: String },
    /// On the cluster channel: these sessions of `user` (token hashes, as the database keeps
    /// them) were revoked over REST on the sender: close their sockets and refuse their relay
    /// credentials. On the cluster channel, not the user's: a relay credential may live on a
    /// node that holds no device of the user.
    Revoke { user: String, sessions: Vec<String> },
    /// On the user's channel: a call router (on any node) has them in a call, or no more.
    Busy { busy: bool },
    /// On the cluster channel: the two users stopped being friends over REST on the sender
    /// (unfriend, block, account deletion; the first acted): every call router refuses calls
    /// between them, and the one owning a call between them ends it.
    Severed { users: [String; 2] },
    /// On the cluster channel: the two users became friends (again) over REST on the sender.
    Befriended { users: [String; 2] },
    /// On the cluster channel: `user`'s push subscriptions changed over REST on the sender
    /// (stored in the database): read them again.
    PushChanged { user: String },
    /// On the callee's channel, from the node that owns the call (the caller's): ring the
    /// callee's devices here, and answer `call_ringing` on the owner's node channel.
    CallRing {
        call: String,
        callee: String,
        caller: String,
        caller_name: String,
        display_name: String,
        media: Media,
    },
    /// To the owner: these devices of `user` ring for `call`.
    CallRinging {
        call: String,
        user: String,
        devices: Vec<DeviceId>,
    },
    /// From the owner: a frame (already encoded) for a device of `user` on the receiving node.
    CallFrame {
        user: String,
        device: DeviceId,
        frame: Box<RawValue>,
    },
    /// To the owner: a device of `user` acted on `call`. With `reply`, the owner answers
    /// `call_acted` with the same number.
    CallAct {
        call: String,
        user: String,
        device: DeviceId,
        action: RemoteAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<u64>,
    },
    /// To the owner: `user` ends `call` over REST (`POST /calls/{id}/end`), with no device;
    /// the owner answers `call_acted` with the same number.
    CallEnd {
        call: String,
        user: String,
        reply: u64,
    },
    /// To a node holding a device of `caller`: `caller` places a call over REST
    /// (`POST /calls`) on a node holding none. It is placed there, on their most recently
    /// connected device, and answered `call_acted` with the call.
    CallPlace {
        caller: Box<super::calls::HandedParty>,
        callee: Box<super::calls::HandedParty>,
        media: Media,
        reply: u64,
    },
    /// How the `call_act`, `call_end` or `call_place` numbered `reply` went (`error`: refused;
    /// `placed`: the call a `call_place` placed).
    CallActed {
        reply: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RemoteError>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placed: Option<PlacedThere>,
    },
    /// To the owner: a `signal` frame of a device of `user`, to relay. `sdp` and `candidate`
    /// are the JSON the client sent.
    CallSignal {
        call: String,
        user: String,
        device: DeviceId,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<serde_json::Value>,
        kind: SignalKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp: Option<Box<RawValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<Box<RawValue>>,
    },
    /// From the owner: `call` is over; the receiving node forgets it for `user`.
    CallOver { call: String, user: String },
    /// From a draining owner: the receiving node owns this call from now on.
    CallHandover {
        state: Box<super::calls::HandedCall>,
    },
    /// From a draining owner: `call` is owned by `owner` from now on.
    CallOwner { call: String, owner: String },
}

/// What a device on another node did to a call, for its owner to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum RemoteAction {
    Accept,
    Reject {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Cancel,
    Hangup {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    End,
    /// A device of a participant, connected to the sender, takes the call over (its previous
    /// device dropped, perhaps with the node it was on).
    Resume,
    /// The callee invited the caller while being rung: the call is answered (glare).
    Glare,
    /// The device went away (`revoked`: its session was revoked).
    Left {
        revoked: bool,
    },
}

/// A call placed for a `call_place`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedThere {
    pub call: String,
    /// The invite met the callee's own (glare) and joined that call.
    pub merged: bool,
}

/// A refusal, as the owner's router gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteError {
    pub error: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendChange {
    Added,
    /// Unfriended: the frame goes to the devices.
    Removed,
    /// Blocked: the frame goes only to devices that had them as a friend.
    Blocked,
    /// Only a frame (a friend request).
    None,
}

/// One unit of outbound work, sent in order.
pub enum Op {
    /// The node stops: remove what it holds, tell the others, send nothing more.
    Leave { done: oneshot::Sender<()> },
    /// This node's directory field of `user` (`None`: remove it).
    Write { user: String, view: Option<String> },
    /// Live call `call` of `users` (`None`: it is over).
    Call {
        call: String,
        users: [String; 2],
        /// The call's JSON, and its `incall` value.
        live: Option<(String, String)>,
    },
    /// The same payload to each channel.
    Publish {
        channels: Vec<String>,
        payload: String,
    },
    /// Answers once every op queued before it has been sent (or has failed).
    Flushed { done: oneshot::Sender<()> },
}

/// `revoke` messages not yet sent. Unlike presence, directory and push-subscription
/// publishes, which a resync repairs (`severed` and `befriended` are not repaired, see
/// docs/cluster.md; lost call messages end in the calls' timeouts and grace), a lost
/// revocation would leave a revoked session's sockets open on other nodes: so they wait here
/// (not in the op queue, which drops when full) until Redis has taken them, retried while it
/// is away. Bounded: past [`REVOCATIONS_HELD`] the oldest go, logged.
#[derive(Default)]
pub struct Revocations {
    /// Oldest first; numbers grow by one.
    pending: Mutex<(u64, VecDeque<Held>)>,
    arrived: Notify,
}

/// `revoke` messages held for Redis at most.
pub const REVOCATIONS_HELD: usize = 1024;
/// How often held revocations are tried again while Redis is away.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// One `revoke` message waiting for Redis.
#[derive(Clone)]
struct Held {
    number: u64,
    /// The `revoke` envelope.
    payload: String,
    /// The `PREFIX:revoked:KEY` markers of its sessions, each with its value: the session's
    /// key in relay credentials.
    markers: Vec<(String, String)>,
}

impl Revocations {
    fn with<T>(&self, f: impl FnOnce(&mut (u64, VecDeque<Held>)) -> T) -> T {
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut pending)
    }

    /// Holds `payload` (a `revoke` envelope) and its sessions' `markers` until they are sent.
    pub fn hold(&self, payload: String, markers: Vec<(String, String)>) {
        let dropped = self.with(|(next, pending)| {
            *next += 1;
            pending.push_back(Held {
                number: *next,
                payload,
                markers,
            });
            pending.len() > REVOCATIONS_HELD && pending.pop_front().is_some()
        });
        if dropped {
            log::error!(
                "cluster: more than {REVOCATIONS_HELD} revocations wait for Redis; the oldest was dropped"
            );
        }
        self.arrived.notify_one();
    }

    /// The oldest `n` held, to send; they stay held until [`Self::sent`].
    fn oldest(&self, n: usize) -> Vec<Held> {
        self.with(|(_, pending)| pending.iter().take(n).cloned().collect())
    }

    /// Those numbered up to `last` were sent.
    fn sent(&self, last: u64) {
        self.with(|(_, pending)| pending.retain(|held| held.number > last));
    }
}

/// Told of sessions revoked on another node, to refuse their relay credentials here: set
/// once at start, when the relay is known.
pub type OnRevoke = Arc<OnceLock<Box<dyn Fn(&UserId, &[String]) + Send + Sync>>>;

/// Writes and publishes waiting for Redis at most; past it they are dropped.
pub const OUTBOUND: usize = 8192;
/// Ops sent in one pipeline; also the most sessions one `revoke` message names.
pub const BATCH: usize = 256;
/// A Redis round trip that takes longer than this counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The user channels this node should be subscribed to, and a wake-up for the subscriber.
#[derive(Default)]
pub struct Subscriptions {
    wanted: Mutex<HashSet<String>>,
    changed: Notify,
}

impl Subscriptions {
    fn with<T>(&self, f: impl FnOnce(&mut HashSet<String>) -> T) -> T {
        let mut wanted = match self.wanted.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut wanted)
    }

    pub fn want(&self, channel: String, on: bool) {
        let changed = self.with(|w| {
            if on {
                w.insert(channel)
            } else {
                w.remove(&channel)
            }
        });
        if changed {
            self.changed.notify_one();
        }
    }
}

/// Sends queued ops in pipelined batches, until the node leaves. A batch that fails is
/// dropped and marks the command connection down, so the next successful refresh resyncs
/// what it carried; held revocations go first in every batch and stay held until one
/// succeeds. Leaving comes after every op queued before it, so nothing written before the
/// leave outlives it, and nothing is written after.
pub async fn publisher(
    mut conn: ConnectionManager,
    keys: Keys,
    node: String,
    health: Arc<Health>,
    mut ops: mpsc::Receiver<Op>,
    revocations: Arc<Revocations>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut retrying = false;
    loop {
        let woken = tokio::select! {
            got = ops.recv_many(&mut batch, BATCH) => got > 0,
            () = revocations.arrived.notified(), if !retrying => true,
            () = tokio::time::sleep(RETRY_EVERY), if retrying => true,
        };
        if !woken {
            return;
        }
        let held = revocations.oldest(BATCH);
        let mut pipe = redis::pipe();
        for held in &held {
            for (marker, relay_key) in &held.markers {
                pipe.set_ex(marker, relay_key, super::REVOKED_KEPT.as_secs())
                    .ignore();
            }
            pipe.publish(keys.cluster_channel(), &held.payload).ignore();
        }
        let mut leave = None;
        let mut flushed = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Write { user, view } => {
                    super::directory::write(&mut pipe, &keys, &node, &user, view.as_deref())
                }
                Op::Call { call, users, live } => {
                    let live = live
                        .as_ref()
                        .map(|(json, held)| (json.as_str(), held.as_str()));
                    super::calls::write(&mut pipe, &keys, &call, &users, live)
                }
                Op::Publish { channels, payload } => {
                    for channel in channels {
                        pipe.publish(channel, &payload).ignore();
                    }
                }
                Op::Flushed { done } => flushed.push(done),
                Op::Leave { done } => {
                    leave = Some(done);
                    break;
                }
            }
        }
        let sent = send(&mut conn, &pipe, &health).await;
        for done in flushed {
            let _ = done.send(());
        }
        if let (true, Some(last)) = (sent, held.last()) {
            revocations.sent(last.number);
        }
        retrying = !sent && !held.is_empty();
        if let Some(done) = leave {
            match tokio::time::timeout(TIMEOUT, super::node::leave(&mut conn, &keys, &node)).await {
                Ok(Ok(n)) => log::info!("cluster: node {node} left; removed {n} user(s)"),
                Ok(Err(e)) => log::warn!("cluster: leaving failed; the others will sweep: {e}"),
                Err(_) => log::warn!("cluster: leaving timed out; the others will sweep"),
            }
            let _ = done.send(());
            return;
        }
    }
}

/// Sends `pipe`; answers whether Redis took it.
async fn send(conn: &mut ConnectionManager, pipe: &redis::Pipeline, health: &Health) -> bool {
    if pipe.cmd_iter().next().is_none() {
        return true;
    }
    let failed = match tokio::time::timeout(TIMEOUT, pipe.exec_async(conn)).await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "writing timed out".to_owned(),
    };
    // Logged once per outage, not once per batch.
    if health.commands_up().is_ok() {
        log::warn!("cluster: writes and publishes lost until Redis answers again: {failed}");
    }
    health.commands(Err(failed));
    false
}

/// Where what arrives goes: presence to the hub, calls to the router, a revocation to the
/// relay too.
pub struct Listeners {
    pub events: Recipient<ClusterEvent>,
    pub calls: OnCall,
    pub revoked: OnRevoke,
}

/// A pub/sub connection subscribed to the cluster channel and this node's own. A node opens
/// one before it registers, so that no other node can pick it (for a call handed over, say)
/// before what is sent to it is heard.
pub async fn listen(
    client: &redis::Client,
    keys: &Keys,
    node: &str,
) -> Result<redis::aio::PubSub, String> {
    let mut pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(
        TIMEOUT,
        pubsub.subscribe(&[keys.cluster_channel(), keys.node_channel(node)]),
    )
    .await
    .map_err(|_| "subscribing timed out".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(pubsub)
}

/// Keeps a pub/sub connection subscribed to the cluster channel, this node's channel and the
/// wanted user channels, reconnecting forever, and hands what arrives to its listeners.
/// `listening` is the connection opened at join, used first. Every reconnection after the
/// first asks the hub to resync: what was published meanwhile is lost.
#[allow(clippy::too_many_arguments)]
pub async fn subscriber(
    client: redis::Client,
    keys: Keys,
    node: String,
    subs: Arc<Subscriptions>,
    health: Arc<Health>,
    listeners: Listeners,
    ping_every: Duration,
    mut listening: Option<redis::aio::PubSub>,
) {
    let mut first = true;
    loop {
        let opened = match listening.take() {
            Some(pubsub) => Ok(pubsub),
            None => listen(&client, &keys, &node).await,
        };
        let served = match opened {
            Ok(pubsub) => {
                session(
                    pubsub, &keys, &node, &subs, &health, &listeners, ping_every, first,
                )
                .await
            }
            Err(why) => Err(why),
        };
        match served {
            Ok(()) => {}
            Err(why) => {
                log::warn!("cluster: pub/sub connection lost: {why}");
                health.pubsub(Err(why));
            }
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Serves one pub/sub connection (already subscribed to the cluster and node channels) until
/// it fails.
#[allow(clippy::too_many_arguments)]
async fn session(
    pubsub: redis::aio::PubSub,
    keys: &Keys,
    node: &str,
    subs: &Subscriptions,
    health: &Health,
    listeners: &Listeners,
    ping_every: Duration,
    first: bool,
) -> Result<(), String> {
    let (mut sink, mut stream) = pubsub.split();
    let timed = |what: &'static str| move |_| format!("{what} timed out");
    let mut subscribed: HashSet<String> = HashSet::new();
    catch_up(&mut sink, subs, &mut subscribed).await?;
    health.pubsub(Ok(()));
    if !first {
        log::info!("cluster: pub/sub connection back; resyncing");
        listeners.events.do_send(ClusterEvent::Resync);
    }
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Err("the connection closed".into());
                };
                deliver(keys, node, &message, listeners);
            }
            () = subs.changed.notified() => catch_up(&mut sink, subs, &mut subscribed).await?,
            _ = ping.tick() => {
                tokio::time::timeout(TIMEOUT, sink.ping::<redis::Value>())
                    .await
                    .map_err(timed("ping"))?
                    .map_err(|e| e.to_string())?;
            }
        }
    }
}

/// Subscribes and unsubscribes until the connection matches the wanted set.
async fn catch_up(
    sink: &mut redis::aio::PubSubSink,
    subs: &Subscriptions,
    subscribed: &mut HashSet<String>,
) -> Result<(), String> {
    let (add, remove): (Vec<String>, Vec<String>) = subs.with(|wanted| {
        (
            wanted.difference(subscribed).cloned().collect(),
            subscribed.difference(wanted).cloned().collect(),
        )
    });
    for chunk in add.chunks(BATCH) {
        tokio::time::timeout(TIMEOUT, sink.subscribe(chunk))
            .await
            .map_err(|_| "subscribing timed out".to_string())?
            .map_err(|e| e.to_string())?;
        subscribed.extend(chunk.iter().cloned());
    }
    for chunk in remove.chunks(BATCH) {
        tokio::time::timeout(TIMEOUT, sink.unsubscribe(chunk))
            .await
            .map_err(|_| "unsubscribing timed out".to_string())?
            .map_err(|e| e.to_string())?;
        for channel in chunk {
            subscribed.remove(channel);
        }
    }
    Ok(())
}

fn deliver(keys: &Keys, node: &str, message: &redis::Msg, listeners: &Listeners) {
    let envelope: Envelope = match serde_json::from_slice(message.get_payload_bytes()) {
        Ok(envelope) => envelope,
        Err(e) => {
            log::warn!(
                "cluster: unreadable message on {}: {e}",
                message.get_channel_name()
            );
            return;
        }
    };
    if envelope.from == node {
        return;
    }
    let to_router = |envelope: Envelope| {
        if let Some(router) = listeners.calls.get() {
            router.do_send(CallEvent(envelope));
        }
    };
    let channel = message.get_channel_name();
    if let Some(user) = keys.user_of_channel(channel) {
        listeners.events.do_send(ClusterEvent::ForUser {
            user: UserId::from(user),
            envelope,
        });
        return;
    }
    match envelope.body {
        Body::NodeLost { node: lost } => {
            to_router(Envelope {
                from: envelope.from,
                body: Body::NodeLost { node: lost.clone() },
            });
            listeners
                .events
                .do_send(ClusterEvent::NodeLost { node: lost });
        }
        Body::PushChanged { user } => listeners.events.do_send(ClusterEvent::PushChanged {
            user: UserId::from(user),
        }),
        Body::Revoke { user, mut sessions } => {
            sessions.truncate(BATCH);
            let user = UserId::from(user);
            if let Some(relay) = listeners.revoked.get() {
                relay(&user, &sessions);
            }
            listeners
                .events
                .do_send(ClusterEvent::Revoked { user, sessions });
        }
        Body::CallRing { .. }
        | Body::CallRinging { .. }
        | Body::CallFrame { .. }
        | Body::CallAct { .. }
        | Body::CallActed { .. }
        | Body::CallSignal { .. }
        | Body::CallOver { .. }
        | Body::CallHandover { .. }
        | Body::CallOwner { .. }
        | Body::CallEnd { .. }
        | Body::CallPlace { .. }
        | Body::Severed { .. }
        | Body::Befriended { .. } => to_router(envelope),
        Body::Presence { .. } | Body::Relation { .. } | Body::Busy { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_frame_carries_its_frame_as_raw_json_and_reads_back_whole() {
        let frame = r#"{"type":"signal","kind":"offer","sdp":"v=0\r\no=- 1 \"x\""}"#;
        let envelope = Envelope {
            from: "n1".into(),
            body: Body::CallFrame {
                user: "u".into(),
                device: DeviceId::from(7u128),
                frame: RawValue::from_string(frame.to_owned()).expect("JSON"),
            },
        };
        let text = serde_json::to_string(&envelope).expect("encodes");
        // Not escaped into a string: the frame's own text is in the message as it is.
        assert!(text.contains(frame), "{text}");
        assert!(
            text.starts_with(r#"{"from":"n1","body":{"call_frame":"#),
            "{text}"
        );
        let read: Envelope = serde_json::from_str(&text).expect("decodes");
        match read.body {
            Body::CallFrame { frame: got, .. } => assert_eq!(got.get(), frame),
            other => panic!("read back as {other:?}"),
        }
    }

    #[test]
    fn a_message_of_an_unknown_type_is_refused_not_misread() {
        let unknown = r#"{"from":"n1","body":{"call_teleport":{"call":"c"}}}"#;
        assert!(serde_json::from_str::<Envelope>(unknown).is_err());
        let old_shape = r#"{"from":"n1","type":"busy","busy":true}"#;
        assert!(serde_json::from_str::<Envelope>(old_shape).is_err());
    }
}

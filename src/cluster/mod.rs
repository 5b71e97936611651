//! Clustering through Redis (docs/cluster.md). `Cluster` is the handle the rest of the broker
//! sees, `None` in a broker running alone: the presence hub writes its users' views to the
//! directory and reaches users held by other nodes through their channels; `/readyz` asks it
//! whether Redis answers; `GET /friends` reads the directory.
//!
//! Nothing on the signaling path touches it, and a frame between two devices of one node
//! never leaves the process.
pub mod bus;
pub mod calls;
pub mod directory;
pub mod health;
pub mod keys;
pub mod node;

use crate::auth::token::{self, HashKey};
use crate::config::{Config, DatabaseUrl};
use crate::error::StartupError;
use crate::ice::credentials;
use crate::ids::{CallId, UserId};
use actix::{Message, Recipient};
use bus::{Body, Envelope, Listeners, OnRevoke, Op, Subscriptions};
use directory::NodeView;
use health::Health;
use keys::Keys;
use node::{Lost, Timings};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::{mpsc, oneshot};

/// How long a revoked session's marker stays in Redis: a node cut off from Redis for longer
/// than this misses revocations made meanwhile (its sockets of those sessions stay open until
/// they close or the node restarts).
pub const REVOKED_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A session as its `PREFIX:revoked:KEY` marker and a directory view name it: its
/// [`HashKey`] in hex.
pub fn session_marker(key: &HashKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session a [`session_marker`] names; `None` if it names none.
pub fn marked_session(marker: &str) -> Option<HashKey> {
    let digits = marker.as_bytes();
    let mut key = HashKey::default();
    if digits.len() != 2 * key.len() {
        return None;
    }
    for (byte, pair) in key.iter_mut().zip(digits.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

/// What the cluster tells the presence hub.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ClusterEvent {
    /// Arrived on `user`'s channel.
    ForUser { user: UserId, envelope: Envelope },
    /// A node's registration expired (or it restarted): what it held is gone.
    NodeLost { node: String },
    /// These sessions of `user` were revoked on another node: close their sockets here, and
    /// forget their push subscriptions.
    Revoked { user: UserId, sessions: Vec<String> },
    /// `user`'s push subscriptions changed on another node: read them again.
    PushChanged { user: UserId },
    /// Redis is back after an outage, or lost this node's state: write everything again and
    /// re-read what others hold.
    Resync,
}

/// What the cluster tells the call router: a call's messages between nodes, and a node lost.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallEvent(pub Envelope);

/// The call router, set once at start.
pub type OnCall = Arc<OnceLock<Recipient<CallEvent>>>;

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    keys: Keys,
    client: redis::Client,
    conn: ConnectionManager,
    health: Arc<Health>,
    lost: Lost,
    alive: node::Alive,
    subs: Arc<Subscriptions>,
    /// Revocations waiting for Redis, sent first in every batch.
    revocations: Arc<bus::Revocations>,
    ops: mpsc::Sender<Op>,
    /// Taken by `start`.
    ops_rx: Mutex<Option<mpsc::Receiver<Op>>>,
    /// The pub/sub connection opened at join, subscribed to the cluster and node channels;
    /// taken by `start`.
    listening: Mutex<Option<redis::aio::PubSub>>,
    revoked: OnRevoke,
    calls: OnCall,
    /// The registration keeper, stopped when the node leaves.
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    timings: Timings,
}

impl Cluster {
    /// Joins the cluster `--redis-url` names, or `None` without one. Refuses SQLite, and a
    /// Redis that does not answer at start.
    pub async fn join(config: &Config) -> Result<Option<Self>, StartupError> {
        let Some(url) = &config.redis_url else {
            return Ok(None);
        };
        if matches!(config.database_url, DatabaseUrl::Sqlite(_)) {
            return Err(StartupError::ClusterNeedsPostgres);
        }
        let failed = |e: redis::RedisError| StartupError::Redis(e.to_string());
        let client = redis::Client::open(url.as_str()).map_err(failed)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(bus::TIMEOUT))
            .set_response_timeout(Some(bus::TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_secs(1));
        let mut conn = tokio::time::timeout(
            bus::TIMEOUT * 2,
            client.get_connection_manager_with_config(manager),
        )
        .await
        .map_err(|_| StartupError::Redis(format!("{url}: no answer")))?
        .map_err(failed)?;
        let node = config
            .node_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
        let keys = Keys::new(&config.redis_prefix);
        let timings = Timings::new(config.node_ttl);
        // A previous run under this id may have left users behind; they are not here now.
        let left = node::sweep(&mut conn, &keys, &node, &node, timings.expiry, true)
            .await
            .map_err(failed)?;
        if left > 0 {
            log::info!("cluster: cleared {left} user(s) a previous run of node {node} left");
            let lost = Envelope {
                from: node.clone(),
                body: Body::NodeLost { node: node.clone() },
            };
            let payload = serde_json::to_string(&lost).unwrap_or_default();
            redis::cmd("PUBLISH")
                .arg(keys.cluster_channel())
                .arg(payload)
                .exec_async(&mut conn)
                .await
                .map_err(failed)?;
        }
        // Listening before registering: once registered, other nodes may send to this one.
        let listening = bus::listen(&client, &keys, &node)
            .await
            .map_err(StartupError::Redis)?;
        // Always in full: the sweep above unlisted the node, even if its key was still there.
        node::register(&mut conn, &keys, &node, timings)
            .await
            .map_err(failed)?;
        log::info!(
            "cluster: node {node} joined (prefix {}, node ttl {:?})",
            keys.prefix(),
            config.node_ttl
        );
        let (ops, ops_rx) = mpsc::channel(bus::OUTBOUND);
        Ok(Some(Self {
            inner: Arc::new(Inner {
                node,
                keys,
                client,
                conn,
                health: Arc::new(Health::new()),
                lost: Arc::new(RwLock::new(HashSet::new())),
                alive: Arc::default(),
                subs: Arc::default(),
                revocations: Arc::default(),
                ops,
                ops_rx: Mutex::new(Some(ops_rx)),
                listening: Mutex::new(Some(listening)),
                revoked: Arc::default(),
                calls: Arc::default(),
                keeper: Mutex::new(None),
                timings,
            }),
        }))
    }

    /// Starts the tasks that keep the registration, send, and listen, on the current
    /// arbiter. `events` is the presence hub.
    pub fn start(&self, events: Recipient<ClusterEvent>) {
        let inner = &self.inner;
        let taken = inner.ops_rx.lock().ok().and_then(|mut rx| rx.take());
        let Some(ops_rx) = taken else {
            return;
        };
        actix::spawn(bus::publisher(
            inner.conn.clone(),
            inner.keys.clone(),
            inner.node.clone(),
            inner.health.clone(),
            ops_rx,
            inner.revocations.clone(),
        ));
        let keeper = actix::spawn(node::keeper(
            inner.conn.clone(),
            inner.keys.clone(),
            inner.node.clone(),
            inner.timings,
            inner.health.clone(),
            inner.lost.clone(),
            inner.alive.clone(),
            events.clone(),
            inner.calls.clone(),
        ));
        if let Ok(mut slot) = inner.keeper.lock() {
            *slot = Some(keeper);
        }
        actix::spawn(bus::subscriber(
            inner.client.clone(),
            inner.keys.clone(),
            inner.node.clone(),
            inner.subs.clone(),
            inner.health.clone(),
            Listeners {
                events,
                calls: inner.calls.clone(),
                revoked: inner.revoked.clone(),
            },
            inner.timings.refresh,
            inner.listening.lock().ok().and_then(|mut l| l.take()),
        ));
    }

    /// What refuses the relay credentials of sessions revoked on other nodes (set once, when
    /// the relay runs).
    pub fn on_revoke(&self, relay: impl Fn(&UserId, &[String]) + Send + Sync + 'static) {
        let _ = self.inner.revoked.set(Box::new(relay));
    }

    /// Sessions of `user` (by their key in relay credentials) found revoked by a resync:
    /// this node's relay refuses their credentials, as for a `revoke` message.
    pub fn revoke_relay(&self, user: &UserId, relay_keys: &[String]) {
        if let Some(relay) = self.inner.revoked.get() {
            relay(user, relay_keys);
        }
    }

    /// Where calls' messages from other nodes go (set once, before `start`).
    pub fn route_calls(&self, router: Recipient<CallEvent>) {
        let _ = self.inner.calls.set(router);
    }

    /// Sends `body` to `node` alone.
    pub fn to_node(&self, node: &str, body: Body) {
        self.publish(vec![self.inner.keys.node_channel(node)], body);
    }

    /// `user`'s sessions were revoked here: every other node closes their sockets and refuses
    /// their relay credentials (in messages of at most `bus::BATCH` sessions).
    ///
    /// Held until Redis takes them, even through an outage (`bus::Revocations`); each session
    /// also gets a `PREFIX:revoked:KEY` marker for [`REVOKED_KEPT`], which a node that missed
    /// the message finds when it resyncs ([`Cluster::revoked_among`]).
    pub fn sessions_revoked(&self, user: &UserId, token_hashes: &[String]) {
        for chunk in token_hashes.chunks(bus::BATCH) {
            let revoke = Body::Revoke {
                user: user.to_string(),
                sessions: chunk.to_vec(),
            };
            let markers = chunk
                .iter()
                .map(|hash| {
                    let marker = self.inner.keys.revoked(&session_marker(&token::key(hash)));
                    (marker, credentials::session_key(hash).to_owned())
                })
                .collect();
            if let Some(payload) = self.encode(revoke) {
                self.inner.revocations.hold(payload, markers);
            }
        }
    }

    /// The node stops gracefully: once what is queued is written, its registration and
    /// directory fields go and the others are told, so its users go offline for friends
    /// elsewhere at once rather than after the ttl. Bounded: with Redis away, it gives up
    /// after a few seconds and the others sweep the node when its registration expires.
    pub async fn leave(&self) {
        let keeper = self.inner.keeper.lock().ok().and_then(|mut k| k.take());
        if let Some(keeper) = keeper {
            keeper.abort();
        }
        let (done, left) = oneshot::channel();
        let limit = bus::TIMEOUT + std::time::Duration::from_secs(1);
        let asked = tokio::time::timeout(limit, async {
            if self.inner.ops.send(Op::Leave { done }).await.is_ok() {
                let _ = left.await;
            }
        })
        .await;
        if asked.is_err() {
            log::warn!("cluster: could not leave in time; the others will sweep this node");
        }
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// `Err(why)` while Redis does not answer.
    pub fn ready(&self) -> Result<(), String> {
        self.inner.health.ready()
    }

    /// How long after Redis returns every live node has written its users again: each
    /// notices at its next refresh (every ttl/4), with room to spare.
    pub fn settle_time(&self) -> std::time::Duration {
        self.inner.timings.refresh * 2
    }

    /// Takes a census of the nodes now (the keeper takes one every ttl/10), so that
    /// [`other_alive`](Self::other_alive) knows a node that joined a moment ago. Bounded.
    pub async fn count_nodes(&self) {
        let mut conn = self.inner.conn.clone();
        let census = node::census(&mut conn, &self.inner.keys);
        if let Ok(Ok((alive, _))) = tokio::time::timeout(bus::TIMEOUT, census).await {
            if let Ok(mut set) = self.inner.alive.write() {
                *set = alive;
            }
        }
    }

    /// Another node the last census found alive, to hand calls to; `prefer` first if it is.
    pub fn other_alive(&self, prefer: &[&str]) -> Option<String> {
        let alive = self.inner.alive.read().ok()?;
        let me = self.inner.node.as_str();
        prefer
            .iter()
            .find(|n| **n != me && alive.iter().any(|a| a == *n))
            .map(|n| n.to_string())
            .or_else(|| alive.iter().find(|n| *n != me).cloned())
    }

    /// Whether `node` was found lost by the last census.
    pub fn is_lost(&self, node: &str) -> bool {
        node::is_lost(&self.inner.lost, node)
    }

    /// This node holds (or no longer holds) a device of `user`: listen on their channel.
    pub fn hold(&self, user: &UserId, held: bool) {
        let channel = self.inner.keys.user_channel(user.as_str());
        self.inner.subs.want(channel, held);
    }

    fn queue(&self, op: Op) {
        if let Err(e) = self.inner.ops.try_send(op) {
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    log::warn!("cluster: outbound queue full; a write or publish was dropped")
                }
                mpsc::error::TrySendError::Closed(_) => {}
            }
        }
    }

    /// This node's view of `user` changed (`None`: it holds them no more): write it to the
    /// directory and tell `to` (their friends) and the user's own other nodes.
    pub fn view_changed<'a>(
        &self,
        user: &UserId,
        view: Option<&NodeView>,
        to: impl IntoIterator<Item = &'a UserId>,
    ) {
        let json = view.and_then(|v| serde_json::to_string(v).ok());
        self.queue(Op::Write {
            user: user.to_string(),
            view: json,
        });
        let body = Body::Presence {
            user: user.to_string(),
            view: view.cloned(),
        };
        let mut channels: Vec<String> = to
            .into_iter()
            .map(|f| self.inner.keys.user_channel(f.as_str()))
            .collect();
        channels.push(self.inner.keys.user_channel(user.as_str()));
        self.publish(channels, body);
    }

    /// Writes this node's view of `user` to the directory, telling nobody.
    pub fn write_view(&self, user: &UserId, view: Option<&NodeView>) {
        self.queue(Op::Write {
            user: user.to_string(),
            view: view.and_then(|v| serde_json::to_string(v).ok()),
        });
    }

    /// `user`'s push subscriptions changed here (over REST): every other node reads them
    /// again, so that whichever node owns a call to `user` pushes to the right browsers.
    pub fn push_changed(&self, user: &UserId) {
        let body = Body::PushChanged {
            user: user.to_string(),
        };
        self.publish(vec![self.inner.keys.cluster_channel()], body);
    }

    /// The two users stopped being friends here (`severed`), or became friends: every other
    /// node's call router hears it.
    pub fn relation(&self, users: &[UserId; 2], severed: bool) {
        let users = users.each_ref().map(|u| u.to_string());
        let body = if severed {
            Body::Severed { users }
        } else {
            Body::Befriended { users }
        };
        self.publish(vec![self.inner.keys.cluster_channel()], body);
    }

    /// Sends `body` to whatever nodes hold `to`.
    pub fn send_to(&self, to: &UserId, body: Body) {
        self.publish(vec![self.inner.keys.user_channel(to.as_str())], body);
    }

    fn publish(&self, channels: Vec<String>, body: Body) {
        if let Some(payload) = self.encode(body) {
            self.queue(Op::Publish { channels, payload });
        }
    }

    /// `body` in an envelope from this node, as JSON (`None`, logged: it could not be).
    fn encode(&self, body: Body) -> Option<String> {
        let envelope = Envelope {
            from: self.inner.node.clone(),
            body,
        };
        serde_json::to_string(&envelope)
            .map_err(|e| log::error!("cluster: cannot encode a message: {e}"))
            .ok()
    }

    /// Call `call` of `users` is live as `live` says, or over (`None`).
    pub fn call_live(&self, call: &CallId, users: [&UserId; 2], live: Option<&calls::LiveCall>) {
        let id = call.to_string();
        let live = live.and_then(|l| {
            let json = serde_json::to_string(l).ok()?;
            Some((json, calls::in_call_value(&id, l)))
        });
        self.queue(Op::Call {
            call: id,
            users: users.map(|u| u.to_string()),
            live,
        });
    }

    /// Answers once every write and publish queued so far has been sent, or has failed, or
    /// after the Redis timeout: what follows reads what they wrote. At once while Redis is
    /// known to be away (what follows fails at once too).
    pub async fn flushed(&self) {
        if self.inner.health.commands_up().is_err() {
            return;
        }
        let (done, sent) = oneshot::channel();
        self.queue(Op::Flushed { done });
        // Dropped (the queue is full, or the node left): nothing to wait for.
        let _ = tokio::time::timeout(bus::TIMEOUT, sent).await;
    }

    /// Reserves the two users of a new call atomically (see `calls::reserve`). Bounded by
    /// the Redis timeout.
    pub async fn reserve(
        &self,
        call: &CallId,
        live: &calls::LiveCall,
    ) -> Result<calls::Reserved, String> {
        self.inner.health.commands_up()?;
        let mut conn = self.inner.conn.clone();
        let reserved = calls::reserve(&mut conn, &self.inner.keys, call.as_str(), live);
        match tokio::time::timeout(bus::TIMEOUT, reserved).await {
            Ok(Ok(reserved)) => Ok(reserved),
            Ok(Err(e)) => Err(format!("redis: {e}")),
            Err(_) => Err("redis: no answer in time".into()),
        }
    }

    /// The live call `user` is in, owned by a node that is not lost; an error says why Redis
    /// could not tell. Bounded by the Redis timeout.
    pub async fn call_of(
        &self,
        user: &UserId,
    ) -> Result<Option<(CallId, calls::LiveCall)>, String> {
        self.inner.health.commands_up()?;
        let mut conn = self.inner.conn.clone();
        match tokio::time::timeout(
            bus::TIMEOUT,
            calls::of_user(&mut conn, &self.inner.keys, user.as_str()),
        )
        .await
        {
            Ok(Ok(found)) => Ok(found.filter(|(_, live)| !self.is_lost(&live.owner))),
            Ok(Err(e)) => Err(format!("redis: {e}")),
            Err(_) => Err("redis: no answer in time".into()),
        }
    }

    /// Which of `sessions` (as devices keep them) were revoked on some node within
    /// [`REVOKED_KEPT`], each with its key in relay credentials: read from their markers,
    /// [`bus::BATCH`] per round trip.
    /// Tried even while the command connection is marked down: a resync may come first.
    pub async fn revoked_among(
        &self,
        sessions: Vec<HashKey>,
    ) -> Result<HashMap<HashKey, String>, String> {
        let mut conn = self.inner.conn.clone();
        let mut revoked = HashMap::new();
        for chunk in sessions.chunks(bus::BATCH) {
            let mut pipe = redis::pipe();
            for session in chunk {
                pipe.get(self.inner.keys.revoked(&session_marker(session)));
            }
            let found: Vec<Option<String>> =
                match tokio::time::timeout(bus::TIMEOUT, pipe.query_async(&mut conn)).await {
                    Ok(Ok(found)) => found,
                    Ok(Err(e)) => return Err(format!("redis: {e}")),
                    Err(_) => return Err("redis: no answer in time".into()),
                };
            revoked.extend(
                chunk
                    .iter()
                    .zip(found)
                    .filter_map(|(session, relay_key)| Some((*session, relay_key?))),
            );
        }
        Ok(revoked)
    }

    /// Every other live node's view of each of `users`; an error (Redis away, or slow) says
    /// why. Bounded by the Redis timeout.
    pub async fn read(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Vec<(String, NodeView)>>, String> {
        self.inner.health.commands_up()?;
        let mut conn = self.inner.conn.clone();
        let mut ignored = self
            .inner
            .lost
            .read()
            .map(|l| l.clone())
            .unwrap_or_default();
        ignored.insert(self.inner.node.clone());
        match tokio::time::timeout(
            bus::TIMEOUT,
            directory::read(&mut conn, &self.inner.keys, users, &ignored),
        )
        .await
        {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(format!("redis: {e}")),
            Err(_) => Err("redis: no answer in time".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_marker_names_its_session_and_nothing_else_reads_as_one() {
        let key = token::key("some token hash");
        assert_eq!(marked_session(&session_marker(&key)), Some(key));
        for not_one in [
            "",
            "1",
            "zz",
            &"0".repeat(31),
            &"0".repeat(33),
            &"é".repeat(16),
        ] {
            assert_eq!(marked_session(not_one), None, "{not_one}");
        }
    }
}

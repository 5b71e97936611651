//! Web Push (RFC 8030, with RFC 8291 encryption and RFC 8292 VAPID): rings and notifies users
//! whose app is closed. [`Push`] is the handle the REST edge and the call router share: it
//! keeps the in-memory [`index`] of subscriptions and connected sessions (so the router decides
//! without the database), builds the payloads (docs/protocol.md, "Web Push"), and hands them
//! to the [`sender`], which never makes its caller wait.
pub mod index;
pub mod keys;
pub mod resolver;
pub mod sender;
pub mod subscription;

use crate::calls::state::{Call, PushNotice};
use crate::config::Config;
use crate::db::{self, Db};
use crate::error::{AppError, StartupError};
use crate::ids::UserId;
use crate::people::Person;
use crate::time::now_ms;
use index::{Index, SessionKey, Subscribed};
use keys::Vapid;
use sender::{Message, Sender, Urgency};
use serde_json::json;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use subscription::Target;

/// An index of stored subscriptions (each as [`stored`] reads it).
fn index_of(rows: Vec<db::push_subscriptions::SubscriptionRow>, allow_insecure: bool) -> Index {
    let mut index = Index::default();
    for row in rows {
        if let Some(target) = stored(&row, allow_insecure) {
            index.subscribe(&row.user_id, &row.token_hash, target);
        }
    }
    index
}

/// A stored subscription's target. Stored ones were checked when they came in; one that no
/// longer passes (a flag changed) is left out, logged.
fn stored(row: &db::push_subscriptions::SubscriptionRow, allow_insecure: bool) -> Option<Target> {
    Target::parse(&row.endpoint, &row.p256dh, &row.auth, allow_insecure)
        .map_err(|e| log::warn!("push: a stored subscription is skipped: {}", e.message))
        .ok()
}

/// How long a push service keeps a missed call or friend request for an unreachable browser.
const KEEP_NOTICES: u64 = 24 * 60 * 60;

/// Cheap to clone.
#[derive(Clone)]
pub struct Push(Arc<Inner>);

struct Inner {
    public_key: String,
    index: Arc<Mutex<Index>>,
    sender: Sender,
    /// The TTL of a ring: the ring timeout, in whole seconds.
    ring_ttl: u64,
    /// `--push-allow-insecure-endpoints`: stored subscriptions are read with it.
    allow_insecure: bool,
}

impl Push {
    /// Loads (or generates) the VAPID key and the stored subscriptions, and starts the sender.
    pub async fn start(config: &Config, db: &Db) -> Result<Self, StartupError> {
        let vapid = Vapid::load(config, db).await?;
        let rows = db
            .run(|conn| db::push_subscriptions::all_live(conn, now_ms()))
            .await
            .map_err(StartupError::Database)?;
        let allow_insecure = config.push_allow_insecure_endpoints;
        let index = index_of(rows, allow_insecure);
        let public_key = vapid.public_key.clone();
        let index = Arc::new(Mutex::new(index));
        let loopback = config.push_allow_insecure_endpoints;
        let sender = Sender::start(vapid, db.clone(), index.clone(), loopback);
        Ok(Self(Arc::new(Inner {
            public_key,
            index,
            sender,
            ring_ttl: ttl(config.ring_timeout),
            allow_insecure,
        })))
    }

    /// Reads `user`'s subscriptions from the database again: in a cluster, another node took
    /// a change of them.
    pub async fn reload(&self, db: &Db, user: &UserId) -> Result<(), AppError> {
        let reload = self.index().reload_started(user);
        let id = user.clone();
        let read = db
            .run(move |conn| db::push_subscriptions::live_of(conn, &id, now_ms()))
            .await;
        let rows = read.inspect_err(|_| self.index().reload_failed(user, reload))?;
        let allow = self.0.allow_insecure;
        let subscriptions = rows
            .into_iter()
            .filter_map(|row| Some((row.token_hash.clone(), stored(&row, allow)?)))
            .collect();
        self.index().reloaded(user, reload, subscriptions);
        Ok(())
    }

    /// Reads every subscription from the database again: a cluster node resyncs, and may
    /// have missed announcements of changes made elsewhere. Skipped, logged, if one was made
    /// here meanwhile.
    pub async fn reload_all(&self, db: &Db) -> Result<(), AppError> {
        let since = self.index().changes();
        let rows = db
            .run(|conn| db::push_subscriptions::all_live(conn, now_ms()))
            .await?;
        let read = index_of(rows, self.0.allow_insecure);
        if !self.index().replace_all(read, since) {
            log::info!("push: subscriptions changed while they were read again; kept as they are");
        }
        Ok(())
    }

    /// The VAPID public key, base64url: the browser's `applicationServerKey`.
    pub fn public_key(&self) -> &str {
        &self.0.public_key
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // Nothing panics while holding the lock; if something did, its data is still whole
        // enough to use.
        self.0.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's (stored) subscription is now `target`.
    pub fn subscribed(&self, user: &UserId, token_hash: &str, target: Target) {
        self.index().subscribe(user, token_hash, target);
    }

    /// These sessions' subscriptions are gone (unsubscribed, or the sessions deleted).
    pub fn unsubscribed(&self, user: &UserId, token_hashes: &[String]) {
        self.index().unsubscribe(user, token_hashes);
    }

    /// Whether an invite to `user` would ring at least one closed app: a subscription whose
    /// session is not among `open`, the sessions of the user's connected devices.
    pub fn can_ring(&self, user: &UserId, open: &[SessionKey]) -> bool {
        !self.index().closed(user, open).is_empty()
    }

    /// Executes a push the call state machine asked for; `open` are the sessions of the
    /// callee's connected devices.
    pub fn call(&self, call: &Call, notice: PushNotice, open: &[SessionKey]) {
        let callee = &call.callee;
        let (targets, message) = {
            let mut index = self.index();
            match notice {
                PushNotice::Incoming => {
                    let targets = index.closed(&callee.user, open);
                    let sessions = targets.iter().map(|s| s.key).collect();
                    index.rang(&call.id, &callee.user, sessions);
                    let payload = json!({
                        "type": "call.incoming",
                        "call_id": call.id,
                        "from": call.caller.username,
                        "display_name": call.caller.display_name,
                        "media": call.media,
                    });
                    (
                        targets,
                        self.message(payload, Urgency::High, self.0.ring_ttl, Some(call)),
                    )
                }
                PushNotice::Stopped { reason, missed } => {
                    let targets = index.stop_ringing(&call.id);
                    let payload = json!({
                        "type": "call.ended",
                        "call_id": call.id,
                        "from": call.caller.username,
                        "display_name": call.caller.display_name,
                        // `answered` when it was accepted on one of the callee's devices.
                        "reason": reason.map_or("answered", |r| r.as_str()),
                        "missed": missed,
                    });
                    let ttl = if missed {
                        KEEP_NOTICES
                    } else {
                        self.0.ring_ttl
                    };
                    (
                        targets,
                        self.message(payload, Urgency::High, ttl, Some(call)),
                    )
                }
                PushNotice::Missed => {
                    // Only for a callee with no open app: an open one lists the missed call.
                    if !open.is_empty() {
                        return;
                    }
                    let targets = index.closed(&callee.user, open);
                    let payload = json!({
                        "type": "call.missed",
                        "call_id": call.id,
                        "from": call.caller.username,
                        "display_name": call.caller.display_name,
                        "media": call.media,
                    });
                    (
                        targets,
                        self.message(payload, Urgency::Normal, KEEP_NOTICES, Some(call)),
                    )
                }
            }
        };
        self.send(&callee.user, targets, message);
    }

    /// `from` asked `user`, who has no open app (the hub knows), to be friends.
    pub fn friend_request(&self, user: &UserId, from: &Person) {
        let targets = self.index().closed(user, &[]);
        let payload = json!({"type": "friend.request", "from": from});
        let message = self.message(payload, Urgency::Normal, KEEP_NOTICES, None);
        self.send(user, targets, message);
    }

    fn message(
        &self,
        payload: serde_json::Value,
        urgency: Urgency,
        ttl: u64,
        call: Option<&Call>,
    ) -> Arc<Message> {
        Arc::new(Message {
            payload: payload.to_string().into_bytes(),
            urgency,
            ttl,
            topic: call.map(|c| c.id.to_string()),
        })
    }

    fn send(&self, user: &UserId, targets: Vec<Subscribed>, message: Arc<Message>) {
        for target in targets {
            self.0
                .sender
                .send(user, target.token_hash, target.target, message.clone());
        }
    }
}

/// A duration in whole seconds for the TTL header, at least 1.
fn ttl(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}

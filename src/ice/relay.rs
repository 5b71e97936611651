//! The embedded STUN/TURN relay: webrtc-rs's TURN server on its own thread (an arbiter of its
//! own, so relay traffic never shares a thread with the broker's actors), behind the gate that
//! authenticates every request first, with coturn-style credentials, a peer policy, a per-user
//! allocation quota, and revocation of call and session credentials.
//!
//! The broker reaches the relay only through [`Relay::allow_call`], [`Relay::revoke_call`] and
//! [`Relay::revoke_sessions`], which take a short lock on the book below and queue any
//! allocation deletion for the relay thread: they never wait on the relay.
use super::credentials::{self, Issuer, Refusal, Scoped, Username};
use super::gate::Gate;
use super::nonce::Nonces;
use super::peers::PeerPolicy;
use super::throttle::{Throttle, WarnLimiter};
use crate::error::StartupError;
use crate::ids::{CallId, UserId};
use actix::{Arbiter, ArbiterHandle};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{mpsc, oneshot};
use webrtc::turn::allocation::AllocationInfo;
use webrtc::turn::auth::{generate_auth_key, AuthHandler};
use webrtc::turn::relay::relay_range::RelayAddressGeneratorRanges;
use webrtc::turn::server::config::{ConnConfig, ServerConfig};
use webrtc::turn::server::Server;
use webrtc::util::vnet::net::Net;

/// Allocate requests waiting for the server's answer; more than this many means nobody is
/// answering them, and the oldest bookkeeping is dropped.
const MAX_PENDING: usize = 4096;

/// Revoked sessions remembered until their credentials would have expired anyway; past this
/// many, the expired ones are forgotten at once.
const MAX_REVOKED_SESSIONS: usize = 65_536;

pub struct RelaySettings {
    /// UDP address for STUN and TURN (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The address clients are told to send to, and relayed addresses carry.
    pub public_ip: IpAddr,
    pub realm: String,
    /// Relayed transport addresses are taken from this inclusive port range.
    pub ports: (u16, u16),
    /// Allocations one user may hold at once (0: no limit).
    pub user_quota: usize,
    pub issuer: Issuer,
    pub allowed_peers: Vec<IpNet>,
    pub denied_peers: Vec<IpNet>,
    /// The broker's HTTP listener: never a peer.
    pub http_addr: SocketAddr,
}

/// What the auth handler, the gate and the broker share about live credentials and
/// allocations. Every lock is held for a few map operations, never across an await.
pub(super) struct Shared {
    issuer: Issuer,
    pub(super) realm: String,
    quota: usize,
    pub(super) policy: PeerPolicy,
    pub(super) nonces: Nonces,
    /// How much strangers get answered, and how often their refusals are logged.
    pub(super) strangers: Mutex<(Throttle, WarnLimiter)>,
    book: Mutex<Book>,
    /// Usernames whose allocations the relay thread should delete.
    deletions: mpsc::UnboundedSender<String>,
}

#[derive(Default)]
struct Book {
    /// `(call id, user id)` pairs whose call credentials are honoured: from the moment the call
    /// is answered until it ends (or that side's session is revoked, or one blocks the other).
    live_calls: HashSet<(String, String)>,
    /// Session keys whose credentials are refused, with the time (unix seconds) after which
    /// none of their credentials could be valid anyway.
    revoked_sessions: HashMap<String, u64>,
    /// Allocations per user id: client address -> username that made it.
    allocations: HashMap<String, HashMap<SocketAddr, String>>,
    /// Authenticated allocate requests the server has not answered yet: client address ->
    /// (user id, username).
    pending: HashMap<SocketAddr, (String, String)>,
}

impl Book {
    /// Whether the credential's call is not live (any more) or its session has ended.
    fn revoked(&self, username: &Username<'_>) -> bool {
        match username.scope {
            Scoped::Call(call) => !self
                .live_calls
                .contains(&(call.to_owned(), username.user.to_owned())),
            Scoped::Session(key) => self.revoked_sessions.contains_key(key),
        }
    }

    /// Usernames of `user`'s allocations whose scope matches.
    fn held_by(&self, user: &UserId, matches: impl Fn(Scoped<'_>) -> bool) -> Vec<String> {
        self.allocations
            .get(user.as_str())
            .map(|held| {
                held.values()
                    .filter(|name| credentials::parse(name).is_ok_and(|p| matches(p.scope)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The outcome of checking an authenticated allocate request against the quota.
pub(super) enum Admission {
    Admit,
    OverQuota,
}

impl Shared {
    pub(super) fn new(
        issuer: Issuer,
        realm: String,
        quota: usize,
        policy: PeerPolicy,
        deletions: mpsc::UnboundedSender<String>,
    ) -> Self {
        Self {
            issuer,
            realm,
            quota,
            policy,
            nonces: Nonces::new(),
            strangers: Mutex::new((Throttle::new(), WarnLimiter::new())),
            book: Mutex::new(Book::default()),
            deletions,
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock leaves plain maps behind; they are still usable.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn strangers(&self) -> MutexGuard<'_, (Throttle, WarnLimiter)> {
        self.strangers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The long-term key (MD5 of `username:realm:password`) for `username`, or why it is
    /// refused: malformed; a call credential whose call is not live (a live call's credential
    /// outlives its expiry, so a long call keeps its relay); a session credential that expired
    /// or whose session ended.
    pub(super) fn key_for(&self, username: &str) -> Result<Vec<u8>, Refusal> {
        let parsed = credentials::parse(username)?;
        if matches!(parsed.scope, Scoped::Session(_)) && parsed.expiry < credentials::now_secs() {
            return Err(Refusal::Expired);
        }
        if self.book().revoked(&parsed) {
            return Err(Refusal::Revoked);
        }
        let password = self.issuer.password_of(username);
        Ok(generate_auth_key(username, &self.realm, &password))
    }

    /// An authenticated allocate request from `client`: within the user's quota it is let
    /// through and remembered until the server answers it.
    pub(super) fn admit_allocation(&self, client: SocketAddr, username: &str) -> Admission {
        let Ok(parsed) = credentials::parse(username) else {
            return Admission::Admit;
        };
        let user = parsed.user;
        let mut book = self.book();
        let held = book.allocations.get(user);
        // A retransmission, or a second allocate on the same 5-tuple (which the server refuses
        // with 437), is not a new allocation.
        if held.is_some_and(|h| h.contains_key(&client)) {
            return Admission::Admit;
        }
        let in_flight = book
            .pending
            .iter()
            .filter(|(addr, (u, _))| u == user && **addr != client)
            .count();
        if self.quota > 0 && held.map_or(0, |h| h.len()) + in_flight >= self.quota {
            return Admission::OverQuota;
        }
        if book.pending.len() >= MAX_PENDING {
            book.pending.clear();
        }
        book.pending
            .insert(client, (user.to_owned(), username.to_owned()));
        Admission::Admit
    }

    /// The server answered an allocate request from `client`.
    pub(super) fn allocation_answered(&self, client: SocketAddr, success: bool) {
        let mut book = self.book();
        let Some((user, username)) = book.pending.remove(&client) else {
            return;
        };
        if !success {
            return;
        }
        // Revoked between the credential check and now: undo at once.
        let revoked = credentials::parse(&username).is_ok_and(|p| book.revoked(&p));
        if revoked {
            let _ = self.deletions.send(username);
            return;
        }
        let new = book
            .allocations
            .entry(user)
            .or_default()
            .insert(client, username)
            .is_none();
        crate::metrics::get().turn_allocations.add(i64::from(new));
    }

    /// An allocation ended (expired, refreshed to zero, or deleted).
    fn allocation_closed(&self, info: &AllocationInfo) {
        let Ok(parsed) = credentials::parse(&info.username) else {
            return;
        };
        let mut book = self.book();
        if let Some(held) = book.allocations.get_mut(parsed.user) {
            if held.get(&info.five_tuple.src_addr) == Some(&info.username) {
                held.remove(&info.five_tuple.src_addr);
                crate::metrics::get().turn_allocations.dec();
            }
            if held.is_empty() {
                book.allocations.remove(parsed.user);
            }
        }
    }

    pub(super) fn allow_call(&self, call: &CallId, user: &UserId) {
        self.book()
            .live_calls
            .insert((call.as_str().to_owned(), user.as_str().to_owned()));
    }

    /// Refuses the call credential of `user` from now on and deletes its allocations.
    fn revoke_call(&self, call: &CallId, user: &UserId) {
        let doomed = {
            let mut book = self.book();
            book.live_calls
                .remove(&(call.as_str().to_owned(), user.as_str().to_owned()));
            book.held_by(user, |scope| scope == Scoped::Call(call.as_str()))
        };
        self.delete(doomed);
    }

    /// Refuses the session credentials of these sessions of `user` from now on and deletes
    /// their allocations.
    fn revoke_sessions(&self, user: &UserId, token_hashes: &[String]) {
        let keys: HashSet<&str> = token_hashes
            .iter()
            .map(|hash| credentials::session_key(hash))
            .collect();
        let now = credentials::now_secs();
        // Credentials issued up to now expire within the TTL; remember a little longer.
        let until = now + self.issuer.ttl().as_secs() + 60;
        let doomed = {
            let mut book = self.book();
            if book.revoked_sessions.len() >= MAX_REVOKED_SESSIONS {
                book.revoked_sessions.retain(|_, until| *until >= now);
            }
            for key in &keys {
                book.revoked_sessions.insert((*key).to_owned(), until);
            }
            book.held_by(
                user,
                |scope| matches!(scope, Scoped::Session(key) if keys.contains(key)),
            )
        };
        self.delete(doomed);
    }

    fn delete(&self, usernames: Vec<String>) {
        for username in usernames {
            let _ = self.deletions.send(username);
        }
    }
}

/// The TURN server's view of credentials: split on ':', refuse malformed, expired and revoked
/// usernames, and derive the key from the shared secret. Called on the relay thread for every
/// authenticated request; it only hashes and looks up a set.
struct CredentialCheck(Arc<Shared>);

impl AuthHandler for CredentialCheck {
    fn auth_handle(
        &self,
        username: &str,
        _realm: &str,
        src_addr: SocketAddr,
    ) -> Result<Vec<u8>, webrtc::turn::Error> {
        self.0.key_for(username).map_err(|refusal| {
            log::debug!("relay refused {src_addr}: {refusal}");
            webrtc::turn::Error::Other(refusal.to_string())
        })
    }
}

/// A running relay. Dropping it leaves the relay running; [`Relay::close`] stops it.
pub struct Relay {
    shared: Arc<Shared>,
    server: Arc<Server>,
    local_addr: SocketAddr,
    arbiter: ArbiterHandle,
}

impl Relay {
    /// Binds the UDP socket (so a taken port fails start-up with a clear line) and starts the
    /// TURN server on a thread of its own.
    pub async fn start(settings: RelaySettings) -> Result<Self, StartupError> {
        let (min_port, max_port) = settings.ports;
        let socket =
            std::net::UdpSocket::bind(settings.listen).map_err(|source| StartupError::Bind {
                flag: "--relay-listen",
                addr: settings.listen,
                source,
            })?;
        let io = |source| StartupError::Io {
            what: "the relay",
            source,
        };
        socket.set_nonblocking(true).map_err(io)?;
        let local_addr = socket.local_addr().map_err(io)?;
        let (deletions, deletion_queue) = mpsc::unbounded_channel();
        let policy = PeerPolicy::new(
            settings.allowed_peers,
            settings.denied_peers,
            vec![settings.http_addr, local_addr],
            settings.listen.ip(),
        );
        let shared = Arc::new(Shared::new(
            settings.issuer,
            settings.realm.clone(),
            settings.user_quota,
            policy,
            deletions,
        ));
        let generator = RelayAddressGeneratorRanges {
            relay_address: settings.public_ip,
            min_port,
            max_port,
            max_retries: 0,
            address: settings.listen.ip().to_string(),
            net: Arc::new(Net::new(None)),
        };
        let arbiter = Arbiter::new();
        let (started_tx, started) = oneshot::channel();
        let serving = {
            let shared = shared.clone();
            let realm = settings.realm;
            async move {
                let result = serve(socket, shared, realm, generator, deletion_queue).await;
                let _ = started_tx.send(result);
            }
        };
        if !arbiter.spawn(serving) {
            return Err(StartupError::ThreadStopped("the relay"));
        }
        let server = started
            .await
            .map_err(|_| StartupError::ThreadStopped("the relay"))??;
        log::info!("STUN/TURN relay listening on udp {local_addr}");
        Ok(Self {
            shared,
            server,
            local_addr,
            arbiter: arbiter.handle(),
        })
    }

    /// The bound UDP address (its port is the real one when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Honour `user`'s credential for `call` (the call was answered).
    pub fn allow_call(&self, call: &CallId, user: &UserId) {
        self.shared.allow_call(call, user);
    }

    /// Refuse `user`'s credential for `call` from now on and delete its allocations.
    pub fn revoke_call(&self, call: &CallId, user: &UserId) {
        self.shared.revoke_call(call, user);
    }

    /// Refuse the credentials of these sessions of `user` and delete their allocations.
    pub fn revoke_sessions(&self, user: &UserId, token_hashes: &[String]) {
        self.shared.revoke_sessions(user, token_hashes);
    }

    /// Ends every allocation and stops the relay thread.
    pub async fn close(&self) {
        if let Err(e) = self.server.close().await {
            log::warn!("closing the relay: {e}");
        }
        self.arbiter.stop();
    }
}

/// Runs on the relay thread: wraps the socket in the gate, starts the TURN server and the two
/// housekeeping tasks (deleting revoked allocations, forgetting closed ones).
async fn serve(
    socket: std::net::UdpSocket,
    shared: Arc<Shared>,
    realm: String,
    generator: RelayAddressGeneratorRanges,
    mut deletion_queue: mpsc::UnboundedReceiver<String>,
) -> Result<Arc<Server>, StartupError> {
    let socket = tokio::net::UdpSocket::from_std(socket).map_err(|source| StartupError::Io {
        what: "the relay",
        source,
    })?;
    let (closed_tx, mut closed) = mpsc::channel::<AllocationInfo>(256);
    let server = Server::new(ServerConfig {
        conn_configs: vec![ConnConfig {
            conn: Arc::new(Gate::new(socket, shared.clone())),
            relay_addr_generator: Box::new(generator),
        }],
        realm,
        auth_handler: Arc::new(CredentialCheck(shared.clone())),
        channel_bind_timeout: std::time::Duration::ZERO,
        alloc_close_notify: Some(closed_tx),
    })
    .await
    .map_err(StartupError::Relay)?;
    let server = Arc::new(server);
    actix::spawn(async move {
        while let Some(info) = closed.recv().await {
            shared.allocation_closed(&info);
        }
    });
    let deleter = server.clone();
    actix::spawn(async move {
        while let Some(username) = deletion_queue.recv().await {
            if let Err(e) = deleter.delete_allocations_by_username(username).await {
                log::warn!("relay: cannot delete revoked allocations: {e}");
            }
        }
    });
    Ok(server)
}

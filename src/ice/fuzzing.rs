//! The relay's checkpoint opened to the fuzz targets (tests/fuzz), which can't reach it
//! otherwise: the checkpoint and the gate are private to the relay. Not part of the broker's API.
use super::checkpoint::{self, Verdict};
use super::credentials::{self, Credential, Issuer, Scope};
use super::gate;
use super::peers::PeerPolicy;
use super::relay::Shared;
use crate::ids::{CallId, UserId};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The nonce the gate signs forwarded requests with, as if learned from the TURN server.
pub const SERVER_NONCE: &str = "server-nonce-0123456789";
pub const REALM: &str = "switchboard.fuzz";
const SECRET: &str = "fuzzing secret";

/// One relay's checkpoint, with no socket and no TURN server behind it.
pub struct Checkpoint {
    shared: Shared,
    issuer: Issuer,
}

/// What became of a datagram.
pub enum Outcome {
    Pass,
    Drop,
    Answer(Vec<u8>),
    /// Authenticated: what the gate hands the TURN server (re-signed with [`SERVER_NONCE`] and
    /// the request's own key; `None` if that failed), and that key.
    Forward {
        signed: Option<Vec<u8>>,
        key: Vec<u8>,
    },
}

impl Checkpoint {
    /// A relay listening on `relay_ip` with the default peer policy and this allocation quota.
    pub fn new(relay_ip: IpAddr, quota: usize) -> Self {
        let issuer = Issuer::new(SECRET, Duration::from_secs(3600));
        let own = vec![
            SocketAddr::new(relay_ip, 8080),
            SocketAddr::new(relay_ip, 3478),
        ];
        let policy = PeerPolicy::new(Vec::new(), Vec::new(), own, relay_ip);
        // Nothing deletes allocations here: the queue's far end is dropped at once.
        let (deletions, _) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared::new(issuer.clone(), REALM.to_owned(), quota, policy, deletions);
        Self { shared, issuer }
    }

    /// A nonce this relay would hand `client` now.
    pub fn nonce(&self, client: SocketAddr) -> String {
        self.shared.nonces.issue(client, credentials::now_secs())
    }

    /// A credential as the broker hands it out now.
    pub fn credential(&self, user: &UserId, scope: Scope<'_>) -> Credential {
        self.issuer.issue(credentials::now_secs(), user, scope)
    }

    /// `user`'s credentials for `call` are honoured from now on.
    pub fn allow_call(&self, call: &CallId, user: &UserId) {
        self.shared.allow_call(call, user);
    }

    /// What the relay does with `datagram` from `from`.
    pub fn inspect(&self, datagram: &[u8], from: SocketAddr) -> Outcome {
        match checkpoint::inspect(&self.shared, datagram, from) {
            Verdict::Pass => Outcome::Pass,
            Verdict::Drop => Outcome::Drop,
            Verdict::Answer(answer) => Outcome::Answer(answer),
            Verdict::Forward(auth) => Outcome::Forward {
                signed: gate::resign(&auth, SERVER_NONCE),
                key: auth.key,
            },
        }
    }

    /// The TURN server answered an allocate request from `client`.
    pub fn allocation_answered(&self, client: SocketAddr, success: bool) {
        self.shared.allocation_answered(client, success);
    }
}

//! ICE servers for clients: the embedded STUN/TURN relay (on by default) and any external
//! STUN/TURN servers, with time-limited coturn-style credentials (see [`credentials`]).
//!
//! Two kinds of credential are handed out, both issued for the configured TTL:
//! - per session (`welcome`, `GET /api/v1/ice-servers`): the embedded relay honours them until
//!   they expire or the session ends (logout, logout-all, password change, account deletion),
//!   and deletes their allocations at once when it does;
//! - per call (`call.accepted`, and the `ack` of `call.accept`): honoured while the call is
//!   live, past their expiry too, and their allocations deleted at once when the call ends,
//!   when the session of the device holding the call is revoked, or when one side blocks the
//!   other.
//!
//! The relay itself refuses peers on the host and its networks ([`peers`]), answers strangers
//! statelessly and sparingly ([`nonce`], [`throttle`]), and authenticates every request before
//! webrtc-rs's TURN server sees it ([`checkpoint`], [`gate`]).
mod checkpoint;
pub mod credentials;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod nonce;
mod peers;
pub mod relay;
mod throttle;

pub use credentials::Scope;

use crate::config::Config;
use crate::db::{self, Db};
use crate::error::StartupError;
use crate::ids::{CallId, UserId};
use crate::wire::protocol::IceServer;
use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use credentials::Issuer;
use relay::{Relay, RelaySettings};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Where a generated secret is kept in the `settings` table.
const SECRET_SETTING: &str = "turn_secret";

/// The ICE servers clients are told about, and the embedded relay if it runs. Cheap to clone.
#[derive(Clone)]
pub struct Ice(Arc<Inner>);

struct Inner {
    issuer: Issuer,
    stun_urls: Vec<String>,
    turn_urls: Vec<String>,
    relay: Option<Relay>,
}

impl Ice {
    /// Loads (or generates and stores) the secret and starts the relay if it is enabled.
    /// `http_addr` is the broker's own HTTP listener, which the relay never sends to.
    pub async fn start(
        config: &Config,
        db: &Db,
        http_addr: SocketAddr,
    ) -> Result<Self, StartupError> {
        let secret = match &config.turn_secret {
            Some(secret) => secret.clone(),
            None => {
                let generated = BASE64_URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
                db.run(move |conn| db::settings::get_or_insert(conn, SECRET_SETTING, &generated))
                    .await
                    .map_err(StartupError::Database)?
            }
        };
        let issuer = Issuer::new(&secret, config.ice_credential_ttl);
        let (mut stun_urls, mut turn_urls) = (Vec::new(), Vec::new());
        let relay = if config.relay {
            let public_ip = public_ip(config)?;
            let relay = Relay::start(RelaySettings {
                listen: config.relay_listen,
                public_ip,
                realm: config.relay_realm.clone(),
                ports: (config.relay_ports.min, config.relay_ports.max),
                user_quota: config.relay_user_quota,
                issuer: issuer.clone(),
                allowed_peers: config.relay_allowed_peers.clone(),
                denied_peers: config.relay_denied_peers.clone(),
                http_addr,
            })
            .await?;
            let at = SocketAddr::new(public_ip, relay.local_addr().port());
            stun_urls.push(format!("stun:{at}"));
            turn_urls.push(format!("turn:{at}?transport=udp"));
            Some(relay)
        } else {
            None
        };
        for url in &config.ice_servers {
            if url.starts_with("stun") {
                stun_urls.push(url.clone());
            } else {
                turn_urls.push(url.clone());
            }
        }
        Ok(Self(Arc::new(Inner {
            issuer,
            stun_urls,
            turn_urls,
            relay,
        })))
    }

    /// The list for `RTCPeerConnection`: STUN URLs without credentials, then TURN URLs with a
    /// credential for `user` in `scope`.
    pub fn servers(&self, user: &UserId, scope: Scope<'_>) -> Vec<IceServer> {
        let mut servers = Vec::with_capacity(2);
        if !self.0.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.0.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.0.turn_urls.is_empty() {
            let credential = self.0.issuer.issue(credentials::now_secs(), user, scope);
            servers.push(IceServer {
                urls: self.0.turn_urls.clone(),
                username: Some(credential.username),
                credential: Some(credential.password),
            });
        }
        servers
    }

    /// How long issued credentials stay valid.
    pub fn ttl(&self) -> Duration {
        self.0.issuer.ttl()
    }

    /// The embedded relay's bound UDP address, if it runs.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.0.relay.as_ref().map(Relay::local_addr)
    }

    /// `user`'s credentials for `call` are honoured from now on (the call was answered, or
    /// resumed on a new device).
    pub fn grant(&self, call: &CallId, user: &UserId) {
        if let Some(relay) = &self.0.relay {
            relay.allow_call(call, user);
        }
    }

    /// These sessions of `user` ended: their credentials are refused from now on and their
    /// allocations deleted.
    pub fn revoke_sessions(&self, user: &UserId, token_hashes: &[String]) {
        if let Some(relay) = &self.0.relay {
            relay.revoke_sessions(user, token_hashes);
        }
    }

    /// Refuses `user`'s credentials for `call` from now on and deletes their allocations.
    pub fn revoke(&self, call: &CallId, user: &UserId) {
        if let Some(relay) = &self.0.relay {
            relay.revoke_call(call, user);
        }
    }

    /// Stops the embedded relay.
    pub async fn close(&self) {
        if let Some(relay) = &self.0.relay {
            relay.close().await;
        }
    }
}

/// The address clients are told: the configured public IP, else the listen IP if it is one
/// a client can reach.
fn public_ip(config: &Config) -> Result<IpAddr, StartupError> {
    match config.relay_public_ip {
        Some(ip) => Ok(ip),
        None if config.relay_listen.ip().is_unspecified() => {
            Err(StartupError::RelayPublicIpMissing(config.relay_listen))
        }
        None => Ok(config.relay_listen.ip()),
    }
}

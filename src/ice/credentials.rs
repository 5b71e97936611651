//! Time-limited TURN credentials in the format of coturn's `use-auth-secret` mode (the "TURN
//! REST API"), so one shared secret serves the embedded relay and an external coturn alike.
//!
//! - session credential: username `<expiry>:<user id>:s<session key>`, where the session key is
//!   16 hex digits of the session token's hash: it dies with the session (logout, logout-all,
//!   password change, account deletion);
//! - call credential: username `<expiry>:<user id>:<call id>`: honoured while the call is live,
//!   past its expiry too, so a long call never loses its relay.
//!
//! `<expiry>` is the unix time in seconds after which the credential is refused. The password is
//! `base64(HMAC-SHA1(secret, username))` over the whole username. coturn reads the expiry from
//! the digits before the first `:` and ignores the rest, so both work there too; only the
//! embedded relay understands the scope and can revoke a credential before it expires.
use crate::ids::{CallId, UserId};
use base64::prelude::{Engine, BASE64_STANDARD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// User and call ids are 32 hex digits; anything far longer is not ours.
const MAX_ID_LEN: usize = 64;

/// A credential as handed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

/// Hex digits of the token hash that name a session in its credentials.
const SESSION_KEY_LEN: usize = 16;

/// What a credential is issued for, and so what revokes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A signed-in session, by its token hash (`welcome`, `GET /ice-servers`).
    Session(&'a str),
    /// An answered call (`call.accepted`, the `ack` of `call.accept`).
    Call(&'a CallId),
}

/// The part of a session's token hash its credentials carry: enough to tell sessions apart,
/// too little to say anything about the token.
pub fn session_key(token_hash: &str) -> &str {
    token_hash.get(..SESSION_KEY_LEN).unwrap_or(token_hash)
}

/// A username taken apart. Only well-formed usernames parse; see [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username<'a> {
    pub expiry: u64,
    pub user: &'a str,
    pub scope: Scoped<'a>,
}

/// The scope part of a parsed username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoped<'a> {
    /// A session key.
    Session(&'a str),
    /// A call id.
    Call(&'a str),
}

/// Why a username was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed username")]
    Malformed,
    #[error("expired credential")]
    Expired,
    #[error("the call or session of this credential is over")]
    Revoked,
}

/// Issues credentials signed with one secret, valid for `ttl` from the moment of issue.
#[derive(Clone)]
pub struct Issuer {
    secret: Vec<u8>,
    ttl: Duration,
}

impl Issuer {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A credential for `user` in `scope`, expiring `ttl` after `now_secs`.
    pub fn issue(&self, now_secs: u64, user: &UserId, scope: Scope<'_>) -> Credential {
        let expiry = now_secs.saturating_add(self.ttl.as_secs().max(1));
        let username = match scope {
            Scope::Call(call) => format!("{expiry}:{user}:{call}"),
            Scope::Session(token_hash) => format!("{expiry}:{user}:s{}", session_key(token_hash)),
        };
        let password = password(&self.secret, &username);
        Credential { username, password }
    }

    /// The password for `username`, whatever its expiry (the caller decides on that).
    pub fn password_of(&self, username: &str) -> String {
        password(&self.secret, username)
    }
}

/// `base64(HMAC-SHA1(secret, username))`, as coturn computes it.
pub fn password(secret: &[u8], username: &str) -> String {
    // HMAC takes keys of any length, so this never fails.
    let mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).map(|mut mac| {
        mac.update(username.as_bytes());
        mac.finalize().into_bytes()
    });
    match mac {
        Ok(bytes) => BASE64_STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// Splits `<expiry>:<user id>:<scope>`, refusing anything else: missing or extra parts, a
/// non-numeric expiry, empty or oversized ids, characters an id never has, a session key that
/// is not 16 hex digits.
pub fn parse(username: &str) -> Result<Username<'_>, Refusal> {
    let mut parts = username.split(':');
    let expiry = parts.next().ok_or(Refusal::Malformed)?;
    let user = parts.next().ok_or(Refusal::Malformed)?;
    let scope = parts.next().ok_or(Refusal::Malformed)?;
    if parts.next().is_some() {
        return Err(Refusal::Malformed);
    }
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed);
    }
    let expiry = expiry.parse().map_err(|_| Refusal::Malformed)?;
    if !is_id(user) || !is_id(scope) {
        return Err(Refusal::Malformed);
    }
    let scope = match scope.strip_prefix('s') {
        Some(key) if key.len() == SESSION_KEY_LEN => {
            if !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Refusal::Malformed);
            }
            Scoped::Session(key)
        }
        _ => Scoped::Call(scope),
    };
    Ok(Username {
        expiry,
        user,
        scope,
    })
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "switchboard-known-answer-secret";
    const USER: &str = "8f14e45fceea167a5a36dedd4bea2543";
    const CALL: &str = "c9f0f895fb98ab9159f51fd0297e236d";

    // The expected passwords were computed independently of this code, with Python's standard
    // library on the development machine:
    //   base64.b64encode(hmac.new(secret, username, hashlib.sha1).digest())
    #[test]
    fn password_matches_an_independently_computed_hmac_sha1() {
        assert_eq!(
            password(SECRET.as_bytes(), &format!("1700000000:{USER}")),
            "0wwCjuXa2AA86RYwvc9Prd13h2s="
        );
        assert_eq!(
            password(SECRET.as_bytes(), &format!("1700000000:{USER}:{CALL}")),
            "UDAwMY61p1u24lTJB6PSlQIAWKw="
        );
        // RFC 2202, test case 2 (HMAC-SHA1), base64 of effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        assert_eq!(
            password(b"Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn issued_credentials_carry_expiry_user_and_scope() {
        let issuer = Issuer::new(SECRET, Duration::from_secs(3600));
        let user = UserId::from(USER);
        let token_hash = "0123456789abcdef0123456789abcdef";
        let session = issuer.issue(1_699_996_400, &user, Scope::Session(token_hash));
        assert_eq!(
            session.username,
            format!("1700000000:{USER}:s0123456789abcdef")
        );
        assert_eq!(
            parse(&session.username),
            Ok(Username {
                expiry: 1_700_000_000,
                user: USER,
                scope: Scoped::Session("0123456789abcdef"),
            })
        );
        let call = CallId::from(CALL);
        let scoped = issuer.issue(1_699_996_400, &user, Scope::Call(&call));
        assert_eq!(scoped.username, format!("1700000000:{USER}:{CALL}"));
        assert_eq!(scoped.password, "UDAwMY61p1u24lTJB6PSlQIAWKw=");
        assert_eq!(issuer.password_of(&scoped.username), scoped.password);
        assert_eq!(
            parse(&scoped.username),
            Ok(Username {
                expiry: 1_700_000_000,
                user: USER,
                scope: Scoped::Call(CALL),
            })
        );
    }

    #[test]
    fn malformed_usernames_are_refused() {
        for bad in [
            "",
            "1700000000",
            "1700000000:",
            "1700000000:user",
            "1700000000:user:s0123456789abcdeg",
            ":user",
            "abc:user",
            "-5:user",
            "1e9:user",
            "1700000000:user:",
            "1700000000:user:call:extra",
            "1700000000:us er",
            "1700000000:user\u{0}",
            "99999999999999999999999:user",
            &format!("1700000000:{}:s0123456789abcdef", "a".repeat(65)),
        ] {
            assert_eq!(parse(bad), Err(Refusal::Malformed), "{bad:?}");
        }
    }
}

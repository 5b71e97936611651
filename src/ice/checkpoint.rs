//! What the relay does with one datagram from the Internet, decided before webrtc-rs's TURN
//! server sees it. Strangers get small stateless answers, throttled per source
//! ([`super::throttle`]): a 401 challenge with a stateless nonce ([`super::nonce`]) for requests
//! without credentials, 438 for a stale or foreign nonce, 401 for wrong, expired or revoked
//! credentials. Authenticated requests are checked against the peer policy (403, RFC 8656) and
//! the allocation quota (486) and then forwarded; sends to refused peers are dropped. Nothing a
//! stranger sends is kept.
use super::nonce::NonceCheck;
use super::relay::{Admission, Shared};
use crate::metrics::{self, TurnRefusal};
use std::net::SocketAddr;
use std::time::Instant;
use webrtc::stun::attributes::{
    ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS,
};
use webrtc::stun::error_code::{
    ErrorCode, ErrorCodeAttribute, CODE_ALLOC_QUOTA_REACHED, CODE_BAD_REQUEST, CODE_FORBIDDEN,
    CODE_STALE_NONCE, CODE_UNAUTHORIZED,
};
use webrtc::stun::fingerprint::FINGERPRINT;
use webrtc::stun::integrity::MessageIntegrity;
use webrtc::stun::message::{
    Getter, Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST,
    METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA,
    METHOD_REFRESH, METHOD_SEND,
};
use webrtc::stun::textattrs::TextAttribute;
use webrtc::turn::proto::peeraddr::PeerAddress;

/// STUN's fixed header: type, length, magic cookie, transaction id.
const STUN_HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

pub(super) enum Verdict {
    /// Hand the datagram to the server as it is.
    Pass,
    /// Drop it unanswered.
    Drop,
    /// Answer it with these bytes; the server never sees it.
    Answer(Vec<u8>),
    /// An authenticated request, for the server once its nonce is the server's own.
    Forward(Authenticated),
}

pub(super) struct Authenticated {
    pub request: Message,
    /// The long-term key the request was signed with.
    pub key: Vec<u8>,
}

/// Decides what becomes of `datagram` from `from`.
pub(super) fn inspect(shared: &Shared, datagram: &[u8], from: SocketAddr) -> Verdict {
    match kind(datagram) {
        Kind::ChannelData => Verdict::Pass,
        Kind::Garbage => {
            log::debug!("relay: dropped a datagram from {from} that is not STUN");
            Verdict::Drop
        }
        Kind::Stun => {
            let mut message = Message {
                raw: datagram.to_vec(),
                ..Default::default()
            };
            if message.decode().is_err() {
                log::debug!("relay: dropped a STUN message from {from} that does not decode");
                return Verdict::Drop;
            }
            stun(shared, message, from)
        }
    }
}

fn stun(shared: &Shared, message: Message, from: SocketAddr) -> Verdict {
    let (class, method) = (message.typ.class, message.typ.method);
    if class == CLASS_INDICATION && method == METHOD_SEND {
        // Data for a peer: only through a permission the relay granted, and never to a refused
        // peer (the server checks the permission, this the address).
        return match peer_addresses(&message).as_slice() {
            [Some(peer)] if shared.policy.allows(*peer) => Verdict::Pass,
            _ => {
                metrics::get().turn_refused(TurnRefusal::Peer);
                refused(shared, from, "a send to a refused or missing peer");
                Verdict::Drop
            }
        };
    }
    if class != CLASS_REQUEST {
        log::debug!("relay: dropped a STUN message of class {class} from {from}");
        return Verdict::Drop;
    }
    if method == METHOD_BINDING {
        return if answers_stranger(shared, from) {
            Verdict::Pass
        } else {
            Verdict::Drop
        };
    }
    let known = [
        METHOD_ALLOCATE,
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
    ];
    if !known.contains(&method) {
        log::debug!("relay: dropped a {method} request from {from}");
        return Verdict::Drop;
    }
    authenticate(shared, message, from)
}

fn authenticate(shared: &Shared, request: Message, from: SocketAddr) -> Verdict {
    if !request.contains(ATTR_MESSAGE_INTEGRITY) {
        return stranger(shared, from, || {
            challenge(shared, &request, from, CODE_UNAUTHORIZED)
        });
    }
    let text = |attr| TextAttribute::get_from_as(&request, attr).map(|t| t.text);
    let (Ok(nonce), Ok(_realm), Ok(username)) =
        (text(ATTR_NONCE), text(ATTR_REALM), text(ATTR_USERNAME))
    else {
        return stranger(shared, from, || error(&request, CODE_BAD_REQUEST, None));
    };
    let now = super::credentials::now_secs();
    if shared.nonces.check(&nonce, from, now) != NonceCheck::Valid {
        return stranger(shared, from, || {
            challenge(shared, &request, from, CODE_STALE_NONCE)
        });
    }
    let key = match shared.key_for(&username) {
        Ok(key) => key,
        Err(refusal) => {
            metrics::get().turn_refused(TurnRefusal::Credentials);
            refused(shared, from, &format!("credentials ({refusal})"));
            return stranger(shared, from, || {
                challenge(shared, &request, from, CODE_UNAUTHORIZED)
            });
        }
    };
    if MessageIntegrity(key.clone())
        .check(&mut request.clone())
        .is_err()
    {
        metrics::get().turn_refused(TurnRefusal::Credentials);
        refused(shared, from, "credentials (wrong password)");
        return stranger(shared, from, || {
            challenge(shared, &request, from, CODE_UNAUTHORIZED)
        });
    }
    let method = request.typ.method;
    let peers = peer_addresses(&request);
    let refused_peer = match method {
        // Permissions are for addresses; the port does not matter.
        m if m == METHOD_CREATE_PERMISSION => peers
            .iter()
            .flatten()
            .any(|p| !shared.policy.allows_ip(p.ip())),
        m if m == METHOD_CHANNEL_BIND => peers.iter().flatten().any(|p| !shared.policy.allows(*p)),
        _ => false,
    };
    if refused_peer {
        metrics::get().turn_refused(TurnRefusal::Peer);
        refused(shared, from, "a permission or channel to a refused peer");
        return Verdict::Answer(error(&request, CODE_FORBIDDEN, Some(&key)));
    }
    if method == METHOD_ALLOCATE {
        if let Admission::OverQuota = shared.admit_allocation(from, &username) {
            metrics::get().turn_refused(TurnRefusal::Quota);
            log::info!("relay: allocation quota reached for a request from {from}");
            return Verdict::Answer(error(&request, CODE_ALLOC_QUOTA_REACHED, Some(&key)));
        }
    }
    Verdict::Forward(Authenticated { request, key })
}

/// Every XOR-PEER-ADDRESS of `message`, `None` for one that does not decode.
fn peer_addresses(message: &Message) -> Vec<Option<SocketAddr>> {
    message
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .map(|attr| {
            // The decoder reads the first such attribute of a message: give it one alone.
            let mut one = Message::new();
            one.transaction_id = message.transaction_id;
            one.add(ATTR_XOR_PEER_ADDRESS, &attr.value);
            let mut peer = PeerAddress::default();
            peer.get_from(&one)
                .ok()
                .map(|_| SocketAddr::new(peer.ip, peer.port))
        })
        .collect()
}

/// Whether the throttle lets an answer to a stranger from `from` go out.
fn answers_stranger(shared: &Shared, from: SocketAddr) -> bool {
    shared.strangers().0.admit(from.ip(), Instant::now())
}

fn stranger(shared: &Shared, from: SocketAddr, answer: impl FnOnce() -> Vec<u8>) -> Verdict {
    if answers_stranger(shared, from) {
        Verdict::Answer(answer())
    } else {
        Verdict::Drop
    }
}

fn refused(shared: &Shared, from: SocketAddr, what: &str) {
    shared.strangers().1.warn(Instant::now(), || {
        format!("relay: refused {what} from {from}")
    });
}

/// 401 or 438 with a fresh nonce for `from` and the realm: the answer a client retries with.
pub(super) fn challenge(
    shared: &Shared,
    request: &Message,
    from: SocketAddr,
    code: ErrorCode,
) -> Vec<u8> {
    let nonce = shared.nonces.issue(from, super::credentials::now_secs());
    build(
        request,
        code,
        vec![
            Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
            Box::new(TextAttribute::new(ATTR_REALM, shared.realm.clone())),
        ],
    )
}

/// An error answer, signed with `key` when the request was authenticated.
fn error(request: &Message, code: ErrorCode, key: Option<&[u8]>) -> Vec<u8> {
    let signature: Vec<Box<dyn Setter>> = match key {
        Some(key) => vec![
            Box::new(MessageIntegrity(key.to_vec())),
            Box::new(FINGERPRINT),
        ],
        None => vec![],
    };
    build(request, code, signature)
}

fn build(request: &Message, code: ErrorCode, rest: Vec<Box<dyn Setter>>) -> Vec<u8> {
    let reason = match code {
        CODE_UNAUTHORIZED => "Unauthorized",
        CODE_STALE_NONCE => "Stale Nonce",
        CODE_FORBIDDEN => "Forbidden",
        CODE_ALLOC_QUOTA_REACHED => "Allocation Quota Reached",
        _ => "Bad Request",
    };
    let mut attrs: Vec<Box<dyn Setter>> = vec![
        Box::new(Message {
            transaction_id: request.transaction_id,
            ..Default::default()
        }),
        Box::new(MessageType::new(request.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code,
            reason: reason.as_bytes().to_vec(),
        }),
    ];
    attrs.extend(rest);
    let mut answer = Message::new();
    match answer.build(&attrs) {
        Ok(()) => answer.raw,
        // Building from our own well-formed parts does not fail; if it did, say nothing.
        Err(e) => {
            log::warn!("relay: cannot build an answer: {e}");
            Vec::new()
        }
    }
}

/// Whether `datagram` carries relayed data (ChannelData, or a Send or Data indication), by its
/// header alone: the relay counts these bytes.
pub(super) fn is_relayed_data(datagram: &[u8]) -> bool {
    match kind(datagram) {
        Kind::ChannelData => true,
        Kind::Stun => {
            let typ = u16::from_be_bytes([datagram[0], datagram[1]]);
            [METHOD_SEND, METHOD_DATA]
                .iter()
                .any(|&method| typ == MessageType::new(method, CLASS_INDICATION).value())
        }
        Kind::Garbage => false,
    }
}

enum Kind {
    Stun,
    ChannelData,
    Garbage,
}

/// Classifies by the headers alone (RFC 8489 section 5; channel numbers as RFC 5766 section
/// 11 has them, which is what the server accepts).
fn kind(datagram: &[u8]) -> Kind {
    let Some(first) = datagram.first() else {
        return Kind::Garbage;
    };
    if (0x40..=0x7F).contains(first) {
        // Channel number, then the length of the data that follows (padding may trail it).
        let fits = datagram.len() >= 4
            && usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) + 4 <= datagram.len();
        return if fits {
            Kind::ChannelData
        } else {
            Kind::Garbage
        };
    }
    let stun = first & 0xC0 == 0
        && datagram.len() >= STUN_HEADER
        && datagram[4..8] == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) + STUN_HEADER
            == datagram.len();
    if stun {
        Kind::Stun
    } else {
        Kind::Garbage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_classified_by_their_headers() {
        let mut allocate = vec![0x00, 0x03, 0x00, 0x00];
        allocate.extend_from_slice(&MAGIC_COOKIE);
        allocate.extend_from_slice(&[7; 12]);
        assert!(matches!(kind(&allocate), Kind::Stun));
        let mut wrong_length = allocate.clone();
        wrong_length[3] = 8;
        assert!(matches!(kind(&wrong_length), Kind::Garbage));
        let mut no_cookie = allocate.clone();
        no_cookie[4] = 0;
        assert!(matches!(kind(&no_cookie), Kind::Garbage));
        assert!(matches!(
            kind(&[0x40, 0x00, 0x00, 0x01, 0xAA]),
            Kind::ChannelData
        ));
        assert!(matches!(kind(b""), Kind::Garbage));
        assert!(matches!(kind(b"GET / HTTP/1.1\r\n\r\n"), Kind::Garbage));
        assert!(matches!(kind(&[0xFF; 40]), Kind::Garbage));
    }
}

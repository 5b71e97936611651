//! The relay's checkpoint: what it does with one datagram from the Internet (pass it to the TURN
//! server, drop it, answer it itself, or forward it re-signed with the server's nonce).
//!
//! The first byte picks the mode. Even: the rest is a source address (7 bytes) and a datagram,
//! any bytes at all. Odd: the rest describes a STUN message that this target builds with the
//! webrtc crate's STUN encoder, with a valid nonce, a live credential and a correct
//! MESSAGE-INTEGRITY when the input asks for them, which random bytes would never find. There
//! it checks what the relay must do: a well-signed allocate or refresh request is forwarded,
//! every forwarded request is re-signed so that its key verifies it, every answer is a STUN
//! error response to the same transaction.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use switchboard::ice::credentials::Scope;
use switchboard::ice::fuzzing::{Checkpoint, Outcome, REALM, SERVER_NONCE};
use switchboard::ids::{CallId, UserId};
use webrtc::stun::attributes::{
    AttrType, ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME,
    ATTR_XOR_PEER_ADDRESS,
};
use webrtc::stun::error_code::ErrorCodeAttribute;
use webrtc::stun::fingerprint::FINGERPRINT;
use webrtc::stun::integrity::MessageIntegrity;
use webrtc::stun::message::{
    Getter, Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH,
};
use webrtc::stun::textattrs::TextAttribute;
use webrtc::turn::proto::peeraddr::PeerAddress;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        raw(rest);
    } else if let Ok(request) = Request::arbitrary_take_rest(Unstructured::new(rest)) {
        structured(request);
    }
});

fn raw(bytes: &[u8]) {
    let Some((address, datagram)) = bytes.split_first_chunk::<7>() else {
        return;
    };
    let from = Source {
        v6: address[0] & 1 == 1,
        ip: [address[1], address[2], address[3], address[4]],
        port: u16::from_be_bytes([address[5], address[6]]),
    }
    .addr();
    let checkpoint = Checkpoint::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 2);
    check(&checkpoint.inspect(datagram, from), datagram, None);
}

#[derive(Arbitrary, Debug)]
struct Source {
    v6: bool,
    ip: [u8; 4],
    port: u16,
}

impl Source {
    fn addr(&self) -> SocketAddr {
        let ip = if self.v6 {
            let [a, b, c, d] = self.ip;
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.ip))
        };
        SocketAddr::new(ip, self.port)
    }
}

#[derive(Arbitrary, Debug)]
enum Nonce {
    Absent,
    /// One this relay issued to the sender.
    Valid,
    /// One this relay issued to another address.
    OtherAddress,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Username {
    Absent,
    /// A live session credential.
    Session,
    /// A call credential, honoured or not.
    Call {
        live: bool,
    },
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Integrity {
    Absent,
    /// Signed with the credential's key.
    Right,
    /// Signed with another password.
    Wrong(String),
    /// Raw bytes in a MESSAGE-INTEGRITY attribute.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Peer {
    v6: bool,
    ip: [u8; 16],
    port: u16,
}

#[derive(Arbitrary, Debug)]
struct Request {
    from: Source,
    loopback_relay: bool,
    quota: u8,
    /// STUN message type as on the wire (method and class).
    typ: u16,
    /// Use a well-known type instead: 0 allocate, 1 refresh, 2 create-permission, 3 channel-bind,
    /// 4 send indication, 5 binding.
    known: Option<u8>,
    transaction: [u8; 12],
    nonce: Nonce,
    realm: Option<String>,
    username: Username,
    peers: Vec<Peer>,
    /// Other attributes, before MESSAGE-INTEGRITY.
    extra: Vec<(u16, Vec<u8>)>,
    integrity: Integrity,
    fingerprint: bool,
    /// What the TURN server answers a forwarded allocate, then the same request from a new port.
    answered: Option<bool>,
}

fn structured(r: Request) {
    let from = r.from.addr();
    let relay_ip = if r.loopback_relay {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let checkpoint = Checkpoint::new(relay_ip, usize::from(r.quota % 3));
    let user = UserId::new();
    let call = CallId::new();
    let username = match &r.username {
        Username::Absent => None,
        Username::Session => {
            let token_hash = "0123456789abcdef0123456789abcdef";
            Some(checkpoint.credential(&user, Scope::Session(token_hash)))
        }
        Username::Call { live } => {
            if *live {
                checkpoint.allow_call(&call, &user);
            }
            Some(checkpoint.credential(&user, Scope::Call(&call)))
        }
        Username::Text(text) => Some(switchboard::ice::credentials::Credential {
            username: text.clone(),
            password: String::new(),
        }),
    };

    let mut m = Message::new();
    let mut typ = MessageType::default();
    typ.read_value(r.typ & 0x3FFF);
    let known = r.known.map(|k| k % 6);
    if let Some(k) = known {
        typ.read_value(match k {
            0 => 0x0003,
            1 => 0x0004,
            2 => 0x0008,
            3 => 0x0009,
            4 => 0x0016,
            _ => 0x0001,
        });
    }
    m.typ = typ;
    m.transaction_id.0 = r.transaction;
    m.write_header();
    let mut size = 0usize;
    let mut add = |m: &mut Message, t: AttrType, v: &[u8]| {
        // A datagram is at most 64 KiB; the encoder can't make bigger messages.
        size += 4 + v.len() + 3;
        if size < 60_000 {
            m.add(t, v);
        }
    };
    let special = [
        ATTR_USERNAME,
        ATTR_REALM,
        ATTR_NONCE,
        ATTR_MESSAGE_INTEGRITY,
        ATTR_FINGERPRINT,
        ATTR_XOR_PEER_ADDRESS,
    ];
    let mut plain = true;
    for (t, v) in r.extra.iter().take(8) {
        let t = AttrType(*t);
        plain &= !special.contains(&t);
        add(&mut m, t, &v[..v.len().min(512)]);
    }
    if let Some(c) = &username {
        add(&mut m, ATTR_USERNAME, c.username.as_bytes());
    }
    let realm = r.realm.clone().unwrap_or_else(|| REALM.to_owned());
    add(&mut m, ATTR_REALM, realm.as_bytes());
    let nonce = match &r.nonce {
        Nonce::Absent => None,
        Nonce::Valid => Some(checkpoint.nonce(from)),
        Nonce::OtherAddress => Some(checkpoint.nonce(SocketAddr::new(from.ip(), from.port() ^ 1))),
        Nonce::Text(t) => Some(t.clone()),
    };
    if let Some(n) = &nonce {
        add(&mut m, ATTR_NONCE, n.as_bytes());
    }
    for p in r.peers.iter().take(4) {
        let ip = if p.v6 {
            IpAddr::V6(Ipv6Addr::from(p.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(p.ip[0], p.ip[1], p.ip[2], p.ip[3]))
        };
        let _ = PeerAddress { ip, port: p.port }.add_to(&mut m);
    }
    let signed = match (&r.integrity, &username) {
        (Integrity::Right, Some(c)) => MessageIntegrity::new_long_term_integrity(
            c.username.clone(),
            realm.clone(),
            c.password.clone(),
        )
        .add_to(&mut m)
        .is_ok(),
        (Integrity::Wrong(password), Some(c)) => {
            let _ = MessageIntegrity::new_long_term_integrity(
                c.username.clone(),
                realm.clone(),
                password.clone(),
            )
            .add_to(&mut m);
            false
        }
        (Integrity::Raw(bytes), _) => {
            add(
                &mut m,
                ATTR_MESSAGE_INTEGRITY,
                &bytes[..bytes.len().min(64)],
            );
            false
        }
        _ => false,
    };
    if r.fingerprint {
        let _ = FINGERPRINT.add_to(&mut m);
    }

    // A request a client of this relay could send, which the relay must take.
    let well_formed = plain
        && signed
        && size < 60_000
        && r.realm.is_none()
        && matches!(r.nonce, Nonce::Valid)
        && matches!(
            r.username,
            Username::Session | Username::Call { live: true }
        )
        && r.peers.is_empty()
        && matches!(known, Some(0 | 1));
    let outcome = checkpoint.inspect(&m.raw, from);
    if well_formed {
        let forwarded = matches!(outcome, Outcome::Forward { .. });
        // Quota 0 is no limit; this is the first allocation, so any quota admits it.
        assert!(forwarded, "a well-signed request was not forwarded: {r:?}");
    }
    check(&outcome, &m.raw, Some(r.fingerprint));

    if let (Outcome::Forward { .. }, Some(success), Some(0)) = (&outcome, r.answered, known) {
        checkpoint.allocation_answered(from, success);
        let again = SocketAddr::new(from.ip(), from.port().wrapping_add(1));
        let _ = checkpoint.inspect(&m.raw, again);
    }
}

/// What holds for every outcome: answers are error responses to the request's transaction,
/// forwarded requests carry the server's nonce and verify with their key.
fn check(outcome: &Outcome, request: &[u8], fingerprint: Option<bool>) {
    match outcome {
        Outcome::Pass | Outcome::Drop => {}
        Outcome::Answer(bytes) => {
            assert!(!bytes.is_empty(), "an empty answer");
            let mut answer = Message {
                raw: bytes.clone(),
                ..Default::default()
            };
            answer.decode().expect("an answer that does not decode");
            assert_eq!(answer.typ.class, CLASS_ERROR_RESPONSE);
            assert_eq!(answer.transaction_id.0[..], request[8..20]);
            let mut code = ErrorCodeAttribute::default();
            code.get_from(&answer)
                .expect("an answer without an error code");
        }
        Outcome::Forward { signed, key } => {
            let bytes = signed
                .as_ref()
                .expect("a forwarded request that can't be re-signed");
            let mut forwarded = Message {
                raw: bytes.clone(),
                ..Default::default()
            };
            forwarded
                .decode()
                .expect("a forwarded request that does not decode");
            assert_eq!(forwarded.typ.class, CLASS_REQUEST);
            let method = forwarded.typ.method;
            assert!([
                METHOD_ALLOCATE,
                METHOD_REFRESH,
                METHOD_CREATE_PERMISSION,
                METHOD_CHANNEL_BIND
            ]
            .contains(&method));
            let nonce = TextAttribute::get_from_as(&forwarded, ATTR_NONCE).expect("no nonce");
            assert_eq!(nonce.text, SERVER_NONCE);
            MessageIntegrity(key.clone())
                .check(&mut forwarded.clone())
                .expect("a forwarded request its key does not verify");
            if fingerprint == Some(true) {
                FINGERPRINT.check(&forwarded).expect("a bad fingerprint");
            }
        }
    }
}

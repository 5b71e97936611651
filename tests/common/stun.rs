//! A STUN/TURN client made of single messages (with webrtc-rs's STUN codec), to see exactly what
//! the relay answers: error codes, nonces, sizes. The TURN client of webrtc-rs hides those.
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use webrtc::stun::attributes::{ATTR_NONCE, ATTR_REALM};
use webrtc::stun::error_code::ErrorCodeAttribute;
use webrtc::stun::fingerprint::FINGERPRINT;
use webrtc::stun::integrity::MessageIntegrity;
use webrtc::stun::message::{
    Getter, Message, MessageType, Method, Setter, CLASS_REQUEST, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH,
};
use webrtc::stun::textattrs::{Nonce, Realm, TextAttribute, Username};
use webrtc::turn::proto::channum::{ChannelNumber, MIN_CHANNEL_NUMBER};
use webrtc::turn::proto::lifetime::Lifetime;
use webrtc::turn::proto::peeraddr::PeerAddress;
use webrtc::turn::proto::reqtrans::RequestedTransport;
use webrtc::turn::proto::PROTO_UDP;

const WAIT: Duration = Duration::from_secs(3);

pub struct StunClient {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    /// The realm and nonce of the last challenge.
    pub realm: String,
    pub nonce: String,
}

/// What came back: the raw answer (for its size) and the decoded message.
pub struct Answer {
    pub raw: Vec<u8>,
    pub message: Message,
}

impl Answer {
    /// The error code, or 0 for a success.
    pub fn code(&self) -> u16 {
        let mut code = ErrorCodeAttribute::default();
        match code.get_from(&self.message) {
            Ok(()) => code.code.0,
            Err(_) => 0,
        }
    }

    pub fn text(&self, attr: webrtc::stun::attributes::AttrType) -> Option<String> {
        TextAttribute::get_from_as(&self.message, attr)
            .ok()
            .map(|t| t.text)
    }
}

impl StunClient {
    pub async fn new(server: &str, username: &str, password: &str) -> Self {
        Self::bound("127.0.0.1:0", server, username, password).await
    }

    pub async fn bound(local: &str, server: &str, username: &str, password: &str) -> Self {
        Self {
            socket: UdpSocket::bind(local).await.expect("udp socket"),
            server: server.parse().expect("relay address"),
            username: username.to_owned(),
            password: password.to_owned(),
            realm: String::new(),
            nonce: String::new(),
        }
    }

    /// Sends `raw` and waits for the answer with the same transaction id.
    pub async fn exchange(&self, request: &Message) -> Option<Answer> {
        self.socket
            .send_to(&request.raw, self.server)
            .await
            .expect("sent");
        let mut buf = vec![0; 1500];
        let read = async {
            loop {
                let (n, _) = self.socket.recv_from(&mut buf).await.ok()?;
                let mut message = Message {
                    raw: buf[..n].to_vec(),
                    ..Default::default()
                };
                if message.decode().is_ok() && message.transaction_id == request.transaction_id {
                    return Some(Answer {
                        raw: buf[..n].to_vec(),
                        message,
                    });
                }
            }
        };
        tokio::time::timeout(WAIT, read).await.ok().flatten()
    }

    /// An allocate request without credentials, as every client's first.
    pub fn bare_allocate() -> Message {
        let mut m = Message::new();
        m.build(&[
            Box::new(webrtc::stun::agent::TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            }),
        ])
        .expect("build");
        m
    }

    /// Sends a bare allocate and keeps the challenge's realm and nonce; returns the answer.
    pub async fn challenge(&mut self) -> Answer {
        let answer = self
            .exchange(&Self::bare_allocate())
            .await
            .expect("the relay answers a bare allocate");
        self.realm = answer.text(ATTR_REALM).unwrap_or_default();
        self.nonce = answer.text(ATTR_NONCE).unwrap_or_default();
        answer
    }

    /// A signed request of `method` with these attributes, using the last nonce.
    pub fn signed(&self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(webrtc::stun::agent::TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        setters.push(Box::new(Username::new(
            webrtc::stun::attributes::ATTR_USERNAME,
            self.username.clone(),
        )));
        setters.push(Box::new(Realm::new(ATTR_REALM, self.realm.clone())));
        setters.push(Box::new(Nonce::new(ATTR_NONCE, self.nonce.clone())));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            self.username.clone(),
            self.realm.clone(),
            self.password.clone(),
        )));
        setters.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&setters).expect("build");
        m
    }

    pub async fn allocate(&self) -> Answer {
        let request = self.signed(
            METHOD_ALLOCATE,
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })],
        );
        self.exchange(&request).await.expect("allocate answered")
    }

    pub async fn refresh(&self, lifetime: Duration) -> Answer {
        let request = self.signed(METHOD_REFRESH, vec![Box::new(Lifetime(lifetime))]);
        self.exchange(&request).await.expect("refresh answered")
    }

    pub async fn permit(&self, peers: &[SocketAddr]) -> Answer {
        let attrs = peers
            .iter()
            .map(|p| {
                Box::new(PeerAddress {
                    ip: p.ip(),
                    port: p.port(),
                }) as Box<dyn Setter>
            })
            .collect();
        let request = self.signed(METHOD_CREATE_PERMISSION, attrs);
        self.exchange(&request).await.expect("permission answered")
    }

    pub async fn bind_channel(&self, peer: SocketAddr, offset: u16) -> Answer {
        let request = self.signed(
            METHOD_CHANNEL_BIND,
            vec![
                Box::new(ChannelNumber(MIN_CHANNEL_NUMBER + offset)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ],
        );
        self.exchange(&request)
            .await
            .expect("channel bind answered")
    }
}

/// The TURN entry of an `ice_servers` list: (host:port of the first turn: URL, username,
/// credential).
pub fn turn_of(servers: &serde_json::Value) -> (String, String, String) {
    let entry = servers
        .as_array()
        .expect("ice_servers is a list")
        .iter()
        .find(|s| s["username"].is_string())
        .unwrap_or_else(|| panic!("no TURN entry in {servers}"));
    let url = entry["urls"][0].as_str().expect("url");
    let addr = url
        .strip_prefix("turn:")
        .and_then(|rest| rest.split('?').next())
        .unwrap_or_else(|| panic!("not a turn: URL: {url}"));
    (
        addr.to_owned(),
        entry["username"].as_str().expect("username").to_owned(),
        entry["credential"].as_str().expect("credential").to_owned(),
    )
}

//! The relay's UDP socket as the TURN server sees it. The gate sits between the socket and the
//! server: it drops datagrams that are neither STUN nor TURN channel data before the server
//! parses them, answers allocate requests over the user's quota with 486 (Allocation Quota
//! Reached), and watches allocate answers go out so the relay knows which user holds which
//! allocation (for the quota and for revoking call credentials).
use super::relay::{Admission, Shared};
use async_trait::async_trait;
use std::any::Any;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use webrtc::stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_USERNAME};
use webrtc::stun::error_code::{ErrorCodeAttribute, CODE_ALLOC_QUOTA_REACHED};
use webrtc::stun::fingerprint::FINGERPRINT;
use webrtc::stun::integrity::MessageIntegrity;
use webrtc::stun::message::{
    Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE,
    METHOD_ALLOCATE,
};
use webrtc::stun::textattrs::TextAttribute;
use webrtc::util::Conn;

/// STUN's fixed header: type, length, magic cookie, transaction id.
const STUN_HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

pub(super) struct Gate {
    socket: UdpSocket,
    shared: Arc<Shared>,
}

impl Gate {
    pub(super) fn new(socket: UdpSocket, shared: Arc<Shared>) -> Self {
        Self { socket, shared }
    }

    /// Whether the server should see this datagram; answers over-quota allocations itself.
    async fn admit(&self, datagram: &[u8], from: SocketAddr) -> bool {
        match kind(datagram) {
            Kind::ChannelData | Kind::Stun => true,
            Kind::Garbage => {
                log::debug!("relay: dropped a datagram from {from} that is not STUN");
                false
            }
            Kind::AllocateRequest => match self.check_quota(datagram, from) {
                None => true,
                Some(refusal) => {
                    log::info!("relay: allocation quota reached for a request from {from}");
                    if let Err(e) = self.socket.send_to(&refusal.raw, from).await {
                        log::debug!("relay: cannot answer {from}: {e}");
                    }
                    false
                }
            },
        }
    }

    /// `None` lets the request through (the server authenticates it, or refuses it); `Some` is
    /// the 486 answer for an authentic request over the user's quota.
    fn check_quota(&self, datagram: &[u8], from: SocketAddr) -> Option<Message> {
        let mut request = Message {
            raw: datagram.to_vec(),
            ..Default::default()
        };
        request.decode().ok()?;
        if !request.contains(ATTR_MESSAGE_INTEGRITY) {
            return None;
        }
        let username = TextAttribute::get_from_as(&request, ATTR_USERNAME).ok()?;
        let key = self.shared.key_for(&username.text).ok()?;
        MessageIntegrity(key.clone())
            .check(&mut request.clone())
            .ok()?;
        match self.shared.admit_allocation(from, &username.text) {
            Admission::Admit => None,
            Admission::OverQuota => {
                let mut answer = Message::new();
                let attrs: [Box<dyn Setter>; 5] = [
                    Box::new(Message {
                        transaction_id: request.transaction_id,
                        ..Default::default()
                    }),
                    Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE)),
                    Box::new(ErrorCodeAttribute {
                        code: CODE_ALLOC_QUOTA_REACHED,
                        reason: b"Allocation Quota Reached".to_vec(),
                    }),
                    Box::new(MessageIntegrity(key)),
                    Box::new(FINGERPRINT),
                ];
                answer.build(&attrs).ok()?;
                Some(answer)
            }
        }
    }
}

enum Kind {
    AllocateRequest,
    Stun,
    ChannelData,
    Garbage,
}

fn message_type(datagram: &[u8]) -> Option<u16> {
    let bytes = datagram.get(..2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Classifies by the headers alone (RFC 5389 section 6, RFC 5766 section 11.4).
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
    if !stun {
        Kind::Garbage
    } else if message_type(datagram)
        == Some(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST).value())
    {
        Kind::AllocateRequest
    } else {
        Kind::Stun
    }
}

#[async_trait]
impl Conn for Gate {
    async fn connect(&self, _addr: SocketAddr) -> webrtc::util::Result<()> {
        Err(webrtc::util::Error::Other(
            "the relay socket is not connected".into(),
        ))
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc::util::Result<usize> {
        Err(webrtc::util::Error::Other(
            "the relay socket is not connected".into(),
        ))
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = match self.socket.recv_from(buf).await {
                Ok(received) => received,
                // An ICMP error for an earlier send (some platforms report it here): that peer
                // is gone, the socket is fine. Ending the server's read loop would kill the relay.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            if self.admit(&buf[..n], from).await {
                return Ok((n, from));
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc::util::Result<usize> {
        Err(webrtc::util::Error::Other(
            "the relay socket is not connected".into(),
        ))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc::util::Result<usize> {
        let answer = message_type(buf);
        if answer == Some(MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE).value()) {
            self.shared.allocation_answered(target, true);
        } else if answer == Some(MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE).value()) {
            self.shared.allocation_answered(target, false);
        }
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc::util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Every allocation "closes" the listener it came through when it ends; the listener must
    /// outlive them, so this does nothing (as for a plain UDP socket).
    async fn close(&self) -> webrtc::util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
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
        assert!(matches!(kind(&allocate), Kind::AllocateRequest));
        let mut binding = allocate.clone();
        binding[1] = 0x01;
        assert!(matches!(kind(&binding), Kind::Stun));
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

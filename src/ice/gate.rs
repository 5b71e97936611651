//! The relay's UDP socket as webrtc-rs's TURN server sees it. Every datagram passes the
//! [`checkpoint`](super::checkpoint) first; only what it lets through reaches the server.
//!
//! The server keeps every nonce it hands out in a map that only shrinks when a nonce is used
//! again, so a stranger could grow it without end. It therefore never meets a stranger: the
//! checkpoint answers them with stateless nonces, and the gate forwards authenticated requests
//! with their nonce swapped for one nonce of the server's own (re-signed with the same key).
//! The gate learns that nonce by handing the server a request of its own, from an address no
//! client has, and catching the answer; it renews it the same way once the server would find it
//! stale, which swaps one entry of the server's map for another. Server answers that carry a
//! nonce on their way to a client get the client's stateless nonce instead.
//!
//! The gate also watches allocate answers go out so the relay knows which user holds which
//! allocation (for the quota and for revocation).
use super::checkpoint::{self, Authenticated, Verdict};
use super::relay::Shared;
use crate::metrics::{self, Relayed};
use async_trait::async_trait;
use std::any::Any;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use webrtc::stun::attributes::{ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE};
use webrtc::stun::fingerprint::FINGERPRINT;
use webrtc::stun::integrity::MessageIntegrity;
use webrtc::stun::message::{
    Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE,
    METHOD_ALLOCATE,
};
use webrtc::util::Conn;

/// Where the gate's own requests to the server seem to come from: no client has this address.
const SELF: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The server finds its nonces stale after an hour; the gate renews a little after that.
const SERVER_NONCE_LIFETIME: Duration = Duration::from_secs(3600 + 2);

pub(super) struct Gate {
    socket: UdpSocket,
    shared: Arc<Shared>,
    /// The server's nonce the gate signs forwarded requests with, and when it was learned.
    server_nonce: Mutex<Option<(String, Instant)>>,
    /// An authenticated request waiting while the gate's own request fetches a server nonce.
    held: Mutex<Option<(Authenticated, SocketAddr)>>,
}

impl Gate {
    pub(super) fn new(socket: UdpSocket, shared: Arc<Shared>) -> Self {
        Self {
            socket,
            shared,
            server_nonce: Mutex::new(None),
            held: Mutex::new(None),
        }
    }

    fn server_nonce(&self) -> MutexGuard<'_, Option<(String, Instant)>> {
        self.server_nonce
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn held(&self) -> MutexGuard<'_, Option<(Authenticated, SocketAddr)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's current nonce, unless it is missing or stale.
    fn fresh_server_nonce(&self) -> Option<String> {
        self.server_nonce()
            .as_ref()
            .filter(|(_, learned)| learned.elapsed() < SERVER_NONCE_LIFETIME)
            .map(|(nonce, _)| nonce.clone())
    }

    /// A request of the gate's own that the server answers with a fresh nonce: 438 for a stale
    /// or unknown nonce (which the server forgets as it answers).
    fn nonce_request(&self) -> Vec<u8> {
        let stale = self
            .server_nonce()
            .as_ref()
            .map_or_else(|| "none".to_owned(), |(nonce, _)| nonce.clone());
        let mut request = Message::new();
        request.typ = MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST);
        let _ = request.new_transaction_id();
        request.write_header();
        request.add(ATTR_NONCE, stale.as_bytes());
        request.add(ATTR_MESSAGE_INTEGRITY, &[0; 20]);
        request.raw
    }

    /// Writes what the server should read into `buf`: the request re-signed with the server's
    /// nonce, or the gate's own nonce request (holding the client's until the next read).
    fn forward(
        &self,
        auth: Authenticated,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        match self.fresh_server_nonce() {
            Some(nonce) => {
                let signed = resign(&auth, &nonce)?;
                copy_into(buf, &signed).map(|n| (n, from))
            }
            None => {
                *self.held() = Some((auth, from));
                copy_into(buf, &self.nonce_request()).map(|n| (n, SELF))
            }
        }
    }

    /// Learns the nonce of a server answer (the server hands out a new one only when asked).
    fn learn(&self, answer: &Message) -> Option<String> {
        let nonce = answer.get(ATTR_NONCE).ok()?;
        let nonce = String::from_utf8(nonce).ok()?;
        *self.server_nonce() = Some((nonce.clone(), Instant::now()));
        Some(nonce)
    }
}

/// `message` up to its MESSAGE-INTEGRITY (or FINGERPRINT), with its NONCE replaced by `nonce`.
fn with_nonce(message: &Message, nonce: &str) -> Message {
    let mut out = Message::new();
    out.typ = message.typ;
    out.transaction_id = message.transaction_id;
    out.write_header();
    for attr in &message.attributes.0 {
        match attr.typ {
            ATTR_MESSAGE_INTEGRITY | ATTR_FINGERPRINT => break,
            ATTR_NONCE => out.add(ATTR_NONCE, nonce.as_bytes()),
            typ => out.add(typ, &attr.value),
        }
    }
    out
}

/// `request` with its NONCE replaced by `nonce` and MESSAGE-INTEGRITY (and FINGERPRINT, if it
/// had one) recomputed with its own key.
pub(super) fn resign(auth: &Authenticated, nonce: &str) -> Option<Vec<u8>> {
    let request = &auth.request;
    let mut out = with_nonce(request, nonce);
    MessageIntegrity(auth.key.clone()).add_to(&mut out).ok()?;
    if request.contains(ATTR_FINGERPRINT) {
        FINGERPRINT.add_to(&mut out).ok()?;
    }
    Some(out.raw)
}

fn copy_into(buf: &mut [u8], bytes: &[u8]) -> Option<usize> {
    let slot = buf.get_mut(..bytes.len())?;
    slot.copy_from_slice(bytes);
    Some(bytes.len())
}

fn message_type(datagram: &[u8]) -> Option<u16> {
    let bytes = datagram.get(..2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
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
            // The server asks for the next datagram only once it has answered the last, so a
            // held request finds the nonce the gate's own request just fetched.
            let held = self.held().take();
            if let Some((auth, from)) = held {
                let signed = self.fresh_server_nonce().and_then(|n| resign(&auth, &n));
                match signed.and_then(|bytes| copy_into(buf, &bytes)) {
                    Some(n) => return Ok((n, from)),
                    None => {
                        log::warn!(
                            "relay: the TURN server gave no nonce; dropped a request from {from}"
                        );
                        continue;
                    }
                }
            }
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
            match checkpoint::inspect(&self.shared, &buf[..n], from) {
                Verdict::Pass => {
                    if checkpoint::is_relayed_data(&buf[..n]) {
                        metrics::get().turn_relayed(Relayed::ToPeer, n);
                    }
                    return Ok((n, from));
                }
                Verdict::Drop => {}
                Verdict::Answer(answer) => {
                    if let Err(e) = self.socket.send_to(&answer, from).await {
                        log::debug!("relay: cannot answer {from}: {e}");
                    }
                }
                Verdict::Forward(auth) => {
                    if let Some(read) = self.forward(auth, from, buf) {
                        return Ok(read);
                    }
                }
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
        let allocate_ok = MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE).value();
        let allocate_error = MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE).value();
        if answer == Some(allocate_ok) {
            self.shared.allocation_answered(target, true);
        } else if answer == Some(allocate_error) && target != SELF {
            self.shared.allocation_answered(target, false);
        }
        // Error answers may carry a server nonce: keep it, and give the client its own.
        if answer.is_some_and(|t| t & 0x0110 == 0x0110) {
            let mut message = Message {
                raw: buf.to_vec(),
                ..Default::default()
            };
            if message.decode().is_ok() && message.contains(ATTR_NONCE) {
                self.learn(&message);
                if target == SELF {
                    return Ok(buf.len());
                }
                let nonce = self
                    .shared
                    .nonces
                    .issue(target, super::credentials::now_secs());
                let rewritten = with_nonce(&message, &nonce).raw;
                return Ok(self
                    .socket
                    .send_to(&rewritten, target)
                    .await
                    .map(|_| buf.len())?);
            }
        }
        if target == SELF {
            return Ok(buf.len());
        }
        if checkpoint::is_relayed_data(buf) {
            metrics::get().turn_relayed(Relayed::ToClient, buf.len());
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

//! A WebSocket test client speaking Switchboard's protocol to the real server.
use super::TestApp;
use actix_web::web::Bytes;
use awc::ws::{CloseCode, Codec, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;

type Conn = actix_codec::Framed<awc::BoxedSocket, Codec>;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct WsClient {
    conn: Conn,
    /// Frames received while waiting for another one, handed out by later `recv` calls.
    pending: VecDeque<Value>,
    /// Answer the server's pings (turn off to test the heartbeat timeout).
    pub auto_pong: bool,
    next_id: u64,
}

/// How the server closed the socket.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl TestApp {
    pub async fn ws_connect(&self) -> WsClient {
        WsClient::connect(&self.address).await
    }

    /// Connects and authenticates; returns the client and its `welcome` frame.
    pub async fn ws_login(&self, token: &str) -> (WsClient, Value) {
        WsClient::login(&self.address, token).await
    }
}

/// `caller` invites `callee_name`, whose socket `callee` accepts: the answered call's id.
pub async fn answered_call(
    caller: &mut WsClient,
    callee: &mut WsClient,
    callee_name: &str,
) -> String {
    let invited = caller
        .ok(json!({"type": "call.invite", "to": callee_name, "media": "audio"}))
        .await;
    let id = invited["call_id"].as_str().expect("call_id").to_owned();
    callee.recv_type("call.incoming").await;
    callee
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    caller.recv_type("call.accepted").await;
    id
}

impl WsClient {
    /// A socket to the broker at `address`, not authenticated yet.
    pub async fn connect(address: &str) -> Self {
        let url = format!("ws://{address}/ws");
        let (_, conn) = awc::Client::new()
            .ws(url)
            .max_frame_size(1 << 20)
            .connect()
            .await
            .expect("websocket connects");
        WsClient {
            conn,
            pending: VecDeque::new(),
            auto_pong: true,
            next_id: 0,
        }
    }

    /// Connects and authenticates; returns the client and its `welcome` frame.
    pub async fn login(address: &str, token: &str) -> (Self, Value) {
        let mut ws = Self::connect(address).await;
        ws.send(json!({"type": "auth", "token": token})).await;
        let welcome = ws.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (ws, welcome)
    }
}

impl WsClient {
    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    /// Sends a frame that the server may already have closed the socket against (a flood):
    /// whether it went out.
    pub async fn try_send(&mut self, frame: Value) -> bool {
        self.conn
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_ok()
    }

    pub async fn send_text(&mut self, text: String) {
        self.conn
            .send(Message::Text(text.into()))
            .await
            .expect("frame sent");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.conn
            .send(Message::Binary(Bytes::from(bytes)))
            .await
            .expect("frame sent");
    }

    /// Sends `frame` with a fresh `id` and waits for its `ack` or `error`.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        frame["id"] = json!(id);
        self.send(frame).await;
        self.recv_where(|f| f["ref"] == json!(id) && (f["type"] == "ack" || f["type"] == "error"))
            .await
    }

    /// Waits for `call.ended` of `call_id`, asserting its reason.
    pub async fn expect_ended(&mut self, call_id: &str, reason: &str) {
        let frame = self.recv_type("call.ended").await;
        let expected = json!({"type": "call.ended", "call_id": call_id, "reason": reason});
        assert_eq!(frame, expected);
    }

    /// Like `request`, asserting an `ack`.
    pub async fn ok(&mut self, frame: Value) -> Value {
        let reply = self.request(frame).await;
        assert_eq!(reply["type"], "ack", "{reply}");
        reply
    }

    /// The next frame from the server.
    pub async fn recv(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        match actix_rt::time::timeout(WAIT, self.next_text()).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(closed)) => panic!("socket closed while waiting for a frame: {closed:?}"),
            Err(_) => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The first frame (now or soon) that matches; others stay queued in order.
    pub async fn recv_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.pending.iter().position(&pred) {
            return self.pending.remove(pos).expect("frame");
        }
        let deadline = actix_rt::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(actix_rt::time::Instant::now());
            match actix_rt::time::timeout(left, self.next_text()).await {
                Ok(Ok(frame)) if pred(&frame) => return frame,
                Ok(Ok(frame)) => self.pending.push_back(frame),
                Ok(Err(closed)) => panic!(
                    "socket closed while waiting: {closed:?}; queued: {:?}",
                    self.pending
                ),
                Err(_) => panic!(
                    "no matching frame within {WAIT:?}; got instead: {:?}",
                    self.pending
                ),
            }
        }
    }

    /// The first frame of this `type`.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        self.recv_where(|f| f["type"] == ty).await
    }

    /// Asserts nothing matching arrives within `wait`.
    pub async fn expect_none(&mut self, wait: Duration, pred: impl Fn(&Value) -> bool) {
        if let Some(f) = self.pending.iter().find(|f| pred(f)) {
            panic!("unexpected frame {f}");
        }
        let deadline = actix_rt::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(actix_rt::time::Instant::now());
            match actix_rt::time::timeout(left, self.next_text()).await {
                Ok(Ok(frame)) if pred(&frame) => panic!("unexpected frame {frame}"),
                Ok(Ok(frame)) => self.pending.push_back(frame),
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Waits for the server to close the socket; frames before the close are ignored.
    pub async fn expect_close(&mut self) -> Closed {
        let deadline = actix_rt::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(actix_rt::time::Instant::now());
            match actix_rt::time::timeout(left, self.next_text()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(closed)) => return closed,
                Err(_) => panic!("socket not closed within {WAIT:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .conn
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await;
    }

    /// Reads until a text frame (parsed) or the close.
    async fn next_text(&mut self) -> Result<Value, Closed> {
        loop {
            match self.conn.next().await {
                Some(Ok(Frame::Text(bytes))) => {
                    return Ok(serde_json::from_slice(&bytes).expect("server frames are JSON"));
                }
                Some(Ok(Frame::Ping(payload))) => {
                    if self.auto_pong {
                        let _ = self.conn.send(Message::Pong(payload)).await;
                    }
                }
                Some(Ok(Frame::Close(reason))) => {
                    let (code, reason) = reason
                        .map(|r| (u16::from(r.code), r.description.unwrap_or_default()))
                        .unwrap_or((1005, String::new()));
                    return Err(Closed { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(Closed {
                        code: 0,
                        reason: format!("protocol error: {e}"),
                    })
                }
                None => {
                    return Err(Closed {
                        code: 1006,
                        reason: "connection dropped".into(),
                    })
                }
            }
        }
    }
}

/// A valid SDP, as a browser makes for a data channel.
pub const SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 \
AB:CD:EF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC\r\n\
a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

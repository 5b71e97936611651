//! Every WebSocket frame, client to server and server to client. JSON is parsed once here, at
//! the socket edge; SDP and ICE candidates stay opaque after validation.
use crate::calls::state::{EndReason, Media};
use crate::error::ErrorCode;
use crate::ice::IceServer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// A client's optional message id, echoed back as `ref` in `ack` and `error`.
pub type ClientRef = Option<Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    Offer,
    Answer,
    Candidate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChosenStatus {
    Online,
    Away,
    Dnd,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    #[serde(rename = "auth")]
    Auth { id: ClientRef, token: String },
    #[serde(rename = "presence.set")]
    PresenceSet {
        id: ClientRef,
        status: ChosenStatus,
        message: Option<String>,
    },
    #[serde(rename = "call.invite")]
    CallInvite {
        id: ClientRef,
        to: String,
        media: Media,
    },
    #[serde(rename = "call.accept")]
    CallAccept { id: ClientRef, call_id: String },
    #[serde(rename = "call.reject")]
    CallReject {
        id: ClientRef,
        call_id: String,
        reason: Option<String>,
    },
    #[serde(rename = "call.cancel")]
    CallCancel { id: ClientRef, call_id: String },
    #[serde(rename = "call.hangup")]
    CallHangup {
        id: ClientRef,
        call_id: String,
        reason: Option<String>,
    },
    #[serde(rename = "call.resume")]
    CallResume { id: ClientRef, call_id: String },
    /// Read by [`ClientFrame::parse`] through [`SignalFields`]: the SDP and the candidate stay
    /// the client's raw JSON, relayed as they came once checked.
    #[serde(rename = "signal")]
    Signal {
        id: ClientRef,
        call_id: String,
        kind: SignalKind,
        sdp: Option<Box<RawValue>>,
        candidate: Option<Box<RawValue>>,
    },
    #[serde(rename = "ping")]
    Ping { id: ClientRef },
}

/// A `signal` frame's fields, read straight from the text. The tagged enum would first copy
/// the whole frame, SDP included, into serde's generic buffer, which raw values can't pass
/// through; `signal` is the frame a call sends most, so it skips that step.
#[derive(Deserialize)]
struct SignalFields {
    id: ClientRef,
    call_id: String,
    kind: SignalKind,
    sdp: Option<Box<RawValue>>,
    candidate: Option<Box<RawValue>>,
}

/// Just the `type` of a frame.
#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

impl ClientFrame {
    /// Parses one client frame.
    pub fn parse(text: &str) -> serde_json::Result<Self> {
        let is_signal = text.starts_with(r#"{"type":"signal""#)
            || serde_json::from_str::<TypeOnly>(text).is_ok_and(|t| t.kind == "signal");
        if !is_signal {
            return serde_json::from_str(text);
        }
        let f: SignalFields = serde_json::from_str(text)?;
        Ok(ClientFrame::Signal {
            id: f.id,
            call_id: f.call_id,
            kind: f.kind,
            sdp: f.sdp,
            candidate: f.candidate,
        })
    }

    pub fn id(&self) -> &ClientRef {
        use ClientFrame::*;
        match self {
            Auth { id, .. }
            | PresenceSet { id, .. }
            | CallInvite { id, .. }
            | CallAccept { id, .. }
            | CallReject { id, .. }
            | CallCancel { id, .. }
            | CallHangup { id, .. }
            | CallResume { id, .. }
            | Signal { id, .. }
            | Ping { id } => id,
        }
    }
}

/// Just the id of a frame that failed to parse, so its error can still carry `ref`.
#[derive(Deserialize)]
pub struct IdOnly {
    pub id: ClientRef,
}

/// A person as frames show them.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub username: String,
    pub display_name: String,
}

/// One user's presence, as seen by a friend.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceInfo {
    pub username: String,
    /// online, away, dnd, busy or offline.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "crate::time::as_rfc3339_opt"
    )]
    pub last_seen: Option<i64>,
}

/// A friend in the `welcome` snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct FriendPresence {
    pub display_name: String,
    #[serde(flatten)]
    pub presence: PresenceInfo,
}

/// A call ringing for the user (in `welcome`) or their call to resume.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub call_id: String,
    pub peer: String,
    pub direction: &'static str,
    pub media: Media,
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum ServerFrame<'a> {
    #[serde(rename = "welcome")]
    Welcome {
        user: &'a crate::http::views::UserView,
        device_id: &'a str,
        friends: Vec<FriendPresence>,
        calls: Vec<CallSummary>,
        missed_calls: i64,
        heartbeat: Heartbeat,
        /// STUN/TURN servers with a per-user credential, for `RTCPeerConnection`.
        ice_servers: &'a [IceServer],
    },
    #[serde(rename = "ack")]
    Ack {
        #[serde(rename = "ref")]
        reference: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        merged: Option<bool>,
        /// On the ack of `call.accept`: ICE servers with a credential scoped to the call.
        #[serde(skip_serializing_if = "Option::is_none")]
        ice_servers: Option<&'a [IceServer]>,
    },
    #[serde(rename = "error")]
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
        error: ErrorCode,
        message: &'a str,
    },
    #[serde(rename = "presence")]
    Presence(&'a PresenceInfo),
    #[serde(rename = "friend.request")]
    FriendRequest { from: &'a Person },
    #[serde(rename = "friend.accepted")]
    FriendAccepted { friend: &'a FriendPresence },
    #[serde(rename = "friend.removed")]
    FriendRemoved { username: &'a str },
    #[serde(rename = "call.incoming")]
    CallIncoming {
        call_id: &'a str,
        from: &'a str,
        display_name: &'a str,
        media: Media,
    },
    #[serde(rename = "call.ringing")]
    CallRinging { call_id: &'a str },
    #[serde(rename = "call.accepted")]
    CallAccepted {
        call_id: &'a str,
        peer: &'a str,
        /// Whether this side sends the SDP offer (the caller, or the earlier inviter in glare).
        offerer: bool,
        /// ICE servers with a credential scoped to this call (revoked when it ends).
        ice_servers: &'a [IceServer],
    },
    #[serde(rename = "call.answered_elsewhere")]
    CallAnsweredElsewhere { call_id: &'a str },
    #[serde(rename = "call.ended")]
    CallEnded { call_id: &'a str, reason: EndReason },
    #[serde(rename = "signal")]
    Signal {
        call_id: &'a str,
        from: &'a str,
        kind: SignalKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        sdp: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        candidate: Option<&'a RawValue>,
    },
    #[serde(rename = "pong")]
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
}

impl ServerFrame<'_> {
    /// The frame as WebSocket text, serialized once however many devices receive it.
    pub fn encode(&self) -> bytestring::ByteString {
        match serde_json::to_string(self) {
            Ok(s) => s.into(),
            Err(e) => {
                log::error!("cannot encode a frame: {e}");
                r#"{"type":"error","error":"internal","message":"internal error"}"#.into()
            }
        }
    }
}

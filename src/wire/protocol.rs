//! Every WebSocket frame, client to server and server to client. A client frame is parsed in
//! one pass over its text ([`ClientFrame::parse`]); SDP and ICE candidates stay opaque, the
//! client's own JSON, after validation.
use crate::error::ErrorCode;
use crate::ids::{CallId, DeviceId};
use crate::people::{Person, UserView};
pub use crate::vocabulary::SignalKind;
use crate::vocabulary::{ChosenStatus, Direction, EndReason, LiveState, Media, PresenceStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// A client's optional message id, echoed back as `ref` in `ack` and `error`.
pub type ClientRef = Option<Value>;

#[derive(Debug)]
pub enum ClientFrame {
    Auth {
        id: ClientRef,
        token: String,
    },
    PresenceSet {
        id: ClientRef,
        status: ChosenStatus,
        message: Option<String>,
    },
    CallInvite {
        id: ClientRef,
        to: String,
        media: Media,
    },
    CallAccept {
        id: ClientRef,
        call_id: CallId,
    },
    CallReject {
        id: ClientRef,
        call_id: CallId,
        reason: Option<String>,
    },
    CallCancel {
        id: ClientRef,
        call_id: CallId,
    },
    CallHangup {
        id: ClientRef,
        call_id: CallId,
        reason: Option<String>,
    },
    CallResume {
        id: ClientRef,
        call_id: CallId,
    },
    /// The SDP and the candidate stay the client's raw JSON, relayed as they came once checked.
    Signal {
        id: ClientRef,
        call_id: CallId,
        kind: SignalKind,
        sdp: Option<Box<RawValue>>,
        candidate: Option<Box<RawValue>>,
    },
    Ping {
        id: ClientRef,
    },
}

/// A frame that could not be read, with its `id` when the text got that far.
#[derive(Debug)]
pub struct BadFrame {
    pub reference: ClientRef,
    pub message: String,
}

/// Every field any client frame has, each kept as the client's raw JSON: one pass over the text
/// finds them all (SDP included, without copying it), then each frame type decodes the ones it
/// needs. So a frame is parsed once, and a frame whose fields are wrong still has its `id`.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    frame_type: Option<Cow<'a, str>>,
    id: ClientRef,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    media: Option<&'a RawValue>,
    #[serde(borrow)]
    call_id: Option<&'a RawValue>,
    #[serde(borrow)]
    reason: Option<&'a RawValue>,
    #[serde(borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    sdp: Option<&'a RawValue>,
    #[serde(borrow)]
    candidate: Option<&'a RawValue>,
}

/// A field the frame type requires.
fn required<T: DeserializeOwned>(raw: Option<&RawValue>, name: &str) -> Result<T, String> {
    let raw = raw.ok_or_else(|| format!("missing field `{name}`"))?;
    serde_json::from_str(raw.get()).map_err(|e| format!("invalid `{name}`: {e}"))
}

/// A field the frame type may leave out (or send as null).
fn optional<T: DeserializeOwned>(raw: Option<&RawValue>, name: &str) -> Result<Option<T>, String> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("invalid `{name}`: {e}")),
    }
}

/// A field relayed as the client sent it; JSON null counts as absent.
fn opaque(raw: Option<&RawValue>) -> Option<Box<RawValue>> {
    raw.filter(|r| r.get() != "null").map(RawValue::to_owned)
}

/// A frame's `id` alone, whatever else it holds.
#[derive(Deserialize)]
struct IdOnly {
    id: ClientRef,
}

impl ClientFrame {
    /// The `id` of a frame that did not read (a `type` that is not a string, say), when it is
    /// a JSON object with one: read again for it alone, on this error path only.
    fn id_of(text: &str) -> ClientRef {
        serde_json::from_str::<IdOnly>(text).ok()?.id
    }

    /// Parses one client frame.
    pub fn parse(text: &str) -> Result<Self, BadFrame> {
        let mut fields: Fields = serde_json::from_str(text).map_err(|e| BadFrame {
            reference: Self::id_of(text),
            message: format!("bad frame: {e}"),
        })?;
        // The id is moved, never copied: into the frame, or into the error.
        let id = fields.id.take();
        match Self::from_fields(fields) {
            Ok(mut frame) => {
                *frame.id_mut() = id;
                Ok(frame)
            }
            Err(message) => Err(BadFrame {
                reference: id,
                message: format!("bad frame: {message}"),
            }),
        }
    }

    /// The frame named by `f`, its id left empty for [`ClientFrame::parse`] to fill in.
    fn from_fields(f: Fields) -> Result<Self, String> {
        let id = None;
        let call_id = || required::<String>(f.call_id, "call_id").map(CallId::from);
        let frame_type = f.frame_type.ok_or("missing field `type`")?;
        Ok(match frame_type.as_ref() {
            "auth" => ClientFrame::Auth {
                id,
                token: required(f.token, "token")?,
            },
            "presence.set" => ClientFrame::PresenceSet {
                id,
                status: required(f.status, "status")?,
                message: optional(f.message, "message")?,
            },
            "call.invite" => ClientFrame::CallInvite {
                id,
                to: required(f.to, "to")?,
                media: required(f.media, "media")?,
            },
            "call.accept" => ClientFrame::CallAccept {
                id,
                call_id: call_id()?,
            },
            "call.reject" => ClientFrame::CallReject {
                id,
                call_id: call_id()?,
                reason: optional(f.reason, "reason")?,
            },
            "call.cancel" => ClientFrame::CallCancel {
                id,
                call_id: call_id()?,
            },
            "call.hangup" => ClientFrame::CallHangup {
                id,
                call_id: call_id()?,
                reason: optional(f.reason, "reason")?,
            },
            "call.resume" => ClientFrame::CallResume {
                id,
                call_id: call_id()?,
            },
            "signal" => ClientFrame::Signal {
                id,
                call_id: call_id()?,
                kind: required(f.kind, "kind")?,
                sdp: opaque(f.sdp),
                candidate: opaque(f.candidate),
            },
            "ping" => ClientFrame::Ping { id },
            other => return Err(format!("unknown frame type `{other}`")),
        })
    }

    /// The client's id for the frame, for a reply to a frame that is not otherwise handled.
    pub fn into_id(mut self) -> ClientRef {
        self.id_mut().take()
    }

    fn id_mut(&mut self) -> &mut ClientRef {
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

/// One user's presence, as seen by a friend.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceInfo {
    pub username: String,
    pub status: PresenceStatus,
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
    pub call_id: CallId,
    pub peer: String,
    pub direction: Direction,
    pub media: Media,
    pub state: LiveState,
}

#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

/// One entry of `RTCConfiguration.iceServers`, in the shape browsers take as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum ServerFrame<'a> {
    #[serde(rename = "welcome")]
    Welcome {
        user: &'a UserView,
        device_id: &'a DeviceId,
        friends: Vec<FriendPresence>,
        calls: Vec<CallSummary>,
        missed_calls: i64,
        heartbeat: Heartbeat,
        /// STUN/TURN servers with a credential for this session, for `RTCPeerConnection`.
        ice_servers: &'a [IceServer],
    },
    #[serde(rename = "ack")]
    Ack {
        #[serde(rename = "ref")]
        reference: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<&'a CallId>,
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
        call_id: &'a CallId,
        from: &'a str,
        display_name: &'a str,
        media: Media,
    },
    #[serde(rename = "call.ringing")]
    CallRinging { call_id: &'a CallId },
    #[serde(rename = "call.accepted")]
    CallAccepted {
        call_id: &'a CallId,
        peer: &'a str,
        /// Whether this side sends the SDP offer (the caller, or the earlier inviter in glare).
        offerer: bool,
        /// ICE servers with a credential scoped to this call (revoked when it ends).
        ice_servers: &'a [IceServer],
    },
    #[serde(rename = "call.answered_elsewhere")]
    CallAnsweredElsewhere { call_id: &'a CallId },
    /// To the device that stayed in an active call: the peer re-attached (after a drop, a
    /// reload or from another device) and will send an offer, maybe from a new peer connection.
    #[serde(rename = "call.resumed")]
    CallResumed { call_id: &'a CallId, peer: &'a str },
    #[serde(rename = "call.ended")]
    CallEnded {
        call_id: &'a CallId,
        reason: EndReason,
    },
    #[serde(rename = "signal")]
    Signal {
        call_id: &'a CallId,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_keeps_the_clients_own_json_for_sdp_and_candidate() {
        let text = r#"{"type":"signal","id":3,"call_id":"c1","kind":"offer","sdp":"v=0\r\n","candidate":null}"#;
        let ClientFrame::Signal {
            id,
            call_id,
            kind,
            sdp,
            candidate,
        } = ClientFrame::parse(text).unwrap()
        else {
            panic!("not a signal");
        };
        assert_eq!(id, Some(Value::from(3)));
        assert_eq!(call_id, CallId::from("c1"));
        assert_eq!(kind, SignalKind::Offer);
        assert_eq!(sdp.unwrap().get(), r#""v=0\r\n""#);
        assert!(candidate.is_none());
    }

    #[test]
    fn a_frame_with_a_wrong_field_still_names_its_id() {
        let bad = ClientFrame::parse(r#"{"type":"presence.set","id":"p","status":"asleep"}"#)
            .unwrap_err();
        assert_eq!(bad.reference, Some(Value::from("p")));
        assert!(bad.message.contains("status"), "{}", bad.message);

        let unknown = ClientFrame::parse(r#"{"id":9,"type":"teleport"}"#).unwrap_err();
        assert_eq!(unknown.reference, Some(Value::from(9)));
        assert!(unknown.message.contains("teleport"));

        let missing = ClientFrame::parse(r#"{"type":"call.invite","media":"video"}"#).unwrap_err();
        assert!(missing.message.contains("`to`"), "{}", missing.message);

        let broken = ClientFrame::parse("{not json").unwrap_err();
        assert_eq!(broken.reference, None);

        let mistyped = ClientFrame::parse(r#"{"id":1,"type":5}"#).unwrap_err();
        assert_eq!(mistyped.reference, Some(Value::from(1)));
        let not_an_object = ClientFrame::parse(r#"[1, 2]"#).unwrap_err();
        assert_eq!(not_an_object.reference, None);
    }

    #[test]
    fn a_numeric_id_comes_back_as_the_same_number() {
        // Found by the client_frame fuzz target: the id was read to a neighbouring double.
        for id in [
            "1e59",
            "99999999999999999999999999999999999999999999999999999999997",
            "0.1",
        ] {
            let text = format!(r#"{{"type":"call.hangup","id":{id},"call_id":"c1"}}"#);
            let reference = ClientFrame::parse(&text).unwrap().into_id().unwrap();
            let ack = ServerFrame::Ack {
                reference: &reference,
                call_id: None,
                merged: None,
                ice_servers: None,
            }
            .encode();
            let ack: Value = serde_json::from_str(&ack).unwrap();
            assert_eq!(ack["ref"].as_f64(), id.parse::<f64>().ok(), "{id}");
        }
    }

    #[test]
    fn escaped_types_and_optional_nulls_are_read() {
        let frame =
            ClientFrame::parse(r#"{"type":"call.rejec\u0074","call_id":"c","reason":null}"#)
                .unwrap();
        assert!(matches!(
            frame,
            ClientFrame::CallReject { reason: None, .. }
        ));
    }
}

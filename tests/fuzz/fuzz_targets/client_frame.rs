//! A client's WebSocket traffic as the session reads it: the frame guard over the raw byte
//! stream, then each text frame parsed into a `ClientFrame` and checked as the session checks
//! it (status message, callee username, reasons, SDP through webrtc's parser, candidates), and
//! the `error` or `ack` frame that answers it.
//!
//! The first byte picks the mode: 0 the rest is a frame's text; 1 the rest is an SDP, sent in an
//! offer (so the SDP parser gets every input, not only those inside valid JSON); 2 the rest is
//! the socket's raw byte stream, cut into chunks, through the frame guard.
#![no_main]

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use switchboard::error::{AppError, ErrorCode};
use switchboard::people;
use switchboard::wire::protocol::{ClientFrame, ServerFrame, SignalKind};
use switchboard::ws::frame_guard::{self, FrameGuard};
use switchboard::ws::session::{clip, status_message, validate_signal};
use switchboard::ws::MAX_FRAME_BYTES;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                frame(text);
            }
        }
        1 => {
            let sdp = String::from_utf8_lossy(rest);
            let text = serde_json::json!({
                "type": "signal", "id": 1, "call_id": "c1", "kind": "offer", "sdp": sdp,
            })
            .to_string();
            frame(&text);
        }
        2 => guard(rest),
        _ => {}
    }
});

/// What the session does with one text frame, and the answer it sends.
fn frame(text: &str) {
    let frame = match ClientFrame::parse(text) {
        Ok(frame) => frame,
        Err(bad) => {
            let err = AppError::new(ErrorCode::InvalidFrame, bad.message);
            return answer_error(&bad.reference, &err);
        }
    };
    let (id, checked) = match frame {
        ClientFrame::Auth { id, .. } | ClientFrame::Ping { id } => (id, Ok(())),
        ClientFrame::PresenceSet { id, message, .. } => {
            let checked = status_message(message).map(|message| {
                let len = message.map_or(0, |m| {
                    assert_eq!(m, m.trim());
                    m.chars().count()
                });
                assert!(len <= 140, "a status message of {len} characters passed");
            });
            (id, checked)
        }
        ClientFrame::CallInvite { id, to, .. } => {
            let checked = people::username(&to).map(|name| {
                assert!((3..=32).contains(&name.len()), "username {name:?} passed");
                assert!(name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'.' | b'-')));
            });
            (id, checked)
        }
        ClientFrame::CallReject { id, reason, .. } | ClientFrame::CallHangup { id, reason, .. } => {
            let clipped = clip(reason);
            assert!(clipped.is_none_or(|r| r.chars().count() <= 200
                && !r.is_empty()
                && !r.chars().any(char::is_control)
                && r.trim() == r));
            (id, Ok(()))
        }
        ClientFrame::CallAccept { id, .. }
        | ClientFrame::CallCancel { id, .. }
        | ClientFrame::CallResume { id, .. } => (id, Ok(())),
        ClientFrame::Signal {
            id,
            kind,
            sdp,
            candidate,
            ..
        } => {
            let checked = validate_signal(kind, sdp.as_deref(), candidate.is_some());
            if checked.is_ok() {
                match kind {
                    SignalKind::Offer | SignalKind::Answer => {
                        // What is relayed is the client's JSON, and it is a string.
                        let sdp = sdp.expect("an offer or answer passed without sdp");
                        assert!(serde_json::from_str::<String>(sdp.get()).is_ok());
                    }
                    SignalKind::Candidate => assert!(candidate.is_some()),
                }
            }
            (id, checked)
        }
    };
    match checked {
        Ok(()) => answer_ack(&id),
        Err(err) => answer_error(&id, &err),
    }
}

/// The `error` frame goes out as JSON carrying the client's id as `ref`.
fn answer_error(reference: &Option<Value>, err: &AppError) {
    let encoded = ServerFrame::Error {
        reference: reference.as_ref(),
        error: err.code,
        message: &err.message,
    }
    .encode();
    let sent: Value = serde_json::from_str(&encoded).expect("an error frame that is not JSON");
    assert_eq!(sent["type"], "error");
    assert_eq!(sent.get("ref"), reference.as_ref());
}

fn answer_ack(reference: &Option<Value>) {
    let Some(reference) = reference else { return };
    let encoded = ServerFrame::Ack {
        reference,
        call_id: None,
        merged: None,
        ice_servers: None,
    }
    .encode();
    let sent: Value = serde_json::from_str(&encoded).expect("an ack that is not JSON");
    assert_eq!(&sent["ref"], reference);
}

/// The frame guard over `bytes` in chunks whose sizes the first bytes pick: what it passes is
/// the input unchanged, and once it cuts the stream nothing more comes.
fn guard(bytes: &[u8]) {
    let Some((&sizes, bytes)) = bytes.split_first() else {
        return;
    };
    let step = usize::from(sizes % 32) + 1;
    let chunks: Vec<Result<Bytes, PayloadError>> = bytes
        .chunks(step)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut guard = FrameGuard::new(futures_util::stream::iter(chunks), MAX_FRAME_BYTES);
    let mut cx = Context::from_waker(Waker::noop());
    let mut passed = Vec::new();
    loop {
        match Pin::new(&mut guard).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(chunk))) => passed.extend_from_slice(&chunk),
            Poll::Ready(Some(Err(err))) => {
                // The session sees only the error's text (actix-web-actors keeps no more).
                assert!(frame_guard::is_cut(&err.to_string()), "{err}");
                assert!(matches!(
                    Pin::new(&mut guard).poll_next(&mut cx),
                    Poll::Ready(None)
                ));
                break;
            }
            Poll::Ready(None) => break,
            Poll::Pending => unreachable!("an iterator stream is always ready"),
        }
    }
    assert_eq!(passed, bytes[..passed.len()]);
}

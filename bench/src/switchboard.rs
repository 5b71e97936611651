//! Switchboard's WebSocket protocol as a client speaks it: authenticate, place and accept a
//! call, and the `signal` frames the two devices of a call exchange.
use crate::payload;
use crate::population::Account;
use crate::ws::{self, Ws};
use crate::Res;
use serde::Serialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Opens `/ws` and authenticates with the first frame; returns the socket and `welcome`.
pub async fn connect(
    addr: SocketAddr,
    account: &Account,
    index: usize,
) -> Res<(Ws, serde_json::Value)> {
    let mut socket = ws::connect(addr, "/ws", index).await?;
    let welcome = authenticate(&mut socket, account).await?;
    Ok((socket, welcome))
}

pub async fn authenticate(socket: &mut Ws, account: &Account) -> Res<serde_json::Value> {
    let auth = json!({"type": "auth", "token": account.token}).to_string();
    ws::send(socket, auth).await?;
    ws::wait_for(socket, "welcome", TIMEOUT).await
}

/// The caller invites, the callee accepts; returns the call id once the caller has
/// `call.accepted`.
pub async fn establish_call(caller: &mut Ws, callee: &mut Ws, callee_name: &str) -> Res<String> {
    let invite = json!({"type": "call.invite", "id": 1, "to": callee_name, "media": "video"});
    ws::send(caller, invite.to_string()).await?;
    let incoming = ws::wait_for(callee, "call.incoming", TIMEOUT).await?;
    let call_id = incoming["call_id"]
        .as_str()
        .ok_or("call.incoming without call_id")?
        .to_owned();
    let accept = json!({"type": "call.accept", "call_id": call_id});
    ws::send(callee, accept.to_string()).await?;
    ws::wait_for(caller, "call.accepted", TIMEOUT).await?;
    Ok(call_id)
}

/// A `signal` frame with `type` first, as browsers write `JSON.stringify({type: ...})` (and
/// as the web client does); `json!` would sort the keys.
#[derive(Serialize)]
struct Signal<'a> {
    #[serde(rename = "type")]
    frame: &'static str,
    call_id: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sdp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate: Option<serde_json::Value>,
}

fn encode(signal: &Signal<'_>) -> String {
    serde_json::to_string(signal).unwrap_or_default()
}

pub fn signal_sdp(call_id: &str, kind: &str, sdp: &str) -> String {
    encode(&Signal {
        frame: "signal",
        call_id,
        kind,
        sdp: Some(sdp),
        candidate: None,
    })
}

pub fn signal_candidate(call_id: &str, n: usize) -> String {
    encode(&Signal {
        frame: "signal",
        call_id,
        kind: "candidate",
        sdp: None,
        candidate: Some(payload::candidate(n)),
    })
}

/// One direction's repeating frames: the offer (caller) or the answer (callee), then
/// candidates. No `id`, so the broker sends no `ack`: only the relay is measured.
pub fn relay_frames(call_id: &str, caller_side: bool, seed: u64) -> Vec<Message> {
    let (kind, setup) = if caller_side {
        ("offer", "actpass")
    } else {
        ("answer", "active")
    };
    let mut frames = vec![Message::text(signal_sdp(
        call_id,
        kind,
        &payload::sdp(setup, seed),
    ))];
    for n in 0..payload::CANDIDATES_PER_SDP {
        frames.push(Message::text(signal_candidate(call_id, n)));
    }
    frames
}

/// Whether a frame the receiving device got is a relayed signal (anything else, such as an
/// `error`, is counted apart).
pub fn is_relayed(text: &str) -> bool {
    text.starts_with(r#"{"type":"signal""#)
}

/// Connects both accounts of each pair and puts every pair in an active call: the links the
/// relay engine drives.
pub async fn call_links(
    addr: SocketAddr,
    pairs: &[(Account, Account)],
) -> Res<Vec<crate::traffic::Link>> {
    call_links_between(addr, addr, pairs).await
}

/// As `call_links`, with each caller connected to `caller_addr` and each callee to
/// `callee_addr` (two nodes of a cluster: the callee's only device is on the other node).
pub async fn call_links_between(
    caller_addr: SocketAddr,
    callee_addr: SocketAddr,
    pairs: &[(Account, Account)],
) -> Res<Vec<crate::traffic::Link>> {
    let mut tasks = Vec::new();
    for (i, (caller, callee)) in pairs.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            let (mut a, _) = connect(caller_addr, &caller, 2 * i).await?;
            let (mut b, _) = connect(callee_addr, &callee, 2 * i + 1).await?;
            let call_id = establish_call(&mut a, &mut b, &callee.username).await?;
            Ok::<_, crate::Error>(crate::traffic::Link {
                a,
                b,
                a_to_b: relay_frames(&call_id, true, i as u64),
                b_to_a: relay_frames(&call_id, false, i as u64),
            })
        }));
    }
    let mut links = Vec::new();
    for task in tasks {
        links.push(task.await??);
    }
    Ok(links)
}

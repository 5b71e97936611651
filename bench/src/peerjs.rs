//! PeerJS server's protocol as PeerJS clients speak it: connect with an id and token, wait for
//! `OPEN`, then send `OFFER`/`ANSWER`/`CANDIDATE` to a `dst`, which arrive with `src` set.
//! The payloads are what the PeerJS client library sends for a media connection.
use crate::payload;
use crate::traffic::Link;
use crate::ws::{self, Ws};
use crate::Res;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn connect(addr: SocketAddr, id: &str, index: usize) -> Res<Ws> {
    let path = format!("/peerjs?key=peerjs&id={id}&token=tok{index}");
    let mut socket = ws::connect(addr, &path, index).await?;
    ws::wait_for(&mut socket, "OPEN", Duration::from_secs(30)).await?;
    Ok(socket)
}

fn frames(dst: &str, caller_side: bool, seed: u64) -> Vec<Message> {
    let connection_id = format!("mc_bench{seed}");
    let (kind, sdp_type, setup) = if caller_side {
        ("OFFER", "offer", "actpass")
    } else {
        ("ANSWER", "answer", "active")
    };
    let sdp = json!({"type": kind, "dst": dst, "payload": {
        "sdp": {"type": sdp_type, "sdp": payload::sdp(setup, seed)},
        "type": "media", "connectionId": connection_id, "browser": "chrome"}});
    let mut frames = vec![Message::text(sdp.to_string())];
    for n in 0..payload::CANDIDATES_PER_SDP {
        let candidate = json!({"type": "CANDIDATE", "dst": dst, "payload": {
            "candidate": payload::candidate(n), "type": "media", "connectionId": connection_id}});
        frames.push(Message::text(candidate.to_string()));
    }
    frames
}

/// `calls` pairs of PeerJS clients, each pair a link.
pub async fn links(addr: SocketAddr, calls: usize) -> Res<Vec<Link>> {
    let mut tasks = Vec::new();
    for i in 0..calls {
        tasks.push(tokio::spawn(async move {
            let (a_id, b_id) = (format!("bench-a-{i}"), format!("bench-b-{i}"));
            let a = connect(addr, &a_id, 2 * i).await?;
            let b = connect(addr, &b_id, 2 * i + 1).await?;
            Ok::<_, crate::Error>(Link {
                a,
                b,
                a_to_b: frames(&b_id, true, i as u64),
                b_to_a: frames(&a_id, false, i as u64),
            })
        }));
    }
    let mut links = Vec::new();
    for task in tasks {
        links.push(task.await??);
    }
    Ok(links)
}

/// PeerJS drops clients that send nothing for `alive_timeout` (60 s); a heartbeat between
/// phases keeps every client alive however long the run.
pub async fn heartbeat(links: &mut [Link]) -> Res<()> {
    use futures_util::SinkExt;
    for link in links {
        for socket in [&mut link.a, &mut link.b] {
            socket
                .send(Message::text(r#"{"type":"HEARTBEAT"}"#))
                .await?;
        }
    }
    Ok(())
}

pub fn is_relayed(text: &str) -> bool {
    text.starts_with(r#"{"type":"OFFER""#)
        || text.starts_with(r#"{"type":"ANSWER""#)
        || text.starts_with(r#"{"type":"CANDIDATE""#)
}

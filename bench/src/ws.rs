//! WebSocket client plumbing shared by every scenario: connecting over loopback (spreading
//! source addresses so tens of thousands of sockets never run out of ephemeral ports), and
//! reading text frames by their `type`.
use crate::Res;
use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// Connects to `ws://addr{path}`. `index` picks the source address 127.0.0.(2..=251), so
/// each source address carries at most a few thousand sockets.
pub async fn connect(addr: SocketAddr, path: &str, index: usize) -> Res<Ws> {
    let source = Ipv4Addr::new(127, 0, 0, 2 + (index % 250) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    // Small read buffers: the bench holds up to 15,000 of these next to the broker.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}

/// The `type` of a JSON frame, read without parsing the frame: serde and JSON.stringify both
/// write the tag first in the frames we receive. Falls back to a full parse otherwise.
pub fn frame_type(text: &str) -> String {
    if let Some(rest) = text.strip_prefix(r#"{"type":""#) {
        if let Some(end) = rest.find('"') {
            return rest[..end].to_owned();
        }
    }
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

pub async fn send(ws: &mut Ws, text: String) -> Res<()> {
    ws.send(Message::text(text)).await?;
    Ok(())
}

/// The next text frame, skipping pings and pongs; errors when the socket closes or nothing
/// arrives within `timeout`.
pub async fn next_text(ws: &mut Ws, timeout: Duration) -> Res<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "timed out waiting for a frame")?;
        match message {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(reason))) => {
                return Err(format!("socket closed by the server: {reason:?}").into())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err("socket closed".into()),
        }
    }
}

/// Reads frames until one of type `wanted` arrives (returned parsed); an `error` frame fails.
pub async fn wait_for(ws: &mut Ws, wanted: &str, timeout: Duration) -> Res<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let text = next_text(ws, left)
            .await
            .map_err(|e| format!("waiting for {wanted}: {e}"))?;
        let kind = frame_type(&text);
        if kind == wanted {
            return Ok(serde_json::from_str(&text)?);
        }
        if kind == "error" || kind == "ERROR" {
            return Err(format!("waiting for {wanted}, got {text}").into());
        }
    }
}

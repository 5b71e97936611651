//! A text chat over a WebRTC data channel between two webrtc-rs peers, for tests that prove a
//! media path works end to end.
use std::sync::Arc;
use tokio::sync::mpsc;
use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::data_channel::RTCDataChannel;
use webrtc::peer_connection::RTCPeerConnection;

/// The offerer's side: opens channel "chat", says `greeting` once it is open, and reports every
/// text it hears. Keep the channel alive for as long as the chat should last.
pub async fn open_chat(
    pc: &RTCPeerConnection,
    greeting: &'static str,
) -> (mpsc::UnboundedReceiver<String>, Arc<RTCDataChannel>) {
    let channel = pc
        .create_data_channel("chat", None)
        .await
        .expect("data channel");
    let greeter = Arc::downgrade(&channel);
    channel.on_open(Box::new(move || {
        Box::pin(async move {
            if let Some(channel) = greeter.upgrade() {
                channel.send_text(greeting).await.expect("greeting sent");
            }
        })
    }));
    let (tx, rx) = mpsc::unbounded_channel();
    channel.on_message(Box::new(move |message: DataChannelMessage| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(text_of(&message));
        })
    }));
    (rx, channel)
}

/// The answerer's side: reports every text it hears on the offered channel and answers each
/// with `reply`.
pub fn answer_chat(pc: &RTCPeerConnection, reply: &'static str) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    pc.on_data_channel(Box::new(move |channel: Arc<RTCDataChannel>| {
        let tx = tx.clone();
        Box::pin(async move {
            let replier = Arc::downgrade(&channel);
            channel.on_message(Box::new(move |message: DataChannelMessage| {
                let tx = tx.clone();
                let replier = replier.clone();
                Box::pin(async move {
                    let _ = tx.send(text_of(&message));
                    if let Some(channel) = replier.upgrade() {
                        channel.send_text(reply).await.expect("reply sent");
                    }
                })
            }));
        })
    }));
    rx
}

fn text_of(message: &DataChannelMessage) -> String {
    assert!(message.is_string, "expected a text message");
    String::from_utf8(message.data.to_vec()).expect("UTF-8 text")
}

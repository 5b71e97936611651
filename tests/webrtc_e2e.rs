//! End to end: two webrtc-rs peers negotiate a data channel purely through Switchboard's
//! protocol (call invite/accept, then offer, answer and trickled ICE candidates as `signal`
//! frames) and talk over it.
mod common;

use common::data_channel::{answer_chat, open_chat};
use common::ws::WsClient;
use common::{spawn_app_with, Backend};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

on_both_databases!(webrtc_peers_negotiate_through_switchboard_and_exchange_data_channel_messages);

const GREETING: &str = "hello bob, alice here over a data channel";
const REPLY: &str = "hi alice, bob here";
/// The whole negotiation and exchange; loopback ICE takes well under a second.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long one turn of the trickle loop listens on a socket before looking elsewhere.
const POLL: Duration = Duration::from_millis(250);

/// One participant: their socket to Switchboard, their peer connection and what its callbacks
/// report.
struct Side {
    name: &'static str,
    ws: WsClient,
    pc: Arc<RTCPeerConnection>,
    /// Local ICE candidates as they are gathered, waiting to be trickled.
    local_candidates: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    /// Text arriving over the data channel.
    inbox: mpsc::UnboundedReceiver<String>,
    /// Candidates this side trickled that the other side has not received yet, in order.
    in_flight: VecDeque<Value>,
    remote_candidates_applied: usize,
    heard: Option<String>,
}

async fn webrtc_peers_negotiate_through_switchboard_and_exchange_data_channel_messages(
    backend: Backend,
) {
    // Arrange: two friends online. Setting up the peers runs on this thread between socket
    // reads, so a loaded machine must not trip the short test heartbeat.
    let app = spawn_app_with(backend, |c| c.heartbeat_timeout = Duration::from_secs(10)).await;
    let alice_token = app.register("alice").await;
    let bob_token = app.register("bob").await;
    app.befriend(&alice_token, "bob", &bob_token, "alice").await;
    let (alice_ws, _) = app.ws_login(&alice_token).await;
    let (bob_ws, _) = app.ws_login(&bob_token).await;

    let (alice_pc, alice_candidates) = peer_connection().await;
    let (bob_pc, bob_candidates) = peer_connection().await;
    let (alice_inbox, _alice_channel) = open_chat(&alice_pc, GREETING).await;
    let bob_inbox = answer_chat(&bob_pc, REPLY);
    let mut alice = Side::new("alice", alice_ws, alice_pc, alice_candidates, alice_inbox);
    let mut bob = Side::new("bob", bob_ws, bob_pc, bob_candidates, bob_inbox);

    // The call: alice invites, bob accepts, alice is told to make the offer.
    let invited = alice
        .ws
        .ok(json!({"type": "call.invite", "to": "bob", "media": "video"}))
        .await;
    let call_id = invited["call_id"].as_str().expect("call_id").to_owned();
    let incoming = bob.ws.recv_type("call.incoming").await;
    assert_eq!(incoming["call_id"], call_id, "{incoming}");
    assert_eq!(incoming["from"], "alice", "{incoming}");
    assert_eq!(incoming["media"], "video", "{incoming}");
    bob.ws
        .ok(json!({"type": "call.accept", "call_id": call_id}))
        .await;
    let accepted = alice.ws.recv_type("call.accepted").await;
    assert_eq!(
        accepted,
        json!({"type": "call.accepted", "call_id": call_id, "peer": "bob", "offerer": true,
               "ice_servers": accepted["ice_servers"]})
    );

    // Offer and answer, relayed verbatim with the sender's name.
    let offer = alice.pc.create_offer(None).await.expect("offer");
    alice
        .pc
        .set_local_description(offer.clone())
        .await
        .expect("alice's local offer");
    alice
        .ws
        .ok(json!({"type": "signal", "call_id": call_id, "kind": "offer", "sdp": offer.sdp}))
        .await;
    let relayed_offer = bob.ws.recv_type("signal").await;
    assert_eq!(
        relayed_offer,
        json!({"type": "signal", "call_id": call_id, "from": "alice", "kind": "offer", "sdp": offer.sdp})
    );
    let remote_offer = RTCSessionDescription::offer(relayed_offer["sdp"].as_str().unwrap().into())
        .expect("offer description");
    bob.pc
        .set_remote_description(remote_offer)
        .await
        .expect("bob's remote offer");
    let answer = bob.pc.create_answer(None).await.expect("answer");
    bob.pc
        .set_local_description(answer.clone())
        .await
        .expect("bob's local answer");
    bob.ws
        .ok(json!({"type": "signal", "call_id": call_id, "kind": "answer", "sdp": answer.sdp}))
        .await;
    let relayed_answer = alice.ws.recv_type("signal").await;
    assert_eq!(
        relayed_answer,
        json!({"type": "signal", "call_id": call_id, "from": "bob", "kind": "answer", "sdp": answer.sdp})
    );
    let remote_answer =
        RTCSessionDescription::answer(relayed_answer["sdp"].as_str().unwrap().into())
            .expect("answer description");
    alice
        .pc
        .set_remote_description(remote_answer)
        .await
        .expect("alice's remote answer");

    // Act: trickle ICE both ways until the data channel has carried a message each way.
    let finished =
        actix_rt::time::timeout(DEADLINE, trickle_and_talk(&call_id, &mut alice, &mut bob)).await;
    assert!(
        finished.is_ok(),
        "no data channel exchange within {DEADLINE:?}: alice {} ({} remote candidates, heard \
         {:?}), bob {} ({} remote candidates, heard {:?})",
        alice.pc.connection_state(),
        alice.remote_candidates_applied,
        alice.heard,
        bob.pc.connection_state(),
        bob.remote_candidates_applied,
        bob.heard,
    );

    // Assert: each side heard the other's exact words over a channel set up through Switchboard.
    assert_eq!(bob.heard.as_deref(), Some(GREETING));
    assert_eq!(alice.heard.as_deref(), Some(REPLY));

    // Hanging up ends the call for both as completed.
    alice
        .ws
        .ok(json!({"type": "call.hangup", "call_id": call_id}))
        .await;
    let ended = json!({"type": "call.ended", "call_id": call_id, "reason": "completed"});
    assert_eq!(alice.ws.recv_type("call.ended").await, ended);
    assert_eq!(bob.ws.recv_type("call.ended").await, ended);

    alice.pc.close().await.expect("alice closes");
    bob.pc.close().await.expect("bob closes");
}

impl Side {
    fn new(
        name: &'static str,
        ws: WsClient,
        pc: Arc<RTCPeerConnection>,
        local_candidates: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
        inbox: mpsc::UnboundedReceiver<String>,
    ) -> Self {
        Side {
            name,
            ws,
            pc,
            local_candidates,
            inbox,
            in_flight: VecDeque::new(),
            remote_candidates_applied: 0,
            heard: None,
        }
    }
}

/// A peer connection that gathers only loopback UDP/IPv4 host candidates, without mDNS or STUN,
/// so the test depends on nothing outside this machine. Its candidates arrive on the receiver.
async fn peer_connection() -> (
    Arc<RTCPeerConnection>,
    mpsc::UnboundedReceiver<RTCIceCandidateInit>,
) {
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
    let api = APIBuilder::new().with_setting_engine(settings).build();
    let pc = api
        .new_peer_connection(RTCConfiguration::default())
        .await
        .expect("peer connection");
    let (tx, rx) = mpsc::unbounded_channel();
    pc.on_ice_candidate(Box::new(move |candidate: Option<RTCIceCandidate>| {
        let tx = tx.clone();
        Box::pin(async move {
            if let Some(candidate) = candidate {
                let _ = tx.send(candidate.to_json().expect("candidate as JSON"));
            }
        })
    }));
    (Arc::new(pc), rx)
}

/// Forwards each side's candidates through Switchboard and applies the other side's, until both
/// have heard a message and each has received at least one trickled candidate. Both sockets are
/// read on every turn, so the broker's pings are answered throughout.
async fn trickle_and_talk(call_id: &str, alice: &mut Side, bob: &mut Side) {
    while alice.heard.is_none()
        || bob.heard.is_none()
        || alice.remote_candidates_applied == 0
        || bob.remote_candidates_applied == 0
    {
        tokio::select! {
            Some(candidate) = alice.local_candidates.recv() => {
                send_candidate(alice, call_id, candidate).await
            }
            Some(candidate) = bob.local_candidates.recv() => {
                send_candidate(bob, call_id, candidate).await
            }
            frame = actix_rt::time::timeout(POLL, alice.ws.recv_type("signal")) => {
                if let Ok(frame) = frame {
                    apply_candidate(alice, bob, call_id, frame).await;
                }
            }
            frame = actix_rt::time::timeout(POLL, bob.ws.recv_type("signal")) => {
                if let Ok(frame) = frame {
                    apply_candidate(bob, alice, call_id, frame).await;
                }
            }
            Some(text) = alice.inbox.recv() => hear(alice, text),
            Some(text) = bob.inbox.recv() => hear(bob, text),
        }
    }
}

async fn send_candidate(side: &mut Side, call_id: &str, candidate: RTCIceCandidateInit) {
    let candidate = serde_json::to_value(candidate).expect("candidate JSON");
    side.in_flight.push_back(candidate.clone());
    side.ws
        .ok(json!({"type": "signal", "call_id": call_id, "kind": "candidate", "candidate": candidate}))
        .await;
}

/// Checks that `frame` is the next candidate `sender` trickled, unchanged and in order, and
/// hands it to `receiver`'s peer connection.
async fn apply_candidate(receiver: &mut Side, sender: &mut Side, call_id: &str, frame: Value) {
    let expected = sender
        .in_flight
        .pop_front()
        .unwrap_or_else(|| panic!("{} got a signal nobody sent: {frame}", receiver.name));
    assert_eq!(
        frame,
        json!({"type": "signal", "call_id": call_id, "from": sender.name, "kind": "candidate", "candidate": expected})
    );
    let candidate: RTCIceCandidateInit =
        serde_json::from_value(frame["candidate"].clone()).expect("relayed candidate");
    receiver
        .pc
        .add_ice_candidate(candidate)
        .await
        .expect("remote candidate applied");
    receiver.remote_candidates_applied += 1;
}

fn hear(side: &mut Side, text: String) {
    assert!(
        side.heard.is_none(),
        "{} heard a second message {text:?} after {:?}",
        side.name,
        side.heard
    );
    side.heard = Some(text);
}

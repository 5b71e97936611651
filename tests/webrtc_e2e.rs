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
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

on_both_databases!(
    webrtc_peers_negotiate_through_switchboard_and_exchange_data_channel_messages,
    after_either_side_resumes_the_resumer_offers_and_media_flows_again,
);

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

    // Offer and answer, relayed verbatim with the sender's name; then trickle ICE both ways
    // until the data channel has carried a message each way.
    negotiate_and_talk(&call_id, &mut alice, &mut bob).await;

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

/// `offerer` makes the offer, `answerer` answers, both relayed verbatim through Switchboard
/// with the sender's name; then ICE trickles both ways until each has heard the other over the
/// data channel.
async fn negotiate_and_talk(call_id: &str, offerer: &mut Side, answerer: &mut Side) {
    let offer = offerer.pc.create_offer(None).await.expect("offer");
    offerer
        .pc
        .set_local_description(offer.clone())
        .await
        .expect("local offer");
    offerer
        .ws
        .ok(json!({"type": "signal", "call_id": call_id, "kind": "offer", "sdp": offer.sdp}))
        .await;
    let relayed_offer = answerer.ws.recv_type("signal").await;
    assert_eq!(
        relayed_offer,
        json!({"type": "signal", "call_id": call_id, "from": offerer.name, "kind": "offer", "sdp": offer.sdp})
    );
    let remote_offer = RTCSessionDescription::offer(relayed_offer["sdp"].as_str().unwrap().into())
        .expect("offer description");
    answerer
        .pc
        .set_remote_description(remote_offer)
        .await
        .expect("remote offer");
    let answer = answerer.pc.create_answer(None).await.expect("answer");
    answerer
        .pc
        .set_local_description(answer.clone())
        .await
        .expect("local answer");
    answerer
        .ws
        .ok(json!({"type": "signal", "call_id": call_id, "kind": "answer", "sdp": answer.sdp}))
        .await;
    let relayed_answer = offerer.ws.recv_type("signal").await;
    assert_eq!(
        relayed_answer,
        json!({"type": "signal", "call_id": call_id, "from": answerer.name, "kind": "answer", "sdp": answer.sdp})
    );
    let remote_answer =
        RTCSessionDescription::answer(relayed_answer["sdp"].as_str().unwrap().into())
            .expect("answer description");
    offerer
        .pc
        .set_remote_description(remote_answer)
        .await
        .expect("remote answer");

    let finished =
        actix_rt::time::timeout(DEADLINE, trickle_and_talk(call_id, offerer, answerer)).await;
    assert!(
        finished.is_ok(),
        "no data channel exchange within {DEADLINE:?}: {} {} ({} remote candidates, heard \
         {:?}), {} {} ({} remote candidates, heard {:?})",
        offerer.name,
        offerer.pc.connection_state(),
        offerer.remote_candidates_applied,
        offerer.heard,
        answerer.name,
        answerer.pc.connection_state(),
        answerer.remote_candidates_applied,
        answerer.heard,
    );
    assert_eq!(answerer.heard.as_deref(), Some(GREETING));
    assert_eq!(offerer.heard.as_deref(), Some(REPLY));
}

/// A side with a fresh peer connection: the chat's opener when it offers, its answerer else.
async fn fresh_side(
    name: &'static str,
    ws: WsClient,
    offers: bool,
) -> (Side, Option<Arc<RTCDataChannel>>) {
    let (pc, candidates) = peer_connection().await;
    if offers {
        let (inbox, channel) = open_chat(&pc, GREETING).await;
        (Side::new(name, ws, pc, candidates, inbox), Some(channel))
    } else {
        let inbox = answer_chat(&pc, REPLY);
        (Side::new(name, ws, pc, candidates, inbox), None)
    }
}

/// One rule for every resume: the side that resumed is told `call.accepted` with
/// `offerer: true` and offers from a new peer connection, and the side that stayed is told
/// `call.resumed` and answers from a new one. Shown both ways: bob (the callee) drops and
/// resumes, then alice (the caller) does; each time the data channel carries words again.
async fn after_either_side_resumes_the_resumer_offers_and_media_flows_again(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.heartbeat_timeout = Duration::from_secs(10);
        c.reconnect_grace = Duration::from_secs(10);
    })
    .await;
    let alice_token = app.register("alice").await;
    let bob_token = app.register("bob").await;
    app.befriend(&alice_token, "bob", &bob_token, "alice").await;
    let (alice_ws, _) = app.ws_login(&alice_token).await;
    let (bob_ws, _) = app.ws_login(&bob_token).await;
    let (mut alice, _alice_channel) = fresh_side("alice", alice_ws, true).await;
    let (mut bob, _) = fresh_side("bob", bob_ws, false).await;
    let invited = alice
        .ws
        .ok(json!({"type": "call.invite", "to": "bob", "media": "audio"}))
        .await;
    let call_id = invited["call_id"].as_str().expect("call_id").to_owned();
    bob.ws.recv_type("call.incoming").await;
    bob.ws
        .ok(json!({"type": "call.accept", "call_id": call_id}))
        .await;
    alice.ws.recv_type("call.accepted").await;
    negotiate_and_talk(&call_id, &mut alice, &mut bob).await;

    for (resumer, token) in [("bob", &bob_token), ("alice", &alice_token)] {
        let (stayed_name, stayed_ws, old_resumer, old_stayed) = if resumer == "bob" {
            ("alice", alice.ws, bob, alice.pc)
        } else {
            ("bob", bob.ws, alice, bob.pc)
        };
        old_resumer.ws.close().await;
        old_resumer.pc.close().await.expect("closes");
        let (mut resumer_ws, welcome) = app.ws_login(token).await;
        assert_eq!(welcome["calls"][0]["state"], "active", "{welcome}");
        resumer_ws
            .ok(json!({"type": "call.resume", "call_id": call_id}))
            .await;
        let accepted = resumer_ws.recv_type("call.accepted").await;
        assert_eq!(accepted["offerer"], true, "the resumer offers: {accepted}");
        let mut stayed_ws = stayed_ws;
        let resumed = stayed_ws.recv_type("call.resumed").await;
        assert_eq!(
            resumed,
            json!({"type": "call.resumed", "call_id": call_id, "peer": resumer})
        );
        old_stayed.close().await.expect("closes");
        let (mut offerer, _channel) = fresh_side(resumer, resumer_ws, true).await;
        let (mut answerer, _) = fresh_side(stayed_name, stayed_ws, false).await;
        negotiate_and_talk(&call_id, &mut offerer, &mut answerer).await;
        (alice, bob) = if resumer == "bob" {
            (answerer, offerer)
        } else {
            (offerer, answerer)
        };
    }
    alice
        .ws
        .ok(json!({"type": "call.hangup", "call_id": call_id}))
        .await;
    assert_eq!(bob.ws.recv_type("call.ended").await["reason"], "completed");
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

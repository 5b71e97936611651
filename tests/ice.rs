//! ICE: the embedded STUN/TURN relay, its coturn-style credentials, and revoking call
//! credentials. Relay checks drive the relay with webrtc-rs's own TURN client; the end-to-end
//! test connects two relay-only webrtc-rs peers through it with Switchboard's signaling.
//!
//! Every peer here is on loopback. The test relay listens on 127.0.0.1, and only a relay
//! listening on loopback may relay to loopback (src/ice/peers.rs); the refusal tests check
//! the other ranges, and that turning the exception off with a denied range works.
mod common;

use common::data_channel::{answer_chat, open_chat};
use common::stun::turn_of;
use common::stun::StunClient;
use common::{spawn_app_on, spawn_app_with, Backend, TestApp};
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard::config::Config;
use switchboard::ice::credentials;
use tokio::net::UdpSocket;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::turn::client::{Client, ClientConfig};
use webrtc::util::Conn;

on_both_databases!(
    ice_servers_list_the_embedded_relay_with_a_per_user_credential,
    two_relay_only_peers_connect_through_the_embedded_relay_and_exchange_data,
    expired_wrong_and_malformed_credentials_are_refused_without_disturbing_a_live_allocation,
    hangup_deletes_the_call_credentials_allocations_and_they_no_longer_allocate,
    logging_out_the_device_in_a_call_revokes_its_call_credential_at_once,
    blocking_the_peer_revokes_both_call_credentials_at_once,
    a_user_over_the_allocation_quota_is_refused_while_others_are_not,
    a_generated_secret_is_kept_so_credentials_survive_a_restart,
    with_the_relay_off_ice_servers_lists_only_the_external_servers,
    strangers_get_small_stateless_challenges_and_bad_credentials_get_401,
    the_relay_refuses_peers_on_the_host_and_its_networks,
    the_peer_lists_adjust_what_the_relay_refuses,
    session_credentials_die_with_their_session,
    a_live_call_keeps_its_relay_past_the_credential_ttl,
    resuming_a_call_after_a_revocation_gets_credentials_the_relay_accepts,
    a_flood_of_spoofed_allocates_leaves_the_brokers_memory_flat,
    one_source_flooding_bare_allocates_is_answered_only_up_to_its_allowance,
    refused_relay_requests_are_logged_at_warn_at_most_once_a_second,
);

/// Every wait on the relay or a peer is bounded by this.
const WAIT: Duration = Duration::from_secs(5);
const SECRET: &str = "ice-test-shared-secret";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

struct Pair {
    app: TestApp,
    alice: String,
    bob: String,
}

/// Two friends, alice and bob, on a broker tweaked by `tweak`.
async fn pair(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Pair {
    let app = spawn_app_with(backend, tweak).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.befriend(&alice, "bob", &bob, "alice").await;
    Pair { app, alice, bob }
}

async fn user_id(app: &TestApp, token: &str) -> String {
    let me = app.get("/api/v1/me", token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    me.body["id"].as_str().expect("user id").to_owned()
}

/// A TURN client of webrtc-rs on its own loopback socket.
async fn turn_client(server: &str, username: &str, password: &str) -> Client {
    let conn = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("udp socket"));
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.to_owned(),
        turn_serv_addr: server.to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .expect("turn client");
    client.listen().await.expect("turn client listens");
    client
}

type Relayed = Box<dyn Conn + Send + Sync>;

/// Asks the relay for an allocation; `Err` carries the refusal.
async fn allocate(
    server: &str,
    username: &str,
    password: &str,
) -> Result<(Client, Relayed), String> {
    let client = turn_client(server, username, password).await;
    match actix_rt::time::timeout(WAIT, client.allocate()).await {
        Ok(Ok(relayed)) => Ok((client, Box::new(relayed))),
        Ok(Err(e)) => {
            let _ = client.close().await;
            Err(e.to_string())
        }
        Err(_) => panic!("the relay did not answer an allocate within {WAIT:?}"),
    }
}

/// A datagram goes out through the allocation to a fresh peer socket and one comes back. The
/// peer stays connected to the relayed address, to watch it later.
async fn relays_both_ways(relayed: &Relayed) -> UdpSocket {
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer socket");
    let relayed_addr = relayed.local_addr().expect("relayed address");
    peer.connect(relayed_addr).await.expect("peer connects");
    let peer_addr = peer.local_addr().expect("peer address");
    let mut buf = [0u8; 64];

    relayed
        .send_to(b"out", peer_addr)
        .await
        .expect("sent through the relay");
    let n = actix_rt::time::timeout(WAIT, peer.recv(&mut buf))
        .await
        .expect("nothing relayed out")
        .expect("peer reads");
    assert_eq!(&buf[..n], b"out");

    peer.send(b"back").await.expect("peer sends");
    let (n, from) = actix_rt::time::timeout(WAIT, relayed.recv_from(&mut buf))
        .await
        .expect("nothing relayed back")
        .expect("relay conn reads");
    assert_eq!((&buf[..n], from), (&b"back"[..], peer_addr));
    peer
}

/// Waits until the relayed port behind `peer` is closed: the allocation is gone, and datagrams
/// to it bounce (the ICMP port-unreachable shows on the connected socket as ConnectionRefused).
async fn wait_until_gone(peer: &UdpSocket) {
    let deadline = actix_rt::time::Instant::now() + WAIT;
    let mut buf = [0u8; 64];
    loop {
        if let Err(e) = peer.send(b"still there?").await {
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
            return;
        }
        match actix_rt::time::timeout(Duration::from_millis(100), peer.recv(&mut buf)).await {
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => return,
            Ok(Err(e)) => panic!("unexpected error from the relayed port: {e}"),
            Ok(Ok(_)) | Err(_) => {}
        }
        assert!(
            actix_rt::time::Instant::now() < deadline,
            "the allocation still exists {WAIT:?} later"
        );
    }
}

/// alice calls bob and bob accepts: both sockets, the call id, alice's `call.accepted` and the
/// ack of bob's `call.accept`.
async fn answered_call(
    p: &Pair,
) -> (
    common::ws::WsClient,
    common::ws::WsClient,
    String,
    Value,
    Value,
) {
    let (mut alice_ws, _) = p.app.ws_login(&p.alice).await;
    let (mut bob_ws, _) = p.app.ws_login(&p.bob).await;
    let invited = alice_ws
        .ok(json!({"type": "call.invite", "to": "bob", "media": "audio"}))
        .await;
    let call_id = invited["call_id"].as_str().expect("call_id").to_owned();
    bob_ws.recv_type("call.incoming").await;
    let bob_ack = bob_ws
        .ok(json!({"type": "call.accept", "call_id": call_id}))
        .await;
    let accepted = alice_ws.recv_type("call.accepted").await;
    (alice_ws, bob_ws, call_id, accepted, bob_ack)
}

async fn ice_servers_list_the_embedded_relay_with_a_per_user_credential(backend: Backend) {
    let p = pair(backend, |c| c.turn_secret = Some(SECRET.into())).await;
    let alice_id = user_id(&p.app, &p.alice).await;

    let reply = p.app.get("/api/v1/ice-servers", &p.alice).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply
            .headers
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    assert_eq!(reply.body["ttl"], 3600);
    let servers = &reply.body["ice_servers"];
    let (addr, username, credential) = turn_of(servers);
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":3478") && !addr.ends_with(":0"),
        "{addr}"
    );
    assert_eq!(
        servers,
        &json!([
            {"urls": [format!("stun:{addr}")]},
            {"urls": [format!("turn:{addr}?transport=udp")], "username": username, "credential": credential},
        ])
    );
    // A session credential: `<expiry>:<user id>:s<16 hex digits naming the session>`.
    let parts: Vec<&str> = username.split(':').collect();
    let [expiry, user, session] = parts[..] else {
        panic!("not <expiry>:<user id>:<session>: {username}");
    };
    assert_eq!(user, alice_id);
    assert!(
        session.len() == 17
            && session.starts_with('s')
            && session[1..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{session}"
    );
    let expiry: u64 = expiry.parse().expect("expiry in unix seconds");
    assert!(
        (now_secs() + 3590..=now_secs() + 3600).contains(&expiry),
        "{expiry}"
    );
    // coturn's use-auth-secret password: base64(HMAC-SHA1(secret, username)).
    assert_eq!(
        credential,
        credentials::password(SECRET.as_bytes(), &username)
    );

    // The same list comes with `welcome`, and only to signed-in users.
    let (_, welcome) = p.app.ws_login(&p.alice).await;
    let (_, welcome_user, _) = turn_of(&welcome["ice_servers"]);
    assert_eq!(welcome["ice_servers"][0], servers[0]);
    assert_eq!(welcome["ice_servers"][1]["urls"], servers[1]["urls"]);
    assert!(
        welcome_user.ends_with(&format!(":{alice_id}:{session}")),
        "the same session, the same scope: {welcome_user}"
    );
    let anonymous = p
        .app
        .request(awc::http::Method::GET, "/api/v1/ice-servers", None, None)
        .await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
}

async fn two_relay_only_peers_connect_through_the_embedded_relay_and_exchange_data(
    backend: Backend,
) {
    // Peers are set up on this thread between socket reads: don't trip the test heartbeat.
    let p = pair(backend, |c| c.heartbeat_timeout = Duration::from_secs(20)).await;
    let (mut alice_ws, _) = p.app.ws_login(&p.alice).await;
    let (mut bob_ws, _) = p.app.ws_login(&p.bob).await;
    let alice_servers =
        p.app.get("/api/v1/ice-servers", &p.alice).await.body["ice_servers"].clone();
    let bob_servers = p.app.get("/api/v1/ice-servers", &p.bob).await.body["ice_servers"].clone();
    let alice_pc = relay_only_peer(&alice_servers).await;
    let bob_pc = relay_only_peer(&bob_servers).await;
    let (alice_heard, _channel) = open_chat(&alice_pc, "hello bob, through the relay").await;
    let bob_heard = answer_chat(&bob_pc, "hi alice, relayed too");

    // The call, then offer and answer (with their gathered relay candidates) as `signal` frames.
    let invited = alice_ws
        .ok(json!({"type": "call.invite", "to": "bob", "media": "video"}))
        .await;
    let call_id = invited["call_id"].as_str().expect("call_id").to_owned();
    bob_ws.recv_type("call.incoming").await;
    bob_ws
        .ok(json!({"type": "call.accept", "call_id": call_id}))
        .await;
    assert_eq!(alice_ws.recv_type("call.accepted").await["offerer"], true);

    let offer = alice_pc.create_offer(None).await.expect("offer");
    let offer = gathered(&alice_pc, offer).await;
    assert_only_relay_candidates(&offer.sdp);
    alice_ws
        .ok(json!({"type": "signal", "call_id": call_id, "kind": "offer", "sdp": offer.sdp}))
        .await;
    let relayed_offer = bob_ws.recv_type("signal").await;
    let remote_offer =
        RTCSessionDescription::offer(relayed_offer["sdp"].as_str().expect("sdp").into())
            .expect("offer description");
    bob_pc
        .set_remote_description(remote_offer)
        .await
        .expect("bob takes the offer");
    let answer = bob_pc.create_answer(None).await.expect("answer");
    let answer = gathered(&bob_pc, answer).await;
    assert_only_relay_candidates(&answer.sdp);
    bob_ws
        .ok(json!({"type": "signal", "call_id": call_id, "kind": "answer", "sdp": answer.sdp}))
        .await;
    let relayed_answer = alice_ws.recv_type("signal").await;
    let remote_answer =
        RTCSessionDescription::answer(relayed_answer["sdp"].as_str().expect("sdp").into())
            .expect("answer description");
    alice_pc
        .set_remote_description(remote_answer)
        .await
        .expect("alice takes the answer");

    // Act + assert: each side hears the other over the data channel, through the relay.
    let talk = async {
        let mut bob_heard = bob_heard;
        let mut alice_heard = alice_heard;
        (bob_heard.recv().await, alice_heard.recv().await)
    };
    let heard = actix_rt::time::timeout(Duration::from_secs(20), talk).await;
    assert_eq!(
        heard.ok(),
        Some((
            Some("hello bob, through the relay".to_owned()),
            Some("hi alice, relayed too".to_owned())
        )),
        "alice {}, bob {}",
        alice_pc.connection_state(),
        bob_pc.connection_state()
    );
    for pc in [&alice_pc, &bob_pc] {
        let pair = pc
            .sctp()
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()
            .await
            .expect("a selected candidate pair");
        assert_eq!(
            (pair.local.typ, pair.remote.typ),
            (RTCIceCandidateType::Relay, RTCIceCandidateType::Relay)
        );
    }

    alice_ws
        .ok(json!({"type": "call.hangup", "call_id": call_id}))
        .await;
    bob_ws.recv_type("call.ended").await;
    alice_pc.close().await.expect("alice closes");
    bob_pc.close().await.expect("bob closes");
}

async fn expired_wrong_and_malformed_credentials_are_refused_without_disturbing_a_live_allocation(
    backend: Backend,
) {
    let p = pair(backend, |c| c.turn_secret = Some(SECRET.into())).await;
    let alice_id = user_id(&p.app, &p.alice).await;
    let (server, username, credential) =
        turn_of(&p.app.get("/api/v1/ice-servers", &p.alice).await.body["ice_servers"]);
    let (_live_client, live) = allocate(&server, &username, &credential)
        .await
        .expect("a fresh credential allocates");
    relays_both_ways(&live).await;

    // Act: an expired credential (correctly signed), a wrong password, malformed usernames, and
    // datagrams that are not STUN at all.
    let expired = format!("{}:{alice_id}", now_secs() - 60);
    let expired_password = credentials::password(SECRET.as_bytes(), &expired);
    let refused_expired = allocate(&server, &expired, &expired_password).await;
    let refused_wrong = allocate(&server, &username, "not-the-password").await;
    let other_secret = credentials::password(b"some other secret", &username);
    let refused_other_secret = allocate(&server, &username, &other_secret).await;
    let mut malformed = Vec::new();
    for name in [
        alice_id.clone(),
        format!("soon:{alice_id}"),
        format!("{}:{alice_id}:call:extra", now_secs() + 60),
    ] {
        let password = credentials::password(SECRET.as_bytes(), &name);
        malformed.push(allocate(&server, &name, &password).await);
    }
    let garbage = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    for datagram in [
        &b""[..],
        b"\x00\x01\x00",
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xFF; 600],
        &[0x40; 32],
    ] {
        garbage
            .send_to(datagram, &server)
            .await
            .expect("garbage sent");
    }

    // Assert: all refused; the live allocation still relays, and the relay still serves.
    assert!(refused_expired.is_err(), "an expired credential allocated");
    assert!(refused_wrong.is_err(), "a wrong password allocated");
    assert!(
        refused_other_secret.is_err(),
        "a credential signed with another secret allocated"
    );
    for (i, result) in malformed.iter().enumerate() {
        assert!(result.is_err(), "malformed username #{i} allocated");
    }
    relays_both_ways(&live).await;
    let (bob_server, bob_name, bob_credential) =
        turn_of(&p.app.get("/api/v1/ice-servers", &p.bob).await.body["ice_servers"]);
    let (_bob_client, bob_relayed) = allocate(&bob_server, &bob_name, &bob_credential)
        .await
        .expect("the relay still allocates");
    relays_both_ways(&bob_relayed).await;
}

async fn hangup_deletes_the_call_credentials_allocations_and_they_no_longer_allocate(
    backend: Backend,
) {
    let p = pair(backend, |_| {}).await;
    let (alice_id, bob_id) = (
        user_id(&p.app, &p.alice).await,
        user_id(&p.app, &p.bob).await,
    );
    let (mut alice_ws, mut bob_ws, call_id, accepted, bob_ack) = answered_call(&p).await;

    // Both sides hold a credential naming the call: the caller in `call.accepted`, the callee
    // in the ack of its `call.accept`.
    let (server, alice_name, alice_credential) = turn_of(&accepted["ice_servers"]);
    let (_, bob_name, bob_credential) = turn_of(&bob_ack["ice_servers"]);
    for (name, user) in [(&alice_name, &alice_id), (&bob_name, &bob_id)] {
        let parts: Vec<&str> = name.split(':').collect();
        assert_eq!(parts[1..], [user.as_str(), call_id.as_str()], "{name}");
    }
    let (_alice_client, alice_relayed) = allocate(&server, &alice_name, &alice_credential)
        .await
        .expect("the call credential allocates during the call");
    let (_bob_client, bob_relayed) = allocate(&server, &bob_name, &bob_credential)
        .await
        .expect("the call credential allocates during the call");
    let alice_peer = relays_both_ways(&alice_relayed).await;
    let bob_peer = relays_both_ways(&bob_relayed).await;
    let (_, user_name, user_credential) =
        turn_of(&p.app.get("/api/v1/ice-servers", &p.alice).await.body["ice_servers"]);
    let (_user_client, user_relayed) = allocate(&server, &user_name, &user_credential)
        .await
        .expect("the user credential allocates");
    let user_peer = relays_both_ways(&user_relayed).await;

    // Act
    alice_ws
        .ok(json!({"type": "call.hangup", "call_id": call_id}))
        .await;
    bob_ws.recv_type("call.ended").await;

    // Assert: the call's allocations are gone at once, and its credentials are refused.
    wait_until_gone(&alice_peer).await;
    wait_until_gone(&bob_peer).await;
    assert!(allocate(&server, &alice_name, &alice_credential)
        .await
        .is_err());
    assert!(allocate(&server, &bob_name, &bob_credential).await.is_err());
    // A per-user credential is not tied to the call: it works until it expires.
    let mut buf = [0u8; 16];
    user_peer.send(b"still here").await.expect("peer sends");
    let (n, _) = actix_rt::time::timeout(WAIT, user_relayed.recv_from(&mut buf))
        .await
        .expect("the user allocation still relays")
        .expect("reads");
    assert_eq!(&buf[..n], b"still here");
}

async fn logging_out_the_device_in_a_call_revokes_its_call_credential_at_once(backend: Backend) {
    let p = pair(backend, |c| c.reconnect_grace = Duration::from_secs(30)).await;
    let (mut alice_ws, _bob_ws, _call_id, accepted, bob_ack) = answered_call(&p).await;
    let (server, alice_name, alice_credential) = turn_of(&accepted["ice_servers"]);
    let (_, bob_name, bob_credential) = turn_of(&bob_ack["ice_servers"]);
    let (_alice_client, alice_relayed) = allocate(&server, &alice_name, &alice_credential)
        .await
        .expect("allocates");
    let (_bob_client, bob_relayed) = allocate(&server, &bob_name, &bob_credential)
        .await
        .expect("allocates");
    let alice_peer = relays_both_ways(&alice_relayed).await;

    // Act: alice logs out the session of the device that holds the call.
    let logout = p
        .app
        .request(
            awc::http::Method::POST,
            "/api/v1/auth/logout",
            Some(&p.alice),
            None,
        )
        .await;
    assert_eq!(logout.status, 204, "{}", logout.body);
    alice_ws.expect_close().await;

    // Assert: alice's call allocation is gone and her call credential refused, long before the
    // 30 s reconnect grace would end the call; bob's side of the call keeps its relay.
    wait_until_gone(&alice_peer).await;
    assert!(allocate(&server, &alice_name, &alice_credential)
        .await
        .is_err());
    relays_both_ways(&bob_relayed).await;
}

async fn blocking_the_peer_revokes_both_call_credentials_at_once(backend: Backend) {
    let p = pair(backend, |_| {}).await;
    let (_alice_ws, _bob_ws, _call_id, accepted, bob_ack) = answered_call(&p).await;
    let (server, alice_name, alice_credential) = turn_of(&accepted["ice_servers"]);
    let (_, bob_name, bob_credential) = turn_of(&bob_ack["ice_servers"]);
    let (_alice_client, alice_relayed) = allocate(&server, &alice_name, &alice_credential)
        .await
        .expect("allocates");
    let (_bob_client, bob_relayed) = allocate(&server, &bob_name, &bob_credential)
        .await
        .expect("allocates");
    let alice_peer = relays_both_ways(&alice_relayed).await;
    let bob_peer = relays_both_ways(&bob_relayed).await;

    // Act
    let blocked = p.app.put("/api/v1/blocks/bob", &p.alice).await;
    assert!(blocked.status < 300, "{} {}", blocked.status, blocked.body);

    // Assert
    wait_until_gone(&alice_peer).await;
    wait_until_gone(&bob_peer).await;
    assert!(allocate(&server, &alice_name, &alice_credential)
        .await
        .is_err());
    assert!(allocate(&server, &bob_name, &bob_credential).await.is_err());
}

async fn a_user_over_the_allocation_quota_is_refused_while_others_are_not(backend: Backend) {
    let p = pair(backend, |c| c.relay_user_quota = 2).await;
    let (server, name, credential) =
        turn_of(&p.app.get("/api/v1/ice-servers", &p.alice).await.body["ice_servers"]);
    let _first = allocate(&server, &name, &credential)
        .await
        .expect("first allocates");
    let (second_client, second) = allocate(&server, &name, &credential)
        .await
        .expect("second allocates");

    // Act
    let third = allocate(&server, &name, &credential).await;

    // Assert: refused with 486 Allocation Quota Reached; bob is not affected; once alice gives
    // an allocation back she may allocate again.
    let refusal = third.err().expect("a third allocation over the quota of 2");
    assert!(refusal.contains("486"), "{refusal}");
    let (bob_server, bob_name, bob_credential) =
        turn_of(&p.app.get("/api/v1/ice-servers", &p.bob).await.body["ice_servers"]);
    allocate(&bob_server, &bob_name, &bob_credential)
        .await
        .expect("another user allocates");
    second.close().await.expect("allocation released");
    let _ = second_client.close().await;
    let deadline = actix_rt::time::Instant::now() + WAIT;
    loop {
        match allocate(&server, &name, &credential).await {
            Ok(_) => break,
            Err(e) => assert!(
                actix_rt::time::Instant::now() < deadline,
                "still refused: {e}"
            ),
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_generated_secret_is_kept_so_credentials_survive_a_restart(backend: Backend) {
    let p = pair(backend, |c| c.turn_secret = None).await;
    let (_, name, credential) =
        turn_of(&p.app.get("/api/v1/ice-servers", &p.alice).await.body["ice_servers"]);
    p.app.shutdown.shutdown().await;

    // Act: start again on the same database.
    let restarted = spawn_app_on(p.app.db, |_| {}).await;
    let login = restarted.login("alice", "password-alice").await;
    let token = login.body["token"].as_str().expect("token").to_owned();
    let (server, _, _) =
        turn_of(&restarted.get("/api/v1/ice-servers", &token).await.body["ice_servers"]);

    // Assert: the credential issued before the restart still allocates.
    let (_client, relayed) = allocate(&server, &name, &credential)
        .await
        .expect("a credential from before the restart allocates");
    relays_both_ways(&relayed).await;
}

async fn with_the_relay_off_ice_servers_lists_only_the_external_servers(backend: Backend) {
    let p = pair(backend, |c| {
        c.relay = false;
        c.turn_secret = Some(SECRET.into());
        c.ice_servers = vec![
            "stun:stun.example.org:3478".into(),
            "turn:turn.example.org:3478?transport=udp".into(),
            "turns:turn.example.org:5349?transport=tcp".into(),
        ];
    })
    .await;

    let reply = p.app.get("/api/v1/ice-servers", &p.alice).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    let servers = &reply.body["ice_servers"];
    let username = servers[1]["username"].as_str().expect("username");
    assert_eq!(
        servers,
        &json!([
            {"urls": ["stun:stun.example.org:3478"]},
            {
                "urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"],
                "username": username,
                "credential": credentials::password(SECRET.as_bytes(), username),
            },
        ])
    );
    let (_, welcome) = p.app.ws_login(&p.alice).await;
    assert_eq!(welcome["ice_servers"][0], servers[0]);
    assert_eq!(welcome["ice_servers"][1]["urls"], servers[1]["urls"]);

    // No relay and nothing configured: an empty list.
    let bare = spawn_app_with(backend, |c| c.relay = false).await;
    let carol = bare.register("carol").await;
    let reply = bare.get("/api/v1/ice-servers", &carol).await;
    assert_eq!(reply.body, json!({"ice_servers": [], "ttl": 3600}));
}

/// A webrtc-rs peer that may only use relay candidates, from `servers` as the API gave them.
async fn relay_only_peer(servers: &Value) -> Arc<RTCPeerConnection> {
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_network_types(vec![NetworkType::Udp4]);
    let api = APIBuilder::new().with_setting_engine(settings).build();
    let ice_servers = servers
        .as_array()
        .expect("ice_servers is a list")
        .iter()
        .map(|s| RTCIceServer {
            urls: s["urls"]
                .as_array()
                .expect("urls")
                .iter()
                .map(|u| u.as_str().expect("url").to_owned())
                .collect(),
            username: s["username"].as_str().unwrap_or_default().to_owned(),
            credential: s["credential"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let config = RTCConfiguration {
        ice_servers,
        ice_transport_policy: RTCIceTransportPolicy::Relay,
        ..Default::default()
    };
    Arc::new(
        api.new_peer_connection(config)
            .await
            .expect("peer connection"),
    )
}

/// Sets `description` as local and waits for ICE gathering to finish, so the description sent
/// carries every (relay) candidate.
async fn gathered(
    pc: &RTCPeerConnection,
    description: RTCSessionDescription,
) -> RTCSessionDescription {
    let mut done = pc.gathering_complete_promise().await;
    pc.set_local_description(description)
        .await
        .expect("local description");
    actix_rt::time::timeout(WAIT, done.recv())
        .await
        .expect("ICE gathering finishes");
    pc.local_description().await.expect("gathered description")
}

fn assert_only_relay_candidates(sdp: &str) {
    let candidates: Vec<&str> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert!(!candidates.is_empty(), "no candidates gathered: {sdp}");
    assert!(
        candidates.iter().all(|c| c.contains(" typ relay")),
        "{candidates:?}"
    );
}

/// The relay's address and a session credential of `token`.
async fn session_credential(app: &TestApp, token: &str) -> (String, String, String) {
    turn_of(&app.get("/api/v1/ice-servers", token).await.body["ice_servers"])
}

async fn strangers_get_small_stateless_challenges_and_bad_credentials_get_401(backend: Backend) {
    let p = pair(backend, |c| c.turn_secret = Some(SECRET.into())).await;
    let alice_id = user_id(&p.app, &p.alice).await;
    let (server, username, credential) = session_credential(&p.app, &p.alice).await;

    // A stranger's bare allocate: 401 with a nonce and the realm, hardly bigger than the request.
    let mut client = StunClient::new(&server, &username, &credential).await;
    let request = StunClient::bare_allocate();
    let challenge = client.challenge().await;
    assert_eq!(challenge.code(), 401);
    assert_eq!(client.realm, "switchboard");
    assert_eq!(client.nonce.len(), 24, "{}", client.nonce);
    assert!(
        challenge.raw.len() <= 3 * request.raw.len() + 8,
        "a {}-byte answer to a {}-byte request",
        challenge.raw.len(),
        request.raw.len()
    );
    // The nonce is stateless: a second stranger's challenge, asked from another address, is
    // refused from this one (438), while the right one allocates.
    let mut other = StunClient::new(&server, &username, &credential).await;
    other.challenge().await;
    let mut borrowed = StunClient::new(&server, &username, &credential).await;
    borrowed.realm = other.realm.clone();
    borrowed.nonce = other.nonce.clone();
    assert_eq!(
        borrowed.allocate().await.code(),
        438,
        "someone else's nonce"
    );
    borrowed.nonce = format!("{}0", &other.nonce[..23]);
    assert_eq!(borrowed.allocate().await.code(), 438, "a forged nonce");
    assert_eq!(
        client.allocate().await.code(),
        0,
        "the real credential allocates"
    );

    // Wrong, expired and revoked credentials get 401, not 400.
    let mut wrong = StunClient::new(&server, &username, "not-the-password").await;
    wrong.challenge().await;
    assert_eq!(wrong.allocate().await.code(), 401, "a wrong password");
    let expired = format!("{}:{alice_id}:s0123456789abcdef", now_secs() - 60);
    let expired_password = credentials::password(SECRET.as_bytes(), &expired);
    let mut stale = StunClient::new(&server, &expired, &expired_password).await;
    stale.challenge().await;
    assert_eq!(stale.allocate().await.code(), 401, "an expired credential");
    let not_live = format!(
        "{}:{alice_id}:0123456789abcdef0123456789abcdef",
        now_secs() + 60
    );
    let not_live_password = credentials::password(SECRET.as_bytes(), &not_live);
    let mut over = StunClient::new(&server, &not_live, &not_live_password).await;
    over.challenge().await;
    assert_eq!(over.allocate().await.code(), 401, "a call that is not live");
    let malformed = alice_id.clone();
    let malformed_password = credentials::password(SECRET.as_bytes(), &malformed);
    let mut bad = StunClient::new(&server, &malformed, &malformed_password).await;
    bad.challenge().await;
    assert_eq!(bad.allocate().await.code(), 401, "a malformed username");
}

/// Peers on the relay's host and networks are refused with 403 (RFC 8656). The test relay
/// listens on loopback, so it may relay to loopback (the dev exception), never to the broker's
/// own sockets.
async fn the_relay_refuses_peers_on_the_host_and_its_networks(backend: Backend) {
    let p = pair(backend, |_| {}).await;
    let (server, username, credential) = session_credential(&p.app, &p.alice).await;
    let mut client = StunClient::new(&server, &username, &credential).await;
    client.challenge().await;
    assert_eq!(client.allocate().await.code(), 0);

    for peer in [
        "10.0.0.1:9",
        "172.16.5.4:9",
        "192.168.1.1:9",
        "169.254.169.254:80",
        "100.64.0.1:9",
        "224.0.0.251:5353",
        "255.255.255.255:9",
        "0.0.0.0:9",
        "[fe80::1]:9",
        "[fc00::1]:9",
    ] {
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        assert_eq!(
            client.permit(&[peer]).await.code(),
            403,
            "permission to {peer}"
        );
        assert_eq!(
            client.bind_channel(peer, 1).await.code(),
            403,
            "channel to {peer}"
        );
    }
    // One refused address refuses the whole request.
    let loopback: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let private: std::net::SocketAddr = "10.0.0.1:9".parse().unwrap();
    assert_eq!(client.permit(&[loopback, private]).await.code(), 403);
    // The broker's own HTTP and relay sockets are never peers, even on loopback.
    let http: std::net::SocketAddr = p.app.address.parse().unwrap();
    let relay: std::net::SocketAddr = server.parse().unwrap();
    assert_eq!(
        client.bind_channel(http, 2).await.code(),
        403,
        "the HTTP port"
    );
    assert_eq!(
        client.bind_channel(relay, 3).await.code(),
        403,
        "the relay port"
    );
    // Loopback peers are fine for a loopback relay.
    assert_eq!(client.permit(&[loopback]).await.code(), 0);
    assert_eq!(client.bind_channel(loopback, 4).await.code(), 0);

    // And data never reaches a refused peer, whatever the client sends.
    let (_turn, relayed) = allocate(&server, &username, &credential)
        .await
        .expect("allocates");
    let err = relayed.send_to(b"hello", private).await;
    assert!(err.is_err(), "a send to a private peer went through");
    relays_both_ways(&relayed).await;
}

async fn the_peer_lists_adjust_what_the_relay_refuses(backend: Backend) {
    let p = pair(backend, |c| {
        c.relay_allowed_peers = vec!["10.20.0.0/16".parse().unwrap()];
        c.relay_denied_peers = vec![
            "127.0.0.0/8".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ];
    })
    .await;
    let (server, username, credential) = session_credential(&p.app, &p.alice).await;
    let mut client = StunClient::new(&server, &username, &credential).await;
    client.challenge().await;
    assert_eq!(client.allocate().await.code(), 0);
    let permit = |peer: &str| peer.parse::<std::net::SocketAddr>().unwrap();
    assert_eq!(
        client.permit(&[permit("10.20.1.1:9")]).await.code(),
        0,
        "allowed"
    );
    assert_eq!(client.permit(&[permit("10.21.1.1:9")]).await.code(), 403);
    assert_eq!(
        client.permit(&[permit("198.51.100.7:9")]).await.code(),
        403,
        "denied"
    );
    assert_eq!(
        client.permit(&[permit("203.0.113.5:9")]).await.code(),
        403,
        "documentation"
    );
    assert_eq!(
        client.permit(&[permit("127.0.0.1:9")]).await.code(),
        403,
        "denied wins over the loopback exception"
    );
    assert_eq!(
        client.permit(&[permit("8.8.8.8:53")]).await.code(),
        0,
        "public"
    );
}

/// Logout, logout-all, a password change and account deletion each kill that session's relay
/// credentials within a second: allocations deleted, new ones refused.
async fn session_credentials_die_with_their_session(backend: Backend) {
    let p = pair(backend, |_| {}).await;
    let app = &p.app;
    let login = |name: &'static str| async move {
        let reply = app.login(name, &format!("password-{name}")).await;
        reply.body["token"].as_str().unwrap().to_owned()
    };
    let actions: [(&str, &str); 4] = [
        ("logout", "POST /api/v1/auth/logout"),
        ("logout-all", "POST /api/v1/auth/logout-all"),
        ("password change", "PUT /api/v1/me/password"),
        ("account deletion", "DELETE /api/v1/me"),
    ];
    for (what, _) in actions {
        let doomed = login("alice").await;
        let other = login("alice").await;
        let (server, name, credential) = session_credential(app, &doomed).await;
        let (other_server, other_name, other_credential) = session_credential(app, &other).await;
        let (_client, relayed) = allocate(&server, &name, &credential)
            .await
            .expect("allocates");
        let (_other_client, other_relayed) =
            allocate(&other_server, &other_name, &other_credential)
                .await
                .expect("allocates");
        let peer = relays_both_ways(&relayed).await;
        let other_peer = relays_both_ways(&other_relayed).await;

        let started = std::time::Instant::now();
        let (status, survivor_lives) = match what {
            "logout" => (
                app.post("/api/v1/auth/logout", &doomed, json!({}))
                    .await
                    .status,
                true,
            ),
            "logout-all" => (
                app.post("/api/v1/auth/logout-all", &doomed, json!({}))
                    .await
                    .status,
                false,
            ),
            "password change" => {
                // Changing it from `other` revokes every other session, `doomed` among them.
                let reply = app
                    .request(
                        awc::http::Method::PUT,
                        "/api/v1/me/password",
                        Some(&other),
                        Some(json!({"old_password": "password-alice", "new_password": "password-alice"})),
                    )
                    .await;
                (reply.status, true)
            }
            _ => (
                app.request(
                    awc::http::Method::DELETE,
                    "/api/v1/me",
                    Some(&doomed),
                    Some(json!({"password": "password-alice"})),
                )
                .await
                .status,
                false,
            ),
        };
        assert!(matches!(status, 200 | 204), "{what}: {status}");
        wait_until_gone(&peer).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: the allocation outlived the session by {:?}",
            started.elapsed()
        );
        assert!(
            allocate(&server, &name, &credential).await.is_err(),
            "{what}: the dead session's credential still allocates"
        );
        if survivor_lives {
            relays_both_ways_again(&other_relayed, &other_peer).await;
        } else {
            wait_until_gone(&other_peer).await;
        }
        if what == "account deletion" {
            break;
        }
    }
}

/// A peer socket already talking to `relayed` still gets through both ways.
async fn relays_both_ways_again(relayed: &Relayed, peer: &UdpSocket) {
    let mut buf = [0u8; 16];
    peer.send(b"still here").await.expect("peer sends");
    let (n, _) = actix_rt::time::timeout(WAIT, relayed.recv_from(&mut buf))
        .await
        .expect("nothing relayed")
        .expect("relay conn reads");
    assert_eq!(&buf[..n], b"still here");
}

async fn a_live_call_keeps_its_relay_past_the_credential_ttl(backend: Backend) {
    let p = pair(backend, |c| c.ice_credential_ttl = Duration::from_secs(1)).await;
    let (mut alice_ws, mut bob_ws, call_id, accepted, _) = answered_call(&p).await;
    let (server, name, credential) = turn_of(&accepted["ice_servers"]);
    let (_, session_name, session_credential) = session_credential(&p.app, &p.alice).await;
    let mut call_client = StunClient::new(&server, &name, &credential).await;
    call_client.challenge().await;
    assert_eq!(call_client.allocate().await.code(), 0);
    let mut session_client = StunClient::new(&server, &session_name, &session_credential).await;
    session_client.challenge().await;
    assert_eq!(session_client.allocate().await.code(), 0);

    // Both credentials are now past their expiry.
    actix_rt::time::sleep(Duration::from_millis(2100)).await;
    let peer: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        call_client.permit(&[peer]).await.code(),
        0,
        "the live call's credential"
    );
    assert_eq!(
        call_client.refresh(Duration::from_secs(600)).await.code(),
        0
    );
    // An ICE restart allocates anew with the same credential: still accepted.
    let mut restart = StunClient::new(&server, &name, &credential).await;
    restart.challenge().await;
    assert_eq!(
        restart.allocate().await.code(),
        0,
        "an ICE restart past the expiry"
    );
    assert_eq!(
        session_client.permit(&[peer]).await.code(),
        401,
        "an expired session credential"
    );

    alice_ws
        .ok(json!({"type": "call.hangup", "call_id": call_id}))
        .await;
    bob_ws.recv_type("call.ended").await;
    assert_eq!(
        call_client.permit(&[peer]).await.code(),
        401,
        "the call is over"
    );
}

/// Bob's device holding the call is logged out, which revokes his call credential; he resumes
/// the call on another device, whose `call.accepted` carries a credential the relay accepts.
async fn resuming_a_call_after_a_revocation_gets_credentials_the_relay_accepts(backend: Backend) {
    let p = pair(backend, |c| c.reconnect_grace = Duration::from_secs(30)).await;
    let second = p.app.login("bob", "password-bob").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_alice_ws, mut bob_ws, call_id, _, bob_ack) = answered_call(&p).await;
    let (server, old_name, old_credential) = turn_of(&bob_ack["ice_servers"]);
    assert_eq!(
        p.app
            .post("/api/v1/auth/logout", &p.bob, json!({}))
            .await
            .status,
        204
    );
    bob_ws.expect_close().await;
    assert!(allocate(&server, &old_name, &old_credential).await.is_err());

    let (mut bob_again, _) = p.app.ws_login(&second).await;
    bob_again
        .ok(json!({"type": "call.resume", "call_id": call_id}))
        .await;
    let accepted = bob_again.recv_type("call.accepted").await;
    let (server, name, credential) = turn_of(&accepted["ice_servers"]);
    let (_client, relayed) = allocate(&server, &name, &credential)
        .await
        .expect("the resumed call's credential allocates");
    relays_both_ways(&relayed).await;
}

/// Strangers from 2,000 loopback addresses (127.0.1.1 to 127.0.8.250, each its own port) send
/// 200,000 allocate requests without credentials. Each used to leave a nonce behind in the TURN
/// server; now none does, and the broker's RSS stays within a few MiB.
async fn a_flood_of_spoofed_allocates_leaves_the_brokers_memory_flat(backend: Backend) {
    let db = common::TestDatabase::new(backend);
    let broker = common::process::BrokerProcess::start(&db.url, &[], None).await;
    let relay = broker.relay;
    let mut sources = Vec::new();
    for a in 1..=8u8 {
        for b in 1..=250u8 {
            sources.push(
                UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, a, b), 0))
                    .await
                    .unwrap(),
            );
        }
    }
    let template = StunClient::bare_allocate().raw;
    let flood = |rounds: usize| {
        let (sources, template) = (&sources, &template);
        async move {
            for round in 0..rounds {
                for (i, socket) in sources.iter().enumerate() {
                    let mut request = template.clone();
                    // A fresh transaction id per request.
                    request[8..16].copy_from_slice(&((round * 10_000 + i) as u64).to_be_bytes());
                    let _ = socket.send_to(&request, relay).await;
                }
                if round % 10 == 9 {
                    // Let the relay keep up, as a sustained flood would.
                    actix_rt::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    flood(10).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let before = broker.rss_kib();
    flood(100).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let after = broker.rss_kib();
    eprintln!("RSS {before} -> {after} KiB");
    assert!(
        after <= before + 4096,
        "RSS grew from {before} KiB to {after} KiB under 200,000 unauthenticated allocates"
    );
    // And a newcomer is still answered.
    let mut newcomer = StunClient::new(&relay.to_string(), "x", "y").await;
    assert_eq!(newcomer.challenge().await.code(), 401);
    drop(broker);
}

/// One source sends 300 bare allocates as fast as it can: it gets its burst of challenges
/// (64) and then silence, so the relay can't be made to flood anyone; another source is still
/// answered.
async fn one_source_flooding_bare_allocates_is_answered_only_up_to_its_allowance(backend: Backend) {
    let p = pair(backend, |_| {}).await;
    let (server, _, _) = session_credential(&p.app, &p.alice).await;
    let flooder = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let request = StunClient::bare_allocate().raw;
    for i in 0..300u32 {
        let mut request = request.clone();
        request[8..12].copy_from_slice(&i.to_be_bytes());
        flooder.send_to(&request, &server).await.expect("sent");
    }
    let mut answers = 0;
    let mut buf = [0u8; 1500];
    while let Ok(Ok(_)) =
        actix_rt::time::timeout(Duration::from_millis(500), flooder.recv_from(&mut buf)).await
    {
        answers += 1;
    }
    assert!(
        (60..=100).contains(&answers),
        "{answers} answers to 300 requests from one source"
    );
    let mut other = StunClient::bound("127.0.0.2:0", &server, "x", "y").await;
    assert_eq!(
        other.challenge().await.code(),
        401,
        "another source is answered"
    );
}

/// Twenty-five allocates with a wrong password in well under a second: the broker's log (at warn)
/// says so in one line, and the next refusal a second later counts the ones held back.
async fn refused_relay_requests_are_logged_at_warn_at_most_once_a_second(backend: Backend) {
    let db = common::TestDatabase::new(backend);
    let broker = common::process::BrokerProcess::start(&db.url, &[], None).await;
    let relay = broker.relay.to_string();
    let username = format!(
        "{}:0123456789abcdef0123456789abcdef:s0123456789abcdef",
        now_secs() + 600
    );
    let mut client = StunClient::new(&relay, &username, "wrong").await;
    // Each is a challenge and a refusal: 50 answers, within one source's allowance of 64.
    for _ in 0..25 {
        client.challenge().await;
        assert_eq!(client.allocate().await.code(), 401);
    }
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    client.challenge().await;
    assert_eq!(client.allocate().await.code(), 401);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let refusals: Vec<String> = broker
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("relay: refused"))
        .collect();
    assert!(
        (2..=3).contains(&refusals.len()),
        "26 refusals logged as {} lines: {refusals:?}",
        refusals.len()
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("similar lines held back")),
        "{refusals:?}"
    );
}

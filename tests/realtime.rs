//! The WebSocket: authentication, frames and their errors, heartbeat, revocation, presence.
mod common;

use awc::http::Method;
use common::raw_socket::{Ending, RawSocket};
use common::{spawn_app, spawn_app_with, Backend, TestApp};
use serde_json::json;
use std::time::Duration;

on_both_databases!(
    auth_frame_gets_a_welcome_with_friends_presence_and_heartbeat,
    sockets_that_do_not_authenticate_in_time_are_closed,
    a_bad_token_gets_an_error_and_a_close,
    frames_before_auth_are_refused_but_ping_works,
    malformed_unknown_and_forbidden_frames_get_errors_and_the_socket_stays_open,
    binary_oversized_and_flooding_sockets_are_closed_with_clear_codes,
    a_frame_declaring_too_much_is_refused_at_its_header_before_auth,
    a_frame_whose_payload_never_comes_does_not_outlast_the_auth_timeout,
    socket_upgrades_from_other_origins_are_refused,
    a_user_has_at_most_max_devices_sockets,
    a_users_devices_share_one_frame_budget,
    unauthenticated_sockets_are_capped_per_address_and_in_all,
    when_descriptors_run_out_existing_users_are_served_and_it_recovers,
    a_client_close_is_echoed_and_the_connection_closed_at_once,
    silent_sockets_are_dropped_by_the_heartbeat,
    revoking_a_token_closes_its_sockets,
    sockets_authenticating_while_their_sessions_are_revoked_never_survive,
    friends_see_each_other_come_online_and_go_offline_after_the_grace,
    a_quick_reconnect_within_the_grace_does_not_flap_offline,
    status_changes_reach_friends_and_the_friends_list,
    presence_never_reaches_strangers_or_blocked_users,
    friend_changes_over_rest_are_pushed_live,
);

async fn friends(app: &TestApp) -> (String, String) {
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    (amy, ben)
}

fn presence_of<'a>(name: &'a str, status: &'a str) -> impl Fn(&serde_json::Value) -> bool + 'a {
    move |f| f["type"] == "presence" && f["username"] == name && f["status"] == status
}

async fn auth_frame_gets_a_welcome_with_friends_presence_and_heartbeat(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = friends(&app).await;
    let (_ben_ws, _) = app.ws_login(&ben).await;
    let (_, welcome) = app.ws_login(&amy).await;
    assert_eq!(welcome["user"]["username"], "amy");
    assert_eq!(
        welcome["friends"],
        json!([{"username": "ben", "display_name": "ben", "status": "online"}])
    );
    assert_eq!(welcome["calls"], json!([]));
    assert_eq!(welcome["missed_calls"], 0);
    assert_eq!(
        welcome["heartbeat"],
        json!({"interval_ms": 300, "timeout_ms": 3000})
    );
    assert!(welcome["device_id"].as_str().is_some_and(|d| d.len() == 32));
}

async fn sockets_that_do_not_authenticate_in_time_are_closed(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ws = app.ws_connect().await;
    let closed = ws.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4000, "authentication timeout")
    );
}

async fn a_bad_token_gets_an_error_and_a_close(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ws = app.ws_connect().await;
    ws.send(json!({"type": "auth", "id": 7, "token": "nope"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(
        error,
        json!({"type": "error", "ref": 7, "error": "unauthorized", "message": error["message"]})
    );
    assert_eq!(ws.expect_close().await.code, 4003);
}

async fn frames_before_auth_are_refused_but_ping_works(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ws = app.ws_connect().await;
    let refused = ws
        .request(json!({"type": "presence.set", "status": "away"}))
        .await;
    assert_eq!(
        (refused["type"].as_str(), refused["error"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    ws.send(json!({"type": "ping", "id": "p1"})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong", "ref": "p1"}));
}

async fn malformed_unknown_and_forbidden_frames_get_errors_and_the_socket_stays_open(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (amy, _) = friends(&app).await;
    let (mut ws, _) = app.ws_login(&amy).await;

    ws.send_text("{not json".into()).await;
    let e = ws.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["error"].as_str()),
        (Some("error"), Some("invalid_frame"))
    );
    assert!(e.get("ref").is_none());

    let unknown = ws.request(json!({"type": "teleport"})).await;
    assert_eq!(unknown["error"], "invalid_frame");
    assert!(unknown["message"].as_str().unwrap().contains("teleport"));

    let missing = ws
        .request(json!({"type": "call.invite", "media": "video"}))
        .await;
    assert_eq!(missing["error"], "invalid_frame");

    let bad_status = ws
        .request(json!({"type": "presence.set", "status": "sleeping"}))
        .await;
    assert_eq!(bad_status["error"], "invalid_frame");

    let again = ws.request(json!({"type": "auth", "token": amy})).await;
    assert_eq!(again["error"], "invalid_frame");

    let stranger_call = ws
        .request(json!({"type": "call.hangup", "call_id": "0123"}))
        .await;
    assert_eq!(stranger_call["error"], "call_not_found");

    ws.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong", "ref": 1}));
}

/// A stranger declares a 1 TiB frame and streams into it: the broker must close at the header,
/// not buffer what follows until the auth timeout (which would be gigabytes).
async fn a_frame_declaring_too_much_is_refused_at_its_header_before_auth(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.ws_auth_timeout = Duration::from_secs(30)).await;
    let mut socket = RawSocket::upgrade(&app.address).await;
    assert!(socket.write(&RawSocket::header(0x1, 1 << 40)).await);
    // Whatever is written after the header (up to 8 MiB here) is not kept: the close comes
    // right away, long before the auth timeout.
    let chunk = vec![b'x'; 64 * 1024];
    let mut streamed = 0;
    while streamed < 128 && socket.write(&chunk).await {
        streamed += 1;
    }
    assert_eq!(
        socket.ending(Duration::from_secs(5)).await,
        Ending::Closed(1009)
    );
    // Two frames within the limit that add up to more are fine.
    let (mut ws, _) = app.ws_login(&app.register("amy").await).await;
    for _ in 0..2 {
        ws.send(json!({"type": "ping", "pad": "x".repeat(60 * 1024)}))
            .await;
        assert_eq!(ws.recv().await["type"], "pong");
    }
}

/// Browsers open WebSockets cross-origin without asking, so the upgrade checks Origin itself:
/// the broker's own and listed origins pass, and so do clients that send none.
async fn socket_upgrades_from_other_origins_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let refused = RawSocket::upgrade_with(&app.address, "Origin: https://evil.example\r\n")
        .await
        .err()
        .expect("a foreign origin was upgraded");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let own = format!("Origin: http://{}\r\n", app.address);
    for extra in ["", own.as_str(), "Origin: https://app.example.com\r\n"] {
        let mut socket = RawSocket::upgrade_with(&app.address, extra)
            .await
            .unwrap_or_else(|head| panic!("{extra:?} refused: {head}"));
        // The socket works: it closes an unauthenticated client at the auth timeout.
        assert_eq!(
            socket.ending(Duration::from_secs(5)).await,
            Ending::Closed(4000)
        );
    }
}

/// Each socket may send 50 frames a second (bursts of 100), but one user over all their
/// sockets only 20 (bursts of 40): two devices sending 30 frames each at once exceed it, while
/// another user is unaffected.
async fn a_users_devices_share_one_frame_budget(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.user_max_frame_rate = 20).await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    let (mut phone, _) = app.ws_login(&amy).await;
    let (mut laptop, _) = app.ws_login(&amy).await;
    let (mut ben_ws, _) = app.ws_login(&ben).await;
    // The broker may close Amy's sockets before the burst is over: those sends may fail.
    for _ in 0..30 {
        phone.try_send(json!({"type": "ping"})).await;
        laptop.try_send(json!({"type": "ping"})).await;
        ben_ws.send(json!({"type": "ping"})).await;
    }
    let (a, b) = futures_util::join!(
        actix_rt::time::timeout(Duration::from_secs(2), phone.expect_close()),
        actix_rt::time::timeout(Duration::from_secs(2), laptop.expect_close())
    );
    let closed: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
    assert!(
        !closed.is_empty(),
        "sixty frames in a burst of forty went through"
    );
    for c in closed {
        assert_eq!(
            (c.code, c.reason.as_str()),
            (1008, "too many frames per second from this account")
        );
    }
    ben_ws.send(json!({"type": "ping", "id": "still"})).await;
    assert_eq!(
        ben_ws.recv_where(|f| f["ref"] == "still").await["type"],
        "pong"
    );
}

async fn a_user_has_at_most_max_devices_sockets(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.max_devices_per_user = 3).await;
    let token = app.register("amy").await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(app.ws_login(&token).await.0);
    }
    let mut fourth = app.ws_connect().await;
    fourth
        .send(json!({"type": "auth", "id": 1, "token": token}))
        .await;
    let refused = fourth.recv().await;
    assert_eq!(
        (refused["type"].as_str(), refused["error"].as_str()),
        (Some("error"), Some("too_many_devices")),
        "{refused}"
    );
    let closed = fourth.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4009, "too many devices")
    );
    // The three keep working, and closing one makes room.
    devices[0].send(json!({"type": "ping", "id": 2})).await;
    assert_eq!(devices[0].recv().await["type"], "pong");
    devices.pop().unwrap().close().await;
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    app.ws_login(&token).await;
}

async fn unauthenticated_sockets_are_capped_per_address_and_in_all(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.ws_max_unauthenticated = 5;
        c.ws_max_unauthenticated_per_address = 3;
        c.ws_auth_timeout = Duration::from_secs(30);
    })
    .await;
    let token = app.register("amy").await;
    let mut local = Vec::new();
    for _ in 0..3 {
        local.push(app.ws_connect().await);
    }
    let refused = RawSocket::upgrade_with(&app.address, "")
        .await
        .err()
        .expect("a fourth stranger from one address was upgraded");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    // Another address has its own allowance, up to the total.
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let _a = RawSocket::upgrade_from(other, &app.address)
        .await
        .expect("upgraded");
    let _b = RawSocket::upgrade_from(other, &app.address)
        .await
        .expect("upgraded");
    let full = RawSocket::upgrade_from(other, &app.address)
        .await
        .err()
        .expect("a sixth stranger was upgraded");
    assert!(full.starts_with("HTTP/1.1 503"), "{full}");
    // A socket that authenticates gives its place back.
    local[0].send(json!({"type": "auth", "token": token})).await;
    assert_eq!(local[0].recv().await["type"], "welcome");
    RawSocket::upgrade_with(&app.address, "")
        .await
        .expect("the freed place is taken");
}

/// The broker runs with 256 descriptors and 600 clients connect and sit there. New connections
/// wait in the listen backlog once the connections' share is used up, while a signed-in user's
/// socket is still served and a relay allocation still gets its descriptor; once the crowd
/// leaves, new connections are accepted again.
async fn when_descriptors_run_out_existing_users_are_served_and_it_recovers(backend: Backend) {
    use common::process::BrokerProcess;
    use common::stun::StunClient;
    let db = common::TestDatabase::new(backend);
    let broker = BrokerProcess::start(&db.url, &[], Some(256)).await;
    let client = awc::Client::default();
    let mut registered = client
        .post(broker.url("/api/v1/auth/register"))
        .send_json(&json!({"username": "amy", "password": "password-amy"}))
        .await
        .expect("registered");
    let body: serde_json::Value = registered.json().await.expect("json");
    let token = body["token"].as_str().unwrap().to_owned();
    let mut ice = client
        .get(broker.url("/api/v1/ice-servers"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("ice servers");
    let ice: serde_json::Value = ice.json().await.expect("json");
    let turn = ice["ice_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["username"].is_string())
        .unwrap()
        .clone();
    let (mut amy_ws, _) = common::ws::WsClient::login(&broker.http.to_string(), &token).await;

    let mut crowd = Vec::new();
    for _ in 0..600 {
        if let Ok(Ok(stream)) = actix_rt::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(broker.http),
        )
        .await
        {
            crowd.push(stream);
        }
    }
    actix_rt::time::sleep(Duration::from_millis(300)).await;

    amy_ws.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(
        amy_ws.recv().await["type"],
        "pong",
        "the signed-in user is still served"
    );
    let mut allocation = StunClient::new(
        &broker.relay.to_string(),
        turn["username"].as_str().unwrap(),
        turn["credential"].as_str().unwrap(),
    )
    .await;
    allocation.challenge().await;
    assert_eq!(
        allocation.allocate().await.code(),
        0,
        "the relay still gets descriptors"
    );

    drop(crowd);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = awc::Client::default();
        if matches!(fresh.get(broker.url("/healthz")).send().await, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new connection accepted after the crowd left"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The client closes: the server echoes the close frame and closes TCP right away, rather than
/// lingering a second for the client to hang up first.
async fn a_client_close_is_echoed_and_the_connection_closed_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = RawSocket::upgrade(&app.address).await;
    assert!(socket.write(&RawSocket::close_frame(1000)).await);
    assert_eq!(
        socket.ending(Duration::from_secs(2)).await,
        Ending::Closed(1000)
    );
    let took = socket
        .eof(Duration::from_secs(3))
        .await
        .expect("the server never closed the connection");
    eprintln!("TCP closed {took:?} after the close frame");
    assert!(
        took < Duration::from_millis(300),
        "TCP closed {took:?} after the echo"
    );
}

async fn a_frame_whose_payload_never_comes_does_not_outlast_the_auth_timeout(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut socket = RawSocket::upgrade(&app.address).await;
    let mut frame = RawSocket::header(0x1, 60 * 1024);
    frame.extend_from_slice(b"{\"type\"");
    assert!(socket.write(&frame).await);
    // The test broker's auth timeout is 500 ms.
    assert_eq!(
        socket.ending(Duration::from_secs(5)).await,
        Ending::Closed(4000)
    );
}

async fn binary_oversized_and_flooding_sockets_are_closed_with_clear_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.register("amy").await;

    let (mut ws, _) = app.ws_login(&token).await;
    ws.send_binary(vec![1, 2, 3]).await;
    let closed = ws.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1003, "binary frames are not supported")
    );

    let (mut ws, _) = app.ws_login(&token).await;
    ws.send_text(format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    ))
    .await;
    assert_eq!(ws.expect_close().await.code, 1009);

    let (mut ws, _) = app.ws_login(&token).await;
    // The socket is closed once the budget is spent: later sends may find it gone.
    for _ in 0..150 {
        if !ws.try_send(json!({"type": "ping"})).await {
            break;
        }
    }
    let closed = ws.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "too many frames per second")
    );
}

async fn silent_sockets_are_dropped_by_the_heartbeat(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.heartbeat_timeout = Duration::from_millis(500);
    })
    .await;
    let (amy, ben) = friends(&app).await;
    let (mut ws, _) = app.ws_login(&amy).await;
    assert_eq!(
        app.get("/api/v1/friends", &ben).await.body["friends"][0]["presence"],
        "online"
    );
    ws.auto_pong = false;
    let closed = ws.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4008, "heartbeat timeout")
    );
    // The device is gone for good: after the grace, amy is offline.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.get("/api/v1/friends", &ben).await.body["friends"][0]["presence"],
        "offline"
    );
}

/// Hundreds of `auth` frames race `logout-all`: whether a token was revoked before its check
/// (an invalid token, 4003) or between the check and the device's registration (4001), every
/// socket ends closed within a second of the logout, and none keeps a welcome.
async fn sockets_authenticating_while_their_sessions_are_revoked_never_survive(backend: Backend) {
    // Thirty sockets of one user at a time: more than the default cap of ten.
    let app = spawn_app_with(backend, |c| c.max_devices_per_user = 0).await;
    app.register("amy").await;
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..10u64 {
        let mut tokens = Vec::new();
        for _ in 0..30 {
            let reply = app.login("amy", "password-amy").await;
            tokens.push(reply.body["token"].as_str().unwrap().to_owned());
        }
        let mut sockets = Vec::new();
        for _ in &tokens {
            sockets.push(app.ws_connect().await);
        }
        for (ws, token) in sockets.iter_mut().zip(&tokens) {
            ws.send(json!({"type": "auth", "id": 1, "token": token}))
                .await;
        }
        // Vary where in the sockets' authentication the revocation lands.
        actix_rt::time::sleep(Duration::from_micros(round * 700)).await;
        let logout = app
            .post("/api/v1/auth/logout-all", &tokens[0], json!({}))
            .await;
        assert_eq!(logout.status, 204);
        let closes = sockets.iter_mut().map(|ws| async {
            actix_rt::time::timeout(Duration::from_secs(1), ws.expect_close())
                .await
                .map(|closed| closed.code)
        });
        for (i, closed) in futures_util::future::join_all(closes)
            .await
            .into_iter()
            .enumerate()
        {
            let code = closed.unwrap_or_else(|_| panic!("round {round}: socket {i} survived"));
            assert!(
                matches!(code, 4001 | 4003),
                "round {round}: socket {i} closed with {code}"
            );
            *codes.entry(code).or_default() += 1;
        }
    }
    eprintln!("close codes over 300 racing sockets: {codes:?}");
}

async fn revoking_a_token_closes_its_sockets(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.register("amy").await;
    let second = app.login("amy", "password-amy").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut ws1, _) = app.ws_login(&first).await;
    let (mut ws2, _) = app.ws_login(&second).await;

    assert_eq!(
        app.post("/api/v1/auth/logout", &first, json!({}))
            .await
            .status,
        204
    );
    let closed = ws1.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4001, "session revoked")
    );
    ws2.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(ws2.recv().await["type"], "pong", "the other session stays");

    // A password change closes every other session's sockets.
    let third = app.login("amy", "password-amy").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let changed = app
        .request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&third),
            Some(json!({"old_password": "password-amy", "new_password": "a new password"})),
        )
        .await;
    assert_eq!(changed.status, 204);
    assert_eq!(ws2.expect_close().await.code, 4001);

    // Deleting the account closes its last sockets.
    let (mut ws3, _) = app.ws_login(&third).await;
    let deleted = app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&third),
            Some(json!({"password": "a new password"})),
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(ws3.expect_close().await.code, 4001);
}

async fn friends_see_each_other_come_online_and_go_offline_after_the_grace(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = friends(&app).await;
    let (mut amy_ws, welcome) = app.ws_login(&amy).await;
    assert_eq!(welcome["friends"][0]["status"], "offline");
    let (ben_ws, _) = app.ws_login(&ben).await;
    let online = amy_ws.recv_where(|f| f["type"] == "presence").await;
    assert_eq!(
        online,
        json!({"type": "presence", "username": "ben", "status": "online"})
    );
    // An online friend has no last_seen in the friends list: absent, never null.
    let listed = app.get("/api/v1/friends", &amy).await.body;
    assert_eq!(listed["friends"][0]["presence"], "online", "{listed}");
    assert!(listed["friends"][0].get("last_seen").is_none(), "{listed}");

    ben_ws.close().await;
    let offline = amy_ws.recv_where(|f| f["type"] == "presence").await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    // last_seen is stored: it shows in the friends list and the next welcome.
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let list = app.get("/api/v1/friends", &amy).await;
    assert_eq!(list.body["friends"][0]["presence"], "offline");
    assert!(list.body["friends"][0]["last_seen"].is_string());
    let (_, again) = app.ws_login(&amy).await;
    assert!(again["friends"][0]["last_seen"].is_string());
}

async fn a_quick_reconnect_within_the_grace_does_not_flap_offline(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = friends(&app).await;
    let (mut amy_ws, _) = app.ws_login(&amy).await;
    let (ben_ws, _) = app.ws_login(&ben).await;
    amy_ws.recv_where(presence_of("ben", "online")).await;
    ben_ws.close().await;
    let (_ben_again, _) = app.ws_login(&ben).await;
    amy_ws
        .expect_none(Duration::from_millis(600), |f| f["type"] == "presence")
        .await;
}

async fn status_changes_reach_friends_and_the_friends_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = friends(&app).await;
    let (mut amy_ws, _) = app.ws_login(&amy).await;
    let (mut ben_ws, _) = app.ws_login(&ben).await;
    amy_ws.recv_where(presence_of("ben", "online")).await;

    ben_ws
        .ok(json!({"type": "presence.set", "status": "away", "message": "lunch"}))
        .await;
    let away = amy_ws.recv_where(|f| f["type"] == "presence").await;
    assert_eq!(
        away,
        json!({"type": "presence", "username": "ben", "status": "away", "message": "lunch"})
    );
    let list = app.get("/api/v1/friends", &amy).await;
    assert_eq!(list.body["friends"][0]["presence"], "away");
    assert_eq!(list.body["friends"][0]["status_message"], "lunch");

    ben_ws
        .ok(json!({"type": "presence.set", "status": "dnd"}))
        .await;
    amy_ws.recv_where(presence_of("ben", "dnd")).await;
    let too_long = ben_ws
        .request(json!({"type": "presence.set", "status": "online", "message": "x".repeat(141)}))
        .await;
    assert_eq!(too_long["error"], "invalid_frame");
    // Control characters (a newline, an escape, a NUL) are refused; the status stays.
    for bad in ["two\nlines", "\u{1b}[2Jwiped", "nul\u{0}here"] {
        let refused = ben_ws
            .request(json!({"type": "presence.set", "status": "away", "message": bad}))
            .await;
        assert_eq!(refused["error"], "invalid_frame", "{bad:?}: {refused}");
    }
    amy_ws
        .expect_none(Duration::from_millis(200), |f| f["type"] == "presence")
        .await;
    let list = app.get("/api/v1/friends", &amy).await;
    assert_eq!(list.body["friends"][0]["presence"], "dnd");
}

async fn presence_never_reaches_strangers_or_blocked_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = friends(&app).await;
    let cat = app.register("cat").await;
    let (mut cat_ws, _) = app.ws_login(&cat).await;
    let (mut amy_ws, _) = app.ws_login(&amy).await;
    let (mut ben_ws, _) = app.ws_login(&ben).await;
    amy_ws.recv_where(presence_of("ben", "online")).await;

    assert_eq!(app.put("/api/v1/blocks/amy", &ben).await.status, 204);
    amy_ws
        .recv_where(|f| f["type"] == "friend.removed" && f["username"] == "ben")
        .await;
    ben_ws
        .ok(json!({"type": "presence.set", "status": "away"}))
        .await;
    amy_ws
        .expect_none(Duration::from_millis(400), |f| f["type"] == "presence")
        .await;
    cat_ws
        .expect_none(Duration::from_millis(10), |f| f["type"] == "presence")
        .await;
    let list = app.get("/api/v1/friends", &amy).await;
    assert_eq!(list.body["friends"], json!([]));
}

async fn friend_changes_over_rest_are_pushed_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    let (mut amy_ws, _) = app.ws_login(&amy).await;
    let (mut ben_ws, _) = app.ws_login(&ben).await;

    app.post("/api/v1/friends/requests", &amy, json!({"username": "ben"}))
        .await;
    let request = ben_ws.recv_type("friend.request").await;
    assert_eq!(
        request["from"],
        json!({"username": "amy", "display_name": "amy"})
    );

    app.post("/api/v1/friends/requests/amy/accept", &ben, json!({}))
        .await;
    let accepted = amy_ws.recv_type("friend.accepted").await;
    assert_eq!(
        accepted["friend"],
        json!({"username": "ben", "display_name": "ben", "status": "online"})
    );
    ben_ws.recv_type("friend.accepted").await;
    // Presence flows at once.
    ben_ws
        .ok(json!({"type": "presence.set", "status": "away"}))
        .await;
    amy_ws.recv_where(presence_of("ben", "away")).await;

    assert_eq!(app.delete("/api/v1/friends/ben", &amy).await.status, 204);
    assert_eq!(ben_ws.recv_type("friend.removed").await["username"], "amy");
    amy_ws.recv_type("friend.removed").await;
    ben_ws
        .ok(json!({"type": "presence.set", "status": "online"}))
        .await;
    amy_ws
        .expect_none(Duration::from_millis(400), |f| f["type"] == "presence")
        .await;
}

/// Graceful shutdown: every socket gets a close frame (1001).
#[actix_rt::test]
async fn shutdown_closes_every_socket() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.register("amy").await;
    let (mut ws, _) = app.ws_login(&token).await;
    let shutdown = app.shutdown.clone();
    actix_rt::spawn(async move { shutdown.shutdown().await });
    let closed = ws.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "server shutting down")
    );
}

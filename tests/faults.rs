//! Faults the broker must survive with nothing acknowledged lost: the process killed with
//! SIGKILL and started again on the same database.
mod common;

use common::process::BrokerProcess;
use common::ws::WsClient;
use common::{Backend, TestDatabase};
use serde_json::{json, Value};

on_both_databases!(
    password_checks_whose_clients_hung_up_are_never_hashed,
    a_hangup_acknowledged_just_before_a_kill_is_completed_after_the_restart,
    registrations_and_friend_requests_acknowledged_before_a_kill_are_all_there_after_it,
);

async fn post(broker: &BrokerProcess, path: &str, token: Option<&str>, body: Value) -> Value {
    try_post(broker, path, token, body)
        .await
        .expect("request answered")
        .1
}

/// (status, body), or `None` when the broker did not answer (it was killed meanwhile).
async fn try_post(
    broker: &BrokerProcess,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Option<(u16, Value)> {
    let mut req = awc::Client::default().post(broker.url(path));
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut res = req.send_json(&body).await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.json().await.unwrap_or(Value::Null)))
}

async fn get(broker: &BrokerProcess, path: &str, token: &str) -> Value {
    let mut res = awc::Client::default()
        .get(broker.url(path))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("request");
    res.json().await.expect("json")
}

async fn login(broker: &BrokerProcess, name: &str) -> String {
    let body = json!({"username": name, "password": format!("password-{name}")});
    post(broker, "/api/v1/auth/login", None, body).await["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// Registers amy and ben on `broker`, logs both in and makes them friends: their tokens.
async fn amy_and_ben_as_friends(broker: &BrokerProcess) -> (String, String) {
    for name in ["amy", "ben"] {
        let body = json!({"username": name, "password": format!("password-{name}")});
        post(broker, "/api/v1/auth/register", None, body).await;
    }
    let (amy, ben) = (login(broker, "amy").await, login(broker, "ben").await);
    post(
        broker,
        "/api/v1/friends/requests",
        Some(&amy),
        json!({"username": "ben"}),
    )
    .await;
    post(
        broker,
        "/api/v1/friends/requests/amy/accept",
        Some(&ben),
        json!({}),
    )
    .await;
    (amy, ben)
}

/// Over and over: a call is answered, the caller hangs up, and the moment the `ack` arrives the
/// broker is killed. After the restart the call must read `completed`, never `failed` (which
/// is what crash recovery makes of calls it finds open).
async fn a_hangup_acknowledged_just_before_a_kill_is_completed_after_the_restart(backend: Backend) {
    let db = TestDatabase::new(backend);
    let broker = BrokerProcess::start(&db.url, &[], None).await;
    let (amy, ben) = amy_and_ben_as_friends(&broker).await;
    let mut broker = Some(broker);
    let mut ended = Vec::new();
    for _ in 0..8 {
        let running = broker.take().unwrap_or_else(|| unreachable!());
        let address = running.http.to_string();
        let (mut amy_ws, _) = WsClient::login(&address, &amy).await;
        let (mut ben_ws, _) = WsClient::login(&address, &ben).await;
        let id = common::ws::answered_call(&mut amy_ws, &mut ben_ws, "ben").await;
        amy_ws
            .ok(json!({"type": "call.hangup", "call_id": id}))
            .await;
        running.kill();
        ended.push(id);
        broker = Some(BrokerProcess::start(&db.url, &[], None).await);
    }
    let broker = broker.unwrap_or_else(|| unreachable!());
    for id in &ended {
        let call = get(&broker, &format!("/api/v1/calls/{id}"), &amy).await;
        assert_eq!(call["outcome"], "completed", "after the kill: {call}");
    }
}

/// Sixty people register and each asks `hub` to be friends, all at once, and the broker is
/// killed in the middle of it. After the restart every registration that was answered 201 can
/// log in, and every friend request that was answered 201 is there: nothing acknowledged is
/// lost, nothing is half-written.
async fn registrations_and_friend_requests_acknowledged_before_a_kill_are_all_there_after_it(
    backend: Backend,
) {
    let db = TestDatabase::new(backend);
    let broker = BrokerProcess::start(&db.url, &[], None).await;
    post(
        &broker,
        "/api/v1/auth/register",
        None,
        json!({"username": "hub", "password": "password-hub"}),
    )
    .await;
    let burst = (0..60).map(|i| {
        let broker = &broker;
        async move {
            let name = format!("user{i}");
            let body = json!({"username": name, "password": format!("password-{name}")});
            let Some((201, registered)) =
                try_post(broker, "/api/v1/auth/register", None, body).await
            else {
                return (None, false);
            };
            let token = registered["token"].as_str().unwrap_or_default().to_owned();
            let asked = try_post(
                broker,
                "/api/v1/friends/requests",
                Some(&token),
                json!({"username": "hub"}),
            )
            .await;
            (Some(name), matches!(asked, Some((201, _))))
        }
    });
    // SIGKILL while the burst is in flight.
    let pid = broker.pid().to_string();
    let killer = async {
        actix_rt::time::sleep(std::time::Duration::from_millis(40)).await;
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        assert!(
            matches!(killed, Ok(s) if s.success()),
            "kill -9: {killed:?}"
        );
    };
    let (acknowledged, ()) = futures_util::join!(futures_util::future::join_all(burst), killer);
    broker.kill();
    // The kill may land after everything finished on a fast machine: then all 60 are checked.
    let broker = BrokerProcess::start(&db.url, &[], None).await;
    let hub = login(&broker, "hub").await;
    let requests = get(&broker, "/api/v1/friends/requests", &hub).await;
    let incoming: Vec<&str> = requests["incoming"]
        .as_array()
        .expect("incoming")
        .iter()
        .map(|r| r["username"].as_str().unwrap_or_default())
        .collect();
    let mut registered = 0;
    for (name, asked) in acknowledged {
        let Some(name) = name else { continue };
        registered += 1;
        login(&broker, &name).await;
        if asked {
            assert!(
                incoming.contains(&name.as_str()),
                "{name}'s request is gone: {requests}"
            );
        }
    }
    eprintln!("{registered} of 60 registrations were acknowledged before the kill");
    assert!(
        registered < 60,
        "the kill came after the whole burst: it proves nothing"
    );
    assert!(registered > 0, "nothing was acknowledged before the kill");
}

/// A TCP proxy in front of Postgres that can stall: while `stalled`, it keeps every connection
/// open and accepts bytes but forwards nothing, like a database that hangs.
async fn stalling_proxy(stalled: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                ),
                (Box::new(server_read) as _, Box::new(client_write) as _),
            ] {
                let stalled = stalled.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let Ok(n) = from.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        while stalled.load(Ordering::Relaxed) {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    address
}

/// Postgres stalls (through a proxy that stops forwarding): REST answers 503 `unavailable`
/// within seconds instead of hanging for the stall, the socket of a signed-in user keeps
/// working, and once the database answers again everything recovers by itself.
#[actix_rt::test]
async fn a_stalled_database_gets_quick_503s_and_everything_recovers_after_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let stalled = std::sync::Arc::new(AtomicBool::new(false));
    let proxy = stalling_proxy(stalled.clone()).await;
    let mut db = TestDatabase::new(backend);
    db.url = db.url.replace("127.0.0.1:5432", &proxy);
    // The test reads the socket only after the REST call; its pings may wait that long.
    let app = common::spawn_app_on(db, |c| {
        c.heartbeat_timeout = std::time::Duration::from_secs(30)
    })
    .await;
    let token = app.register("amy").await;
    let (mut ws, _) = app.ws_login(&token).await;

    stalled.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let me = app.get("/api/v1/me", &token).await;
    let waited = started.elapsed();
    assert_eq!((me.status, me.code()), (503, "unavailable"), "{}", me.body);
    assert!(
        waited < std::time::Duration::from_secs(8),
        "waited {waited:?}"
    );
    ws.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(
        ws.recv().await["type"],
        "pong",
        "the socket works through the stall"
    );

    stalled.store(false, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if app.get("/api/v1/me", &token).await.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery after the stall"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Switches connections to the test database off (terminating the live ones) or back on.
fn set_outage(db_url: &str, down: bool) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let name = db_url.rsplit('/').next().expect("database name");
    let mut admin = diesel::PgConnection::establish(&common::postgres_admin_url()).expect("admin");
    let sql = if down {
        format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        )
    } else {
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true;")
    };
    admin.batch_execute(&sql).expect("outage switched");
}

/// A call ends while Postgres is down for longer than any retry: both sides hear `call.ended`
/// at once, the hangup is acknowledged within seconds, and the record, kept by the recorder,
/// is written when the database is back, so history never shows the call as still active.
#[actix_rt::test]
async fn a_call_ending_during_an_outage_is_recorded_when_the_database_returns() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let app = common::spawn_app_with(backend, |c| {
        c.heartbeat_timeout = std::time::Duration::from_secs(30)
    })
    .await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    let (mut amy_ws, _) = app.ws_login(&amy).await;
    let (mut ben_ws, _) = app.ws_login(&ben).await;
    let id = common::ws::answered_call(&mut amy_ws, &mut ben_ws, "ben").await;
    // The answer is recorded before the outage.
    actix_rt::time::sleep(std::time::Duration::from_millis(300)).await;

    set_outage(&app.db.url, true);
    let started = std::time::Instant::now();
    amy_ws
        .send(json!({"type": "call.hangup", "id": "bye", "call_id": id}))
        .await;
    assert_eq!(ben_ws.recv_type("call.ended").await["reason"], "completed");
    let ack = amy_ws.recv_where(|f| f["ref"] == "bye").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    // Longer than the recorder's quick retries.
    actix_rt::time::sleep(std::time::Duration::from_secs(4)).await;
    set_outage(&app.db.url, false);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let call = app.get(&format!("/api/v1/calls/{id}"), &amy).await;
        if call.status == 200 && call.body["outcome"] == "completed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the call's end was never recorded: {} {}",
            call.status,
            call.body
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// One bcrypt thread at the real cost. Eight clients send a login and hang up at once; their
/// checks are dropped unhashed, so the next real login waits for about one hash, not nine.
async fn password_checks_whose_clients_hung_up_are_never_hashed(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let db = TestDatabase::new(backend);
    let broker = BrokerProcess::start(
        &db.url,
        &["--bcrypt-cost", "12", "--bcrypt-concurrency", "1"],
        None,
    )
    .await;
    let body = json!({"username": "kim", "password": "password-kim"});
    post(&broker, "/api/v1/auth/register", None, body.clone()).await;
    let timed_login = || async {
        let started = std::time::Instant::now();
        let (status, _) = try_post(&broker, "/api/v1/auth/login", None, body.clone())
            .await
            .expect("answered");
        assert_eq!(status, 200);
        started.elapsed()
    };
    let one_hash = timed_login().await;

    let request = {
        let json = json!({"username": "nobody", "password": "whatever123"}).to_string();
        format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{json}",
            json.len()
        )
    };
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(broker.http)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("sent");
        // Hang up without waiting for the answer.
        drop(stream);
    }
    actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    let after = timed_login().await;
    assert!(
        after < one_hash * 4,
        "a login waited {after:?} behind abandoned checks (one hash takes {one_hash:?})"
    );
}

/// How long the long outage below lasts: the 30-60 s, at its short end.
const LONG_OUTAGE: std::time::Duration = std::time::Duration::from_secs(30);

/// A candidate `signal` frame numbered `n`, and whether `frame` is the relayed one.
fn candidate(call_id: &str, n: usize) -> Value {
    json!({"type": "signal", "call_id": call_id, "kind": "candidate",
           "candidate": {"candidate": format!("c{n}"), "sdpMid": "0"}})
}

fn is_candidate(frame: &Value, n: usize) -> bool {
    frame["type"] == "signal" && frame["candidate"]["candidate"] == format!("c{n}")
}

/// Postgres refuses every connection for 30 s. Throughout, a call answered before it goes on:
/// its signals flow both ways and its sockets answer pings. Meanwhile REST answers 503
/// `unavailable` within seconds, and a new socket's `auth` (which needs the database) gets an
/// error and close 1013 (try again). Once Postgres is back, everything recovers by itself: REST
/// answers, a new socket authenticates, and the call, still live, ends and is recorded.
#[actix_rt::test]
async fn a_long_database_outage_leaves_live_calls_alone_and_everything_recovers() {
    use std::time::{Duration, Instant};
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let app = common::spawn_app_with(backend, |c| {
        c.heartbeat_timeout = Duration::from_secs(120);
        c.reconnect_grace = Duration::from_secs(120);
    })
    .await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    let carl = app.register("carl").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    let (mut amy_ws, _) = app.ws_login(&amy).await;
    let (mut ben_ws, _) = app.ws_login(&ben).await;
    let id = common::ws::answered_call(&mut amy_ws, &mut ben_ws, "ben").await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;

    set_outage(&app.db.url, true);
    let started = Instant::now();
    let mut n = 0;
    let mut refused_sockets = 0;
    while started.elapsed() < LONG_OUTAGE {
        amy_ws.send(candidate(&id, n)).await;
        let relayed = ben_ws.recv_where(|f| f["type"] == "signal").await;
        assert!(is_candidate(&relayed, n), "{relayed}");
        ben_ws.send(candidate(&id, n + 1)).await;
        let relayed = amy_ws.recv_where(|f| f["type"] == "signal").await;
        assert!(is_candidate(&relayed, n + 1), "{relayed}");
        n += 2;
        if n % 10 == 2 {
            let asked = Instant::now();
            let me = app.get("/api/v1/me", &carl).await;
            assert_eq!((me.status, me.code()), (503, "unavailable"), "{}", me.body);
            assert!(
                asked.elapsed() < Duration::from_secs(8),
                "{:?}",
                asked.elapsed()
            );

            let mut newcomer = app.ws_connect().await;
            newcomer
                .send(json!({"type": "auth", "id": "in", "token": carl}))
                .await;
            let answer = newcomer.recv_where(|f| f["ref"] == "in").await;
            assert_eq!(answer["type"], "error", "{answer}");
            assert_eq!(answer["error"], "unavailable", "{answer}");
            assert_eq!(newcomer.expect_close().await.code, 1013);
            refused_sockets += 1;

            amy_ws.send(json!({"type": "ping", "id": n})).await;
            let pong = amy_ws.recv_where(|f| f["ref"] == n).await;
            assert_eq!(pong["type"], "pong", "{pong}");
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(refused_sockets >= 2 && n >= 20, "{refused_sockets} {n}");
    set_outage(&app.db.url, false);

    let deadline = Instant::now() + Duration::from_secs(30);
    while app.get("/api/v1/me", &carl).await.status != 200 {
        assert!(Instant::now() < deadline, "REST did not recover");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    let (_carl_ws, welcome) = app.ws_login(&carl).await;
    assert_eq!(welcome["user"]["username"], "carl", "{welcome}");
    amy_ws.send(candidate(&id, n)).await;
    let relayed = ben_ws.recv_where(|f| f["type"] == "signal").await;
    assert!(is_candidate(&relayed, n), "{relayed}");
    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    assert_eq!(ben_ws.recv_type("call.ended").await["reason"], "completed");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let call = app.get(&format!("/api/v1/calls/{id}"), &amy).await;
        if call.status == 200 && call.body["outcome"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", call.status, call.body);
        actix_rt::time::sleep(Duration::from_millis(300)).await;
    }
}

/// SIGTERM while Postgres is down and a call is live: the broker still exits within a bounded
/// time (its record flush gives up after a few seconds), and both participants get their close
/// frame (1001, going away) rather than a dropped connection.
#[actix_rt::test]
async fn shutdown_during_an_outage_is_bounded_and_closes_every_socket() {
    use std::time::{Duration, Instant};
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let db = TestDatabase::new(backend);
    let mut broker = BrokerProcess::start(&db.url, &[], None).await;
    let (amy, ben) = amy_and_ben_as_friends(&broker).await;
    let address = broker.http.to_string();
    let (mut amy_ws, _) = WsClient::login(&address, &amy).await;
    let (mut ben_ws, _) = WsClient::login(&address, &ben).await;
    common::ws::answered_call(&mut amy_ws, &mut ben_ws, "ben").await;

    set_outage(&db.url, true);
    let started = Instant::now();
    broker.terminate();
    for ws in [&mut amy_ws, &mut ben_ws] {
        let closed = ws.expect_close().await;
        assert_eq!(closed.code, 1001, "{}", closed.reason);
    }
    let status = broker.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    set_outage(&db.url, false);
    assert!(status.is_some(), "still running {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

//! A cluster of real broker processes on one Postgres database, coordinated through Redis:
//! presence across nodes, a node killed, a node cut off from Redis. Each test has its own key
//! prefix on the Redis at 127.0.0.1:6379, so they run in parallel; the outage test runs its
//! own redis-server on a free port.
mod common;

use common::process::BrokerProcess;
use common::stun::turn_of;
use common::ws::{WsClient, SDP};
use common::{Backend, TestDatabase};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHARED_REDIS: &str = "redis://127.0.0.1:6379";
/// Short, so a lost node is noticed quickly.
const NODE_TTL: Duration = Duration::from_secs(3);

/// Whether the shared Redis answers. Under CI=true it must (.ci/run starts it); elsewhere
/// the tests are skipped with a note.
fn redis_answers() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().expect("addr"),
        Duration::from_secs(1),
    )
    .is_ok();
    if !up {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "Redis on 127.0.0.1:6379 is required under CI=true"
        );
        eprintln!("skipping cluster test: no Redis on 127.0.0.1:6379");
    }
    up
}

/// One cluster: its database, its key prefix, its Redis.
struct Cluster {
    db: TestDatabase,
    prefix: String,
    redis: String,
}

impl Cluster {
    /// A cluster on the shared Redis; `None` when the test must skip (never under CI=true).
    fn shared() -> Option<Self> {
        if !redis_answers() {
            return None;
        }
        Self::new(SHARED_REDIS)
    }

    /// A fresh Postgres database and prefix on `redis`; `None` when the test must skip.
    fn new(redis: &str) -> Option<Self> {
        Backend::postgres()?;
        Some(Self {
            db: TestDatabase::new(Backend::Postgres),
            prefix: format!("sbtest{}", uuid::Uuid::new_v4().simple()),
            redis: redis.to_owned(),
        })
    }

    async fn node(&self) -> BrokerProcess {
        self.node_with(&[]).await
    }

    /// `N` nodes, started one after the other.
    async fn nodes<const N: usize>(&self) -> [BrokerProcess; N] {
        let mut nodes = Vec::with_capacity(N);
        for _ in 0..N {
            nodes.push(self.node().await);
        }
        match nodes.try_into() {
            Ok(nodes) => nodes,
            Err(_) => unreachable!("{N} nodes were started"),
        }
    }

    async fn node_with(&self, extra: &[&str]) -> BrokerProcess {
        self.node_timed(NODE_TTL, "300ms", extra).await
    }

    /// A node with its own `--node-ttl` and `--presence-grace`.
    async fn node_timed(&self, node_ttl: Duration, grace: &str, extra: &[&str]) -> BrokerProcess {
        let ttl = format!("{}s", node_ttl.as_secs());
        let mut args = vec![
            "--redis-url",
            &self.redis,
            "--redis-prefix",
            &self.prefix,
            "--node-ttl",
            &ttl,
            "--presence-grace",
            grace,
        ];
        args.extend_from_slice(extra);
        BrokerProcess::start_logging(
            &self.db.url,
            &args,
            None,
            "warn,switchboard::cluster=info,switchboard::calls=info",
        )
        .await
    }
}

impl Drop for Cluster {
    /// Removes what the test's nodes left under its prefix (they were killed, not stopped).
    fn drop(&mut self) {
        // Bounded: a test that fails with its own Redis frozen must fail, not hang here.
        let wait = Duration::from_secs(2);
        let Ok(mut conn) = redis::Client::open(self.redis.as_str())
            .and_then(|c| c.get_connection_with_timeout(wait))
        else {
            return;
        };
        let _ = conn.set_read_timeout(Some(wait));
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

async fn post(node: &BrokerProcess, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = awc::Client::default().post(node.url(path));
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut res = req.send_json(&body).await.expect("request answered");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(node: &BrokerProcess, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = awc::Client::default().get(node.url(path));
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut res = req.send().await.expect("request answered");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `method` on `node` with a JSON body: the status.
async fn send(
    node: &BrokerProcess,
    method: awc::http::Method,
    path: &str,
    token: &str,
    body: Value,
) -> u16 {
    let mut res = awc::Client::default()
        .request(method, node.url(path))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_json(&body)
        .await
        .expect("request answered");
    let status = res.status().as_u16();
    let _ = res.body().await;
    status
}

/// Logs `name` in on `node`: a new session's token.
async fn login(node: &BrokerProcess, name: &str, password: &str) -> String {
    let body = json!({"username": name, "password": password});
    let (status, reply) = post(node, "/api/v1/auth/login", None, body).await;
    assert_eq!(status, 200, "{reply}");
    reply["token"].as_str().expect("token").to_owned()
}

/// Registers `name` on `node`: its token.
async fn register(node: &BrokerProcess, name: &str) -> String {
    let body = json!({"username": name, "password": format!("password-{name}")});
    let (status, reply) = post(node, "/api/v1/auth/register", None, body).await;
    assert_eq!(status, 201, "{reply}");
    reply["token"].as_str().expect("token").to_owned()
}

/// Makes `a` and `b` friends, the request on one node and the acceptance on another.
async fn befriend(
    asker: &BrokerProcess,
    a: (&str, &str),
    accepter: &BrokerProcess,
    b: (&str, &str),
) {
    let (status, reply) = post(
        asker,
        "/api/v1/friends/requests",
        Some(a.1),
        json!({"username": b.0}),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    let (status, reply) = post(
        accepter,
        &format!("/api/v1/friends/requests/{}/accept", a.0),
        Some(b.1),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
}

async fn socket(node: &BrokerProcess, token: &str) -> (WsClient, Value) {
    WsClient::login(&node.http.to_string(), token).await
}

/// The status `welcome` gives for friend `name`.
fn status_in_welcome<'a>(welcome: &'a Value, name: &str) -> &'a Value {
    let friends = welcome["friends"].as_array().expect("friends");
    let friend = friends
        .iter()
        .find(|f| f["username"] == name)
        .unwrap_or_else(|| panic!("{name} not in {welcome}"));
    &friend["status"]
}

async fn presence_of(ws: &mut WsClient, name: &str, status: &str) -> Value {
    ws.recv_where(|f| f["type"] == "presence" && f["username"] == name && f["status"] == status)
        .await
}

/// `name`'s presence in `GET /friends` as seen by `token` on `node`.
async fn listed_presence(node: &BrokerProcess, token: &str, name: &str) -> Value {
    let (status, body) = get(node, "/api/v1/friends", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body["friends"]
        .as_array()
        .expect("friends")
        .iter()
        .find(|f| f["username"] == name)
        .unwrap_or_else(|| panic!("{name} not in {body}"))["presence"]
        .clone()
}

/// Polls until `check` holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn friends_on_different_nodes_see_each_other_come_go_and_change_status() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    let cat = register(&n1, "cat").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    befriend(&n1, ("cat", &cat), &n2, ("ben", &ben)).await;

    let (mut amy_ws, welcome) = socket(&n1, &amy).await;
    assert_eq!(status_in_welcome(&welcome, "ben"), "offline");
    // Two friends on one node: each hears of ben.
    let (mut cat_ws, _) = socket(&n1, &cat).await;
    let (mut ben_ws, welcome) = socket(&n2, &ben).await;
    assert_eq!(status_in_welcome(&welcome, "amy"), "online", "{welcome}");
    presence_of(&mut amy_ws, "ben", "online").await;
    presence_of(&mut cat_ws, "ben", "online").await;

    ben_ws
        .ok(json!({"type": "presence.set", "status": "away", "message": "lunch"}))
        .await;
    let away = presence_of(&mut amy_ws, "ben", "away").await;
    assert_eq!(away["message"], "lunch");
    amy_ws
        .ok(json!({"type": "presence.set", "status": "dnd"}))
        .await;
    presence_of(&mut ben_ws, "amy", "dnd").await;

    ben_ws.close().await;
    let offline = presence_of(&mut amy_ws, "ben", "offline").await;
    assert!(offline["last_seen"].is_string(), "{offline}");
    presence_of(&mut cat_ws, "ben", "offline").await;
}

#[actix_rt::test]
async fn a_call_on_one_node_shows_busy_to_friends_on_another() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n1, "ben").await;
    let cat = register(&n2, "cat").await;
    befriend(&n1, ("amy", &amy), &n1, ("ben", &ben)).await;
    befriend(&n2, ("cat", &cat), &n2, ("amy", &amy)).await;
    let (mut cat_ws, _) = socket(&n2, &cat).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n1, &ben).await;
    presence_of(&mut cat_ws, "amy", "online").await;

    let call = common::ws::answered_call(&mut amy_ws, &mut ben_ws, "ben").await;
    presence_of(&mut cat_ws, "amy", "busy").await;
    assert_eq!(listed_presence(&n2, &cat, "amy").await, "busy");
    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": call}))
        .await;
    presence_of(&mut cat_ws, "amy", "online").await;
}

#[actix_rt::test]
async fn a_user_with_devices_on_two_nodes_stays_online_until_both_are_gone() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2, n3] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n1, "ben").await;
    befriend(&n1, ("amy", &amy), &n1, ("ben", &ben)).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (ben_phone, _) = socket(&n2, &ben).await;
    presence_of(&mut amy_ws, "ben", "online").await;
    let (mut ben_laptop, welcome) = socket(&n3, &ben).await;
    assert_eq!(status_in_welcome(&welcome, "amy"), "online");

    // A status chosen on one node is the user's on the other too.
    ben_laptop
        .ok(json!({"type": "presence.set", "status": "away"}))
        .await;
    presence_of(&mut amy_ws, "ben", "away").await;

    ben_phone.close().await;
    amy_ws
        .expect_none(Duration::from_millis(1500), |f| {
            f["type"] == "presence" && f["username"] == "ben" && f["status"] == "offline"
        })
        .await;
    assert_eq!(listed_presence(&n1, &amy, "ben").await, "away");

    ben_laptop.close().await;
    presence_of(&mut amy_ws, "ben", "offline").await;
}

#[actix_rt::test]
async fn the_friends_list_on_a_third_node_shows_presence_held_on_others() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2, n3] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    let cat = register(&n3, "cat").await;
    befriend(&n1, ("amy", &amy), &n2, ("cat", &cat)).await;
    befriend(&n2, ("ben", &ben), &n3, ("cat", &cat)).await;

    let (mut amy_ws, _) = socket(&n1, &amy).await;
    amy_ws
        .ok(json!({"type": "presence.set", "status": "dnd", "message": "focus"}))
        .await;
    let (_ben_ws, _) = socket(&n2, &ben).await;

    // Cat has no socket anywhere; n3 holds neither amy nor ben.
    eventually(Duration::from_secs(3), "n3 lists amy as dnd", || async {
        listed_presence(&n3, &cat, "amy").await == "dnd"
    })
    .await;
    assert_eq!(listed_presence(&n3, &cat, "ben").await, "online");
    let (_, body) = get(&n3, "/api/v1/friends", Some(&cat)).await;
    let amy_entry = body["friends"]
        .as_array()
        .expect("friends")
        .iter()
        .find(|f| f["username"] == "amy")
        .cloned()
        .expect("amy listed");
    assert_eq!(amy_entry["status_message"], "focus", "{amy_entry}");

    // A friendship made on one node reaches devices on others: friend.accepted, then
    // presence both ways.
    let dan = register(&n3, "dan").await;
    let (mut dan_ws, _) = socket(&n3, &dan).await;
    let (status, _) = post(
        &n2,
        "/api/v1/friends/requests",
        Some(&dan),
        json!({"username": "amy"}),
    )
    .await;
    assert_eq!(status, 201);
    amy_ws.recv_type("friend.request").await;
    let (status, _) = post(
        &n2,
        "/api/v1/friends/requests/dan/accept",
        Some(&amy),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    dan_ws.recv_type("friend.accepted").await;
    amy_ws.recv_type("friend.accepted").await;
    // Each one's node tells the other's about them.
    presence_of(&mut amy_ws, "dan", "online").await;
    presence_of(&mut dan_ws, "amy", "dnd").await;
    dan_ws
        .ok(json!({"type": "presence.set", "status": "away"}))
        .await;
    presence_of(&mut amy_ws, "dan", "away").await;
    let (status, _) = awc::Client::default()
        .delete(n1.url("/api/v1/friends/amy"))
        .insert_header(("Authorization", format!("Bearer {dan}")))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("answered");
    assert_eq!(status, 204);
    amy_ws
        .recv_where(|f| f["type"] == "friend.removed" && f["username"] == "dan")
        .await;
    dan_ws
        .recv_where(|f| f["type"] == "friend.removed" && f["username"] == "amy")
        .await;
    dan_ws
        .ok(json!({"type": "presence.set", "status": "online"}))
        .await;
    amy_ws
        .expect_none(Duration::from_millis(800), |f| {
            f["type"] == "presence" && f["username"] == "dan"
        })
        .await;
}

#[actix_rt::test]
async fn a_killed_node_takes_its_users_offline_within_the_node_ttl_and_a_restarted_one_joins() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let (n1, n2, n3) = (
        cluster.node().await,
        cluster.node_with(&["--node-id", "doomed"]).await,
        cluster.node().await,
    );
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    let cat = register(&n3, "cat").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    befriend(&n1, ("cat", &cat), &n2, ("ben", &ben)).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (_ben_ws, _) = socket(&n2, &ben).await;
    // Cat has a device on the doomed node and one that survives.
    let (_cat_doomed, _) = socket(&n2, &cat).await;
    let (mut cat_ws, welcome) = socket(&n3, &cat).await;
    assert_eq!(status_in_welcome(&welcome, "ben"), "online", "{welcome}");
    presence_of(&mut amy_ws, "ben", "online").await;

    let killed = Instant::now();
    n2.kill();
    presence_of(&mut amy_ws, "ben", "offline").await;
    let took = killed.elapsed();
    assert!(
        took <= NODE_TTL + Duration::from_millis(500),
        "ben went offline {took:?} after the kill"
    );
    presence_of(&mut cat_ws, "ben", "offline").await;
    // Ben's friends elsewhere: cat, whose other device lives, is not shown offline to amy.
    assert_eq!(listed_presence(&n1, &amy, "ben").await, "offline");
    let (_, body) = get(&n1, "/api/v1/friends", Some(&ben)).await;
    let cat_entry = body["friends"]
        .as_array()
        .expect("friends")
        .iter()
        .find(|f| f["username"] == "cat")
        .cloned()
        .expect("cat listed");
    assert_eq!(cat_entry["presence"], "online", "{cat_entry}");

    // A node started again (same id) joins the cluster cleanly and its users are seen.
    let n2 = cluster.node_with(&["--node-id", "doomed"]).await;
    let (_ben_ws, welcome) = socket(&n2, &ben).await;
    assert_eq!(status_in_welcome(&welcome, "amy"), "online", "{welcome}");
    assert_eq!(status_in_welcome(&welcome, "cat"), "online", "{welcome}");
    presence_of(&mut amy_ws, "ben", "online").await;
    let (status, body) = get(&n2, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");

    // And it is watched like any node: killed again, it is noticed again.
    n2.kill();
    presence_of(&mut amy_ws, "ben", "offline").await;
}

/// A redis-server of the test's own on a free loopback port, which it can stop and start.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = Self { port, child: None };
        redis.resume();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (empty: nothing is saved) and waits until it answers.
    fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP: it keeps its connections but answers nothing, like a Redis that hangs.
    fn freeze(&self) {
        if let Some(child) = &self.child {
            // SAFETY: signals the child this struct owns, by its pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGSTOP);
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[actix_rt::test]
async fn a_redis_outage_keeps_local_users_served_and_the_cluster_converges_when_it_returns() {
    if !redis_answers() {
        return;
    }
    let mut redis = OwnRedis::start();
    let Some(cluster) = Cluster::new(&redis.url()) else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    let cat = register(&n1, "cat").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    befriend(&n1, ("amy", &amy), &n1, ("cat", &cat)).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    let (mut cat_ws, _) = socket(&n1, &cat).await;
    // Dan (no friends) has a session on each node and a socket of the second on n2.
    let dan = register(&n1, "dan").await;
    let dan_elsewhere = login(&n2, "dan", "password-dan").await;
    let (mut dan_on_n2, _) = socket(&n2, &dan_elsewhere).await;
    presence_of(&mut amy_ws, "ben", "online").await;
    presence_of(&mut amy_ws, "cat", "online").await;
    eventually(Duration::from_secs(5), "n1 ready", || async {
        get(&n1, "/readyz", None).await.0 == 200
    })
    .await;

    redis.kill();
    eventually(Duration::from_secs(5), "n1 reports not ready", || async {
        let (status, body) = get(&n1, "/readyz", None).await;
        status == 503 && body["error"] == "unavailable"
    })
    .await;
    let (_, body) = get(&n1, "/readyz", None).await;
    assert!(
        body["message"].as_str().unwrap_or("").contains("redis"),
        "{body}"
    );
    // Users of one node are still served by it.
    cat_ws
        .ok(json!({"type": "presence.set", "status": "away"}))
        .await;
    presence_of(&mut amy_ws, "cat", "away").await;
    // A change on the other node is lost for now; the REST API answers without hanging.
    ben_ws
        .ok(json!({"type": "presence.set", "status": "dnd"}))
        .await;
    let asked = Instant::now();
    let (status, _) = get(&n1, "/api/v1/friends", Some(&amy)).await;
    assert_eq!(status, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "GET /friends hung"
    );
    // Dan logs out everywhere on n1 while no node can tell another.
    let (status, _) = post(&n1, "/api/v1/auth/logout-all", Some(&dan), json!({})).await;
    assert_eq!(status, 204);
    // Longer than the node ttl: nobody is taken offline by the outage itself.
    actix_rt::time::sleep(NODE_TTL + Duration::from_secs(1)).await;

    redis.resume();
    eventually(
        Duration::from_secs(10),
        "both nodes ready again",
        || async {
            get(&n1, "/readyz", None).await.0 == 200 && get(&n2, "/readyz", None).await.0 == 200
        },
    )
    .await;
    // Converged: the revocation made during the outage closes dan's socket on n2, the change
    // made during the outage arrives, and the directory holds both.
    expect_revoked(&mut dan_on_n2).await;
    presence_of(&mut amy_ws, "ben", "dnd").await;
    eventually(Duration::from_secs(5), "n2 lists amy online", || async {
        listed_presence(&n2, &ben, "amy").await == "online"
    })
    .await;
    eventually(Duration::from_secs(5), "n2 lists cat away", || async {
        let (_, body) = get(&n2, "/api/v1/friends", Some(&amy)).await;
        body["friends"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["username"] == "cat" && f["presence"] == "away")
        })
    })
    .await;
    ben_ws
        .ok(json!({"type": "presence.set", "status": "online"}))
        .await;
    presence_of(&mut amy_ws, "ben", "online").await;
    // Nobody was shown offline at any point.
    amy_ws
        .expect_none(Duration::from_millis(300), |f| {
            f["type"] == "presence" && f["status"] == "offline"
        })
        .await;
}

#[actix_rt::test]
async fn a_session_revoked_while_a_node_was_not_listening_is_closed_and_refused_when_it_resyncs() {
    if !redis_answers() {
        return;
    }
    let redis = OwnRedis::start();
    let Some(cluster) = Cluster::new(&redis.url()) else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let elsewhere = login(&n2, "amy", "password-amy").await;
    let (mut on_n2, _) = socket(&n2, &elsewhere).await;
    // The session's relay credential, for n2's relay.
    let (status, body) = get(&n2, "/api/v1/ice-servers", Some(&elsewhere)).await;
    assert_eq!(status, 200, "{body}");
    let (server, name, credential) = turn_of(&body["ice_servers"]);
    assert_eq!(allocate_code(&server, &name, &credential).await, 0);

    // Every node's pub/sub connection drops; each reconnects half a second later. The
    // logout's `revoke` message is published meanwhile, heard by nobody: n2 learns of it from
    // the session's marker when it resyncs.
    let mut conn = redis::Client::open(redis.url().as_str())
        .and_then(|c| c.get_connection())
        .expect("redis");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut conn)
        .expect("CLIENT KILL");
    assert!(killed >= 2, "both nodes' pub/sub connections: {killed}");
    let (status, _) = post(&n1, "/api/v1/auth/logout-all", Some(&amy), json!({})).await;
    assert_eq!(status, 204);
    expect_revoked(&mut on_n2).await;
    // n2's relay refuses its credential too.
    assert_eq!(allocate_code(&server, &name, &credential).await, 401);
    let markers: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:revoked:*", cluster.prefix))
        .query(&mut conn)
        .expect("KEYS");
    assert_eq!(
        markers.len(),
        2,
        "one marker per revoked session: {markers:?}"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(&markers[0])
        .query(&mut conn)
        .expect("TTL");
    assert!(
        (86_000..=86_400).contains(&ttl),
        "a marker lasts a day: {ttl}"
    );
}

#[actix_rt::test]
async fn a_cluster_node_on_sqlite_is_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("sb.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--relay", "false"])
        .args(["--database-url", &db, "--redis-url", SHARED_REDIS])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("--redis-url needs a Postgres database"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("sb.db").exists(),
        "no database file is made"
    );
}

#[actix_rt::test]
async fn sessions_revoked_on_one_node_close_their_sockets_on_the_others() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2, n3] = cluster.nodes().await;
    let first = register(&n1, "amy").await;
    let second = login(&n2, "amy", "password-amy").await;
    let (mut on_n2, _) = socket(&n2, &second).await;
    let (mut on_n3, _) = socket(&n3, &second).await;
    let (mut own_on_n1, _) = socket(&n1, &first).await;

    // Logging out everywhere on n1 closes the sockets on n2 and n3 as n1 closes its own.
    let (status, _) = post(&n1, "/api/v1/auth/logout-all", Some(&first), json!({})).await;
    assert_eq!(status, 204);
    expect_revoked(&mut on_n2).await;
    assert_eq!(on_n3.expect_close().await.code, 4001);
    assert_eq!(own_on_n1.expect_close().await.code, 4001);

    // A password change on n1 closes every other session's sockets on n2.
    let other = login(&n2, "amy", "password-amy").await;
    let kept = login(&n1, "amy", "password-amy").await;
    let (mut other_ws, _) = socket(&n2, &other).await;
    let (mut kept_ws, _) = socket(&n2, &kept).await;
    let changed = send(
        &n1,
        awc::http::Method::PUT,
        "/api/v1/me/password",
        &kept,
        json!({"old_password": "password-amy", "new_password": "a new password"}),
    )
    .await;
    assert_eq!(changed, 204);
    assert_eq!(other_ws.expect_close().await.code, 4001);
    kept_ws.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(
        kept_ws.recv().await["type"],
        "pong",
        "the session kept stays"
    );

    // Deleting the account on n1 closes its last sockets on n2.
    let deleted = send(
        &n1,
        awc::http::Method::DELETE,
        "/api/v1/me",
        &kept,
        json!({"password": "a new password"}),
    )
    .await;
    assert_eq!(deleted, 204);
    assert_eq!(kept_ws.expect_close().await.code, 4001);
}

#[actix_rt::test]
async fn a_block_between_users_on_different_nodes_stops_presence_both_ways() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let ([n1, n2], amy, ben) = friends_on_two(&cluster, &[]).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    presence_of(&mut amy_ws, "ben", "online").await;

    let blocked = send(
        &n1,
        awc::http::Method::PUT,
        "/api/v1/blocks/ben",
        &amy,
        json!({}),
    )
    .await;
    assert_eq!(blocked, 204);
    // Nothing closes: both stay connected.
    ben_ws
        .ok(json!({"type": "presence.set", "status": "away"}))
        .await;
    amy_ws
        .ok(json!({"type": "presence.set", "status": "dnd"}))
        .await;
    let quiet = Duration::from_millis(1500);
    amy_ws
        .expect_none(quiet, |f| f["type"] == "presence" && f["username"] == "ben")
        .await;
    ben_ws
        .expect_none(quiet, |f| f["type"] == "presence" && f["username"] == "amy")
        .await;
    ben_ws.close().await;
    amy_ws
        .expect_none(quiet, |f| f["type"] == "presence" && f["username"] == "ben")
        .await;
}

#[actix_rt::test]
async fn a_node_stopped_gracefully_takes_its_users_offline_at_once_not_after_the_ttl() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    // A long ttl and grace: offline within seconds can only come from the clean leave.
    let ttl = Duration::from_secs(30);
    let n1 = cluster.node_timed(ttl, "10s", &[]).await;
    let mut n2 = cluster
        .node_timed(ttl, "10s", &["--node-id", "leaving"])
        .await;
    let n3 = cluster.node_timed(ttl, "10s", &[]).await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    let cat = register(&n3, "cat").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    befriend(&n1, ("amy", &amy), &n3, ("cat", &cat)).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (_ben_ws, _) = socket(&n2, &ben).await;
    // Cat has a device on the leaving node and one that stays.
    let (_cat_leaving, _) = socket(&n2, &cat).await;
    let (_cat_ws, _) = socket(&n3, &cat).await;
    presence_of(&mut amy_ws, "ben", "online").await;
    presence_of(&mut amy_ws, "cat", "online").await;

    let stopped = Instant::now();
    n2.terminate();
    assert!(n2.wait_exit(Duration::from_secs(10)).is_some(), "n2 exits");
    presence_of(&mut amy_ws, "ben", "offline").await;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(8), "ben offline after {took:?}");
    assert_eq!(listed_presence(&n1, &amy, "ben").await, "offline");
    amy_ws
        .expect_none(Duration::from_millis(1000), |f| {
            f["type"] == "presence" && f["username"] == "cat"
        })
        .await;
    assert_eq!(listed_presence(&n1, &amy, "cat").await, "online");

    // Nothing of the node is left in Redis.
    let mut conn = redis::Client::open(SHARED_REDIS)
        .and_then(|c| c.get_connection())
        .expect("redis");
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}:nodes", cluster.prefix))
        .query(&mut conn)
        .expect("nodes");
    assert!(!nodes.contains(&"leaving".to_owned()), "{nodes:?}");
    let registered: bool = redis::cmd("EXISTS")
        .arg(format!("{}:node:leaving", cluster.prefix))
        .query(&mut conn)
        .expect("exists");
    assert!(!registered);
    let entries: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:presence:*", cluster.prefix))
        .query(&mut conn)
        .expect("keys");
    assert!(!entries.is_empty(), "amy and cat are online");
    for entry in entries {
        let held: bool = redis::cmd("HEXISTS")
            .arg(&entry)
            .arg("leaving")
            .query(&mut conn)
            .expect("hexists");
        assert!(!held, "{entry} still has the stopped node's field");
    }
}

/// The error code of an allocate with these credentials on a fresh 5-tuple (0: allocated).
async fn allocate_code(server: &str, username: &str, credential: &str) -> u16 {
    let mut client = common::stun::StunClient::new(server, username, credential).await;
    client.challenge().await;
    client.allocate().await.code()
}

#[actix_rt::test]
async fn a_session_revoked_on_one_node_loses_its_relay_credentials_on_another() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    // The credential is for n1's relay; amy has no socket anywhere.
    let (status, body) = get(&n1, "/api/v1/ice-servers", Some(&amy)).await;
    assert_eq!(status, 200, "{body}");
    let (server, name, credential) = turn_of(&body["ice_servers"]);
    assert_eq!(allocate_code(&server, &name, &credential).await, 0);

    let (status, _) = post(&n2, "/api/v1/auth/logout", Some(&amy), json!({})).await;
    assert_eq!(status, 204);
    eventually(
        Duration::from_secs(2),
        "n1's relay refuses a session logged out on n2",
        || {
            let (server, name, credential) = (server.clone(), name.clone(), credential.clone());
            async move { allocate_code(&server, &name, &credential).await == 401 }
        },
    )
    .await;
}

#[actix_rt::test]
async fn a_node_stops_within_seconds_while_redis_hangs() {
    if !redis_answers() {
        return;
    }
    let mut redis = OwnRedis::start();
    let Some(cluster) = Cluster::new(&redis.url()) else {
        return;
    };
    let mut n1 = cluster.node().await;
    let amy = register(&n1, "amy").await;
    let (_amy_ws, _) = socket(&n1, &amy).await;
    redis.freeze();
    let stopped = Instant::now();
    n1.terminate();
    let exited = n1.wait_exit(Duration::from_secs(15));
    let took = stopped.elapsed();
    assert!(exited.is_some(), "still running {took:?} after SIGTERM");
    // Leaving gives up after 3 s; the rest of the shutdown is quick.
    assert!(took < Duration::from_secs(7), "the shutdown took {took:?}");
    // Gone before the cluster's clean-up, which would wait on a frozen Redis forever.
    redis.kill();
}

// ---- calls across nodes ---------------------------------------------------------------------

/// `caller` invites `callee`: the call id, once `rung` (every socket of the callee) rings.
/// Three nodes: amy on the first, ben on the second, cat on the third; amy and cat are both
/// ben's friends.
/// Two nodes started with `extra`, and amy on the first and ben on the second, friends.
async fn friends_on_two(cluster: &Cluster, extra: &[&str]) -> ([BrokerProcess; 2], String, String) {
    let n1 = cluster.node_with(extra).await;
    let n2 = cluster.node_with(extra).await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    ([n1, n2], amy, ben)
}

struct Trio {
    nodes: [BrokerProcess; 3],
    amy: String,
    ben: String,
    cat: String,
}

async fn trio(cluster: &Cluster) -> Trio {
    let nodes = cluster.nodes().await;
    let [n1, n2, n3] = &nodes;
    let amy = register(n1, "amy").await;
    let ben = register(n2, "ben").await;
    let cat = register(n3, "cat").await;
    befriend(n1, ("amy", &amy), n2, ("ben", &ben)).await;
    befriend(n3, ("cat", &cat), n2, ("ben", &ben)).await;
    Trio {
        nodes,
        amy,
        ben,
        cat,
    }
}

impl Trio {
    /// A socket for each of amy, ben and cat, on their own nodes (n1, n2, n3).
    async fn at_home(&self) -> (WsClient, WsClient, WsClient) {
        let [n1, n2, n3] = &self.nodes;
        let (amy, _) = socket(n1, &self.amy).await;
        let (ben, _) = socket(n2, &self.ben).await;
        let (cat, _) = socket(n3, &self.cat).await;
        (amy, ben, cat)
    }
}

/// `ws` is closed as its session was revoked (4001).
async fn expect_revoked(ws: &mut WsClient) {
    let closed = ws.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4001, "session revoked")
    );
}

/// `caller` invites `callee`, who cannot be rung: the invite is acknowledged and the call
/// ends at once with `reason`. Answers the call's id.
async fn invite_ends(caller: &mut WsClient, callee: &str, reason: &str) -> String {
    let invited = caller
        .ok(json!({"type": "call.invite", "to": callee, "media": "audio"}))
        .await;
    let id = invited["call_id"].as_str().expect("call_id").to_owned();
    caller.expect_ended(&id, reason).await;
    id
}

async fn invite(caller: &mut WsClient, callee: &str, rung: &mut [&mut WsClient]) -> String {
    let invited = caller
        .ok(json!({"type": "call.invite", "to": callee, "media": "video"}))
        .await;
    let id = invited["call_id"].as_str().expect("call_id").to_owned();
    for ws in rung.iter_mut() {
        let incoming = ws.recv_type("call.incoming").await;
        assert_eq!(incoming["call_id"], id.as_str(), "{incoming}");
    }
    caller.recv_type("call.ringing").await;
    id
}

/// amy on `a` and ben on `b`, friends, in a call amy placed and ben answered.
struct Across {
    amy: String,
    ben: String,
    amy_ws: WsClient,
    ben_ws: WsClient,
    id: String,
    /// ben's ack of `call.accept`, and amy's `call.accepted`.
    ack: Value,
    accepted: Value,
}

async fn answered_across(a: &BrokerProcess, b: &BrokerProcess) -> Across {
    let amy = register(a, "amy").await;
    let ben = register(b, "ben").await;
    befriend(a, ("amy", &amy), b, ("ben", &ben)).await;
    let (mut amy_ws, _) = socket(a, &amy).await;
    let (mut ben_ws, _) = socket(b, &ben).await;
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    let ack = ben_ws
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    let accepted = amy_ws.recv_type("call.accepted").await;
    Across {
        amy,
        ben,
        amy_ws,
        ben_ws,
        id,
        ack,
        accepted,
    }
}

#[actix_rt::test]
async fn a_call_rings_devices_on_other_nodes_and_signals_flow_between_nodes() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let Trio {
        nodes: [n1, n2, n3],
        amy,
        ben,
        cat,
    } = trio(&cluster).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_phone, _) = socket(&n2, &ben).await;
    let (mut ben_laptop, _) = socket(&n3, &ben).await;
    let (mut cat_ws, welcome) = socket(&n1, &cat).await;
    assert_eq!(status_in_welcome(&welcome, "ben"), "online", "{welcome}");

    // Both of ben's devices ring, each on its own node; the laptop answers.
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_phone, &mut ben_laptop]).await;
    let accepted = ben_laptop
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    assert!(
        accepted["ice_servers"].is_array(),
        "the callee's ack carries its call credential: {accepted}"
    );
    let told = amy_ws.recv_type("call.accepted").await;
    assert_eq!(
        (&told["peer"], &told["offerer"]),
        (&json!("ben"), &json!(true))
    );
    assert_eq!(
        ben_phone.recv_type("call.answered_elsewhere").await["call_id"],
        id.as_str()
    );
    // Both are busy for a friend on a third node.
    presence_of(&mut cat_ws, "ben", "busy").await;

    // Signals both ways, in order.
    amy_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": SDP}))
        .await;
    let offer = ben_laptop.recv_type("signal").await;
    assert_eq!(
        (&offer["from"], &offer["kind"]),
        (&json!("amy"), &json!("offer"))
    );
    assert_eq!(offer["sdp"], SDP);
    ben_laptop
        .ok(json!({"type": "signal", "call_id": id, "kind": "answer", "sdp": SDP}))
        .await;
    assert_eq!(amy_ws.recv_type("signal").await["kind"], "answer");
    for n in 0..30 {
        let candidate = format!("candidate:{n} 1 udp 1 127.0.0.1 {} typ host", 40_000 + n);
        amy_ws
            .send(json!({"type": "signal", "call_id": id, "kind": "candidate",
                         "candidate": {"candidate": candidate, "sdpMid": "0"}}))
            .await;
    }
    for n in 0..30 {
        let got = ben_laptop.recv_type("signal").await;
        let expected = format!("candidate:{n} 1 udp 1 127.0.0.1 {} typ host", 40_000 + n);
        assert_eq!(got["candidate"]["candidate"], expected.as_str(), "in order");
    }
    // The phone that did not answer gets no signal, and cannot act on the call.
    let refused = ben_phone
        .request(json!({"type": "signal", "call_id": id, "kind": "answer", "sdp": SDP}))
        .await;
    assert_eq!(refused["type"], "error", "{refused}");

    // The callee hangs up on its node; the call ends for both and is in the history.
    ben_laptop
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    amy_ws.expect_ended(&id, "completed").await;
    presence_of(&mut cat_ws, "ben", "online").await;
    let (status, history) = get(&n3, "/api/v1/calls", Some(&ben)).await;
    assert_eq!(status, 200, "{history}");
    let listed = &history["calls"][0];
    assert_eq!(
        (&listed["id"], &listed["outcome"]),
        (&json!(id), &json!("completed")),
        "{history}"
    );
}

#[actix_rt::test]
async fn reject_cancel_no_answer_busy_and_glare_work_across_nodes() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let ring = ["--ring-timeout", "2s"];
    let n1 = cluster.node_with(&ring).await;
    let n2 = cluster.node_with(&ring).await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    let cat = register(&n2, "cat").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    befriend(&n2, ("cat", &cat), &n2, ("ben", &ben)).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;

    // Rejected on the callee's node.
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    ben_ws
        .ok(json!({"type": "call.reject", "call_id": id}))
        .await;
    amy_ws.expect_ended(&id, "declined").await;
    ben_ws.expect_ended(&id, "declined").await;

    // Cancelled on the caller's.
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    ben_ws.expect_ended(&id, "cancelled").await;
    amy_ws.expect_ended(&id, "cancelled").await;

    // Not answered.
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    amy_ws.expect_ended(&id, "no_answer").await;
    ben_ws.expect_ended(&id, "no_answer").await;

    // The callee invites the caller while being rung: one call, answered (glare).
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    let merged = ben_ws
        .ok(json!({"type": "call.invite", "to": "amy", "media": "video"}))
        .await;
    assert_eq!(
        (&merged["call_id"], &merged["merged"]),
        (&json!(id), &json!(true)),
        "{merged}"
    );
    amy_ws.recv_type("call.accepted").await;
    assert_eq!(
        ben_ws.recv_type("call.accepted").await["call_id"],
        id.as_str()
    );
    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    ben_ws.expect_ended(&id, "completed").await;
    amy_ws.expect_ended(&id, "completed").await;

    // In a call on one node, busy for an invite from another: a user is in one call at most.
    let (mut cat_ws, _) = socket(&n2, &cat).await;
    let local = common::ws::answered_call(&mut cat_ws, &mut ben_ws, "ben").await;
    presence_of(&mut amy_ws, "ben", "busy").await;
    invite_ends(&mut amy_ws, "ben", "busy").await;
    cat_ws
        .ok(json!({"type": "call.hangup", "call_id": local}))
        .await;
    presence_of(&mut amy_ws, "ben", "online").await;

    // On do-not-disturb on another node: busy, and nothing rings there.
    ben_ws
        .ok(json!({"type": "presence.set", "status": "dnd"}))
        .await;
    presence_of(&mut amy_ws, "ben", "dnd").await;
    invite_ends(&mut amy_ws, "ben", "busy").await;
    ben_ws
        .expect_none(Duration::from_millis(300), |f| f["type"] == "call.incoming")
        .await;

    // Connected nowhere (and no push subscription): unavailable at once, and the missed call
    // is in the callee's history, read on the callee's node.
    drop(ben_ws);
    presence_of(&mut amy_ws, "ben", "offline").await;
    let gone_id = invite_ends(&mut amy_ws, "ben", "unavailable").await;
    eventually(
        Duration::from_secs(5),
        "the unavailable call in ben's history, read on his node",
        || async {
            let (_, history) = get(&n2, "/api/v1/calls", Some(&ben)).await;
            history["calls"][0]["id"] == gone_id.as_str()
                && history["calls"][0]["outcome"] == "unavailable"
        },
    )
    .await;
}

#[actix_rt::test]
async fn a_call_whose_node_is_killed_ends_for_the_side_on_another_node() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let Across {
        ben,
        amy_ws: _amy_ws,
        mut ben_ws,
        id,
        ..
    } = answered_across(&n1, &n2).await;

    // The node holding the call dies: ben hears that it ended within the node ttl, and is
    // free to call again.
    let killed = Instant::now();
    n1.kill();
    ben_ws.expect_ended(&id, "connection_lost").await;
    assert!(killed.elapsed() < NODE_TTL * 2, "{:?}", killed.elapsed());
    // Its end is recorded by the node that saw it go: never left active in the history.
    eventually(
        Duration::from_secs(5),
        "the call recorded as connection_lost",
        || async {
            let (_, history) = get(&n2, "/api/v1/calls", Some(&ben)).await;
            history["calls"][0]["outcome"] == "connection_lost"
        },
    )
    .await;
    let cat = register(&n2, "cat").await;
    befriend(&n2, ("cat", &cat), &n2, ("ben", &ben)).await;
    let (mut cat_ws, _) = socket(&n2, &cat).await;
    let again = ben_ws
        .ok(json!({"type": "call.invite", "to": "cat", "media": "audio"}))
        .await;
    assert!(again["call_id"].is_string(), "{again}");
    cat_ws.recv_type("call.incoming").await;
}

#[actix_rt::test]
async fn a_participant_resumes_a_call_on_another_node_after_a_drop() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2, n3] = cluster.nodes().await;
    let Across {
        amy,
        ben,
        mut amy_ws,
        ben_ws,
        id,
        ..
    } = answered_across(&n1, &n2).await;

    // The callee's socket drops; it reconnects through the load balancer to a third node,
    // which lists the call in `welcome`, and resumes it there.
    ben_ws.close().await;
    let (mut ben_ws, welcome) = socket(&n3, &ben).await;
    let listed = &welcome["calls"][0];
    assert_eq!(
        (&listed["call_id"], &listed["state"], &listed["peer"]),
        (&json!(id), &json!("active"), &json!("amy")),
        "{welcome}"
    );
    ben_ws
        .ok(json!({"type": "call.resume", "call_id": id}))
        .await;
    let accepted = ben_ws.recv_type("call.accepted").await;
    assert_eq!(accepted["offerer"], true, "the side that resumed offers");
    assert_eq!(
        amy_ws.recv_type("call.resumed").await["call_id"],
        id.as_str()
    );
    ben_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": SDP}))
        .await;
    assert_eq!(amy_ws.recv_type("signal").await["kind"], "offer");
    amy_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "answer", "sdp": SDP}))
        .await;
    assert_eq!(ben_ws.recv_type("signal").await["kind"], "answer");

    // Now the caller drops from the node that holds the call and resumes on another.
    amy_ws.close().await;
    let (mut amy_ws, welcome) = socket(&n2, &amy).await;
    assert_eq!(welcome["calls"][0]["state"], "active", "{welcome}");
    amy_ws
        .ok(json!({"type": "call.resume", "call_id": id}))
        .await;
    amy_ws.recv_type("call.accepted").await;
    assert_eq!(
        ben_ws.recv_type("call.resumed").await["call_id"],
        id.as_str()
    );
    amy_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": SDP}))
        .await;
    assert_eq!(ben_ws.recv_type("signal").await["kind"], "offer");
    ben_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    amy_ws.expect_ended(&id, "completed").await;
}

#[actix_rt::test]
async fn a_callee_rung_from_one_node_is_busy_for_an_invite_from_another() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let trio = trio(&cluster).await;
    let (mut amy_ws, mut ben_ws, mut cat_ws) = trio.at_home().await;
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;

    let second = invite_ends(&mut cat_ws, "ben", "busy").await;
    ben_ws
        .expect_none(Duration::from_millis(500), |f| {
            f["call_id"] == second.as_str()
        })
        .await;
    ben_ws
        .ok(json!({"type": "call.reject", "call_id": id}))
        .await;
    amy_ws.expect_ended(&id, "declined").await;
}

/// `name` reconnects to `node` after its node drained and resumes call `id` there; `peer`
/// (when connected) is told. The new socket.
async fn resume_on(
    node: &BrokerProcess,
    token: &str,
    id: &str,
    peer: Option<&mut WsClient>,
) -> WsClient {
    let (mut ws, welcome) = socket(node, token).await;
    let listed = &welcome["calls"][0];
    assert_eq!(
        (&listed["call_id"], &listed["state"]),
        (&json!(id), &json!("active")),
        "{welcome}"
    );
    ws.ok(json!({"type": "call.resume", "call_id": id})).await;
    assert_eq!(ws.recv_type("call.accepted").await["offerer"], true);
    if let Some(peer) = peer {
        assert_eq!(peer.recv_type("call.resumed").await["call_id"], id);
    }
    ws
}

/// An offer from `from` reaches `to`, and an answer comes back.
async fn signals_flow(from: &mut WsClient, to: &mut WsClient, id: &str) {
    from.ok(json!({"type": "signal", "call_id": id, "kind": "offer", "sdp": SDP}))
        .await;
    assert_eq!(to.recv_type("signal").await["kind"], "offer");
    to.ok(json!({"type": "signal", "call_id": id, "kind": "answer", "sdp": SDP}))
        .await;
    assert_eq!(from.recv_type("signal").await["kind"], "answer");
}

/// SIGTERM on `node`: every socket in `on_it` is closed with 1012, and it exits.
async fn drain(mut node: BrokerProcess, on_it: Vec<WsClient>) {
    node.terminate();
    for mut ws in on_it {
        let closed = ws.expect_close().await;
        assert_eq!(closed.code, 1012, "{}", closed.reason);
    }
    assert!(node.wait_exit(Duration::from_secs(10)).is_some(), "exits");
}

#[actix_rt::test]
async fn a_rolling_restart_of_every_node_drops_no_call() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2, n3] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    let cat = register(&n3, "cat").await;
    let dan = register(&n3, "dan").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    befriend(&n3, ("cat", &cat), &n3, ("dan", &dan)).await;
    // One call across two nodes, one with both sides on one node.
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    let (mut cat_ws, _) = socket(&n3, &cat).await;
    let (mut dan_ws, _) = socket(&n3, &dan).await;
    let across = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    ben_ws
        .ok(json!({"type": "call.accept", "call_id": across}))
        .await;
    amy_ws.recv_type("call.accepted").await;
    let local = common::ws::answered_call(&mut cat_ws, &mut dan_ws, "dan").await;

    // n1 (holding the first call and amy) restarts: amy comes back on n3.
    drain(n1, vec![amy_ws]).await;
    let n1 = cluster.node().await;
    let mut amy_ws = resume_on(&n3, &amy, &across, Some(&mut ben_ws)).await;
    signals_flow(&mut amy_ws, &mut ben_ws, &across).await;

    // n2 (now holding it, with ben) restarts: ben comes back on the new n1.
    drain(n2, vec![ben_ws]).await;
    let n2 = cluster.node().await;
    let mut ben_ws = resume_on(&n1, &ben, &across, Some(&mut amy_ws)).await;
    signals_flow(&mut ben_ws, &mut amy_ws, &across).await;

    // n3 restarts with amy and both sides of the other call on it.
    // Give the census a moment to see the new nodes alive.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    drain(n3, vec![amy_ws, cat_ws, dan_ws]).await;
    let mut amy_ws = resume_on(&n2, &amy, &across, Some(&mut ben_ws)).await;
    let mut cat_ws = resume_on(&n1, &cat, &local, None).await;
    let mut dan_ws = resume_on(&n2, &dan, &local, Some(&mut cat_ws)).await;
    signals_flow(&mut amy_ws, &mut ben_ws, &across).await;
    signals_flow(&mut cat_ws, &mut dan_ws, &local).await;

    // Both calls are still the same calls, and end as completed.
    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": across}))
        .await;
    ben_ws.expect_ended(&across, "completed").await;
    dan_ws
        .ok(json!({"type": "call.hangup", "call_id": local}))
        .await;
    cat_ws.expect_ended(&local, "completed").await;
    for (token, id) in [(&ben, &across), (&cat, &local)] {
        eventually(
            Duration::from_secs(5),
            "the call recorded as completed",
            || async {
                let (_, history) = get(&n1, "/api/v1/calls", Some(token)).await;
                history["calls"][0]["id"] == id.as_str()
                    && history["calls"][0]["outcome"] == "completed"
            },
        )
        .await;
    }
}

#[actix_rt::test]
async fn a_participant_whose_node_is_killed_resumes_on_another_within_the_grace() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2, n3] = cluster.nodes().await;
    let Across {
        ben,
        mut amy_ws,
        ben_ws,
        id,
        ..
    } = answered_across(&n1, &n2).await;

    // The callee's node dies with its socket; the call's owner sees the device go when the
    // node is found lost, and the reconnect grace (10 s) covers the callee's return.
    n2.kill();
    drop(ben_ws);
    let mut ben_ws = resume_on(&n3, &ben, &id, Some(&mut amy_ws)).await;
    signals_flow(&mut amy_ws, &mut ben_ws, &id).await;
    // Past the time the owner takes to find the node lost, the call goes on.
    amy_ws
        .expect_none(NODE_TTL * 2, |f| f["type"] == "call.ended")
        .await;
    signals_flow(&mut ben_ws, &mut amy_ws, &id).await;
    ben_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    amy_ws.expect_ended(&id, "completed").await;
}

#[actix_rt::test]
async fn the_device_limit_counts_a_users_devices_on_every_node() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let limit = ["--max-devices-per-user", "2"];
    let n1 = cluster.node_with(&limit).await;
    let n2 = cluster.node_with(&limit).await;
    let n3 = cluster.node_with(&limit).await;
    let amy = register(&n1, "amy").await;
    let (_phone, _) = socket(&n1, &amy).await;
    let (laptop, _) = socket(&n2, &amy).await;

    let mut third = WsClient::connect(&n3.http.to_string()).await;
    third
        .send(json!({"type": "auth", "id": 1, "token": amy}))
        .await;
    let refused = third.recv().await;
    assert_eq!(refused["error"], "too_many_devices", "{refused}");
    assert_eq!(third.expect_close().await.code, 4009);

    // Closing one anywhere makes room on any node.
    laptop.close().await;
    eventually(
        Duration::from_secs(5),
        "room for a device on n3",
        || async {
            let mut again = WsClient::connect(&n3.http.to_string()).await;
            again
                .send(json!({"type": "auth", "id": 1, "token": amy}))
                .await;
            again.recv().await["type"] == "welcome"
        },
    )
    .await;
}

#[actix_rt::test]
async fn each_side_of_a_call_across_nodes_gets_a_call_credential_its_relay_honours() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let Across {
        mut amy_ws,
        mut ben_ws,
        id,
        ack,
        accepted,
        ..
    } = answered_across(&n1, &n2).await;

    // The caller's credential names the call on its node's relay, the callee's on its own.
    let amy_turn = turn_of(&accepted["ice_servers"]);
    let ben_turn = turn_of(&ack["ice_servers"]);
    assert_ne!(
        amy_turn.0, ben_turn.0,
        "each side is given its own node's relay"
    );
    for (_, name, _) in [&amy_turn, &ben_turn] {
        assert!(
            name.ends_with(&format!(":{id}")),
            "a call credential: {name}"
        );
    }
    for (server, name, credential) in [&amy_turn, &ben_turn] {
        assert_eq!(allocate_code(server, name, credential).await, 0, "{server}");
    }

    // Once the call is over, neither relay honours them.
    ben_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    amy_ws.recv_type("call.ended").await;
    for (server, name, credential) in [amy_turn, ben_turn] {
        eventually(
            Duration::from_secs(2),
            "the call credential refused",
            || {
                let (server, name, credential) = (server.clone(), name.clone(), credential.clone());
                async move { allocate_code(&server, &name, &credential).await != 0 }
            },
        )
        .await;
    }
}

#[actix_rt::test]
async fn invites_that_cross_between_nodes_become_one_call() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let [n1, n2] = cluster.nodes().await;
    let amy = register(&n1, "amy").await;
    let ben = register(&n2, "ben").await;
    befriend(&n1, ("amy", &amy), &n2, ("ben", &ben)).await;
    for round in 0..5 {
        let (mut amy_ws, _) = socket(&n1, &amy).await;
        let (mut ben_ws, _) = socket(&n2, &ben).await;
        // Both invite at once, neither waiting for the other's ring.
        let invite =
            |to: &str| json!({"type": "call.invite", "id": "x", "to": to, "media": "audio"});
        amy_ws.send(invite("ben")).await;
        ben_ws.send(invite("amy")).await;
        let is_ack = |f: &Value| f["ref"] == "x";
        let (amy_ack, ben_ack) = (
            amy_ws.recv_where(is_ack).await,
            ben_ws.recv_where(is_ack).await,
        );
        assert_eq!(amy_ack["type"], "ack", "{amy_ack}");
        assert_eq!(ben_ack["type"], "ack", "{ben_ack}");
        assert_eq!(
            amy_ack["call_id"], ben_ack["call_id"],
            "one call, round {round}"
        );
        let merged = [&amy_ack, &ben_ack]
            .iter()
            .filter(|a| a["merged"] == true)
            .count();
        assert_eq!(merged, 1, "{amy_ack} {ben_ack}");
        let id = amy_ack["call_id"].as_str().expect("call_id").to_owned();
        amy_ws.recv_type("call.accepted").await;
        ben_ws.recv_type("call.accepted").await;
        amy_ws
            .ok(json!({"type": "call.hangup", "call_id": id}))
            .await;
        ben_ws.expect_ended(&id, "completed").await;
        amy_ws.close().await;
        ben_ws.close().await;
    }
}

#[actix_rt::test]
async fn two_invites_to_one_user_from_two_nodes_ring_once() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let trio = trio(&cluster).await;
    let (mut amy_ws, mut ben_ws, mut cat_ws) = trio.at_home().await;
    let invite = json!({"type": "call.invite", "id": "x", "to": "ben", "media": "audio"});
    amy_ws.send(invite.clone()).await;
    cat_ws.send(invite).await;
    let is_ack = |f: &Value| f["ref"] == "x";
    let amy_id = amy_ws.recv_where(is_ack).await["call_id"].clone();
    let cat_id = cat_ws.recv_where(is_ack).await["call_id"].clone();
    // Exactly one rings ben; the other is busy at once.
    let incoming = ben_ws.recv_type("call.incoming").await;
    let (ringing, busy_ws, busy_id) = if incoming["call_id"] == amy_id {
        (amy_id, &mut cat_ws, cat_id)
    } else {
        (cat_id, &mut amy_ws, amy_id)
    };
    assert_eq!(incoming["call_id"], ringing);
    busy_ws
        .expect_ended(busy_id.as_str().expect("call_id"), "busy")
        .await;
    ben_ws
        .expect_none(Duration::from_millis(500), |f| f["type"] == "call.incoming")
        .await;
}

#[actix_rt::test]
async fn a_device_that_connects_as_its_user_is_invited_rings() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let Trio {
        nodes: [n1, n2, n3],
        amy,
        ben,
        ..
    } = trio(&cluster).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    // Round after round, a second device of ben joins a third node just as amy's invite is
    // placed: at the same moment, or 1 or 2 ms before (where the invite's directory read and
    // the device's lookup meet). Whichever comes first, the device rings.
    for round in 0..42u64 {
        let invite = json!({"type": "call.invite", "to": "ben", "media": "audio"});
        let invite_lag = Duration::from_millis(round % 3);
        let (invited, (mut joined, welcome)) = futures_util::join!(
            async {
                actix_rt::time::sleep(invite_lag).await;
                amy_ws.ok(invite).await
            },
            socket(&n3, &ben)
        );
        let id = invited["call_id"].as_str().expect("call_id").to_owned();
        let listed = welcome["calls"]
            .as_array()
            .and_then(|calls| calls.iter().find(|c| c["call_id"] == id.as_str()));
        if let Some(call) = listed {
            assert_eq!(call["state"], "ringing", "round {round}: {welcome}");
        } else {
            let incoming = joined
                .recv_where(|f| f["type"] == "call.incoming" && f["call_id"] == id.as_str())
                .await;
            assert_eq!(incoming["from"], "amy", "round {round}: {incoming}");
        }
        ben_ws.recv_type("call.incoming").await;
        amy_ws
            .ok(json!({"type": "call.cancel", "call_id": id}))
            .await;
        ben_ws.expect_ended(&id, "cancelled").await;
        joined.expect_ended(&id, "cancelled").await;
        amy_ws.expect_ended(&id, "cancelled").await;
        joined.close().await;
    }
}

#[actix_rt::test]
async fn a_ringing_call_handed_over_by_a_draining_node_keeps_its_ring_timeout() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let ring = ["--ring-timeout", "6s"];
    let ([n1, n2], amy, ben) = friends_on_two(&cluster, &ring).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    let placed = Instant::now();
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    // Halfway through the ring, the owner drains and hands the call to ben's node.
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    drain(n1, vec![amy_ws]).await;
    ben_ws.expect_ended(&id, "no_answer").await;
    // Ended 6 s after it was placed, not 6 s after the handover (9 s or more).
    let rang = placed.elapsed();
    assert!(rang < Duration::from_millis(7500), "rang for {rang:?}");
}

#[actix_rt::test]
async fn a_call_is_placed_and_ended_over_rest_on_any_node() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let Trio {
        nodes: [n1, n2, n3],
        amy,
        ben,
        ..
    } = trio(&cluster).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    let end = |id: &str| format!("/api/v1/calls/{id}/end");
    let call_ben = json!({"to": "ben", "media": "audio"});

    // Placed over REST on a node with no device of amy's: her device on n1 takes the call.
    let (status, placed) = post(&n3, "/api/v1/calls", Some(&amy), call_ben.clone()).await;
    assert_eq!(
        (status, &placed["merged"]),
        (201, &json!(false)),
        "{placed}"
    );
    let id = placed["call_id"].as_str().expect("call_id").to_owned();
    assert_eq!(ben_ws.recv_type("call.incoming").await["call_id"], id);
    assert_eq!(amy_ws.recv_type("call.ringing").await["call_id"], id);

    // Declined as from a notification: ben's request reaches a node with no device of his.
    let (status, body) = post(&n3, &end(&id), Some(&ben), json!({})).await;
    assert_eq!(status, 204, "{body}");
    amy_ws.expect_ended(&id, "declined").await;
    ben_ws.expect_ended(&id, "declined").await;

    // Hung up: amy's request reaches ben's node, which knows the call only as ben's.
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    ben_ws
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    amy_ws.recv_type("call.accepted").await;
    let (status, body) = post(&n2, &end(&id), Some(&amy), json!({})).await;
    assert_eq!(status, 204, "{body}");
    ben_ws.expect_ended(&id, "completed").await;
    amy_ws.expect_ended(&id, "completed").await;

    // Over now: not found on any node. And with no device anywhere, no call over REST.
    amy_ws.close().await;
    presence_of(&mut ben_ws, "amy", "offline").await;
    for node in [&n1, &n2, &n3] {
        let (status, body) = post(node, &end(&id), Some(&ben), json!({})).await;
        assert_eq!((status, &body["error"]), (404, &json!("call_not_found")));
        let (status, body) = post(node, "/api/v1/calls", Some(&amy), call_ben.clone()).await;
        assert_eq!((status, &body["error"]), (409, &json!("not_connected")));
    }
}

#[actix_rt::test]
async fn unfriending_or_blocking_on_any_node_ends_a_call_between_the_two() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let trio = trio(&cluster).await;
    let (mut amy_ws, mut ben_ws, mut cat_ws) = trio.at_home().await;
    let Trio {
        nodes: [n1, _, n3],
        amy,
        ben,
        ..
    } = trio;

    // amy's call, on her node; she unfriends ben through the third node.
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    ben_ws
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    amy_ws.recv_type("call.accepted").await;
    let removed = send(
        &n3,
        awc::http::Method::DELETE,
        "/api/v1/friends/ben",
        &amy,
        json!({}),
    )
    .await;
    assert_eq!(removed, 204);
    amy_ws.expect_ended(&id, "completed").await;
    ben_ws.expect_ended(&id, "completed").await;
    let refused = amy_ws
        .request(json!({"type": "call.invite", "to": "ben", "media": "audio"}))
        .await;
    assert_eq!(refused["error"], "not_friends", "{refused}");

    // cat's call, ringing on her node; ben blocks her through amy's.
    let id = invite(&mut cat_ws, "ben", &mut [&mut ben_ws]).await;
    let blocked = send(
        &n1,
        awc::http::Method::PUT,
        "/api/v1/blocks/cat",
        &ben,
        json!({}),
    )
    .await;
    assert_eq!(blocked, 204);
    cat_ws.expect_ended(&id, "declined").await;
    ben_ws.expect_ended(&id, "declined").await;
}

#[actix_rt::test]
async fn the_last_node_of_a_cluster_to_stop_closes_its_sockets_as_a_shutdown() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let mut node = cluster.node().await;
    let amy = register(&node, "amy").await;
    let (mut amy_ws, _) = socket(&node, &amy).await;
    node.terminate();
    // Nothing to hand over to: not "reconnect at once" (1012) but a shutdown (1001).
    let closed = amy_ws.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "server shutting down")
    );
    assert!(node.wait_exit(Duration::from_secs(10)).is_some(), "exits");
}

/// A stand-in push service on loopback: answers 201 to every push and reports each one's
/// path (the subscription's name) and `Topic` (a call's id, for a call).
struct PushInbox {
    address: String,
    received: tokio::sync::mpsc::UnboundedReceiver<(String, Option<String>)>,
    seen: Vec<(String, Option<String>)>,
}

impl PushInbox {
    fn start() -> Self {
        use actix_web::{web, App, HttpRequest, HttpResponse};
        type Inbox = tokio::sync::mpsc::UnboundedSender<(String, Option<String>)>;
        let (sent, received) = tokio::sync::mpsc::unbounded_channel();
        let address = common::serve_on_loopback(move || {
            let sent = sent.clone();
            App::new().default_service(web::post().to(move |req: HttpRequest| {
                let topic = req.headers().get("topic").and_then(|v| v.to_str().ok());
                let name = req.path().trim_start_matches('/').to_owned();
                let _ = Inbox::send(&sent, (name, topic.map(str::to_owned)));
                async { HttpResponse::Created().finish() }
            }))
        });
        Self {
            address,
            received,
            seen: Vec::new(),
        }
    }

    /// Subscribes the session of `token` on `node`, as a browser would, under `name`.
    async fn subscribe(&self, node: &BrokerProcess, token: &str, name: &str) {
        use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
        use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;
        let secret =
            web_push_native::p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).expect("key");
        let p256dh = secret.public_key().to_encoded_point(false);
        let body = json!({
            "endpoint": format!("http://{}/{name}", self.address),
            "keys": {
                "p256dh": BASE64_URL_SAFE_NO_PAD.encode(p256dh.as_bytes()),
                "auth": BASE64_URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            },
        });
        let (status, reply) = post(node, "/api/v1/push/subscriptions", Some(token), body).await;
        assert_eq!(status, 201, "{reply}");
    }

    /// Every push received so far (kept: each call sees them all).
    fn received_so_far(&mut self) -> Vec<(String, Option<String>)> {
        while let Ok(push) = self.received.try_recv() {
            self.seen.push(push);
        }
        self.seen.clone()
    }
}

#[actix_rt::test]
async fn a_push_subscription_made_or_revoked_on_one_node_counts_on_every_other() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let push = ["--push-allow-insecure-endpoints", "true"];
    let ([n1, n2], amy, ben) = friends_on_two(&cluster, &push).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    // ben's browser subscribes through n2; his app is closed, nowhere connected.
    let mut inbox = PushInbox::start();
    inbox.subscribe(&n2, &ben, "ben-laptop").await;

    // amy's call is owned by n1, which rings ben's closed app by push once it knows of the
    // subscription (a moment after n2 took it; until then ben is unavailable).
    let id = rung_by_push(&mut amy_ws, &mut inbox, "n1 learns of ben's subscription").await;
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    amy_ws.expect_ended(&id, "cancelled").await;

    // ben opens the app on n1 too, signed in again, then logs out everywhere through n2: n1
    // closes that socket, and forgets the closed browser's subscription with it.
    let again = login(&n1, "ben", "password-ben").await;
    let (mut ben_ws, _) = socket(&n1, &again).await;
    presence_of(&mut amy_ws, "ben", "online").await;
    let (status, _) = post(&n2, "/api/v1/auth/logout-all", Some(&ben), json!({})).await;
    assert_eq!(status, 204);
    expect_revoked(&mut ben_ws).await;
    presence_of(&mut amy_ws, "ben", "offline").await;
    let (unavailable, rang) = amy_invites_ben(&mut amy_ws).await;
    assert!(!rang, "n1 rang a browser whose session was revoked");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !inbox
            .received_so_far()
            .iter()
            .any(|(_, topic)| topic.as_deref() == Some(&unavailable)),
        "no push for a call to a logged-out browser"
    );
}

#[actix_rt::test]
async fn an_app_open_on_another_node_is_rung_there_not_by_push() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let push = ["--push-allow-insecure-endpoints", "true"];
    let ([n1, n2], amy, ben) = friends_on_two(&cluster, &push).await;
    // ben's phone subscribed and has the app open on n2; his laptop subscribed, app closed.
    let laptop = login(&n2, "ben", "password-ben").await;
    let mut inbox = PushInbox::start();
    inbox.subscribe(&n2, &ben, "ben-phone").await;
    inbox.subscribe(&n2, &laptop, "ben-laptop").await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    presence_of(&mut amy_ws, "ben", "online").await;

    // Placed on n1: the phone rings in its app on n2, the laptop by push, the phone not.
    let id = invite(&mut amy_ws, "ben", &mut [&mut ben_ws]).await;
    eventually(Duration::from_secs(5), "the laptop's push", || {
        let pushed: Vec<_> = inbox.received_so_far();
        let id = id.clone();
        async move {
            pushed
                .iter()
                .any(|(name, topic)| name == "ben-laptop" && topic.as_deref() == Some(&id))
        }
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let phone: Vec<_> = inbox
        .received_so_far()
        .into_iter()
        .filter(|(name, topic)| name == "ben-phone" && topic.as_deref() == Some(&id))
        .collect();
    assert!(phone.is_empty(), "the open app was pushed too: {phone:?}");
}

#[actix_rt::test]
async fn a_friend_request_to_someone_with_an_app_open_on_another_node_is_not_pushed() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let push = ["--push-allow-insecure-endpoints", "true"];
    let n1 = cluster.node_with(&push).await;
    let n2 = cluster.node_with(&push).await;
    let ben = register(&n2, "ben").await;
    let amy = register(&n2, "amy").await;
    let cat = register(&n1, "cat").await;
    let dan = register(&n1, "dan").await;
    befriend(&n2, ("amy", &amy), &n2, ("ben", &ben)).await;
    let mut inbox = PushInbox::start();
    inbox.subscribe(&n2, &ben, "ben-phone").await;
    let (mut ben_ws, _) = socket(&n2, &ben).await;
    let (mut amy_ws, _) = socket(&n2, &amy).await;

    // Asked on n1, which holds nothing of ben's: his app open on n2 shows it, no push.
    let ask = json!({"username": "ben"});
    let (status, reply) = post(&n1, "/api/v1/friends/requests", Some(&cat), ask.clone()).await;
    assert_eq!(status, 201, "{reply}");
    let shown = ben_ws.recv_type("friend.request").await;
    assert_eq!(shown["from"]["username"], "cat", "{shown}");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        inbox.received_so_far(),
        vec![],
        "pushed to an app that is open"
    );

    // With the app closed everywhere, the next request is pushed.
    ben_ws.close().await;
    presence_of(&mut amy_ws, "ben", "offline").await;
    let (status, reply) = post(&n1, "/api/v1/friends/requests", Some(&dan), ask).await;
    assert_eq!(status, 201, "{reply}");
    eventually(Duration::from_secs(5), "the push of dan's request", || {
        let pushed = inbox.received_so_far();
        async move { pushed.iter().any(|(name, _)| name == "ben-phone") }
    })
    .await;
}

#[actix_rt::test]
async fn a_push_subscription_made_while_a_node_was_not_listening_counts_once_it_resyncs() {
    if !redis_answers() {
        return;
    }
    let redis = OwnRedis::start();
    let Some(cluster) = Cluster::new(&redis.url()) else {
        return;
    };
    let push = ["--push-allow-insecure-endpoints", "true"];
    let ([n1, n2], amy, ben) = friends_on_two(&cluster, &push).await;
    let (mut amy_ws, _) = socket(&n1, &amy).await;
    // Every node's pub/sub connection drops, and each reconnects a moment later: ben's
    // subscription, made through n2 meanwhile, is announced to nobody.
    let mut conn = redis::Client::open(redis.url().as_str())
        .and_then(|c| c.get_connection())
        .expect("redis");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut conn)
        .expect("CLIENT KILL");
    assert!(killed >= 2, "both nodes' pub/sub connections: {killed}");
    let mut inbox = PushInbox::start();
    inbox.subscribe(&n2, &ben, "ben-laptop").await;
    // n1 reads every subscription again when it resyncs, and rings ben's closed app.
    rung_by_push(
        &mut amy_ws,
        &mut inbox,
        "n1 learns of the subscription when it resyncs",
    )
    .await;
}

/// amy invites ben until a call rings (by push: `until` says what must happen first, as it
/// is only known a moment later), then waits for that call's push. Answers its id.
async fn rung_by_push(amy_ws: &mut WsClient, inbox: &mut PushInbox, until: &str) -> String {
    let mut rang = None;
    for _ in 0..50 {
        match amy_invites_ben(amy_ws).await {
            (id, true) => {
                rang = Some(id);
                break;
            }
            (_, false) => actix_rt::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let id = rang.unwrap_or_else(|| panic!("not rung by push: {until}"));
    eventually(Duration::from_secs(5), "the push for amy's call", || {
        let pushed = inbox.received_so_far();
        let id = id.clone();
        async move {
            pushed
                .iter()
                .any(|(_, topic)| topic.as_deref() == Some(&id))
        }
    })
    .await;
    id
}

/// amy invites ben: the call's id, and whether it rings (else it ended as unavailable).
async fn amy_invites_ben(amy_ws: &mut WsClient) -> (String, bool) {
    let invited = amy_ws
        .ok(json!({"type": "call.invite", "to": "ben", "media": "audio"}))
        .await;
    let id = invited["call_id"].as_str().expect("call_id").to_owned();
    let next = amy_ws
        .recv_where(|f| {
            f["call_id"] == id.as_str()
                && (f["type"] == "call.ringing" || f["type"] == "call.ended")
        })
        .await;
    if next["type"] == "call.ended" {
        assert_eq!(next["reason"], "unavailable", "{next}");
    }
    (id, next["type"] == "call.ringing")
}

//! GET /metrics: every family shows live values after a call, label values are templates,
//! codes and outcomes (never a raw path or a user), `--metrics-listen` moves the endpoint, and
//! every metric the sample Grafana dashboard queries exists in a live scrape.
//!
//! The registry is the process's, shared by every broker this binary starts, so counters are
//! checked as "at least" what this test did.
mod common;

use common::ws::answered_call;
use common::{spawn_app, spawn_app_with, stun::StunClient, Backend, TestApp};
use prometheus_parse::{Scrape, Value};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use webrtc::turn::client::{Client, ClientConfig};
use webrtc::util::Conn;

const WAIT: Duration = Duration::from_secs(5);

/// Scrapes `http://{address}/metrics`: parsed, and as text. (The parser skips sample lines
/// whose label values hold a `}`, as route templates do; those are matched in the text.)
async fn scrape(app: &TestApp, address: &str) -> (Scrape, String) {
    let mut res = app
        .client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("scrape sent");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers().get("content-type").expect("content type");
    assert!(
        content_type
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{content_type:?}"
    );
    let body = res.body().limit(4 << 20).await.expect("scrape read");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the scrape parses");
    (parsed, text)
}

/// The count of a REST latency series, read from the text.
fn requests(text: &str, method: &str, route: &str) -> f64 {
    let series = format!(
        "switchboard_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .expect("a number")
}

/// The value of `name` with these labels (a histogram's: its observation count).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{name} is a summary"),
        })
}

/// A sample's labels, as (name, value) pairs.
type Labels<'a> = &'a [(&'a str, &'a str)];

fn at_least(scrape: &Scrape, name: &str, labels: &[(&str, &str)], min: f64) {
    let v = value(scrape, name, labels).unwrap_or_else(|| {
        let present: Vec<String> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| s.labels.to_string())
            .collect();
        panic!("{name}{labels:?} missing; present: {present:?}")
    });
    assert!(v >= min, "{name}{labels:?} is {v}, expected at least {min}");
}

/// A TURN allocation on the embedded relay with `ice_servers`' credential, and data relayed
/// both ways through it to a loopback peer. Returns what keeps the allocation alive.
async fn relay_both_ways(ice_servers: &Json) -> (Client, Box<dyn Conn + Send + Sync>) {
    let entry = ice_servers
        .as_array()
        .expect("ice_servers")
        .iter()
        .find(|s| s["username"].is_string())
        .expect("a TURN entry");
    let url = entry["urls"][0].as_str().expect("url");
    let server = url
        .strip_prefix("turn:")
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.to_owned(),
        turn_serv_addr: server.to_owned(),
        username: entry["username"].as_str().unwrap().to_owned(),
        password: entry["credential"].as_str().unwrap().to_owned(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        vnet: None,
    })
    .await
    .expect("turn client");
    client.listen().await.expect("turn client listens");
    let relayed = tokio::time::timeout(WAIT, client.allocate())
        .await
        .expect("allocate answered")
        .expect("allocated");
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.connect(relayed.local_addr().unwrap()).await.unwrap();
    let mut buf = [0u8; 64];
    relayed
        .send_to(b"out", peer.local_addr().unwrap())
        .await
        .unwrap();
    let n = tokio::time::timeout(WAIT, peer.recv(&mut buf))
        .await
        .expect("relayed out")
        .unwrap();
    assert_eq!(&buf[..n], b"out");
    peer.send(b"back").await.unwrap();
    let (n, _) = tokio::time::timeout(WAIT, relayed.recv_from(&mut buf))
        .await
        .expect("relayed back")
        .unwrap();
    assert_eq!(&buf[..n], b"back");
    (client, Box::new(relayed))
}

#[actix_rt::test]
async fn after_a_call_every_family_has_live_values_labelled_by_templates_and_codes() {
    let app = spawn_app(Backend::Sqlite).await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    let (mut amy_ws, welcome) = app.ws_login(&amy).await;
    let (mut ben_ws, _) = app.ws_login(&ben).await;

    // A call: invite, accept, a signal each way, and an error frame (a signal for no call).
    let id = answered_call(&mut amy_ws, &mut ben_ws, "ben").await;
    amy_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "candidate", "candidate": {"candidate": "c"}}))
        .await;
    ben_ws.recv_type("signal").await;
    ben_ws
        .ok(json!({"type": "signal", "call_id": id, "kind": "candidate", "candidate": {"candidate": "d"}}))
        .await;
    amy_ws.recv_type("signal").await;
    let refused = ben_ws
        .request(json!({"type": "signal", "call_id": "nope", "kind": "candidate", "candidate": {}}))
        .await;
    assert_eq!(refused["error"], "call_not_found", "{refused}");

    // TURN: an allocation relaying both ways, and a wrong password refused.
    let (turn, _relayed) = relay_both_ways(&welcome["ice_servers"]).await;
    let (server, username) = {
        let entry = welcome["ice_servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["username"].is_string())
            .unwrap();
        let url = entry["urls"][0].as_str().unwrap();
        let server = url
            .strip_prefix("turn:")
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        (
            server.to_owned(),
            entry["username"].as_str().unwrap().to_owned(),
        )
    };
    let mut wrong = StunClient::new(&server, &username, "not-the-password").await;
    wrong.challenge().await;
    assert_eq!(wrong.allocate().await.code(), 401);

    // Mid-call: the gauges see the call and both sockets.
    let (during, _) = scrape(&app, &app.address).await;
    at_least(&during, "switchboard_calls_active", &[], 1.0);
    at_least(&during, "switchboard_websockets_open", &[], 2.0);
    at_least(&during, "switchboard_websockets_authenticated", &[], 2.0);
    at_least(&during, "switchboard_users_online", &[], 2.0);
    at_least(&during, "switchboard_turn_allocations", &[], 1.0);

    amy_ws
        .ok(json!({"type": "call.hangup", "call_id": id}))
        .await;
    ben_ws.recv_type("call.ended").await;

    // Logins: one wrong, one right. A REST error on a route with a name in its path.
    assert_eq!(app.login("amy", "wrong-password").await.status, 401);
    assert_eq!(app.login("amy", "password-amy").await.status, 200);
    let missing = app
        .delete("/api/v1/friends/nobody-by-that-name", &amy)
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let unknown = app.get("/api/v1/no/such/route", &amy).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(app.get("/api/v1/friends", &amy).await.status, 200);

    let (after, text) = scrape(&app, &app.address).await;
    for family in [
        "switchboard_websockets_open",
        "switchboard_websockets_authenticated",
        "switchboard_users_online",
        "switchboard_calls_ringing",
        "switchboard_calls_active",
        "switchboard_calls_ended_total",
        "switchboard_call_setup_seconds",
        "switchboard_call_ring_seconds",
        "switchboard_signal_frames_relayed_total",
        "switchboard_signal_bytes_relayed_total",
        "switchboard_ws_error_frames_total",
        "switchboard_http_errors_total",
        "switchboard_logins_total",
        "switchboard_bcrypt_queue_depth",
        "switchboard_http_request_duration_seconds",
        "switchboard_db_query_duration_seconds",
        "switchboard_db_pool_wait_seconds",
        "switchboard_recorder_queue_depth",
        "switchboard_turn_allocations",
        "switchboard_turn_relayed_bytes_total",
        "switchboard_turn_refused_requests_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(after.docs.contains_key(family), "{family} has no HELP");
        assert!(
            after.samples.iter().any(|s| s.metric == family),
            "{family} has no sample"
        );
    }
    // (family, labels, at least): what the call, the login, the errors and the relay left.
    let expected: &[(&str, Labels, f64)] = &[
        (
            "switchboard_calls_ended_total",
            &[("outcome", "completed")],
            1.0,
        ),
        ("switchboard_call_setup_seconds", &[], 1.0),
        ("switchboard_call_ring_seconds", &[], 1.0),
        ("switchboard_signal_frames_relayed_total", &[], 2.0),
        ("switchboard_signal_bytes_relayed_total", &[], 100.0),
        (
            "switchboard_ws_error_frames_total",
            &[("code", "call_not_found")],
            1.0,
        ),
        (
            "switchboard_http_errors_total",
            &[("code", "invalid_credentials")],
            1.0,
        ),
        (
            "switchboard_http_errors_total",
            &[("code", "not_found")],
            1.0,
        ),
        ("switchboard_logins_total", &[("outcome", "failed")], 1.0),
        ("switchboard_logins_total", &[("outcome", "ok")], 1.0),
        ("switchboard_db_query_duration_seconds", &[], 1.0),
        ("switchboard_db_pool_wait_seconds", &[], 1.0),
        ("switchboard_turn_allocations", &[], 1.0),
        (
            "switchboard_turn_relayed_bytes_total",
            &[("direction", "to_peer")],
            3.0,
        ),
        (
            "switchboard_turn_relayed_bytes_total",
            &[("direction", "to_client")],
            4.0,
        ),
        (
            "switchboard_turn_refused_requests_total",
            &[("reason", "credentials")],
            1.0,
        ),
        ("process_resident_memory_bytes", &[], 1.0),
        ("process_open_fds", &[], 1.0),
    ];
    for (family, labels, min) in expected {
        at_least(&after, family, labels, *min);
    }
    assert!(value(
        &after,
        "switchboard_logins_total",
        &[("outcome", "throttled")]
    )
    .is_some());
    assert!(requests(&text, "GET", "/api/v1/friends") >= 1.0);
    assert!(requests(&text, "DELETE", "/api/v1/friends/{username}") >= 1.0);
    assert!(requests(&text, "POST", "/api/v1/friends/requests/{username}/accept") >= 1.0);
    assert!(requests(&text, "GET", "unmatched") >= 1.0);

    // No label value is outside input: no user name, no id, no raw path.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for leak in ["amy", "ben", "nobody", "no/such", &id] {
            assert!(!line.contains(leak), "{line} carries outside input");
        }
    }
    turn.close().await.expect("turn client closes");
}

#[actix_rt::test]
async fn metrics_listen_serves_metrics_there_and_not_on_the_main_listener() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let metrics_address = app.metrics_address.clone().expect("a metrics listener");
    let on_main = app
        .request(awc::http::Method::GET, "/metrics", None, None)
        .await;
    assert_eq!(on_main.status, 404);
    assert_eq!(on_main.code(), "not_found");
    let (there, _) = scrape(&app, &metrics_address).await;
    assert!(there.docs.contains_key("switchboard_websockets_open"));
    // The metrics listener serves nothing else.
    let res = app
        .client
        .get(format!("http://{metrics_address}/api/v1/friends"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 404);
}

/// Metric names in a PromQL expression: identifiers that start like ours, without the
/// suffixes a histogram's series add.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("switchboard_") || w.starts_with("process_"))
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[actix_rt::test]
async fn every_metric_the_grafana_dashboard_queries_is_in_a_live_scrape() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let dashboard: Json =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"))
        .map(|t| t["expr"].as_str().expect("expr"))
        .collect();
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    // Families labelled by error code show once an error happened: one of each.
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = app.ws_connect().await;
    let refused = ws.request(json!({"type": "no.such.frame"})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(app.get("/api/v1/friends", "not-a-token").await.status, 401);
    let (scraped, _) = scrape(&app, &app.address).await;
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                scraped.docs.contains_key(&name),
                "{name} (in {expr}) is not in a scrape"
            );
        }
    }
}

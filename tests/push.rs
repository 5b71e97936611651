//! Web Push: the VAPID key, subscriptions, and calls and friend requests that reach a closed
//! app. A push-service double runs inside each test, on loopback: like a real push service it
//! checks the VAPID signature against the broker's public key and decrypts the payload with
//! the subscription's private key (which the test made, as a browser would); it answers 201,
//! 410 (the subscription is gone) or never (a hung service), as the test tells it.
mod common;

use actix_web::{web, App, HttpRequest, HttpResponse};
use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use common::ws::WsClient;
use common::{spawn_app_on, spawn_app_with, Backend, TestApp, TestDatabase};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256PublicKey};
use web_push_native::jwt_simple::claims::NoCustomClaims;
use web_push_native::jwt_simple::common::VerificationOptions;
use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;
use web_push_native::p256::SecretKey;
use web_push_native::Auth;

on_both_databases!(
    the_vapid_key_is_served_and_kept_across_restarts,
    a_given_vapid_key_is_the_one_served,
    bad_subscriptions_are_refused_with_invalid_subscription,
    a_closed_app_is_rung_and_a_device_that_connects_accepts,
    declining_from_the_notification_ends_the_call_as_declined,
    cancel_and_no_answer_follow_ups_are_missed_calls,
    only_closed_apps_are_pushed_and_answered_elsewhere_clears_them,
    a_push_service_that_hangs_delays_nothing,
    a_follow_up_waits_for_the_ring_it_follows,
    a_subscription_the_push_service_dropped_is_deleted,
    an_expired_sessions_browser_is_not_pushed,
    logout_and_unsubscribe_remove_the_subscription,
    a_missed_call_reaches_an_app_closed_while_it_rang,
    a_friend_request_to_someone_without_an_open_app_is_pushed,
);

const SUBJECT: &str = "mailto:ops@switchboard.test";

/// How the double answers pushes for one subscription.
#[derive(Clone, Copy)]
enum Answer {
    Created,
    Gone,
    Never,
    /// Each push waits for [`Double::release`] before 201.
    Held,
}

/// A push that reached the double, checked and decrypted.
#[derive(Debug)]
struct Received {
    /// The subscription's name (the endpoint's path).
    name: String,
    ttl: String,
    urgency: String,
    topic: Option<String>,
    payload: Value,
}

#[derive(Default)]
struct Subscribers {
    keys: HashMap<String, (SecretKey, [u8; 16])>,
    answers: HashMap<String, Answer>,
    /// The broker's VAPID public key, as `GET /push/vapid-public-key` gave it.
    vapid: String,
}

struct Double {
    subscribers: Mutex<Subscribers>,
    /// Checked pushes, or what was wrong with one.
    received: mpsc::UnboundedSender<Result<Received, String>>,
    /// Lets one held push be answered.
    release: tokio::sync::Notify,
}

struct PushService {
    address: String,
    double: Arc<Double>,
    received: mpsc::UnboundedReceiver<Result<Received, String>>,
}

impl PushService {
    async fn start(app: &TestApp) -> Self {
        let vapid = vapid_key(app).await;
        let (tx, received) = mpsc::unbounded_channel();
        let double = Arc::new(Double {
            subscribers: Mutex::new(Subscribers {
                vapid,
                ..Default::default()
            }),
            received: tx,
            release: tokio::sync::Notify::new(),
        });
        let data = web::Data::from(double.clone());
        let address = common::serve_on_loopback(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 16))
                .default_service(web::post().to(receive))
        });
        Self {
            address,
            double,
            received,
        }
    }

    /// Subscribes the session of `token` as a browser would, under `name`.
    async fn subscribe(&self, app: &TestApp, token: &str, name: &str, answer: Answer) {
        let secret = SecretKey::from_slice(&rand::random::<[u8; 32]>()).expect("key");
        let auth = rand::random::<[u8; 16]>();
        let p256dh = secret.public_key().to_encoded_point(false);
        {
            let mut subscribers = self.double.subscribers.lock().unwrap();
            subscribers.keys.insert(name.into(), (secret, auth));
            subscribers.answers.insert(name.into(), answer);
        }
        let reply = app
            .post(
                "/api/v1/push/subscriptions",
                token,
                json!({
                    "endpoint": format!("http://{}/{name}", self.address),
                    "keys": {
                        "p256dh": BASE64_URL_SAFE_NO_PAD.encode(p256dh.as_bytes()),
                        "auth": BASE64_URL_SAFE_NO_PAD.encode(auth),
                    },
                    "expirationTime": null,
                }),
            )
            .await;
        assert_eq!((reply.status, &reply.body), (201, &json!({})));
    }

    /// The next push, checked.
    async fn next(&mut self) -> Received {
        match actix_rt::time::timeout(Duration::from_secs(5), self.received.recv()).await {
            Ok(Some(Ok(push))) => push,
            Ok(Some(Err(wrong))) => panic!("a bad push: {wrong}"),
            Ok(None) => panic!("the double stopped"),
            Err(_) => panic!("no push within 5 s"),
        }
    }

    /// Asserts no push arrives within `wait`.
    async fn expect_none(&mut self, wait: Duration) {
        if let Ok(Some(push)) = actix_rt::time::timeout(wait, self.received.recv()).await {
            panic!("unexpected push: {push:?}");
        }
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, double: web::Data<Double>) -> HttpResponse {
    let name = req.path().trim_start_matches('/').to_owned();
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (checked, answer) = {
        let subscribers = double.subscribers.lock().unwrap();
        let checked = check(&subscribers, &name, &header, &body);
        (checked, subscribers.answers.get(&name).copied())
    };
    let ok = checked.is_ok();
    let _ = double.received.send(checked.map(|payload| Received {
        name,
        ttl: header("ttl").unwrap_or_default(),
        urgency: header("urgency").unwrap_or_default(),
        topic: header("topic"),
        payload,
    }));
    match (ok, answer) {
        (false, _) => HttpResponse::Unauthorized().finish(),
        (true, Some(Answer::Gone)) => HttpResponse::Gone().finish(),
        (true, Some(Answer::Never)) => std::future::pending().await,
        (true, Some(Answer::Held)) => {
            double.release.notified().await;
            HttpResponse::Created().finish()
        }
        (true, _) => HttpResponse::Created().finish(),
    }
}

/// What a push service checks (RFC 8292 section 4), and what the browser decrypts (RFC 8291).
fn check(
    subscribers: &Subscribers,
    name: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<Value, String> {
    let authorization = header("authorization").ok_or("no Authorization")?;
    let fields = authorization
        .strip_prefix("vapid ")
        .ok_or("not a vapid Authorization")?;
    let field = |key: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(key))
            .map(str::to_owned)
    };
    let (token, key) = (field("t=").ok_or("no t=")?, field("k=").ok_or("no k=")?);
    if key != subscribers.vapid {
        return Err(format!("k={key} is not the broker's public key"));
    }
    let public = BASE64_URL_SAFE_NO_PAD
        .decode(&key)
        .map_err(|e| e.to_string())?;
    let public = ES256PublicKey::from_bytes(&public).map_err(|e| e.to_string())?;
    let options = VerificationOptions {
        allowed_audiences: Some(HashSet::from(["http://127.0.0.1".to_owned()])),
        ..Default::default()
    };
    let claims = public
        .verify_token::<NoCustomClaims>(&token, Some(options))
        .map_err(|e| format!("the VAPID JWT does not verify: {e}"))?;
    if claims.subject.as_deref() != Some(SUBJECT) {
        return Err(format!("sub is {:?}", claims.subject));
    }
    if header("content-encoding").as_deref() != Some("aes128gcm") {
        return Err("not aes128gcm".into());
    }
    let (secret, auth) = subscribers
        .keys
        .get(name)
        .ok_or("an unknown subscription")?;
    let plain = web_push_native::decrypt(body.to_vec(), secret, &Auth::clone_from_slice(auth))
        .map_err(|e| format!("does not decrypt: {e}"))?;
    serde_json::from_slice(&plain).map_err(|e| format!("not JSON: {e}"))
}

/// A broker that takes http push endpoints on loopback, with `ring` as its ring timeout.
async fn broker(backend: Backend, ring: Duration) -> TestApp {
    spawn_app_with(backend, |c| {
        c.push_allow_insecure_endpoints = true;
        c.vapid_subject = SUBJECT.into();
        c.ring_timeout = ring;
    })
    .await
}

/// Long enough for a device to connect and accept on a slow machine.
const RING: Duration = Duration::from_secs(10);

struct Friends {
    app: TestApp,
    push: PushService,
    amy: String,
    ben: String,
}

async fn friends(backend: Backend, ring: Duration) -> Friends {
    let app = broker(backend, ring).await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    let push = PushService::start(&app).await;
    Friends {
        app,
        push,
        amy,
        ben,
    }
}

/// Another session of `name` (a second browser).
async fn login(app: &TestApp, name: &str) -> String {
    let reply = app.login(name, &format!("password-{name}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["token"].as_str().expect("token").to_owned()
}

async fn invite(ws: &mut WsClient, to: &str) -> String {
    let ack = ws
        .ok(json!({"type": "call.invite", "to": to, "media": "video"}))
        .await;
    ack["call_id"].as_str().expect("call_id").to_owned()
}

fn incoming(id: &str) -> Value {
    json!({"type": "call.incoming", "call_id": id, "from": "amy", "display_name": "amy",
           "media": "video"})
}

fn stopped(id: &str, reason: &str, missed: bool) -> Value {
    json!({"type": "call.ended", "call_id": id, "from": "amy", "display_name": "amy",
           "reason": reason, "missed": missed})
}

async fn vapid_key(app: &TestApp) -> String {
    let path = "/api/v1/push/vapid-public-key";
    let reply = app.request(awc::http::Method::GET, path, None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["public_key"].as_str().expect("key").to_owned()
}

async fn the_vapid_key_is_served_and_kept_across_restarts(backend: Backend) {
    let db = TestDatabase::new(backend);
    let first = spawn_app_on(db.shared(), |_| {}).await;
    let served = vapid_key(&first).await;
    let point = BASE64_URL_SAFE_NO_PAD.decode(&served).expect("base64url");
    assert_eq!(
        (point.len(), point[0]),
        (65, 4),
        "an uncompressed P-256 point"
    );
    first.shutdown.shutdown().await;
    let second = spawn_app_on(db, |_| {}).await;
    assert_eq!(vapid_key(&second).await, served);
}

async fn a_given_vapid_key_is_the_one_served(backend: Backend) {
    let private = BASE64_URL_SAFE_NO_PAD.encode([7u8; 32]);
    let app = spawn_app_with(backend, |c| c.vapid_private_key = Some(private)).await;
    let secret = SecretKey::from_slice(&[7u8; 32]).expect("key");
    let expected = secret.public_key().to_encoded_point(false);
    assert_eq!(
        vapid_key(&app).await,
        BASE64_URL_SAFE_NO_PAD.encode(expected.as_bytes())
    );
}

async fn bad_subscriptions_are_refused_with_invalid_subscription(backend: Backend) {
    let app = broker(backend, RING).await;
    let token = app.register("ann").await;
    let key = BASE64_URL_SAFE_NO_PAD.encode(
        SecretKey::from_slice(&[3u8; 32])
            .expect("key")
            .public_key()
            .to_encoded_point(false)
            .as_bytes(),
    );
    let auth = BASE64_URL_SAFE_NO_PAD.encode([5u8; 16]);
    let body = |endpoint: &str, p256dh: &str, auth: &str| json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}});
    let good = "https://push.example.com/send/abc";
    let long = format!("https://push.example.com/{}", "a".repeat(1100));
    let compressed = BASE64_URL_SAFE_NO_PAD.encode(
        SecretKey::from_slice(&[3u8; 32])
            .expect("key")
            .public_key()
            .to_encoded_point(true)
            .as_bytes(),
    );
    for bad in [
        body("http://push.example.com/x", &key, &auth),
        body("ftp://push.example.com/x", &key, &auth),
        body("https://10.0.0.1/x", &key, &auth),
        body("no url at all", &key, &auth),
        body(&long, &key, &auth),
        body(good, &key[..80], &auth),
        body(good, &compressed, &auth),
        body(good, &key, &BASE64_URL_SAFE_NO_PAD.encode([5u8; 15])),
        body(good, &key, &BASE64_URL_SAFE_NO_PAD.encode([5u8; 17])),
    ] {
        let reply = app
            .post("/api/v1/push/subscriptions", &token, bad.clone())
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "invalid_subscription"),
            "{bad}"
        );
    }
    let missing = app
        .post(
            "/api/v1/push/subscriptions",
            &token,
            json!({"endpoint": good}),
        )
        .await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    let stranger = app
        .request(
            awc::http::Method::POST,
            "/api/v1/push/subscriptions",
            None,
            Some(body(good, &key, &auth)),
        )
        .await;
    assert_eq!((stranger.status, stranger.code()), (401, "unauthorized"));
    let ok = app
        .post(
            "/api/v1/push/subscriptions",
            &token,
            body(good, &key, &auth),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);

    // Plain http to loopback needs the flag.
    let strict = spawn_app_with(backend, |_| {}).await;
    let token = strict.register("ann").await;
    let local = body("http://127.0.0.1:9/x", &key, &auth);
    let reply = strict
        .post("/api/v1/push/subscriptions", &token, local)
        .await;
    assert_eq!((reply.status, reply.code()), (400, "invalid_subscription"));
}

async fn a_closed_app_is_rung_and_a_device_that_connects_accepts(backend: Backend) {
    let mut f = friends(backend, RING).await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-phone", Answer::Created)
        .await;
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;

    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(
        amy_ws.recv_type("call.ringing").await,
        json!({"type": "call.ringing", "call_id": id})
    );
    let rung = f.push.next().await;
    assert_eq!(rung.name, "ben-phone");
    assert_eq!(rung.payload, incoming(&id));
    assert_eq!(
        (
            rung.urgency.as_str(),
            rung.ttl.as_str(),
            rung.topic.as_deref()
        ),
        ("high", "10", Some(id.as_str()))
    );

    // The notification's Accept opens the app, which connects and takes the call.
    let (mut ben_ws, welcome) = f.app.ws_login(&f.ben).await;
    assert_eq!(welcome["calls"][0]["call_id"], id.as_str());
    assert_eq!(welcome["calls"][0]["state"], "ringing");
    ben_ws
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    assert_eq!(
        amy_ws.recv_type("call.accepted").await["call_id"],
        id.as_str()
    );
    let cleared = f.push.next().await;
    assert_eq!(cleared.payload, stopped(&id, "answered", false));
    assert_eq!(
        (cleared.urgency.as_str(), cleared.topic.as_deref()),
        ("high", Some(id.as_str()))
    );
}

async fn declining_from_the_notification_ends_the_call_as_declined(backend: Backend) {
    let mut f = friends(backend, RING).await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-phone", Answer::Created)
        .await;
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;
    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(f.push.next().await.payload, incoming(&id));

    let declined = f
        .app
        .post(&format!("/api/v1/calls/{id}/end"), &f.ben, json!({}))
        .await;
    assert_eq!(declined.status, 204, "{}", declined.body);
    assert_eq!(
        amy_ws.recv_type("call.ended").await,
        json!({"type": "call.ended", "call_id": id, "reason": "declined"})
    );
    assert_eq!(f.push.next().await.payload, stopped(&id, "declined", false));
}

async fn cancel_and_no_answer_follow_ups_are_missed_calls(backend: Backend) {
    let mut f = friends(backend, Duration::from_millis(800)).await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-phone", Answer::Created)
        .await;
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;

    let id = invite(&mut amy_ws, "ben").await;
    let rung = f.push.next().await;
    assert_eq!((rung.payload, rung.ttl.as_str()), (incoming(&id), "1"));
    amy_ws.recv_type("call.ended").await;
    let missed = f.push.next().await;
    assert_eq!(missed.payload, stopped(&id, "no_answer", true));
    assert_eq!(missed.topic.as_deref(), Some(id.as_str()));

    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(f.push.next().await.payload, incoming(&id));
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    assert_eq!(f.push.next().await.payload, stopped(&id, "cancelled", true));
}

async fn only_closed_apps_are_pushed_and_answered_elsewhere_clears_them(backend: Backend) {
    let mut f = friends(backend, RING).await;
    // The laptop's app is open (and subscribed); the phone's is closed.
    let phone = login(&f.app, "ben").await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-laptop", Answer::Created)
        .await;
    f.push
        .subscribe(&f.app, &phone, "ben-phone", Answer::Created)
        .await;
    let (mut laptop, _) = f.app.ws_login(&f.ben).await;
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;

    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(
        laptop.recv_type("call.incoming").await["call_id"],
        id.as_str()
    );
    let rung = f.push.next().await;
    assert_eq!(
        (rung.name.as_str(), rung.payload),
        ("ben-phone", incoming(&id))
    );

    laptop
        .ok(json!({"type": "call.accept", "call_id": id}))
        .await;
    let cleared = f.push.next().await;
    assert_eq!(
        (cleared.name.as_str(), cleared.payload),
        ("ben-phone", stopped(&id, "answered", false))
    );
    amy_ws.recv_type("call.accepted").await;
    // The open laptop was never pushed.
    f.push.expect_none(Duration::from_millis(300)).await;
}

async fn a_push_service_that_hangs_delays_nothing(backend: Backend) {
    let mut f = friends(backend, RING).await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-phone", Answer::Never)
        .await;
    let cat = f.app.register("cat").await;
    f.app.befriend(&f.amy, "cat", &cat, "amy").await;
    let (mut cat_ws, _) = f.app.ws_login(&cat).await;
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;

    let id = invite(&mut amy_ws, "ben").await;
    // The push is in flight and will never be answered...
    assert_eq!(f.push.next().await.payload, incoming(&id));
    // ...and the call goes on regardless: ringing, cancelled, and the next call too.
    assert_eq!(
        amy_ws.recv_type("call.ringing").await,
        json!({"type": "call.ringing", "call_id": id})
    );
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    assert_eq!(amy_ws.recv_type("call.ended").await["reason"], "cancelled");
    let next = invite(&mut amy_ws, "cat").await;
    assert_eq!(
        cat_ws.recv_type("call.incoming").await["call_id"],
        next.as_str()
    );
    cat_ws
        .ok(json!({"type": "call.accept", "call_id": next}))
        .await;
    assert_eq!(
        amy_ws.recv_type("call.accepted").await["call_id"],
        next.as_str()
    );
}

async fn a_follow_up_waits_for_the_ring_it_follows(backend: Backend) {
    let mut f = friends(backend, RING).await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-phone", Answer::Held)
        .await;
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;
    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(f.push.next().await.payload, incoming(&id));
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    // The ring is still being delivered: its follow-up waits rather than overtake it.
    f.push.expect_none(Duration::from_millis(300)).await;
    f.push.double.release.notify_one();
    assert_eq!(f.push.next().await.payload, stopped(&id, "cancelled", true));
}

async fn subscriptions_stored(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use switchboard::db::{schema::push_subscriptions, DbConn};
    let mut conn = DbConn::establish(&app.db.url.replace("sqlite://", "")).expect("db");
    push_subscriptions::table
        .count()
        .get_result(&mut conn)
        .expect("count")
}

async fn a_subscription_the_push_service_dropped_is_deleted(backend: Backend) {
    let mut f = friends(backend, RING).await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-phone", Answer::Gone)
        .await;
    assert_eq!(subscriptions_stored(&f.app).await, 1);
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;
    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(f.push.next().await.payload, incoming(&id));
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    // The 410 is answered after the double reported the push: wait for the deletion.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while subscriptions_stored(&f.app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscription stayed"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(amy_ws.recv_type("call.ended").await["reason"], "cancelled");
    // Nothing to ring any more: unavailable at once.
    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(
        amy_ws.recv_type("call.ended").await,
        json!({"type": "call.ended", "call_id": id, "reason": "unavailable"})
    );
}

async fn an_expired_sessions_browser_is_not_pushed(backend: Backend) {
    let lifetime = Duration::from_secs(2);
    let app = spawn_app_with(backend, |c| {
        c.push_allow_insecure_endpoints = true;
        c.vapid_subject = SUBJECT.into();
        c.ring_timeout = RING;
        c.session_lifetime = lifetime;
    })
    .await;
    let amy = app.register("amy").await;
    let ben = app.register("ben").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    let mut push = PushService::start(&app).await;
    push.subscribe(&app, &ben, "ben-phone", Answer::Created)
        .await;
    // Amy's socket stays authenticated; Ben's session runs out meanwhile.
    let (mut amy_ws, _) = app.ws_login(&amy).await;
    actix_rt::time::sleep(lifetime + Duration::from_millis(100)).await;

    let id = invite(&mut amy_ws, "ben").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while subscriptions_stored(&app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscription stayed"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    push.expect_none(Duration::from_millis(300)).await;
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    push.expect_none(Duration::from_millis(300)).await;
}

async fn logout_and_unsubscribe_remove_the_subscription(backend: Backend) {
    let mut f = friends(backend, RING).await;
    let phone = login(&f.app, "ben").await;
    f.push
        .subscribe(&f.app, &phone, "ben-phone", Answer::Created)
        .await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-laptop", Answer::Created)
        .await;
    assert_eq!(subscriptions_stored(&f.app).await, 2);

    let out = f.app.post("/api/v1/auth/logout", &phone, json!({})).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert_eq!(subscriptions_stored(&f.app).await, 1);
    let gone = f
        .app
        .delete("/api/v1/push/subscriptions/current", &f.ben)
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let again = f
        .app
        .delete("/api/v1/push/subscriptions/current", &f.ben)
        .await;
    assert_eq!(again.status, 204, "{}", again.body);
    assert_eq!(subscriptions_stored(&f.app).await, 0);

    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;
    invite(&mut amy_ws, "ben").await;
    assert_eq!(
        amy_ws.recv_type("call.ended").await["reason"],
        "unavailable"
    );
    f.push.expect_none(Duration::from_millis(300)).await;

    // A password change ends every other session, and their subscriptions with them.
    let phone = login(&f.app, "ben").await;
    f.push
        .subscribe(&f.app, &phone, "ben-phone-2", Answer::Created)
        .await;
    let changed = f
        .app
        .request(
            awc::http::Method::PUT,
            "/api/v1/me/password",
            Some(&f.ben),
            Some(json!({"old_password": "password-ben", "new_password": "another-password-ben"})),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    assert_eq!(subscriptions_stored(&f.app).await, 0);
    let id = invite(&mut amy_ws, "ben").await;
    assert_eq!(
        amy_ws
            .recv_where(|f| f["type"] == "call.ended" && f["call_id"] == id.as_str())
            .await["reason"],
        "unavailable"
    );
    f.push.expect_none(Duration::from_millis(300)).await;

    // Deleting the account ends every session, and every subscription with them.
    f.push
        .subscribe(&f.app, &f.ben, "ben-laptop-2", Answer::Created)
        .await;
    assert_eq!(subscriptions_stored(&f.app).await, 1);
    let deleted = f
        .app
        .request(
            awc::http::Method::DELETE,
            "/api/v1/me",
            Some(&f.ben),
            Some(json!({"password": "another-password-ben"})),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(subscriptions_stored(&f.app).await, 0);
    f.push.expect_none(Duration::from_millis(300)).await;
}

async fn a_missed_call_reaches_an_app_closed_while_it_rang(backend: Backend) {
    let mut f = friends(backend, RING).await;
    f.push
        .subscribe(&f.app, &f.ben, "ben-phone", Answer::Created)
        .await;
    let (mut ben_ws, _) = f.app.ws_login(&f.ben).await;
    let (mut amy_ws, _) = f.app.ws_login(&f.amy).await;
    let id = invite(&mut amy_ws, "ben").await;
    ben_ws.recv_type("call.incoming").await;
    ben_ws.close().await;
    // Ben's friends see him go offline once the hub has dropped his device, and the router,
    // told at the same moment, has dropped it long before the presence grace ends.
    amy_ws
        .recv_where(|f| {
            f["type"] == "presence" && f["username"] == "ben" && f["status"] == "offline"
        })
        .await;
    amy_ws
        .ok(json!({"type": "call.cancel", "call_id": id}))
        .await;
    let missed = f.push.next().await;
    assert_eq!(
        missed.payload,
        json!({"type": "call.missed", "call_id": id, "from": "amy", "display_name": "amy",
               "media": "video"})
    );
    assert_eq!(
        (missed.urgency.as_str(), missed.topic.as_deref()),
        ("normal", Some(id.as_str()))
    );
}

async fn ask_to_be_friends(app: &TestApp, token: &str, username: &str) {
    let asked = app
        .post(
            "/api/v1/friends/requests",
            token,
            json!({"username": username}),
        )
        .await;
    assert_eq!(asked.status, 201, "{}", asked.body);
}

async fn a_friend_request_to_someone_without_an_open_app_is_pushed(backend: Backend) {
    let mut f = friends(backend, RING).await;
    let cat = f.app.register("cat").await;
    f.push
        .subscribe(&f.app, &cat, "cat-phone", Answer::Created)
        .await;
    ask_to_be_friends(&f.app, &f.amy, "cat").await;
    let push = f.push.next().await;
    assert_eq!(
        push.payload,
        json!({"type": "friend.request", "from": {"username": "amy", "display_name": "amy"}})
    );
    assert_eq!((push.urgency.as_str(), push.topic), ("normal", None));

    // With the app open, the socket tells; no push.
    let (mut cat_ws, _) = f.app.ws_login(&cat).await;
    ask_to_be_friends(&f.app, &f.ben, "cat").await;
    cat_ws.recv_type("friend.request").await;
    f.push.expect_none(Duration::from_millis(300)).await;
}

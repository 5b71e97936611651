//! Friends and blocks over REST.
mod common;

use common::{spawn_app, spawn_app_with, Backend, TestApp};
use serde_json::json;

on_both_databases!(
    request_then_accept_makes_mutual_friends,
    asking_someone_who_asked_you_accepts_instead,
    request_errors_are_clear,
    declining_and_cancelling_requests,
    unfriending_ends_it_both_ways,
    blocking_removes_friendship_and_requests_and_hides_the_blocker,
    unblocking_and_block_list,
    after_a_block_or_unfriend_returns_nothing_crosses_even_for_racing_devices_and_invites,
);

fn usernames(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

async fn two_users(app: &TestApp) -> (String, String) {
    (app.register("amy").await, app.register("ben").await)
}

async fn request_then_accept_makes_mutual_friends(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = two_users(&app).await;
    let sent = app
        .post("/api/v1/friends/requests", &amy, json!({"username": "BEN"}))
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(sent.body["status"], "pending");
    assert_eq!(sent.body["user"]["username"], "ben");

    let amy_requests = app.get("/api/v1/friends/requests", &amy).await.body;
    assert_eq!(usernames(&amy_requests["outgoing"]), ["ben"]);
    assert_eq!(usernames(&amy_requests["incoming"]), Vec::<String>::new());
    let ben_requests = app.get("/api/v1/friends/requests", &ben).await.body;
    assert_eq!(usernames(&ben_requests["incoming"]), ["amy"]);

    let accepted = app
        .post("/api/v1/friends/requests/amy/accept", &ben, json!({}))
        .await;
    assert_eq!(accepted.status, 200);
    assert_eq!(accepted.body["status"], "accepted");

    let amy_friends = app.get("/api/v1/friends", &amy).await.body;
    assert_eq!(usernames(&amy_friends["friends"]), ["ben"]);
    assert_eq!(amy_friends["friends"][0]["presence"], "offline");
    assert_eq!(
        usernames(&app.get("/api/v1/friends", &ben).await.body["friends"]),
        ["amy"]
    );
    let cleared = app.get("/api/v1/friends/requests", &ben).await.body;
    assert_eq!(cleared, json!({"incoming": [], "outgoing": []}));
}

async fn asking_someone_who_asked_you_accepts_instead(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = two_users(&app).await;
    assert_eq!(
        app.post("/api/v1/friends/requests", &amy, json!({"username": "ben"}))
            .await
            .status,
        201
    );
    let back = app
        .post("/api/v1/friends/requests", &ben, json!({"username": "amy"}))
        .await;
    assert_eq!(
        (back.status, back.body["status"].as_str()),
        (200, Some("accepted"))
    );
    assert_eq!(
        usernames(&app.get("/api/v1/friends", &amy).await.body["friends"]),
        ["ben"]
    );
}

async fn request_errors_are_clear(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = two_users(&app).await;
    let to_self = app
        .post("/api/v1/friends/requests", &amy, json!({"username": "amy"}))
        .await;
    assert_eq!(
        (to_self.status, to_self.code()),
        (400, "cannot_friend_self")
    );
    let unknown = app
        .post(
            "/api/v1/friends/requests",
            &amy,
            json!({"username": "ghost"}),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "user_not_found"));
    let bad_name = app
        .post(
            "/api/v1/friends/requests",
            &amy,
            json!({"username": "no way!"}),
        )
        .await;
    assert_eq!(
        (bad_name.status, bad_name.code()),
        (400, "invalid_username")
    );

    assert_eq!(
        app.post("/api/v1/friends/requests", &amy, json!({"username": "ben"}))
            .await
            .status,
        201
    );
    let twice = app
        .post("/api/v1/friends/requests", &amy, json!({"username": "ben"}))
        .await;
    assert_eq!((twice.status, twice.code()), (409, "request_exists"));
    assert_eq!(
        app.post("/api/v1/friends/requests/amy/accept", &ben, json!({}))
            .await
            .status,
        200
    );
    let friends_already = app
        .post("/api/v1/friends/requests", &amy, json!({"username": "ben"}))
        .await;
    assert_eq!(
        (friends_already.status, friends_already.code()),
        (409, "already_friends")
    );

    // A blocker looks exactly like a user who doesn't exist.
    let cat = app.register("cat").await;
    assert_eq!(app.put("/api/v1/blocks/amy", &cat).await.status, 204);
    let blocked = app
        .post("/api/v1/friends/requests", &amy, json!({"username": "cat"}))
        .await;
    assert_eq!(
        (blocked.status, blocked.code()),
        (unknown.status, unknown.code())
    );
    assert_eq!(blocked.body["message"], unknown.body["message"]);
    // ...while the blocker is told to unblock first.
    let blocker_asks = app
        .post("/api/v1/friends/requests", &cat, json!({"username": "amy"}))
        .await;
    assert_eq!(
        (blocker_asks.status, blocker_asks.code()),
        (409, "user_blocked")
    );

    let no_request = app
        .post("/api/v1/friends/requests/cat/accept", &amy, json!({}))
        .await;
    assert_eq!(
        (no_request.status, no_request.code()),
        (404, "request_not_found")
    );
}

async fn declining_and_cancelling_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = two_users(&app).await;
    app.post("/api/v1/friends/requests", &amy, json!({"username": "ben"}))
        .await;
    assert_eq!(
        app.delete("/api/v1/friends/requests/amy", &ben)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get("/api/v1/friends/requests", &amy).await.body["outgoing"],
        json!([])
    );
    app.post("/api/v1/friends/requests", &amy, json!({"username": "ben"}))
        .await;
    assert_eq!(
        app.delete("/api/v1/friends/requests/ben", &amy)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get("/api/v1/friends/requests", &ben).await.body["incoming"],
        json!([])
    );
    let nothing = app.delete("/api/v1/friends/requests/ben", &amy).await;
    assert_eq!((nothing.status, nothing.code()), (404, "request_not_found"));
}

async fn unfriending_ends_it_both_ways(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = two_users(&app).await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    assert_eq!(app.delete("/api/v1/friends/ben", &amy).await.status, 204);
    assert_eq!(
        app.get("/api/v1/friends", &amy).await.body["friends"],
        json!([])
    );
    assert_eq!(
        app.get("/api/v1/friends", &ben).await.body["friends"],
        json!([])
    );
    let again = app.delete("/api/v1/friends/ben", &amy).await;
    assert_eq!((again.status, again.code()), (404, "friend_not_found"));
}

async fn blocking_removes_friendship_and_requests_and_hides_the_blocker(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = two_users(&app).await;
    let cat = app.register("cat").await;
    app.befriend(&amy, "ben", &ben, "amy").await;
    app.post("/api/v1/friends/requests", &cat, json!({"username": "amy"}))
        .await;

    assert_eq!(app.put("/api/v1/blocks/ben", &amy).await.status, 204);
    assert_eq!(app.put("/api/v1/blocks/cat", &amy).await.status, 204);
    assert_eq!(
        app.put("/api/v1/blocks/cat", &amy).await.status,
        204,
        "blocking twice is fine"
    );
    assert_eq!(
        app.get("/api/v1/friends", &amy).await.body["friends"],
        json!([])
    );
    assert_eq!(
        app.get("/api/v1/friends", &ben).await.body["friends"],
        json!([])
    );
    assert_eq!(
        app.get("/api/v1/friends/requests", &cat).await.body["outgoing"],
        json!([])
    );
    let search = app.get("/api/v1/users?q=am", &ben).await;
    assert_eq!(search.body["users"], json!([]));

    let self_block = app.put("/api/v1/blocks/amy", &amy).await;
    assert_eq!(
        (self_block.status, self_block.code()),
        (400, "cannot_block_self")
    );
    let unknown = app.put("/api/v1/blocks/ghost", &amy).await;
    assert_eq!((unknown.status, unknown.code()), (404, "user_not_found"));
}

async fn unblocking_and_block_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let (amy, ben) = two_users(&app).await;
    app.put("/api/v1/blocks/ben", &amy).await;
    let list = app.get("/api/v1/blocks", &amy).await;
    assert_eq!(usernames(&list.body["blocks"]), ["ben"]);
    assert_eq!(app.delete("/api/v1/blocks/ben", &amy).await.status, 204);
    assert_eq!(
        app.get("/api/v1/blocks", &amy).await.body["blocks"],
        json!([])
    );
    let again = app.delete("/api/v1/blocks/ben", &amy).await;
    assert_eq!((again.status, again.code()), (404, "block_not_found"));
    assert_eq!(
        app.post("/api/v1/friends/requests", &ben, json!({"username": "amy"}))
            .await
            .status,
        201
    );
}

/// In a loop: while amy unfriends or blocks ben, twenty devices of amy's authenticate (their
/// friend lists read just before) and five of ben's invite amy. Once the REST call has
/// returned, nothing crosses: amy's status changes don't reach ben, ben's invites are refused,
/// and no call between them is left ringing.
async fn after_a_block_or_unfriend_returns_nothing_crosses_even_for_racing_devices_and_invites(
    backend: Backend,
) {
    // Twenty devices of one user: more than the default cap of ten.
    let app = spawn_app_with(backend, |c| c.max_devices_per_user = 0).await;
    let carl = app.register("carl").await;
    for round in 0..12u64 {
        let (amy_name, ben_name) = (format!("amy{round}"), format!("ben{round}"));
        let amy = app.register(&amy_name).await;
        let ben = app.register(&ben_name).await;
        app.befriend(&amy, &ben_name, &ben, &amy_name).await;
        app.befriend(&ben, "carl", &carl, &ben_name).await;
        let (mut ben_ws, _) = app.ws_login(&ben).await;
        let mut amy_devices = Vec::new();
        for _ in 0..20 {
            amy_devices.push(app.ws_connect().await);
        }
        let mut ben_callers = Vec::new();
        for _ in 0..5 {
            ben_callers.push(app.ws_login(&ben).await.0);
        }

        // All at once: the auth frames, the invites, and the unfriend or block.
        for ws in &mut amy_devices {
            ws.send(json!({"type": "auth", "token": amy})).await;
        }
        for ws in &mut ben_callers {
            ws.send(json!({"type": "call.invite", "to": amy_name, "media": "audio"}))
                .await;
        }
        actix_rt::time::sleep(std::time::Duration::from_micros(round * 250)).await;
        let severed = if round % 2 == 0 {
            app.put(&format!("/api/v1/blocks/{ben_name}"), &amy).await
        } else {
            app.delete(&format!("/api/v1/friends/{ben_name}"), &amy)
                .await
        };
        assert!(
            matches!(severed.status, 200 | 201 | 204),
            "{}",
            severed.body
        );
        for ws in &mut amy_devices {
            ws.recv_type("welcome").await;
        }
        let mut amy_ws = amy_devices.pop().unwrap();
        let mut ben_caller = ben_callers.pop().unwrap();

        // After the REST call returned: amy's status never reaches ben...
        amy_ws
            .ok(json!({"type": "presence.set", "status": "away"}))
            .await;
        ben_ws
            .expect_none(std::time::Duration::from_millis(300), |f| {
                f["type"] == "presence"
                    && f["username"] == amy_name.as_str()
                    && f["status"] == "away"
            })
            .await;
        // ...ben can't ring amy...
        let again = ben_caller
            .request(json!({"type": "call.invite", "to": amy_name, "media": "audio"}))
            .await;
        assert_eq!(
            (again["type"].as_str(), again["error"].as_str()),
            (Some("error"), Some("not_friends")),
            "round {round}: {again}"
        );
        // ...and no call between them is left: ben is free to call carl (who has no device,
        // so that call ends at once as `unavailable`).
        let free = ben_caller
            .request(json!({"type": "call.invite", "to": "carl", "media": "audio"}))
            .await;
        assert_eq!(
            free["type"], "ack",
            "round {round}: ben is still in a call with amy: {free}"
        );
    }
}

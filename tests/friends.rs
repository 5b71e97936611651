//! Friends and blocks over REST.
mod common;

use common::{spawn_app, Backend, TestApp};
use serde_json::json;

on_both_databases!(
    request_then_accept_makes_mutual_friends,
    asking_someone_who_asked_you_accepts_instead,
    request_errors_are_clear,
    declining_and_cancelling_requests,
    unfriending_ends_it_both_ways,
    blocking_removes_friendship_and_requests_and_hides_the_blocker,
    unblocking_and_block_list,
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

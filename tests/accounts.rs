//! Accounts over REST: register, login, logout, the own profile, search, probes and bad input.
mod common;

use awc::http::Method;
use common::{spawn_app, spawn_app_with, Backend};
use serde_json::json;

on_both_databases!(
    register_returns_user_token_and_expiry,
    register_rejects_bad_usernames_and_passwords,
    usernames_are_unique_case_insensitively,
    concurrent_registrations_of_one_name_have_one_winner,
    login_succeeds_and_wrong_credentials_look_alike,
    repeated_failed_logins_are_rate_limited,
    parallel_wrong_passwords_reach_bcrypt_at_most_the_limit,
    passwords_past_72_bytes_never_match_on_any_path,
    wrong_current_passwords_are_throttled_like_logins,
    password_checks_past_the_queue_get_503_overloaded_at_once,
    look_alike_usernames_cannot_coexist,
    registrations_are_limited_per_client_address,
    forwarded_for_is_believed_only_from_trusted_proxies,
    responses_carry_security_headers_and_cors_is_off_by_default,
    listed_origins_may_call_the_api_across_origins,
    logout_revokes_only_the_current_token,
    logout_all_revokes_every_token,
    me_shows_and_updates_the_profile,
    password_change_needs_old_password_and_revokes_other_sessions,
    account_deletion_removes_sessions_and_friendships,
    search_finds_by_prefix_with_pagination_and_hides_blockers,
    probes_report_health_and_readiness,
    bad_input_gets_typed_json_errors,
    missing_or_bogus_tokens_are_unauthorized,
    names_no_user_could_have_find_nobody_on_every_database,
);

async fn register_returns_user_token_and_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"username": "Alice", "password": "correct horse", "display_name": " Alice A "})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["user"]["username"], "alice");
    assert_eq!(reply.body["user"]["display_name"], "Alice A");
    assert_eq!(reply.body["token"].as_str().unwrap().len(), 43);
    assert!(reply.body["expires_at"].as_str().unwrap().ends_with('Z'));
    let me = app
        .get("/api/v1/me", reply.body["token"].as_str().unwrap())
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["username"], "alice");
}

async fn register_rejects_bad_usernames_and_passwords(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in ["ab", "has space", "ümlaut", &"x".repeat(33)] {
        let reply = app.register_raw(name, "long enough").await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "invalid_username"),
            "{name}"
        );
    }
    let short = app.register_raw("bob", "short").await;
    assert_eq!((short.status, short.code()), (400, "invalid_password"));
    let long = app.register_raw("bob", &"p".repeat(73)).await;
    assert_eq!((long.status, long.code()), (400, "invalid_password"));
    assert!(long.body["message"].as_str().unwrap().contains("72"));
    let ok = app.register_raw("bob", &"p".repeat(72)).await;
    assert_eq!(ok.status, 201);
}

async fn usernames_are_unique_case_insensitively(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("carol").await;
    let dup = app.register_raw("CAROL", "another password").await;
    assert_eq!((dup.status, dup.code()), (409, "username_taken"));
}

async fn concurrent_registrations_of_one_name_have_one_winner(backend: Backend) {
    let app = spawn_app(backend).await;
    let attempts = (0..6).map(|_| app.register_raw("dave", "password-dave"));
    let replies = futures_util::future::join_all(attempts).await;
    let won = replies.iter().filter(|r| r.status == 201).count();
    let lost = replies
        .iter()
        .filter(|r| r.status == 409 && r.code() == "username_taken")
        .count();
    assert_eq!((won, lost), (1, 5));
}

async fn login_succeeds_and_wrong_credentials_look_alike(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("erin").await;
    let ok = app.login("ERIN", "password-erin").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["user"]["username"], "erin");
    let token = ok.body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", token).await.status, 200);

    let wrong = app.login("erin", "not her password").await;
    let unknown = app.login("nobody", "whatever123").await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
    assert_eq!(
        (unknown.status, unknown.code()),
        (401, "invalid_credentials")
    );
    assert_eq!(wrong.body["message"], unknown.body["message"]);
}

async fn repeated_failed_logins_are_rate_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("frank").await;
    for _ in 0..5 {
        assert_eq!(app.login("frank", "wrong password").await.status, 401);
    }
    let limited = app.login("frank", "password-frank").await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    let retry: u64 = limited
        .headers
        .get("Retry-After")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry));
    // Another username is unaffected.
    app.register("grace").await;
    assert_eq!(app.login("grace", "password-grace").await.status, 200);
}

async fn logout_revokes_only_the_current_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.register("heidi").await;
    let second = app.login("heidi", "password-heidi").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = app.post("/api/v1/auth/logout", &first, json!({})).await;
    assert_eq!(out.status, 204);
    let revoked = app.get("/api/v1/me", &first).await;
    assert_eq!((revoked.status, revoked.code()), (401, "unauthorized"));
    assert_eq!(app.get("/api/v1/me", &second).await.status, 200);
}

async fn logout_all_revokes_every_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.register("ivan").await;
    let second = app.login("ivan", "password-ivan").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.post("/api/v1/auth/logout-all", &second, json!({}))
            .await
            .status,
        204
    );
    assert_eq!(app.get("/api/v1/me", &first).await.status, 401);
    assert_eq!(app.get("/api/v1/me", &second).await.status, 401);
}

async fn me_shows_and_updates_the_profile(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.register("judy").await;
    let patched = app
        .request(
            Method::PATCH,
            "/api/v1/me",
            Some(&token),
            Some(json!({"display_name": "Judy J"})),
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["display_name"], "Judy J");
    assert_eq!(
        app.get("/api/v1/me", &token).await.body["display_name"],
        "Judy J"
    );
    let empty = app
        .request(
            Method::PATCH,
            "/api/v1/me",
            Some(&token),
            Some(json!({"display_name": "   "})),
        )
        .await;
    assert_eq!((empty.status, empty.code()), (400, "invalid_display_name"));
}

async fn password_change_needs_old_password_and_revokes_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let current = app.register("mallory").await;
    let other = app.login("mallory", "password-mallory").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = app
        .request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&current),
            Some(json!({"old_password": "nope nope", "new_password": "brand new pw"})),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (403, "wrong_password"));
    let changed = app
        .request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&current),
            Some(json!({"old_password": "password-mallory", "new_password": "brand new pw"})),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    assert_eq!(app.get("/api/v1/me", &current).await.status, 200);
    assert_eq!(app.get("/api/v1/me", &other).await.status, 401);
    assert_eq!(app.login("mallory", "password-mallory").await.status, 401);
    assert_eq!(app.login("mallory", "brand new pw").await.status, 200);
}

async fn account_deletion_removes_sessions_and_friendships(backend: Backend) {
    let app = spawn_app(backend).await;
    let niaj = app.register("niaj").await;
    let olivia = app.register("olivia").await;
    app.befriend(&niaj, "olivia", &olivia, "niaj").await;
    let wrong = app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&niaj),
            Some(json!({"password": "wrong one"})),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (403, "wrong_password"));
    let deleted = app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&niaj),
            Some(json!({"password": "password-niaj"})),
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(app.get("/api/v1/me", &niaj).await.status, 401);
    assert_eq!(app.login("niaj", "password-niaj").await.status, 401);
    assert_eq!(
        app.get("/api/v1/friends", &olivia).await.body["friends"],
        json!([])
    );
    // The name is free again.
    assert_eq!(app.register_raw("niaj", "password-niaj").await.status, 201);
}

async fn search_finds_by_prefix_with_pagination_and_hides_blockers(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.register("searcher").await;
    for name in ["sam1", "sam2", "sam3", "sam_x", "samwise", "tom"] {
        app.register(name).await;
    }
    let blocker = app.login("sam2", "password-sam2").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.put("/api/v1/blocks/searcher", &blocker).await.status,
        204
    );

    let page1 = app.get("/api/v1/users?q=SAM&limit=2", &me).await;
    assert_eq!(page1.status, 200, "{}", page1.body);
    let names = |r: &common::Reply| -> Vec<String> {
        r.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&page1), ["sam1", "sam3"]);
    let cursor = page1.body["next_cursor"].as_str().unwrap().to_owned();
    let page2 = app
        .get(&format!("/api/v1/users?q=sam&limit=2&cursor={cursor}"), &me)
        .await;
    assert_eq!(names(&page2), ["sam_x", "samwise"]);
    // `_` is a literal, not a wildcard.
    assert_eq!(
        names(&app.get("/api/v1/users?q=sam_", &me).await),
        ["sam_x"]
    );
    let bad_limit = app.get("/api/v1/users?q=sam&limit=0", &me).await;
    assert_eq!(
        (bad_limit.status, bad_limit.code()),
        (400, "invalid_request")
    );
    let bad_cursor = app.get("/api/v1/users?q=sam&cursor=%00%01", &me).await;
    assert_eq!(
        (bad_cursor.status, bad_cursor.code()),
        (400, "invalid_cursor")
    );
    let garbage = app.get("/api/v1/users?limit=abc", &me).await;
    assert_eq!((garbage.status, garbage.code()), (400, "invalid_request"));
}

async fn probes_report_health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = app.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (200, Some("ready"))
    );
}

async fn bad_input_gets_typed_json_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v1/auth/register";
    let malformed = app
        .raw(
            Method::POST,
            path,
            None,
            "application/json",
            b"{\"username\": ".to_vec(),
        )
        .await;
    assert_eq!((malformed.status, malformed.code()), (400, "invalid_json"));
    let wrong_type = app
        .raw(Method::POST, path, None, "text/plain", b"hello".to_vec())
        .await;
    assert_eq!(
        (wrong_type.status, wrong_type.code()),
        (415, "unsupported_media_type")
    );
    let huge = app
        .raw(
            Method::POST,
            path,
            None,
            "application/json",
            vec![b' '; 70 * 1024],
        )
        .await;
    assert_eq!((huge.status, huge.code()), (413, "payload_too_large"));
    let unknown_field = app
        .request(
            Method::POST,
            path,
            None,
            Some(json!({"username": "zed", "password": "long enough", "admin": true})),
        )
        .await;
    assert_eq!(
        (unknown_field.status, unknown_field.code()),
        (400, "invalid_request")
    );
    assert!(unknown_field.body["message"]
        .as_str()
        .unwrap()
        .contains("admin"));
    let missing_field = app
        .request(Method::POST, path, None, Some(json!({"username": "zed"})))
        .await;
    assert_eq!(
        (missing_field.status, missing_field.code()),
        (400, "invalid_request")
    );
    let no_route = app
        .request(Method::GET, "/api/v1/nowhere", None, None)
        .await;
    assert_eq!((no_route.status, no_route.code()), (404, "not_found"));
    let wrong_method = app.request(Method::GET, path, None, None).await;
    assert_eq!(
        (wrong_method.status, wrong_method.code()),
        (405, "method_not_allowed")
    );
}

async fn missing_or_bogus_tokens_are_unauthorized(backend: Backend) {
    let app = spawn_app(backend).await;
    let none = app.request(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!((none.status, none.code()), (401, "unauthorized"));
    let bogus = app.get("/api/v1/me", "not-a-real-token").await;
    assert_eq!((bogus.status, bogus.code()), (401, "unauthorized"));
    let huge = app.get("/api/v1/me", &"x".repeat(4000)).await;
    assert_eq!((huge.status, huge.code()), (401, "unauthorized"));
}

/// The access log names a request's client as the per-address limits do: the address
/// X-Forwarded-For gives only when the connection comes from a trusted proxy.
#[actix_rt::test]
async fn the_access_log_names_the_client_the_limits_see() {
    use common::process::BrokerProcess;
    let db = common::TestDatabase::new(Backend::Sqlite);
    let get = |broker: &BrokerProcess, path: &str| {
        let request = awc::Client::default()
            .get(broker.url(path))
            .insert_header(("X-Forwarded-For", "198.51.100.7"));
        async move { request.send().await.expect("answered").status().as_u16() }
    };
    let logged = |broker: &BrokerProcess, path: &str| -> Option<String> {
        let request = format!("\"GET {path} HTTP/1.1\" 200");
        broker
            .log_lines()
            .into_iter()
            .find(|line| line.contains(&request))
    };
    async fn eventually<T>(mut found: impl FnMut() -> Option<T>) -> T {
        for _ in 0..100 {
            if let Some(it) = found() {
                return it;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("never logged");
    }

    let behind_proxy =
        BrokerProcess::start_logging(&db.url, &["--trusted-proxies", "127.0.0.0/8"], None, "info")
            .await;
    // (A path of its own: the start-up's health checks are logged too.)
    assert_eq!(get(&behind_proxy, "/healthz?proxied").await, 200);
    let line = eventually(|| logged(&behind_proxy, "/healthz?proxied")).await;
    assert!(line.contains("198.51.100.7 \"GET /healthz"), "{line}");
    drop(behind_proxy);

    // Not a trusted proxy: the header is the client's own claim, and the log ignores it.
    let direct = BrokerProcess::start_logging(&db.url, &[], None, "info").await;
    assert_eq!(get(&direct, "/healthz?direct").await, 200);
    let line = eventually(|| logged(&direct, "/healthz?direct")).await;
    assert!(line.contains("127.0.0.1 \"GET /healthz"), "{line}");
    assert!(!line.contains("198.51.100.7"), "{line}");
}

/// Text with a NUL byte, which Postgres refuses, never reaches a query: a login with such a
/// name is a wrong login and a search with such a prefix finds nobody (both were 500s).
async fn names_no_user_could_have_find_nobody_on_every_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.register("ann").await;
    let login = app.login("a\u{0}nn", "password-ann").await;
    assert_eq!((login.status, login.code()), (401, "invalid_credentials"));
    let search = app.get("/api/v1/users?q=a%00", &token).await;
    assert_eq!(search.status, 200, "{}", search.body);
    assert_eq!(search.body, json!({"users": [], "next_cursor": null}));
}

/// A 405 names the methods the route has (RFC 9110), also once its body is made JSON.
#[actix_rt::test]
async fn wrong_methods_get_405_with_the_allowed_methods() {
    let app = spawn_app(Backend::Sqlite).await;
    for (method, path, allowed) in [
        (Method::TRACE, "/api/v1/me", "GET, PATCH, DELETE"),
        (Method::GET, "/api/v1/auth/login", "POST"),
        (Method::POST, "/healthz", "GET"),
    ] {
        let reply = app.request(method.clone(), path, None, None).await;
        assert_eq!(
            (reply.status, reply.code()),
            (405, "method_not_allowed"),
            "{method} {path}"
        );
        let allow = reply.headers.get("allow").map(|v| v.to_str().unwrap());
        assert_eq!(allow, Some(allowed), "{method} {path}");
    }
}

/// A body over the limit gets its whole 413 even while the client is still sending it (the
/// broker reads the rest first), and the connection then serves the next request. Past the
/// drain limit the 413 comes at once, without waiting for the body, and the connection closes.
#[actix_rt::test]
async fn an_oversized_body_gets_its_413_whole_and_the_connection_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(Backend::Sqlite).await;
    let head = |length: usize| {
        format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n",
            app.address
        )
    };

    let mut stream = tokio::net::TcpStream::connect(&app.address)
        .await
        .expect("connect");
    let body = vec![b' '; 900 * 1024];
    stream
        .write_all(head(body.len()).as_bytes())
        .await
        .expect("head");
    // All of it goes through: nothing is reset under the client's feet.
    stream.write_all(&body).await.expect("the whole body");
    let (status, text) = http_answer(&mut stream).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("\"payload_too_large\""), "{text}");
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.address).as_bytes())
        .await
        .expect("the next request");
    let (status, text) = http_answer(&mut stream).await;
    assert_eq!(
        status, 200,
        "the same connection serves the next request: {text}"
    );

    let mut stream = tokio::net::TcpStream::connect(&app.address)
        .await
        .expect("connect");
    stream
        .write_all(head(2 * 1024 * 1024).as_bytes())
        .await
        .expect("head");
    let (status, text) = http_answer(&mut stream).await;
    assert_eq!(status, 413, "{text}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut rest),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the connection is closed after a 413 for a body too long to drain: {closed:?}"
    );

    /// One HTTP/1.1 answer with a `Content-Length`: its status and its text.
    async fn http_answer(stream: &mut tokio::net::TcpStream) -> (u16, String) {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .expect("a Content-Length");
                if seen.len() >= end + 4 + length {
                    let status = text[9..12].parse().expect("a status");
                    return (status, text);
                }
            }
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk))
                    .await
                    .expect("an answer within 10 s")
                    .expect("read");
            assert!(read > 0, "closed before a whole answer: {text}");
            seen.extend_from_slice(&chunk[..read]);
        }
    }
}

/// Sessions expire: a lifetime of one second makes a token useless two seconds later.
#[actix_rt::test]
async fn expired_sessions_are_unauthorized() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.session_lifetime = std::time::Duration::from_secs(1)
    })
    .await;
    let token = app.register("oscar").await;
    assert_eq!(app.get("/api/v1/me", &token).await.status, 200);
    actix_rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.get("/api/v1/me", &token).await.status, 401);
}

/// With Postgres gone, requests get 503 `unavailable` and readiness fails; nothing panics.
#[actix_rt::test]
async fn database_outage_gives_503_unavailable() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let app = spawn_app(backend).await;
    let token = app.register("peggy").await;
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    {
        use diesel::{connection::SimpleConnection, Connection};
        let mut admin = diesel::PgConnection::establish(&common::postgres_admin_url()).unwrap();
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
            ))
            .unwrap();
    }
    let me = app.get("/api/v1/me", &token).await;
    assert_eq!((me.status, me.code()), (503, "unavailable"), "{}", me.body);
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!((ready.status, ready.code()), (503, "unavailable"));
    assert_eq!(
        app.request(Method::GET, "/healthz", None, None)
            .await
            .status,
        200
    );
}

/// 20 wrong passwords for one username at once: at most `--login-max-failures` (5) are checked,
/// the rest get 429 without waiting for bcrypt.
async fn parallel_wrong_passwords_reach_bcrypt_at_most_the_limit(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("gina").await;
    let attempts =
        (0..20).map(|i| app.login("gina", if i % 2 == 0 { "wrong one" } else { "GINA" }));
    let replies = futures_util::future::join_all(attempts).await;
    let checked = replies.iter().filter(|r| r.status == 401).count();
    let throttled: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert!(checked <= 5, "{checked} wrong passwords were checked");
    assert_eq!(checked + throttled.len(), 20);
    assert!(throttled
        .iter()
        .all(|r| r.code() == "rate_limited" && r.headers.contains_key("retry-after")));
}

/// bcrypt reads 72 bytes; a longer password never passes for one whose first 72 bytes match.
async fn passwords_past_72_bytes_never_match_on_any_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let exact = "A".repeat(72);
    let token = app.register_raw("hank", &exact).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let longer = format!("{exact}anything");
    let login = app.login("hank", &longer).await;
    assert_eq!((login.status, login.code()), (401, "invalid_credentials"));
    let change = app
        .request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&token),
            Some(json!({"old_password": longer, "new_password": "a new password"})),
        )
        .await;
    assert_eq!((change.status, change.code()), (403, "wrong_password"));
    let delete = app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&token),
            Some(json!({"password": longer})),
        )
        .await;
    assert_eq!((delete.status, delete.code()), (403, "wrong_password"));
    assert_eq!(app.login("hank", &exact).await.status, 200);
}

async fn wrong_current_passwords_are_throttled_like_logins(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.register("ivy").await;
    let change = || {
        app.request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&token),
            Some(json!({"old_password": "not it at all", "new_password": "a new password"})),
        )
    };
    for _ in 0..5 {
        assert_eq!(change().await.code(), "wrong_password");
    }
    let sixth = change().await;
    assert_eq!((sixth.status, sixth.code()), (429, "rate_limited"));
    // The same account's logins wait too: one limit per account, whatever the path.
    let login = app.login("ivy", "password-ivy").await;
    assert_eq!((login.status, login.code()), (429, "rate_limited"));
}

/// One bcrypt thread at the real cost and room for two waiting checks: of 12 logins at once,
/// the ones that find the queue full get 503 `overloaded` with Retry-After at once.
async fn password_checks_past_the_queue_get_503_overloaded_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.bcrypt_cost = 12;
        c.bcrypt_concurrency = 1;
        c.bcrypt_queue = 2;
    })
    .await;
    let names: Vec<String> = (0..12).map(|i| format!("nobody{i}")).collect();
    let attempts = names.iter().map(|name| app.login(name, "whatever123"));
    let replies = futures_util::future::join_all(attempts).await;
    let overloaded: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    let checked = replies.iter().filter(|r| r.status == 401).count();
    assert!(
        overloaded.len() >= 12 - 3 - 1,
        "only {} overloaded",
        overloaded.len()
    );
    assert_eq!(overloaded.len() + checked, 12);
    for reply in overloaded {
        assert_eq!(reply.code(), "overloaded");
        assert_eq!(reply.headers.get("retry-after").unwrap(), "1");
    }
    // Other requests are served meanwhile and after.
    assert_eq!(
        app.request(Method::GET, "/healthz", None, None)
            .await
            .status,
        200
    );
}

/// Usernames are ASCII by rule and folded to lowercase, so `Alice` and `alice` are one name
/// and look-alike forms (fullwidth letters, Cyrillic a) are not names at all.
async fn look_alike_usernames_cannot_coexist(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.register_raw("Alice", "password-alice").await.body["user"]["username"],
        "alice"
    );
    for twin in ["alice", "ALICE", "aLiCe"] {
        let reply = app.register_raw(twin, "password-twin").await;
        assert_eq!(
            (reply.status, reply.code()),
            (409, "username_taken"),
            "{twin}"
        );
    }
    for look_alike in [
        "\u{ff41}lice",
        "\u{0430}lice",
        "alic\u{0435}",
        "al\u{0131}ce",
    ] {
        let reply = app.register_raw(look_alike, "password-twin").await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "invalid_username"),
            "{look_alike}"
        );
    }
    assert_eq!(app.login("ALICE", "password-alice").await.status, 200);
}

async fn register_from(app: &common::TestApp, name: &str, forwarded_for: &str) -> common::Reply {
    app.with_headers(
        Method::POST,
        "/api/v1/auth/register",
        &[("X-Forwarded-For", forwarded_for)],
        Some(json!({"username": name, "password": "password-12345"})),
    )
    .await
}

/// Behind a trusted proxy (the test client's 127.0.0.1), each client address the proxy reports
/// gets `--registrations-per-hour`; addresses a client writes itself further left don't count.
async fn registrations_are_limited_per_client_address(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.registrations_per_hour = 3;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for i in 0..3 {
        let reply = register_from(&app, &format!("first{i}"), "198.51.100.1").await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let over = register_from(&app, "first3", "198.51.100.1").await;
    assert_eq!((over.status, over.code()), (429, "rate_limited"));
    let wait: u64 = over
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1200).contains(&wait), "{wait}");
    // A client claiming another address on the left is still the one the proxy saw.
    let spoofed = register_from(&app, "first4", "203.0.113.50, 198.51.100.1").await;
    assert_eq!(spoofed.status, 429);
    // Another address has its own allowance.
    assert_eq!(
        register_from(&app, "second0", "198.51.100.2").await.status,
        201
    );
}

/// With no trusted proxies, X-Forwarded-For is ignored: every request here is 127.0.0.1.
async fn forwarded_for_is_believed_only_from_trusted_proxies(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.registrations_per_hour = 2).await;
    assert_eq!(register_from(&app, "one", "198.51.100.1").await.status, 201);
    assert_eq!(register_from(&app, "two", "198.51.100.2").await.status, 201);
    let third = register_from(&app, "three", "198.51.100.3").await;
    assert_eq!((third.status, third.code()), (429, "rate_limited"));
    // Logins are not registrations.
    assert_eq!(app.login("one", "password-12345").await.status, 200);
}

fn header<'a>(reply: &'a common::Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

async fn responses_carry_security_headers_and_cors_is_off_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let page = app.request(Method::GET, "/", None, None).await;
    let health = app.request(Method::GET, "/healthz", None, None).await;
    let denied = app.request(Method::GET, "/api/v1/me", None, None).await;
    let missing = app.request(Method::GET, "/nothing-here", None, None).await;
    for reply in [&page, &health, &denied, &missing] {
        assert_eq!(header(reply, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(reply, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(reply, "x-frame-options"), Some("DENY"));
    }
    assert!(header(&page, "content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    // No CORS: another site's page gets no permission to read anything.
    let cross = app
        .with_headers(
            Method::GET,
            "/healthz",
            &[("Origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(header(&cross, "access-control-allow-origin"), None);
    let preflight = app
        .with_headers(
            Method::OPTIONS,
            "/api/v1/auth/login",
            &[
                ("Origin", "https://evil.example"),
                ("Access-Control-Request-Method", "POST"),
            ],
            None,
        )
        .await;
    assert_eq!(header(&preflight, "access-control-allow-origin"), None);
}

async fn listed_origins_may_call_the_api_across_origins(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = app
        .with_headers(
            Method::OPTIONS,
            "/api/v1/auth/login",
            &[
                ("Origin", "https://app.example.com"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            None,
        )
        .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let token = app.register("jade").await;
    let me = app
        .with_headers(
            Method::GET,
            "/api/v1/me",
            &[
                ("Origin", "https://app.example.com"),
                ("Authorization", &format!("Bearer {token}")),
            ],
            None,
        )
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(
        header(&me, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // The broker's own page still works with CORS on; other origins still get nothing.
    let own = format!("http://{}", app.address);
    let same = app
        .with_headers(Method::GET, "/healthz", &[("Origin", own.as_str())], None)
        .await;
    assert_eq!(same.status, 200);
    let evil = app
        .with_headers(
            Method::GET,
            "/healthz",
            &[("Origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(header(&evil, "access-control-allow-origin"), None);
    // Served, but without permission for that page to read it: the browser withholds it.
    assert_eq!(evil.status, 200);
}

//! Test harness: starts the real broker on port 0 against a fresh database (a temporary SQLite
//! file, or a fresh Postgres database) and talks HTTP and WebSocket to it.
#![allow(dead_code)]

pub mod data_channel;
pub mod debian;
pub mod process;
pub mod raw_socket;
pub mod stun;
pub mod ws;

use awc::http::Method;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard::config::{Config, DatabaseUrl};
use switchboard::startup::Application;

/// Runs one async test body on both databases: `fn_sqlite` and `fn_postgres` tests.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[actix_rt::test] async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[actix_rt::test] async fn $name() {
                if let Some(backend) = $crate::common::Backend::postgres() { super::$name(backend).await }
            })*
        }
    };
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl Backend {
    /// Postgres when it answers. Under CI=true it is mandatory; elsewhere a missing server
    /// skips the Postgres half with a note.
    pub fn postgres() -> Option<Self> {
        match diesel::PgConnection::establish(&postgres_admin_url()) {
            Ok(_) => Some(Backend::Postgres),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("Postgres is required under CI=true: {e}")
            }
            Err(e) => {
                eprintln!("skipping Postgres test: {e}");
                None
            }
        }
    }
}

/// A fresh database for one test, removed when the test ends.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
                Self {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = diesel::PgConnection::establish(&admin).expect("postgres");
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create database");
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .unwrap_or(admin);
                Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl TestDatabase {
    /// The same database for a second broker; the original keeps ownership and cleans up.
    pub fn shared(&self) -> TestDatabase {
        TestDatabase {
            url: self.url.clone(),
            _dir: None,
            pg_name: None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = diesel::PgConnection::establish(&postgres_admin_url()) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Settings for tests: port 0, cheap bcrypt, short timers.
pub fn test_config(db_url: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().expect("addr");
    // Tests run in parallel: each broker's STUN/TURN relay takes a free UDP port. It listens
    // on loopback, so it relays to loopback peers: the one exception to the refused ranges
    // (src/ice/peers.rs) that every relaying test depends on, said here explicitly.
    config.relay_listen = "127.0.0.1:0".parse().expect("addr");
    config.database_url = DatabaseUrl::parse(db_url).expect("db url");
    config.bcrypt_cost = 4;
    // Tests register many accounts from one address; the limit has its own test.
    config.registrations_per_hour = 0;
    config.db_pool_size = 4;
    // Generous: a test client only answers pings while it reads, and tests often wait on
    // one socket while another sits unread. The heartbeat test shortens these.
    config.heartbeat_interval = Duration::from_millis(300);
    config.heartbeat_timeout = Duration::from_secs(3);
    config.ws_auth_timeout = Duration::from_millis(500);
    config.presence_grace = Duration::from_millis(300);
    config.ring_timeout = Duration::from_millis(800);
    config.reconnect_grace = Duration::from_millis(500);
    config
}

pub struct TestApp {
    pub address: String,
    /// `host:port` of the `--metrics-listen` listener, when the test asked for one.
    pub metrics_address: Option<String>,
    pub client: awc::Client,
    pub db: TestDatabase,
    pub shutdown: switchboard::startup::ShutdownHandle,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: awc::http::header::HeaderMap,
}

impl Reply {
    /// The `error` code of a JSON error body.
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<no error code>")
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(TestDatabase::new(backend), tweak).await
}

/// Starts the broker on an existing database (to test what a restart finds).
pub async fn spawn_app_on(db: TestDatabase, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&db.url);
    tweak(&mut config);
    let app = Application::build(config).await.expect("app builds");
    let address = format!("127.0.0.1:{}", app.port());
    let metrics_address = app.metrics_address().map(|a| a.to_string());
    let shutdown = app.shutdown_handle();
    actix_rt::spawn(app.run_until_stopped());
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    TestApp {
        address,
        metrics_address,
        client,
        db,
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let res = match body {
            Some(body) => req.send_json(&body).await,
            None => req.send().await,
        };
        Self::reply(res.expect("request sent")).await
    }

    /// A JSON request with extra headers (origins, forwarded addresses).
    pub async fn with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        for (name, value) in headers {
            req = req.append_header((*name, *value));
        }
        let res = match body {
            Some(body) => req.send_json(&body).await,
            None => req.send().await,
        };
        Self::reply(res.expect("request sent")).await
    }

    /// Sends raw bytes with a chosen content type, for malformed-input tests.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, self.url(path))
            .insert_header(("Content-Type", content_type));
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        Self::reply(req.send_body(body).await.expect("request sent")).await
    }

    async fn reply<S>(mut res: awc::ClientResponse<S>) -> Reply
    where
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.body().limit(1 << 20).await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    pub async fn put(&self, path: &str, token: &str) -> Reply {
        self.request(Method::PUT, path, Some(token), None).await
    }

    pub async fn register_raw(&self, username: &str, password: &str) -> Reply {
        self.request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({ "username": username, "password": password })),
        )
        .await
    }

    /// Registers `username` (password "password-<username>") and returns its token.
    pub async fn register(&self, username: &str) -> String {
        let reply = self
            .register_raw(username, &format!("password-{username}"))
            .await;
        assert_eq!(reply.status, 201, "register {username}: {}", reply.body);
        reply.body["token"].as_str().expect("token").to_owned()
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "username": username, "password": password })),
        )
        .await
    }

    /// Makes two registered users friends through the request/accept flow.
    pub async fn befriend(&self, a_token: &str, b_name: &str, b_token: &str, a_name: &str) {
        let sent = self
            .post(
                "/api/v1/friends/requests",
                a_token,
                json!({ "username": b_name }),
            )
            .await;
        assert_eq!(sent.status, 201, "{}", sent.body);
        let accepted = self
            .post(
                &format!("/api/v1/friends/requests/{a_name}/accept"),
                b_token,
                json!({}),
            )
            .await;
        assert_eq!(accepted.status, 200, "{}", accepted.body);
    }
}

/// Serves the app `factory` makes on a free loopback port, in the background (one worker, no
/// signal handling): a stand-in for a service the broker calls. Answers its address.
pub fn serve_on_loopback<F, T, B>(factory: F) -> String
where
    F: Fn() -> actix_web::App<T> + Send + Clone + 'static,
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let server = actix_web::HttpServer::new(factory)
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
    actix_rt::spawn(server);
    address
}

//! docs/deploy.md's configuration files, each checked by the tool that reads it in production,
//! and its nginx and Caddy sites carrying a real broker's REST API and WebSocket.
//!
//! The convention: a fenced block in docs/deploy.md whose info string carries `check=<kind>`
//! after its language (```` ```nginx check=nginx ````) is a configuration file, written to a
//! temporary directory and checked here:
//!
//! | kind | checked with |
//! |---|---|
//! | `nginx` | `nginx -t`, the site wrapped in `events {} http { ... }`, with a self-signed certificate made by `openssl` in place of the Let's Encrypt paths |
//! | `caddy` | `caddy validate --adapter caddyfile` |
//! | `systemd` | `systemd-analyze verify`, `ExecStart` pointed at the built binary (verify needs it to exist) |
//! | `postgres` | `postgres -C` on a data directory holding only that file as `postgresql.conf`: it parses every line and refuses unknown names and bad values (run as the `postgres` user when the test runs as root, which Postgres refuses) |
//! | `env` | the broker's own flag parser: every `SWITCHBOARD_*` name must be one of its variables and its value must parse |
//! | `promtool` | `promtool check config` |
//!
//! Blocks of other languages are commands to type (`sh`), not files; every other block must
//! carry a `check=`, and every kind above must appear, so no example goes unchecked quietly.
//!
//! The tools are Debian's packages (nginx, caddy, prometheus, systemd, postgresql, openssl,
//! socat), installed with apt-get when missing; a test fails, never skips, when that fails.
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::debian::is_root;
use common::ws::{answered_call, WsClient};
use common::{spawn_app_with, Backend, TestApp};
use serde_json::{json, Value};

/// The kinds of check there are; each must be used by at least one block.
const KINDS: &[&str] = &["nginx", "caddy", "systemd", "postgres", "env", "promtool"];

/// Where the nginx example expects its certificate; the tests put a self-signed one there.
const CERT_DIR: &str = "/etc/letsencrypt/live/switchboard.example.org/";

/// A configuration block of docs/deploy.md.
struct Block {
    check: String,
    text: String,
    /// Its first line in docs/deploy.md, for messages.
    line: usize,
}

fn deploy_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fenced block: (info string, text, line of the opening fence).
fn fenced_blocks(markdown: &str) -> Vec<(String, String, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (n, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new(), n + 1)),
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                blocks.extend(open.take());
            }
            (Some((_, text, _)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "docs/deploy.md has an unclosed code block");
    blocks
}

fn config_blocks() -> Vec<Block> {
    let mut blocks = Vec::new();
    for (info, text, line) in fenced_blocks(&deploy_md()) {
        let check = info
            .split_whitespace()
            .find_map(|word| word.strip_prefix("check="));
        match check {
            Some(check) => {
                assert!(
                    KINDS.contains(&check),
                    "docs/deploy.md:{line}: unknown check={check} (known: {KINDS:?})"
                );
                blocks.push(Block {
                    check: check.to_owned(),
                    text,
                    line,
                });
            }
            None => assert!(
                info == "sh",
                "docs/deploy.md:{line}: a ```{info} block without check=: configuration files \
                 must be checked (tests/deploy.rs), commands go in ```sh blocks"
            ),
        }
    }
    blocks
}

fn blocks_of(kind: &str) -> Vec<Block> {
    let blocks: Vec<Block> = config_blocks()
        .into_iter()
        .filter(|b| b.check == kind)
        .collect();
    assert!(
        !blocks.is_empty(),
        "docs/deploy.md has no check={kind} block"
    );
    blocks
}

// ---- tools -------------------------------------------------------------------------------

/// The Postgres server binary: on PATH, or where Debian's packages put it.
fn postgres_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("postgres"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin/postgres"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

/// Debian packages the checks need, each with how to tell it is installed.
fn missing_packages() -> Vec<&'static str> {
    let file = |path: &str| Path::new(path).exists();
    let mut missing = Vec::new();
    for (installed, package) in [
        (file("/usr/sbin/nginx"), "nginx"),
        (file("/usr/bin/caddy"), "caddy"),
        (file("/usr/bin/promtool"), "prometheus"),
        (file("/usr/bin/systemd-analyze"), "systemd"),
        (file("/usr/bin/openssl"), "openssl"),
        (file("/usr/bin/socat"), "socat"),
        (postgres_binary().is_some(), "postgresql"),
    ] {
        if !installed {
            missing.push(package);
        }
    }
    missing
}

/// Installs whatever is missing, once for all the tests of this file.
fn ensure_tools() {
    common::debian::install_missing("the deployment checks", missing_packages);
}

/// Runs `command`, returning its output; panics with everything it said if it fails.
fn run_ok(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

// ---- nginx -------------------------------------------------------------------------------

/// A self-signed certificate and key in `dir`, named like certbot's.
fn self_signed_certificate(dir: &Path) {
    run_ok(
        "openssl req",
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=switchboard.example.org", "-keyout"])
            .arg(dir.join("privkey.pem"))
            .arg("-out")
            .arg(dir.join("fullchain.pem")),
    );
}

/// `site` (the example, or the example on other ports) in a whole nginx.conf under `dir`, with
/// a self-signed certificate where the example expects Let's Encrypt's.
fn nginx_conf(dir: &Path, site: &str) -> PathBuf {
    self_signed_certificate(dir);
    assert!(
        site.contains(CERT_DIR),
        "the nginx example no longer uses {CERT_DIR}; update tests/deploy.rs"
    );
    let site = site.replace(CERT_DIR, &format!("{}/", dir.display()));
    fs::create_dir_all(dir.join("logs")).expect("logs dir");
    let conf = dir.join("nginx.conf");
    fs::write(&conf, format!("events {{}}\nhttp {{\n{site}}}\n")).expect("nginx.conf");
    conf
}

/// nginx with its prefix (relative paths, logs, temp files) in `dir` and nothing in /var.
fn nginx(dir: &Path, conf: &Path, globals: &str) -> Command {
    let mut command = Command::new("/usr/sbin/nginx");
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-g")
        .arg(format!(
            "pid {}/nginx.pid; error_log stderr;{globals}",
            dir.display()
        ));
    command
}

#[test]
fn nginx_example_passes_nginx_t() {
    ensure_tools();
    for block in blocks_of("nginx") {
        let dir = temp_dir();
        let conf = nginx_conf(dir.path(), &block.text);
        let output = run_ok(
            &format!("nginx -t on docs/deploy.md:{}", block.line),
            nginx(dir.path(), &conf, "").arg("-t"),
        );
        let said = all_output(&output);
        assert!(said.contains("test is successful"), "{said}");
        assert!(
            !said.contains("[warn]"),
            "nginx warns about docs/deploy.md:{}:\n{said}",
            block.line
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `text` with `from` replaced by `to`; `from` must be there (the example changed otherwise).
fn replace_present(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the nginx example no longer has {from:?}; update tests/deploy.rs"
    );
    text.replace(from, to)
}

/// A child process killed, with its process group, when dropped.
struct Running {
    child: Child,
    name: &'static str,
    /// Where its output goes, shown if it fails to come up.
    log: PathBuf,
}

impl Running {
    fn spawn(name: &'static str, log: PathBuf, command: &mut Command) -> Self {
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, name, log }
    }

    /// Waits until `addr` accepts connections.
    fn wait_for(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "{} is not listening on {addr} ({exited:?}):\n{}",
                    self.name,
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signals the process group this struct started (its own pid), nothing else.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Every metric name written in backticks in the table of the guide's Metrics section.
fn metric_names_in_the_guide() -> Vec<String> {
    let guide = deploy_md();
    let section = guide
        .split_once("\n## Metrics\n")
        .map(|(_, rest)| rest)
        .expect("docs/deploy.md has a Metrics section");
    section
        .lines()
        .filter(|line| line.starts_with('|'))
        .flat_map(|row| row.split('`').skip(1).step_by(2))
        .filter(|word| word.starts_with("switchboard_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// An HTTP client for the broker through the proxy (the client side of the bridge).
struct Proxied {
    address: SocketAddr,
    client: awc::Client,
}

impl Proxied {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn get(&self, path: &str) -> u16 {
        let response = self.client.get(self.url(path)).send().await;
        response.expect("GET through the proxy").status().as_u16()
    }

    /// POSTs `body` (with `token`, if any) and returns the status and the JSON answer.
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.client.post(self.url(path));
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        Self::answer(request.send_json(&body).await).await
    }

    /// POSTs `body` as is, labelled JSON.
    async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let request = self.client.post(self.url(path));
        Self::answer(
            request
                .content_type("application/json")
                .send_body(body)
                .await,
        )
        .await
    }

    async fn answer(
        response: Result<awc::ClientResponse, awc::error::SendRequestError>,
    ) -> (u16, Value) {
        let mut response = response.expect("POST through the proxy");
        let bytes = response.body().await.expect("body");
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (response.status().as_u16(), json)
    }
}

/// The broker behind a proxy on the loopback: what `app`'s clients get through `bridge`, the
/// plain-HTTP end of a TLS tunnel to the proxy, from 127.0.0.2. The proxy answers /metrics
/// with `metrics_refusal`.
async fn through_the_proxy(app: &TestApp, bridge: SocketAddr, metrics_refusal: u16) {
    let proxied = Proxied {
        address: bridge,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish(),
    };

    // The web page and the health check through the proxy; the metrics not.
    assert_eq!(proxied.get("/").await, 200);
    assert_eq!(proxied.get("/healthz").await, 200);
    assert_eq!(
        proxied.get("/metrics").await,
        metrics_refusal,
        "the proxy refuses /metrics"
    );
    // ... which the broker serves to whoever reaches it directly, with every metric the guide
    // names.
    let mut scrape = proxied
        .client
        .get(format!("http://{}/metrics", app.address))
        .send()
        .await
        .expect("metrics");
    assert_eq!(scrape.status(), 200);
    let scrape = scrape.body().limit(1 << 22).await.expect("metrics body");
    let scrape = String::from_utf8_lossy(&scrape);
    let named = metric_names_in_the_guide();
    assert!(named.len() >= 5, "the guide names metrics: {named:?}");
    for name in named {
        assert!(
            scrape.contains(&format!("\n{name}")),
            "docs/deploy.md names {name}, which /metrics does not serve"
        );
    }

    // REST: the client's own address counts, not the proxy's, and not one it makes up.
    let (status, registered) = proxied
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "alice", "password": "password-alice"}),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let alice = registered["token"].as_str().expect("token").to_owned();
    let spoofed = proxied
        .client
        .post(proxied.url("/api/v1/auth/register"))
        .insert_header(("X-Forwarded-For", "198.51.100.8"))
        .send_json(&json!({"username": "mallory", "password": "password-mallory"}))
        .await
        .expect("register");
    assert_eq!(
        spoofed.status(),
        429,
        "the second registration from 127.0.0.2 is over the limit, whatever X-Forwarded-For says"
    );
    // Directly, from the proxy's own address: not the proxied client's limit.
    let bob = app.register("bob").await;
    let asked = proxied
        .post(
            "/api/v1/friends/requests",
            Some(&alice),
            json!({"username": "bob"}),
        )
        .await;
    assert_eq!(asked.0, 201, "{}", asked.1);
    let accepted = proxied
        .post(
            "/api/v1/friends/requests/alice/accept",
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(accepted.0, 200, "{}", accepted.1);

    // Bodies: up to the broker's limit they reach it (whitespace is no JSON: its 400), past
    // it they are refused in the broker's format (by nginx itself, or by the broker through
    // Caddy).
    let under = proxied
        .post_raw("/api/v1/auth/login", vec![b' '; 60 * 1024])
        .await;
    assert_eq!(under.0, 400, "{}", under.1);
    assert!(
        under.1["error"].is_string(),
        "the broker's answer: {}",
        under.1
    );
    let over = proxied
        .post_raw("/api/v1/auth/login", vec![b' '; 100 * 1024])
        .await;
    assert_eq!(
        (over.0, over.1["error"].as_str()),
        (413, Some("payload_too_large")),
        "{}",
        over.1
    );

    // The WebSocket: a page of the broker's own origin may open it (the Host reaches the
    // broker), another site's may not, and a call is signalled through the proxy.
    let own_origin = format!("https://{bridge}");
    let (opened, _) = awc::Client::new()
        .ws(format!("ws://{bridge}/ws"))
        .origin(own_origin.as_str())
        .connect()
        .await
        .expect("upgrade from the own origin");
    assert_eq!(opened.status(), 101);
    let foreign = awc::Client::new()
        .ws(format!("ws://{bridge}/ws"))
        .origin("https://elsewhere.example")
        .connect()
        .await;
    let refused = match foreign {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
        Err(e) => panic!("{e}"),
        Ok((response, _)) => response.status().as_u16(),
    };
    assert_eq!(refused, 403, "another site's page may not open the socket");
    let through = bridge.to_string();
    let (mut alice_ws, welcome) = WsClient::login(&through, &alice).await;
    assert_eq!(welcome["user"]["username"], "alice", "{welcome}");
    let (mut bob_ws, _) = WsClient::login(&through, &bob).await;
    let call = answered_call(&mut alice_ws, &mut bob_ws, "bob").await;
    let candidate = json!({"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host"});
    alice_ws
        .ok(json!({"type": "signal", "call_id": call, "kind": "candidate", "candidate": candidate}))
        .await;
    let signal = bob_ws.recv_type("signal").await;
    assert_eq!(
        (&signal["from"], &signal["candidate"]),
        (&json!("alice"), &candidate),
        "{signal}"
    );
}

/// A broker that trusts 127.0.0.1 as its proxy and lets one registration through per address
/// (to see which address it counts).
async fn broker_behind_a_proxy() -> TestApp {
    spawn_app_with(Backend::Sqlite, |config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        config.registrations_per_hour = 1;
    })
    .await
}

/// socat: plain HTTP on a loopback port in, TLS to `tls` out, from 127.0.0.2 so that the
/// client and the proxy have different addresses. Returns the plain end.
fn tls_tunnel(dir: &Path, tls: u16) -> (Running, SocketAddr) {
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut tunnel = Running::spawn(
        "socat",
        dir.join("socat.log"),
        Command::new("socat")
            .arg(format!(
                "TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork",
                plain.port()
            ))
            .arg(format!("OPENSSL:127.0.0.1:{tls},verify=0,bind=127.0.0.2")),
    );
    tunnel.wait_for(plain);
    (tunnel, plain)
}

/// The nginx example in front of a real broker, as in production but on loopback ports: nginx
/// terminates TLS (a self-signed certificate) and proxies to the broker.
#[actix_rt::test]
async fn nginx_example_carries_rest_and_websocket_to_the_broker() {
    ensure_tools();
    let app = broker_behind_a_proxy().await;
    let site = &blocks_of("nginx")[0].text;
    let (tls, plain) = (free_port(), free_port());
    let site = replace_present(
        site,
        "server 127.0.0.1:8080;",
        &format!("server {};", app.address),
    );
    let site = replace_present(
        &site,
        "listen 443 ssl http2;",
        &format!("listen 127.0.0.1:{tls} ssl http2;"),
    );
    let site = replace_present(&site, "listen [::]:443 ssl http2;", "");
    let site = replace_present(&site, "listen 80;", &format!("listen 127.0.0.1:{plain};"));
    let site = replace_present(&site, "listen [::]:80;", "");
    let dir = temp_dir();
    let conf = nginx_conf(dir.path(), &site);
    // One process, in the foreground, as whoever runs the test (no switch to `nobody`).
    let mut proxy = Running::spawn(
        "nginx",
        dir.path().join("nginx.log"),
        &mut nginx(dir.path(), &conf, " daemon off; master_process off;"),
    );
    proxy.wait_for(SocketAddr::from(([127, 0, 0, 1], tls)));
    let (_tunnel, bridge) = tls_tunnel(dir.path(), tls);
    through_the_proxy(&app, bridge, 403).await;
}

/// The Caddy example in front of a real broker: the site on a loopback port with a certificate
/// from Caddy's internal CA instead of Let's Encrypt, no admin endpoint, no redirect listener.
#[actix_rt::test]
async fn caddy_example_carries_rest_and_websocket_to_the_broker() {
    ensure_tools();
    let app = broker_behind_a_proxy().await;
    let (tls, plain) = (free_port(), free_port());
    let site = &blocks_of("caddy")[0].text;
    let site = replace_present(
        site,
        "reverse_proxy 127.0.0.1:8080",
        &format!("reverse_proxy {}", app.address),
    );
    let site = replace_present(
        &site,
        "switchboard.example.org {",
        &format!("https://127.0.0.1:{tls} {{\n\ttls internal"),
    );
    let globals = format!(
        "{{\n\tadmin off\n\tskip_install_trust\n\tauto_https disable_redirects\n\
         \thttp_port {plain}\n\thttps_port {tls}\n}}\n"
    );
    let dir = temp_dir();
    let file = dir.path().join("Caddyfile");
    fs::write(&file, format!("{globals}{site}")).expect("Caddyfile");
    let mut proxy = Running::spawn(
        "caddy",
        dir.path().join("caddy.log"),
        caddy(dir.path())
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file),
    );
    proxy.wait_for(SocketAddr::from(([127, 0, 0, 1], tls)));
    let (_tunnel, bridge) = tls_tunnel(dir.path(), tls);
    through_the_proxy(&app, bridge, 404).await;
}

/// Caddy with its state (certificates, autosave) in `dir`, not in the real home directory.
fn caddy(dir: &Path) -> Command {
    let mut command = Command::new("/usr/bin/caddy");
    command
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    command
}

// ---- the others --------------------------------------------------------------------------

#[test]
fn caddy_example_passes_caddy_validate() {
    ensure_tools();
    for block in blocks_of("caddy") {
        let dir = temp_dir();
        let file = dir.path().join("Caddyfile");
        fs::write(&file, &block.text).expect("Caddyfile");
        let output = run_ok(
            &format!("caddy validate on docs/deploy.md:{}", block.line),
            caddy(dir.path())
                .args(["validate", "--adapter", "caddyfile", "--config"])
                .arg(&file),
        );
        let said = all_output(&output);
        assert!(said.contains("Valid configuration"), "{said}");
        assert!(
            !said.contains("not formatted"),
            "docs/deploy.md:{}: run `caddy fmt` on the example:\n{said}",
            block.line
        );
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    ensure_tools();
    for block in blocks_of("systemd") {
        let from = "ExecStart=/usr/local/bin/switchboard";
        assert!(
            block.text.contains(from),
            "docs/deploy.md:{}: the unit no longer starts /usr/local/bin/switchboard; update \
             tests/deploy.rs",
            block.line
        );
        // verify checks that ExecStart's binary exists and is executable: the one just built.
        let unit = block.text.replace(
            from,
            &format!("ExecStart={}", env!("CARGO_BIN_EXE_switchboard")),
        );
        let dir = temp_dir();
        let file = dir.path().join("switchboard.service");
        fs::write(&file, unit).expect("unit file");
        let output = run_ok(
            &format!("systemd-analyze verify on docs/deploy.md:{}", block.line),
            Command::new("/usr/bin/systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&file),
        );
        // Unknown keys and bad values are only warnings to verify: any line about the unit is
        // a failure here.
        let said = all_output(&output);
        assert!(
            !said.contains("switchboard.service"),
            "systemd-analyze verify complains about docs/deploy.md:{}:\n{said}",
            block.line
        );
    }
}

#[test]
fn postgres_settings_pass_postgres_c() {
    ensure_tools();
    let postgres = postgres_binary().expect("postgres installed by ensure_tools");
    for block in blocks_of("postgres") {
        let dir = temp_dir();
        fs::write(dir.path().join("postgresql.conf"), &block.text).expect("postgresql.conf");
        let names: Vec<&str> = block
            .text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split('=').next().unwrap_or("").trim())
            .collect();
        assert!(
            !names.is_empty(),
            "docs/deploy.md:{}: no settings",
            block.line
        );
        // Postgres refuses to run as root; its own user must read the directory.
        let mut command = if is_root() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&postgres);
            c
        } else {
            Command::new(&postgres)
        };
        // -C reads the whole file, refusing unknown names and bad values, then prints one.
        let output = run_ok(
            &format!("postgres -C on docs/deploy.md:{}", block.line),
            command.arg("-D").arg(dir.path()).args(["-C", names[0]]),
        );
        let said = all_output(&output);
        assert!(
            !said.contains("unrecognized") && !said.contains("invalid value"),
            "{said}"
        );
    }
}

#[test]
fn environment_file_names_real_settings_with_valid_values() {
    use clap::{CommandFactory, FromArgMatches};
    use switchboard::config::Config;
    for block in blocks_of("env") {
        let command = Config::command().mut_args(|arg| arg.env(None));
        let mut args = vec!["switchboard".to_owned()];
        for (n, line) in block.text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = block.line + 1 + n;
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("docs/deploy.md:{at}: not NAME=value: {line}"));
            if name == "RUST_LOG" {
                continue;
            }
            let flag = Config::command()
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == name))
                .and_then(|arg| arg.get_long().map(str::to_owned))
                .unwrap_or_else(|| panic!("docs/deploy.md:{at}: {name} is no setting"));
            args.push(format!("--{flag}={value}"));
        }
        let parsed = command
            .try_get_matches_from(&args)
            .map_err(|e| e.to_string())
            .and_then(|m| Config::from_arg_matches(&m).map_err(|e| e.to_string()));
        let config = parsed.unwrap_or_else(|e| {
            panic!("docs/deploy.md:{}: the broker refuses it: {e}", block.line)
        });
        // The proxies trusted must include the one the proxy examples connect from.
        assert!(
            config
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap())),
            "the environment file must trust the local proxy"
        );
    }
}

#[test]
fn prometheus_scrape_config_passes_promtool() {
    ensure_tools();
    for block in blocks_of("promtool") {
        let dir = temp_dir();
        let file = dir.path().join("prometheus.yml");
        fs::write(&file, &block.text).expect("prometheus.yml");
        let output = run_ok(
            &format!("promtool check config on docs/deploy.md:{}", block.line),
            Command::new("/usr/bin/promtool")
                .args(["check", "config"])
                .arg(&file),
        );
        let said = all_output(&output);
        assert!(said.contains("SUCCESS"), "{said}");
    }
}

#[test]
fn every_kind_of_check_is_used_and_every_configuration_block_is_checked() {
    let blocks = config_blocks();
    for kind in KINDS {
        assert!(
            blocks.iter().any(|b| b.check == *kind),
            "docs/deploy.md has no check={kind} block"
        );
    }
}

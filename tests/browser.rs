//! The web client in a real browser: headless Debian Chromium, driven by Playwright
//! (tests/browser/run.mjs), against the real broker binary. Both run inside a fresh network
//! namespace with only loopback, so WebRTC's ICE can use nothing but 127.0.0.1 and the test
//! never depends on (or reaches) the machine's network.
//!
//! Two runs, each with its own broker and browser, one after the other (the machine may have
//! two cores): the calls (`web_client_makes_video_calls_in_chromium`) and the installable app
//! with its service worker, push notifications and offline shell
//! (`web_client_installs_and_rings_by_push_in_chromium`). A name filter runs one of them:
//! `cargo test --test browser installs`.
//!
//! What it needs, installed here when missing (and a clear failure when that fails): Debian's
//! `chromium` and `chromium-driver` packages, Debian's `nftables` (to inject packet loss on
//! kernels without netem), and `playwright-core` and `axe-core` from npm in tests/browser/.
//! Screenshots land in target/tmp/browser/<suite>/screenshots/ (calls, app).
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::debian::is_root;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian packages the run needs, each with a file that shows it is installed.
const PACKAGES: &[(&str, &str)] = &[
    (CHROMIUM, "chromium chromium-driver"),
    ("/usr/sbin/nft", "nftables"),
];
/// npm packages the scenarios import, from tests/browser/package-lock.json.
const NPM_PACKAGES: &[&str] = &["playwright-core", "axe-core"];
/// The whole run: install checks aside, the scenarios take well under a minute.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Which scenarios of run.mjs a run drives (its SCENARIOS), and the broker's extra flags.
struct Suite {
    name: &'static str,
    broker_args: &'static str,
    /// The broker's `--ring-timeout`.
    ring_timeout: &'static str,
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Debian's Chromium (never a downloaded browser) and nftables, installed with apt-get when
/// they aren't there.
fn ensure_packages() {
    common::debian::install_missing("the browser tests", || {
        PACKAGES
            .iter()
            .filter(|(file, _)| !Path::new(file).exists())
            .map(|(_, names)| *names)
            .collect()
    });
}

/// playwright-core from tests/browser/package-lock.json, installed with `npm ci` when missing.
fn ensure_playwright() {
    let dir = browser_dir();
    let installed = |name: &str| {
        dir.join("node_modules")
            .join(name)
            .join("package.json")
            .exists()
    };
    if NPM_PACKAGES.iter().all(|name| installed(name)) {
        return;
    }
    eprintln!("installing {NPM_PACKAGES:?} in {} (npm ci)", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        // The package never downloads a browser, but say so anyway.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the browser tests need {NPM_PACKAGES:?} and `npm ci` in {} failed ({status:?}); \
         they need Node.js 20+ with npm and the npm registry",
        dir.display()
    );
}

fn free_port() -> u16 {
    // Any port is free in the new namespace; one free here too keeps a manual run beside it easy.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What runs inside the namespace: loopback up, the broker in the background, the scenarios in
/// the foreground, the broker stopped whatever happens.
const NAMESPACE_SCRIPT: &str = r#"
ip link set lo up || exit 90
"$SB_BIN" --listen "127.0.0.1:$SB_PORT" --database-url "sqlite://$SB_DB" \
    --bcrypt-cost 4 --ring-timeout "$SB_RING_TIMEOUT" --presence-grace 1s \
    --reconnect-grace 10s --heartbeat-interval 5s --heartbeat-timeout 15s $SB_BROKER_ARGS \
    >"$SB_LOG" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null' INT TERM
node run.mjs
status=$?
kill -TERM $broker 2>/dev/null
wait $broker 2>/dev/null
exit $status
"#;

#[test]
fn web_client_makes_video_calls_in_chromium() {
    run(Suite {
        name: "calls",
        broker_args: "",
        // Short enough that the missed-call scenario waits only this long, long enough that a
        // loaded machine still clicks "accept" in time in the others.
        ring_timeout: "8s",
    });
}

/// The installable app: no installability errors, the service worker's push notifications
/// (delivered through the DevTools protocol), a call that rings the closed app by push and is
/// accepted from its notification, and the offline shell. A loopback HTTP server in run.mjs
/// stands in for the browser's push service, hence the insecure (http) push endpoints.
#[test]
fn web_client_installs_and_rings_by_push_in_chromium() {
    run(Suite {
        name: "app",
        broker_args: "--push-allow-insecure-endpoints true",
        // No call here rings out, and a call is answered from a notification only after its
        // push arrives (redelivered when headless Chromium drops it) and a page opens.
        ring_timeout: "30s",
    });
}

fn run(suite: Suite) {
    // One browser run at a time: each is a broker, Chromium and a few pages.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ensure_packages();
    ensure_playwright();

    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser")
        .join(suite.name);
    let shots = out.join("screenshots");
    let _ = fs::remove_dir_all(&shots);
    fs::create_dir_all(&shots).expect("screenshot dir");
    let db_dir = tempfile::tempdir().expect("temp dir");
    let broker_log = out.join("broker.log");
    let run_log = out.join("scenarios.log");
    let port = free_port();

    // Root may create a network namespace outright; anyone else maps themselves to root in a
    // user namespace first.
    let unshare_flags = if is_root() { "-n" } else { "-rn" };
    let log_file = fs::File::create(&run_log).expect("log file");
    let mut child = Command::new("unshare")
        .args([unshare_flags, "--", "sh", "-c", NAMESPACE_SCRIPT])
        .current_dir(browser_dir())
        .env("SB_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .env("SB_PORT", port.to_string())
        .env("SB_DB", db_dir.path().join("switchboard.db"))
        .env("SB_LOG", &broker_log)
        .env("SB_RING_TIMEOUT", suite.ring_timeout)
        .env("SB_BROKER_ARGS", suite.broker_args)
        .env("SCENARIOS", suite.name)
        .env("RUST_LOG", "info")
        .env("SWITCHBOARD_URL", format!("http://127.0.0.1:{port}"))
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM)
        .env(
            "RING_TIMEOUT_MS",
            humantime_ms(suite.ring_timeout).unwrap_or(8000).to_string(),
        )
        .env(
            "TOTAL_TIMEOUT_MS",
            (RUN_TIMEOUT - Duration::from_secs(20))
                .as_millis()
                .to_string(),
        )
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        // Its own process group, so a timeout can stop the browser and broker with it.
        .process_group(0)
        .spawn()
        .expect("start `unshare` (util-linux) for the browser tests");

    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for the browser tests") {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };

    let mut scenarios = String::new();
    if let Ok(mut f) = fs::File::open(&run_log) {
        let _ = f.read_to_string(&mut scenarios);
    }
    let report = format!(
        "--- scenarios ({}) ---\n{scenarios}\n--- broker log, last lines ({}) ---\n{}",
        run_log.display(),
        broker_log.display(),
        tail(&broker_log, 40)
    );
    match status {
        Some(s) if s.success() => {
            println!("{scenarios}");
            println!("screenshots in {}", shots.display());
        }
        Some(s) if s.code() == Some(90) => panic!(
            "could not bring up loopback in a new network namespace (needs root or user \
             namespaces)\n{report}"
        ),
        Some(s) => panic!("the browser scenarios failed ({s})\n{report}"),
        None => panic!("the browser scenarios did not finish within {RUN_TIMEOUT:?}\n{report}"),
    }
}

/// "6s" -> 6000.
fn humantime_ms(s: &str) -> Option<u64> {
    s.strip_suffix('s')?.parse::<u64>().ok().map(|n| n * 1000)
}

//! The benchmark harness must never rot: every scenario of `switchboard-bench` runs here in
//! smoke mode (tiny counts, phases of about a second) against the broker binary, and its JSON
//! must hold sane numbers. Nothing is measured: full runs stay out of the test suite
//! (docs/benchmarks.md).
//!
//! The broker is the debug `switchboard` binary next to this crate's: `cargo test` from the
//! workspace root builds both. The PeerJS half of the relay needs bench/peerjs/node_modules:
//! under CI=true it is installed with `npm ci` when missing; elsewhere a missing install skips
//! that half with a note. So does Postgres for the Postgres half of call set-up, except that
//! under CI=true it is required.
use diesel::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn peerjs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peerjs")
}

/// The broker binary: built next to this crate's binary by a workspace `cargo test`.
fn broker_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_switchboard-bench")).with_file_name("switchboard");
    assert!(
        bin.exists(),
        "{} not found: run `cargo test` from the workspace root (it builds the broker too)",
        bin.display()
    );
    bin
}

/// The same Postgres the broker's own tests use.
fn postgres_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether Postgres answers; under CI=true it must.
fn postgres_available() -> bool {
    match diesel::PgConnection::establish(&postgres_admin_url()) {
        Ok(_) => true,
        Err(e) if under_ci() => panic!("Postgres is required under CI=true: {e}"),
        Err(e) => {
            eprintln!("skipping the Postgres half of call set-up: {e}");
            false
        }
    }
}

/// Whether PeerJS server is installed, installing it under CI=true.
fn peerjs_available() -> bool {
    let dir = peerjs_dir();
    let installed = || dir.join("node_modules/peer/dist/bin/peerjs.js").exists();
    if installed() {
        return true;
    }
    if !under_ci() {
        eprintln!(
            "skipping the PeerJS half of the relay: run `npm ci` in {}",
            dir.display()
        );
        return false;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()) && installed(),
        "npm ci in {} failed: {status:?}",
        dir.display()
    );
    true
}

fn run_bench(args: &[String]) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard-bench");
    // Read both pipes on threads so a chatty run can't fill one and stall.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "switchboard-bench --smoke ran over {RUN_TIMEOUT:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    assert!(
        status.success(),
        "switchboard-bench failed ({status}):\n--- stderr\n{err}\n--- stdout\n{out}"
    );
    (out, err)
}

fn num(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = &at[key];
    }
    at.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

fn scenario<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .find(|s| s["scenario"] == name)
        .map(|s| &s["results"])
        .unwrap_or_else(|| panic!("no {name} scenario in the results"))
}

fn assert_relay_phase(phase: &Value) {
    assert!(num(phase, "relayed") > 0.0, "{phase}");
    assert_eq!(num(phase, "errors"), 0.0, "{phase}");
    assert_eq!(num(phase, "lost"), 0.0, "{phase}");
    assert!(num(phase, "throughput_per_s") > 0.0, "{phase}");
    let p50 = num(phase, "latency.p50_ms");
    let p99 = num(phase, "latency.p99_ms");
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 5_000.0, "{phase}");
    assert!(num(phase, "server_cpu_seconds") >= 0.0, "{phase}");
    assert!(num(phase, "server_rss_kib") > 0.0, "{phase}");
}

#[test]
fn every_benchmark_scenario_runs_in_smoke_mode_and_reports_sane_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("bench.json");
    let with_peerjs = peerjs_available();
    let with_postgres = postgres_available();
    let mut args: Vec<String> = vec![
        "--smoke".into(),
        "--server-bin".into(),
        broker_bin().display().to_string(),
        "--json-out".into(),
        json_path.display().to_string(),
        "--workdir".into(),
        dir.path().display().to_string(),
        "--peerjs-port".into(),
        "0".into(),
        "--postgres-url".into(),
        postgres_admin_url(),
    ];
    if !with_peerjs {
        args.push("--no-peerjs".into());
    }
    if !with_postgres {
        args.push("--skip-postgres".into());
    }
    args.extend(["all".into(), "soak".into()]);
    let (stdout, _) = run_bench(&args);
    assert!(stdout.contains("== relay =="), "{stdout}");

    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json written"))
            .expect("valid JSON");
    assert_eq!(doc["smoke"], true);
    assert!(num(&doc, "machine.cores") >= 1.0);

    let idle = scenario(&doc, "idle");
    assert_eq!(num(idle, "connections"), 40.0, "{idle}");
    assert_eq!(num(idle, "dropped_while_held"), 0.0, "{idle}");
    let per_connection = num(idle, "rss_per_connection_kib");
    assert!(per_connection > 0.0 && per_connection < 1024.0, "{idle}");
    let bare = &idle["bare_stack"];
    assert_eq!(num(bare, "connections"), 40.0, "{idle}");
    assert_eq!(num(bare, "dropped_while_held"), 0.0, "{idle}");
    let bare_per_connection = num(bare, "rss_per_connection_kib");
    assert!(bare_per_connection < 1024.0, "{idle}");
    let own = num(idle, "own_rss_per_connection_kib");
    let steady = num(idle, "steady_rss_per_connection_kib");
    let bare_steady = num(bare, "steady_rss_per_connection_kib");
    assert!((own - (steady - bare_steady)).abs() < 1e-6, "{idle}");

    let relay = scenario(&doc, "relay");
    let phases = relay["rounds"][0]["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 3, "closed loop and two rates: {relay}");
    phases.iter().for_each(assert_relay_phase);
    assert!(num(relay, "median.closed.server_cpu_us_per_frame") > 0.0);
    if with_peerjs {
        let versus = scenario(&doc, "relay_vs_peerjs");
        let peerjs = versus["peerjs_rounds"][0]["phases"]
            .as_array()
            .expect("peerjs phases");
        peerjs.iter().for_each(assert_relay_phase);
        assert!(num(versus, "ratios.closed.throughput_switchboard_over_peerjs") > 0.0);
    }

    let backends: &[&str] = if with_postgres {
        &["sqlite", "postgres"]
    } else {
        &["sqlite"]
    };
    for backend in backends {
        let setup = scenario(&doc, &format!("setup_{backend}"));
        let cycles = num(setup, "cycles");
        assert!(cycles > 0.0, "{setup}");
        assert_eq!(num(setup, "recorded_completed"), cycles, "{setup}");
        assert!(num(setup, "cycles_per_s") > 0.0, "{setup}");
        assert!(num(setup, "setup_latency.p50_ms") > 0.0, "{setup}");
    }

    let fanout = scenario(&doc, "fanout");
    assert_eq!(num(fanout, "connect_to_friend.samples"), 40.0, "{fanout}");
    assert_eq!(
        num(fanout, "disconnect_to_friend.samples"),
        40.0,
        "{fanout}"
    );
    assert!(num(fanout, "connect_to_friend.p99_ms") > 0.0, "{fanout}");

    let soak = scenario(&doc, "soak");
    assert_eq!(num(soak, "rounds"), 3.0, "{soak}");
    assert_eq!(
        soak["per_round"].as_array().map(Vec::len),
        Some(3),
        "{soak}"
    );
    assert_eq!(num(soak, "error_count"), 0.0, "{soak}");
    assert_eq!(soak["emptied"], true, "{soak}");
    assert!(
        num(soak, "descriptors_end") <= num(soak, "descriptors_before"),
        "{soak}"
    );

    let isolation = scenario(&doc, "isolation");
    assert_relay_phase(&isolation["quiet"]);
    assert_relay_phase(&isolation["during_flood"]);
    assert!(num(isolation, "logins") > 0.0, "{isolation}");
    assert_eq!(num(isolation, "login_failures"), 0.0, "{isolation}");
    // Another client, from another address, logs in and makes requests during the flood.
    assert!(
        num(isolation, "other_client.login_latency.samples") > 0.0,
        "{isolation}"
    );
    assert!(
        num(isolation, "other_client.request_latency.samples") > 0.0,
        "{isolation}"
    );
    assert_eq!(
        num(isolation, "other_client.login_failures"),
        0.0,
        "{isolation}"
    );
    assert_eq!(
        num(isolation, "other_client.request_failures"),
        0.0,
        "{isolation}"
    );
}

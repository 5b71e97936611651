//! The fuzz targets (tests/fuzz, see docs/fuzzing.md) run briefly so they never rot: built once,
//! then each for a few seconds over its seeds corpus, which must end with a zero exit and no
//! crash artifact. The long runs are done by hand.
//!
//! What it needs, installed here when missing (and a clear failure when that fails):
//! cargo-fuzz, with `cargo install cargo-fuzz --locked`. The targets build with the stable
//! toolchain: without a sanitizer, cargo-fuzz passes rustc only stable flags.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// Seconds each target runs over its seeds.
const SECONDS: u32 = 5;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo, without the variables `cargo test` sets for this test: a build script that reads one
/// (ring's reads `CARGO_MANIFEST_DIR`) would otherwise rebuild everything after a build by hand.
fn cargo() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_for_tests {
            cargo.env_remove(&*name);
        }
    }
    cargo
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        output.status,
        tail(&output.stdout),
        tail(&output.stderr)
    )
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// cargo-fuzz from crates.io, installed when `cargo fuzz` isn't there.
fn ensure_cargo_fuzz() {
    let present = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return;
    }
    eprintln!("cargo-fuzz is missing: installing it (cargo install cargo-fuzz --locked)");
    let status = cargo().args(["install", "cargo-fuzz", "--locked"]).status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the fuzz tests need cargo-fuzz and `cargo install cargo-fuzz --locked` failed \
         ({status:?}); it needs crates.io and a C++ compiler (for libFuzzer)"
    );
}

/// Builds every target once for all the tests of this file; they then run one at a time.
fn built() -> std::sync::MutexGuard<'static, ()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let built = BUILT.get_or_init(|| {
        ensure_cargo_fuzz();
        let output = cargo()
            .args([
                "fuzz",
                "build",
                "--fuzz-dir",
                "tests/fuzz",
                "--sanitizer",
                "none",
                // Unoptimized: a few seconds per target need no speed, and building every
                // dependency instrumented and optimized took most of this file's 15 minutes.
                "--dev",
            ])
            .output()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("cargo fuzz build failed: {}", describe(&output)))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `target` for a few seconds from its seeds, into a scratch corpus and artifact directory.
fn run(target: &str) {
    let _one = built();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let corpus = scratch.path().join("corpus");
    let artifacts = scratch.path().join("artifacts");
    std::fs::create_dir_all(&corpus).expect("corpus dir");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let seeds: PathBuf = root().join("tests/fuzz/seeds").join(target);
    assert!(
        std::fs::read_dir(&seeds).is_ok_and(|mut d| d.next().is_some()),
        "no seeds in {}",
        seeds.display()
    );
    let output = cargo()
        .args([
            "fuzz",
            "run",
            "--fuzz-dir",
            "tests/fuzz",
            "--sanitizer",
            "none",
            "--dev",
            target,
        ])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={SECONDS}"))
        // A hang fails the test in seconds, not after libFuzzer's default 20 minutes.
        .arg("-timeout=10")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .output()
        .expect("cannot run cargo fuzz");
    let found: Vec<_> = std::fs::read_dir(&artifacts)
        .expect("artifact dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(
        output.status.success() && found.is_empty(),
        "fuzz target {target} failed; artifacts {found:?}: {}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Done "),
        "fuzz target {target} did not report its runs: {}",
        describe(&output)
    );
}

#[test]
fn client_frame_target_runs_clean_over_its_seeds() {
    run("client_frame");
}

#[test]
fn rest_bodies_target_runs_clean_over_its_seeds() {
    run("rest_bodies");
}

#[test]
fn relay_gate_target_runs_clean_over_its_seeds() {
    run("relay_gate");
}

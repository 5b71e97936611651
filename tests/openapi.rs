//! The REST API against its own OpenAPI description (`GET /api/v1/openapi.json`): the document
//! is valid OpenAPI 3.1 (checked by openapi-spec-validator), every operation it lists is
//! routed, and schemathesis, a property-based API fuzzer, finds nothing against the real broker
//! binary: no server errors, no status codes, content types or headers the description leaves
//! out, bodies that match their schemas, invalid input refused, wrong methods answered 405,
//! auth enforced. Each route gets a bounded number of generated cases, so the run takes seconds.
//!
//! The seed is random and printed; `SCHEMATHESIS_SEED=<n>` replays a run.
//!
//! What it needs, installed here when missing (and a clear failure when that fails):
//! schemathesis and openapi-spec-validator from PyPI, the versions in
//! tests/openapi/requirements.txt, in a venv under target/ (by tests/openapi/install.sh, which
//! .ci/run runs too). That needs python3 with its venv module, and PyPI.
mod common;

use common::process::BrokerProcess;
use common::{Backend, TestDatabase};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Generated cases per operation and phase: enough to reach each documented status, few
/// enough that the whole run stays within seconds.
const MAX_EXAMPLES: &str = "50";

/// The checks schemathesis applies to every response. Left out: `positive_data_acceptance`,
/// which expects every well-formed request to succeed, when most fail for the state they meet
/// (a generated username names nobody, a generated call id no call), with documented errors.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,\
unsupported_method,missing_required_header,ignored_auth,use_after_free,\
ensure_resource_availability";

/// Operations that end the session or the account they are called with: each is fuzzed alone,
/// with a user of its own, so the others keep a working token.
const DESTRUCTIVE: &[&str] = &["logout", "logout_all", "change_password", "delete_me"];

fn venv() -> PathBuf {
    // target/tmp's parent is the target directory, wherever CARGO_TARGET_DIR puts it.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("schemathesis-venv")
}

/// tests/openapi/install.sh, once for the tests of this file.
fn installed() -> PathBuf {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/install.sh");
        let status = Command::new("bash")
            .arg(&script)
            .env("SCHEMATHESIS_VENV", venv())
            .status();
        match status {
            Ok(s) if s.success() => Ok(venv().join("bin")),
            other => Err(format!(
                "the OpenAPI tests need schemathesis and openapi-spec-validator \
                 (tests/openapi/requirements.txt) and {} failed ({other:?}); it needs python3 \
                 with venv and PyPI",
                script.display()
            )),
        }
    });
    match result {
        Ok(bin) => bin.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn start_broker(db: &TestDatabase) -> BrokerProcess {
    BrokerProcess::start(&db.url, &[], None).await
}

/// Registers `username` on the broker and returns its token.
async fn register(broker: &BrokerProcess, username: &str) -> String {
    let mut res = awc::Client::default()
        .post(broker.url("/api/v1/auth/register"))
        .send_json(&json!({ "username": username, "password": format!("password-{username}") }))
        .await
        .expect("register sent");
    assert_eq!(res.status(), 201, "register {username}");
    let body: Value = res.json().await.expect("register body");
    body["token"].as_str().expect("a token").to_owned()
}

/// `method path` with `token` and a JSON body; the status.
async fn send(broker: &BrokerProcess, method: &str, path: &str, token: &str, body: Value) -> u16 {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("a method");
    awc::Client::default()
        .request(method, broker.url(path))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_json(&body)
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

/// Gives `user` a friend, a request each way and a block, so the links from the lists
/// (`GET /friends` to `DELETE /friends/{username}`, ...) lead the stateful phase somewhere.
async fn befriend_and_block(broker: &BrokerProcess, user: &str, token: &str) {
    let pal = register(broker, "pal").await;
    let asker = register(broker, "asker").await;
    register(broker, "wanted").await;
    register(broker, "foe").await;
    let ask = |name: &str| json!({ "username": name });
    let requests = "/api/v1/friends/requests";
    assert_eq!(send(broker, "POST", requests, &pal, ask(user)).await, 201);
    assert_eq!(send(broker, "POST", requests, token, ask("pal")).await, 200);
    assert_eq!(send(broker, "POST", requests, &asker, ask(user)).await, 201);
    assert_eq!(
        send(broker, "POST", requests, token, ask("wanted")).await,
        201
    );
    assert_eq!(
        send(broker, "PUT", "/api/v1/blocks/foe", token, json!({})).await,
        204
    );
}

async fn fetch_document(broker: &BrokerProcess) -> Value {
    let mut res = awc::Client::default()
        .get(broker.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi.json fetched");
    assert_eq!(res.status(), 200);
    let content_type = res.headers().get("content-type").map(|v| v.as_bytes());
    assert_eq!(content_type, Some(&b"application/json"[..]));
    res.json()
        .limit(1 << 20)
        .await
        .expect("openapi.json is JSON")
}

#[actix_rt::test]
async fn the_description_is_valid_openapi_and_names_only_routed_operations() {
    let bin = installed();
    let db = TestDatabase::new(Backend::Sqlite);
    let broker = start_broker(&db).await;
    let doc = fetch_document(&broker).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).expect("written");
    let output = Command::new(bin.join("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs");
    assert!(
        output.status.success(),
        "the description is not valid OpenAPI: {}",
        describe(&output)
    );

    // Every documented operation reaches a handler: no router 404 (`not_found`), no 405.
    let client = awc::Client::default();
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{username}", "nobody")
            .replace("{id}", "nocall");
        for method in item.as_object().expect("path item").keys() {
            let method = awc::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut res = client
                .request(method.clone(), broker.url(&concrete))
                .send_json(&json!({}))
                .await
                .expect("request sent");
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let status = res.status().as_u16();
            assert!(
                status != 405 && !(status == 404 && body["error"] == "not_found"),
                "{method} {path} is documented but not routed: {status} {body}"
            );
            operations += 1;
        }
    }
    assert!(operations >= 25, "only {operations} operations documented");
}

/// One schemathesis run against the broker, with `token`, over the operations `filter` picks.
fn schemathesis(bin: &Path, broker: &BrokerProcess, token: &str, filter: &[String]) -> Output {
    let work = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(bin.join("schemathesis"));
    command
        // Its example database and reports go to a scratch directory.
        .current_dir(work.path())
        .args(["run", &broker.url("/api/v1/openapi.json")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        // One worker: 4.32.5's coverage phase failed on its own (a KeyError) with two.
        .args(["--request-timeout", "10", "--workers", "1", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(filter);
    if let Ok(seed) = std::env::var("SCHEMATHESIS_SEED") {
        command.args(["--seed", &seed]);
    }
    command.output().expect("schemathesis runs")
}

// On both databases: Postgres refuses text SQLite stores (a NUL byte), which the fuzzer sends.
on_both_databases!(schemathesis_finds_no_failures);

async fn schemathesis_finds_no_failures(backend: Backend) {
    let bin = installed();
    let db = TestDatabase::new(backend);
    let broker = start_broker(&db).await;

    let mut runs = Vec::new();
    // Everything but the destructive operations, with one user's token throughout.
    let token = register(&broker, "fuzzer").await;
    befriend_and_block(&broker, "fuzzer", &token).await;
    let others: Vec<String> = DESTRUCTIVE
        .iter()
        .flat_map(|op| ["--exclude-operation-id".to_owned(), op.to_string()])
        .collect();
    runs.push(("the API", schemathesis(&bin, &broker, &token, &others)));
    // Each destructive one alone, with a user made for it.
    for op in DESTRUCTIVE {
        let token = register(&broker, &format!("doomed-{}", op.replace('_', "-"))).await;
        // Alone, an operation has no links to follow: no stateful phase.
        let only = [
            "--include-operation-id".to_owned(),
            op.to_string(),
            "--phases".to_owned(),
            "examples,coverage,fuzzing".to_owned(),
        ];
        runs.push((op, schemathesis(&bin, &broker, &token, &only)));
    }

    let failed: Vec<String> = runs
        .iter()
        .filter(|(_, output)| !output.status.success())
        .map(|(what, output)| format!("=== schemathesis on {what}: {}", describe(output)))
        .collect();
    if !failed.is_empty() {
        let log = broker.log_lines();
        panic!(
            "schemathesis found failures:\n{}\n=== broker log (tail) ===\n{}",
            failed.join("\n"),
            log[log.len().saturating_sub(40)..].join("\n")
        );
    }
    // Each run tested something: an operation filter that matched nothing would pass silently.
    for (what, output) in &runs {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(" passed") && !text.contains("Tested: 0"),
            "schemathesis tested nothing on {what}: {}",
            describe(output)
        );
    }
}

//! Scenario 3, call set-up: caller/callee pairs run complete cycles in a closed loop:
//! invite -> ringing -> accept -> offer/answer -> hangup, each call persisted by the broker.
//! Measures cycles/s (counted once the last record is readable over REST) and the set-up
//! latency from sending `call.invite` to the caller's `call.accepted`, on SQLite and Postgres.
use crate::http::Http;
use crate::population::{self, Account};
use crate::report::{Report, Target};
use crate::server::{self, Bcrypt, Database, ServerProcess};
use crate::stats::{micros, Latency};
use crate::switchboard::{self, TIMEOUT};
use crate::ws::{self, Ws};
use crate::{payload, progress, Options, Res};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct PairOutcome {
    cycles: u64,
    setup_micros: Vec<u32>,
    last_call: Option<String>,
}

async fn cycle_pair(
    addr: SocketAddr,
    index: usize,
    caller: Account,
    callee: Account,
    deadline: Instant,
) -> Res<PairOutcome> {
    let (mut a, _) = switchboard::connect(addr, &caller, 2 * index).await?;
    let (mut b, _) = switchboard::connect(addr, &callee, 2 * index + 1).await?;
    let offer = payload::sdp("actpass", index as u64);
    let answer = payload::sdp("active", index as u64);
    let mut outcome = PairOutcome {
        cycles: 0,
        setup_micros: Vec::new(),
        last_call: None,
    };
    while Instant::now() < deadline {
        let started = Instant::now();
        let invite = json!({"type": "call.invite", "id": outcome.cycles, "to": callee.username, "media": "video"});
        ws::send(&mut a, invite.to_string()).await?;
        let incoming = ws::wait_for(&mut b, "call.incoming", TIMEOUT).await?;
        let call_id = incoming["call_id"].as_str().ok_or("no call_id")?.to_owned();
        ws::send(
            &mut b,
            json!({"type": "call.accept", "call_id": call_id}).to_string(),
        )
        .await?;
        ws::wait_for(&mut a, "call.accepted", TIMEOUT).await?;
        outcome.setup_micros.push(micros(started.elapsed()));
        ws::send(&mut a, switchboard::signal_sdp(&call_id, "offer", &offer)).await?;
        ws::wait_for(&mut b, "signal", TIMEOUT).await?;
        ws::send(&mut b, switchboard::signal_sdp(&call_id, "answer", &answer)).await?;
        ws::wait_for(&mut a, "signal", TIMEOUT).await?;
        ws::send(
            &mut a,
            json!({"type": "call.hangup", "call_id": call_id}).to_string(),
        )
        .await?;
        ended(&mut a).await?;
        ended(&mut b).await?;
        outcome.cycles += 1;
        outcome.last_call = Some(call_id);
    }
    Ok(outcome)
}

async fn ended(socket: &mut Ws) -> Res<()> {
    let frame = ws::wait_for(socket, "call.ended", TIMEOUT).await?;
    if frame["reason"] != "completed" {
        return Err(format!("call ended with {frame}").into());
    }
    Ok(())
}

/// A call's outcome as the REST API shows it (Null while it has no record yet).
async fn outcome_of(http: &mut Http, caller: &Account, call_id: &str) -> Res<Value> {
    let path = format!("/api/v1/calls/{call_id}");
    let (status, body) = http
        .request("GET", &path, Some(&caller.token), None)
        .await?;
    match status {
        200 => Ok(body["outcome"].clone()),
        404 => Ok(Value::Null),
        _ => Err(format!("GET {path}: {status} {body}").into()),
    }
}

/// Completed calls in the caller's whole history.
async fn completed_calls(http: &mut Http, caller: &Account) -> Res<u64> {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/calls?limit=100&cursor={c}"),
            None => "/api/v1/calls?limit=100".to_owned(),
        };
        let (status, body) = http
            .request("GET", &path, Some(&caller.token), None)
            .await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}").into());
        }
        let calls = body["calls"].as_array().cloned().unwrap_or_default();
        count += calls.iter().filter(|c| c["outcome"] == "completed").count() as u64;
        match body["next_cursor"].as_str() {
            Some(next) if !calls.is_empty() => cursor = Some(next.to_owned()),
            _ => return Ok(count),
        }
    }
}

async fn run_on(options: &Options, db: Database) -> Res<Report> {
    let backend = db.backend();
    let server = ServerProcess::broker(options, &db, Bcrypt::Cheap, &[]).await?;
    let n = options.setup_pairs;
    let pairs = population::friend_pairs(server.addr, "setup", n).await?;
    progress(format!(
        "setup ({backend}): {n} pairs cycling for {} s",
        options.setup_secs
    ));

    let before = server.sample()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.setup_secs);
    let mut tasks = Vec::new();
    for (i, (caller, callee)) in pairs.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(cycle_pair(
            server.addr,
            i,
            caller,
            callee,
            deadline,
        )));
    }
    let mut per_pair = Vec::new();
    let mut samples = Vec::new();
    let mut last_calls = Vec::new();
    for (task, (caller, _)) in tasks.into_iter().zip(&pairs) {
        let outcome = task.await??;
        per_pair.push(outcome.cycles);
        samples.extend(outcome.setup_micros);
        if let Some(call) = outcome.last_call {
            last_calls.push((caller, call));
        }
    }
    let cycled = started.elapsed().as_secs_f64();
    let cycles: u64 = per_pair.iter().sum();

    // Persisted: the broker writes records in order, so once each pair's last call reads back
    // as completed, every earlier one has been written too (counted below to be sure).
    let mut http = Http::new(server.addr);
    let mut pending = last_calls;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (caller, call) in pending {
            if outcome_of(&mut http, caller, &call).await? != "completed" {
                still.push((caller, call));
            }
        }
        pending = still;
        if started.elapsed() > Duration::from_secs(options.setup_secs + 120) {
            return Err(format!("{} calls still not recorded as completed", pending.len()).into());
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let persisted = started.elapsed().as_secs_f64();
    let after = server.sample()?;
    let mut recorded = 0;
    for ((caller, _), &expected) in pairs.iter().zip(&per_pair) {
        let found = completed_calls(&mut http, caller).await?;
        if found != expected {
            return Err(format!(
                "{}: {expected} cycles but {found} completed calls recorded",
                caller.username
            )
            .into());
        }
        recorded += found;
    }
    server.stop().await?;

    let latency = Latency::from_micros(&mut samples);
    let rate = cycles as f64 / persisted.max(0.001);
    let cpu = after.cpu_since(&before);
    let mut report = Report::new(
        &format!("setup_{backend}"),
        json!({
            "backend": backend,
            "pairs": n,
            "cycles": cycles,
            "recorded_completed": recorded,
            "cycling_seconds": cycled,
            "persisted_seconds": persisted,
            "cycles_per_s": rate,
            "cycles_per_s_unpersisted": cycles as f64 / cycled.max(0.001),
            "setup_latency": latency,
            "server_cpu_seconds": cpu,
            "server_cpu_us_per_cycle": if cycles > 0 { cpu * 1e6 / cycles as f64 } else { 0.0 },
            "server_rss_kib": after.rss_kib,
        }),
    );
    report.line(format!(
        "{cycles} cycles by {n} pairs: {rate:.0} cycles/s until the last record was readable ({:.0}/s on the wire); all {recorded} recorded as completed",
        cycles as f64 / cycled.max(0.001)
    ));
    report.line(format!("invite -> accepted: {}", latency.line()));
    report.line(format!(
        "server {:.2} CPU-s, {:.0} us per cycle",
        cpu,
        if cycles > 0 {
            cpu * 1e6 / cycles as f64
        } else {
            0.0
        }
    ));
    report.target(Target::at_least(
        &format!("call set-up cycles/s, persisted ({backend})"),
        1000.0,
        rate,
        "cycles/s",
    ));
    Ok(report)
}

pub async fn run(options: &Options) -> Res<Vec<Report>> {
    let mut reports = vec![run_on(options, Database::sqlite(options.workdir(), "setup")).await?];
    if options.skip_postgres {
        progress("setup: Postgres skipped (--skip-postgres)");
    } else {
        server::postgres_reachable(&options.postgres_url).map_err(|e| {
            format!(
                "Postgres at {} (--postgres-url, or --skip-postgres): {e}",
                options.postgres_url
            )
        })?;
        reports.push(run_on(options, Database::postgres(&options.postgres_url)?).await?);
    }
    Ok(reports)
}

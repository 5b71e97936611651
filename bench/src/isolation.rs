//! Scenario 5, isolation: the relay at a fixed rate, first on a quiet broker, then while
//! clients flood `POST /auth/login` (bcrypt at the real cost) as fast as the broker answers.
//! bcrypt runs on a bounded pool, so the relay's latency should barely move.
//!
//! Accounts for the relay are made with cheap bcrypt by a first broker; a second broker on the
//! same database, at the default cost, then registers the flood's account and serves the run.
use crate::http::Http;
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::stats::{micros, Latency};
use crate::traffic::{self, Load};
use crate::{population, progress, switchboard, Options, Res};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Flood {
    logins: u64,
    failures: u64,
    micros: Vec<u32>,
}

async fn flood(addr: std::net::SocketAddr, username: String, stop: Arc<AtomicBool>) -> Res<Flood> {
    let mut http = Http::new(addr);
    let body = json!({"username": username, "password": population::PASSWORD});
    let mut result = Flood {
        logins: 0,
        failures: 0,
        micros: Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let (status, _) = http
            .request("POST", "/api/v1/auth/login", None, Some(&body))
            .await?;
        result.micros.push(micros(started.elapsed()));
        if status == 200 {
            result.logins += 1;
        } else {
            result.failures += 1;
        }
    }
    Ok(result)
}

/// The two measured phases, at the same relay rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Quiet,
    Flooded,
}

pub async fn run(options: &Options) -> Res<Report> {
    let db = Database::sqlite(options.workdir(), "isolation");
    let n = options.relay_calls;
    let pairs = {
        let setup = ServerProcess::broker(options, &db, Bcrypt::Cheap, &[]).await?;
        let pairs = population::friend_pairs(setup.addr, "iso", n).await?;
        setup.stop().await?;
        pairs
    };
    // The default bcrypt cost and concurrency.
    let server = ServerProcess::broker(options, &db, Bcrypt::Default, &[]).await?;
    let flooder = population::register_one(&mut Http::new(server.addr), "flooder").await?;
    let mut links = switchboard::call_links(server.addr, &pairs).await?;
    let rate = options.isolation_rate;
    let secs = Duration::from_secs(options.isolation_secs);
    let pid = server.pid;
    if !options.smoke {
        links = traffic::run(
            links,
            Load::Open { rate },
            Duration::from_secs(1),
            pid,
            switchboard::is_relayed,
        )
        .await?
        .0;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    let mut measured = Vec::new();
    for phase in [Phase::Quiet, Phase::Flooded] {
        match phase {
            Phase::Quiet => progress(format!("isolation: {rate:.0} frames/s on a quiet broker")),
            Phase::Flooded => {
                progress(format!(
                    "isolation: {rate:.0} frames/s while {} clients flood logins",
                    options.flood_clients
                ));
                flooders = (0..options.flood_clients)
                    .map(|_| {
                        tokio::spawn(flood(server.addr, flooder.username.clone(), stop.clone()))
                    })
                    .collect();
                // Let the flood build up before the relay is measured under it.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let (next, stats) = traffic::run(
            links,
            Load::Open { rate },
            secs,
            pid,
            switchboard::is_relayed,
        )
        .await?;
        links = next;
        progress(format!("  {}", stats.line()));
        measured.push(stats);
    }
    stop.store(true, Ordering::Relaxed);
    let [quiet, flooded]: [_; 2] = measured
        .try_into()
        .map_err(|_| "isolation measured other than two phases")?;
    let flood_seconds = secs.as_secs_f64() + 0.5;
    let (mut logins, mut failures, mut login_micros) = (0, 0, Vec::new());
    for f in flooders {
        let f = f.await??;
        logins += f.logins;
        failures += f.failures;
        login_micros.extend(f.micros);
    }
    drop(links);
    server.stop().await?;

    let login_latency = Latency::from_micros(&mut login_micros);
    let mut report = Report::new(
        "isolation",
        json!({
            "rate": rate,
            "calls": n,
            "flood_clients": options.flood_clients,
            "bcrypt_cost": 12,
            "quiet": quiet,
            "during_flood": flooded,
            "logins": logins,
            "login_failures": failures,
            "logins_per_s": logins as f64 / flood_seconds,
            "login_latency": login_latency,
        }),
    );
    report.line(format!("quiet:  {}", quiet.line()));
    report.line(format!("flood:  {}", flooded.line()));
    report.line(format!(
        "flood: {logins} logins ({:.1}/s, {failures} failed), login {}",
        logins as f64 / flood_seconds,
        login_latency.line()
    ));
    report.target(Target::at_most(
        "relay p99 during a login flood",
        5.0,
        flooded.latency.p99_ms,
        "ms",
    ));
    Ok(report)
}

//! Scenario 5, isolation: the relay at a fixed rate, first on a quiet broker, then while
//! clients flood `POST /auth/login` (bcrypt at the real cost, each client its own account) as
//! fast as the broker answers. bcrypt runs on a bounded pool at a lower priority, so the relay's
//! latency should barely move; and since one client address may hold only a few places in the
//! bcrypt queue, another client's login (from another loopback address) and its other requests
//! (`GET /api/v1/me`) stay responsive during the flood, which this measures too.
//!
//! Accounts for the relay are made with cheap bcrypt by a first broker; a second broker on the
//! same database, at the default cost, then registers the flood's accounts and the other
//! client's, and serves the run.
use crate::http::Http;
use crate::population::Account;
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::stats::{micros, Latency};
use crate::traffic::{self, Load};
use crate::{population, progress, switchboard, Options, Res};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the other client connects from: not the flood's address.
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// How often the other client logs in, and how often it makes another request, during the flood.
const OTHER_LOGIN_EVERY: Duration = Duration::from_millis(200);
const OTHER_REQUEST_EVERY: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Flood {
    logins: u64,
    /// 429 and 503 answers: the broker turning the flood away at once.
    turned_away: u64,
    failures: u64,
    micros: Vec<u32>,
}

async fn flood(addr: SocketAddr, account: Account, stop: Arc<AtomicBool>) -> Res<Flood> {
    let mut http = Http::new(addr);
    let body = json!({"username": account.username, "password": population::PASSWORD});
    let mut result = Flood::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let (status, _) = http
            .request("POST", "/api/v1/auth/login", None, Some(&body))
            .await?;
        result.micros.push(micros(started.elapsed()));
        match status {
            200 => result.logins += 1,
            429 | 503 => result.turned_away += 1,
            _ => result.failures += 1,
        }
    }
    Ok(result)
}

/// The other client during the flood: its logins and its other requests.
#[derive(Default)]
struct Other {
    logins: Vec<u32>,
    login_failures: u64,
    requests: Vec<u32>,
    request_failures: u64,
}

async fn other_client(addr: SocketAddr, account: Account, stop: Arc<AtomicBool>) -> Res<Other> {
    let mut logins = Http::from(addr, OTHER_CLIENT);
    let mut requests = Http::from(addr, OTHER_CLIENT);
    let body = json!({"username": account.username, "password": population::PASSWORD});
    let mut other = Other::default();
    let mut next_login = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_login {
            next_login += OTHER_LOGIN_EVERY;
            let started = Instant::now();
            let (status, _) = logins
                .request("POST", "/api/v1/auth/login", None, Some(&body))
                .await?;
            other.logins.push(micros(started.elapsed()));
            other.login_failures += u64::from(status != 200);
        }
        let started = Instant::now();
        let (status, _) = requests
            .request("GET", "/api/v1/me", Some(&account.token), None)
            .await?;
        other.requests.push(micros(started.elapsed()));
        other.request_failures += u64::from(status != 200);
        tokio::time::sleep(OTHER_REQUEST_EVERY).await;
    }
    Ok(other)
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
    // Registered at the real cost, one at a time: the bcrypt queue is not the point yet.
    let mut http = Http::new(server.addr);
    let mut flooders = Vec::new();
    for i in 0..options.flood_clients {
        flooders.push(population::register_one(&mut http, &format!("flooder{i}")).await?);
    }
    let other = population::register_one(&mut http, "other").await?;
    let mut links = switchboard::call_links(server.addr, &pairs).await?;
    let rate = options.isolation_rate;
    let secs = Duration::from_secs(options.isolation_secs);
    let pid = server.pid;
    if !options.smoke {
        links = traffic::run(
            links,
            Load::Open { rate },
            Duration::from_secs(1),
            &[pid],
            switchboard::is_relayed,
        )
        .await?
        .0;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooding = Vec::new();
    let mut other_client_task = None;
    let mut measured = Vec::new();
    for phase in [Phase::Quiet, Phase::Flooded] {
        match phase {
            Phase::Quiet => progress(format!("isolation: {rate:.0} frames/s on a quiet broker")),
            Phase::Flooded => {
                progress(format!(
                    "isolation: {rate:.0} frames/s while {} clients flood logins",
                    options.flood_clients
                ));
                flooding = flooders
                    .drain(..)
                    .map(|account| tokio::spawn(flood(server.addr, account, stop.clone())))
                    .collect();
                other_client_task = Some(tokio::spawn(other_client(
                    server.addr,
                    other.clone(),
                    stop.clone(),
                )));
                // Let the flood build up before the relay is measured under it.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let (next, stats) = traffic::run(
            links,
            Load::Open { rate },
            secs,
            &[pid],
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
    let mut total = Flood::default();
    for f in flooding {
        let f = f.await??;
        total.logins += f.logins;
        total.turned_away += f.turned_away;
        total.failures += f.failures;
        total.micros.extend(f.micros);
    }
    let Flood {
        logins,
        turned_away,
        failures,
        micros: mut login_micros,
    } = total;
    let mut other = match other_client_task {
        Some(task) => task.await??,
        None => Other::default(),
    };
    drop(links);
    server.stop().await?;

    let login_latency = Latency::from_micros(&mut login_micros);
    let other_login = Latency::from_micros(&mut other.logins);
    let other_request = Latency::from_micros(&mut other.requests);
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
            "logins_turned_away": turned_away,
            "login_failures": failures,
            "logins_per_s": logins as f64 / flood_seconds,
            "login_latency": login_latency,
            "other_client": {
                "login_latency": other_login,
                "login_failures": other.login_failures,
                "request_latency": other_request,
                "request_failures": other.request_failures,
            },
        }),
    );
    report.line(format!("quiet:  {}", quiet.line()));
    report.line(format!("flood:  {}", flooded.line()));
    report.line(format!(
        "flood: {logins} logins ({:.1}/s, {turned_away} turned away at once, {failures} failed), login {}",
        logins as f64 / flood_seconds,
        login_latency.line()
    ));
    report.line(format!(
        "other client: login {} ({} failed); GET /me {} ({} failed)",
        other_login.line(),
        other.login_failures,
        other_request.line(),
        other.request_failures
    ));
    report.target(Target::at_most(
        "relay p99 during a login flood",
        5.0,
        flooded.latency.p99_ms,
        "ms",
    ));
    report.target(Target::at_most(
        "another client's login p99 during a login flood",
        1500.0,
        other_login.p99_ms,
        "ms",
    ));
    report.target(Target::at_most(
        "another client's non-login request p99 during a login flood",
        50.0,
        other_request.p99_ms,
        "ms",
    ));
    Ok(report)
}

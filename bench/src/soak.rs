//! Scenario 6, soak: round after round, N sockets connect and authenticate; their users become
//! friends, place a call, signal (an offer, an answer and candidates each way) and hang up,
//! stop being friends; then half the sockets close properly and half are dropped without a
//! close frame. After each round the broker's RSS and open descriptors are read; after the last,
//! once every grace has passed, the broker's own census lines (src/census.rs) must show nothing
//! left in the presence hub or the call router. Any `error` frame counts against it: the soak
//! provokes none.
use crate::population::{self, Account};
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::switchboard::{self, TIMEOUT};
use crate::ws::{self, Ws};
use crate::{progress, Options, Res};
use futures_util::SinkExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Pairs working through their round at once (each opens two sockets).
const PAIRS_AT_ONCE: usize = 64;

/// One pair's round: both connect, one calls the other, they signal and hang up. Sockets are
/// returned open, to be closed (or dropped) once every pair is done.
async fn call_round(
    addr: std::net::SocketAddr,
    caller: &Account,
    callee: &Account,
    index: usize,
) -> Res<(Ws, Ws)> {
    let (mut a, _) = switchboard::connect(addr, caller, 2 * index).await?;
    let (mut b, _) = switchboard::connect(addr, callee, 2 * index + 1).await?;
    let call_id = switchboard::establish_call(&mut a, &mut b, &callee.username).await?;
    signal_one_way(&mut a, &mut b, &call_id, true, index).await?;
    signal_one_way(&mut b, &mut a, &call_id, false, index).await?;
    let hangup = json!({"type": "call.hangup", "id": 1, "call_id": call_id});
    ws::send(&mut a, hangup.to_string()).await?;
    for socket in [&mut a, &mut b] {
        let ended = ws::wait_for(socket, "call.ended", TIMEOUT).await?;
        if ended["reason"] != "completed" {
            return Err(format!("call ended with {ended}").into());
        }
    }
    Ok((a, b))
}

/// `from` sends its side's SDP and candidates; `to` must receive every one.
async fn signal_one_way(
    from: &mut Ws,
    to: &mut Ws,
    call_id: &str,
    caller_side: bool,
    index: usize,
) -> Res<()> {
    let frames = switchboard::relay_frames(call_id, caller_side, index as u64);
    let n = frames.len();
    for frame in frames {
        from.feed(frame).await?;
    }
    from.flush().await?;
    for _ in 0..n {
        ws::wait_for(to, "signal", TIMEOUT).await?;
    }
    Ok(())
}

/// Open descriptors of `pid`.
fn descriptors(pid: u32) -> Res<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// The last census line of `who` in the broker's log, e.g. "0 users online, 0 devices".
fn last_census(log: &str, who: &str) -> Option<String> {
    let marker = format!("census: {who}: ");
    log.lines().rev().find_map(|line| {
        line.split_once(&marker)
            .map(|(_, counts)| counts.to_owned())
    })
}

/// Whether every count in a census line is zero.
fn all_zero(counts: &str) -> bool {
    counts
        .split(", ")
        .all(|part| part.split(' ').next() == Some("0"))
}

pub async fn run(options: &Options) -> Res<Report> {
    let pairs_n = options.soak_sockets / 2;
    let rounds = options.soak_rounds;
    let round_min = Duration::from_secs(options.soak_round_secs);
    let db = Database::sqlite(options.workdir(), "soak");
    let server = ServerProcess::broker(options, &db, Bcrypt::Cheap, &[]).await?;
    let addr = server.addr;
    progress(format!("soak: registering {} accounts", 2 * pairs_n));
    let accounts = population::register(addr, "soak", 2 * pairs_n, 8).await?;
    let pairs: Arc<Vec<(Account, Account)>> = Arc::new(
        (0..pairs_n)
            .map(|i| (accounts[2 * i].clone(), accounts[2 * i + 1].clone()))
            .collect(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = server.sample()?;
    let base_fds = descriptors(server.pid)?;
    let started = Instant::now();
    let mut per_round = Vec::new();
    let mut errors = Vec::new();
    for round in 1..=rounds {
        let round_started = Instant::now();
        population::befriend(addr, pairs.as_ref().clone(), 8).await?;
        let gate = Arc::new(Semaphore::new(PAIRS_AT_ONCE));
        let mut tasks = Vec::with_capacity(pairs_n);
        for i in 0..pairs_n {
            let (gate, pairs) = (gate.clone(), pairs.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let (caller, callee) = &pairs[i];
                call_round(addr, caller, callee, i).await
            }));
        }
        let mut sockets = Vec::with_capacity(2 * pairs_n);
        for task in tasks {
            match task.await? {
                Ok((a, b)) => sockets.extend([a, b]),
                Err(e) => errors.push(format!("round {round}: {e}")),
            }
        }
        population::unfriend(addr, pairs.as_ref().clone(), 8).await?;
        // Half leave properly, half vanish: the broker sees the TCP connection end with no
        // close frame.
        let mut closing = Vec::new();
        for (i, mut socket) in sockets.into_iter().enumerate() {
            if i % 4 < 2 {
                closing.push(tokio::spawn(async move {
                    let _ = socket.close(None).await;
                }));
            } else {
                drop(socket);
            }
        }
        for close in closing {
            let _ = close.await;
        }
        if let Some(rest) = round_min.checked_sub(round_started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let sample = server.sample()?;
        let fds = descriptors(server.pid)?;
        progress(format!(
            "soak: round {round}/{rounds} in {:.1} s: RSS {} KiB, {fds} descriptors, {} errors so far",
            round_started.elapsed().as_secs_f64(),
            sample.rss_kib,
            errors.len()
        ));
        per_round.push(json!({
            "round": round,
            "seconds": round_started.elapsed().as_secs_f64(),
            "rss_kib": sample.rss_kib,
            "descriptors": fds,
        }));
    }
    let soak_seconds = started.elapsed().as_secs_f64();
    // Every grace (presence 5 s, reconnect 10 s) and a census interval (10 s) later, the hub
    // and the router must hold nothing.
    let settle = if options.smoke { 12 } else { 25 };
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let end = server.sample()?;
    let end_fds = descriptors(server.pid)?;
    let log = std::fs::read_to_string(server.log_path())?;
    server.stop().await?;
    let hub = last_census(&log, "presence hub").unwrap_or_default();
    let router = last_census(&log, "call router").unwrap_or_default();
    let emptied = all_zero(&hub) && all_zero(&router) && !hub.is_empty() && !router.is_empty();

    let rss = |i: usize| per_round[i]["rss_kib"].as_f64().unwrap_or(0.0);
    // Round 3 is the first after warm-up (allocator arenas, pools and tables grown).
    let from = 2.min(per_round.len().saturating_sub(1));
    let growth_percent = if per_round.is_empty() {
        0.0
    } else {
        (rss(per_round.len() - 1) - rss(from)) / rss(from).max(1.0) * 100.0
    };
    let mut report = Report::new(
        "soak",
        json!({
            "rounds": rounds,
            "sockets_per_round": 2 * pairs_n,
            "calls_per_round": pairs_n,
            "seconds": soak_seconds,
            "rss_kib_before": base.rss_kib,
            "descriptors_before": base_fds,
            "per_round": per_round,
            "rss_growth_percent_round_3_to_last": growth_percent,
            "settle_seconds": settle,
            "rss_kib_end": end.rss_kib,
            "descriptors_end": end_fds,
            "census_presence_hub": hub,
            "census_call_router": router,
            "emptied": emptied,
            "error_count": errors.len(),
            "errors": errors.iter().take(20).collect::<Vec<_>>(),
            "cpu_seconds": end.cpu_since(&base),
        }),
    );
    report.line(format!(
        "{rounds} rounds of {} sockets and {pairs_n} calls in {soak_seconds:.0} s; RSS {} KiB before, {:.0} KiB at round {}, {:.0} KiB at the last ({growth_percent:+.1}%)",
        2 * pairs_n,
        base.rss_kib,
        rss(from),
        from + 1,
        rss(per_round.len().saturating_sub(1)),
    ));
    report.line(format!(
        "descriptors {base_fds} before, {end_fds} after; census: presence hub {hub:?}, call router {router:?}; {} error frames or failures",
        errors.len()
    ));
    if !options.smoke {
        report.target(Target::at_most(
            "RSS growth from round 3 to the last",
            5.0,
            growth_percent,
            "%",
        ));
    }
    report.target(Target::at_most(
        "descriptors left open above the start",
        0.0,
        end_fds.saturating_sub(base_fds) as f64,
        "",
    ));
    report.target(Target::at_most(
        "error frames and failed rounds",
        0.0,
        errors.len() as f64,
        "",
    ));
    report.target(Target::at_least(
        "hub and router empty after everyone left (1 = yes)",
        1.0,
        f64::from(u8::from(emptied)),
        "",
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_census_line_is_read_and_zeros_recognised() {
        let log = "x census: call router: 2 calls, 4 users in calls, 4 devices\n\
                   y census: presence hub: 0 users online, 0 devices\n\
                   z census: call router: 0 calls, 0 users in calls, 0 devices\n";
        let router = last_census(log, "call router").unwrap_or_default();
        assert_eq!(router, "0 calls, 0 users in calls, 0 devices");
        assert!(all_zero(&router));
        let hub = last_census(log, "presence hub").unwrap_or_default();
        assert!(all_zero(&hub) && !hub.is_empty());
        assert!(!all_zero("2 calls, 0 devices"));
        assert_eq!(last_census(log, "nobody"), None);
    }
}

//! Scenario 2, signaling relay, and the PeerJS comparison: P active calls whose devices
//! exchange offer/answer/candidate frames, first closed loop (saturating), then open loop at
//! fixed rates. Switchboard and PeerJS server alternate round by round in the same run, each
//! on a fresh server; the report gives per-round figures, medians and ratios.
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::stats::median;
use crate::traffic::{self, Link, Load, PhaseResult};
use crate::{payload, peerjs, population, progress, switchboard, Options, Res};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
struct ServerRun {
    server: &'static str,
    round: usize,
    /// Server RSS once every call was set up.
    rss_kib_ready: u64,
    phases: Vec<PhaseResult>,
}

fn loads(options: &Options) -> Vec<(String, Load)> {
    Load::series(options.relay_window, &options.relay_rates)
}

/// Drives `links` through every load; the first, unrecorded second warms both sides up.
async fn phases(
    options: &Options,
    mut links: Vec<Link>,
    pid: u32,
    is_relayed: fn(&str) -> bool,
    peerjs_heartbeat: bool,
) -> Res<Vec<PhaseResult>> {
    let secs = Duration::from_secs(options.relay_secs);
    if !options.smoke {
        let warm = Load::Closed {
            window: options.relay_window,
        };
        links = traffic::run(links, warm, Duration::from_secs(1), &[pid], is_relayed)
            .await?
            .0;
    }
    let mut results = Vec::new();
    for (_, load) in loads(options) {
        if peerjs_heartbeat {
            peerjs::heartbeat(&mut links).await?;
        }
        let (back, result) = traffic::run(links, load, secs, &[pid], is_relayed).await?;
        progress(format!("  {}", result.line()));
        links = back;
        results.push(result);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(results)
}

async fn switchboard_round(options: &Options, round: usize) -> Res<ServerRun> {
    let db = Database::sqlite(options.workdir(), &format!("relay-{round}"));
    let server = ServerProcess::broker(options, &db, Bcrypt::Cheap, &[]).await?;
    let n = options.relay_calls;
    let pairs = population::friend_pairs(server.addr, "relay", n).await?;
    let links = switchboard::call_links(server.addr, &pairs).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_kib_ready = server.sample()?.rss_kib;
    progress(format!("  switchboard round {round}: {n} calls up"));
    let phases = phases(options, links, server.pid, switchboard::is_relayed, false).await?;
    server.stop().await?;
    Ok(ServerRun {
        server: "switchboard",
        round,
        rss_kib_ready,
        phases,
    })
}

async fn peerjs_round(options: &Options, round: usize) -> Res<ServerRun> {
    let port = match options.peerjs_port {
        0 => crate::server::free_port()?,
        port => port,
    };
    let server = ServerProcess::peerjs(&options.peerjs_dir(), port, options.workdir()).await?;
    let links = peerjs::links(server.addr, options.relay_calls).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_kib_ready = server.sample()?.rss_kib;
    progress(format!(
        "  peerjs round {round}: {} pairs up",
        options.relay_calls
    ));
    let phases = phases(options, links, server.pid, peerjs::is_relayed, true).await?;
    server.stop().await?;
    Ok(ServerRun {
        server: "peerjs",
        round,
        rss_kib_ready,
        phases,
    })
}

/// Medians over rounds of one server's key figures, per load.
fn medians(runs: &[&ServerRun], options: &Options) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (i, (name, _)) in loads(options).into_iter().enumerate() {
        let pick = |f: &dyn Fn(&PhaseResult) -> f64| {
            let mut values: Vec<f64> = runs.iter().filter_map(|r| r.phases.get(i)).map(f).collect();
            median(&mut values)
        };
        out.insert(
            name,
            json!({
                "throughput_per_s": pick(&|p| p.throughput_per_s),
                "server_cpu_us_per_frame": pick(&|p| p.server_cpu_us_per_frame),
                "server_cores": pick(&|p| p.server_cores),
                "p50_ms": pick(&|p| p.latency.p50_ms),
                "p99_ms": pick(&|p| p.latency.p99_ms),
                "p999_ms": pick(&|p| p.latency.p999_ms),
                "max_ms": pick(&|p| p.latency.max_ms),
                "errors": runs.iter().filter_map(|r| r.phases.get(i)).map(|p| p.errors + p.lost).sum::<u64>(),
            }),
        );
    }
    out
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

pub async fn run(options: &Options) -> Res<Vec<Report>> {
    let with_peerjs = !options.no_peerjs;
    let mut runs = Vec::new();
    for round in 0..options.rounds.max(1) {
        progress(format!("relay round {round}: switchboard"));
        runs.push(switchboard_round(options, round).await?);
        if with_peerjs {
            progress(format!("relay round {round}: peerjs"));
            runs.push(peerjs_round(options, round).await?);
        }
    }
    let sb: Vec<&ServerRun> = runs.iter().filter(|r| r.server == "switchboard").collect();
    let pj: Vec<&ServerRun> = runs.iter().filter(|r| r.server == "peerjs").collect();
    let sb_median = medians(&sb, options);
    let pj_median = medians(&pj, options);
    let offer = payload::sdp("actpass", 0);
    let candidate_frame = switchboard::signal_candidate("00000000-0000-0000-0000-000000000000", 0);

    let mut relay = Report::new(
        "relay",
        json!({
            "calls": options.relay_calls,
            "sockets": 2 * options.relay_calls,
            "window": options.relay_window,
            "seconds_per_phase": options.relay_secs,
            "frame_mix": {
                "per_direction_cycle": format!("1 SDP (offer or answer) + {} candidates", payload::CANDIDATES_PER_SDP),
                "sdp_bytes": offer.len(),
                "candidate_frame_bytes": candidate_frame.len(),
            },
            "median": sb_median,
            "rounds": sb,
        }),
    );
    let order: Vec<String> = loads(options).into_iter().map(|(name, _)| name).collect();
    let in_order = |m: &BTreeMap<String, Value>| -> Vec<(String, Value)> {
        order
            .iter()
            .filter_map(|name| m.get(name).map(|v| (name.clone(), v.clone())))
            .collect()
    };
    for (name, figures) in in_order(&sb_median) {
        relay.line(format!(
            "{name:>11}: {:>8.0} relays/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  {:.2} us/frame  {:.2} cores",
            num(&figures, "throughput_per_s"),
            num(&figures, "p50_ms"),
            num(&figures, "p99_ms"),
            num(&figures, "p999_ms"),
            num(&figures, "server_cpu_us_per_frame"),
            num(&figures, "server_cores"),
        ));
    }
    let top_rate = options.relay_rates.iter().cloned().fold(f64::NAN, f64::max);
    let top = sb_median
        .get(&format!("open_{top_rate:.0}"))
        .cloned()
        .unwrap_or(Value::Null);
    let closed = sb_median.get("closed").cloned().unwrap_or(Value::Null);
    // Saturated, like the anchors (PeerJS ~36 us is its ~25k relays/s on one core); the
    // per-frame cost at each fixed rate is in the table beside PeerJS's.
    relay.target(Target::at_most(
        "server CPU per relayed frame, saturated",
        12.0,
        num(&closed, "server_cpu_us_per_frame"),
        "us",
    ));
    relay.target(Target::at_most(
        &format!("one-way relay latency p99 at {top_rate:.0} frames/s"),
        2.0,
        num(&top, "p99_ms"),
        "ms",
    ));
    let mut reports = vec![relay];

    if with_peerjs {
        let mut comparison = BTreeMap::new();
        for (name, sb_fig) in &sb_median {
            let Some(pj_fig) = pj_median.get(name) else {
                continue;
            };
            comparison.insert(
                name.clone(),
                json!({
                    "throughput_switchboard_over_peerjs": ratio(num(sb_fig, "throughput_per_s"), num(pj_fig, "throughput_per_s")),
                    "cpu_per_frame_peerjs_over_switchboard": ratio(num(pj_fig, "server_cpu_us_per_frame"), num(sb_fig, "server_cpu_us_per_frame")),
                    "p99_peerjs_over_switchboard": ratio(num(pj_fig, "p99_ms"), num(sb_fig, "p99_ms")),
                }),
            );
        }
        let mut report = Report::new(
            "relay_vs_peerjs",
            json!({
                "order": runs.iter().map(|r| format!("{} #{}", r.server, r.round)).collect::<Vec<_>>(),
                "switchboard": sb_median,
                "peerjs": pj_median,
                "ratios": comparison,
                "peerjs_rounds": pj,
            }),
        );
        for (name, pj_fig) in in_order(&pj_median) {
            report.line(format!(
                "{name:>11}: peerjs {:>8.0} relays/s  p50 {:.3} ms  p99 {:.3} ms  {:.2} us/frame  {:.2} cores",
                num(&pj_fig, "throughput_per_s"),
                num(&pj_fig, "p50_ms"),
                num(&pj_fig, "p99_ms"),
                num(&pj_fig, "server_cpu_us_per_frame"),
                num(&pj_fig, "server_cores"),
            ));
        }
        for (name, r) in in_order(&comparison) {
            report.line(format!(
                "{name:>11}: throughput x{:.2}, CPU/frame x{:.2} less, p99 x{:.2} lower (switchboard vs peerjs)",
                num(&r, "throughput_switchboard_over_peerjs"),
                num(&r, "cpu_per_frame_peerjs_over_switchboard"),
                num(&r, "p99_peerjs_over_switchboard"),
            ));
        }
        let pj_closed = pj_median.get("closed").cloned().unwrap_or(Value::Null);
        report.target(Target::at_least(
            "saturated relay throughput vs PeerJS, same run",
            2.0,
            ratio(
                num(&closed, "throughput_per_s"),
                num(&pj_closed, "throughput_per_s"),
            ),
            "x",
        ));
        reports.push(report);
    }
    Ok(reports)
}

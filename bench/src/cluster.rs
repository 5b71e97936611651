//! Scenario 7, the cluster: two broker nodes on one Postgres database and one Redis (a fresh
//! database and a fresh key prefix per run, both removed afterwards).
//!
//! * Relay across nodes: P calls whose two devices are on the same node (A) and P calls whose
//!   caller is on A and callee on B, set up side by side; each load is run on the same-node
//!   calls, then on the cross-node calls (the order alternates by round). Server CPU is the
//!   sum over both nodes; Redis's CPU is reported beside it when its process can be read.
//! * Presence fan-out across nodes: a user on A with F friends connected to B changes status
//!   (`presence.set`), round after round; each friend's socket notes when `presence` arrives.
//! * Node loss: the user connects to a node of their own, which is killed with SIGKILL; each
//!   friend on B notes when the user goes `offline` (bounded by `--node-ttl`).
use crate::fanout::{self, Friends};
use crate::population::{self, Account};
use crate::procstat::{self, ProcSample};
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::stats::{median, Latency};
use crate::switchboard::{self, TIMEOUT};
use crate::traffic::{self, Link, Load, PhaseResult};
use crate::{progress, ws, Options, Res};
use serde::Serialize;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// A key prefix of its own in the shared Redis; every key under it is deleted on drop.
struct RedisPrefix {
    url: String,
    prefix: String,
}

impl RedisPrefix {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: format!("sbbench{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn redis_cli(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command.arg("-u").arg(&self.url).stdin(Stdio::null());
        command
    }

    /// The Redis server's pid (`INFO server`), to read its CPU time from /proc.
    fn server_pid(&self) -> Option<u32> {
        let out = self.redis_cli().args(["info", "server"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// How many keys are under the prefix (after the run: what the nodes left).
    fn keys(&self) -> Vec<String> {
        let pattern = format!("{}:*", self.prefix);
        self.redis_cli()
            .args(["--scan", "--pattern", &pattern])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = self.keys();
        for chunk in keys.chunks(500) {
            let _ = self.redis_cli().arg("del").args(chunk).output();
        }
    }
}

/// Starts one node of the cluster.
async fn node(
    options: &Options,
    db: &Database,
    redis: &RedisPrefix,
    id: &str,
) -> Res<ServerProcess> {
    let node_id = format!("{}-{id}", redis.prefix);
    ServerProcess::broker(
        options,
        db,
        Bcrypt::Cheap,
        &[
            "--redis-url",
            &redis.url,
            "--redis-prefix",
            &redis.prefix,
            "--node-id",
            &node_id,
            "--node-ttl",
            &options.node_ttl,
            // "offline" when the last socket closes, not 5 s later (as in the fan-out scenario).
            "--presence-grace",
            "0s",
        ],
    )
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Placement {
    SameNode,
    CrossNode,
}

#[derive(Debug, Serialize)]
struct Phase {
    placement: Placement,
    load: String,
    round: usize,
    result: PhaseResult,
    redis_cpu_seconds: Option<f64>,
    redis_cpu_us_per_frame: Option<f64>,
}

fn loads(options: &Options) -> Vec<(String, Load)> {
    Load::series(options.relay_window, &options.cluster_rates)
}

fn sample_redis(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(|pid| procstat::sample(Some(pid)).ok())
}

async fn relay(
    options: &Options,
    a: &ServerProcess,
    b: &ServerProcess,
    redis_pid: Option<u32>,
) -> Res<Vec<Phase>> {
    let n = options.cluster_calls;
    let pairs = population::friend_pairs(a.addr, "cl", 2 * n).await?;
    let (same_pairs, cross_pairs) = pairs.split_at(n);
    let mut same = switchboard::call_links(a.addr, same_pairs).await?;
    let mut cross = switchboard::call_links_between(a.addr, b.addr, cross_pairs).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    progress(format!(
        "cluster: {n} calls on node A, {n} calls from A to B"
    ));
    let pids = [a.pid, b.pid];
    let is_relayed = switchboard::is_relayed;
    if !options.smoke {
        let warm = Load::Closed {
            window: options.relay_window,
        };
        for links in [&mut same, &mut cross] {
            let taken = std::mem::take(links);
            *links = traffic::run(taken, warm, Duration::from_secs(1), &pids, is_relayed)
                .await?
                .0;
        }
    }
    let secs = Duration::from_secs(options.cluster_secs);
    let mut phases = Vec::new();
    for round in 0..options.cluster_rounds.max(1) {
        for (name, load) in loads(options) {
            // Alternate which placement goes first, so neither always follows the other.
            let order = if round % 2 == 0 {
                [Placement::SameNode, Placement::CrossNode]
            } else {
                [Placement::CrossNode, Placement::SameNode]
            };
            for placement in order {
                let links: &mut Vec<Link> = match placement {
                    Placement::SameNode => &mut same,
                    Placement::CrossNode => &mut cross,
                };
                let redis_before = sample_redis(redis_pid);
                let taken = std::mem::take(links);
                let (back, result) = traffic::run(taken, load, secs, &pids, is_relayed).await?;
                *links = back;
                let redis_cpu = sample_redis(redis_pid)
                    .zip(redis_before)
                    .map(|(after, before)| after.cpu_since(&before));
                progress(format!(
                    "  round {round} {placement:?}: {}{}",
                    result.line(),
                    redis_cpu
                        .map(|cpu| format!(
                            "; redis {:.2} us/frame",
                            cpu * 1e6 / result.relayed.max(1) as f64
                        ))
                        .unwrap_or_default()
                ));
                phases.push(Phase {
                    placement,
                    load: name.clone(),
                    round,
                    redis_cpu_us_per_frame: redis_cpu
                        .map(|cpu| cpu * 1e6 / result.relayed.max(1) as f64),
                    redis_cpu_seconds: redis_cpu,
                    result,
                });
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    for link in same.into_iter().chain(cross) {
        let (mut a, mut b) = (link.a, link.b);
        let _ = a.close(None).await;
        let _ = b.close(None).await;
    }
    Ok(phases)
}

/// Medians over rounds of one placement's figures under one load.
fn medians(phases: &[Phase], placement: Placement, load: &str) -> Value {
    let picked: Vec<&Phase> = phases
        .iter()
        .filter(|p| p.placement == placement && p.load == load)
        .collect();
    let pick = |f: &dyn Fn(&Phase) -> f64| {
        let mut values: Vec<f64> = picked.iter().copied().map(f).collect();
        median(&mut values)
    };
    json!({
        "rounds": picked.len(),
        "throughput_per_s": pick(&|p| p.result.throughput_per_s),
        "p50_ms": pick(&|p| p.result.latency.p50_ms),
        "p99_ms": pick(&|p| p.result.latency.p99_ms),
        "p999_ms": pick(&|p| p.result.latency.p999_ms),
        "server_cpu_us_per_frame": pick(&|p| p.result.server_cpu_us_per_frame),
        "server_cores": pick(&|p| p.result.server_cores),
        "redis_cpu_us_per_frame": pick(&|p| p.redis_cpu_us_per_frame.unwrap_or(0.0)),
        "errors_and_lost": picked.iter().map(|p| p.result.errors + p.result.lost).sum::<u64>(),
        "noisy_phases": picked.iter().filter(|p| p.result.max_send_lag_ms > traffic::NOISY_LAG_MS).count(),
    })
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

#[derive(Debug, Serialize)]
struct FanoutResult {
    friends: usize,
    rounds: usize,
    /// The user's `auth` on A -> each friend on B has "online" (once, before the rounds).
    connect_to_friend: Latency,
    /// `presence.set` sent on A -> each friend on B has the new status.
    set_to_friend: Latency,
    /// `presence.set` sent -> the last of the friends has it, per round.
    set_to_every_friend_per_round: Latency,
    server_cpu_seconds: f64,
}

/// A user on A, `friends` connected to B: the user's status changes, round after round.
async fn presence_fanout(
    options: &Options,
    a: &ServerProcess,
    b: &ServerProcess,
    hub: &Account,
    friends: &mut Friends,
) -> Res<(FanoutResult, ws::Ws)> {
    let f = options.cluster_friends;
    let since = Instant::now();
    let (mut socket, _) = switchboard::connect(a.addr, hub, 250).await?;
    let mut connect = fanout::collect(&mut friends.events, f, "online", since).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    progress(format!(
        "cluster: a user on A, {f} friends on B; {} presence.set rounds",
        options.cluster_fanout_rounds
    ));
    let before = (a.sample()?, b.sample()?);
    let (mut set, mut set_all) = (Vec::new(), Vec::new());
    for round in 0..options.cluster_fanout_rounds {
        let status = if round % 2 == 0 { "away" } else { "online" };
        let frame = json!({"type": "presence.set", "id": round + 1, "status": status});
        let since = Instant::now();
        ws::send(&mut socket, frame.to_string()).await?;
        let delays = fanout::collect(&mut friends.events, f, status, since).await?;
        ws::wait_for(&mut socket, "ack", TIMEOUT).await?;
        set_all.push(delays.iter().copied().max().unwrap_or(0));
        set.extend(delays);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = (a.sample()?, b.sample()?);
    let result = FanoutResult {
        friends: f,
        rounds: options.cluster_fanout_rounds,
        connect_to_friend: Latency::from_micros(&mut connect),
        set_to_friend: Latency::from_micros(&mut set),
        set_to_every_friend_per_round: Latency::from_micros(&mut set_all),
        server_cpu_seconds: after.0.cpu_since(&before.0) + after.1.cpu_since(&before.1),
    };
    Ok((result, socket))
}

#[derive(Debug, Serialize)]
struct KillResult {
    node_ttl: String,
    kills: usize,
    /// SIGKILL of the user's node -> each friend on B has "offline".
    kill_to_friend: Latency,
    /// SIGKILL -> the first and the last friend has it, per kill (ms).
    first_ms: Vec<f64>,
    last_ms: Vec<f64>,
}

/// The user connects to a node of their own, which is then killed with SIGKILL.
async fn node_loss(
    options: &Options,
    db: &Database,
    redis: &RedisPrefix,
    hub: &Account,
    friends: &mut Friends,
) -> Res<KillResult> {
    let f = options.cluster_friends;
    let ttl = parse_ttl(&options.node_ttl)?;
    let (mut all, mut first_ms, mut last_ms) = (Vec::new(), Vec::new(), Vec::new());
    for kill in 0..options.cluster_kills {
        let doomed = node(options, db, redis, &format!("k{kill}")).await?;
        let since = Instant::now();
        let (socket, _) = switchboard::connect(doomed.addr, hub, 251 + kill).await?;
        fanout::collect(&mut friends.events, f, "online", since).await?;
        // Kill at a different point of the node's refresh cycle (every ttl/4) each time.
        let offset = ttl.mul_f64(0.25 * (kill as f64 + 0.5) / options.cluster_kills as f64);
        tokio::time::sleep(Duration::from_millis(500) + offset).await;
        let since = Instant::now();
        doomed.kill()?;
        let delays = fanout::collect_within(
            &mut friends.events,
            f,
            "offline",
            since,
            ttl * 2 + Duration::from_secs(5),
        )
        .await?;
        drop(socket);
        let first = delays.iter().copied().min().unwrap_or(0);
        let last = delays.iter().copied().max().unwrap_or(0);
        progress(format!(
            "cluster: kill {kill}: friends saw offline after {:.0}-{:.0} ms",
            f64::from(first) / 1000.0,
            f64::from(last) / 1000.0
        ));
        first_ms.push(f64::from(first) / 1000.0);
        last_ms.push(f64::from(last) / 1000.0);
        all.extend(delays);
    }
    Ok(KillResult {
        node_ttl: options.node_ttl.clone(),
        kills: options.cluster_kills,
        kill_to_friend: Latency::from_micros(&mut all),
        first_ms,
        last_ms,
    })
}

/// `--node-ttl` as the broker reads it: a number and a unit (`ms`, `s`, `m`).
fn parse_ttl(ttl: &str) -> Res<Duration> {
    let ttl = ttl.trim();
    let split = ttl
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(ttl.len());
    let (value, unit) = ttl.split_at(split);
    let value: f64 = value.parse()?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        other => return Err(format!("--node-ttl: unknown unit {other:?}").into()),
    };
    Ok(Duration::from_secs_f64(seconds))
}

pub async fn run(options: &Options) -> Res<Vec<Report>> {
    parse_ttl(&options.node_ttl)?;
    crate::server::postgres_reachable(&options.postgres_url)
        .map_err(|e| format!("the cluster scenario needs Postgres: {e}"))?;
    let db = Database::postgres(&options.postgres_url)?;
    let redis = RedisPrefix::new(&options.redis_url);
    let redis_pid = redis.server_pid();
    if redis_pid.is_none() {
        return Err(format!(
            "the cluster scenario needs Redis at {} (and redis-cli)",
            options.redis_url
        )
        .into());
    }
    let a = node(options, &db, &redis, "a").await?;
    let b = node(options, &db, &redis, "b").await?;
    progress(format!(
        "cluster: nodes A (pid {}) and B (pid {}), prefix {}",
        a.pid, b.pid, redis.prefix
    ));

    let phases = relay(options, &a, &b, redis_pid).await?;

    let f = options.cluster_friends;
    let mut accounts = population::register(a.addr, "clf", f + 1, 8).await?;
    let hub = accounts.remove(0);
    let pairs = accounts.iter().map(|x| (hub.clone(), x.clone())).collect();
    population::befriend(a.addr, pairs, 8).await?;
    let mut friends = Friends::connect(b.addr, accounts, &hub.username).await?;
    let (fan, hub_socket) = presence_fanout(options, &a, &b, &hub, &mut friends).await?;
    // The user leaves A, so that only the node to be killed holds them.
    let since = Instant::now();
    drop(hub_socket);
    fanout::collect(&mut friends.events, f, "offline", since).await?;
    let kills = node_loss(options, &db, &redis, &hub, &mut friends).await?;
    friends.close().await;
    a.stop().await?;
    b.stop().await?;
    // What two gracefully stopped nodes (and the killed ones, swept) left behind.
    let mut left = redis.keys();
    left.sort();
    left.truncate(20);

    let mut figures = serde_json::Map::new();
    for (name, _) in loads(options) {
        figures.insert(
            name.clone(),
            json!({
                "same_node": medians(&phases, Placement::SameNode, &name),
                "cross_node": medians(&phases, Placement::CrossNode, &name),
            }),
        );
    }
    let mut report = Report::new(
        "cluster",
        json!({
            "nodes": 2,
            "node_ttl": options.node_ttl,
            "calls_per_placement": options.cluster_calls,
            "seconds_per_phase": options.cluster_secs,
            "rounds": options.cluster_rounds,
            "median": figures,
            "phases": phases,
            "fanout": fan,
            "node_loss": kills,
            "redis_keys_left_after_stop": left,
        }),
    );
    for (name, _) in loads(options) {
        for placement in [Placement::SameNode, Placement::CrossNode] {
            let m = medians(&phases, placement, &name);
            report.line(format!(
                "{name:>11} {:>10}: {:>8.0} relays/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  {:.2} us/frame (both nodes)  redis {:.2} us/frame",
                match placement {
                    Placement::SameNode => "same node",
                    Placement::CrossNode => "cross node",
                },
                num(&m, "throughput_per_s"),
                num(&m, "p50_ms"),
                num(&m, "p99_ms"),
                num(&m, "p999_ms"),
                num(&m, "server_cpu_us_per_frame"),
                num(&m, "redis_cpu_us_per_frame"),
            ));
        }
    }
    report.line(format!(
        "auth on A -> friend on B has \"online\" ({f} friends): {}",
        fan.connect_to_friend.line()
    ));
    report.line(format!(
        "presence.set on A -> friend on B has it ({f} friends): {}",
        fan.set_to_friend.line()
    ));
    report.line(format!(
        "presence.set on A -> the last of the {f} has it, per round: {}",
        fan.set_to_every_friend_per_round.line()
    ));
    report.line(format!(
        "kill -9 of the user's node -> friend on B has \"offline\" (--node-ttl {}): {}; last friend per kill {:?} ms",
        options.node_ttl,
        kills.kill_to_friend.line(),
        kills.last_ms
    ));
    report.line(format!(
        "keys left under the prefix after both nodes stopped: {left:?}"
    ));

    let target_rate = if options.cluster_rates.contains(&5000.0) {
        5000.0
    } else {
        options
            .cluster_rates
            .iter()
            .cloned()
            .fold(f64::NAN, f64::max)
    };
    let at = format!("open_{target_rate:.0}");
    let same = medians(&phases, Placement::SameNode, &at);
    let cross = medians(&phases, Placement::CrossNode, &at);
    report.target(Target::at_most(
        &format!("cross-node relay p99 at {target_rate:.0} frames/s"),
        3.0,
        num(&cross, "p99_ms"),
        "ms",
    ));
    let same_cpu = num(&same, "server_cpu_us_per_frame");
    report.target(Target::at_most(
        &format!("cross-node CPU per frame over same-node, at {target_rate:.0} frames/s"),
        3.0,
        if same_cpu > 0.0 {
            num(&cross, "server_cpu_us_per_frame") / same_cpu
        } else {
            0.0
        },
        "x",
    ));
    Ok(vec![report])
}

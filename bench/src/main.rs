//! switchboard-bench: the load generator. It drives a Switchboard broker, and PeerJS server
//! for the relay comparison, from this separate process over loopback, only through their
//! public protocols (REST and WebSocket), with bounded counts and durations. It starts each
//! server itself (a fresh one per scenario, on a fresh database), reads the server's CPU time
//! and RSS from /proc, and prints every scenario as a readable summary and as JSON.
//!
//! `cargo build --release --bins && target/release/switchboard-bench` (from the workspace
//! root, which builds the broker too) runs everything; see
//! docs/benchmarks.md for the scenarios, options and results.
#![deny(clippy::unwrap_used, clippy::expect_used)]
mod call_setup;
mod cluster;
mod fanout;
mod http;
mod idle;
mod isolation;
mod payload;
mod peerjs;
mod population;
mod procstat;
mod relay;
mod report;
mod server;
mod soak;
mod stats;
mod switchboard;
mod traffic;
mod ws;

use clap::{Parser, ValueEnum};
use report::Report;
use serde::Serialize;
use std::path::PathBuf;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Every scenario below but the soak and the cluster, in this order.
    All,
    /// N authenticated sockets held open with heartbeats: RSS per connection, idle CPU.
    Idle,
    /// Signaling relay, closed and open loop, alternating with PeerJS server.
    Relay,
    /// Call set-up cycles, persisted, on SQLite and on Postgres.
    Setup,
    /// Presence fan-out to a user's online friends.
    Fanout,
    /// Relay latency while a login flood (bcrypt) hits REST.
    Isolation,
    /// Rounds of connect, call, signal, hang up, befriend and unfriend, drop: memory, descriptors
    /// and the broker's tables over time (about 10 minutes; not part of `all`).
    Soak,
    /// Two broker nodes on one Postgres and one Redis: relay across nodes beside relay on one
    /// node, presence fan-out across nodes, a killed node's users going offline (about
    /// 3 minutes; needs Redis and Postgres; not part of `all`).
    Cluster,
}

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "switchboard-bench",
    about = "Load generator for Switchboard (and PeerJS server, for comparison)"
)]
pub struct Options {
    /// Scenarios to run.
    #[arg(value_enum, default_values_t = [Scenario::All])]
    pub scenarios: Vec<Scenario>,
    /// The broker binary to start (default: `switchboard` next to this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Tiny counts and ~1 s phases: checks the harness, measures nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Also write every result into this JSON file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Where databases and server logs go (default: a new folder under the temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Worker threads of the generator (it shares the machine with the server).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Admin URL of the Postgres server; a fresh database is created on it per run.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
    /// Skip the Postgres half of the set-up scenario.
    #[arg(long)]
    pub skip_postgres: bool,
    /// Folder holding PeerJS server's package.json and node_modules.
    #[arg(long)]
    pub peerjs_dir: Option<PathBuf>,
    /// Port for PeerJS server (0 picks a free one).
    #[arg(long, default_value_t = 9000)]
    pub peerjs_port: u16,
    /// Skip the PeerJS side of the relay scenario.
    #[arg(long)]
    pub no_peerjs: bool,

    /// Idle: authenticated sockets to hold open.
    #[arg(long, default_value_t = 15_000)]
    pub idle_connections: usize,
    /// Idle: seconds to hold them (the broker pings every 15 s by default).
    #[arg(long, default_value_t = 45)]
    pub idle_hold_secs: u64,

    /// Relay: active calls (two sockets each).
    #[arg(long, default_value_t = 100)]
    pub relay_calls: usize,
    /// Relay: frames in flight per direction in the closed loop.
    #[arg(long, default_value_t = 4)]
    pub relay_window: usize,
    /// Relay: seconds per phase.
    #[arg(long, default_value_t = 10)]
    pub relay_secs: u64,
    /// Relay: open-loop rates in frames/s.
    #[arg(long, value_delimiter = ',', default_values_t = [1000.0, 5000.0, 10000.0])]
    pub relay_rates: Vec<f64>,
    /// Relay: Switchboard/PeerJS alternations (medians are taken over them).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Set-up: caller/callee pairs cycling concurrently.
    #[arg(long, default_value_t = 100)]
    pub setup_pairs: usize,
    /// Set-up: seconds per database.
    #[arg(long, default_value_t = 10)]
    pub setup_secs: u64,

    /// Fan-out: online friends of the user who connects and disconnects.
    #[arg(long, default_value_t = 1000)]
    pub fanout_friends: usize,
    /// Fan-out: connect/disconnect rounds.
    #[arg(long, default_value_t = 20)]
    pub fanout_rounds: usize,

    /// Isolation: relay rate in frames/s during the flood.
    #[arg(long, default_value_t = 5000.0)]
    pub isolation_rate: f64,
    /// Isolation: concurrent clients logging in as fast as they can.
    #[arg(long, default_value_t = 32)]
    pub flood_clients: usize,
    /// Isolation: seconds of the quiet phase and of the flood phase.
    #[arg(long, default_value_t = 10)]
    pub isolation_secs: u64,

    /// Soak: sockets per round (half callers, half callees).
    #[arg(long, default_value_t = 1000)]
    pub soak_sockets: usize,
    /// Soak: rounds.
    #[arg(long, default_value_t = 20)]
    pub soak_rounds: usize,
    /// Soak: shortest round in seconds (a round that finishes sooner waits out the rest).
    #[arg(long, default_value_t = 30)]
    pub soak_round_secs: u64,

    /// Cluster: the Redis the nodes share (a fresh key prefix per run, deleted afterwards).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Cluster: the nodes' `--node-ttl` (a killed node's users go offline within it).
    #[arg(long, default_value = "10s")]
    pub node_ttl: String,
    /// Cluster: calls with both devices on one node, and as many across the two nodes.
    #[arg(long, default_value_t = 100)]
    pub cluster_calls: usize,
    /// Cluster: open-loop rates in frames/s (each run on both placements).
    #[arg(long, value_delimiter = ',', default_values_t = [1000.0, 5000.0, 10000.0])]
    pub cluster_rates: Vec<f64>,
    /// Cluster: seconds per phase.
    #[arg(long, default_value_t = 10)]
    pub cluster_secs: u64,
    /// Cluster: rounds of every load on both placements (medians are taken over them).
    #[arg(long, default_value_t = 2)]
    pub cluster_rounds: usize,
    /// Cluster: friends on node B of the user on node A.
    #[arg(long, default_value_t = 1000)]
    pub cluster_friends: usize,
    /// Cluster: `presence.set` rounds of that user.
    #[arg(long, default_value_t = 20)]
    pub cluster_fanout_rounds: usize,
    /// Cluster: nodes killed with SIGKILL, one after the other.
    #[arg(long, default_value_t = 3)]
    pub cluster_kills: usize,

    #[arg(skip)]
    #[serde(skip)]
    pub resolved_workdir: PathBuf,
}

impl Options {
    fn apply_smoke(&mut self) {
        self.idle_connections = 40;
        self.idle_hold_secs = 1;
        self.relay_calls = 4;
        self.relay_secs = 1;
        self.relay_rates = vec![200.0, 400.0];
        self.rounds = 1;
        self.setup_pairs = 4;
        self.setup_secs = 1;
        self.fanout_friends = 20;
        self.fanout_rounds = 2;
        self.isolation_rate = 200.0;
        self.flood_clients = 2;
        self.isolation_secs = 1;
        self.soak_sockets = 20;
        self.soak_rounds = 3;
        self.soak_round_secs = 1;
        self.cluster_calls = 4;
        self.cluster_rates = vec![200.0];
        self.cluster_secs = 1;
        self.cluster_rounds = 1;
        self.cluster_friends = 20;
        self.cluster_fanout_rounds = 2;
        self.cluster_kills = 1;
        self.node_ttl = "1s".to_owned();
    }

    pub fn server_bin(&self) -> Res<PathBuf> {
        if let Some(bin) = &self.server_bin {
            return Ok(bin.clone());
        }
        let me = std::env::current_exe()?;
        Ok(me.with_file_name("switchboard"))
    }

    pub fn peerjs_dir(&self) -> PathBuf {
        self.peerjs_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peerjs"))
    }

    pub fn workdir(&self) -> &std::path::Path {
        &self.resolved_workdir
    }
}

/// Pause between scenarios of a full run.
const SETTLE_SECS: u64 = 10;

/// Progress lines on stderr, with seconds since start.
pub fn progress(message: impl AsRef<str>) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    eprintln!(
        "[{:7.1}s] {}",
        start.elapsed().as_secs_f64(),
        message.as_ref()
    );
}

fn main() {
    let mut options = Options::parse();
    if options.smoke {
        options.apply_smoke();
    }
    let threads = options.threads.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(options)),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = outcome {
        eprintln!("switchboard-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(mut options: Options) -> Res<()> {
    progress("switchboard-bench starting");
    let descriptors = procstat::raise_descriptor_limit();
    let workdir = match &options.workdir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!(
            "switchboard-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        )),
    };
    std::fs::create_dir_all(&workdir)?;
    options.resolved_workdir = workdir.clone();
    let bin = options.server_bin()?;
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release --bins` or pass --server-bin",
            bin.display()
        )
        .into());
    }
    // `all` stands for every scenario but the soak and the cluster, which may be named beside it.
    let mut scenarios = Vec::new();
    for scenario in &options.scenarios {
        match scenario {
            Scenario::All => scenarios.extend([
                Scenario::Idle,
                Scenario::Relay,
                Scenario::Setup,
                Scenario::Fanout,
                Scenario::Isolation,
            ]),
            other => scenarios.push(*other),
        }
    }
    scenarios.dedup();
    let mut document = report::Document::new(&options, descriptors);
    for (i, scenario) in scenarios.into_iter().enumerate() {
        if i > 0 && !options.smoke {
            // Let the previous scenario's aftermath (closing sockets, Postgres dropping its
            // database and checkpointing) settle before the next one measures anything.
            tokio::time::sleep(std::time::Duration::from_secs(SETTLE_SECS)).await;
        }
        let load_before = procstat::load_average();
        progress(format!(
            "scenario {scenario:?} (load average {load_before:.2})"
        ));
        let reports: Vec<Report> = match scenario {
            Scenario::Idle => vec![idle::run(&options).await?],
            Scenario::Relay => relay::run(&options).await?,
            Scenario::Setup => call_setup::run(&options).await?,
            Scenario::Fanout => vec![fanout::run(&options).await?],
            Scenario::Isolation => vec![isolation::run(&options).await?],
            Scenario::Soak => vec![soak::run(&options).await?],
            Scenario::Cluster => cluster::run(&options).await?,
            Scenario::All => vec![],
        };
        for mut report in reports {
            report.set_load(load_before, procstat::load_average());
            report.print();
            document.push(report);
            if let Some(path) = &options.json_out {
                document.write(path)?;
            }
        }
    }
    if options.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    progress("done");
    Ok(())
}

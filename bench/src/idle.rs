//! Scenario 1, idle connections: N authenticated WebSockets held open while the broker pings
//! them (the client answers each ping with a pong, as browsers do). Reports the broker's RSS
//! per connection and the CPU it spends keeping them.
//!
//! First the same client holds N sockets on a bare actix-web-actors echo server
//! (`switchboard-bare-ws`, the broker's stack with nothing of its own), so that the broker's
//! figure can be read as the stack's share plus its own.
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::ws::{self, Ws};
use crate::{population, progress, switchboard, Options, Res};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// Sockets being opened at once; each does a TCP connect, the upgrade and the first frame.
const CONNECTING_AT_ONCE: usize = 64;

/// What holding N sockets on one server showed.
struct Held {
    connected: usize,
    connect_seconds: f64,
    base_kib: u64,
    held_kib: u64,
    after_hold: crate::procstat::ProcSample,
    held: crate::procstat::ProcSample,
    closed_kib: u64,
    checkpoints: Vec<Value>,
    pings: u64,
    dropped: u64,
}

impl Held {
    /// Two seconds after the last socket connected.
    fn per_connection_kib(&self) -> f64 {
        self.held_kib.saturating_sub(self.base_kib) as f64 / self.connected.max(1) as f64
    }

    /// At the end of the hold: what idle sockets keep once the connection burst's leftovers
    /// (freed pages the allocator returns after its 10 s decay, idle blocking threads) are gone.
    fn steady_per_connection_kib(&self) -> f64 {
        self.after_hold.rss_kib.saturating_sub(self.base_kib) as f64 / self.connected.max(1) as f64
    }
}

/// Opens `n` sockets with `connect(i)` (which returns once the socket is ready: authenticated,
/// or echoed), holds them `hold` answering pings, then closes them all.
async fn hold<F, Fut>(
    label: &'static str,
    server: &ServerProcess,
    n: usize,
    hold: Duration,
    connect: F,
) -> Res<Held>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Res<Ws>> + Send + 'static,
{
    let base = server.sample()?;
    progress(format!(
        "{label}: server RSS {} KiB before connecting",
        base.rss_kib
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Res<()>>();
    let pings = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let started = Instant::now();
    let mut holders = Vec::with_capacity(n);
    for i in 0..n {
        let (gate, ready, mut stop) = (gate.clone(), ready_tx.clone(), stop_rx.clone());
        let (pings, dropped) = (pings.clone(), dropped.clone());
        let connecting = connect(i);
        holders.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let connected = connecting.await;
            drop(permit);
            let mut socket = match connected {
                Ok(socket) => {
                    let _ = ready.send(Ok(()));
                    socket
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            loop {
                tokio::select! {
                    message = socket.next() => match message {
                        Some(Ok(Message::Ping(_))) => { pings.fetch_add(1, Ordering::Relaxed); }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Some(Ok(_)) => {}
                    },
                    _ = stop.changed() => {
                        let _ = socket.close(None).await;
                        return;
                    }
                }
            }
        }));
    }
    drop(ready_tx);
    let mut checkpoints = Vec::new();
    let mut connected = 0usize;
    // Holders keep their sender, so count the answers rather than wait for the channel to close.
    for _ in 0..n {
        let result = ready_rx
            .recv()
            .await
            .ok_or(format!("{label}: holders are gone"))?;
        result.map_err(|e| format!("{label}: socket {connected} failed to connect: {e}"))?;
        connected += 1;
        if connected.is_multiple_of((n / 4).max(1)) || connected == n {
            let sample = server.sample()?;
            checkpoints.push(json!({"connections": connected, "rss_kib": sample.rss_kib}));
            progress(format!(
                "{label}: {connected} connected, server RSS {} KiB",
                sample.rss_kib
            ));
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = server.sample()?;
    progress(format!(
        "{label}: holding {connected} sockets for {} s",
        hold.as_secs()
    ));
    tokio::time::sleep(hold).await;
    let after_hold = server.sample()?;
    let _ = stop_tx.send(true);
    for holder in holders {
        let _ = holder.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = server.sample()?;
    Ok(Held {
        connected,
        connect_seconds,
        base_kib: base.rss_kib,
        held_kib: held.rss_kib,
        after_hold,
        held,
        closed_kib: closed.rss_kib,
        checkpoints,
        pings: pings.load(Ordering::Relaxed),
        dropped: dropped.load(Ordering::Relaxed),
    })
}

/// The bare stack's figure: the same client and count against `switchboard-bare-ws`, each
/// socket ready once its first text frame came back.
async fn baseline(options: &Options, n: usize, hold_for: Duration) -> Res<Held> {
    let server = ServerProcess::bare_ws(options).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let addr = server.addr;
    let held = hold(
        "idle (bare stack)",
        &server,
        n,
        hold_for,
        move |i| async move {
            let mut socket = ws::connect(addr, "/ws", i).await?;
            ws::send(&mut socket, "hello".to_owned()).await?;
            ws::next_text(&mut socket, switchboard::TIMEOUT).await?;
            Ok(socket)
        },
    )
    .await?;
    server.stop().await?;
    Ok(held)
}

pub async fn run(options: &Options) -> Res<Report> {
    let n = options.idle_connections;
    let hold_for = Duration::from_secs(options.idle_hold_secs);
    let bare = baseline(options, n, hold_for).await?;
    progress(format!(
        "idle (bare stack): {:.2} KiB per connection",
        bare.per_connection_kib()
    ));

    let db = Database::sqlite(options.workdir(), "idle");
    let server = ServerProcess::broker(options, &db, Bcrypt::Cheap, &[]).await?;
    progress(format!("idle: registering {n} accounts"));
    let accounts = Arc::new(population::register(server.addr, "idle", n, 8).await?);
    // The registrations' freed memory goes back to the system on the allocator's decay (10 s
    // for dirty pages, then 10 s for muzzy ones): the baseline is read after it, so that
    // sockets are not counted as smaller for reusing pages the burst left behind.
    let calm = if options.smoke { 1 } else { 25 };
    tokio::time::sleep(Duration::from_secs(calm)).await;
    let addr = server.addr;
    let held = hold("idle", &server, n, hold_for, move |i| {
        let accounts = accounts.clone();
        async move { Ok(switchboard::connect(addr, &accounts[i], i).await?.0) }
    })
    .await?;
    // Freed memory should go back to the system within a minute (the broker's allocator
    // returns it in the background); the presence grace also lets go of everyone meanwhile.
    let settle = if options.smoke { 3 } else { 60 };
    progress(format!(
        "idle: all closed; RSS {} KiB, waiting {settle} s",
        held.closed_kib
    ));
    tokio::time::sleep(Duration::from_secs(settle - 2)).await;
    let settled = server.sample()?;
    server.stop().await?;
    let grown = held.held_kib.saturating_sub(held.base_kib).max(1) as f64;
    let returned_percent = held.held_kib.saturating_sub(settled.rss_kib) as f64 / grown * 100.0;

    let per_connection_kib = held.per_connection_kib();
    let steady_kib = held.steady_per_connection_kib();
    let bare_kib = bare.per_connection_kib();
    let bare_steady_kib = bare.steady_per_connection_kib();
    let own_kib = steady_kib - bare_steady_kib;
    let idle_cpu = held.after_hold.cpu_since(&held.held);
    let hold_secs = hold_for.as_secs_f64().max(0.001);
    let connected = held.connected;
    let mut report = Report::new(
        "idle",
        json!({
            "connections": connected,
            "connect_seconds": held.connect_seconds,
            "connects_per_s": connected as f64 / held.connect_seconds.max(0.001),
            "rss_kib_before": held.base_kib,
            "rss_kib_held": held.held_kib,
            "rss_kib_after_close": held.closed_kib,
            "settle_seconds": settle,
            "rss_kib_settled": settled.rss_kib,
            "returned_percent": returned_percent,
            "rss_per_connection_kib": per_connection_kib,
            "rss_kib_end_of_hold": held.after_hold.rss_kib,
            "steady_rss_per_connection_kib": steady_kib,
            "bare_stack": {
                "connections": bare.connected,
                "rss_kib_before": bare.base_kib,
                "rss_kib_held": bare.held_kib,
                "rss_per_connection_kib": bare_kib,
                "rss_kib_end_of_hold": bare.after_hold.rss_kib,
                "steady_rss_per_connection_kib": bare_steady_kib,
                "checkpoints": bare.checkpoints,
                "pings_received": bare.pings,
                "dropped_while_held": bare.dropped,
            },
            "own_rss_per_connection_kib": own_kib,
            "checkpoints": held.checkpoints,
            "hold_seconds": hold_for.as_secs(),
            "idle_cpu_seconds": idle_cpu,
            "idle_cpu_percent_of_a_core": idle_cpu / hold_secs * 100.0,
            "idle_cpu_us_per_connection_per_s": idle_cpu * 1e6 / hold_secs / n.max(1) as f64,
            "pings_received": held.pings,
            "dropped_while_held": held.dropped,
        }),
    );
    report.line(format!(
        "{connected} sockets authenticated in {:.1} s; broker RSS {} -> {} KiB = {per_connection_kib:.2} KiB per connection",
        held.connect_seconds, held.base_kib, held.held_kib
    ));
    report.line(format!(
        "at the end of the hold: {steady_kib:.2} KiB per connection; bare actix-web-actors stack, same client: {bare_kib:.2} KiB, {bare_steady_kib:.2} at the end of its hold; the broker's own share {own_kib:.2} KiB"
    ));
    report.line(format!(
        "held {} s: {:.3} CPU-s ({:.2}% of a core), {} pings answered, {} dropped; RSS after closing all {} KiB",
        hold_for.as_secs(),
        idle_cpu,
        idle_cpu / hold_secs * 100.0,
        held.pings,
        held.dropped,
        held.closed_kib
    ));
    report.line(format!(
        "{settle} s after closing: RSS {} KiB, {returned_percent:.0}% of what the sockets took given back",
        settled.rss_kib
    ));
    if !options.smoke {
        report.target(Target::at_least(
            "memory given back within a minute of a mass disconnect",
            80.0,
            returned_percent,
            "%",
        ));
        report.target(Target::at_most(
            "broker RSS per idle connection above the bare stack's, end of hold",
            1.0,
            own_kib,
            "KiB",
        ));
    }
    report.target(Target::at_most(
        "broker RSS per idle authenticated connection",
        8.0,
        per_connection_kib,
        "KiB",
    ));
    Ok(report)
}

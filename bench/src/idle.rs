//! Scenario 1, idle connections: N authenticated WebSockets held open while the broker pings
//! them (the client answers each ping with a pong, as browsers do). Reports the broker's RSS
//! per connection and the CPU it spends keeping them.
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::{population, progress, switchboard, Options, Res};
use futures_util::StreamExt;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// Sockets being opened at once; each does a TCP connect, the upgrade and the `auth` frame.
const CONNECTING_AT_ONCE: usize = 64;

pub async fn run(options: &Options) -> Res<Report> {
    let n = options.idle_connections;
    let db = Database::sqlite(options.workdir(), "idle");
    let server = ServerProcess::broker(options, &db, Bcrypt::Cheap, &[]).await?;
    progress(format!("idle: registering {n} accounts"));
    let accounts = population::register(server.addr, "idle", n, 8).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = server.sample()?;
    progress(format!(
        "idle: broker RSS {} KiB before connecting",
        base.rss_kib
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Res<()>>();
    let pings = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let started = Instant::now();
    let mut holders = Vec::with_capacity(n);
    for (i, account) in accounts.into_iter().enumerate() {
        let (gate, ready, mut stop) = (gate.clone(), ready_tx.clone(), stop_rx.clone());
        let (pings, dropped, addr) = (pings.clone(), dropped.clone(), server.addr);
        holders.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let connected = switchboard::connect(addr, &account, i).await;
            drop(permit);
            let mut socket = match connected {
                Ok((socket, _welcome)) => {
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
        let result = ready_rx.recv().await.ok_or("idle: holders are gone")?;
        result.map_err(|e| format!("idle: socket {connected} failed to connect: {e}"))?;
        connected += 1;
        if connected.is_multiple_of((n / 4).max(1)) || connected == n {
            let sample = server.sample()?;
            checkpoints.push(json!({"connections": connected, "rss_kib": sample.rss_kib}));
            progress(format!(
                "idle: {connected} connected, broker RSS {} KiB",
                sample.rss_kib
            ));
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = server.sample()?;
    let hold = Duration::from_secs(options.idle_hold_secs);
    progress(format!(
        "idle: holding {connected} sockets for {} s",
        hold.as_secs()
    ));
    tokio::time::sleep(hold).await;
    let after_hold = server.sample()?;
    let pings_received = pings.load(Ordering::Relaxed);
    let dropped_while_held = dropped.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for holder in holders {
        let _ = holder.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = server.sample()?;
    // Freed memory should go back to the system within a minute (the broker's allocator
    // returns it in the background); the presence grace also lets go of everyone meanwhile.
    let settle = if options.smoke { 3 } else { 60 };
    progress(format!(
        "idle: all closed; RSS {} KiB, waiting {settle} s",
        closed.rss_kib
    ));
    tokio::time::sleep(Duration::from_secs(settle - 2)).await;
    let settled = server.sample()?;
    server.stop().await?;
    let grown = held.rss_kib.saturating_sub(base.rss_kib).max(1) as f64;
    let returned_percent = held.rss_kib.saturating_sub(settled.rss_kib) as f64 / grown * 100.0;

    let per_connection_kib = (held.rss_kib.saturating_sub(base.rss_kib)) as f64 / n.max(1) as f64;
    let idle_cpu = after_hold.cpu_since(&held);
    let hold_secs = hold.as_secs_f64().max(0.001);
    let mut report = Report::new(
        "idle",
        json!({
            "connections": connected,
            "connect_seconds": connect_seconds,
            "connects_per_s": connected as f64 / connect_seconds.max(0.001),
            "rss_kib_before": base.rss_kib,
            "rss_kib_held": held.rss_kib,
            "rss_kib_after_close": closed.rss_kib,
            "settle_seconds": settle,
            "rss_kib_settled": settled.rss_kib,
            "returned_percent": returned_percent,
            "rss_per_connection_kib": per_connection_kib,
            "checkpoints": checkpoints,
            "hold_seconds": hold.as_secs(),
            "idle_cpu_seconds": idle_cpu,
            "idle_cpu_percent_of_a_core": idle_cpu / hold_secs * 100.0,
            "idle_cpu_us_per_connection_per_s": idle_cpu * 1e6 / hold_secs / n.max(1) as f64,
            "pings_received": pings_received,
            "dropped_while_held": dropped_while_held,
        }),
    );
    report.line(format!(
        "{connected} sockets authenticated in {connect_seconds:.1} s; broker RSS {} -> {} KiB = {per_connection_kib:.2} KiB per connection",
        base.rss_kib, held.rss_kib
    ));
    report.line(format!(
        "held {} s: {:.3} CPU-s ({:.2}% of a core), {pings_received} pings answered, {dropped_while_held} dropped; RSS after closing all {} KiB",
        hold.as_secs(),
        idle_cpu,
        idle_cpu / hold_secs * 100.0,
        closed.rss_kib
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
    }
    report.target(Target::at_most(
        "broker RSS per idle authenticated connection",
        8.0,
        per_connection_kib,
        "KiB",
    ));
    Ok(report)
}

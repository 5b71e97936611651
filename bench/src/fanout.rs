//! Scenario 4, presence fan-out: a user with F online friends connects (authenticates) and
//! disconnects, round after round; every friend's socket notes when the `presence` frame for
//! that user arrives. The broker runs with no presence grace here, so "offline" is pushed as
//! soon as the socket closes instead of after the default 5 s.
use crate::population::{self, Account};
use crate::report::{Report, Target};
use crate::server::{Bcrypt, Database, ServerProcess};
use crate::stats::{micros, Latency};
use crate::switchboard::{self, TIMEOUT};
use crate::{progress, ws, Options, Res};
use futures_util::StreamExt;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub struct Seen {
    pub status: String,
    pub at: Instant,
}

/// Waits for `n` presence frames with `status`; returns each one's delay after `since`.
pub async fn collect(
    events: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
    status: &str,
    since: Instant,
) -> Res<Vec<u32>> {
    collect_within(events, n, status, since, Duration::from_secs(20)).await
}

/// As `collect`, giving up `within` after `since`.
pub async fn collect_within(
    events: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
    status: &str,
    since: Instant,
    within: Duration,
) -> Res<Vec<u32>> {
    let mut delays = Vec::with_capacity(n);
    let deadline = since + within;
    while delays.len() < n {
        let seen = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| format!("only {} of {n} friends saw {status}", delays.len()))?
            .ok_or("friends' sockets are gone")?;
        if seen.status == status {
            delays.push(micros(seen.at - since));
        }
    }
    Ok(delays)
}

/// A user's friends, each connected with one socket, noting every `presence` frame about
/// that user as it arrives.
pub struct Friends {
    pub events: mpsc::UnboundedReceiver<Seen>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Friends {
    /// Connects every account to `addr` (64 at a time) and returns once all are authenticated.
    pub async fn connect(addr: SocketAddr, accounts: Vec<Account>, hub_name: &str) -> Res<Self> {
        let f = accounts.len();
        let (event_tx, events) = mpsc::unbounded_channel::<Seen>();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Res<()>>();
        let gate = std::sync::Arc::new(Semaphore::new(64));
        let mut tasks = Vec::new();
        for (i, account) in accounts.into_iter().enumerate() {
            let (events, ready, mut stop, gate) = (
                event_tx.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
                gate.clone(),
            );
            let hub_name = hub_name.to_owned();
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let mut socket = match switchboard::connect(addr, &account, i).await {
                    Ok((socket, _)) => {
                        let _ = ready.send(Ok(()));
                        socket
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                drop(permit);
                loop {
                    tokio::select! {
                        message = socket.next() => match message {
                            Some(Ok(Message::Text(text))) => {
                                let at = Instant::now();
                                if ws::frame_type(text.as_str()) != "presence" {
                                    continue;
                                }
                                let Ok(frame) = serde_json::from_str::<serde_json::Value>(text.as_str()) else { continue };
                                if frame["username"] == hub_name.as_str() {
                                    let status = frame["status"].as_str().unwrap_or_default().to_owned();
                                    let _ = events.send(Seen { status, at });
                                }
                            }
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
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
        for _ in 0..f {
            ready_rx
                .recv()
                .await
                .ok_or("fanout: friends' tasks are gone")??;
        }
        Ok(Self {
            events,
            stop: stop_tx,
            tasks,
        })
    }

    /// Closes every friend's socket.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub async fn run(options: &Options) -> Res<Report> {
    let f = options.fanout_friends;
    let db = Database::sqlite(options.workdir(), "fanout");
    let server =
        ServerProcess::broker(options, &db, Bcrypt::Cheap, &["--presence-grace", "0s"]).await?;
    progress(format!("fanout: a user with {f} friends"));
    let mut accounts = population::register(server.addr, "fan", f + 1, 8).await?;
    let hub: Account = accounts.remove(0);
    let pairs = accounts.iter().map(|a| (hub.clone(), a.clone())).collect();
    population::befriend(server.addr, pairs, 8).await?;

    let mut friends = Friends::connect(server.addr, accounts, &hub.username).await?;
    progress(format!(
        "fanout: {f} friends online; {} rounds",
        options.fanout_rounds
    ));

    let before = server.sample()?;
    let (mut online, mut offline) = (Vec::new(), Vec::new());
    let (mut online_all, mut offline_all, mut welcome) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.fanout_rounds {
        let mut socket = ws::connect(server.addr, "/ws", 200 + round).await?;
        let since = Instant::now();
        ws::send(
            &mut socket,
            json!({"type": "auth", "token": hub.token}).to_string(),
        )
        .await?;
        ws::wait_for(&mut socket, "welcome", TIMEOUT).await?;
        welcome.push(micros(since.elapsed()));
        let delays = collect(&mut friends.events, f, "online", since).await?;
        online_all.push(delays.iter().copied().max().unwrap_or(0));
        online.extend(delays);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let since = Instant::now();
        socket.close(None).await?;
        let delays = collect(&mut friends.events, f, "offline", since).await?;
        offline_all.push(delays.iter().copied().max().unwrap_or(0));
        offline.extend(delays);
        drop(socket);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = server.sample()?;
    friends.close().await;
    server.stop().await?;

    let online = Latency::from_micros(&mut online);
    let offline = Latency::from_micros(&mut offline);
    let welcome = Latency::from_micros(&mut welcome);
    let online_all = Latency::from_micros(&mut online_all);
    let offline_all = Latency::from_micros(&mut offline_all);
    let mut report = Report::new(
        "fanout",
        json!({
            "friends": f,
            "rounds": options.fanout_rounds,
            "connect_to_friend": online,
            "connect_to_every_friend_per_round": online_all,
            "disconnect_to_friend": offline,
            "disconnect_to_every_friend_per_round": offline_all,
            "welcome": welcome,
            "server_cpu_seconds": after.cpu_since(&before),
            "server_rss_kib": after.rss_kib,
        }),
    );
    report.line(format!(
        "auth sent -> friend has \"online\": {}",
        online.line()
    ));
    report.line(format!(
        "close sent -> friend has \"offline\": {}",
        offline.line()
    ));
    report.line(format!(
        "auth sent -> the user's own welcome: {}",
        welcome.line()
    ));
    report.target(Target::at_most(
        &format!("presence fan-out to {f} friends on connect, p99"),
        20.0,
        online.p99_ms,
        "ms",
    ));
    report.target(Target::at_most(
        &format!("presence fan-out to {f} friends on disconnect, p99"),
        20.0,
        offline.p99_ms,
        "ms",
    ));
    Ok(report)
}

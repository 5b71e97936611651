//! The relay engine: pairs of connected sockets ("links", the two devices of a call) send each
//! other signaling frames, closed loop (a fixed window of frames in flight per direction, as
//! fast as the server relays) or open loop (a fixed total rate, spread evenly over the
//! directions). Works for any server: what a frame looks like and how a relayed frame is
//! recognized is given by the caller.
//!
//! One-way latency: sender and receiver live in this process, and a server relays one
//! direction of a link in order, so the k-th frame received on a direction is the k-th sent.
//! Each direction keeps a queue of send instants; the receiver pops one per relayed frame.
use crate::procstat::{self, ProcSample};
use crate::stats::{micros, Latency};
use crate::ws::Ws;
use crate::Res;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The two devices of one call and the frames each sends, repeated in a cycle.
pub struct Link {
    pub a: Ws,
    pub b: Ws,
    pub a_to_b: Vec<Message>,
    pub b_to_a: Vec<Message>,
}

/// Open-loop lag beyond which a phase is flagged as measured on a stalled machine.
pub const NOISY_LAG_MS: f64 = 10.0;

#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `window` frames in flight per direction: saturates the server.
    Closed { window: usize },
    /// `rate` frames per second in total, over all directions.
    Open { rate: f64 },
}

impl Load {
    /// The closed loop with `window` frames in flight, then an open loop at each of `rates`,
    /// each with its name in the report (`closed`, `open_RATE`).
    pub fn series(window: usize, rates: &[f64]) -> Vec<(String, Load)> {
        let mut loads = vec![("closed".to_owned(), Load::Closed { window })];
        for &rate in rates {
            loads.push((format!("open_{rate:.0}"), Load::Open { rate }));
        }
        loads
    }

    fn label(&self) -> String {
        match self {
            Load::Closed { window } => format!("closed loop, {window} in flight per direction"),
            Load::Open { rate } => format!("open loop, {rate:.0} frames/s"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub load: String,
    pub target_rate: Option<f64>,
    pub directions: usize,
    pub seconds: f64,
    pub sent: u64,
    pub relayed: u64,
    /// Error frames the devices got.
    pub errors: u64,
    pub lost: u64,
    pub throughput_per_s: f64,
    pub latency: Latency,
    pub server_cpu_seconds: f64,
    pub server_cpu_us_per_frame: f64,
    /// Cores the server kept busy on average.
    pub server_cores: f64,
    pub server_rss_kib: u64,
    pub generator_cpu_seconds: f64,
    /// How far behind its schedule the open-loop generator fell (0 for closed loop).
    pub max_send_lag_ms: f64,
}

impl PhaseResult {
    pub fn line(&self) -> String {
        let mut line = format!(
            "{}: {:.0} relays/s, {}; server {:.2} us/frame, {:.2} cores",
            self.load,
            self.throughput_per_s,
            self.latency.line(),
            self.server_cpu_us_per_frame,
            self.server_cores,
        );
        if self.errors + self.lost > 0 {
            line.push_str(&format!(", {} errors, {} lost", self.errors, self.lost));
        }
        // The generator itself missing its schedule means the machine stalled us all: the
        // latency tail of this phase says more about the host than about the server.
        if self.max_send_lag_ms > NOISY_LAG_MS {
            line.push_str(&format!(
                " [generator {:.0} ms behind schedule: noisy]",
                self.max_send_lag_ms
            ));
        }
        line
    }
}

struct Flow {
    sent_at: Mutex<VecDeque<Instant>>,
    sent: AtomicU64,
    done: AtomicBool,
    window: Semaphore,
}

type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

struct Received {
    samples: Vec<u32>,
    relayed: u64,
    errors: u64,
}

/// Runs `load` for `duration` over `links`; returns the links for the next phase. The server's
/// CPU is the sum over `server_pids` (every node of a cluster).
pub async fn run(
    links: Vec<Link>,
    load: Load,
    duration: Duration,
    server_pids: &[u32],
    is_relayed: fn(&str) -> bool,
) -> Res<(Vec<Link>, PhaseResult)> {
    let flows_n = links.len() * 2;
    let before = servers_sample(server_pids)?;
    let generator_before = procstat::sample(None)?;
    let start = Instant::now();
    let deadline = start + duration;
    let drain_deadline = deadline + Duration::from_secs(5);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (i, link) in links.into_iter().enumerate() {
        let (a_sink, a_stream) = link.a.split();
        let (b_sink, b_stream) = link.b.split();
        for (j, (sink, stream, frames)) in [
            (a_sink, b_stream, link.a_to_b),
            (b_sink, a_stream, link.b_to_a),
        ]
        .into_iter()
        .enumerate()
        {
            let window = match load {
                Load::Closed { window } => window,
                Load::Open { .. } => 0,
            };
            let flow = Arc::new(Flow {
                sent_at: Mutex::new(VecDeque::with_capacity(window.max(16))),
                sent: AtomicU64::new(0),
                done: AtomicBool::new(false),
                window: Semaphore::new(window),
            });
            let index = i * 2 + j;
            let offset = match load {
                Load::Open { rate } => {
                    Duration::from_secs_f64(flows_n as f64 / rate * index as f64 / flows_n as f64)
                }
                Load::Closed { .. } => Duration::ZERO,
            };
            senders.push(tokio::spawn(send(
                sink,
                frames,
                flow.clone(),
                load,
                flows_n,
                start + offset,
                deadline,
            )));
            receivers.push(tokio::spawn(receive(
                stream,
                flow,
                matches!(load, Load::Closed { .. }),
                drain_deadline,
                is_relayed,
            )));
        }
    }
    let mut sinks = Vec::new();
    let mut max_lag = Duration::ZERO;
    let mut sent = 0;
    for sender in senders {
        let (sink, frames, count, lag) = sender.await??;
        sent += count;
        max_lag = max_lag.max(lag);
        sinks.push((sink, frames));
    }
    let mut streams = Vec::new();
    let mut samples = Vec::new();
    let (mut relayed, mut errors) = (0, 0);
    for receiver in receivers {
        let (stream, got) = receiver.await??;
        relayed += got.relayed;
        errors += got.errors;
        samples.extend(got.samples);
        streams.push(stream);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = servers_sample(server_pids)?;
    let generator_after = procstat::sample(None)?;

    // Reassemble the links: flow 2i is a -> b (a's sink, b's stream), flow 2i+1 is b -> a.
    let mut links = Vec::new();
    let mut sinks = sinks.into_iter();
    let mut streams = streams.into_iter();
    while let (Some((a_sink, a_to_b)), Some(b_stream), Some((b_sink, b_to_a)), Some(a_stream)) =
        (sinks.next(), streams.next(), sinks.next(), streams.next())
    {
        links.push(Link {
            a: a_sink.reunite(a_stream)?,
            b: b_sink.reunite(b_stream)?,
            a_to_b,
            b_to_a,
        });
    }

    let cpu = after.cpu_since(&before);
    let result = PhaseResult {
        load: load.label(),
        target_rate: match load {
            Load::Open { rate } => Some(rate),
            Load::Closed { .. } => None,
        },
        directions: flows_n,
        seconds: elapsed,
        sent,
        relayed,
        errors,
        lost: sent.saturating_sub(relayed),
        throughput_per_s: relayed as f64 / elapsed,
        latency: Latency::from_micros(&mut samples),
        server_cpu_seconds: cpu,
        server_cpu_us_per_frame: if relayed > 0 {
            cpu * 1e6 / relayed as f64
        } else {
            0.0
        },
        server_cores: cpu / elapsed,
        server_rss_kib: after.rss_kib,
        generator_cpu_seconds: generator_after.cpu_since(&generator_before),
        max_send_lag_ms: max_lag.as_secs_f64() * 1000.0,
    };
    Ok((links, result))
}

/// CPU seconds and RSS summed over the servers' processes.
fn servers_sample(pids: &[u32]) -> Res<ProcSample> {
    let mut total = ProcSample::default();
    for &pid in pids {
        let one = procstat::sample(Some(pid))?;
        total.cpu_seconds += one.cpu_seconds;
        total.rss_kib += one.rss_kib;
    }
    Ok(total)
}

async fn send(
    mut sink: Sink,
    frames: Vec<Message>,
    flow: Arc<Flow>,
    load: Load,
    flows_n: usize,
    first: Instant,
    deadline: Instant,
) -> Res<(Sink, Vec<Message>, u64, Duration)> {
    let mut next_frame = frames.iter().cycle();
    let mut count = 0u64;
    let mut max_lag = Duration::ZERO;
    let mut push = |flow: &Flow, at: Instant| {
        if let Ok(mut queue) = flow.sent_at.lock() {
            queue.push_back(at);
        }
        count += 1;
        flow.sent.store(count, Ordering::Release);
    };
    match load {
        Load::Closed { .. } => loop {
            let permit = tokio::select! {
                permit = flow.window.acquire() => permit?,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            permit.forget();
            if Instant::now() >= deadline {
                break;
            }
            loop {
                push(&flow, Instant::now());
                let frame = next_frame.next().ok_or("no frames")?.clone();
                sink.feed(frame).await?;
                match flow.window.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
            }
            sink.flush().await?;
        },
        Load::Open { rate } => {
            let period = Duration::from_secs_f64(flows_n as f64 / rate);
            let mut due = first;
            while due < deadline {
                tokio::time::sleep_until(due).await;
                let now = Instant::now();
                while due <= now && due < deadline {
                    max_lag = max_lag.max(now - due);
                    push(&flow, now);
                    let frame = next_frame.next().ok_or("no frames")?.clone();
                    sink.feed(frame).await?;
                    due += period;
                }
                sink.flush().await?;
            }
        }
    }
    flow.done.store(true, Ordering::Release);
    Ok((sink, frames, count, max_lag))
}

async fn receive(
    mut stream: Stream,
    flow: Arc<Flow>,
    closed_loop: bool,
    drain_deadline: Instant,
    is_relayed: fn(&str) -> bool,
) -> Res<(Stream, Received)> {
    let mut got = Received {
        samples: Vec::new(),
        relayed: 0,
        errors: 0,
    };
    loop {
        if flow.done.load(Ordering::Acquire) && got.relayed >= flow.sent.load(Ordering::Acquire) {
            break;
        }
        let now = Instant::now();
        if now >= drain_deadline {
            break;
        }
        let wait = (now + Duration::from_millis(50)).min(drain_deadline);
        let message = match tokio::time::timeout_at(wait, stream.next()).await {
            Ok(message) => message,
            Err(_) => continue,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let now = Instant::now();
                if is_relayed(text.as_str()) {
                    let sent_at = flow.sent_at.lock().ok().and_then(|mut q| q.pop_front());
                    if let Some(sent_at) = sent_at {
                        got.samples.push(micros(now - sent_at));
                    }
                    got.relayed += 1;
                    if closed_loop {
                        flow.window.add_permits(1);
                    }
                } else if matches!(
                    crate::ws::frame_type(text.as_str()).as_str(),
                    "error" | "ERROR"
                ) {
                    // Other frames (presence, acks of the call set-up) are not the relay's.
                    got.errors += 1;
                    if got.errors <= 3 {
                        eprintln!(
                            "unexpected frame during the relay: {}",
                            truncate(text.as_str())
                        );
                    }
                }
            }
            Some(Ok(Message::Close(reason))) => {
                return Err(
                    format!("the server closed a socket during the relay: {reason:?}").into(),
                )
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("a socket closed during the relay".into()),
        }
    }
    Ok((stream, got))
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

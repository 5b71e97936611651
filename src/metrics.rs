//! Every metric the broker exports at `GET /metrics` (Prometheus text format): its name, help
//! text and labels, registered once in one registry. Call sites hold no registry: they reach a
//! pre-registered handle through [`get`], so counting is one atomic operation, with no lock
//! and no allocation. Label values come only from fixed sets (route templates, error codes,
//! call outcomes, the small enums below), never from what a client sent, so the figures are
//! aggregates and name no user.
use crate::error::{AppError, ErrorCode};
use crate::vocabulary::EndReason;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;
use std::time::Duration;

/// Bounds (seconds) for waits on people: ringing, answering.
const HUMAN_SECONDS: &[f64] = &[0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0];
/// Bounds (seconds) for the server's own work: REST requests, queries, pool waits.
const SERVER_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Which way relayed TURN data went.
#[derive(Debug, Clone, Copy)]
pub enum Relayed {
    /// From a client, out of its allocation to a peer.
    ToPeer,
    /// From a peer, through the allocation to its client.
    ToClient,
}

/// Why the TURN relay refused a request.
#[derive(Debug, Clone, Copy)]
pub enum TurnRefusal {
    /// Wrong, expired or revoked credentials.
    Credentials,
    /// A permission, channel or send to a refused peer address.
    Peer,
    /// The user holds as many allocations as `--relay-user-quota` allows.
    Quota,
}

/// What became of a Web Push.
#[derive(Debug, Clone, Copy)]
pub enum PushOutcome {
    /// The push service took it (2xx).
    Sent,
    /// The push service said the subscription is gone (404, 410); it was deleted.
    Gone,
    /// Refused otherwise, unreachable, or no answer in time.
    Failed,
    /// Never sent: the queue was full.
    Dropped,
}

pub struct Metrics {
    registry: Registry,
    pub sockets_open: IntGauge,
    pub sockets_authenticated: IntGauge,
    pub users_online: IntGauge,
    pub calls_ringing: IntGauge,
    pub calls_active: IntGauge,
    calls_ended: IntCounterVec,
    pub call_setup_seconds: Histogram,
    pub call_ring_seconds: Histogram,
    pub signal_frames: IntCounter,
    pub signal_bytes: IntCounter,
    error_frames: IntCounterVec,
    rest_errors: IntCounterVec,
    rest_seconds: HistogramVec,
    logins: [IntCounter; 4],
    pub bcrypt_queue: IntGauge,
    pub db_query_seconds: Histogram,
    pub db_pool_wait_seconds: Histogram,
    pub recorder_queue: IntGauge,
    pub turn_allocations: IntGauge,
    turn_relayed_bytes: [IntCounter; 2],
    turn_refused: [IntCounter; 3],
    pushes: [IntCounter; 4],
}

/// The broker's metrics, registered on first use.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A definition that does not build is a typo in this file, caught by its unit test.
fn defined<T>(built: prometheus::Result<T>) -> T {
    match built {
        Ok(metric) => metric,
        Err(e) => unreachable!("a metric is misdefined: {e}"),
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("switchboard")
}

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace("switchboard")
        .buckets(buckets.to_vec())
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn Collector>| {
            if let Err(e) = registry.register(c) {
                unreachable!("a metric is registered twice: {e}");
            }
        };
        let gauge = |name, help| {
            let g = defined(IntGauge::with_opts(opts(name, help)));
            reg(Box::new(g.clone()));
            g
        };
        let counter = |name, help| {
            let c = defined(IntCounter::with_opts(opts(name, help)));
            reg(Box::new(c.clone()));
            c
        };
        let counter_vec = |name, help, labels: &[&str]| {
            let c = defined(IntCounterVec::new(opts(name, help), labels));
            reg(Box::new(c.clone()));
            c
        };
        let histogram = |name, help, buckets| {
            let h = defined(Histogram::with_opts(histogram_opts(name, help, buckets)));
            reg(Box::new(h.clone()));
            h
        };
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));

        let calls_ended = counter_vec(
            "calls_ended_total",
            "Calls ended, by outcome (the reason of call.ended).",
            &["outcome"],
        );
        for reason in EndReason::ALL {
            calls_ended.with_label_values(&[reason.as_str()]);
        }
        let logins = counter_vec(
            "logins_total",
            "Password logins at POST /api/v1/auth/login, by outcome: ok, failed, throttled \
             (429, too many failures for the account), overloaded (503, bcrypt queue full).",
            &["outcome"],
        );
        let relayed = counter_vec(
            "turn_relayed_bytes_total",
            "Bytes of data relayed by the embedded TURN relay (with their TURN framing), by \
             direction: to_peer or to_client.",
            &["direction"],
        );
        let refused = counter_vec(
            "turn_refused_requests_total",
            "Requests the embedded TURN relay refused, by reason: credentials, peer, quota.",
            &["reason"],
        );
        let pushes = counter_vec(
            "pushes_total",
            "Web Pushes to browsers' push services, by outcome: sent, gone (404/410, the \
             subscription was deleted), failed (refused, unreachable or timed out), dropped \
             (the queue was full).",
            &["outcome"],
        );
        let rest_seconds = defined(HistogramVec::new(
            histogram_opts(
                "http_request_duration_seconds",
                "REST and upgrade requests until their response, by method and route template \
                 (never the raw path; unmatched for none).",
                SERVER_SECONDS,
            ),
            &["method", "route"],
        ));
        reg(Box::new(rest_seconds.clone()));
        Self {
            sockets_open: gauge("websockets_open", "WebSockets open, authenticated or not."),
            sockets_authenticated: gauge(
                "websockets_authenticated",
                "WebSockets that completed auth (one per device).",
            ),
            users_online: gauge(
                "users_online",
                "Users with at least one device online (or within the presence grace).",
            ),
            calls_ringing: gauge("calls_ringing", "Calls placed and not yet answered."),
            calls_active: gauge("calls_active", "Calls answered and not yet ended."),
            calls_ended,
            call_setup_seconds: histogram(
                "call_setup_seconds",
                "From call.invite to call.accept, answered calls only.",
                HUMAN_SECONDS,
            ),
            call_ring_seconds: histogram(
                "call_ring_seconds",
                "How long calls rang, whatever stopped it (accepted, declined, no answer, ...).",
                HUMAN_SECONDS,
            ),
            signal_frames: counter(
                "signal_frames_relayed_total",
                "signal frames (SDP and ICE candidates) relayed to the peer's device.",
            ),
            signal_bytes: counter(
                "signal_bytes_relayed_total",
                "Bytes of the signal frames relayed to the peer's device.",
            ),
            error_frames: counter_vec(
                "ws_error_frames_total",
                "error frames sent on WebSockets, by error code.",
                &["code"],
            ),
            rest_errors: counter_vec(
                "http_errors_total",
                "REST error responses, by error code.",
                &["code"],
            ),
            rest_seconds,
            logins: ["ok", "failed", "throttled", "overloaded"]
                .map(|outcome| logins.with_label_values(&[outcome])),
            bcrypt_queue: gauge(
                "bcrypt_queue_depth",
                "Password hashes and checks waiting for a bcrypt thread.",
            ),
            db_query_seconds: histogram(
                "db_query_duration_seconds",
                "Database work on a pooled connection, per call (a transaction counts once).",
                SERVER_SECONDS,
            ),
            db_pool_wait_seconds: histogram(
                "db_pool_wait_seconds",
                "From asking for the database to holding a pooled connection (the blocking \
                 pool's queue included).",
                SERVER_SECONDS,
            ),
            recorder_queue: gauge(
                "recorder_queue_depth",
                "Call records waiting to be written (the batch being written not included).",
            ),
            turn_allocations: gauge(
                "turn_allocations",
                "Live allocations on the embedded TURN relay.",
            ),
            turn_relayed_bytes: ["to_peer", "to_client"]
                .map(|direction| relayed.with_label_values(&[direction])),
            turn_refused: ["credentials", "peer", "quota"]
                .map(|reason| refused.with_label_values(&[reason])),
            pushes: ["sent", "gone", "failed", "dropped"]
                .map(|outcome| pushes.with_label_values(&[outcome])),
            registry,
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode the metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A WebSocket closed; `authenticated` if it had completed auth.
    pub fn socket_closed(&self, authenticated: bool) {
        self.sockets_open.dec();
        if authenticated {
            self.sockets_authenticated.dec();
        }
    }

    /// A signal frame of `bytes` went to the peer's device: two atomic adds, on the router's
    /// thread only, so the counters' cache line stays there.
    pub fn signal_relayed(&self, bytes: usize) {
        self.signal_frames.inc();
        self.signal_bytes.inc_by(bytes as u64);
    }

    /// How the password check of a `POST /auth/login` ended: ok, failed, throttled (429, too
    /// many failures for the account) or overloaded (503, too many checks waiting).
    pub fn login(&self, verified: &Result<bool, AppError>) {
        let outcome = match verified {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) if e.code == ErrorCode::RateLimited => 2,
            Err(e) if e.code == ErrorCode::Overloaded => 3,
            Err(_) => return,
        };
        self.logins[outcome].inc();
    }

    pub fn turn_relayed(&self, direction: Relayed, bytes: usize) {
        self.turn_relayed_bytes[direction as usize].inc_by(bytes as u64);
    }

    pub fn turn_refused(&self, reason: TurnRefusal) {
        self.turn_refused[reason as usize].inc();
    }

    /// An error frame went to a device. Errors are rare next to frames, so spelling the code
    /// and the label lookup (a read lock and a hash) are affordable here.
    /// What became of one Web Push.
    pub fn push(&self, outcome: PushOutcome) {
        self.pushes[outcome as usize].inc();
    }

    pub fn error_frame(&self, code: ErrorCode) {
        self.error_frames
            .with_label_values(&[code_label(code)])
            .inc();
    }

    /// A REST request was answered with an error.
    pub fn rest_error(&self, code: ErrorCode) {
        self.rest_errors
            .with_label_values(&[code_label(code)])
            .inc();
    }

    /// A REST request took `elapsed`; `route` is its template (`/api/v1/calls/{id}`).
    pub fn rest_request(&self, method: &actix_web::http::Method, route: &str, elapsed: Duration) {
        use actix_web::http::Method as M;
        // Methods are outside input too: only the standard ones become label values.
        let method = match *method {
            M::GET => "GET",
            M::POST => "POST",
            M::PUT => "PUT",
            M::PATCH => "PATCH",
            M::DELETE => "DELETE",
            M::HEAD => "HEAD",
            M::OPTIONS => "OPTIONS",
            _ => "other",
        };
        self.rest_seconds
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// A call was placed; it rings until it is answered or ends.
    pub fn call_placed(&self) {
        self.calls_ringing.inc();
    }

    /// A ringing call was answered `after` its invite.
    pub fn call_answered(&self, after: Duration) {
        self.calls_ringing.dec();
        self.calls_active.inc();
        self.call_setup_seconds.observe(after.as_secs_f64());
        self.call_ring_seconds.observe(after.as_secs_f64());
    }

    /// A call ended: `rang` is how long it rang if it ended ringing (`None` if it was answered,
    /// or could not ring at all).
    pub fn call_ended(&self, outcome: EndReason, answered: bool, rang: Option<Duration>) {
        if answered {
            self.calls_active.dec();
        } else {
            self.calls_ringing.dec();
        }
        if let Some(rang) = rang {
            self.call_ring_seconds.observe(rang.as_secs_f64());
        }
        self.calls_ended
            .with_label_values(&[outcome.as_str()])
            .inc();
    }
}

/// The code as clients see it (its serde name, the one spelling of it).
fn code_label(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_defined_and_shows_in_the_text_format() {
        let metrics = get();
        metrics.login(&Ok(false));
        metrics.turn_refused(TurnRefusal::Quota);
        metrics.error_frame(ErrorCode::InvalidFrame);
        metrics.rest_error(ErrorCode::NotFound);
        metrics.rest_request(
            &actix_web::http::Method::GET,
            "/api/v1/friends",
            Duration::from_millis(3),
        );
        let text = metrics.encode();
        for line in [
            "switchboard_logins_total{outcome=\"failed\"} 1",
            "switchboard_turn_refused_requests_total{reason=\"quota\"} 1",
            "switchboard_ws_error_frames_total{code=\"invalid_frame\"} 1",
            "switchboard_http_errors_total{code=\"not_found\"} 1",
            "switchboard_calls_ended_total{outcome=\"no_answer\"} 0",
            "switchboard_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/friends\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}

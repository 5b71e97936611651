//! Delivers pushes to the browsers' push services, off every actor's path: callers queue a
//! job and return at once (a full queue drops the job, logged); one thread encrypts, signs
//! and POSTs them, at most [`CONCURRENCY`] at a time, each bounded by [`TIMEOUT`]. Pushes to
//! one subscription go one after the other, so a call's follow-up never overtakes its ring
//! (and leaves a ringing notification behind). A push service that answers 404 or 410 has
//! dropped the subscription, so it is deleted here too.
use super::index::Index;
use super::keys::Vapid;
use super::resolver::PublicOnly;
use super::subscription::Target;
use crate::db::{self, Db};
use crate::ids::UserId;
use actix::Arbiter;
use hyper_util::client::legacy::connect::HttpConnector;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use web_push_native::{Auth, WebPushBuilder};

/// Jobs waiting to be sent; past this, new ones are dropped.
const QUEUE: usize = 1024;
/// Pushes in flight at once.
const CONCURRENCY: usize = 32;
/// Pushes that may wait behind one in flight to the same subscription.
const LANE: usize = 16;
/// How long one push may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a VAPID signature stays valid (RFC 8292 allows up to 24 h).
const VAPID_VALIDITY: Duration = Duration::from_secs(12 * 60 * 60);

/// How soon the push service should deliver (RFC 8030 section 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    High,
    Normal,
}

impl Urgency {
    fn as_str(self) -> &'static str {
        match self {
            Urgency::High => "high",
            Urgency::Normal => "normal",
        }
    }
}

/// One message, encrypted separately for each subscription it goes to.
#[derive(Debug)]
pub struct Message {
    /// UTF-8 JSON (docs/protocol.md, "Web Push").
    pub payload: Vec<u8>,
    pub urgency: Urgency,
    /// Seconds the push service keeps it for a browser that is not reachable.
    pub ttl: u64,
    /// Replaces an undelivered message with the same topic (the call id).
    pub topic: Option<String>,
}

struct Job {
    user: UserId,
    token_hash: Arc<str>,
    target: Arc<Target>,
    message: Arc<Message>,
}

struct Shared {
    vapid: Vapid,
    db: Db,
    index: Arc<Mutex<Index>>,
}

#[derive(Clone)]
pub struct Sender {
    jobs: mpsc::Sender<Job>,
}

impl Sender {
    /// Starts the sending thread. `loopback`: push services on loopback may be reached
    /// (tests', with `--push-allow-insecure-endpoints`).
    pub fn start(vapid: Vapid, db: Db, index: Arc<Mutex<Index>>, loopback: bool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared { vapid, db, index });
        // The thread lives as long as the process; dropping its handle does not stop it.
        Arbiter::new().spawn_fn(move || {
            actix::spawn(run(queue, shared, loopback));
        });
        Self { jobs }
    }

    /// Queues `message` for one subscription; never waits.
    pub fn send(
        &self,
        user: &UserId,
        token_hash: Arc<str>,
        target: Arc<Target>,
        message: Arc<Message>,
    ) {
        let job = Job {
            user: user.clone(),
            token_hash,
            target,
            message,
        };
        if let Err(e) = self.jobs.try_send(job) {
            crate::metrics::get().push(crate::metrics::PushOutcome::Dropped);
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    log::warn!("push: the queue is full ({QUEUE}), a push was dropped")
                }
                mpsc::error::TrySendError::Closed(_) => {
                    log::error!("push: the sending thread stopped, a push was dropped")
                }
            }
        }
    }
}

/// Per subscription (by session) with a push in flight: the pushes waiting behind it.
type Lanes = Rc<RefCell<HashMap<Arc<str>, VecDeque<Job>>>>;

async fn run(mut queue: mpsc::Receiver<Job>, shared: Arc<Shared>, loopback: bool) {
    let client = client(loopback);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let lanes = Lanes::default();
    while let Some(job) = queue.recv().await {
        {
            let mut lanes = lanes.borrow_mut();
            if let Some(waiting) = lanes.get_mut(&job.token_hash) {
                if waiting.len() < LANE {
                    waiting.push_back(job);
                } else {
                    crate::metrics::get().push(crate::metrics::PushOutcome::Dropped);
                    log::warn!("push: {LANE} pushes wait for one subscription; one was dropped");
                }
                continue;
            }
            lanes.insert(job.token_hash.clone(), VecDeque::new());
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (client, shared, lanes) = (client.clone(), shared.clone(), lanes.clone());
        actix::spawn(async move {
            let mut job = job;
            loop {
                let lane = job.token_hash.clone();
                deliver(&client, &shared, job).await;
                let mut lanes = lanes.borrow_mut();
                match lanes.get_mut(&lane).and_then(VecDeque::pop_front) {
                    Some(next) => job = next,
                    None => {
                        lanes.remove(&lane);
                        break;
                    }
                }
            }
            drop(permit);
        });
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector<PublicOnly>>,
    http_body_util::Full<hyper::body::Bytes>,
>;

/// An HTTP/1.1 client for https push services (the Mozilla root store, rustls on ring) and,
/// for tests, plain http. It follows no redirects, and connects only to public addresses
/// ([`PublicOnly`]; loopback too with `loopback`).
fn client(loopback: bool) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        Err(e) => {
            log::error!("push: no TLS configuration ({e}); https push services are unreachable");
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    let mut http = HttpConnector::new_with_resolver(PublicOnly::new(loopback));
    http.enforce_http(false);
    http.set_connect_timeout(Some(TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

async fn deliver(client: &Client, shared: &Shared, job: Job) {
    let metrics = crate::metrics::get();
    let target = &job.target;
    // A session that expired is signed out: its browser hears nothing more, and its
    // subscription goes. (The in-memory index can't tell; the database can, off the router's
    // path. If the database can't answer, the push goes out.)
    let hash = job.token_hash.to_string();
    let live = shared
        .db
        .run(move |conn| db::sessions::is_live(conn, &hash, crate::time::now_ms()))
        .await;
    if let Ok(false) = live {
        log::info!("push: a subscription of an expired session is deleted");
        forget(shared, &job).await;
        return;
    }
    let built = WebPushBuilder::new(
        target.endpoint.clone(),
        target.p256dh,
        Auth::clone_from_slice(&target.auth),
    )
    .with_valid_duration(VAPID_VALIDITY)
    .with_vapid(&shared.vapid.key, &shared.vapid.subject)
    .build(job.message.payload.clone());
    let request = match built {
        Ok(request) => request,
        Err(e) => {
            metrics.push(crate::metrics::PushOutcome::Failed);
            log::error!("push: cannot build a push request: {e}");
            return;
        }
    };
    let (mut parts, body) = request.into_parts();
    let message = &job.message;
    let headers = &mut parts.headers;
    // The TTL is the message's own.
    headers.insert("ttl", http::HeaderValue::from(message.ttl));
    headers.insert(
        "urgency",
        http::HeaderValue::from_static(message.urgency.as_str()),
    );
    if let Some(topic) = message
        .topic
        .as_deref()
        .and_then(|t| http::HeaderValue::from_str(t).ok())
    {
        headers.insert("topic", topic);
    }
    let post = http::Request::from_parts(parts, http_body_util::Full::from(body));
    let sent = tokio::time::timeout(TIMEOUT, client.request(post)).await;
    let status = match sent {
        Ok(Ok(response)) => response.status(),
        Ok(Err(e)) => {
            metrics.push(crate::metrics::PushOutcome::Failed);
            log::warn!("push: sending to {} failed: {e}", host(target));
            return;
        }
        Err(_) => {
            metrics.push(crate::metrics::PushOutcome::Failed);
            log::warn!("push: {} did not answer within {TIMEOUT:?}", host(target));
            return;
        }
    };
    if status.is_success() {
        metrics.push(crate::metrics::PushOutcome::Sent);
    } else if status.as_u16() == 404 || status.as_u16() == 410 {
        metrics.push(crate::metrics::PushOutcome::Gone);
        log::info!(
            "push: {} dropped a subscription ({status}); deleting it",
            host(target)
        );
        forget(shared, &job).await;
    } else {
        metrics.push(crate::metrics::PushOutcome::Failed);
        log::warn!("push: {} refused a push: {status}", host(target));
    }
}

/// Deletes the job's subscription from the index and the table, unless a newer one (another
/// endpoint) replaced it meanwhile.
async fn forget(shared: &Shared, job: &Job) {
    let target = &job.target;
    if let Ok(mut index) = shared.index.lock() {
        index.prune(&job.user, &job.token_hash, &target.endpoint);
    }
    let (hash, endpoint) = (job.token_hash.to_string(), target.endpoint.to_string());
    let deleted = shared
        .db
        .run(move |conn| db::push_subscriptions::delete_gone(conn, &hash, &endpoint))
        .await;
    if let Err(e) = deleted {
        log::warn!("push: a subscription to delete stays stored: {e}");
    }
}

/// The push service's host, for logs: the rest of an endpoint identifies a browser.
fn host(target: &Target) -> &str {
    target.endpoint.host().unwrap_or("?")
}

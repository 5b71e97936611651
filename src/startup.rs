//! Builds the whole broker from a [`Config`]: database, shared state, actors and the HTTP
//! server bound to its listener (port 0 picks a free port, which tests rely on).
use crate::auth::{login_limiter::LoginLimiter, password::PasswordHasher};
use crate::calls::{
    recorder::CallRecorder,
    router::{CallRouter, EndAllCalls, FlushRecords},
};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::db::{self, Db};
use crate::descriptors;
use crate::error::StartupError;
use crate::http;
use crate::ice::Ice;
use crate::presence::hub::{CloseAll, PresenceHub};
use crate::push::Push;
use crate::rate_limit::Buckets;
use crate::state::AppState;
use crate::time::now_ms;
use crate::ws;
use actix::{Actor, Addr, Arbiter, AsyncContext, Context};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, ErrorHandlers, Logger};
use actix_web::{web, App, HttpServer};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Starts the call recorder, the presence hub and the call router, the router on its own
/// thread. The hub and the router tell each other about busy and do-not-disturb (through
/// `availability` recipients), so the hub's address is made before either actor starts.
fn start_actors(
    config: &Config,
    db: &Db,
    ice: &Ice,
    push: &Push,
    cluster: Option<Cluster>,
) -> (Addr<PresenceHub>, Addr<CallRouter>) {
    let recorder = CallRecorder::start(db.clone(), cluster.as_ref().map(Cluster::node));
    let hub_ctx = Context::<PresenceHub>::new();
    let hub_addr = hub_ctx.address();
    let (ring, grace) = (config.ring_timeout, config.reconnect_grace);
    let busy_listener = hub_addr.clone().recipient();
    let (router_ice, router_push) = (ice.clone(), push.clone());
    let router_cluster = cluster.clone();
    let router = CallRouter::start_in_arbiter(&Arbiter::new().handle(), move |_| {
        CallRouter::new(
            busy_listener,
            recorder,
            ring,
            grace,
            router_ice,
            router_push,
            router_cluster,
        )
    });
    // Before the hub starts the cluster's listener: calls from other nodes go to the router.
    if let Some(cluster) = &cluster {
        cluster.route_calls(router.clone().recipient());
    }
    let hub = PresenceHub::new(
        db.clone(),
        config.presence_grace,
        config.reconnect_grace,
        config.max_devices_per_user,
        router.clone().recipient(),
        push.clone(),
        cluster,
    );
    // The hub lives on the thread that builds the application (the system arbiter).
    hub_ctx.run(hub);
    (hub_addr, router)
}

pub struct Application {
    address: SocketAddr,
    /// Where `/metrics` is served when `--metrics-listen` moved it off the main listener.
    metrics_address: Option<SocketAddr>,
    server: Server,
    shutdown: ShutdownHandle,
}

/// Stops the broker gracefully: live calls end as `server_shutdown` with their records
/// written, every socket gets a close frame, then the HTTP server stops.
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    presence: Addr<PresenceHub>,
    router: Addr<CallRouter>,
    ice: Ice,
    metrics: Option<ServerHandle>,
    cluster: Option<Cluster>,
}

impl ShutdownHandle {
    pub async fn shutdown(&self) {
        log::info!("shutting down: ending calls and closing connections");
        // Stop taking connections first, so nothing new starts while calls are ended.
        self.server.pause().await;
        let _ = self.router.send(EndAllCalls).await;
        // Sockets are closed at once; writing the last records and last_seen is bounded (a
        // database outage must not hold the shutdown) and happens meanwhile.
        let _ = futures_util::future::join(
            self.presence.send(CloseAll),
            self.router.send(FlushRecords),
        )
        .await;
        // Give sessions a moment to write their close frames before connections are dropped;
        // meanwhile a cluster node leaves, so its users go offline for friends elsewhere now.
        let pause = actix_web::rt::time::sleep(std::time::Duration::from_millis(200));
        match &self.cluster {
            Some(cluster) => {
                futures_util::future::join(pause, cluster.leave()).await;
            }
            None => pause.await,
        }
        self.ice.close().await;
        if let Some(metrics) = &self.metrics {
            metrics.stop(true).await;
        }
        self.server.stop(true).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            log::error!("cannot listen for SIGTERM/SIGINT; stop the broker with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

impl Application {
    /// Connects to the database (running migrations), binds the listener and starts serving.
    /// Errors are one line naming what is wrong.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let config = Arc::new(config);
        // Before the database: a cluster on SQLite is refused in one line, without a file.
        let cluster = Cluster::join(&config).await?;
        let blocking = |_| StartupError::ThreadStopped("the blocking pool");
        let db = {
            let (url, size) = (config.database_url.clone(), config.db_pool_size);
            web::block(move || Db::connect(&url, size))
                .await
                .map_err(blocking)??
        };
        let hasher = {
            let (cost, n, queue) = (
                config.bcrypt_cost,
                config.bcrypt_concurrency,
                config.bcrypt_queue,
            );
            web::block(move || PasswordHasher::new(cost, n, queue))
                .await
                .map_err(blocking)??
        };
        let failed = db
            .run({
                let owner = cluster.as_ref().map(|c| c.node().to_owned());
                move |conn| db::calls::fail_open_calls(conn, now_ms(), owner.as_deref())
            })
            .await
            .map_err(StartupError::Database)?;
        if failed > 0 {
            log::warn!("closed {failed} call(s) left open by an earlier crash as failed");
        }
        // Bound before the relay starts, which must know the broker's own address.
        let bind = |source| StartupError::Bind {
            flag: "--listen",
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let ice = Ice::start(&config, &db, address).await?;
        if let Some(cluster) = &cluster {
            let relay = ice.clone();
            cluster.on_revoke(move |user, sessions| relay.revoke_sessions(user, sessions));
        }
        let push = Push::start(&config, &db).await?;
        let (presence, router) = start_actors(&config, &db, &ice, &push, cluster.clone());
        let state = web::Data::new(AppState {
            login_limiter: LoginLimiter::new(config.login_max_failures, config.login_window),
            registrations: registration_limit(config.registrations_per_hour),
            config: config.clone(),
            db,
            hasher,
            presence,
            router,
            ice: ice.clone(),
            push,
            cluster: cluster.clone(),
        });
        let shutdown_cluster = cluster;

        let (soft, hard) = descriptors::raise_limit();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_worker = descriptors::connections_per_worker(soft, workers);
        log::info!(
            "file descriptors: soft limit {soft} (hard {hard}); up to {per_worker} connections \
             on each of {workers} HTTP workers"
        );
        let (state_presence, state_router) = (state.presence.clone(), state.router.clone());
        let user_budgets = web::Data::new(ws::frame_budget::UserBudgets::new(
            config.user_max_frame_rate,
        ));
        let strangers = web::Data::new(ws::strangers::Strangers::new(
            config.ws_max_unauthenticated,
            config.ws_max_unauthenticated_per_address,
        ));
        let metrics_here = config.metrics_listen.is_none();
        let server = HttpServer::new(move || {
            // Innermost first: CORS refusals become JSON errors too, and every answer, an
            // oversized body's 413 included, carries the CORS and security headers.
            App::new()
                .wrap(from_fn(http::input::refuse_oversized))
                .wrap(http::security::cors(&state.config.cors_origins))
                .wrap(ErrorHandlers::new().default_handler(http::jsonify_error))
                .wrap(http::security::headers())
                // `/ws` logs its own upgrade (ws::connect): the logger's state for a request
                // lives as long as its response, which for a socket is the socket's life.
                .wrap(access_log(&state.config.trusted_proxies))
                .app_data(state.clone())
                .app_data(http::input::json_config())
                .app_data(http::input::query_config())
                .app_data(http::input::path_config())
                .app_data(web::PayloadConfig::new(http::input::MAX_BODY_BYTES))
                .configure(http::configure)
                .configure(|cfg| ws::configure(cfg, strangers.clone(), user_budgets.clone()))
                .configure(|cfg| {
                    if metrics_here {
                        http::metrics::configure(cfg)
                    }
                })
                // Outermost: every request is timed, refusals and errors included.
                .wrap(from_fn(http::metrics::timed))
        })
        .workers(workers)
        // Blocking threads only run database calls (bcrypt has its own), so more of them than
        // connections in the pool would only wait for one, each holding a stack and an
        // allocator cache: a burst of sign-ins would leave dozens behind.
        .worker_max_blocking_threads(config.db_pool_size.max(2) as usize)
        .max_connections(per_worker)
        .tcp_nodelay(true)
        // Once a response is done (a WebSocket's close frame echoed, say), close the connection
        // at once: by default actix lingers a second reading whatever the client still sends.
        .client_disconnect_timeout(std::time::Duration::ZERO)
        // A client that hangs up has its request dropped, not finished: a password check it
        // was waiting for is then skipped before it is hashed (auth/password.rs).
        .h1_allow_half_closed(false)
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            flag: "--listen",
            addr: address,
            source,
        })?
        .run();
        let (metrics_address, metrics) = match config.metrics_listen {
            Some(addr) => {
                let (bound, server) = metrics_server(addr)?;
                let handle = server.handle();
                actix_web::rt::spawn(server);
                (Some(bound), Some(handle))
            }
            None => (None, None),
        };
        let shutdown = ShutdownHandle {
            server: server.handle(),
            presence: state_presence,
            router: state_router,
            ice,
            metrics,
            cluster: shutdown_cluster,
        };
        Ok(Self {
            address,
            metrics_address,
            server,
            shutdown,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The `--metrics-listen` address as bound (`None`: `/metrics` is on the main listener).
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.shutdown.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            shutdown.shutdown().await;
        });
        self.server.await
    }
}

/// `--metrics-listen`: a listener with `/metrics` alone (and JSON 404s for anything else), on
/// one worker, so a scraper never waits behind client traffic and clients never reach it.
fn metrics_server(addr: SocketAddr) -> Result<(SocketAddr, Server), StartupError> {
    let bind = |source| StartupError::Bind {
        flag: "--metrics-listen",
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let server = HttpServer::new(|| {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(http::jsonify_error))
            .configure(http::metrics::configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(bind)?
    .run();
    log::info!("metrics on http://{bound}/metrics");
    Ok((bound, server))
}

/// Clients tracked at once by the registration limit.
const REGISTRATION_CLIENTS: usize = 65_536;

fn registration_limit(per_hour: u32) -> Option<std::sync::Mutex<Buckets<std::net::IpAddr>>> {
    (per_hour > 0).then(|| {
        let per_hour = f64::from(per_hour);
        std::sync::Mutex::new(Buckets::new(
            per_hour,
            per_hour / 3600.0,
            REGISTRATION_CLIENTS,
        ))
    })
}

/// One line per REST request: the client's address (as `client_addr` decides it, so behind a
/// trusted proxy the forwarded one), request line, status, bytes and time.
fn access_log(trusted: &[ipnet::IpNet]) -> Logger {
    let trusted = trusted.to_vec();
    Logger::new("%{client}xi \"%r\" %s %b %Dms")
        .custom_request_replace("client", move |req| {
            crate::client_addr::of(req.request(), &trusted)
                .map_or_else(|| "-".to_owned(), |ip| ip.to_string())
        })
        .exclude("/ws")
}

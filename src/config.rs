//! Every setting of the broker: a command-line flag, an environment variable (SWITCHBOARD_*)
//! and a default that works with no configuration at all.
use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// Which database the broker talks to, chosen explicitly by the URL scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://...` or `postgresql://...`, passed to libpq as is.
    Postgres(String),
    /// `sqlite://path` (relative or absolute); the file is created on first run.
    Sqlite(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://./switchboard.db".into());
            }
            Ok(Self::Sqlite(path.to_owned()))
        } else {
            Err("expected a postgres://... or sqlite://path URL".into())
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 15s, 30d)"))
}

fn bcrypt_cost(s: &str) -> Result<u32, String> {
    let cost: u32 = s.parse().map_err(|_| "not a number".to_string())?;
    if (4..=31).contains(&cost) {
        Ok(cost)
    } else {
        Err("bcrypt cost must be between 4 and 31".into())
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Real-time presence and call broker"
)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database URL: sqlite://path (embedded, created on first run) or postgres://...
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", default_value = "sqlite://./switchboard.db",
          value_parser = DatabaseUrl::parse)]
    pub database_url: DatabaseUrl,

    /// Maximum database connections (SQLite always uses one writer connection).
    #[arg(long, env = "SWITCHBOARD_DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,

    /// bcrypt work factor for stored passwords (4-31).
    #[arg(long, env = "SWITCHBOARD_BCRYPT_COST", default_value = "12", value_parser = bcrypt_cost)]
    pub bcrypt_cost: u32,

    /// How many bcrypt hashes may run at once; the rest wait, so a login flood can't starve
    /// other work.
    #[arg(long, env = "SWITCHBOARD_BCRYPT_CONCURRENCY", default_value_t = 2)]
    pub bcrypt_concurrency: usize,

    /// Session lifetime; each use of the token extends it (sliding expiry).
    #[arg(long, env = "SWITCHBOARD_SESSION_LIFETIME", default_value = "30d", value_parser = duration)]
    pub session_lifetime: Duration,

    /// Failed logins for one username allowed within the login window before 429.
    #[arg(long, env = "SWITCHBOARD_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: usize,

    /// The window over which failed logins are counted.
    #[arg(long, env = "SWITCHBOARD_LOGIN_WINDOW", default_value = "5m", value_parser = duration)]
    pub login_window: Duration,

    /// A new WebSocket must authenticate within this time.
    #[arg(long, env = "SWITCHBOARD_WS_AUTH_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub ws_auth_timeout: Duration,

    /// How often the server pings each WebSocket.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = duration)]
    pub heartbeat_interval: Duration,

    /// A WebSocket silent for this long is dropped.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_TIMEOUT", default_value = "40s", value_parser = duration)]
    pub heartbeat_timeout: Duration,

    /// A user stays online this long after the last device leaves (absorbs page reloads).
    #[arg(long, env = "SWITCHBOARD_PRESENCE_GRACE", default_value = "5s", value_parser = duration)]
    pub presence_grace: Duration,

    /// An unanswered call ends as no_answer after this long.
    #[arg(long, env = "SWITCHBOARD_RING_TIMEOUT", default_value = "45s", value_parser = duration)]
    pub ring_timeout: Duration,

    /// A participant whose device drops mid-call has this long to reconnect and resume.
    #[arg(long, env = "SWITCHBOARD_RECONNECT_GRACE", default_value = "10s", value_parser = duration)]
    pub reconnect_grace: Duration,

    /// Sustained client frames per second allowed on one WebSocket (bursts up to twice that).
    #[arg(long, env = "SWITCHBOARD_WS_MAX_FRAME_RATE", default_value_t = 50)]
    pub ws_max_frame_rate: u32,
}

impl Config {
    /// The defaults, as if started with no flags and no environment.
    pub fn defaults() -> Self {
        Self::parse_from(["switchboard"])
    }
}

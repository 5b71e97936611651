//! Every setting of the broker: a command-line flag, an environment variable (SWITCHBOARD_*)
//! and a default that works with no configuration at all.
use clap::{CommandFactory, FromArgMatches, Parser};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
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

    /// Serve GET /metrics (Prometheus) on this address instead of on --listen, e.g. an
    /// address only the monitoring network reaches (port 0 picks a free port). Unset, /metrics
    /// is on the main listener.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

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

    /// How many password checks may wait for a bcrypt thread in all (one client address may
    /// hold at most 32 of them); more get 503 `overloaded` with Retry-After at once.
    #[arg(long, env = "SWITCHBOARD_BCRYPT_QUEUE", default_value_t = 256)]
    pub bcrypt_queue: usize,

    /// Session lifetime; each use of the token extends it (sliding expiry).
    #[arg(long, env = "SWITCHBOARD_SESSION_LIFETIME", default_value = "30d", value_parser = duration)]
    pub session_lifetime: Duration,

    /// Failed logins for one username allowed within the login window before 429.
    #[arg(long, env = "SWITCHBOARD_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: usize,

    /// Web origins (comma-separated, e.g. https://app.example.com) whose pages may call the
    /// REST API (CORS) and open the WebSocket. The broker's own origin always may; with none
    /// listed, CORS is off.
    #[arg(long, env = "SWITCHBOARD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Registrations allowed per client address per hour (a burst of that many, refilled
    /// evenly); 0 turns the limit off.
    #[arg(long, env = "SWITCHBOARD_REGISTRATIONS_PER_HOUR", default_value_t = 20)]
    pub registrations_per_hour: u32,

    /// Reverse proxies (CIDR, comma-separated) whose X-Forwarded-For is believed for the
    /// client's address. None by default: behind a proxy, every client then shares its address.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

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

    /// WebSockets one user may have open at once, in a cluster on all nodes together (0: no
    /// limit); the next one gets an error frame (`too_many_devices`) and close 4009.
    #[arg(long, env = "SWITCHBOARD_MAX_DEVICES_PER_USER", default_value_t = 10)]
    pub max_devices_per_user: usize,

    /// WebSockets that may be open without having authenticated yet, in all; more are refused
    /// (503) before the upgrade.
    #[arg(
        long,
        env = "SWITCHBOARD_WS_MAX_UNAUTHENTICATED",
        default_value_t = 10_000
    )]
    pub ws_max_unauthenticated: usize,

    /// WebSockets one client address may have open without having authenticated yet; more
    /// are refused (429) before the upgrade.
    #[arg(
        long,
        env = "SWITCHBOARD_WS_MAX_UNAUTHENTICATED_PER_ADDRESS",
        default_value_t = 256
    )]
    pub ws_max_unauthenticated_per_address: usize,

    /// Sustained client frames per second allowed for one user over all their WebSockets
    /// (bursts up to twice that).
    #[arg(long, env = "SWITCHBOARD_USER_MAX_FRAME_RATE", default_value_t = 100)]
    pub user_max_frame_rate: u32,

    /// Sustained client frames per second allowed on one WebSocket (bursts up to twice that).
    #[arg(long, env = "SWITCHBOARD_WS_MAX_FRAME_RATE", default_value_t = 50)]
    pub ws_max_frame_rate: u32,

    /// Run the embedded STUN/TURN relay (true/false). Off, clients get only --ice-server URLs.
    #[arg(long, env = "SWITCHBOARD_RELAY", default_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub relay: bool,

    /// UDP address of the embedded relay for STUN and TURN (port 0 picks a free port).
    #[arg(
        long,
        env = "SWITCHBOARD_RELAY_LISTEN",
        default_value = "127.0.0.1:3478"
    )]
    pub relay_listen: SocketAddr,

    /// The relay's address as clients reach it (a public IP in deployment); put in the ICE
    /// server URLs and in relayed addresses. Defaults to the --relay-listen IP.
    #[arg(long, env = "SWITCHBOARD_RELAY_PUBLIC_IP")]
    pub relay_public_ip: Option<IpAddr>,

    /// TURN realm of the embedded relay.
    #[arg(long, env = "SWITCHBOARD_RELAY_REALM", default_value = "switchboard")]
    pub relay_realm: String,

    /// UDP ports the relay hands out as relayed addresses, inclusive (open them in the firewall).
    #[arg(long, env = "SWITCHBOARD_RELAY_PORTS", default_value = "49152-65535",
          value_parser = PortRange::parse)]
    pub relay_ports: PortRange,

    /// Peer ranges (CIDR, comma-separated) the relay may send to even though they are refused
    /// by default (loopback, private, link-local, CGNAT, multicast, ...). Wins over
    /// --relay-denied-peers. Example: a LAN deployment allowing 192.168.0.0/16.
    #[arg(long, env = "SWITCHBOARD_RELAY_ALLOWED_PEERS", value_delimiter = ',')]
    pub relay_allowed_peers: Vec<IpNet>,

    /// Peer ranges (CIDR, comma-separated) the relay refuses on top of the defaults.
    #[arg(long, env = "SWITCHBOARD_RELAY_DENIED_PEERS", value_delimiter = ',')]
    pub relay_denied_peers: Vec<IpNet>,

    /// Relay allocations one user may hold at once (0: no limit).
    #[arg(long, env = "SWITCHBOARD_RELAY_USER_QUOTA", default_value_t = 10)]
    pub relay_user_quota: usize,

    /// Shared secret for TURN credentials (coturn's static-auth-secret). If unset, one is
    /// generated and kept in the database, so restarts keep issued credentials valid.
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true, value_parser = secret)]
    pub turn_secret: Option<String>,

    /// How long issued STUN/TURN credentials stay valid.
    #[arg(long, env = "SWITCHBOARD_ICE_CREDENTIAL_TTL", default_value = "1h",
          value_parser = credential_ttl)]
    pub ice_credential_ttl: Duration,

    /// An external STUN or TURN server URL handed to clients (stun:, stuns:, turn:, turns:);
    /// repeat the flag, or separate with commas in the variable. TURN ones get the same
    /// credentials as the embedded relay (run coturn with use-auth-secret and the same secret).
    #[arg(long = "ice-server", env = "SWITCHBOARD_ICE_SERVERS", value_delimiter = ',',
          value_parser = ice_server_url)]
    pub ice_servers: Vec<String>,

    /// The VAPID private key that signs Web Push requests: base64url of the 32-byte P-256
    /// scalar (the private key `web-push generate-vapid-keys` prints). If unset, one is
    /// generated and kept in the database, so browsers' subscriptions survive restarts.
    #[arg(long, env = "SWITCHBOARD_VAPID_PRIVATE_KEY", hide_env_values = true,
          value_parser = vapid_private_key)]
    pub vapid_private_key: Option<String>,

    /// Who runs this broker, for the push services (the VAPID `sub` claim): a mailto: or
    /// https: URL. Set it to a real contact; some push services refuse placeholders.
    #[arg(long, env = "SWITCHBOARD_VAPID_SUBJECT", default_value = "mailto:admin@localhost",
          value_parser = vapid_subject)]
    pub vapid_subject: String,

    /// Accept Web Push subscriptions whose endpoint is plain http on a loopback address (for
    /// tests and local push-service doubles); otherwise endpoints must be https.
    #[arg(long, env = "SWITCHBOARD_PUSH_ALLOW_INSECURE_ENDPOINTS", default_value = "false",
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub push_allow_insecure_endpoints: bool,

    /// Join a cluster coordinated through this Redis (redis://host:port/db). Every node of a
    /// cluster uses the same Postgres database and the same Redis; unset, the broker runs
    /// alone. See docs/cluster.md.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true, value_parser = redis_url)]
    pub redis_url: Option<String>,

    /// This node's id in the cluster (letters, digits, `-`, `_`); generated when unset.
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_parser = node_id)]
    pub node_id: Option<String>,

    /// The prefix of every Redis key and channel this cluster uses: clusters sharing one Redis
    /// need different prefixes.
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "switchboard", value_parser = node_id)]
    pub redis_prefix: String,

    /// How long a node may go without refreshing its registration before the others count it
    /// as lost and take its users offline.
    #[arg(long, env = "SWITCHBOARD_NODE_TTL", default_value = "10s", value_parser = node_ttl)]
    pub node_ttl: Duration,
}

fn redis_url(s: &str) -> Result<String, String> {
    let url = s.trim();
    if ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        Ok(url.to_owned())
    } else {
        Err("expected a redis://host:port URL".into())
    }
}

fn node_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("expected 1 to 64 letters, digits, '-' or '_'".into())
    }
}

fn node_ttl(s: &str) -> Result<Duration, String> {
    at_least_a_second(s, "a node must be given at least 1s")
}

/// A duration of at least one second; `refusal` otherwise.
fn at_least_a_second(s: &str, refusal: &str) -> Result<Duration, String> {
    let ttl = duration(s)?;
    if ttl < Duration::from_secs(1) {
        Err(refusal.into())
    } else {
        Ok(ttl)
    }
}

/// An inclusive range of UDP ports, written `min-max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (min, max) = s
            .split_once('-')
            .ok_or_else(|| "expected min-max, e.g. 49152-65535".to_string())?;
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port"))
        };
        let (min, max) = (port(min)?, port(max)?);
        if min == 0 || max < min {
            return Err("expected 1 <= min <= max".into());
        }
        Ok(Self { min, max })
    }
}

fn secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the TURN secret must not be empty (leave it unset to generate one)".into())
    } else {
        Ok(s.to_owned())
    }
}

fn vapid_private_key(s: &str) -> Result<String, String> {
    use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
    let key = s.trim().trim_end_matches('=');
    match BASE64_URL_SAFE_NO_PAD.decode(key) {
        Ok(bytes)
            if bytes.len() == 32
                && web_push_native::p256::SecretKey::from_slice(&bytes).is_ok() =>
        {
            Ok(key.to_owned())
        }
        _ => Err("expected the base64url of a 32-byte P-256 private key".into()),
    }
}

fn vapid_subject(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("mailto:")
        .or_else(|| s.strip_prefix("https://"));
    if rest.is_some_and(|r| !r.is_empty()) && !s.chars().any(|c| c.is_whitespace()) {
        Ok(s.to_owned())
    } else {
        Err("expected a mailto: or https: URL".into())
    }
}

fn credential_ttl(s: &str) -> Result<Duration, String> {
    at_least_a_second(s, "credentials must live at least 1s")
}

fn ice_server_url(s: &str) -> Result<String, String> {
    let url = s.trim();
    let known = ["stun:", "stuns:", "turn:", "turns:"];
    let rest = known.iter().find_map(|scheme| url.strip_prefix(scheme));
    if rest.is_some_and(|r| !r.is_empty()) {
        Ok(url.to_owned())
    } else {
        Err("expected a stun:, stuns:, turn: or turns: URL".into())
    }
}

impl Config {
    /// The defaults, as if started with no flags and no environment: `SWITCHBOARD_*`
    /// variables are not read, so a stray one can't leak into tests.
    pub fn defaults() -> Self {
        let without_env = Self::command().mut_args(|arg| arg.env(None));
        let matches = without_env.get_matches_from(["switchboard"]);
        match Self::from_arg_matches(&matches) {
            Ok(config) => config,
            // Every flag has a default, so this can only be a bug in the definitions above.
            Err(e) => unreachable!("the default configuration does not parse: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ignore_the_environment() {
        std::env::set_var("SWITCHBOARD_RING_TIMEOUT", "1s");
        let config = Config::defaults();
        std::env::remove_var("SWITCHBOARD_RING_TIMEOUT");
        assert_eq!(config.ring_timeout, Duration::from_secs(45));
        assert_eq!(
            config.listen,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn vapid_settings_are_checked_when_parsed() {
        use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
        let key = BASE64_URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(vapid_private_key(&format!(" {key}= ")), Ok(key));
        // Zero is no private key, and a key has 32 bytes.
        assert!(vapid_private_key(&BASE64_URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
        assert!(vapid_private_key(&BASE64_URL_SAFE_NO_PAD.encode([7u8; 31])).is_err());
        assert!(vapid_private_key("not base64!").is_err());
        assert!(vapid_subject("mailto:ops@example.com").is_ok());
        assert!(vapid_subject("https://example.com/contact").is_ok());
        assert!(vapid_subject("ops@example.com").is_err());
        assert!(vapid_subject("mailto:").is_err());
    }
}

//! The servers under test, as separate processes: the Switchboard release binary on a fresh
//! database (a SQLite file, or a new Postgres database dropped afterwards), and PeerJS server
//! under node. Each scenario gets its own, so CPU and RSS readings belong to it alone.
use crate::http::Http;
use crate::procstat::{self, ProcSample};
use crate::{Options, Res};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; the server binds it right after).
pub fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub enum Database {
    Sqlite { path: PathBuf },
    Postgres { admin_url: String, name: String },
}

impl Database {
    pub fn sqlite(dir: &Path, name: &str) -> Self {
        Database::Sqlite {
            path: dir.join(format!("{name}.db")),
        }
    }

    /// Creates a fresh database on the Postgres server that `admin_url` reaches.
    pub fn postgres(admin_url: &str) -> Res<Self> {
        let name = format!("sb_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = diesel::PgConnection::establish(admin_url)?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(Database::Postgres {
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    pub fn url(&self) -> String {
        match self {
            Database::Sqlite { path } => format!("sqlite://{}", path.display()),
            Database::Postgres { admin_url, name } => {
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "sqlite",
            Database::Postgres { .. } => "postgres",
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        match self {
            Database::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Database::Postgres { admin_url, name } => {
                if let Ok(mut conn) = diesel::PgConnection::establish(admin_url) {
                    let _ =
                        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }
}

/// `npm ci` in `dir`: PeerJS server at the version its package-lock.json pins.
fn install_peerjs(dir: &Path) -> Res<()> {
    crate::progress(format!(
        "installing PeerJS server: npm ci in {}",
        dir.display()
    ));
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| {
            format!("cannot run npm (PeerJS needs node and npm, or pass --no-peerjs): {e}")
        })?;
    if !status.success() {
        return Err(format!(
            "npm ci in {} failed ({status}); or pass --no-peerjs",
            dir.display()
        )
        .into());
    }
    Ok(())
}

/// Whether Postgres answers at `admin_url`.
pub fn postgres_reachable(admin_url: &str) -> Result<(), String> {
    diesel::PgConnection::establish(admin_url)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Broker flags every scenario uses: no per-socket frame budget, because one bench socket
/// stands for many devices (the budget's bookkeeping still runs on every frame), and the
/// embedded STUN/TURN relay on a free UDP port rather than 3478, so that a broker already
/// running on this machine can't make the bench fail.
/// Registrations are not limited: the bench makes thousands of accounts from one address.
const BASE_FLAGS: [&str; 8] = [
    "--ws-max-frame-rate",
    "1000000",
    "--user-max-frame-rate",
    "1000000",
    "--relay-listen",
    "127.0.0.1:0",
    "--registrations-per-hour",
    "0",
];

/// The bcrypt cost a broker under test hashes passwords with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bcrypt {
    /// Cost 4, so that setting up thousands of accounts takes seconds.
    Cheap,
    /// The broker's own default (only the isolation scenario's login flood needs it).
    Default,
}

pub struct ServerProcess {
    pub name: &'static str,
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// Where its stdout and stderr go.
    log: PathBuf,
}

impl ServerProcess {
    /// Starts the broker under test (`--server-bin`) on `db` with the flags every scenario
    /// uses, `bcrypt`, and `extra`; waits until `/healthz` answers. Its log goes to the workdir.
    pub async fn broker(
        options: &Options,
        db: &Database,
        bcrypt: Bcrypt,
        extra: &[&str],
    ) -> Res<Self> {
        let bin = options.server_bin()?;
        let port = free_port()?;
        let mut command = Command::new(&bin);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(db.url())
            .args(BASE_FLAGS)
            .args(match bcrypt {
                Bcrypt::Cheap => &["--bcrypt-cost", "4"][..],
                Bcrypt::Default => &[],
            })
            .args(extra);
        Self::start("switchboard", command, port, options.workdir(), true).await
    }

    /// Starts the bare actix-web-actors baseline, `switchboard-bare-ws` next to the broker.
    pub async fn bare_ws(options: &Options) -> Res<Self> {
        let bin = options.server_bin()?.with_file_name("switchboard-bare-ws");
        let port = free_port()?;
        let mut command = Command::new(&bin);
        command.arg(format!("127.0.0.1:{port}"));
        Self::start("bare-ws", command, port, options.workdir(), true).await
    }

    /// Starts PeerJS server (`node node_modules/peer/dist/bin/peerjs.js`) from `dir`.
    pub async fn peerjs(dir: &Path, port: u16, log_dir: &Path) -> Res<Self> {
        let script = dir.join("node_modules/peer/dist/bin/peerjs.js");
        if !script.exists() {
            install_peerjs(dir)?;
        }
        let mut command = Command::new("node");
        command
            .arg(&script)
            .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
            // The default limit of 5,000 clients is far above what the relay uses; raised
            // anyway so a bigger run is never refused for it.
            .args(["--concurrent_limit", "100000"])
            .current_dir(dir);
        Self::start("peerjs", command, port, log_dir, false).await
    }

    /// Runs `command` (a server listening on 127.0.0.1:`port`) with its output in
    /// `log_dir/{name}-{port}.log`, and waits until it answers (`/healthz`, or a TCP connect).
    async fn start(
        name: &'static str,
        mut command: Command,
        port: u16,
        log_dir: &Path,
        health_check: bool,
    ) -> Res<Self> {
        let log_path = log_dir.join(format!("{name}-{port}.log"));
        let log = std::fs::File::create(&log_path)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        let mut server = Self {
            name,
            pid: child.id(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log: log_path,
        };
        server.wait_ready(health_check).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, health_check: bool) -> Res<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("{} exited at start-up: {status}", self.name).into());
            }
            let ready = if health_check {
                let mut http = Http::new(self.addr);
                matches!(
                    http.request("GET", "/healthz", None, None).await,
                    Ok((200, _))
                )
            } else {
                tokio::net::TcpStream::connect(self.addr).await.is_ok()
            };
            if ready {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("{} did not become ready in 30 s", self.name).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn sample(&self) -> Res<ProcSample> {
        procstat::sample(Some(self.pid))
    }

    /// SIGKILL at once, as a crash: no drain, no goodbye to the cluster.
    pub fn kill(mut self) -> Res<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM (the broker shuts down gracefully), then SIGKILL after 10 s.
    pub async fn stop(mut self) -> Res<()> {
        self.terminate().await
    }

    async fn terminate(&mut self) -> Res<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: signals our own child by its pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

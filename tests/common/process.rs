//! The broker as its own process (the release of `cargo build`'s `switchboard` binary), for
//! what an in-process server can't show: its own RSS, its own descriptor limit, a kill.
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker binary; killed when dropped.
pub struct BrokerProcess {
    child: Child,
    /// Where its log (stderr, at warn unless started otherwise) goes.
    pub log: std::path::PathBuf,
    _log_dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub relay: SocketAddr,
}

impl BrokerProcess {
    /// Starts the broker on `db_url` with `extra` flags, under a descriptor soft limit of
    /// `nofile` if given, and waits until `/healthz` answers.
    pub async fn start(db_url: &str, extra: &[&str], nofile: Option<u32>) -> Self {
        Self::start_logging(db_url, extra, nofile, "warn").await
    }

    /// [`start`](Self::start), logging at `level` (`RUST_LOG`).
    pub async fn start_logging(
        db_url: &str,
        extra: &[&str],
        nofile: Option<u32>,
        level: &str,
    ) -> Self {
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let relay = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut args: Vec<String> = vec![
            "--listen".into(),
            http.to_string(),
            "--relay-listen".into(),
            relay.to_string(),
            "--database-url".into(),
            db_url.into(),
            "--registrations-per-hour".into(),
            "0".into(),
        ];
        // Cheap bcrypt unless the test sets a cost itself.
        if !extra.contains(&"--bcrypt-cost") {
            args.extend(["--bcrypt-cost".into(), "4".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let bin = env!("CARGO_BIN_EXE_switchboard");
        let mut command = match nofile {
            // A hard limit too, so the broker can't raise it back.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "ulimit -n {n} && ulimit -Hn {n} && exec \"$0\" \"$@\""
                    ))
                    .arg(bin)
                    .args(&args);
                c
            }
            None => {
                let mut c = Command::new(bin);
                c.args(&args);
                c
            }
        };
        let log_dir = tempfile::tempdir().expect("log dir");
        let log = log_dir.path().join("broker.log");
        let child = command
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the broker starts");
        let broker = Self {
            child,
            http,
            relay,
            log,
            _log_dir: log_dir,
        };
        let client = awc::Client::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(client.get(format!("http://{http}/healthz")).send().await, Ok(r) if r.status() == 200)
        {
            assert!(Instant::now() < deadline, "the broker did not come up");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        broker
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// SIGKILL: no shutdown, no flush, the process is simply gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the graceful shutdown.
    pub fn terminate(&mut self) {
        // SAFETY: signals the child this struct owns, by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it is still
    /// running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lines of its log so far.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

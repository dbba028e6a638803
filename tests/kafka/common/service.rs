//! The real `driftline serve` binary as a child process, and its admin API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::broker::Broker;
use super::{free_port, repo, scratch_dir, tail};

/// Environment every instance gets (before the test's own overrides):
/// short batching and commit intervals and a short session timeout, so that
/// tests run fast and a killed member leaves its group quickly.
const DEFAULT_ENV: [(&str, &str); 3] = [
    ("DRIFTLINE_PIPELINE__MAX_BATCH_WAIT", "5ms"),
    ("DRIFTLINE_KAFKA__COMMIT_INTERVAL", "200ms"),
    ("DRIFTLINE_KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "6000"),
];

/// One `driftline serve --config config/driftline.toml` process.
///
/// Killed on drop; when the test is failing, the tail of its log is printed
/// and the log kept.
pub struct Service {
    child: Child,
    pid: u32,
    name: String,
    admin_port: u16,
    log: PathBuf,
    dir: Option<tempfile::TempDir>,
    exit: Option<ExitStatus>,
}

impl Service {
    /// Starts an instance in consumer group `group_id` against `broker`.
    pub fn start(broker: &Broker, group_id: &str) -> Service {
        Self::start_with(broker, group_id, &[])
    }

    /// As [`start`](Self::start), with extra `DRIFTLINE_*` (or any) environment
    /// variables, which win over the harness defaults.
    pub fn start_with(broker: &Broker, group_id: &str, env: &[(&str, &str)]) -> Service {
        Self::start_config(broker, group_id, "config/driftline.toml", env)
    }

    /// As [`start_with`](Self::start_with), with another config file.
    pub fn start_config(
        broker: &Broker,
        group_id: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Service {
        let admin_port = free_port();
        let dir = scratch_dir("driftline-");
        let log = dir.path().join("driftline.log");
        let out = std::fs::File::create(&log).expect("creating the service log");
        let err = out.try_clone().expect("cloning the service log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftline"));
        cmd.args(["serve", "--config", config])
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Hermetic: no DRIFTLINE_* setting leaks in from the developer's shell.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("DRIFTLINE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1")
            .env("DRIFTLINE_KAFKA__BROKERS", broker.bootstrap())
            .env("DRIFTLINE_KAFKA__GROUP_ID", group_id)
            .env("DRIFTLINE_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"));
        for (k, v) in DEFAULT_ENV {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A log filter for investigating a failure (the instances' logs are
        // kept when a test fails).
        if let Ok(level) = std::env::var("DRIFTLINE_TEST_LOG_LEVEL") {
            cmd.env("DRIFTLINE_LOG__LEVEL", level);
        }
        let child = cmd.spawn().expect("spawning driftline serve");
        let pid = child.id();
        Service {
            child,
            pid,
            name: format!("driftline serve (group {group_id}, admin :{admin_port}, pid {pid})"),
            admin_port,
            log,
            dir: Some(dir),
            exit: None,
        }
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit.is_none()
    }

    /// Panics (the log is printed on drop) if the process has exited.
    pub fn assert_running(&mut self) {
        assert!(
            self.is_running(),
            "{} exited unexpectedly with {:?}",
            self.name,
            self.exit
        );
    }

    /// Polls `GET /readyz` until it answers 200; panics if the process exits
    /// or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.assert_running();
            let last = match self.try_http_get("/readyz") {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(e) => e.to_string(),
            };
            assert!(
                start.elapsed() < timeout,
                "{} not ready after {timeout:?}; last /readyz: {last}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the admin port: (status, body).
    pub fn try_http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.admin_port, path)
    }

    /// `POST path` (no body) with `token` as bearer token if given.
    pub fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http_post(self.admin_port, path, token)
            .unwrap_or_else(|e| panic!("{}: POST {path}: {e}", self.name))
    }

    /// `GET path`; panics if the request fails at the transport level.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.try_http_get(path)
            .unwrap_or_else(|e| panic!("{}: GET {path}: {e}", self.name))
    }

    /// `GET path`, asserting 200 and a JSON body.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.http_get(path);
        assert_eq!(status, 200, "{}: GET {path}: {body}", self.name);
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{}: GET {path}: not JSON ({e}): {body}", self.name))
    }

    /// The Prometheus page (`GET /metrics`, asserting 200).
    pub fn metrics(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "{}: GET /metrics: {body}", self.name);
        body
    }

    /// Sum of every series of `driftline_assigned_partitions` (0 if absent).
    pub fn assigned_partitions(&self) -> f64 {
        metric_sum(&self.metrics(), "driftline_assigned_partitions").unwrap_or(0.0)
    }

    /// `GET /v1/features/{entity}[?at=ms]` as JSON (asserting 200).
    pub fn features(&self, entity: &str, at_ms: Option<i64>) -> serde_json::Value {
        let mut path = format!("/v1/features/{}", percent_encode(entity));
        if let Some(at) = at_ms {
            path.push_str(&format!("?at={at}"));
        }
        self.get_json(&path)
    }

    /// SIGKILL, then reap. No-op if it already exited.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            self.exit = Some(self.child.wait().expect("waiting for a killed service"));
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL and panic after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", self.pid);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the service") {
                self.exit = Some(status);
                return status;
            }
            if start.elapsed() > timeout {
                self.kill();
                panic!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines of the instance's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "--- {} exited with {:?} (log kept in {}) ---\n{}",
                    self.name,
                    self.exit,
                    kept.display(),
                    tail(&self.log, 60)
                );
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal HTTP/1.1 GET to `127.0.0.1:port` (`Connection: close`):
/// (status, body), with chunked transfer encoding undone.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, None)
}

/// A `POST` without a body, with `token` as the bearer token if given.
pub fn http_post(port: u16, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    http_request(port, "POST", path, token)
}

fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Parses a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(format!("no end of headers in {} bytes", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| bad(format!("bad content-length {value:?}")))?;
            if n > body.len() {
                return Err(bad(format!("body is {} bytes of {n}", body.len())));
            }
            body = &body[..n];
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line not terminated".into()))?;
        let line = String::from_utf8_lossy(&data[..eol]);
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {size_hex:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("chunk truncated".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Sum of every sample of metric `name` (exact name, any labels) in a
/// Prometheus text page; `None` if there is none.
pub fn metric_sum(page: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in page.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (metric, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        if metric != name {
            continue;
        }
        let value_part = if rest.starts_with('{') {
            match rest.rfind('}') {
                Some(j) => &rest[j + 1..],
                None => continue,
            }
        } else {
            rest
        };
        if let Some(v) = value_part
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

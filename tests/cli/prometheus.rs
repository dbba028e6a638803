//! driftline under a real Prometheus: `promtool` checks our `/metrics`
//! output and the alert rules (with their unit tests), and a Prometheus
//! server scrapes a running driftline (`demo`, which serves the same loop and
//! admin port as `serve`) and evaluates every expression of the Grafana
//! dashboard and the alert rules through its HTTP API. The demo injects a
//! distribution shift from 35% to 65% of its run; the dashboard is checked
//! while driftline's drift alerts fire, so the drift panels have data and the
//! Prometheus drift rules are seen pending on real series.
//!
//! Needs Debian's `prometheus` package; `scripts/test.sh` installs it when
//! missing (`scripts/install-prometheus.sh`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("DRIFTLINE_PROMETHEUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run scripts/install-prometheus.sh (or scripts/test.sh)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query; the result vector, or `None` while the server
/// does not answer yet (no connection, or 503 while its storage starts).
fn try_query(port: u16, expr: &str) -> Option<Vec<serde_json::Value>> {
    let (status, body) = http_get(port, &format!("/api/v1/query?query={}", encode(expr)))?;
    if status == 503 {
        return None;
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{expr}: {e}: {body}"));
    assert_eq!(status, 200, "{expr}: {body}");
    assert_eq!(v["status"], "success", "{expr}: {body}");
    Some(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn query(port: u16, expr: &str) -> Vec<serde_json::Value> {
    try_query(port, expr).unwrap_or_else(|| panic!("prometheus did not answer {expr}"))
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("docker/grafana/dashboards/driftline.json"))
        .expect("the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |t| t["expr"].as_str().map(|e| (title.clone(), e.to_string())))
        })
        .collect()
}

/// `expr:` entries of the alert rules (single-line or `|` blocks).
fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo("docker/prometheus/alerts.yml")).expect("rules");
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest == "|" {
            let mut block = Vec::new();
            while let Some(next) = lines.peek() {
                if next
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_lowercase())
                    && next.contains(':')
                    && !next.contains('(')
                {
                    break;
                }
                block.push(next.trim());
                lines.next();
            }
            exprs.push(block.join(" "));
        } else {
            exprs.push(rest.to_string());
        }
    }
    exprs
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests() {
    let promtool = tool("promtool");
    for args in [
        vec!["check", "rules", "docker/prometheus/alerts.yml"],
        vec!["test", "rules", "docker/prometheus/alerts_test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(repo(""))
            .output()
            .expect("running promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn prometheus_scrapes_driftline_and_every_dashboard_and_rule_expression_works() {
    let (promtool, prometheus) = (tool("promtool"), tool("prometheus"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let admin = free_port();
    let _demo = Guard(
        Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args([
                "demo",
                "--duration",
                // The shift runs from 31 s to 58 s of the run; at 2,000
                // events/s drift alerts fire within ~5 s of its start (the
                // sliding window is 20,000 events) and resolve after its end.
                "90",
                "--rate",
                "2000",
                "--cards",
                "500",
            ])
            .args(["--listen", &format!("127.0.0.1:{admin}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting driftline demo"),
    );
    let metrics = wait_for(
        "driftline's /metrics with predictions",
        Duration::from_secs(60),
        || {
            http_get(admin, "/metrics").filter(|(s, b)| {
                *s == 200 && b.contains("driftline_predictions_total{") && b.contains("_bucket")
            })
        },
    )
    .1;

    // promtool's linter on the real exposition.
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool check metrics");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feeding promtool");
    let out = check.wait_with_output().expect("promtool output");
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && problems.trim().is_empty(),
        "promtool check metrics: {problems}"
    );

    // A Prometheus scraping every second, with our alert rules loaded.
    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: driftline\n    static_configs:\n      - targets: ['127.0.0.1:{admin}']\n",
            repo("docker/prometheus/alerts.yml").display()
        ),
    )
    .expect("writing prometheus.yml");
    let _prom = Guard(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus"),
    );
    wait_for(
        "prometheus to scrape driftline",
        Duration::from_secs(60),
        || {
            let up = try_query(prom_port, "up{job=\"driftline\"} == 1")?.len() == 1;
            let samples = try_query(
                prom_port,
                "count_over_time(driftline_predictions_total[1m]) >= 10",
            )?;
            (up && !samples.is_empty()).then_some(())
        },
    );
    // Lag comes from librdkafka statistics every 5 s.
    wait_for("consumer lag series", Duration::from_secs(30), || {
        (!query(prom_port, "driftline_consumer_lag_messages").is_empty()).then_some(())
    });

    // The demo's injected shift: driftline fires drift alerts.
    wait_for(
        "the demo's drift alerts (driftline_drift_alert_firing == 1)",
        Duration::from_secs(90),
        || (!query(prom_port, "driftline_drift_alert_firing == 1").is_empty()).then_some(()),
    );

    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut empty = Vec::new();
    for (panel, expr) in &exprs {
        if query(prom_port, expr).is_empty() {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard expressions without data after load:\n{}",
        empty.join("\n")
    );

    // Alert conditions are empty while nothing is wrong; each must be a
    // valid query, and every metric it reads must have series.
    let rules = rule_exprs();
    assert!(rules.len() >= 5, "{rules:?}");
    for expr in &rules {
        query(prom_port, expr);
        for name in metric_names(expr) {
            let series = query(
                prom_port,
                &format!("count({{__name__=~\"{name}(_bucket)?\"}})"),
            );
            assert!(
                !series.is_empty(),
                "rule `{expr}` reads {name}, which has no series"
            );
        }
    }
    // The drift rules match driftline's drift alerts: pending, as they
    // need 5 minutes to fire. The score's tests count its cards, not its
    // events (it depends on store features): with 500 cards it fires some
    // seconds after the inputs, later when the machine is busy and the
    // demo falls behind its rate (the shift lasts until 58 s of the run,
    // and the promoted version 2 keeps the score's alert up after it).
    for (rule, wait) in [("DriftlineDataDrift", 15), ("DriftlinePredictionDrift", 60)] {
        wait_for(
            &format!("{rule} pending"),
            Duration::from_secs(wait),
            || {
                let q = format!("ALERTS{{alertname=\"{rule}\",alertstate=\"pending\"}}");
                (!query(prom_port, &q).is_empty()).then_some(())
            },
        );
    }
    // Otherwise the service is healthy: no alert fires.
    let firing = query(prom_port, "ALERTS{alertstate=\"firing\"}");
    assert!(
        firing.is_empty(),
        "alerts firing on a healthy service: {firing:?}"
    );
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("driftline_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches("_bucket").to_string();
        if !names.contains(&name) {
            names.push(name);
        }
        rest = &tail[end..];
    }
    names
}

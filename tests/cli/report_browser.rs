//! The report page and the live page in a real browser: Debian's chromium,
//! headless (`scripts/install-chromium.sh`, run by `scripts/test.sh`). The
//! report of the demo's shifted data and the live page of a running
//! `driftline demo` are opened with their scripts run; the DOM must show
//! every column with its verdict, and the live page must change between
//! two loads a few seconds apart. Screenshots go to
//! `target/report-screenshots/` for a person to look at.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// `$DRIFTLINE_CHROMIUM`, else `chromium` on the PATH.
fn chromium_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DRIFTLINE_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    found.unwrap_or_else(|| {
        panic!("chromium not found: run scripts/install-chromium.sh (or scripts/test.sh)")
    })
}

/// Runs headless chromium on `url` with `extra` flags (a fresh profile
/// each time; `--no-sandbox` because tests may run as root).
fn chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium_binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            "--window-size=1400,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshots() -> PathBuf {
    let dir = repo("target/report-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

fn screenshot(url: &str, file: &Path) {
    let _ = std::fs::remove_file(file);
    chromium(url, &[format!("--screenshot={}", file.display())]);
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "{}: {size} bytes", file.display());
}

/// The value of the first `attr="..."` in `dom`.
fn attr<'a>(dom: &'a str, attr: &str) -> Option<&'a str> {
    let start = dom.find(&format!("{attr}=\""))? + attr.len() + 2;
    dom.get(start..)?.split('"').next()
}

/// The rendered part of a dumped page: what precedes its scripts (whose
/// source holds the renderer's templates).
fn rendered(dom: &str) -> &str {
    dom.split("<script").next().unwrap_or(dom)
}

/// Each drawn column's name and verdict, in page order.
fn column_verdicts(dom: &str) -> Vec<(String, String)> {
    rendered(dom)
        .split("class=\"column\" ")
        .skip(1)
        .filter_map(|c| {
            Some((
                attr(c, "data-column")?.to_owned(),
                attr(c, "data-verdict")?.to_owned(),
            ))
        })
        .collect()
}

fn model_columns() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo("models/fraud-mlp/1/model.toml")).expect("toml");
    let mut names: Vec<String> = manifest
        .split("[[inputs]]")
        .skip(1)
        .filter_map(|block| {
            let line = block.lines().find(|l| l.starts_with("name = "))?;
            Some(
                line.trim_start_matches("name = ")
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .collect();
    names.push("score".into());
    names
}

#[test]
fn the_report_page_shows_every_column_with_its_verdict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let html = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["report", "--model", "models/fraud-mlp/1"])
        .args(["--data", "data/transactions-shifted.parquet", "--out"])
        .arg(&html)
        .output()
        .expect("report runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("file://{}", html.display());
    let dom = chromium(&url, &["--dump-dom".into()]);
    assert_eq!(
        attr(rendered(&dom), "data-verdict"),
        Some("drift"),
        "summary verdict"
    );
    let shown = column_verdicts(&dom);
    let names: Vec<&str> = shown.iter().map(|(n, _)| n.as_str()).collect();
    for column in model_columns() {
        assert!(
            names.contains(&column.as_str()),
            "{column} not shown: {names:?}"
        );
    }
    assert_eq!(shown.len(), model_columns().len());
    // Sorted by severity: the drifting columns first, amount among them.
    let first_ok = shown
        .iter()
        .position(|(_, v)| v != "drift")
        .unwrap_or(shown.len());
    assert!(
        shown[..first_ok].iter().any(|(n, _)| n == "amount"),
        "{shown:?}"
    );
    assert!(
        shown[first_ok..].iter().all(|(_, v)| v != "drift"),
        "{shown:?}"
    );
    assert!(shown.iter().any(|(_, v)| v == "ok"), "{shown:?}");
    screenshot(&url, &screenshots().join("report.png"));
}

/// A `driftline demo` child, killed when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn the_live_page_shows_the_demo_and_updates() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_driftline"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "demo",
                "--duration",
                "60",
                "--rate",
                "4000",
                "--cards",
                "500",
            ])
            .args(["--listen", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("demo starts"),
    );
    // Until a window has been judged.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let evaluated = get(&addr, "/v1/drift")
            .is_some_and(|t| t.contains("\"evaluations\":") && !t.contains("\"evaluations\":0"));
        if evaluated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo judged no window in 45 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let page = get(&addr, "/").expect("GET /");
    assert!(page.starts_with("HTTP/1.1 200"), "{page:.200}");
    assert!(
        page.contains("const DriftView"),
        "the shared renderer is inlined"
    );
    let url = format!("http://{addr}/");
    let first = chromium(&url, &["--dump-dom".into()]);
    let shown = column_verdicts(&first);
    let names: Vec<&str> = shown.iter().map(|(n, _)| n.as_str()).collect();
    for column in model_columns() {
        assert!(
            names.contains(&column.as_str()),
            "{column} not shown: {names:?}"
        );
    }
    for (name, verdict) in &shown {
        assert!(
            ["drift", "ok", "skipped"].contains(&verdict.as_str()),
            "{name}: {verdict}"
        );
    }
    assert!(first.contains("id=\"throughput\""));
    assert!(first.contains("fraud-mlp"), "model versions shown");
    std::thread::sleep(Duration::from_secs(4));
    let second = chromium(&url, &["--dump-dom".into()]);
    let window = |dom: &str| {
        let dom = rendered(dom);
        let at = dom.find("id=\"window\"").expect("window element");
        let tail = &dom[at..];
        (
            attr(tail, "data-evaluations").map(String::from),
            attr(tail, "data-count").map(String::from),
        )
    };
    assert_ne!(window(&first), window(&second), "the page did not update");
    screenshot(&url, &screenshots().join("live.png"));
}

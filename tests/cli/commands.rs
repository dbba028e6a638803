//! Black-box tests of the `driftline` binary: `validate`, `score` and `demo`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftline"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs the binary with `args`, feeding `input` on stdin; asserts it succeeded.
fn run_with_stdin(args: &[&str], input: &str) -> std::process::Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn validate_accepts_the_documented_default_config() {
    let out = bin()
        .args(["validate", "--config", "config/driftline.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn validate_reports_config_model_and_snapshot_problems_together() {
    let dir = tempfile::tempdir().unwrap();
    // A model whose file no longer matches its manifest.
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["model.toml", "model.onnx", "reference.json"] {
        std::fs::copy(repo("models/fraud-mlp/1").join(f), model.join(f)).unwrap();
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(model.join("model.onnx"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    // A snapshot with a bad cell.
    let snapshot = dir.path().join("cards.csv");
    std::fs::write(
        &snapshot,
        "entity_id,updated_at,account_age_days,credit_limit,avg_amount_90d,chargebacks_1y,card_tier\n\
         card-1,0,12,3000,30,0,gold\ncard-2,0,12,abc,30,0,gold\n",
    )
    .unwrap();
    let config = dir.path().join("driftline.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\ndir = {:?}\n[store]\nsnapshot = {:?}\n[pipeline]\nbatch_size = 0\n",
            model, snapshot
        ),
    )
    .unwrap();
    let out = bin()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(err.contains("pipeline.batch_size"), "{err}");
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(err.contains("row 2: column `credit_limit`"), "{err}");
}

#[test]
fn score_writes_one_line_per_event_in_order() {
    let input = [
        r#"{"event_id":"e1","entity_id":"card-000001","ts":1793491200000,"features":{"amount":25.0,"merchant_category":"grocery","channel":"chip","hour":10,"is_international":false,"distance_from_home_km":2.5}}"#,
        "",
        r#"{"event_id":"e2","entity_id":"card-000001","features":{"amount":"lots"}}"#,
        r#"{not json"#,
        r#"{"event_id":"e4","entity_id":"nobody","ts":"2026-11-01T00:05:00Z","features":{"amount":2500.0,"merchant_category":"electronics","channel":"online","hour":3,"is_international":true,"distance_from_home_km":4200.0}}"#,
    ]
    .join("\n");
    let out = run_with_stdin(&["score", "--config", "config/driftline.toml"], &input);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["event_id"], "e1");
    assert_eq!(lines[0]["model"], "fraud-mlp");
    assert_eq!(lines[0]["ts"], 1793491200000i64);
    let low = lines[0]["score"].as_f64().unwrap();
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[1]["error"], "wrong_type");
    assert_eq!(lines[2]["line"], 4);
    assert_eq!(lines[2]["error"], "malformed_json");
    assert_eq!(lines[3]["event_id"], "e4");
    assert_eq!(lines[3]["ts"], 1793491500000i64);
    // A large foreign online electronics purchase at 3am scores riskier than groceries.
    let high = lines[3]["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&low) && (0.0..=1.0).contains(&high));
    assert!(high > low, "high {high} <= low {low}");
}

#[test]
fn demo_runs_bounded_and_accounts_for_every_event() {
    let out = bin()
        .args([
            "demo",
            "--duration",
            "2",
            "--rate",
            "5000",
            "--cards",
            "500",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("events:"))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    // "events: G generated, S scored, R rejected (L lost) ..."
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(4)
        .map(|s| s.parse().unwrap())
        .collect();
    let [generated, scored, rejected, lost] = numbers[..] else {
        panic!("unexpected summary {summary}");
    };
    assert!(generated >= 5_000, "{summary}");
    assert_eq!(scored + rejected, generated, "{summary}");
    assert_eq!(lost, 0);
    assert!(rejected > 0, "the demo injects broken events: {summary}");
    assert!(stdout.contains("rejected by reason"), "{stdout}");
}

#[test]
fn flags_override_the_config_file() {
    let event = r#"{"event_id":"e1","entity_id":"card-000001","ts":1793491200000,"features":{"amount":25.0,"merchant_category":"grocery","channel":"chip","hour":10,"is_international":false,"distance_from_home_km":2.5}}"#;
    let out = run_with_stdin(
        &[
            "score",
            "--config",
            "config/driftline.toml",
            "--model",
            "models/fraud-rf/1",
            "--batch-size",
            "1",
        ],
        event,
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["model"], "fraud-rf");

    // A flag's value is validated like the file's.
    let out = bin()
        .args([
            "validate",
            "--config",
            "config/driftline.toml",
            "--batch-size",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipeline.batch_size: 0"));
}

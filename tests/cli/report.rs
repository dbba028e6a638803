//! `driftline report`: the bundled training data against the bundled
//! reference is silent, the demo's shifted data drifts (and fails the CI
//! gate), bad input exits 2 naming the file and the column, and the
//! report's statistics equal the service monitor's on the same events.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use driftline::app::profile::NoProgress;
use driftline::app::report::{build_report, report_config, ReportOptions};
use driftline::config::Config;
use driftline::drift::monitor::{DriftStatus, Evaluator, Recorder, RecorderStats};
use driftline::pipeline::{BatchOutput, Message, Pipeline};
use serde_json::Value;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftline"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs `report` on `data` against fraud-mlp/1 with `extra` flags; returns
/// the exit code, stdout+stderr, the JSON and the HTML page.
fn report(data: &str, extra: &[&str]) -> (i32, String, Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let out = bin()
        .args(["report", "--model", "models/fraud-mlp/1", "--data", data])
        .arg("--json")
        .arg(&json)
        .arg("--out")
        .arg(&html)
        .args(extra)
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().expect("exit code");
    let view: Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let page = std::fs::read_to_string(&html).unwrap_or_default();
    (code, text, view, page)
}

fn columns(view: &Value) -> Vec<&Value> {
    let status = &view["status"];
    status["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .chain([&status["score"]])
        .collect()
}

#[test]
fn the_training_data_does_not_drift_from_its_own_reference() {
    let (code, text, view, page) = report("data/transactions.parquet", &["--fail-on", "drift"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("no drift"), "{text}");
    let r = &view["report"];
    assert_eq!(r["drifted"], false, "{r}");
    assert_eq!(r["windows"], 1);
    assert_eq!(r["judged_windows"], 1);
    assert_eq!(r["rows"], 41_904);
    assert_eq!(r["scored"], r["rows"]);
    // Every column (score included) judged, none bad, and drawn.
    let manifest = std::fs::read_to_string(repo("models/fraud-mlp/1/model.toml")).expect("toml");
    let inputs = manifest.matches("[[inputs]]").count();
    let cols = columns(&view);
    assert_eq!(cols.len(), inputs + 1);
    for c in cols {
        assert!(
            c["skipped"].is_null(),
            "{} not judged: {}",
            c["name"],
            c["skipped"]
        );
        assert!(!c["statistics"].as_array().expect("statistics").is_empty());
        assert!(c["histogram"].is_object(), "{} has no histogram", c["name"]);
        assert!(
            page.contains(&format!("\"name\": {}", c["name"])),
            "{} not in the page's data",
            c["name"]
        );
    }
    // The same schema as /v1/drift: the wrapper's keys, plus `report`.
    for key in ["enabled", "reference", "config", "status", "report"] {
        assert!(view.get(key).is_some(), "no `{key}`");
    }
    // Self-contained: no resource from elsewhere.
    assert!(page.starts_with("<!doctype html>"));
    for external in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
        assert!(!page.contains(external), "{external}");
    }
}

#[test]
fn the_shifted_data_drifts_and_fails_the_gate() {
    let (code, text, view, _) = report(
        "data/transactions-shifted.parquet",
        &["--fail-on", "drift", "--window", "10000"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("DRIFT"), "{text}");
    let r = &view["report"];
    assert_eq!(r["drifted"], true);
    assert_eq!(r["window_events"], 10_000);
    // 42,310 rows: four whole windows and a short one.
    assert_eq!(r["windows"], 5, "{r}");
    let rules: Vec<(String, String)> = r["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|x| (x["column"].to_string(), x["statistic"].to_string()))
        .collect();
    // The demo's shift: amounts scale up, one merchant category surges.
    for column in ["amount", "merchant_category", "score"] {
        assert!(
            rules.iter().any(|(c, _)| c == &format!("\"{column}\"")),
            "{column} not among {rules:?}"
        );
    }
    assert_eq!(
        view["status"]["history"].as_array().map(Vec::len),
        Some(5),
        "every window in the history"
    );
    // Without the gate, drift is reported but succeeds.
    let (code, text, _, _) = report("data/transactions-shifted.parquet", &[]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn bad_input_exits_2_naming_the_file_and_the_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A CSV without the model's `channel` column.
    let csv = dir.path().join("no-channel.csv");
    let text = std::fs::read_to_string(repo("data/transactions.csv")).expect("csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let channel = header
        .iter()
        .position(|h| *h == "channel")
        .expect("channel");
    let drop = |line: &str| {
        line.split(',')
            .enumerate()
            .filter(|(i, _)| *i != channel)
            .map(|(_, c)| c)
            .collect::<Vec<_>>()
            .join(",")
    };
    let body: Vec<String> = std::iter::once(drop(&header.join(",")))
        .chain(lines.take(100).map(drop))
        .collect();
    std::fs::write(&csv, body.join("\n")).expect("write");
    let csv_arg = csv.display().to_string();
    let (code, text, _, _) = report(&csv_arg, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(&csv_arg) && text.contains("`channel`"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    // A text cell in a numeric column.
    let bad = dir.path().join("bad-amount.csv");
    let mut rows: Vec<String> = text_lines(&repo("data/transactions.csv"), 50);
    let amount = header.iter().position(|h| *h == "amount").expect("amount");
    let mut cells: Vec<String> = rows[3].split(',').map(String::from).collect();
    cells[amount] = "lots".into();
    rows[3] = cells.join(",");
    std::fs::write(&bad, rows.join("\n")).expect("write");
    let bad_arg = bad.display().to_string();
    let (code, text, _, _) = report(&bad_arg, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&bad_arg) && text.contains("amount"), "{text}");
    // A missing file, an unknown format, a window of 0, nothing to do.
    for (args, expect) in [
        (vec!["--data", "data/none.parquet"], "data/none.parquet"),
        (vec!["--data", "README.md"], "README.md"),
    ] {
        let out = bin()
            .args([
                "report",
                "--model",
                "models/fraud-mlp/1",
                "--json",
                "/dev/null",
            ])
            .args(&args)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expect), "{err}");
    }
    let out = bin()
        .args(["report", "--model", "models/fraud-mlp/1"])
        .args(["--data", "data/transactions.parquet", "--window", "0"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["report", "--model", "models/fraud-mlp/1"])
        .args(["--data", "data/transactions.parquet"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
}

fn text_lines(path: &Path, n: usize) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .take(n + 1)
        .map(String::from)
        .collect()
}

/// A copy of fraud-mlp/1 whose inputs all come with the event: the
/// service then reads every input from the event, as a report reads it
/// from the row, so both see the same values.
fn event_only_model(dir: &Path) -> PathBuf {
    let src = repo("models/fraud-mlp/1");
    let model = dir.join("fraud-mlp-events");
    std::fs::create_dir_all(&model).expect("dir");
    for f in ["model.onnx", "reference.json"] {
        std::fs::copy(src.join(f), model.join(f)).expect("copy");
    }
    let manifest = std::fs::read_to_string(src.join("model.toml"))
        .expect("manifest")
        .replace("source = \"store\"", "source = \"event\"")
        .replace("source = \"aggregate\"", "source = \"event\"")
        .lines()
        .filter(|l| !l.starts_with("aggregate = "))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(model.join("model.toml"), manifest).expect("manifest");
    model
}

#[test]
fn report_and_the_service_monitor_judge_the_same_events_alike() {
    const ROWS: usize = 12_000;
    const WINDOW: u64 = 4_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = event_only_model(dir.path());
    // The training rows in time order, amounts of the second half raised
    // by half (so some statistics are bad, some not).
    let text = std::fs::read_to_string(repo("data/transactions.csv")).expect("csv");
    let mut lines = text.lines();
    let header_line = lines.next().expect("header");
    let header: Vec<&str> = header_line.split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (ts, amount) = (at("ts"), at("amount"));
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    rows.sort_by_key(|r| r[ts].parse::<i64>().expect("ts"));
    rows.truncate(ROWS);
    for r in rows.iter_mut().skip(ROWS / 2) {
        let x: f64 = r[amount].parse().expect("amount");
        r[amount] = format!("{}", (x * 1.5 * 100.0).round() / 100.0);
    }
    let csv = dir.path().join("events.csv");
    let body: Vec<String> = std::iter::once(header_line.to_owned())
        .chain(rows.iter().map(|r| r.join(",")))
        .collect();
    std::fs::write(&csv, body.join("\n")).expect("csv");
    let config_path = dir.path().join("driftline.toml");
    std::fs::write(
        &config_path,
        format!(
            "[model]\ndir = {:?}\n[drift]\nwindow_events = {WINDOW}\nsub_windows = 1\n\
             exact_max_values = 65536\nmax_window_bytes = 16777216\n",
            model.display().to_string()
        ),
    )
    .expect("config");
    // Every value kept exactly (the season window of `hour` included), so
    // the statistics are deterministic and must agree to the bit: past
    // `exact_max_values` they come from randomised KLL sketches, which
    // agree only within their rank error.
    let config = Config::load(&config_path).expect("config");
    assert_eq!(report_config(&config.drift, Some(WINDOW)), config.drift);

    // The service's path: JSON events → decode → enrich → score (in
    // chunks of 1,024, as the report scores) → recorder → evaluator.
    let parts = driftline::app::build(&config).expect("parts");
    let plan = parts.drift.clone().expect("a reference");
    let mut pipeline = Pipeline::new(&parts.model, None, None, 1 << 20).expect("pipeline");
    let stats = Arc::new(RecorderStats::default());
    let (recorder, rx) = Recorder::new(plan.clone(), stats.clone());
    pipeline.set_recorder(recorder);
    let status = Arc::new(parking_lot::RwLock::new(DriftStatus::default()));
    let mut evaluator = Evaluator::new(plan, stats, status.clone(), Box::new(|_, _, _| {}));
    let inputs: Vec<&str> = parts
        .model
        .manifest()
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    let events: Vec<String> = rows
        .iter()
        .map(|r| {
            let mut features = serde_json::Map::new();
            for name in &inputs {
                let raw = r[at(name)].as_str();
                let value = match raw {
                    "" => Value::Null,
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => raw
                        .parse::<f64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(raw)),
                };
                features.insert((*name).into(), value);
            }
            serde_json::json!({
                "event_id": r[at("event_id")],
                "entity_id": r[at("entity_id")],
                "ts": r[ts].parse::<i64>().expect("ts"),
                "features": features,
            })
            .to_string()
        })
        .collect();
    let mut out = BatchOutput::default();
    let mut scored = 0;
    for (chunk, raw) in events.chunks(1024).zip(rows.chunks(1024)) {
        let messages: Vec<Message<'_>> = chunk
            .iter()
            .map(|e| Message {
                payload: e.as_bytes(),
                timestamp_ms: None,
            })
            .collect();
        out.clear();
        let now: i64 = raw[raw.len() - 1][ts].parse().expect("ts");
        pipeline.process(&messages, now, &mut out);
        scored += out.scored.len();
        for window in rx.try_iter() {
            evaluator.push(window);
        }
    }
    assert_eq!(scored, ROWS, "every event scored");
    let service = status.read().clone();

    // The report's path, from the CSV file with the same config.
    let report = build_report(
        &csv,
        &ReportOptions {
            model_dir: model,
            reference: None,
            drift: config.drift.clone(),
            window: Some(WINDOW),
            batch_rows: 65_536,
            entity_column: "entity_id".into(),
        },
        &mut NoProgress,
    )
    .expect("report");
    let judged = report.view.status;
    assert_eq!(service.evaluations, 3);
    assert_eq!(judged.evaluations, service.evaluations);
    assert_eq!(judged.window, service.window);
    let differ: Vec<String> = judged
        .columns
        .iter()
        .zip(&service.columns)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("report {a:?}\nservice {b:?}"))
        .collect();
    assert!(
        differ.is_empty(),
        "column statistics differ:\n{}",
        differ.join("\n")
    );
    assert_eq!(judged.columns.len(), service.columns.len());
    assert_eq!(judged.score, service.score, "score statistics differ");
    assert_eq!(judged.history, service.history, "window verdicts differ");
    // Not vacuous: the raised amounts are judged bad in the last window,
    // not in the first (before the raise).
    let bad: Vec<(usize, String)> = judged
        .history
        .iter()
        .enumerate()
        .flat_map(|(i, v)| v.bad.iter().map(move |b| (i, b.column.clone())))
        .collect();
    assert!(bad.contains(&(2, "amount".into())), "{bad:?}");
    assert!(!bad.contains(&(0, "amount".into())), "{bad:?}");
    let summary = report.view.report.expect("summary");
    assert!(summary.drifted);
    assert_eq!(summary.rows, ROWS as u64);
}

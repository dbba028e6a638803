//! The `docker/` assets against the real binary: no Docker engine runs on
//! the development machines, so this is what keeps the Dockerfile, the
//! compose file, the Prometheus rules and the Grafana dashboard true to the
//! binary's flags, config keys, ports and metric names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use driftline::config::{AdminConfig, Config};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of the compose file's `driftline` service block.
fn driftline_service(compose: &str) -> Vec<&str> {
    let mut lines = compose.lines().skip_while(|l| *l != "  driftline:");
    let first = lines
        .next()
        .expect("a driftline service in docker-compose.yml");
    std::iter::once(first)
        .chain(lines.take_while(|l| l.is_empty() || l.starts_with("   ")))
        .collect()
}

/// `["a", "b"]` on a `key: [...]` line, as strings.
fn inline_list(line: &str) -> Vec<String> {
    let start = line.find('[').expect("an inline list");
    serde_json::from_str(&line[start..]).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn admin_port() -> u16 {
    let listen = AdminConfig::default().listen;
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("admin.listen has a port")
}

#[test]
fn compose_environment_sets_real_config_keys() {
    let compose = read("docker/docker-compose.yml");
    let service = driftline_service(&compose);
    let env: Vec<(String, String)> = service
        .iter()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.starts_with("DRIFTLINE_"))
        .map(|(k, v)| (k.to_string(), format!("{v:?}")))
        .collect();
    assert!(
        env.len() >= 3,
        "the service is configured by DRIFTLINE_* variables"
    );
    // Unknown keys are errors (deny_unknown_fields), so a stale variable fails here.
    let merged = Config::merge(&repo("config/driftline.toml"), env.clone())
        .unwrap_or_else(|e| panic!("compose environment {env:?}: {e}"));
    assert_eq!(merged.kafka.brokers, "kafka:9092");
    assert_eq!(merged.admin.listen, format!("0.0.0.0:{}", admin_port()));
}

#[test]
fn commands_and_flags_exist_in_the_binary() {
    let compose = read("docker/docker-compose.yml");
    let dockerfile = read("docker/Dockerfile");
    let service = driftline_service(&compose);
    let command_line = service
        .iter()
        .find(|l| l.trim_start().starts_with("command:"))
        .expect("the driftline service has a command");
    let cmd_line = dockerfile
        .lines()
        .find(|l| l.starts_with("CMD "))
        .expect("the Dockerfile has a CMD");
    for args in [inline_list(command_line), inline_list(cmd_line)] {
        let (sub, rest) = args.split_first().expect("a subcommand");
        let help = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args([sub.as_str(), "--help"])
            .output()
            .expect("running driftline --help");
        assert!(help.status.success(), "`driftline {sub}` is a command");
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in rest.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(flag.as_str()),
                "`driftline {sub}` has no {flag}:\n{help}"
            );
        }
        // Paths the command names are in the image.
        for path in rest.iter().filter(|a| a.ends_with(".toml")) {
            assert!(
                repo(path).is_file(),
                "{path} is copied into the image but missing"
            );
            assert!(
                dockerfile.contains("COPY config config"),
                "config/ is copied"
            );
        }
    }
}

#[test]
fn ports_agree_everywhere() {
    let port = admin_port();
    let dockerfile = read("docker/Dockerfile");
    assert!(
        dockerfile.contains(&format!("EXPOSE {port}")),
        "Dockerfile exposes {port}"
    );
    let compose = read("docker/docker-compose.yml");
    assert!(
        driftline_service(&compose)
            .iter()
            .any(|l| l.contains(&format!("\"{port}:{port}\""))),
        "compose publishes {port}"
    );
    let prometheus = read("docker/prometheus/prometheus.yml");
    assert!(
        prometheus.contains(&format!("driftline:{port}")),
        "Prometheus scrapes driftline:{port}"
    );
}

/// A plain `docker build` (and the compose file's `driftline` service)
/// builds the last stage: it must be the service image, running driftline.
#[test]
fn the_last_stage_is_the_service_image() {
    let dockerfile = read("docker/Dockerfile");
    let last_from = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    assert!(last_from.ends_with(" AS runtime"), "{last_from}");
    let after = &dockerfile[dockerfile.rfind(last_from).unwrap_or(0)..];
    assert!(
        after.contains(r#"ENTRYPOINT ["/usr/local/bin/driftline"]"#),
        "the runtime stage runs driftline"
    );
}

#[test]
fn files_the_image_copies_exist() {
    let dockerfile = read("docker/Dockerfile");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                repo(src).exists(),
                "Dockerfile copies {src}, which does not exist"
            );
        }
    }
}

/// Metric names defined in `src/telemetry/metrics.rs`.
fn defined_metrics() -> BTreeSet<String> {
    read("src/telemetry/metrics.rs")
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"driftline_"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

/// `driftline_*` names in a PromQL-bearing text, without histogram suffixes.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("driftline_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboards_and_rules_use_only_metrics_the_binary_exports() {
    let defined = defined_metrics();
    assert!(defined.len() >= 15, "{defined:?}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("docker/grafana/dashboards/driftline.json"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules = read("docker/prometheus/alerts.yml");
    for (what, text) in [("dashboard", exprs.join("\n")), ("alert rules", rules)] {
        for name in referenced_metrics(&text) {
            assert!(
                defined.contains(&name),
                "{what} uses {name}, which driftline does not export"
            );
        }
    }
}

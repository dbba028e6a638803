//! The Kubernetes manifests (`docker/kubernetes/`) against the real binary:
//! no cluster runs on the development machines, so this is what keeps the
//! Deployment, ConfigMap, Secret, Service, ServiceMonitor, PrometheusRule and
//! KEDA ScaledObject true to driftline's flags, config keys, admin routes,
//! port and metric names. Their schemas are checked by
//! `scripts/check-kubernetes.sh`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use driftline::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

/// A token of the length driftline accepts, standing in for the Secret's value.
const TEST_TOKEN: &str = "k8s-assets-test-token-0123456789";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The one object of `kind` in `docker/kubernetes/<file>`.
fn manifest(file: &str, kind: &str) -> Yaml {
    let text = read(&format!("docker/kubernetes/{file}"));
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut found = docs
        .into_iter()
        .filter(|d| d["kind"].as_str() == Some(kind));
    let doc = found
        .next()
        .unwrap_or_else(|| panic!("{file} holds no {kind}"));
    assert!(found.next().is_none(), "{file} holds one {kind}");
    doc
}

/// A string field, or a panic naming it.
fn text<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {node:?}"))
}

fn list<'a>(node: &'a Yaml, what: &str) -> &'a [Yaml] {
    node.as_vec()
        .unwrap_or_else(|| panic!("{what} is not a list: {node:?}"))
}

fn number(node: &Yaml, what: &str) -> i64 {
    node.as_i64()
        .unwrap_or_else(|| panic!("{what} is not an integer: {node:?}"))
}

fn deployment() -> Yaml {
    manifest("deployment.yaml", "Deployment")
}

/// The driftline container of the Deployment's pod template.
fn container(deployment: &Yaml) -> Yaml {
    let containers = list(
        &deployment["spec"]["template"]["spec"]["containers"],
        "containers",
    );
    assert_eq!(containers.len(), 1, "one container per pod");
    let c = containers[0].clone();
    assert_eq!(text(&c["name"], "container name"), "driftline");
    c
}

/// The container's `args` as strings.
fn args(container: &Yaml) -> Vec<String> {
    list(&container["args"], "args")
        .iter()
        .map(|a| text(a, "an argument").to_string())
        .collect()
}

/// `docker/kubernetes/configmap.yaml`'s file, under its key.
fn config_file() -> (String, String) {
    let cm = manifest("configmap.yaml", "ConfigMap");
    let data = cm["data"].as_hash().expect("the ConfigMap has data");
    assert_eq!(data.len(), 1, "the ConfigMap holds the config file only");
    let (key, value) = data.iter().next().expect("one entry");
    (
        text(key, "data key").to_string(),
        text(value, "data value").to_string(),
    )
}

/// The config file written out, in a directory kept alive by the caller.
fn config_on_disk() -> (tempfile::TempDir, PathBuf) {
    let (key, toml) = config_file();
    let dir = tempfile::tempdir().expect("a scratch directory");
    let path = dir.path().join(key);
    std::fs::write(&path, toml).expect("writing the config file");
    (dir, path)
}

/// The container's `DRIFTLINE_*` variables, the Secret's token as
/// [`TEST_TOKEN`] (the committed placeholder is refused on purpose).
fn driftline_env(container: &Yaml) -> Vec<(String, String)> {
    let secret = manifest("secret.example.yaml", "Secret");
    list(&container["env"], "env")
        .iter()
        .map(|var| {
            let name = text(&var["name"], "env name").to_string();
            let from = &var["valueFrom"]["secretKeyRef"];
            let value = if from.is_badvalue() {
                text(&var["value"], &name).to_string()
            } else {
                assert_eq!(
                    from["name"], secret["metadata"]["name"],
                    "{name} reads the Secret of secret.example.yaml"
                );
                let key = text(&from["key"], "secretKeyRef.key");
                assert!(
                    !secret["stringData"][key].is_badvalue(),
                    "secret.example.yaml has no key {key} for {name}"
                );
                TEST_TOKEN.to_string()
            };
            (name, value)
        })
        .filter(|(name, _)| name.starts_with("DRIFTLINE_"))
        .collect()
}

/// The ConfigMap's config with the Deployment's environment, as the pod sees it.
fn pod_config() -> Config {
    let (_dir, path) = config_on_disk();
    let env = driftline_env(&container(&deployment()));
    Config::merge(&path, env).unwrap_or_else(|e| panic!("the pod's config: {e}"))
}

fn port_of(listen: &str) -> i64 {
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("admin.listen {listen} has no port"))
}

/// The named container port and its number.
fn container_port(container: &Yaml) -> (String, i64) {
    let ports = list(&container["ports"], "ports");
    assert_eq!(ports.len(), 1, "the admin port is the only one");
    (
        text(&ports[0]["name"], "port name").to_string(),
        number(&ports[0]["containerPort"], "containerPort"),
    )
}

/// The lines of the Dockerfile's last (runtime) stage.
fn runtime_stage() -> Vec<String> {
    let dockerfile = read("docker/Dockerfile");
    let start = dockerfile
        .rfind("\nFROM ")
        .expect("a FROM line in the Dockerfile");
    dockerfile[start + 1..]
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_command_runs_serve_with_flags_the_binary_has() {
    let deployment = deployment();
    let container = container(&deployment);
    // No `command`: the image's ENTRYPOINT (the driftline binary) runs `args`.
    assert!(container["command"].is_badvalue(), "the image's entrypoint");
    let args = args(&container);
    let (sub, flags) = args.split_first().expect("a subcommand");
    assert_eq!(sub, "serve");
    let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args([sub.as_str(), "--help"])
        .output()
        .expect("running driftline serve --help");
    assert!(out.status.success(), "`driftline {sub}` is a command");
    let help = String::from_utf8_lossy(&out.stdout);
    let unknown: Vec<&String> = flags
        .iter()
        .filter(|a| a.starts_with("--") && !help.contains(&format!("{a} ")))
        .collect();
    assert!(
        unknown.is_empty(),
        "`driftline {sub}` has no {unknown:?}:\n{help}"
    );

    // --config names the ConfigMap's file where the volume mounts it.
    let config_at = flags
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("--config PATH");
    let mount = list(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| config_at.starts_with(&format!("{}/", text(&m["mountPath"], "mountPath"))))
        .unwrap_or_else(|| panic!("no volume is mounted where {config_at} is"));
    let volume = list(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "volumes",
    )
    .iter()
    .find(|v| v["name"] == mount["name"])
    .expect("the mounted volume");
    let cm = manifest("configmap.yaml", "ConfigMap");
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    let (key, _) = config_file();
    assert_eq!(
        *config_at,
        format!("{}/{key}", text(&mount["mountPath"], "mountPath"))
    );
}

#[test]
fn the_pod_runs_the_runtime_image_as_its_user() {
    let deployment = deployment();
    let container = container(&deployment);
    let stage = runtime_stage();
    assert!(stage[0].ends_with(" AS runtime"), "{}", stage[0]);
    let image = text(&container["image"], "image");
    assert_eq!(
        image,
        format!("driftline:{}", env!("CARGO_PKG_VERSION")),
        "the image is tagged with the crate's version"
    );
    // Relative config paths resolve from the image's WORKDIR.
    let workdir = stage
        .iter()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .expect("the runtime stage sets WORKDIR");
    assert_eq!(text(&container["workingDir"], "workingDir"), workdir);
    // The pod's user is the one the image creates.
    let uid = number(
        &deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        "runAsUser",
    );
    assert!(
        stage
            .iter()
            .any(|l| l.contains("useradd") && l.contains(&format!("--uid {uid} "))),
        "the runtime stage creates uid {uid}"
    );
    assert!(stage.iter().any(|l| l.starts_with("USER ")), "non-root");
}

#[test]
fn the_configmap_validates_with_the_pods_environment() {
    let (_dir, path) = config_on_disk();
    let env = driftline_env(&container(&deployment()));
    // The image holds models/ and data/ where the repository does (relative
    // to WORKDIR), so running from the repository root checks the paths too.
    let mut validate = Command::new(env!("CARGO_BIN_EXE_driftline"));
    validate
        .args(["validate", "--config"])
        .arg(&path)
        .current_dir(repo(""));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DRIFTLINE_") {
            validate.env_remove(k);
        }
    }
    let out = validate
        .envs(env)
        .output()
        .expect("running driftline validate");
    assert!(
        out.status.success(),
        "driftline validate on configmap.yaml's file:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `DRIFTLINE_*` variable of the pod must change the config: a name
/// without `__`, or one for a key that does not exist, would be ignored or
/// refused, never quietly applied.
#[test]
fn every_environment_variable_sets_a_real_key() {
    let (_dir, path) = config_on_disk();
    let env = driftline_env(&container(&deployment()));
    assert!(
        env.iter().any(|(k, _)| k == "DRIFTLINE_ADMIN__TOKEN"),
        "the admin token comes from the Secret"
    );
    let base = Config::merge(&path, Vec::new()).expect("the ConfigMap's file parses");
    let base = serde_json::to_value(&base).expect("config as JSON");
    for (name, value) in &env {
        let merged = Config::merge(&path, [(name.clone(), value.clone())])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(
            serde_json::to_value(&merged).expect("config as JSON"),
            base,
            "{name} changes no setting"
        );
    }
    assert_eq!(pod_config().admin.token.as_deref(), Some(TEST_TOKEN));
    // Service links would add DRIFTLINE_SERVICE_HOST and the like.
    assert_eq!(
        deployment()["spec"]["template"]["spec"]["enableServiceLinks"].as_bool(),
        Some(false)
    );
}

/// The committed placeholder must not start a pod: a token everybody can
/// read in the repository would guard nothing.
#[test]
fn the_placeholder_token_is_refused() {
    let secret = manifest("secret.example.yaml", "Secret");
    let placeholder = text(&secret["stringData"]["token"], "stringData.token");
    let (_dir, path) = config_on_disk();
    let config = Config::merge(
        &path,
        [(
            "DRIFTLINE_ADMIN__TOKEN".to_string(),
            placeholder.to_string(),
        )],
    )
    .expect("the config parses");
    let problems = config.problems();
    assert!(
        problems.iter().any(|p| p.starts_with("admin.token")),
        "{placeholder:?} is accepted as a token: {problems:?}"
    );
}

#[test]
fn ports_agree_from_config_to_service_monitor() {
    let config = pod_config();
    let container = container(&deployment());
    let (port_name, port) = container_port(&container);
    assert_eq!(port, port_of(&config.admin.listen), "admin.listen's port");
    assert!(
        config.admin.listen.starts_with("0.0.0.0:"),
        "probes and scrapes reach the pod IP"
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(
            text(&container[probe]["httpGet"]["port"], probe),
            port_name,
            "{probe} port"
        );
    }
    let service = manifest("service.yaml", "Service");
    let ports = list(&service["spec"]["ports"], "Service ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(text(&ports[0]["targetPort"], "targetPort"), port_name);
    assert_eq!(number(&ports[0]["port"], "Service port"), port);
    let monitor = manifest("servicemonitor.yaml", "ServiceMonitor");
    let endpoints = list(&monitor["spec"]["endpoints"], "endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], ports[0]["name"], "the Service's port");
}

/// Every selector selects the pods (and the ServiceMonitor the Service).
#[test]
fn selectors_select_the_pods() {
    let deployment = deployment();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Yaml, labels: &Yaml, what: &str| {
        let wanted = selector
            .as_hash()
            .unwrap_or_else(|| panic!("{what}: a selector"));
        assert!(!wanted.is_empty(), "{what}: an empty selector selects all");
        for (k, v) in wanted {
            assert_eq!(&labels[text(k, "label")], v, "{what}: {k:?}");
        }
    };
    selects(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels,
        "Deployment",
    );
    let service = manifest("service.yaml", "Service");
    selects(&service["spec"]["selector"], pod_labels, "Service");
    let pdb = manifest("poddisruptionbudget.yaml", "PodDisruptionBudget");
    selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels, "PDB");
    for spread in list(
        &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"],
        "topologySpreadConstraints",
    ) {
        selects(
            &spread["labelSelector"]["matchLabels"],
            pod_labels,
            "topology spread",
        );
    }
    let monitor = manifest("servicemonitor.yaml", "ServiceMonitor");
    selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"],
        "ServiceMonitor",
    );
}

/// `GET path` on a local port: the status code and the whole response.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connecting to the admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reading the response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: not HTTP: {response}"));
    (status, response)
}

/// The probe and scrape paths of the manifests, asked of the real admin
/// server built from the ConfigMap's config: they exist and answer as the
/// manifests' comments say (alive while starting, ready only with
/// partitions, not alive once the loop has stopped).
#[test]
fn probes_and_scrapes_answer_on_the_admin_server() {
    let container = container(&deployment());
    let path_of = |probe: &str| text(&container[probe]["httpGet"]["path"], probe).to_string();
    let (startup, liveness, readiness) = (
        path_of("startupProbe"),
        path_of("livenessProbe"),
        path_of("readinessProbe"),
    );
    let monitor = manifest("servicemonitor.yaml", "ServiceMonitor");
    let scrape = text(
        &monitor["spec"]["endpoints"][0]["path"],
        "ServiceMonitor path",
    );

    let mut config = pod_config();
    config.model.dir = repo("").join(&config.model.dir);
    config.store.snapshot = config.store.snapshot.map(|s| repo("").join(s));
    let parts = driftline::app::build(&config).expect("model and snapshot of the ConfigMap");
    let shared = Arc::new(driftline::status::Shared::default());
    let state = driftline::admin::AdminState {
        shared: shared.clone(),
        metrics: driftline::telemetry::metrics::install().expect("the metrics recorder"),
        parts,
        token: config.admin.token.as_deref().map(Into::into),
        lifecycle: Arc::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (addr, server) = runtime
        .block_on(driftline::admin::bind(
            "127.0.0.1:0",
            state,
            std::future::pending(),
        ))
        .expect("binding the admin port");
    runtime.spawn(server);

    // Starting: the snapshot is loaded, the loop not yet running.
    assert_eq!(http_get(addr, &startup).0, 200, "startup {startup}");
    assert_eq!(http_get(addr, &liveness).0, 200, "liveness {liveness}");
    let (status, body) = http_get(addr, &readiness);
    assert_eq!(status, 503, "not ready before the loop runs: {body}");

    shared.model_loaded.store(true, Ordering::Release);
    shared.store_ready.store(true, Ordering::Release);
    shared.running.store(true, Ordering::Release);
    let (status, body) = http_get(addr, &readiness);
    assert!(
        status == 503 && body.contains("no partitions assigned"),
        "without partitions a pod is not ready: {body}"
    );
    shared.assigned.store(2, Ordering::Release);
    assert_eq!(http_get(addr, &readiness).0, 200, "ready with partitions");
    assert_eq!(http_get(addr, &liveness).0, 200, "alive while running");

    let (status, body) = http_get(addr, scrape);
    assert_eq!(status, 200, "{scrape}: {body}");
    assert!(
        body.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{body}"
    );

    // The loop stopped for good: liveness fails.
    shared.running.store(false, Ordering::Release);
    assert_eq!(http_get(addr, &liveness).0, 503, "dead once stopped");
}

/// The grace period covers driftline's shutdown: two flushes of up to
/// `kafka.flush_timeout` (predictions, then the last drift outputs) and a
/// commit.
#[test]
fn the_grace_period_covers_the_drain() {
    let config = pod_config();
    let flush_s = config
        .kafka
        .flush_timeout()
        .expect("the ConfigMap's kafka.flush_timeout")
        .as_secs() as i64;
    let grace = number(
        &deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    assert!(
        grace >= 2 * flush_s + 10,
        "grace {grace} s < 2 × flush_timeout {flush_s} s + 10 s"
    );
}

/// `--partitions N` of `topic` in the compose file's topic creation.
fn compose_partitions(topic: &str) -> i64 {
    let compose = read("docker/docker-compose.yml");
    let line = compose
        .lines()
        .find(|l| l.contains(&format!("--topic {topic} ")))
        .unwrap_or_else(|| panic!("the compose file creates {topic}"));
    line.split_whitespace()
        .skip_while(|w| *w != "--partitions")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}: --partitions N"))
}

#[test]
fn keda_scales_the_configured_group_up_to_the_partition_count() {
    let config = pod_config();
    let scaled = manifest("scaledobject.yaml", "ScaledObject");
    let spec = &scaled["spec"];
    let deployment = deployment();
    assert_eq!(
        spec["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert_eq!(text(&spec["scaleTargetRef"]["kind"], "kind"), "Deployment");
    // The HPA owns the count; a `replicas` here would reset it on each apply.
    assert!(deployment["spec"]["replicas"].is_badvalue());

    let triggers = list(&spec["triggers"], "triggers");
    assert_eq!(triggers.len(), 1);
    assert_eq!(text(&triggers[0]["type"], "trigger type"), "kafka");
    let meta = &triggers[0]["metadata"];
    let field = |k: &str| text(&meta[k], k).to_string();
    assert_eq!(field("bootstrapServers"), config.kafka.brokers);
    assert_eq!(field("consumerGroup"), config.kafka.group_id);
    assert_eq!(field("topic"), config.kafka.topics.features);
    let threshold: i64 = field("lagThreshold").parse().expect("an integer lag");
    assert!(threshold > 0);
    assert_ne!(field("allowIdleConsumers"), "true", "no idle replicas");
    // Lag of a group without commits counts from where driftline starts it.
    let policy = field("offsetResetPolicy");
    let group = driftline::consumer::config::group_config(&config);
    assert_eq!(
        group.get("auto.offset.reset"),
        Some(policy.as_str()),
        "KEDA's offsetResetPolicy is the scoring consumer's auto.offset.reset"
    );

    let partitions = compose_partitions(&config.kafka.topics.features);
    let max = number(&spec["maxReplicaCount"], "maxReplicaCount");
    let min = number(&spec["minReplicaCount"], "minReplicaCount");
    assert_eq!(max, partitions, "one replica per partition at most");
    assert!((2..=max).contains(&min), "min {min}, max {max}");
    // With surge pods a rollout at the partition count would stall.
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(number(&rolling["maxSurge"], "maxSurge"), 0);
}

/// The `driftline_*` names of the telemetry module's `pub const`s.
fn exported_metrics() -> BTreeSet<String> {
    let source = read("src/telemetry/metrics.rs");
    let constants = source.lines().filter(|l| l.starts_with("pub const "));
    constants
        .filter_map(|l| l.split('"').nth(1))
        .filter(|name| name.starts_with("driftline_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_prometheus_rule_is_the_alert_file_over_exported_metrics() {
    let rule = manifest("prometheusrule.yaml", "PrometheusRule");
    let alerts = YamlLoader::load_from_str(&read("docker/prometheus/alerts.yml"))
        .expect("alerts.yml is YAML");
    let groups = &rule["spec"]["groups"];
    assert_eq!(*groups, alerts[0]["groups"], "the groups of alerts.yml");

    let exported = exported_metrics();
    assert!(exported.len() >= 15, "{exported:?}");
    let service = manifest("service.yaml", "Service");
    let job = format!("job=\"{}\"", text(&service["metadata"]["name"], "name"));
    let mut used = 0;
    for group in list(groups, "groups") {
        for r in list(&group["rules"], "rules") {
            let expr = text(&r["expr"], "expr");
            if expr.contains("job=") {
                assert!(expr.contains(&job), "{expr}: the job is the Service's name");
            }
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|t| t.starts_with("driftline_"))
            {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(exported.contains(base), "{expr}: {name} is not exported");
                used += 1;
            }
        }
    }
    assert!(used >= 5, "the rules use driftline's metrics");
}

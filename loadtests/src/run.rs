//! `loadtest run`: the whole command.
//!
//! One Tansu broker for the whole command; for each scenario, the
//! pass-through and then driftline, each on fresh topics (prefixed
//! `lt<N>-`), its own consumer group, and the same schedule. Results are
//! written after every scenario, so a failure later keeps what was measured.
//!
//! Guarantees: every child process (broker, system) is owned by a
//! [`Guard`](crate::procs::Guard) and dies on any error path; a run fails
//! (rather than reporting numbers) when the system or the broker dies, does
//! not get ready in time, or Ctrl-C is pressed.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::broker::{self, Broker};
use crate::measure::{self, Setup, Topics};
use crate::procs::{self, free_port, http_status, tail, Guard};
use crate::report::{self, Machine, ProcessFacts, Report, ScenarioResult, SystemResult};
use crate::scenario::{self, Found, Mode, Plan};
use crate::snapshot;

/// How long a system may take to become ready (a million-row snapshot
/// loads in seconds; joining a group takes a few more).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a system may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The command line of `loadtest run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenarios: Vec<String>,
    pub out: Option<PathBuf>,
    /// The repository (scripts, models, data, target/release).
    pub root: PathBuf,
    /// A Tansu binary instead of `scripts/install-tansu.sh`'s.
    pub tansu: Option<PathBuf>,
    /// The command as typed, for the report.
    pub command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Passthrough,
    Driftline,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Passthrough => "pass-through",
            System::Driftline => "driftline",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            System::Passthrough => "passthrough",
            System::Driftline => "driftline",
        }
    }
}

struct Binaries {
    driftline: PathBuf,
    passthrough: PathBuf,
}

fn binaries(root: &Path) -> anyhow::Result<Binaries> {
    let release = root.join("target/release");
    let found = Binaries {
        driftline: release.join("driftline"),
        passthrough: release.join("passthrough"),
    };
    for b in [&found.driftline, &found.passthrough] {
        if !b.is_file() {
            bail!(
                "{} not found: build with loadtests/run.sh (cargo build --release --bin driftline -p driftline && cargo build --release -p driftline-loadtest)",
                b.display()
            );
        }
    }
    Ok(found)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs every scenario; returns the output directory.
pub fn run(options: &RunOptions, interrupted: &AtomicBool) -> anyhow::Result<PathBuf> {
    let root = options
        .root
        .canonicalize()
        .with_context(|| format!("repository root {}", options.root.display()))?;
    // Relative paths in the scenarios' driftline.toml are resolved from the
    // working directory by driftline: run everything from the root.
    std::env::set_current_dir(&root)?;
    let bins = binaries(&root)?;
    let scenarios_dir = root.join("loadtests/scenarios");
    let found: Vec<Found> = options
        .scenarios
        .iter()
        .map(|s| scenario::find(s, &scenarios_dir))
        .collect::<anyhow::Result<_>>()?;
    let started = now_secs();
    let out = options.out.clone().unwrap_or_else(|| {
        root.join("loadtests/results")
            .join(report::utc(started).replace([':', '-'], ""))
    });
    let logs = out.join("logs");
    for dir in [&logs, &out.join("timelines")] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let tansu = match &options.tansu {
        Some(t) => t.clone(),
        None => broker::install(&root)?,
    };
    let mut broker = Broker::start(&tansu, &logs.join("tansu.log"))?;
    eprintln!(
        "broker: Tansu at {} (pid {}), log {}",
        broker.bootstrap(),
        broker.pid(),
        broker.log().display()
    );

    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut histograms: Vec<(String, String, Histogram<u64>)> = Vec::new();
    let mut driftline_saturation: Option<f64> = None;
    let mut run_no = 0usize;
    for sc in &found {
        let s = &sc.scenario;
        if let Some(snap) = &s.snapshot {
            let t = Instant::now();
            let rows =
                snapshot::write_csv(&snap.path, s.seed, s.cards, driftline::event::now_ms())?;
            eprintln!(
                "{}: wrote a snapshot of {} cards to {} in {:.1} s",
                sc.name,
                report::thousands(rows),
                snap.path.display(),
                t.elapsed().as_secs_f64()
            );
        }
        let plan = s.plan(driftline_saturation);
        if s.mode == Mode::Saturation {
            let rates = s.saturation_rates();
            eprintln!(
                "\n== {} (saturation, {} partitions, {} cards; up to {} steps: {}) ==",
                sc.name,
                s.partitions,
                report::thousands(s.cards as u64),
                rates.len(),
                plan.rate_source
            );
        } else {
            eprintln!(
                "\n== {} ({}, {} partitions, {} cards, {:.0} s schedule, rate {:.0}/s: {}) ==",
                sc.name,
                s.mode.name(),
                s.partitions,
                report::thousands(s.cards as u64),
                plan.schedule.secs(),
                plan.rate,
                plan.rate_source
            );
        }
        let mut pair = Vec::with_capacity(2);
        for system in [System::Passthrough, System::Driftline] {
            let base = RunContext {
                no: 0,
                tag: sc.name.clone(),
                scenario: sc,
                plan: &plan,
                system,
                bins: &bins,
                logs: &logs,
            };
            let (result, hist) = run_system(&base, &mut run_no, &mut broker, interrupted)
                .with_context(|| format!("scenario {}, {}", sc.name, system.name()))?;
            print_summary(&result);
            histograms.push((sc.name.clone(), system.file_name().to_string(), hist));
            pair.push(result);
        }
        let (Some(dl), Some(pt)) = (pair.pop(), pair.pop()) else {
            bail!("internal: a scenario without two results");
        };
        if s.mode == Mode::Saturation {
            driftline_saturation = dl.saturation.as_ref().and_then(|r| r.throughput);
        }
        let comparison = report::compare(&pt, &dl);
        results.push(ScenarioResult {
            name: sc.name.clone(),
            description: s.description.clone(),
            mode: s.mode.name().into(),
            partitions: s.partitions,
            cards: s.cards,
            rate: plan.rate,
            rate_source: plan.rate_source.clone(),
            passthrough: pt,
            driftline: dl,
            comparison,
        });
        let report = Report {
            started_utc: report::utc(started),
            finished_utc: report::utc(now_secs()),
            machine: machine(),
            broker: "Tansu 0.6.0 (memory storage), one broker on loopback".into(),
            goals: report::goals(&results),
            scenarios: results.clone(),
        };
        report::write_all(&out, &report, &options.command, &histograms)?;
    }
    Ok(out)
}

struct RunContext<'a> {
    /// Run number: names the topics and the group.
    no: usize,
    /// Scenario name, with the step in saturation mode: names logs and timelines.
    tag: String,
    scenario: &'a Found,
    plan: &'a Plan,
    system: System,
    bins: &'a Binaries,
    logs: &'a Path,
}

/// One system on one scenario. Saturation runs each step as its own run
/// (fresh topics, fresh process): Tansu's memory storage slows down as a
/// partition accumulates batches (every fetch lists them all), so one long
/// ramp would confuse a higher rate with an older topic.
fn run_system(
    base: &RunContext<'_>,
    run_no: &mut usize,
    broker: &mut Broker,
    interrupted: &AtomicBool,
) -> anyhow::Result<(SystemResult, Histogram<u64>)> {
    let s = &base.scenario.scenario;
    if s.mode != Mode::Saturation {
        *run_no += 1;
        let ctx = RunContext {
            no: *run_no,
            tag: base.tag.clone(),
            ..*base
        };
        return run_one(&ctx, broker, interrupted);
    }
    let ramp = s.saturation_rates();
    let mut runs = Vec::new();
    let mut tried: Vec<(f64, bool)> = Vec::new();
    while let Some(rate) = crate::saturation::next_rate(&ramp, &tried, s.refine_steps()) {
        let i = tried.len();
        *run_no += 1;
        let plan = s.step_plan(i, rate);
        let ctx = RunContext {
            no: *run_no,
            tag: format!("{}-step{:02}", base.scenario.name, i + 1),
            plan: &plan,
            ..*base
        };
        let (result, hist) = run_one(&ctx, broker, interrupted)
            .with_context(|| format!("step {} ({rate:.0}/s)", i + 1))?;
        let kept_up = result
            .saturation
            .as_ref()
            .and_then(|s| s.steps.first())
            .is_some_and(|st| st.kept_up);
        runs.push((result, hist));
        tried.push((rate, kept_up));
    }
    report::combine_steps(base.system.name(), runs).ok_or_else(|| anyhow!("no saturation step ran"))
}

/// One run: topics, process, measurement, stop, clean-up.
fn run_one(
    ctx: &RunContext<'_>,
    broker: &mut Broker,
    interrupted: &AtomicBool,
) -> anyhow::Result<(SystemResult, Histogram<u64>)> {
    let s = &ctx.scenario.scenario;
    let prefix = format!("lt{}-", ctx.no);
    let topics = Topics {
        features: format!("{prefix}features"),
        predictions: format!("{prefix}predictions"),
        dlq: format!("{prefix}features-dlq"),
        warmup: format!("{prefix}warmup"),
    };
    let updates = format!("{prefix}feature-updates");
    let group = format!("{prefix}{}", ctx.system.file_name());
    broker.create_topics(&[
        (topics.features.clone(), s.partitions),
        (topics.predictions.clone(), s.partitions),
        (topics.dlq.clone(), 1),
        (updates.clone(), 1),
        (topics.warmup.clone(), 1),
    ])?;
    let log = ctx
        .logs
        .join(format!("{}-{}.log", ctx.tag, ctx.system.file_name()));
    eprintln!(
        "-- {}: starting (group {group}, topics {prefix}*, log {})",
        ctx.system.name(),
        log.display()
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let env = driftline_env(broker, &topics, &updates, &group, admin);
    let props = Properties::of(&ctx.scenario.driftline_config(), &env)?;
    let started = Instant::now();
    let mut process = match ctx.system {
        System::Passthrough => start_passthrough(ctx, broker, &topics, &group, &props, &log)?,
        System::Driftline => start_driftline(ctx, broker, &env, admin, &log, interrupted)?,
    };
    let ready_s = started.elapsed().as_secs_f64();

    let setup = Setup {
        bootstrap: broker.bootstrap(),
        consumer_properties: props.consumer.clone(),
        client_properties: props.client.clone(),
        topics: topics.clone(),
        partitions: s.partitions,
        dlq_partitions: 1,
        plan: ctx.plan,
        cards: s.cards,
        seed: s.seed,
        linger_ms: s.producer_linger_ms,
        drain: Duration::from_secs_f64(s.drain_s),
        rules: (s.mode == Mode::Saturation)
            .then(|| s.saturation.as_ref().map(|x| x.rules()).unwrap_or_default()),
        system_pid: process.pid(),
        broker_pid: broker.pid(),
    };
    let progress = ProgressBar::new(0).with_prefix(format!(
        "{:<30}",
        format!("{} {}", ctx.tag, ctx.system.file_name())
    ));
    progress.set_style(
        ProgressStyle::with_template("{prefix} {elapsed_precise} [{bar:24}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let measured = {
        let mut watch = || -> anyhow::Result<()> {
            if let Some(status) = process.exited() {
                bail!(
                    "{} exited during the run ({status})\n--- log ---\n{}",
                    ctx.system.name(),
                    tail(&log, 30)
                );
            }
            broker.check_alive()
        };
        measure::run(&setup, &progress, interrupted, &mut watch)
    };
    progress.finish_and_clear();
    let m = measured?;

    let peak_rss_kb = procs::status_kb(process.pid(), "VmHWM");
    let (status, killed) = process.terminate(STOP_TIMEOUT)?;
    let exit = if killed {
        format!("killed after {} s", STOP_TIMEOUT.as_secs())
    } else {
        match status.code() {
            Some(0) => "0 (clean)".to_string(),
            Some(c) => format!("{c} (see log)"),
            None => "by a signal".to_string(),
        }
    };
    let mut old = vec![
        topics.features,
        topics.predictions,
        topics.dlq,
        topics.warmup,
        updates,
    ];
    if ctx.system == System::Driftline {
        old.push(format!("{group}-aggregates-changelog"));
    }
    // Memory storage keeps every record: give it back before the next run.
    if let Err(e) = broker.delete_topics(&old) {
        eprintln!("warning: {e:#}");
    }
    let facts = ProcessFacts {
        ready_s,
        exit,
        peak_rss_kb,
    };
    let timeline = ctx.logs.parent().unwrap_or(ctx.logs).join(format!(
        "timelines/{}-{}.csv",
        ctx.tag,
        ctx.system.file_name()
    ));
    std::fs::write(&timeline, report::timeline_csv(&m.samples))
        .with_context(|| format!("writing {}", timeline.display()))?;
    Ok(report::summarize(ctx.system.name(), ctx.plan, &m, &facts))
}

fn log_files(log: &Path) -> anyhow::Result<(std::fs::File, std::fs::File)> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    Ok((out, err))
}

/// The environment driftline gets (and its config is read with).
fn driftline_env(
    broker: &Broker,
    topics: &Topics,
    updates: &str,
    group: &str,
    admin: SocketAddr,
) -> Vec<(String, String)> {
    [
        ("DRIFTLINE_KAFKA__BROKERS", broker.bootstrap()),
        ("DRIFTLINE_KAFKA__GROUP_ID", group.to_string()),
        ("DRIFTLINE_ADMIN__LISTEN", admin.to_string()),
        ("DRIFTLINE_KAFKA__TOPICS__FEATURES", topics.features.clone()),
        (
            "DRIFTLINE_KAFKA__TOPICS__PREDICTIONS",
            topics.predictions.clone(),
        ),
        ("DRIFTLINE_KAFKA__TOPICS__DLQ", topics.dlq.clone()),
        (
            "DRIFTLINE_KAFKA__TOPICS__FEATURE_UPDATES",
            updates.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// librdkafka properties of a scenario's driftline config, merged the way
/// driftline merges them, so the pass-through and the reader run with the
/// same client settings as driftline.
struct Properties {
    client: Vec<(String, String)>,
    /// `[kafka.client]` then `[kafka.consumer]`.
    consumer: Vec<(String, String)>,
    /// `[kafka.client]` then `[kafka.producer]`.
    producer: Vec<(String, String)>,
}

impl Properties {
    fn of(config: &Path, env: &[(String, String)]) -> anyhow::Result<Properties> {
        // driftline's own loader: the same file, the same environment
        // overrides (ours win), the same validation.
        let vars = std::env::vars().chain(env.iter().cloned());
        let c = driftline::config::Config::load_with_env(config, vars)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("reading {}", config.display()))?;
        let list =
            |maps: &[&std::collections::BTreeMap<String, driftline::config::PropertyValue>]| {
                let mut merged = std::collections::BTreeMap::new();
                for m in maps {
                    for (k, v) in m.iter() {
                        merged.insert(driftline::config::librdkafka_property(k), v.to_string());
                    }
                }
                merged.into_iter().collect::<Vec<_>>()
            };
        let k = &c.kafka;
        Ok(Properties {
            client: list(&[&k.client]),
            consumer: list(&[&k.client, &k.consumer]),
            producer: list(&[&k.client, &k.producer]),
        })
    }
}

fn start_passthrough(
    ctx: &RunContext<'_>,
    broker: &mut Broker,
    topics: &Topics,
    group: &str,
    props: &Properties,
    log: &Path,
) -> anyhow::Result<Guard> {
    let (_, err) = log_files(log)?;
    let mut command = Command::new(&ctx.bins.passthrough);
    command
        .args(["--brokers", &broker.bootstrap()])
        .args(["--group-id", group])
        .args(["--input", &topics.features])
        .args(["--output", &topics.predictions]);
    for (k, v) in &props.consumer {
        command.arg("--consumer-property").arg(format!("{k}={v}"));
    }
    for (k, v) in &props.producer {
        command.arg("--producer-property").arg(format!("{k}={v}"));
    }
    let mut guard = Guard::spawn(
        "passthrough",
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err),
    )?;
    let stdout = guard
        .child_mut()
        .and_then(|c| c.stdout.take())
        .ok_or_else(|| anyhow!("no stdout from passthrough"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads stdout to the end (so the pipe never fills) and reports "ready".
    std::thread::Builder::new()
        .name("passthrough-stdout".into())
        .spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                match line {
                    Ok(l) if l.trim() == "ready" => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            return Ok(guard);
        }
        if let Some(status) = guard.exited() {
            bail!(
                "passthrough exited before it was ready ({status})\n--- log ---\n{}",
                tail(log, 30)
            );
        }
        broker.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "passthrough not ready after {READY_TIMEOUT:?}\n--- log ---\n{}",
                tail(log, 30)
            );
        }
    }
}

fn start_driftline(
    ctx: &RunContext<'_>,
    broker: &mut Broker,
    env: &[(String, String)],
    admin: SocketAddr,
    log: &Path,
    interrupted: &AtomicBool,
) -> anyhow::Result<Guard> {
    let (out, err) = log_files(log)?;
    let mut guard = Guard::spawn(
        "driftline",
        Command::new(&ctx.bins.driftline)
            .arg("serve")
            .arg("--config")
            .arg(ctx.scenario.driftline_config())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    )?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if let Some(status) = guard.exited() {
            bail!(
                "driftline exited before it was ready ({status})\n--- log ---\n{}",
                tail(log, 30)
            );
        }
        broker.check_alive()?;
        if http_status(admin, "/readyz", Duration::from_secs(1)).is_ok_and(|c| c == 200) {
            return Ok(guard);
        }
        if Instant::now() > deadline {
            bail!(
                "driftline not ready after {READY_TIMEOUT:?}\n--- log ---\n{}",
                tail(log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_summary(r: &SystemResult) {
    let l = r.latency.as_ref();
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    eprintln!(
        "   {}: in {}/s out {}/s | p50 {} p99 {} p99.9 {} max {} ms | sent {} lost {} dup {} dlq {}{}",
        r.system,
        r.rate_in.map_or("-".into(), |v| format!("{v:.0}")),
        r.rate_out.map_or("-".into(), |v| format!("{v:.0}")),
        f(l.map(|l| l.p50_ms)),
        f(l.map(|l| l.p99_ms)),
        f(l.map(|l| l.p999_ms)),
        f(l.map(|l| l.max_ms)),
        r.sent,
        r.lost,
        r.duplicates,
        r.dlq,
        r.saturation
            .as_ref()
            .map(|s| format!(
                " | saturation {}{}",
                s.throughput.map_or("-".into(), |t| format!("{t:.0}/s")),
                match s.limit {
                    report::Limit::System => "",
                    report::Limit::Input => " (a lower bound: the input side could not go faster)",
                    report::Limit::NotReached => " (a lower bound: no step fell behind)",
                }
            ))
            .unwrap_or_default()
    );
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        memory_gb,
    }
}

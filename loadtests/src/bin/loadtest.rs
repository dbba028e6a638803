//! `loadtest`: runs load scenarios against driftline and the pass-through
//! baseline on one Tansu broker and writes the report. See loadtests/README.md.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use loadtest::run::{run, RunOptions};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load tests of driftline against a pass-through baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Starts a Tansu broker and runs each scenario on the pass-through,
    /// then on driftline; writes report.md, report.json, *.hgrm and latency.svg.
    Run {
        /// Scenario folders or names under loadtests/scenarios (in order;
        /// put `saturation` first so that later scenarios can use its result).
        #[arg(long = "scenario", num_args = 1.., required = true)]
        scenarios: Vec<String>,
        /// Output folder (default: loadtests/results/<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Repository root (scripts/, models/, data/, target/release/).
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Tansu binary (default: the one scripts/install-tansu.sh installs).
        #[arg(long, env = "DRIFTLINE_TANSU")]
        tansu: Option<PathBuf>,
    },
    /// Produces fraud events to a topic of any broker at a fixed open-loop
    /// rate (the load test's generator alone; nothing is read back).
    Generate {
        /// Bootstrap servers.
        #[arg(long, default_value = "localhost:9092")]
        brokers: String,
        /// Topic to produce to.
        #[arg(long, default_value = "features")]
        topic: String,
        /// Events per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds to run; 0 runs until SIGINT/SIGTERM.
        #[arg(long, default_value_t = 0.0)]
        duration: f64,
        /// Cards (entities) the events are drawn from.
        #[arg(long, default_value_t = 2000)]
        cards: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The producer's `linger.ms`.
        #[arg(long, default_value_t = 5)]
        linger_ms: u32,
        /// librdkafka property of the producer, `key=value` (repeatable).
        #[arg(long = "producer-property", value_parser = property)]
        properties: Vec<(String, String)>,
        /// Seconds between progress lines.
        #[arg(long, default_value_t = 10.0)]
        report_every: f64,
    },
    /// Sums `perf script -F comm,tid,ip,sym` output per thread and per
    /// scoring stage; writes the Markdown table to stdout and, with
    /// `--folded`, the folded stacks for a flame-graph tool.
    Stacks {
        /// The `perf script` output.
        #[arg(long)]
        script: PathBuf,
        /// Sampling frequency given to `perf record -F`.
        #[arg(long)]
        hz: f64,
        /// Seconds perf recorded.
        #[arg(long)]
        secs: f64,
        /// The load while it recorded (events/s), for µs per event.
        #[arg(long)]
        events_per_s: Option<f64>,
        /// Where to write the folded stacks.
        #[arg(long)]
        folded: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let interrupted = Arc::new(AtomicBool::new(false));
    if let Err(e) = watch_signals(interrupted.clone()) {
        eprintln!("warning: {e:#}; Ctrl-C will not clean up the broker");
    }
    let result = match cli.command {
        Cmd::Run {
            scenarios,
            out,
            root,
            tansu,
        } => {
            let options = RunOptions {
                scenarios,
                out,
                root,
                tansu: tansu.filter(|t| !t.as_os_str().is_empty()),
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            run(&options, &interrupted)
        }
        Cmd::Generate {
            brokers,
            topic,
            rate,
            duration,
            cards,
            seed,
            linger_ms,
            properties,
            report_every,
        } => {
            let options = loadtest::measure::GenerateOptions {
                brokers,
                topic,
                rate,
                duration_s: duration,
                cards,
                seed,
                linger_ms,
                properties,
            };
            let every = std::time::Duration::from_secs_f64(report_every.max(0.1));
            match loadtest::measure::generate(&options, &interrupted, every) {
                Ok(g) => println!(
                    "sent {} events to {} in {:.1} s ({:.0}/s), {} refused by the broker",
                    g.sent,
                    options.topic,
                    g.secs,
                    g.sent as f64 / g.secs.max(1e-9),
                    g.failed
                ),
                Err(e) => {
                    eprintln!("loadtest: {e:#}");
                    std::process::exit(1);
                }
            }
            return;
        }
        Cmd::Stacks {
            script,
            hz,
            secs,
            events_per_s,
            folded,
        } => {
            if let Err(e) = stacks(&script, hz, secs, events_per_s, folded.as_deref()) {
                eprintln!("loadtest: {e:#}");
                std::process::exit(1);
            }
            return;
        }
    };
    let result = result.map(|out| println!("report: {}", out.join("report.md").display()));
    match result {
        Ok(()) => {}
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Ctrl-C or SIGTERM sets `interrupted`: the run stops at the next sample
/// and its processes are stopped by their guards (a default signal death
/// would leave the broker running).
fn watch_signals(interrupted: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                loop {
                    let which = driftline::shutdown::signal().await;
                    eprintln!("\nloadtest: {which}, stopping");
                    interrupted.store(true, Ordering::Relaxed);
                }
            });
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn stacks(
    script: &std::path::Path,
    hz: f64,
    secs: f64,
    events_per_s: Option<f64>,
    folded: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use loadtest::stacks;
    let text =
        std::fs::read_to_string(script).with_context(|| format!("reading {}", script.display()))?;
    let summary = stacks::summarize(&stacks::parse_perf_script(&text));
    if summary.samples == 0 {
        anyhow::bail!("{}: no samples", script.display());
    }
    print!("{}", stacks::markdown(&summary, hz, secs, events_per_s));
    if let Some(path) = folded {
        std::fs::write(path, stacks::folded(&summary))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compose file's `loadgen` command is one this binary accepts
    /// (no Docker engine runs here to try it), and it targets the compose
    /// file's Kafka and the topic driftline reads.
    #[test]
    fn the_compose_load_generator_command_parses() {
        let compose = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docker/docker-compose.yml"
        ))
        .unwrap();
        let service = compose
            .split("\n  loadgen:\n")
            .nth(1)
            .expect("a loadgen service in docker/docker-compose.yml");
        let line = service
            .lines()
            .find_map(|l| l.trim().strip_prefix("command:"))
            .expect("loadgen has a command");
        let args: Vec<String> =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{line}: {e}"));
        let cli = Cli::try_parse_from(std::iter::once("loadtest".to_string()).chain(args))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let Cmd::Generate { brokers, topic, .. } = cli.command else {
            panic!("loadgen does not run `generate`: {line}");
        };
        assert_eq!(brokers, "kafka:9092");
        assert_eq!(topic, "features");
        assert!(
            service.contains("profiles: [\"load\"]"),
            "loadgen is profile-gated"
        );
    }
}

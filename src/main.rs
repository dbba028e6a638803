//! The `driftline` binary: parses the command line, loads configuration, sets
//! up logging, and hands over to the library.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use driftline::app;
use driftline::config::{Config, LogFormat};
use driftline::demo::run::{DemoOptions, DEFAULT_MODEL_DIR};
use driftline::event::now_ms;
use driftline::pipeline::{BatchOutput, Message, Pipeline};

#[derive(Parser)]
#[command(
    name = "driftline",
    version,
    about = "Streaming inference and drift monitoring"
)]
struct Cli {
    /// Log format (overrides the config file's `log.format`).
    #[arg(long, global = true, value_enum, env = "DRIFTLINE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in-process on synthetic card-fraud events and print a live summary.
    Demo(DemoArgs),
    /// Check config, model and snapshot; report every problem at once.
    Validate {
        #[arg(
            long,
            default_value = "config/driftline.toml",
            env = "DRIFTLINE_CONFIG"
        )]
        config: PathBuf,
    },
    /// Score JSON events (one per line) from a file or stdin; print predictions as JSON lines.
    Score {
        #[arg(
            long,
            default_value = "config/driftline.toml",
            env = "DRIFTLINE_CONFIG"
        )]
        config: PathBuf,
        /// Input file of JSON events, one per line; `-` reads stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
    },
}

#[derive(clap::Args)]
struct DemoArgs {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Target events per second (0 = as fast as the pipeline goes).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Model directory; by default the fraud MLP built into the binary.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Number of synthetic cards (entities).
    #[arg(long, default_value_t = 10_000)]
    cards: usize,
    /// Events per scoring batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Random seed for the generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => {
            driftline::telemetry::init(cli.log_format.unwrap_or_default(), "info");
            let options = DemoOptions {
                duration: std::time::Duration::from_secs(args.duration),
                rate: args.rate,
                model_dir: args.model,
                cards: args.cards,
                batch_size: args.batch_size,
                seed: args.seed,
            };
            driftline::demo::run::run(options).map(|_| ExitCode::SUCCESS)
        }
        Command::Validate { config } => validate(&config, cli.log_format),
        Command::Score { config, input } => score(&config, &input, cli.log_format),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(path: &std::path::Path, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    driftline::telemetry::init(log_format.unwrap_or_default(), "warn");
    let problems = app::check(path);
    if problems.is_empty() {
        println!("{}: ok (config, model, snapshot)", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{}: {} problem(s):", path.display(), problems.len());
        for p in &problems {
            eprintln!("  - {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn score(
    path: &std::path::Path,
    input: &std::path::Path,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    driftline::telemetry::init(log_format.unwrap_or(config.log.format), &config.log.level);
    let parts = app::build(&config)?;
    let mut pipeline = Pipeline::new(
        &parts.model,
        parts.store.clone(),
        parts.aggregator.clone(),
        config.pipeline.max_message_bytes,
    )?;
    let reader: Box<dyn BufRead> = if input == std::path::Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(input).with_context(|| format!("{}", input.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut lines: Vec<String> = Vec::with_capacity(config.pipeline.batch_size);
    let mut batch = BatchOutput::default();
    let mut line_no = 0usize;
    let mut rejected = 0usize;
    let mut flush = |lines: &mut Vec<String>, first_line: usize, out: &mut dyn Write| {
        let messages: Vec<Message<'_>> = lines
            .iter()
            .map(|l| Message {
                payload: l.as_bytes(),
                timestamp_ms: None,
            })
            .collect();
        pipeline.process(&messages, now_ms(), &mut batch);
        let model = Arc::clone(pipeline.model());
        let mut results: Vec<(usize, String)> = Vec::with_capacity(lines.len());
        for s in &batch.scored {
            let value = serde_json::json!({
                "event_id": s.event.event_id.as_str(),
                "entity_id": s.event.entity_id.as_str(),
                "ts": s.ts_ms,
                "model": model.name(),
                "model_version": model.version(),
                "variant": "primary",
                "score": s.score,
            });
            results.push((s.index, value.to_string()));
        }
        for r in &batch.rejected {
            let value = serde_json::json!({
                "line": first_line + r.index,
                "error": r.rejection.reason.code(),
                "detail": r.rejection.detail,
            });
            rejected += 1;
            results.push((r.index, value.to_string()));
        }
        results.sort_by_key(|(i, _)| *i);
        for (_, line) in results {
            writeln!(out, "{line}")?;
        }
        lines.clear();
        anyhow::Ok(())
    };
    let mut first_line = 1;
    for line in reader.lines() {
        let line = line.with_context(|| format!("{}: line {}", input.display(), line_no + 1))?;
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        if lines.is_empty() {
            first_line = line_no;
        }
        lines.push(line);
        if lines.len() >= config.pipeline.batch_size {
            flush(&mut lines, first_line, &mut out)?;
        }
    }
    if !lines.is_empty() {
        flush(&mut lines, first_line, &mut out)?;
    }
    out.flush()?;
    drop(flush);
    if rejected > 0 {
        eprintln!("{rejected} event(s) rejected (see the `error` lines)");
    }
    let _ = DEFAULT_MODEL_DIR;
    Ok(ExitCode::SUCCESS)
}

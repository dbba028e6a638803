//! The `driftline` binary: parses the command line, loads configuration, sets
//! up logging, and hands over to the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use driftline::app;
use driftline::app::profile::{BuiltProfile, Pass, ProfileOptions, Progress};
use driftline::config::{Config, LogFormat};
use driftline::demo::run::DemoOptions;
use driftline::drift::profile::ColumnSketch;
use driftline::pipeline::Pipeline;
use driftline::serve::{self, AdminPort, ServeOptions};

// mimalloc for Rust and (its `override` feature) librdkafka's C allocations:
// under load the scoring loop's CPU per event fell by a quarter against
// glibc's malloc (numbers in Cargo.toml and the README's tuning log).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the service loop on an embedded Kafka cluster with synthetic card-fraud events; print a live summary.
    Demo(DemoArgs),
    /// Run the service: consume `features` from Kafka, score, publish predictions.
    Serve(ConfigArgs),
    /// Check config, model and snapshot; report every problem at once.
    Validate(ConfigArgs),
    /// Score JSON events (one per line) from a file or stdin; print predictions as JSON lines.
    Score {
        #[command(flatten)]
        args: ConfigArgs,
        /// Input file of JSON events, one per line; `-` reads stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
    },
    /// Build a model's reference profile (its inputs' and score's training distribution) from a data file.
    Profile(ProfileArgs),
    /// Judge a data file against a model's reference with the service's drift monitor; write an HTML page and JSON.
    ///
    /// Exit codes: 0 judged (and, with --fail-on drift, no drift); 1 drift with --fail-on drift;
    /// 2 bad usage or input (files, columns, config).
    Report(ReportArgs),
    /// Model lifecycle helpers: signing keys, signing and verifying model versions.
    Model {
        #[command(subcommand)]
        command: driftline::lifecycle::command::ModelCommand,
    },
}

/// The config file and the flags that override it.
#[derive(clap::Args)]
struct ConfigArgs {
    #[arg(
        long,
        default_value = "config/driftline.toml",
        env = "DRIFTLINE_CONFIG"
    )]
    config: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

/// The most used settings as flags; they win over the environment and the file.
#[derive(clap::Args)]
struct Overrides {
    /// Model directory (`model.dir`).
    #[arg(long = "model")]
    model_dir: Option<PathBuf>,
    /// Store snapshot file (`store.snapshot`).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Events per model call (`pipeline.batch_size`).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Kafka bootstrap servers (`kafka.brokers`).
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group (`kafka.group_id`).
    #[arg(long)]
    group_id: Option<String>,
    /// Admin HTTP listen address (`admin.listen`).
    #[arg(long)]
    listen: Option<String>,
}

impl Overrides {
    /// The process environment followed by the flags, as `DRIFTLINE_*` pairs:
    /// later pairs win, so flags beat variables.
    fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = std::env::vars().collect();
        let mut set = |key: &str, value: String| env.push((format!("DRIFTLINE_{key}"), value));
        if let Some(dir) = &self.model_dir {
            set("MODEL__DIR", format!("{:?}", dir.display().to_string()));
        }
        if let Some(snapshot) = &self.snapshot {
            set(
                "STORE__SNAPSHOT",
                format!("{:?}", snapshot.display().to_string()),
            );
        }
        if let Some(n) = self.batch_size {
            set("PIPELINE__BATCH_SIZE", n.to_string());
        }
        // Quoted, so that values like `127.0.0.1:9092` stay strings.
        for (key, value) in [
            ("KAFKA__BROKERS", &self.brokers),
            ("KAFKA__GROUP_ID", &self.group_id),
            ("ADMIN__LISTEN", &self.listen),
        ] {
            if let Some(v) = value {
                set(key, format!("{v:?}"));
            }
        }
        env
    }
}

#[derive(clap::Args)]
struct DemoArgs {
    /// How long to run, in seconds (long enough for drift, a retrain
    /// request, a rollout to promotion and a rolled-back bad version).
    #[arg(long, default_value_t = 40)]
    duration: u64,
    /// Target events per second (0 = as fast as the service keeps up).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Model directory; by default the fraud MLP built into the binary.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Number of cards (entities). 2,000 are the training week's cards (the
    /// reference profile's); any other number draws synthetic cards, whose
    /// amounts differ from the reference by card mix.
    #[arg(long, default_value_t = 2_000)]
    cards: usize,
    /// Events per scoring batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Random seed for the generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Do not inject the distribution shift (by default amounts scale up
    /// and one merchant category surges from 35% to 65% of the run).
    #[arg(long)]
    no_shift: bool,
    /// Admin HTTP address (the live page at `/`, `/metrics`, `/readyz`, `/v1/...`); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: String,
}

#[derive(clap::Args)]
struct ProfileArgs {
    /// Training data: Parquet, Arrow IPC (file or stream) or CSV, by extension; columns named like the model's inputs.
    #[arg(long)]
    data: PathBuf,
    /// Model directory (`models/<name>/<version>`).
    #[arg(long)]
    model: PathBuf,
    /// Where to write the profile (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Histogram bins of numeric columns and the score (edges at the i/bins quantiles).
    #[arg(long, default_value_t = driftline::drift::stats::DEFAULT_BINS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..))]
    bins: usize,
    /// Categories kept per categorical column; the rest share "other".
    #[arg(long, default_value_t = driftline::drift::sketch::DEFAULT_TOP_K,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    top_k: usize,
    /// Rows per record batch: the unit of memory use while reading.
    #[arg(long, default_value_t = app::profile::DEFAULT_BATCH_ROWS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch_rows: usize,
    /// Profile model inputs the file lacks as all-missing instead of failing.
    #[arg(long)]
    allow_missing_columns: bool,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The data to judge: Parquet, Arrow IPC (file or stream) or CSV, by extension; columns named like the model's inputs.
    #[arg(long)]
    data: PathBuf,
    /// Model directory: reads and scores the rows; its manifest's reference unless --reference is given.
    /// Default: the config's `model.dir` when --config is given.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Reference profile (JSON, from `driftline profile`); default: the model's.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Service config whose [drift] section (thresholds, min_samples, disabled statistics,
    /// per-feature settings) judges the data, as `serve` would; its `model.dir`,
    /// `drift.reference` and `store.entity_column` apply unless given as flags.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Judge consecutive windows of this many rows instead of the whole file as one window.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    window: Option<u64>,
    /// Write the report page here: one self-contained HTML file (opens offline).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the report as JSON here (the schema of GET /v1/drift, plus `report`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit with code 1 when the data drifted (a CI gate).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Rows per record batch: the unit of memory use while reading.
    #[arg(long, default_value_t = app::profile::DEFAULT_BATCH_ROWS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch_rows: usize,
}

/// What fails `driftline report`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FailOn {
    /// Any statistic of any judged window past its threshold.
    Drift,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => {
            // The demo prints alerts itself (read back from drift-alerts).
            driftline::telemetry::init(
                cli.log_format.unwrap_or_default(),
                "info,driftline::serve::drift=error",
            );
            let options = DemoOptions {
                duration: std::time::Duration::from_secs(args.duration),
                rate: args.rate,
                model_dir: args.model,
                cards: args.cards,
                batch_size: args.batch_size,
                seed: args.seed,
                listen: args.listen,
                shift: !args.no_shift,
            };
            driftline::demo::run::run(options).map(|_| ExitCode::SUCCESS)
        }
        Command::Serve(a) => serve(&a.config, &a.overrides.environment(), cli.log_format),
        Command::Validate(a) => validate(&a.config, &a.overrides.environment(), cli.log_format),
        Command::Score { args: a, input } => score(
            &a.config,
            &a.overrides.environment(),
            &input,
            cli.log_format,
        ),
        Command::Profile(args) => profile(&args, cli.log_format),
        Command::Report(args) => {
            // Bad usage or input exits 2, as clap's usage errors do: 1 is
            // the CI gate's "drift".
            return report(&args, cli.log_format).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            });
        }
        Command::Model { command } => {
            driftline::telemetry::init(cli.log_format.unwrap_or_default(), "warn");
            driftline::lifecycle::command::run(&command)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(
    path: &std::path::Path,
    env: &[(String, String)],
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    driftline::telemetry::init(log_format.unwrap_or_default(), "warn");
    let problems = app::check(path, env);
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
    env: &[(String, String)],
    input: &std::path::Path,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load_with_env(path, env.iter().cloned())?;
    driftline::telemetry::init(log_format.unwrap_or(config.log.format), &config.log.level);
    let parts = app::build(&config)?;
    let mut pipeline = Pipeline::new(
        &parts.model,
        parts.store,
        parts.aggregator,
        config.pipeline.max_message_bytes,
    )?;
    pipeline.set_input_limits(driftline::pipeline::InputLimits::from_config(
        &config.pipeline,
    )?);
    let reader: Box<dyn BufRead> = if input == std::path::Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(input).with_context(|| input.display().to_string())?;
        Box::new(std::io::BufReader::new(f))
    };
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let summary = app::score_lines(&mut pipeline, reader, out, config.pipeline.batch_size)
        .with_context(|| format!("scoring {}", input.display()))?;
    if summary.rejected > 0 {
        eprintln!(
            "{} event(s) scored, {} rejected (see the `error` lines)",
            summary.scored, summary.rejected
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(
    path: &std::path::Path,
    env: &[(String, String)],
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load_with_env(path, env.iter().cloned())?;
    driftline::telemetry::init(log_format.unwrap_or(config.log.format), &config.log.level);
    let parts = app::build(&config)?;
    let options = ServeOptions {
        stop: Default::default(),
        shared: Default::default(),
        admin: AdminPort::Required,
    };
    serve::start(config, parts, options)?.run_until_signal()?;
    Ok(ExitCode::SUCCESS)
}

fn profile(args: &ProfileArgs, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    driftline::telemetry::init(log_format.unwrap_or_default(), "warn");
    let options = ProfileOptions {
        bins: args.bins,
        top_k: args.top_k,
        batch_rows: args.batch_rows,
        allow_missing_columns: args.allow_missing_columns,
        ..ProfileOptions::default()
    };
    let mut bar = Bar::default();
    let built = app::profile::build_profile(&args.data, &args.model, &options, &mut bar)?;
    bar.finish();
    built.profile.save(&args.out)?;
    print!("{}", profile_summary(&built, &args.out));
    Ok(ExitCode::SUCCESS)
}

fn report(args: &ReportArgs, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    use app::report::{build_report, ReportOptions};
    driftline::telemetry::init(log_format.unwrap_or_default(), "warn");
    let config = match &args.config {
        Some(path) => Some(Config::merge(path, std::env::vars())?),
        None => None,
    };
    let model_dir = args
        .model
        .clone()
        .or_else(|| config.as_ref().map(|c| c.model.dir.clone()))
        .context("--model DIR is needed (or --config with model.dir): the model reads and scores the rows")?;
    let options = ReportOptions {
        model_dir,
        reference: args
            .reference
            .clone()
            .or_else(|| config.as_ref().and_then(|c| c.drift.reference.clone())),
        drift: config.as_ref().map(|c| c.drift.clone()).unwrap_or_default(),
        window: args.window,
        batch_rows: args.batch_rows,
        entity_column: config
            .as_ref()
            .map_or_else(|| "entity_id".to_owned(), |c| c.store.entity_column.clone()),
    };
    if args.out.is_none() && args.json.is_none() && args.fail_on.is_none() {
        anyhow::bail!("nothing to do: give --out FILE.html, --json FILE.json or --fail-on drift");
    }
    let mut bar = Bar::default();
    let report = build_report(&args.data, &options, &mut bar)?;
    bar.finish();
    let json = serde_json::to_string_pretty(&report.view).context("report JSON")?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let Some(path) = &args.out {
        let title = format!("{} against {}", args.data.display(), report.view.reference);
        let page = driftline::admin::ui::report_page(&json, &title);
        std::fs::write(path, page).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let summary = report.view.report.as_ref();
    let drifted = summary.is_some_and(|r| r.drifted);
    print!("{}", report_summary(&report));
    if let (Some(path), true) = (&args.out, std::io::stdout().is_terminal()) {
        println!("open {}", path.display());
    }
    Ok(match (args.fail_on, drifted) {
        (Some(FailOn::Drift), true) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// What `driftline report` prints: the verdict, the rules that were bad,
/// and the speed.
fn report_summary(report: &app::report::Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let view = &report.view;
    let Some(r) = &view.report else {
        return s;
    };
    let verdict = match (r.drifted, r.judged_windows) {
        (true, _) => "DRIFT",
        (false, 0) => "NOT JUDGED (no window reached drift.min_samples)",
        (false, _) => "no drift",
    };
    let _ = writeln!(
        s,
        "{}: {} rows ({} scored) against {}: {verdict}",
        r.data, r.rows, r.scored, view.reference
    );
    let _ = writeln!(s, "  {} windows, {} judged", r.windows, r.judged_windows);
    for rule in &r.rules {
        let _ = writeln!(
            s,
            "  {} {}: bad in {} of {} judged windows",
            rule.column, rule.statistic, rule.windows, r.judged_windows
        );
    }
    for k in &r.skipped {
        let _ = writeln!(
            s,
            "  {} rows not scored: {} (first: {})",
            k.rows, k.reason, k.example
        );
    }
    let secs = report.elapsed.as_secs_f64();
    let _ = writeln!(
        s,
        "{secs:.2} s, {:.0} rows/s (model load included)",
        r.rows as f64 / secs.max(1e-9)
    );
    s
}

/// What `driftline profile` prints: where the profile went, a line per
/// column, the rows left out of the score, and the speed.
fn profile_summary(built: &BuiltProfile, out: &std::path::Path) -> String {
    use std::fmt::Write;
    let p = &built.profile;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} rows of {} -> {}",
        p.id,
        built.rows,
        p.source.path,
        out.display()
    );
    let _ = writeln!(
        s,
        "  {:<24} {:<11} {:>9} {:>8}  distribution",
        "column", "kind", "count", "missing"
    );
    for column in p.columns.iter().chain([&p.score]) {
        let (count, missing, shape) = match &column.sketch {
            ColumnSketch::Numeric(n) => {
                let q = |r| n.quantile(r).map_or("-".to_owned(), short);
                let shape = format!("p50 {}  p99 {}", q(0.5), q(0.99));
                (n.count(), n.missing(), shape)
            }
            ColumnSketch::Categorical(c) => {
                let total = c.count().max(1) as f64;
                let mut top: Vec<String> = c
                    .categories()
                    .iter()
                    .zip(c.counts())
                    .take(3)
                    .map(|(name, &n)| format!("{name} {:.1}%", 100.0 * n as f64 / total))
                    .collect();
                if c.other() > 0 {
                    top.push(format!("other {:.1}%", 100.0 * c.other() as f64 / total));
                }
                (c.count(), c.missing(), top.join(", "))
            }
        };
        let _ = writeln!(
            s,
            "  {:<24} {:<11} {count:>9} {missing:>8}  {shape}",
            column.name,
            column.sketch.kind()
        );
    }
    let skipped: u64 = built.skipped.iter().map(|k| k.rows).sum();
    let _ = writeln!(s, "score: {} rows scored, {skipped} left out", built.scored);
    for k in &built.skipped {
        let _ = writeln!(s, "  {} rows {} (first: {})", k.rows, k.reason, k.example);
    }
    if !built.absent_columns.is_empty() {
        let _ = writeln!(
            s,
            "not in the file, profiled as all-missing: {}",
            built.absent_columns.join(", ")
        );
    }
    let secs = built.elapsed.as_secs_f64();
    let _ = writeln!(
        s,
        "{secs:.2} s, {:.0} rows/s (three passes, model load included)",
        built.rows as f64 / secs.max(1e-9)
    );
    s
}

/// Four significant digits, without trailing noise.
fn short(x: f64) -> String {
    if x.fract() == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    let decimals = (3 - x.abs().log10().floor() as i32).clamp(0, 8) as usize;
    format!("{x:.decimals$}")
}

/// Progress of `driftline profile` on stderr; hidden when stderr is not a
/// terminal, so logs and pipes stay clean.
#[derive(Default)]
struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress for Bar {
    fn start(&mut self, pass: Pass, rows: Option<u64>) {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        self.finish();
        if !std::io::stderr().is_terminal() {
            return;
        }
        let template = match rows {
            Some(_) => "{msg} [{bar:40}] {human_pos}/{human_len} rows, {per_sec:0}, eta {eta}",
            None => "{msg} {spinner} {human_pos} rows, {per_sec:0}",
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar =
            ProgressBar::with_draw_target(rows, ProgressDrawTarget::stderr()).with_style(style);
        bar.set_message(match pass {
            Pass::Distributions => "pass 1/3 (quantiles)",
            Pass::Sketches => "pass 2/3 (sketches)",
            Pass::Seasons => "pass 3/3 (seasons: the rows through the monitor)",
            Pass::Report => "judging (the rows through the monitor)",
        });
        self.bar = Some(bar);
    }

    fn advance(&mut self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

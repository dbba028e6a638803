//! `driftline profile`: reads a data file, scores its rows as the live loop
//! would, and builds the model's reference profile from the values and
//! scores ([`crate::drift::profile_build`] makes the sketches).
//!
//! # Reading
//!
//! The file (Parquet, Arrow IPC file or stream, or CSV, as the online
//! store's snapshots; [`crate::tabular`]) is read one record batch at a
//! time ([`ProfileOptions::batch_rows`] rows), twice: once per pass of the
//! sketch build. Memory is one record batch plus what the build holds.
//!
//! # Columns and the score
//!
//! A column is found by the input's name. Numeric inputs take any integer
//! or float column; booleans take a boolean column, 0/1 numbers or
//! `true`/`false`/`0`/`1` text (any case), profiled as categoricals with the
//! categories `false` and `true`; categoricals take text (plain, large or
//! dictionary-encoded). A null, an empty text or a NaN boolean is missing.
//! A column absent from the file is an error naming the file and the
//! column, unless [`ProfileOptions::allow_missing_columns`] is set; it is
//! then profiled as all-missing.
//!
//! The score is the model's on each row as the live loop would compute it:
//! every input read from the row (all inputs are treated as event
//! features, so no store or aggregator is involved), a missing value
//! replaced by the manifest's default. A row that still cannot be encoded
//! (no default, unknown category, non-finite number) is left out of the
//! score sketch and counted by reason in [`BuiltProfile::skipped`]; the
//! score sketch holds only scored rows, as a live window does.
//!
//! Guarantees: no panic on any input; every error names the file, and
//! where it applies the column and the 1-based data row.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, SchemaRef};
use compact_str::CompactString;
use sha2::{Digest, Sha256};

use super::watched_columns;
use crate::drift::columns::Watched;
use crate::drift::distinct::EntityCounter;
use crate::drift::monitor::{
    DriftConfig, DriftStatus, Evaluator, Output, Plan, Recorder, RecorderStats, Window,
};
use crate::drift::profile::{
    ColumnProfile, ColumnSketch, Profile, ProfileSource, ReferenceEntities, PROFILE_FORMAT,
    SCORE_COLUMN,
};
use crate::drift::profile_build::{Distributions, SketchError, SketchOptions, Sketches};
use crate::drift::sketch::DEFAULT_TOP_K;
use crate::drift::stats::DEFAULT_BINS;
use crate::drift::DriftError;
use crate::enrich::{EnrichSetupError, Enricher, Scratch};
use crate::event::{now_ms, Event, FeatureValue, Features, RejectReason};
use crate::score::manifest::{InputKind, InputSource, Manifest};
use crate::score::{Model, ModelError, Session};
use crate::tabular::{self, Batches, CsvType, Format, ReadOptions, TabularError};
use std::sync::mpsc::Receiver;

/// Default rows per record batch: the unit of memory use while reading.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;

/// Rows per model call. Scores do not depend on it; it bounds the input
/// tensor whatever the batch size.
const SCORE_CHUNK: usize = 1024;

/// How to build a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOptions {
    /// Histogram bins of numeric columns and the score (edges at the
    /// `i/bins` quantiles); at least 2.
    pub bins: usize,
    /// Categories kept per categorical column; the rest share "other".
    pub top_k: usize,
    /// Rows per record batch (Parquet and CSV; Arrow IPC batches are read
    /// as written).
    pub batch_rows: usize,
    /// Profile an input absent from the file as all-missing instead of
    /// failing.
    pub allow_missing_columns: bool,
    /// The column naming each row's entity (card, account): the profile
    /// records the Kish effective size of its entities, the number of
    /// independent draws behind store and aggregate columns. Absent from
    /// the file: those columns count every row (a warning is worth it).
    pub entity_column: String,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            bins: DEFAULT_BINS,
            top_k: DEFAULT_TOP_K,
            batch_rows: DEFAULT_BATCH_ROWS,
            allow_missing_columns: false,
            entity_column: "entity_id".into(),
        }
    }
}

/// Why a profile could not be built. Every variant names the file it is
/// about (the data file unless stated).
#[derive(Debug, thiserror::Error)]
pub enum ProfileBuildError {
    #[error("profile options: {0}")]
    Options(DriftError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Enrich(#[from] EnrichSetupError),
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: cannot tell the format from the file name (expected .parquet, .pq, .arrow, .arrows, .ipc or .csv)",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    /// Reading the file: its format, a column's type, a cell.
    #[error(transparent)]
    Table(#[from] TabularError),
    #[error("{}: no column `{column}` (an input of model {model}); --allow-missing-columns profiles it as all-missing", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        model: String,
    },
    #[error("{}: none of the model's inputs is a column of the file", path.display())]
    NoInputColumns { path: PathBuf },
    #[error(
        "{}: column `{column}` has more than {limit} distinct values; a categorical input is expected to have few",
        path.display()
    )]
    TooManyCategories {
        path: PathBuf,
        column: String,
        limit: usize,
    },
    #[error("{}: no rows", path.display())]
    NoRows { path: PathBuf },
    #[error("{}: no row could be scored ({reasons})", path.display())]
    NoScores { path: PathBuf, reasons: String },
    #[error(
        "{}: the file changed while it was read: the first pass read {} rows and scored {}, the second {} and {}",
        path.display(), first.0, first.1, second.0, second.1
    )]
    Changed {
        path: PathBuf,
        /// Rows read and rows scored by each pass.
        first: (u64, u64),
        second: (u64, u64),
    },
    #[error("{}: scoring rows {first_row}..: {source}", path.display())]
    Score {
        path: PathBuf,
        first_row: u64,
        source: ModelError,
    },
    #[error("{}: column `{column}`: {source}", path.display())]
    Sketch {
        path: PathBuf,
        column: String,
        source: DriftError,
    },
}

/// The two passes over the file, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Pass 1: quantiles and category counts.
    Distributions,
    /// Pass 2: histograms on the derived edges.
    Sketches,
    /// Pass 3: the rows replayed through the monitor (seasonal columns).
    Seasons,
    /// `driftline report`: the rows through the monitor.
    Report,
}

/// Receives progress while a profile is built (a progress bar in the CLI).
pub trait Progress {
    /// A pass starts; `rows` is the file's row count when known up front.
    fn start(&mut self, pass: Pass, rows: Option<u64>);
    /// `rows` more rows were read in the current pass.
    fn advance(&mut self, rows: u64);
    /// Both passes are done.
    fn finish(&mut self) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _pass: Pass, _rows: Option<u64>) {}
    fn advance(&mut self, _rows: u64) {}
}

/// Rows left out of the score for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRows {
    pub reason: RejectReason,
    pub rows: u64,
    /// The enricher's detail for the first such row, with its row number.
    pub example: String,
}

/// A built profile and what the build saw.
#[derive(Debug, Clone)]
pub struct BuiltProfile {
    pub profile: Profile,
    /// Rows read (each pass reads them all).
    pub rows: u64,
    /// Rows the model scored.
    pub scored: u64,
    /// Rows left out of the score, by reason, most frequent first.
    pub skipped: Vec<SkippedRows>,
    /// Inputs absent from the file, profiled as all-missing
    /// (only with [`ProfileOptions::allow_missing_columns`]).
    pub absent_columns: Vec<String>,
    /// Wall time of the whole build, model load included.
    pub elapsed: Duration,
}

/// Builds the reference profile of the model in `model_dir` from the data
/// file `data` (format from its extension). See the module docs.
pub fn build_profile(
    data: &Path,
    model_dir: &Path,
    opts: &ProfileOptions,
    progress: &mut dyn Progress,
) -> Result<BuiltProfile, ProfileBuildError> {
    let started = Instant::now();
    let sketch_err = |column: &str, source: DriftError| ProfileBuildError::Sketch {
        path: data.to_owned(),
        column: column.to_owned(),
        source,
    };
    if opts.bins < 2 {
        let bins = opts.bins;
        return Err(ProfileBuildError::Options(DriftError::TooFewBins { bins }));
    }
    let format = Format::from_path(data).ok_or_else(|| ProfileBuildError::UnknownFormat {
        path: data.to_owned(),
    })?;
    let model = Arc::new(Model::load(model_dir)?);
    let manifest = model.manifest();
    let model_name = format!("{}/{}", manifest.name, manifest.version);
    let mut scorer = Scorer::new(&model)?;
    let inputs: Vec<(&str, InputKind)> = manifest
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.kind))
        .collect();
    let watched = watched_columns(manifest);
    let reader = Reader {
        path: data,
        format,
        inputs: &inputs,
        batch_rows: opts.batch_rows.max(1),
        allow_missing: opts.allow_missing_columns,
        model: &model_name,
        entity: &opts.entity_column,
    };
    let sha256 = file_sha256(data)?;

    // Pass 1: quantiles and category counts.
    let opened = reader.open()?;
    let absent_columns: Vec<String> = opened
        .columns
        .iter()
        .zip(&inputs)
        .filter(|(at, _)| at.is_none())
        .map(|(_, (name, _))| (*name).to_owned())
        .collect();
    progress.start(Pass::Distributions, opened.rows);
    let mut first = Distributions::new(watched.columns().iter().map(|c| c.kind));
    let mut rows = 0u64;
    for batch in opened.batches {
        let batch = reader.cells(&opened.schema, &opened.columns, (None, None), batch, rows)?;
        for (column, (cells, &(name, _))) in batch.columns.iter().zip(&inputs).enumerate() {
            match cells {
                Cells::Number(a) => first.numbers(column, a.iter()),
                Cells::Text(a) => first.texts(column, a.iter()).map_err(|too_many| {
                    ProfileBuildError::TooManyCategories {
                        path: data.to_owned(),
                        column: name.to_owned(),
                        limit: too_many.limit,
                    }
                })?,
                // Booleans learn nothing; absent columns have nothing to learn from.
                Cells::Bool(_) | Cells::Absent => {}
            }
        }
        scorer
            .score(&batch, rows, true, |s| first.score(s))
            .map_err(|source| reader.score_err(rows, source))?;
        rows += batch.rows as u64;
        progress.advance(batch.rows as u64);
    }
    if rows == 0 {
        return Err(ProfileBuildError::NoRows {
            path: data.to_owned(),
        });
    }
    let skipped = scorer.skipped();
    if scorer.scored == 0 {
        let reasons = skipped
            .iter()
            .map(|s| format!("{} rows {}, e.g. {}", s.rows, s.reason, s.example))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ProfileBuildError::NoScores {
            path: data.to_owned(),
            reasons,
        });
    }

    // Pass 2: every value into sketches on the pass-1 edges and categories.
    let sketch_options = SketchOptions {
        bins: opts.bins,
        top_k: opts.top_k,
    };
    let mut sketches: Sketches = first.into_sketches(&sketch_options).map_err(|e| match e {
        SketchError::Column { column, source } => {
            sketch_err(inputs.get(column).map_or("?", |i| i.0), source)
        }
        SketchError::Score(source) => sketch_err(SCORE_COLUMN, source),
    })?;
    let scored = std::mem::take(&mut scorer.scored);
    let opened = reader.open()?;
    progress.start(Pass::Sketches, Some(rows));
    let mut second = 0u64;
    let mut entities = opened.entity.map(|_| EntityCounter::new());
    for batch in opened.batches {
        let batch = reader.cells(
            &opened.schema,
            &opened.columns,
            (opened.entity, None),
            batch,
            second,
        )?;
        if let (Some(counter), Some(ids)) = (entities.as_mut(), batch.entity.as_ref()) {
            ids.iter().flatten().for_each(|id| counter.update(id));
        }
        for (column, cells) in batch.columns.iter().enumerate() {
            match cells {
                Cells::Number(a) => sketches.numbers(column, a.iter()),
                Cells::Text(a) => sketches.texts(column, a.iter()),
                Cells::Bool(a) => sketches.bools(column, a.iter()),
                Cells::Absent => sketches.missing(column, batch.rows),
            }
        }
        scorer
            .score(&batch, second, false, |s| sketches.score(s))
            .map_err(|source| reader.score_err(second, source))?;
        second += batch.rows as u64;
        progress.advance(batch.rows as u64);
    }
    // The second pass must see the rows the edges were derived from.
    if second != rows || scorer.scored != scored {
        return Err(ProfileBuildError::Changed {
            path: data.to_owned(),
            first: (rows, scored),
            second: (second, scorer.scored),
        });
    }
    let finished = sketches.finish();
    let columns = inputs
        .iter()
        .zip(finished.columns)
        .zip(finished.values)
        .map(|((&(name, _), sketch), values)| ColumnProfile {
            name: name.to_owned(),
            sketch,
            values,
            season: None,
        })
        .collect();
    let entities = entities.map(|counter| {
        let stats = counter.stats();
        ReferenceEntities {
            column: opts.entity_column.clone(),
            events: stats.events,
            distinct: stats.distinct,
            kish: stats.kish(),
        }
    });
    let mut profile = Profile {
        format: PROFILE_FORMAT,
        id: format!("{model_name}@{}", sha256.get(..12).unwrap_or(&sha256)),
        model: manifest.name.clone(),
        model_version: manifest.version.clone(),
        created_ms: now_ms(),
        source: ProfileSource {
            path: data.display().to_string(),
            rows,
            sha256,
        },
        entities,
        columns,
        score: ColumnProfile {
            name: SCORE_COLUMN.into(),
            sketch: ColumnSketch::Numeric(finished.score),
            values: Some(finished.score_values),
            season: None,
        },
    };
    // Pass 3: the rows replayed in file order through the monitor at its
    // defaults; a column it flags in more than 1% of windows is seasonal.
    progress.start(Pass::Seasons, Some(rows));
    let seasonal = replay_seasons(&reader, &mut scorer, &watched, &profile, progress)?;
    for (column, seasonal) in profile.columns.iter_mut().zip(seasonal) {
        if seasonal {
            column.season = Some(DEFAULT_SEASON.into());
        }
    }
    progress.finish();
    Ok(BuiltProfile {
        profile,
        rows,
        scored,
        skipped,
        absent_columns,
        elapsed: started.elapsed(),
    })
}

/// The season recorded for a seasonal column: a day.
pub const DEFAULT_SEASON: &str = "24h";

/// Share of the self-replay's judged windows above which a column is
/// seasonal: ten times what the monitor's whole family may spend.
const SEASONAL_SHARE: f64 = 0.01;

/// Judged windows the self-replay needs before it calls a column seasonal.
const SEASONAL_MIN_WINDOWS: u64 = 10;

/// Pass 3: replays the rows in file order through the live monitor (the
/// default `[drift]`, no CUSUM), against the profile just built, and says
/// per column whether its distribution statistics were bad in more than
/// [`SEASONAL_SHARE`] of its judged windows. Event time is the data's `ts`
/// column (epoch ms) when it has one, else one millisecond per row (then
/// streaming aggregates are never past their warm-up and never seasonal).
fn replay_seasons(
    reader: &Reader<'_>,
    scorer: &mut Scorer,
    watched: &Watched,
    profile: &Profile,
    progress: &mut dyn Progress,
) -> Result<Vec<bool>, ProfileBuildError> {
    let columns = profile.columns.len();
    let config = DriftConfig {
        cusum: false,
        ..DriftConfig::default()
    };
    let Ok(plan) = Plan::new(watched, profile.clone(), reader.path, config) else {
        return Ok(vec![false; columns]);
    };
    let plan = Arc::new(plan);
    let stats = Arc::new(RecorderStats::default());
    let (mut recorder, rx) = Recorder::new(plan.clone(), stats.clone());
    // Per column: judged windows, windows with a bad distribution statistic.
    let tally = Arc::new(parking_lot::Mutex::new(vec![(0u64, 0u64); columns]));
    let counts = tally.clone();
    let sink = move |status: &DriftStatus, _: &[Output], _: std::time::Duration| {
        let mut counts = counts.lock();
        for (c, col) in counts.iter_mut().zip(&status.columns) {
            if col.skipped.is_none() && !col.statistics.is_empty() {
                c.0 += 1;
                if col
                    .statistics
                    .iter()
                    .any(|j| j.bad && j.statistic != "missing_rate")
                {
                    c.1 += 1;
                }
            }
        }
    };
    let mut evaluator = Evaluator::new(
        plan,
        stats,
        Arc::new(parking_lot::RwLock::new(DriftStatus::default())),
        Box::new(sink),
    );
    replay(reader, scorer, &mut recorder, &rx, &mut evaluator, progress)?;
    let counts = tally.lock();
    Ok(counts
        .iter()
        .map(|&(judged, bad)| {
            judged >= SEASONAL_MIN_WINDOWS && bad as f64 > SEASONAL_SHARE * judged as f64
        })
        .collect())
}

/// Reads every row of the file in order, scores it as the live loop
/// would and hands it to `recorder` (the service's monitor), with the
/// event time of the `ts` column (epoch ms) when the file has one, else
/// one millisecond per row, and the entity of the entity column. Each
/// closed sub-window goes to `evaluator` as soon as it closes, so none is
/// dropped whatever the queue length. Returns the rows read.
pub(super) fn replay(
    reader: &Reader<'_>,
    scorer: &mut Scorer,
    recorder: &mut Recorder,
    rx: &Receiver<Window>,
    evaluator: &mut Evaluator,
    progress: &mut dyn Progress,
) -> Result<u64, ProfileBuildError> {
    let opened = reader.open()?;
    let mut done = 0u64;
    for batch in opened.batches {
        let batch = reader.cells(
            &opened.schema,
            &opened.columns,
            (opened.entity, opened.time),
            batch,
            done,
        )?;
        let times = batch.time.as_ref();
        scorer
            .score_rows(&batch, done, true, |score, s| {
                let ts = times
                    .filter(|t| t.is_valid(s.position))
                    .map_or((done + s.position as u64) as i64, |t| {
                        t.value(s.position) as i64
                    });
                let entity = batch
                    .entity
                    .as_ref()
                    .filter(|a| a.is_valid(s.position))
                    .map_or("", |a| a.value(s.position));
                recorder.observe(s.row, s.defaulted, score as f32, ts, entity);
                for window in rx.try_iter() {
                    evaluator.push(window);
                }
            })
            .map_err(|source| reader.score_err(done, source))?;
        done += batch.rows as u64;
        progress.advance(batch.rows as u64);
    }
    Ok(done)
}

/// Hex SHA-256 of a file, read in blocks.
fn file_sha256(path: &Path) -> Result<String, ProfileBuildError> {
    let open_err = |source| ProfileBuildError::Open {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_err(e)),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

// ---------------------------------------------------------------------------
// Reading

/// One input's column of a batch, converted to what the build reads.
enum Cells {
    /// The file has no such column (allowed by the options): all missing.
    Absent,
    Number(Float64Array),
    Bool(BooleanArray),
    Text(StringArray),
}

/// One batch: a [`Cells`] per model input, in manifest order, and the
/// entity ids when the file has them.
struct BatchCells {
    rows: usize,
    columns: Vec<Cells>,
    entity: Option<StringArray>,
    /// Event times (epoch ms) when the file has a time column.
    time: Option<Float64Array>,
}

/// An opened data file.
pub(super) struct Opened {
    /// Schema of the batches (a projection of the file's for Parquet and CSV).
    schema: SchemaRef,
    /// Per input, its column in the batches; `None` when absent.
    columns: Vec<Option<usize>>,
    /// The entity column, when present.
    entity: Option<usize>,
    /// The event-time column, when present.
    time: Option<usize>,
    /// Row count when the format states it up front (Parquet).
    pub(super) rows: Option<u64>,
    batches: Batches,
}

/// Opens the data file and converts its batches; shared by both passes.
pub(super) struct Reader<'a> {
    pub(super) path: &'a Path,
    pub(super) format: Format,
    pub(super) inputs: &'a [(&'a str, InputKind)],
    pub(super) batch_rows: usize,
    pub(super) allow_missing: bool,
    /// `name/version`, for messages.
    pub(super) model: &'a str,
    /// Name of the entity column (read when present).
    pub(super) entity: &'a str,
}

/// The event-time column `driftline profile` reads when present (epoch
/// ms), as events carry it.
const TIME_COLUMN: &str = "ts";

impl Reader<'_> {
    fn wanted(&self, name: &str) -> bool {
        name == self.entity || name == TIME_COLUMN || self.inputs.iter().any(|(n, _)| *n == name)
    }

    /// Numeric inputs are parsed as numbers; booleans (0/1 and any case)
    /// and categoricals as text, parsed here.
    fn csv_type(&self, name: &str) -> CsvType {
        match self.inputs.iter().find(|(n, _)| *n == name) {
            Some((_, InputKind::Numeric)) => CsvType::Number,
            None if name == TIME_COLUMN => CsvType::Number,
            _ => CsvType::Text,
        }
    }

    fn score_err(&self, done: u64, source: ModelError) -> ProfileBuildError {
        ProfileBuildError::Score {
            path: self.path.to_owned(),
            first_row: done + 1,
            source,
        }
    }

    /// Opens the file, finds each input's column and checks its type.
    pub(super) fn open(&self) -> Result<Opened, ProfileBuildError> {
        let file = File::open(self.path).map_err(|source| ProfileBuildError::Open {
            path: self.path.to_owned(),
            source,
        })?;
        let keep = |name: &str| self.wanted(name);
        let csv_type = |name: &str| self.csv_type(name);
        let read = ReadOptions {
            batch_rows: self.batch_rows,
            keep: &keep,
            csv_type: &csv_type,
        };
        let table = tabular::open(file, self.path, self.format, &read)?;
        table.check_duplicates(self.path, &keep)?;
        let schema = table.schema;
        let mut columns = Vec::with_capacity(self.inputs.len());
        for &(name, kind) in self.inputs {
            let at = schema.fields().iter().position(|f| f.name() == name);
            match at {
                Some(at) => check_type(self.path, &schema.fields()[at], kind)?,
                None if self.allow_missing => {}
                None => {
                    return Err(ProfileBuildError::MissingColumn {
                        path: self.path.to_owned(),
                        column: name.to_owned(),
                        model: self.model.to_owned(),
                    })
                }
            }
            columns.push(at);
        }
        if columns.iter().all(Option::is_none) {
            return Err(ProfileBuildError::NoInputColumns {
                path: self.path.to_owned(),
            });
        }
        let entity = schema
            .fields()
            .iter()
            .position(|f| f.name() == self.entity)
            .filter(|_| !self.inputs.iter().any(|(n, _)| *n == self.entity));
        let time = schema
            .fields()
            .iter()
            .position(|f| f.name() == TIME_COLUMN)
            .filter(|_| !self.inputs.iter().any(|(n, _)| *n == TIME_COLUMN));
        Ok(Opened {
            schema,
            columns,
            entity,
            time,
            rows: table.rows,
            batches: table.batches,
        })
    }

    /// Converts one batch; `done` rows precede it.
    fn cells(
        &self,
        schema: &SchemaRef,
        columns: &[Option<usize>],
        (entity, time): (Option<usize>, Option<usize>),
        batch: Result<RecordBatch, TabularError>,
        done: u64,
    ) -> Result<BatchCells, ProfileBuildError> {
        let batch = batch?;
        if batch.num_columns() != schema.fields().len() {
            return Err(TabularError::Read {
                path: self.path.to_owned(),
                format: self.format,
                source: format!(
                    "record batch has {} columns, the file schema {}",
                    batch.num_columns(),
                    schema.fields().len()
                )
                .into(),
            }
            .into());
        }
        let cells = columns
            .iter()
            .zip(self.inputs)
            .map(|(at, &(name, kind))| match at {
                None => Ok(Cells::Absent),
                Some(at) => self.convert(batch.column(*at), name, kind, done),
            })
            .collect::<Result<_, TabularError>>()?;
        // Ids that are not text (or cannot be read) only cost the Kish
        // size: store columns then count every row.
        let entity = entity.and_then(|at| {
            match self.convert(batch.column(at), self.entity, InputKind::Categorical, done) {
                Ok(Cells::Text(a)) => Some(a),
                _ => None,
            }
        });
        let time = time.and_then(|at| {
            match self.convert(batch.column(at), TIME_COLUMN, InputKind::Numeric, done) {
                Ok(Cells::Number(a)) => Some(a),
                _ => None,
            }
        });
        Ok(BatchCells {
            rows: batch.num_rows(),
            columns: cells,
            entity,
            time,
        })
    }

    fn convert(
        &self,
        a: &ArrayRef,
        column: &str,
        kind: InputKind,
        done: u64,
    ) -> Result<Cells, TabularError> {
        let convert_err = |source| TabularError::Convert {
            path: self.path.to_owned(),
            column: column.to_owned(),
            source,
        };
        let cell_err = |r: usize, problem: String| TabularError::Cell {
            path: self.path.to_owned(),
            row: done + r as u64 + 1,
            column: column.to_owned(),
            problem,
        };
        // `safe` off: an overflowing value must fail, not become a null.
        let cast = |to: &DataType| tabular::cast(a, to).map_err(convert_err);
        let numbers = || -> Result<Float64Array, TabularError> {
            tabular::downcast::<Float64Array>(&cast(&DataType::Float64)?).map_err(convert_err)
        };
        let texts = || -> Result<StringArray, TabularError> {
            tabular::downcast::<StringArray>(&cast(&DataType::Utf8)?).map_err(convert_err)
        };
        Ok(match kind {
            InputKind::Numeric => Cells::Number(numbers()?),
            InputKind::Categorical => Cells::Text(texts()?),
            InputKind::Boolean if a.data_type() == &DataType::Boolean => {
                Cells::Bool(tabular::downcast::<BooleanArray>(a).map_err(convert_err)?)
            }
            InputKind::Boolean if a.data_type().is_numeric() => {
                let values = numbers()?
                    .iter()
                    .enumerate()
                    .map(|(r, x)| match x {
                        None => Ok(None),
                        Some(x) if x.is_nan() => Ok(None),
                        Some(0.0) => Ok(Some(false)),
                        Some(1.0) => Ok(Some(true)),
                        Some(x) => Err(cell_err(r, format!("expected 0 or 1, got {x}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Cells::Bool(BooleanArray::from(values))
            }
            InputKind::Boolean => {
                let values = texts()?
                    .iter()
                    .enumerate()
                    .map(|(r, v)| match v.map(str::trim) {
                        None | Some("") => Ok(None),
                        Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
                            cell_err(r, format!("expected true/false or 0/1, got {v:?}"))
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Cells::Bool(BooleanArray::from(values))
            }
        })
    }
}

/// Checks that a file column can feed an input of `kind`.
fn check_type(path: &Path, field: &Field, kind: InputKind) -> Result<(), TabularError> {
    let dt = field.data_type();
    let expected = match kind {
        InputKind::Numeric if dt.is_numeric() => return Ok(()),
        InputKind::Numeric => "a numeric column",
        InputKind::Categorical if tabular::is_text(dt) => return Ok(()),
        InputKind::Categorical => "a text column",
        InputKind::Boolean
            if dt == &DataType::Boolean || dt.is_numeric() || tabular::is_text(dt) =>
        {
            return Ok(())
        }
        InputKind::Boolean => "a boolean, 0/1 or true/false column",
    };
    Err(TabularError::ColumnType {
        path: path.to_owned(),
        column: field.name().clone(),
        expected,
        found: dt.clone(),
    })
}

/// `true`/`false` in any case, or a number equal to 1 or 0.
fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        return Some(true);
    }
    if v.eq_ignore_ascii_case("false") {
        return Some(false);
    }
    match v.parse::<f64>() {
        Ok(1.0) => Some(true),
        Ok(0.0) => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Scoring

/// One scored row as the model saw it.
struct ScoredRow<'a> {
    row: &'a [f32],
    defaulted: &'a [bool],
    /// Its position in the batch.
    position: usize,
}

/// Scores rows as the live loop does: rows become events, the enricher
/// encodes them (defaults included), the model scores chunks of them.
pub(super) struct Scorer {
    enricher: Enricher,
    session: Session,
    width: usize,
    /// Reused for every row: one feature per input, in manifest order.
    event: Event,
    scratch: Scratch,
    /// Encoded rows waiting for the model (at most [`SCORE_CHUNK`]).
    rows: Vec<f32>,
    /// Per waiting row: its inputs that fell back to defaults (row-major)
    /// and its position in the batch.
    defaulted: Vec<bool>,
    positions: Vec<usize>,
    scores: Vec<f32>,
    pub(super) scored: u64,
    /// Per reason: rows and the first row's detail.
    skipped: HashMap<RejectReason, (u64, String)>,
}

impl Scorer {
    pub(super) fn new(model: &Arc<Model>) -> Result<Self, ProfileBuildError> {
        // Every input is read from the row, so no store or aggregator.
        let mut manifest: Manifest = model.manifest().clone();
        for input in &mut manifest.inputs {
            input.source = InputSource::Event;
        }
        let enricher = Enricher::new(&manifest, None, None)?;
        let features = manifest
            .inputs
            .iter()
            .map(|i| (CompactString::from(i.name.as_str()), FeatureValue::Null))
            .collect();
        Ok(Self {
            width: enricher.width(),
            enricher,
            session: model.session()?,
            event: Event {
                event_id: CompactString::default(),
                entity_id: CompactString::default(),
                ts_ms: None,
                features: Features(features),
            },
            scratch: Scratch::default(),
            rows: Vec::with_capacity(SCORE_CHUNK * model.width()),
            defaulted: Vec::new(),
            positions: Vec::new(),
            scores: Vec::with_capacity(SCORE_CHUNK),
            scored: 0,
            skipped: HashMap::new(),
        })
    }

    /// Scores every row of `batch` that can be encoded and hands each score
    /// to `sink`; `tally` counts the others by reason. `done` rows precede
    /// the batch.
    fn score(
        &mut self,
        batch: &BatchCells,
        done: u64,
        tally: bool,
        mut sink: impl FnMut(f64),
    ) -> Result<(), ModelError> {
        self.score_rows(batch, done, tally, |score, _| sink(score))
    }

    /// [`Scorer::score`] handing each scored row to `sink` as well: its
    /// encoded input, defaulted inputs and position in the batch.
    fn score_rows(
        &mut self,
        batch: &BatchCells,
        done: u64,
        tally: bool,
        mut sink: impl FnMut(f64, ScoredRow<'_>),
    ) -> Result<(), ModelError> {
        for r in 0..batch.rows {
            for ((_, value), cells) in self.event.features.0.iter_mut().zip(&batch.columns) {
                *value = feature(cells, r);
            }
            let start = self.rows.len();
            self.rows.resize(start + self.width, 0.0);
            let encoded = self.enricher.enrich(
                &self.event,
                0,
                0,
                &mut self.scratch,
                &mut self.rows[start..],
            );
            if encoded.is_ok() {
                self.defaulted.extend_from_slice(self.scratch.defaulted());
                self.positions.push(r);
            }
            if let Err(rejection) = encoded {
                self.rows.truncate(start);
                if tally {
                    let row = done + r as u64 + 1;
                    let entry = self
                        .skipped
                        .entry(rejection.reason)
                        .or_insert_with(|| (0, format!("row {row}: {}", rejection.detail)));
                    entry.0 += 1;
                }
            }
            if self.rows.len() >= SCORE_CHUNK * self.width {
                self.run(&mut sink)?;
            }
        }
        self.run(&mut sink)
    }

    fn run(&mut self, sink: &mut impl FnMut(f64, ScoredRow<'_>)) -> Result<(), ModelError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        self.scores.clear();
        self.session.score(&self.rows, &mut self.scores)?;
        self.scored += self.scores.len() as u64;
        let inputs = self.defaulted.len() / self.positions.len().max(1);
        for (k, &s) in self.scores.iter().enumerate() {
            sink(
                f64::from(s),
                ScoredRow {
                    row: self
                        .rows
                        .get(k * self.width..(k + 1) * self.width)
                        .unwrap_or(&[]),
                    defaulted: self
                        .defaulted
                        .get(k * inputs..(k + 1) * inputs)
                        .unwrap_or(&[]),
                    position: self.positions.get(k).copied().unwrap_or(0),
                },
            );
        }
        self.rows.clear();
        self.defaulted.clear();
        self.positions.clear();
        Ok(())
    }

    /// Skipped rows by reason, most frequent first.
    pub(super) fn skipped(&self) -> Vec<SkippedRows> {
        let mut skipped: Vec<SkippedRows> = self
            .skipped
            .iter()
            .map(|(&reason, (rows, example))| SkippedRows {
                reason,
                rows: *rows,
                example: example.clone(),
            })
            .collect();
        skipped.sort_by(|a, b| {
            b.rows
                .cmp(&a.rows)
                .then(a.reason.code().cmp(b.reason.code()))
        });
        skipped
    }
}

/// One cell as an event feature (`Null` when missing).
fn feature(cells: &Cells, r: usize) -> FeatureValue {
    match cells {
        Cells::Number(a) if a.is_valid(r) => FeatureValue::Number(a.value(r)),
        Cells::Bool(a) if a.is_valid(r) => FeatureValue::Bool(a.value(r)),
        // Empty text means missing, as it does in CSV, so formats agree.
        Cells::Text(a) if a.is_valid(r) && !a.value(r).is_empty() => {
            FeatureValue::Text(CompactString::new(a.value(r)))
        }
        _ => FeatureValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_spellings() {
        for (text, want) in [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("1", Some(true)),
            ("1.0", Some(true)),
            ("False", Some(false)),
            ("0", Some(false)),
            ("-0", Some(false)),
            ("yes", None),
            ("2", None),
            ("NaN", None),
        ] {
            assert_eq!(parse_bool(text), want, "{text}");
        }
    }
}

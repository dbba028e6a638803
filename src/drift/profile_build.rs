//! Building a reference [`Profile`] from a data file: `driftline profile`.
//!
//! The profile holds one sketch per model input, in manifest order, and one
//! of the model's score on the same rows (layout: [`super::profile`] and
//! `docs/profile.md`).
//!
//! # Two streaming passes, bounded memory
//!
//! The file (Parquet, Arrow IPC file or stream, or CSV, as the online
//! store's snapshots) is read one record batch at a time
//! ([`ProfileOptions::batch_rows`] rows), twice:
//!
//! 1. **Distributions.** A KLL quantile sketch (`k` = [`EDGE_KLL_K`]) per
//!    numeric column and of the score, and exact counts per distinct value
//!    of each categorical column (at most [`MAX_DISTINCT`] values: more is
//!    an error, such a column is an id rather than a category).
//! 2. **Sketches.** Bin edges come from pass 1; every value is fed into a
//!    [`NumericSketch`] on those edges or a [`CategoricalSketch`] on the
//!    top-K categories, exactly as a live window would be.
//!
//! Memory is one record batch, about 100 KB per numeric column (pass 1's
//! KLL; the profile's own sketches take ~5 KB) and the distinct values of
//! each categorical, whatever the file's length.
//!
//! # Bin edges
//!
//! The edges are meant to be [`stats::reference_edges`]: the present
//! values' `i/bins` quantiles, repeats dropped. Exact quantiles need the
//! whole column in memory, so they are taken from pass 1's KLL instead:
//! not exact quantiles, but within its normalised rank error `ε` (99%
//! confidence, DataSketches' bound `2.296 / k^0.9723`, see
//! [`super::sketch`]). That is about 1.3% at the window sketches' `k` =
//! [`sketch::KLL_K`] = 200, and 0.07% at the `k` = [`EDGE_KLL_K`] = 4096
//! pass 1 uses, since its sketch is thrown away after the build and only
//! costs memory while it runs. An edge meant to sit at the 30th percentile sits
//! between the 29.93rd and the 30.07th. That is harmless: PSI and
//! Jensen-Shannon are exact for any fixed edges (the histograms are exact
//! counts on both sides), the edges only choose which bins are compared.
//! While a column has fewer values than the KLL keeps (about `k`), its
//! quantiles are exact ranks of the data (the nearest value, not NumPy's
//! interpolation) and the edges are the same on every build; beyond that
//! KLL is randomised, and rebuilding may move the edges within `ε`.
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
//!
//! [`stats::reference_edges`]: super::stats::reference_edges
//! [`sketch::KLL_K`]: super::sketch::KLL_K

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, SchemaRef};
use compact_str::CompactString;
use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};
use sha2::{Digest, Sha256};

use super::profile::{
    ColumnProfile, ColumnSketch, Profile, ProfileSource, PROFILE_FORMAT, SCORE_COLUMN,
};
use super::sketch::{CategoricalSketch, NumericSketch, DEFAULT_TOP_K};
use super::stats::DEFAULT_BINS;
use super::DriftError;
use crate::enrich::{EnrichSetupError, Enricher, Scratch};
use crate::event::{now_ms, Event, FeatureValue, Features, RejectReason};
use crate::score::manifest::{InputKind, InputSource, Manifest};
use crate::score::{Model, ModelError, Session};
use crate::tabular::{self, Batches, CsvType, Format, ReadOptions, TabularError};

/// Distinct values a categorical column may have in pass 1. Counts are
/// exact, so memory grows with the distinct values; beyond this many the
/// column is almost certainly an identifier, and the build stops.
pub const MAX_DISTINCT: usize = 100_000;

/// KLL accuracy of pass 1, from which bin edges are derived: rank error
/// `ε ≈ 0.0007` (0.07%), about 12k retained values (~100 KB) per column.
/// Larger than the window sketches' [`KLL_K`](super::sketch::KLL_K) because this sketch is only
/// held while the profile is built, never stored or merged.
pub const EDGE_KLL_K: u16 = 4096;

/// Default rows per record batch: the unit of memory use while reading.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;

/// Rows per model call. Scores do not depend on it; it bounds the input
/// tensor whatever the batch size.
const SCORE_CHUNK: usize = 1024;

/// Categories of a boolean input's sketch, in bucket order.
const BOOLEAN_CATEGORIES: [&str; 2] = ["false", "true"];

type Kll = KllSketch<KllFloat<f64>>;

fn new_kll() -> Kll {
    // EDGE_KLL_K is within the library's 8..=65535, so `new` cannot fail;
    // the fallback is the library default (k = 200), still a valid sketch.
    KllSketch::new(EDGE_KLL_K).unwrap_or_default()
}

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
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            bins: DEFAULT_BINS,
            top_k: DEFAULT_TOP_K,
            batch_rows: DEFAULT_BATCH_ROWS,
            allow_missing_columns: false,
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
    let reader = Reader {
        path: data,
        format,
        inputs: &inputs,
        batch_rows: opts.batch_rows.max(1),
        allow_missing: opts.allow_missing_columns,
        model: &model_name,
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
    let mut first: Vec<FirstPass> = inputs
        .iter()
        .map(|&(_, kind)| FirstPass::new(kind))
        .collect();
    let mut score_kll = new_kll();
    let mut rows = 0u64;
    for batch in opened.batches {
        let batch = reader.cells(&opened.schema, &opened.columns, batch, rows)?;
        for ((state, cells), &(name, _)) in first.iter_mut().zip(&batch.columns).zip(&inputs) {
            state
                .observe(cells)
                .map_err(|()| ProfileBuildError::TooManyCategories {
                    path: data.to_owned(),
                    column: name.to_owned(),
                    limit: MAX_DISTINCT,
                })?;
        }
        scorer
            .score(&batch, rows, true, |s| {
                if let Ok(v) = KllFloat::<f64>::new(s) {
                    score_kll.update(v);
                }
            })
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
    let mut sketches: Vec<ColumnSketch> = first
        .into_iter()
        .zip(&inputs)
        .map(|(state, &(name, _))| state.into_sketch(opts).map_err(|e| sketch_err(name, e)))
        .collect::<Result<_, _>>()?;
    let score_edges = kll_edges(&score_kll, opts.bins).map_err(|e| sketch_err(SCORE_COLUMN, e))?;
    let mut score = NumericSketch::new(score_edges).map_err(|e| sketch_err(SCORE_COLUMN, e))?;
    let scored = std::mem::take(&mut scorer.scored);
    let opened = reader.open()?;
    progress.start(Pass::Sketches, Some(rows));
    let mut second = 0u64;
    for batch in opened.batches {
        let batch = reader.cells(&opened.schema, &opened.columns, batch, second)?;
        for (sketch, cells) in sketches.iter_mut().zip(&batch.columns) {
            feed(sketch, cells, batch.rows);
        }
        scorer
            .score(&batch, second, false, |s| score.update(s))
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
    progress.finish();
    for sketch in &mut sketches {
        if let ColumnSketch::Numeric(s) = sketch {
            s.flush();
        }
    }
    score.flush();

    let columns = inputs
        .iter()
        .zip(sketches)
        .map(|(&(name, _), sketch)| ColumnProfile {
            name: name.to_owned(),
            sketch,
        })
        .collect();
    let profile = Profile {
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
        columns,
        score: ColumnProfile {
            name: SCORE_COLUMN.into(),
            sketch: ColumnSketch::Numeric(score),
        },
    };
    Ok(BuiltProfile {
        profile,
        rows,
        scored,
        skipped,
        absent_columns,
        elapsed: started.elapsed(),
    })
}

/// Interior bin edges at the sketch's `i/bins` quantiles (inclusive
/// ranks), repeats dropped: [`stats::reference_edges`] within the KLL's
/// rank error (module docs). A sketch without values (a column that is
/// all missing) gets the single edge 0: any edge will do for a reference
/// with nothing in it, and [`NumericSketch::new`] needs one.
///
/// [`stats::reference_edges`]: super::stats::reference_edges
fn kll_edges(kll: &Kll, bins: usize) -> Result<Vec<f64>, DriftError> {
    if bins < 2 {
        return Err(DriftError::TooFewBins { bins });
    }
    let ranks: Vec<f64> = (1..bins).map(|i| i as f64 / bins as f64).collect();
    let quantiles = kll
        .quantiles(&ranks, SearchCriteria::Inclusive)
        .map_err(|e| DriftError::CorruptSketch {
            reason: format!("KLL quantiles: {e}"),
        })?;
    let Some(quantiles) = quantiles else {
        return Ok(vec![0.0]);
    };
    let mut edges: Vec<f64> = quantiles.into_iter().map(|q| q.into_inner()).collect();
    // Quantiles are monotone in the rank; the sort only guards the dedup.
    edges.sort_unstable_by(f64::total_cmp);
    edges.dedup();
    Ok(edges)
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
// Per-column state

/// What pass 1 keeps of one column.
enum FirstPass {
    Numeric(Kll),
    /// Exact counts per distinct value (at most [`MAX_DISTINCT`]).
    Categorical(HashMap<CompactString, u64, foldhash::fast::RandomState>),
    /// Categories are fixed (`false`, `true`): nothing to learn.
    Boolean,
}

impl FirstPass {
    fn new(kind: InputKind) -> Self {
        match kind {
            InputKind::Numeric => FirstPass::Numeric(new_kll()),
            InputKind::Categorical => FirstPass::Categorical(HashMap::default()),
            InputKind::Boolean => FirstPass::Boolean,
        }
    }

    /// Takes one batch of the column. `Err` when a categorical exceeds
    /// [`MAX_DISTINCT`].
    fn observe(&mut self, cells: &Cells) -> Result<(), ()> {
        match (self, cells) {
            (FirstPass::Numeric(kll), Cells::Number(a)) => {
                // Null and NaN fail `KllFloat::new`; ±∞ is filtered as the
                // sketch counts it missing.
                for x in a.iter().flatten().filter(|x| x.is_finite()) {
                    if let Ok(v) = KllFloat::<f64>::new(x) {
                        kll.update(v);
                    }
                }
            }
            (FirstPass::Categorical(counts), Cells::Text(a)) => {
                for v in a.iter().flatten().filter(|v| !v.is_empty()) {
                    if let Some(c) = counts.get_mut(v) {
                        *c += 1;
                    } else if counts.len() < MAX_DISTINCT {
                        counts.insert(v.into(), 1);
                    } else {
                        return Err(());
                    }
                }
            }
            // Booleans learn nothing; absent columns have nothing to learn from.
            _ => {}
        }
        Ok(())
    }

    /// The empty pass-2 sketch: edges from the quantiles, or the top-K
    /// categories (ranked as [`CategoricalSketch::reference`] ranks them).
    fn into_sketch(self, opts: &ProfileOptions) -> Result<ColumnSketch, DriftError> {
        Ok(match self {
            FirstPass::Numeric(kll) => {
                ColumnSketch::Numeric(NumericSketch::new(kll_edges(&kll, opts.bins)?)?)
            }
            FirstPass::Categorical(counts) => {
                let mut ranked: Vec<(CompactString, u64)> = counts.into_iter().collect();
                ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                ranked.truncate(opts.top_k);
                let categories = ranked.into_iter().map(|(name, _)| name).collect();
                ColumnSketch::Categorical(CategoricalSketch::new(categories)?)
            }
            FirstPass::Boolean => ColumnSketch::Categorical(CategoricalSketch::new(
                BOOLEAN_CATEGORIES.iter().map(|&c| c.into()).collect(),
            )?),
        })
    }
}

/// Pass 2: every value of one batch of a column into its sketch.
fn feed(sketch: &mut ColumnSketch, cells: &Cells, rows: usize) {
    match (sketch, cells) {
        (ColumnSketch::Numeric(s), Cells::Number(a)) => {
            for x in a.iter() {
                match x {
                    Some(x) => s.update(x),
                    None => s.update_missing(),
                }
            }
        }
        (ColumnSketch::Categorical(s), Cells::Text(a)) => {
            for v in a.iter() {
                match v.filter(|v| !v.is_empty()) {
                    Some(v) => s.update(v),
                    None => s.update_missing(),
                }
            }
        }
        (ColumnSketch::Categorical(s), Cells::Bool(a)) => {
            for b in a.iter() {
                match b {
                    Some(b) => s.update(BOOLEAN_CATEGORIES[usize::from(b)]),
                    None => s.update_missing(),
                }
            }
        }
        (ColumnSketch::Numeric(s), Cells::Absent) => (0..rows).for_each(|_| s.update_missing()),
        (ColumnSketch::Categorical(s), Cells::Absent) => (0..rows).for_each(|_| s.update_missing()),
        // Cannot happen: cells are converted by the input's kind, and the
        // sketch was built from the same kind.
        _ => {}
    }
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

/// One batch: a [`Cells`] per model input, in manifest order.
struct BatchCells {
    rows: usize,
    columns: Vec<Cells>,
}

/// An opened data file.
struct Opened {
    /// Schema of the batches (a projection of the file's for Parquet and CSV).
    schema: SchemaRef,
    /// Per input, its column in the batches; `None` when absent.
    columns: Vec<Option<usize>>,
    /// Row count when the format states it up front (Parquet).
    rows: Option<u64>,
    batches: Batches,
}

/// Opens the data file and converts its batches; shared by both passes.
struct Reader<'a> {
    path: &'a Path,
    format: Format,
    inputs: &'a [(&'a str, InputKind)],
    batch_rows: usize,
    allow_missing: bool,
    /// `name/version`, for messages.
    model: &'a str,
}

impl Reader<'_> {
    fn wanted(&self, name: &str) -> bool {
        self.inputs.iter().any(|(n, _)| *n == name)
    }

    /// Numeric inputs are parsed as numbers; booleans (0/1 and any case)
    /// and categoricals as text, parsed here.
    fn csv_type(&self, name: &str) -> CsvType {
        match self.inputs.iter().find(|(n, _)| *n == name) {
            Some((_, InputKind::Numeric)) => CsvType::Number,
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
    fn open(&self) -> Result<Opened, ProfileBuildError> {
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
        Ok(Opened {
            schema,
            columns,
            rows: table.rows,
            batches: table.batches,
        })
    }

    /// Converts one batch; `done` rows precede it.
    fn cells(
        &self,
        schema: &SchemaRef,
        columns: &[Option<usize>],
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
        Ok(BatchCells {
            rows: batch.num_rows(),
            columns: cells,
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

/// Scores rows as the live loop does: rows become events, the enricher
/// encodes them (defaults included), the model scores chunks of them.
struct Scorer {
    enricher: Enricher,
    session: Session,
    width: usize,
    /// Reused for every row: one feature per input, in manifest order.
    event: Event,
    scratch: Scratch,
    /// Encoded rows waiting for the model (at most [`SCORE_CHUNK`]).
    rows: Vec<f32>,
    scores: Vec<f32>,
    scored: u64,
    /// Per reason: rows and the first row's detail.
    skipped: HashMap<RejectReason, (u64, String)>,
}

impl Scorer {
    fn new(model: &Arc<Model>) -> Result<Self, ProfileBuildError> {
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

    fn run(&mut self, sink: &mut impl FnMut(f64)) -> Result<(), ModelError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        self.scores.clear();
        self.session.score(&self.rows, &mut self.scores)?;
        self.rows.clear();
        self.scored += self.scores.len() as u64;
        for &s in &self.scores {
            sink(f64::from(s));
        }
        Ok(())
    }

    /// Skipped rows by reason, most frequent first.
    fn skipped(&self) -> Vec<SkippedRows> {
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
    use crate::drift::stats::reference_edges;
    use proptest::prelude::*;

    fn kll_of(values: &[f64]) -> Kll {
        let mut kll = new_kll();
        for &v in values {
            kll.update(KllFloat::<f64>::new(v).unwrap());
        }
        kll
    }

    #[test]
    fn edges_of_small_constant_and_empty_columns() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        // Exact while the sketch holds every value: the nearest-rank deciles.
        let edges = kll_edges(&kll_of(&hundred), 10).unwrap();
        assert_eq!(
            edges,
            [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
        );
        assert_eq!(kll_edges(&kll_of(&[7.5; 30]), 10).unwrap(), [7.5]);
        assert_eq!(kll_edges(&kll_of(&[0.0, 1.0]), 4).unwrap(), [0.0, 1.0]);
        assert_eq!(kll_edges(&new_kll(), 10).unwrap(), [0.0]);
        assert_eq!(
            kll_edges(&new_kll(), 1),
            Err(DriftError::TooFewBins { bins: 1 })
        );
    }

    #[test]
    fn pass_one_memory_stays_bounded() {
        let mut kll = new_kll();
        for i in 0..2_000_000u32 {
            kll.update(KllFloat::<f64>::new(f64::from(i.wrapping_mul(2_654_435_761))).unwrap());
        }
        // About 12k values (95 KB) at 2M; KLL grows only by a few values
        // per doubling of n from here.
        let bytes = kll.num_retained() * std::mem::size_of::<f64>();
        assert!(bytes < 120_000, "{bytes}");
    }

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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The edges from the sketch sit within its rank error of the exact
        /// deciles ([`reference_edges`]), measured as ranks in the sample.
        #[test]
        fn edges_are_within_the_rank_error_of_the_exact_deciles(
            seed in any::<u64>(),
            n in 1usize..60_000,
            discrete in any::<bool>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let sample: Vec<f64> = (0..n)
                .map(|_| {
                    let x: f64 = rng.random::<f64>().powi(2) * 100.0;
                    if discrete { x.round() } else { x }
                })
                .collect();
            let kll = kll_of(&sample);
            let edges = kll_edges(&kll, DEFAULT_BINS).unwrap();
            let exact = reference_edges(&sample, DEFAULT_BINS).unwrap();
            prop_assert!(!edges.is_empty() && edges.windows(2).all(|w| w[0] < w[1]));
            let eps = if kll.is_estimation_mode() { kll.normalized_rank_error() } else { 0.0 };
            let total = n as f64;
            let rank = |e: f64| {
                let below = sample.iter().filter(|&&x| x < e).count() as f64 / total;
                let at = sample.iter().filter(|&&x| x <= e).count() as f64 / total;
                (below, at)
            };
            // Every decile is covered by an edge whose rank interval (ties
            // make it wide) is within 2ε (+1/n for the nearest rank).
            for i in 1..DEFAULT_BINS {
                let q = i as f64 / DEFAULT_BINS as f64;
                let slack = 2.0 * eps + 1.0 / total;
                let hit = edges.iter().any(|&e| {
                    let (below, at) = rank(e);
                    below - slack <= q && q <= at + slack
                });
                prop_assert!(hit, "decile {} has no edge within {}: {:?} vs exact {:?}",
                    q, slack, edges, exact);
            }
        }
    }
}

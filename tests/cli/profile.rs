//! `driftline profile`: reference profiles built from data files in two
//! streaming passes, checked against exact computation on the same data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datasketches::kll::{KllFloat, KllSketch};
use driftline::app::profile::{
    build_profile, BuiltProfile, NoProgress, ProfileBuildError, ProfileOptions,
};
use driftline::app::watched_columns;
use driftline::drift::profile::{ColumnSketch, Profile, SCORE_COLUMN};
use driftline::drift::profile_build::EDGE_KLL_K;
use driftline::drift::sketch::{CategoricalSketch, NumericSketch};
use driftline::drift::stats::{bin_counts, reference_edges, DEFAULT_BINS};
use driftline::drift::Side;
use driftline::event::RejectReason;
use driftline::score::Manifest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn mlp() -> PathBuf {
    repo("models/fraud-mlp/1")
}

/// One column of a test table.
#[derive(Clone)]
enum Col {
    Num(Vec<Option<f64>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

impl Col {
    fn array(&self) -> ArrayRef {
        match self {
            Col::Num(v) => Arc::new(Float64Array::from(v.clone())),
            Col::Int(v) => Arc::new(Int64Array::from(v.clone())),
            Col::Bool(v) => Arc::new(BooleanArray::from(v.clone())),
            Col::Text(v) => Arc::new(StringArray::from(v.clone())),
        }
    }

    /// The cell as CSV text (empty when null; `f64`'s shortest round-trip form).
    fn csv(&self, r: usize) -> String {
        match self {
            Col::Num(v) => v[r].map_or(String::new(), |x| x.to_string()),
            Col::Int(v) => v[r].map_or(String::new(), |x| x.to_string()),
            Col::Bool(v) => v[r].map_or(String::new(), |x| x.to_string()),
            Col::Text(v) => v[r].clone().unwrap_or_default(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Col::Num(v) => v.len(),
            Col::Int(v) => v.len(),
            Col::Bool(v) => v.len(),
            Col::Text(v) => v.len(),
        }
    }
}

type Table = Vec<(&'static str, Col)>;

const MERCHANTS: [&str; 8] = [
    "grocery",
    "restaurants",
    "fuel",
    "online_retail",
    "travel",
    "electronics",
    "gaming",
    "pharmacy",
];
const CHANNELS: [&str; 4] = ["chip", "contactless", "online", "swipe"];
const TIERS: [&str; 3] = ["standard", "gold", "platinum"];

/// `n` rows with every input of the fraud models, roughly like the
/// training data: skewed amounts, integer hours, a few missing values.
fn table(n: usize, seed: u64) -> Table {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut num = |f: &mut dyn FnMut(&mut StdRng) -> Option<f64>| {
        Col::Num((0..n).map(|_| f(&mut rng)).collect())
    };
    let amount = num(&mut |r| Some((r.random::<f64>() * 6.0).exp().round() / 4.0));
    let distance = num(&mut |r| Some((r.random::<f64>() * 9.0).exp() / 10.0));
    let age = num(&mut |r| (!r.random_bool(0.02)).then(|| r.random_range(30..4000) as f64));
    let limit = num(&mut |r| Some(r.random_range(5..200) as f64 * 100.0));
    let avg = num(&mut |r| Some(r.random_range(10.0..150.0)));
    let chargebacks = num(&mut |r| Some(f64::from(u8::from(r.random_bool(0.1)))));
    let mean_24h = num(&mut |r| (!r.random_bool(0.1)).then(|| r.random_range(5.0..500.0)));
    let max_24h = num(&mut |r| (!r.random_bool(0.1)).then(|| r.random_range(5.0..900.0)));
    let mut pick = |names: &[&str]| {
        Col::Text(
            (0..n)
                .map(|_| Some(names[rng.random_range(0..names.len())].to_owned()))
                .collect(),
        )
    };
    let merchant = pick(&MERCHANTS);
    let channel = pick(&CHANNELS);
    let tier = pick(&TIERS);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let hour = Col::Int((0..n).map(|_| Some(rng.random_range(0..24))).collect());
    let international = Col::Bool((0..n).map(|_| Some(rng.random_bool(0.05))).collect());
    let count_1h = Col::Int((0..n).map(|_| Some(rng.random_range(0..4))).collect());
    vec![
        ("amount", amount),
        ("merchant_category", merchant),
        ("channel", channel),
        ("hour", hour),
        ("is_international", international),
        ("distance_from_home_km", distance),
        ("account_age_days", age),
        ("credit_limit", limit),
        ("avg_amount_90d", avg),
        ("chargebacks_1y", chargebacks),
        ("card_tier", tier),
        ("txn_count_1h", count_1h),
        ("amount_mean_24h", mean_24h),
        ("amount_max_24h", max_24h),
    ]
}

fn set(table: &mut Table, name: &str, col: Col) {
    match table.iter_mut().find(|(n, _)| *n == name) {
        Some((_, c)) => *c = col,
        None => panic!("no column {name}"),
    }
}

fn batch(table: &Table) -> RecordBatch {
    RecordBatch::try_from_iter(table.iter().map(|(n, c)| (*n, c.array()))).unwrap()
}

fn write_csv(path: &Path, table: &Table) {
    let rows = table[0].1.len();
    let mut text = table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",");
    text.push('\n');
    for r in 0..rows {
        let cells: Vec<String> = table.iter().map(|(_, c)| c.csv(r)).collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn write_parquet(path: &Path, table: &Table) {
    let b = batch(table);
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, b.schema(), None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

fn write_ipc(path: &Path, table: &Table) {
    let b = batch(table);
    let f = std::fs::File::create(path).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &b.schema()).unwrap();
    w.write(&b).unwrap();
    w.finish().unwrap();
}

fn build(data: &Path, opts: &ProfileOptions) -> Result<BuiltProfile, ProfileBuildError> {
    build_profile(data, &mlp(), opts, &mut NoProgress)
}

fn numeric<'a>(p: &'a Profile, name: &str) -> &'a NumericSketch {
    let column = if name == SCORE_COLUMN {
        Some(&p.score)
    } else {
        p.column(name)
    };
    match column.map(|c| &c.sketch) {
        Some(ColumnSketch::Numeric(s)) => s,
        other => panic!("{name}: {other:?}"),
    }
}

fn categorical<'a>(p: &'a Profile, name: &str) -> &'a CategoricalSketch {
    match p.column(name).map(|c| &c.sketch) {
        Some(ColumnSketch::Categorical(s)) => s,
        other => panic!("{name}: {other:?}"),
    }
}

fn manifest() -> Manifest {
    Manifest::load(&mlp().join("model.toml")).unwrap()
}

#[test]
fn csv_parquet_and_arrow_give_equal_sketches() {
    let dir = tempfile::tempdir().unwrap();
    // Small enough that no KLL compacts: every sketch is deterministic.
    let mut t = table(150, 1);
    let tiers = (0..150).map(|i| (i % 7 != 0).then(|| TIERS[i % 3].into()));
    set(&mut t, "card_tier", Col::Text(tiers.collect()));
    // Booleans as 0/1 integers in one file must profile like true/false.
    let mut ints = t.clone();
    if let Some((_, Col::Bool(v))) = t.iter().find(|(n, _)| *n == "is_international") {
        let v = v.iter().map(|b| b.map(i64::from)).collect();
        set(&mut ints, "is_international", Col::Int(v));
    }
    let files = [
        ("t.csv", write_csv as fn(&Path, &Table), &t),
        ("t.parquet", write_parquet, &t),
        ("t.arrow", write_ipc, &t),
        ("ints.parquet", write_parquet, &ints),
    ];
    let mut built = Vec::new();
    for (name, write, table) in files {
        let path = dir.path().join(name);
        write(&path, table);
        built.push((name, build(&path, &ProfileOptions::default()).unwrap()));
    }
    let (_, first) = &built[0];
    assert_eq!(first.rows, 150);
    assert_eq!(first.profile.columns.len(), 14);
    first
        .profile
        .check_against(&watched_columns(&manifest()), Path::new("t.csv"))
        .unwrap();
    for (name, b) in &built[1..] {
        let a = &first.profile;
        let p = &b.profile;
        assert_eq!(b.rows, first.rows, "{name}");
        assert_eq!(b.scored, first.scored, "{name}");
        for (x, y) in a.columns.iter().zip(&p.columns) {
            assert_eq!(x, y, "{name}: column {}", x.name);
        }
        assert_eq!(a.score, p.score, "{name}: score");
        assert_eq!(a.model, p.model);
    }
    let p = &first.profile;
    assert_eq!(p.model, "fraud-mlp");
    assert_eq!(p.model_version, "1");
    assert!(
        p.id.starts_with("fraud-mlp/1@") && p.id.len() == "fraud-mlp/1@".len() + 12,
        "{}",
        p.id
    );
    assert!(p.source.sha256.starts_with(&p.id["fraud-mlp/1@".len()..]));
    // Nulls of a defaulted input are missing in its sketch, yet scored.
    let tier = categorical(p, "card_tier");
    assert_eq!(tier.missing(), 22);
    assert_eq!(first.scored, 150);
}

#[test]
fn categoricals_booleans_and_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let mut t = table(n, 2);
    // channel: 20 online, 12 chip, 4 "atm" (not in the vocabulary), 4 missing.
    let channel = (0..n)
        .map(|i| match i {
            0..=19 => Some("online".to_owned()),
            20..=31 => Some("chip".to_owned()),
            32..=35 => Some("atm".to_owned()),
            36 | 37 => None,
            _ => Some(String::new()),
        })
        .collect();
    set(&mut t, "channel", Col::Text(channel));
    // is_international as text in every spelling the reader accepts.
    let spellings = ["true", "FALSE", "0", "1", "True", "", "false", "1.0"];
    let text = (0..n).map(|i| Some(spellings[i % 8].to_owned())).collect();
    set(&mut t, "is_international", Col::Text(text));
    // amount (no default): two nulls; credit_limit (default): five nulls.
    if let Some((_, Col::Num(v))) = t.iter_mut().find(|(n, _)| *n == "amount") {
        v[0] = None;
        v[1] = None;
    }
    if let Some((_, Col::Num(v))) = t.iter_mut().find(|(n, _)| *n == "credit_limit") {
        v.iter_mut().take(5).for_each(|x| *x = None);
    }
    // A constant column still gets a bin edge: the value.
    set(&mut t, "hour", Col::Int(vec![Some(12); n]));
    let path = dir.path().join("cats.parquet");
    write_parquet(&path, &t);
    let opts = ProfileOptions {
        top_k: 2,
        ..ProfileOptions::default()
    };
    let built = build(&path, &opts).unwrap();
    let p = &built.profile;

    let channel = categorical(p, "channel");
    assert_eq!(channel.categories(), &["online", "chip"]);
    assert_eq!(channel.counts(), &[20, 12, 4], "listed, then other");
    assert_eq!(channel.missing(), 4, "null and empty text are missing");

    let international = categorical(p, "is_international");
    assert_eq!(international.categories(), &["false", "true"]);
    // Per 8 rows: false, FALSE, 0 | true, 1, True, 1.0 | "" missing.
    assert_eq!(international.counts(), &[15, 20, 0]);
    assert_eq!(international.missing(), 5);

    let amount = numeric(p, "amount");
    assert_eq!((amount.count(), amount.missing()), (38, 2));
    let limit = numeric(p, "credit_limit");
    assert_eq!((limit.count(), limit.missing()), (35, 5));
    assert_eq!(numeric(p, "hour").edges(), &[12.0]);
    assert_eq!(numeric(p, "hour").histogram(), &[40, 0]);

    // Left out of the score: "atm" (unknown category, no `on_unknown`),
    // and rows missing an input without a default: amount (rows 1 and 2),
    // channel (37..=40), is_international (6, 14, 22, 30; 38 lacks a
    // channel first). Rows are 1-based.
    assert_eq!(built.scored, 26);
    let skipped: Vec<(RejectReason, u64)> =
        built.skipped.iter().map(|s| (s.reason, s.rows)).collect();
    assert_eq!(
        skipped,
        vec![
            (RejectReason::MissingFeature, 10),
            (RejectReason::UnknownCategory, 4)
        ]
    );
    let missing = &built.skipped[0].example;
    assert!(missing.starts_with("row 1: feature `amount`"), "{missing}");
    assert!(built.skipped[1].example.contains("\"atm\""));
    let score = numeric(p, SCORE_COLUMN);
    assert_eq!((score.count(), score.missing()), (26, 0));
}

#[test]
fn bad_cells_name_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let t = table(5, 3);
    let path = dir.path().join("bad.csv");
    write_csv(&path, &t);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Row 3 (line 4): amount is not a number.
    let mut cells: Vec<String> = lines[3].split(',').map(str::to_owned).collect();
    cells[0] = "lots".into();
    lines[3] = cells.join(",");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = build(&path, &ProfileOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 3: column `amount`: expected a number, got \"lots\"",
            path.display()
        )
    );

    let mut t = table(5, 3);
    let flags = ["true", "false", "maybe", "true", "true"];
    let text = flags.iter().map(|s| Some((*s).to_owned())).collect();
    set(&mut t, "is_international", Col::Text(text));
    let path = dir.path().join("bad.arrow");
    write_ipc(&path, &t);
    let err = build(&path, &ProfileOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 3: column `is_international`: expected true/false or 0/1, got \"maybe\"",
            path.display()
        )
    );

    let mut t = table(5, 3);
    set(&mut t, "channel", Col::Int(vec![Some(1); 5]));
    let path = dir.path().join("typed.parquet");
    write_parquet(&path, &t);
    let err = build(&path, &ProfileOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("column `channel`: expected a text column, got Int64"),
        "{err}"
    );
}

#[test]
fn a_missing_column_names_the_file_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = table(50, 4);
    t.retain(|(n, _)| *n != "avg_amount_90d");
    let path = dir.path().join("no_avg.parquet");
    write_parquet(&path, &t);
    let err = build(&path, &ProfileOptions::default()).unwrap_err();
    assert!(
        matches!(&err, ProfileBuildError::MissingColumn { column, .. } if column == "avg_amount_90d"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: no column `avg_amount_90d`", path.display())),
        "{msg}"
    );

    // Allowed: all-missing in its sketch; the score uses the default.
    let opts = ProfileOptions {
        allow_missing_columns: true,
        ..ProfileOptions::default()
    };
    let built = build(&path, &opts).unwrap();
    assert_eq!(built.absent_columns, vec!["avg_amount_90d".to_owned()]);
    let avg = numeric(&built.profile, "avg_amount_90d");
    assert_eq!((avg.count(), avg.missing()), (0, 50));
    assert_eq!(built.scored, 50);
    built
        .profile
        .check_against(&watched_columns(&manifest()), Path::new("x"))
        .unwrap();

    let err = build(&dir.path().join("absent.csv"), &opts).unwrap_err();
    assert!(err.to_string().contains("absent.csv: cannot open"), "{err}");
    let err = build(&dir.path().join("data.xlsx"), &opts).unwrap_err();
    assert!(
        matches!(err, ProfileBuildError::UnknownFormat { .. }),
        "{err}"
    );
}

/// Over the KLL's capacity, so its compaction (and its error) is exercised.
#[test]
fn histograms_are_exact_and_edges_within_the_rank_error() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30_000;
    let mut t = table(n, 5);
    // A continuous column without ties, so each edge is one decile.
    let mut rng = StdRng::seed_from_u64(9);
    let values: Vec<Option<f64>> = (0..n)
        .map(|_| (!rng.random_bool(0.03)).then(|| rng.random::<f64>().powi(3) * 1e4))
        .collect();
    set(&mut t, "distance_from_home_km", Col::Num(values.clone()));
    let path = dir.path().join("big.parquet");
    write_parquet(&path, &t);
    let opts = ProfileOptions {
        batch_rows: 4096,
        ..ProfileOptions::default()
    };
    let built = build(&path, &opts).unwrap();
    let sketch = numeric(&built.profile, "distance_from_home_km");
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    assert_eq!(sketch.count(), present.len() as u64);
    assert_eq!(sketch.missing(), (n - present.len()) as u64);

    // Histogram: exact counts on the profile's edges.
    let exact = bin_counts(sketch.edges(), &present, Side::Reference).unwrap();
    assert_eq!(sketch.histogram(), exact.as_slice());

    // Edges: each within the pass-1 KLL's rank error of its decile. The
    // bound holds with 99% confidence; 2ε (as the sketch tests allow)
    // leaves room for that without hiding a wrong edge (a decile apart).
    let exact_edges = reference_edges(&present, DEFAULT_BINS).unwrap();
    assert_eq!(sketch.edges().len(), exact_edges.len());
    let eps = KllSketch::<KllFloat<f64>>::new(EDGE_KLL_K)
        .unwrap()
        .normalized_rank_error();
    assert!(eps < 0.001, "{eps}");
    let total = present.len() as f64;
    for (i, (&edge, &exact_edge)) in sketch.edges().iter().zip(&exact_edges).enumerate() {
        let below = present.iter().filter(|&&x| x < edge).count() as f64 / total;
        let at_or_below = present.iter().filter(|&&x| x <= edge).count() as f64 / total;
        let q = (i + 1) as f64 / DEFAULT_BINS as f64;
        assert!(
            below - 2.0 * eps <= q && q <= at_or_below + 2.0 * eps,
            "edge {i}: {edge} has rank {below}..{at_or_below}, decile {q} (exact {exact_edge})"
        );
    }

    // The score sketch, too, counts every scored row in its histogram.
    let score = numeric(&built.profile, SCORE_COLUMN);
    assert_eq!(score.count(), built.scored);
    assert_eq!(score.histogram().iter().sum::<u64>(), built.scored);
}

#[test]
fn the_training_data_profile_fits_the_model() {
    let data = repo("data/transactions.parquet");
    let built = build(&data, &ProfileOptions::default()).unwrap();
    let p = &built.profile;
    p.check_against(&watched_columns(&manifest()), &data)
        .unwrap();
    assert_eq!(p.source.rows, built.rows);
    assert!(built.rows > 40_000, "{}", built.rows);
    // Rows with empty aggregate windows are nulls in the file: missing.
    assert!(numeric(p, "amount_mean_24h").missing() > 0);
    // Every row has what the live loop needs, with defaults.
    assert_eq!(built.scored, built.rows, "{:?}", built.skipped);
    // It round-trips through the file format.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reference.json");
    p.save(&out).unwrap();
    assert_eq!(&Profile::load(&out).unwrap(), p);
}

/// The committed profiles load and fit their models.
#[test]
fn committed_reference_profiles_fit_their_models() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("models")).unwrap() {
        let dir = entry.unwrap().path().join("1");
        let manifest = Manifest::load(&dir.join("model.toml")).unwrap();
        let Some(reference) = &manifest.reference else {
            continue;
        };
        let path = dir.join(reference);
        let profile = Profile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        profile
            .check_against(&watched_columns(&manifest), &path)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(profile.model, manifest.name);
        checked += 1;
    }
    assert!(checked > 0, "no model names a reference profile");
}

#[test]
fn cli_builds_a_profile_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("small.csv");
    write_csv(&data, &table(300, 6));
    let out_path = dir.path().join("profile.json");
    let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["profile", "--model", "models/fraud-mlp/1", "--bins", "5"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("fraud-mlp/1@"), "{stdout}");
    assert!(stdout.contains("300 rows scored"), "{stdout}");
    assert!(stdout.contains("rows/s"), "{stdout}");
    // No progress bar when stderr is not a terminal.
    assert!(stderr.is_empty(), "{stderr}");
    let profile = Profile::load(&out_path).unwrap();
    profile
        .check_against(&watched_columns(&manifest()), &out_path)
        .unwrap();
    assert!(numeric(&profile, "amount").edges().len() <= 4);

    let mut t = table(10, 6);
    t.retain(|(n, _)| *n != "hour");
    let data = dir.path().join("no_hour.csv");
    write_csv(&data, &t);
    let out = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["profile", "--model", "models/fraud-mlp/1"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("never.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: no column `hour`", data.display())),
        "{stderr}"
    );
    assert!(!dir.path().join("never.json").exists());
}

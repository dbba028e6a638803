//! Bulk loading of the online store from a Parquet, Arrow IPC or CSV snapshot.
//!
//! Guarantees:
//!
//! - **Bounded memory.** Files are read one record batch at a time
//!   (`batch_size` rows, [`crate::tabular`]); nothing holds the whole file.
//! - **Same result from every format.** A snapshot written as Parquet, Arrow IPC
//!   (file or stream format) or CSV loads into identical rows: numbers of any
//!   integer or float type become the store's `f32`, text (plain, large or
//!   dictionary-encoded) becomes a category, and a null or empty cell is
//!   missing.
//! - **Errors say where.** Every error names the file, and where it applies the
//!   column and the 1-based data row (CSV header not counted). Input never
//!   causes a panic.
//! - **Not atomic.** Rows are upserted as they are read; when a load fails,
//!   the rows before the failing one stay in the store. Column types are
//!   checked before the first row is written, so a mistyped column fails the
//!   load without writing anything.
//!
//! Schema columns absent from the file are reported, not an error (they stay
//! missing); file columns the store does not know are reported and skipped.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, TimeUnit};
use compact_str::CompactString;

use crate::event::FeatureValue;
use crate::features::store::{ColumnKind, FeatureStore, StoreError, StoreSchema};
use crate::tabular::{self, CsvType, Format, ReadOptions, Table, TabularError};

/// How to read a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Column holding the entity id (text or integer); default `entity_id`.
    pub entity_column: String,
    /// Column holding the row's update time in epoch milliseconds (any integer
    /// type, or an Arrow timestamp); default `updated_at`. When the file has no
    /// such column, or a cell is null, `default_updated_at_ms` is used.
    pub updated_at_column: Option<String>,
    /// Update time of rows without one. The default is the time the options were built.
    pub default_updated_at_ms: i64,
    /// Overrides the format implied by the file extension.
    pub format: Option<Format>,
    /// Rows per record batch: the unit of memory use while loading.
    pub batch_size: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            entity_column: "entity_id".to_string(),
            updated_at_column: Some("updated_at".to_string()),
            default_updated_at_ms: crate::event::now_ms(),
            format: None,
            batch_size: 8192,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    /// Rows upserted.
    pub rows: usize,
    /// File columns that are not store columns (nor the entity or time column), in file order.
    pub ignored_columns: Vec<String>,
    /// Store columns the file does not have, in schema order; they stay missing.
    pub missing_columns: Vec<String>,
}

/// Why a snapshot could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: cannot open snapshot: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: cannot tell the snapshot format from the file name (expected .parquet, .pq, .arrow, .arrows, .ipc or .csv); set the format explicitly",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    /// Reading the file: its format, a column's type, a cell.
    #[error(transparent)]
    Table(#[from] TabularError),
    #[error("{}: no entity column `{column}`", path.display())]
    NoEntityColumn { path: PathBuf, column: String },
    #[error("{}: row {row}: {source}", path.display())]
    Store {
        path: PathBuf,
        row: usize,
        source: StoreError,
    },
}

/// What each batch column means to the store.
struct Plan {
    format: Format,
    /// Columns per batch; readers promise it, the loader checks it rather than index blindly.
    width: usize,
    entity: usize,
    updated_at: Option<usize>,
    /// `(batch column, store column, kind)`.
    columns: Vec<(usize, usize, ColumnKind)>,
}

/// A batch column cast to the type the loader reads.
enum Cells {
    Number(Float64Array),
    Text(StringArray),
}

/// Column roles, shared by the reader (which columns to keep, their CSV
/// types) and the planner.
struct Roles<'a> {
    schema: &'a StoreSchema,
    entity: &'a str,
    updated_at: Option<&'a str>,
}

impl Roles<'_> {
    fn wanted(&self, name: &str) -> bool {
        name == self.entity || self.updated_at == Some(name) || self.schema.index_of(name).is_some()
    }

    fn csv_type(&self, name: &str) -> CsvType {
        if name == self.entity {
            CsvType::Text
        } else if self.updated_at == Some(name) {
            CsvType::Integer("an integer (epoch milliseconds)")
        } else {
            match self
                .schema
                .index_of(name)
                .map(|i| self.schema.columns()[i].kind)
            {
                Some(ColumnKind::Numeric) => CsvType::Number,
                _ => CsvType::Text,
            }
        }
    }
}

/// Loads a snapshot into `store`, upserting one row per file row.
///
/// Each row writes every store column the file has (a null cell clears the
/// column); store columns missing from the file are left as they are.
pub fn load_snapshot(
    store: &FeatureStore,
    path: &Path,
    opts: &SnapshotOptions,
) -> Result<SnapshotReport, SnapshotError> {
    let format = match opts.format {
        Some(f) => f,
        None => Format::from_path(path).ok_or_else(|| SnapshotError::UnknownFormat {
            path: path.to_path_buf(),
        })?,
    };
    let roles = Roles {
        schema: store.schema(),
        entity: &opts.entity_column,
        updated_at: opts.updated_at_column.as_deref(),
    };
    let file = File::open(path).map_err(|source| SnapshotError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let keep = |name: &str| roles.wanted(name);
    let csv_type = |name: &str| roles.csv_type(name);
    let read = ReadOptions {
        batch_rows: opts.batch_size,
        keep: &keep,
        csv_type: &csv_type,
    };
    let table = tabular::open(file, path, format, &read)?;
    table.check_duplicates(path, &keep)?;

    let plan = plan(path, format, &table, &roles)?;
    let mut report = SnapshotReport {
        rows: 0,
        ignored_columns: table
            .file_columns
            .iter()
            .filter(|c| !roles.wanted(c))
            .cloned()
            .collect(),
        missing_columns: store
            .schema()
            .columns()
            .iter()
            .filter(|c| !table.file_columns.iter().any(|f| f == c.name.as_str()))
            .map(|c| c.name.to_string())
            .collect(),
    };

    let mut values = Vec::with_capacity(plan.columns.len());
    for batch in table.batches {
        report.rows += load_batch(store, path, &plan, &batch?, report.rows, opts, &mut values)?;
    }
    Ok(report)
}

fn plan(
    path: &Path,
    format: Format,
    table: &Table,
    roles: &Roles<'_>,
) -> Result<Plan, SnapshotError> {
    let type_err = |field: &Field, expected| TabularError::ColumnType {
        path: path.to_path_buf(),
        column: field.name().clone(),
        expected,
        found: field.data_type().clone(),
    };
    let mut entity = None;
    let mut updated_at = None;
    let mut columns = Vec::new();
    for (i, field) in table.schema.fields().iter().enumerate() {
        let name = field.name().as_str();
        let dt = field.data_type();
        if name == roles.entity {
            if !(tabular::is_text(dt) || dt.is_integer()) {
                return Err(type_err(field, "a text or integer entity id").into());
            }
            entity = Some(i);
        } else if roles.updated_at == Some(name) {
            if !(dt.is_integer() || matches!(dt, DataType::Timestamp(..))) {
                return Err(type_err(field, "integer epoch milliseconds or a timestamp").into());
            }
            updated_at = Some(i);
        } else if let Some(col) = roles.schema.index_of(name) {
            let kind = roles.schema.columns()[col].kind;
            match kind {
                ColumnKind::Numeric if !dt.is_numeric() => {
                    return Err(type_err(field, "a numeric column").into())
                }
                ColumnKind::Categorical if !tabular::is_text(dt) => {
                    return Err(type_err(field, "a text column").into())
                }
                _ => columns.push((i, col, kind)),
            }
        }
    }
    let entity = entity.ok_or_else(|| SnapshotError::NoEntityColumn {
        path: path.to_path_buf(),
        column: roles.entity.to_string(),
    })?;
    Ok(Plan {
        format,
        width: table.schema.fields().len(),
        entity,
        updated_at,
        columns,
    })
}

/// Upserts the rows of one batch; `done` rows precede it. Returns the batch's row count.
fn load_batch(
    store: &FeatureStore,
    path: &Path,
    plan: &Plan,
    batch: &RecordBatch,
    done: usize,
    opts: &SnapshotOptions,
    values: &mut Vec<(usize, FeatureValue)>,
) -> Result<usize, SnapshotError> {
    if batch.num_columns() != plan.width {
        return Err(TabularError::Read {
            path: path.to_path_buf(),
            format: plan.format,
            source: format!(
                "record batch has {} columns, the file schema {}",
                batch.num_columns(),
                plan.width
            )
            .into(),
        }
        .into());
    }
    let schema = batch.schema();
    let name = |i: usize| schema.field(i).name().clone();
    let convert_err = |i: usize| {
        let column = name(i);
        move |source| TabularError::Convert {
            path: path.to_path_buf(),
            column,
            source,
        }
    };
    let convert =
        |i: usize, a: &ArrayRef, to: &DataType| tabular::cast(a, to).map_err(convert_err(i));
    let as_text = |i: usize| -> Result<StringArray, TabularError> {
        let a = convert(i, batch.column(i), &DataType::Utf8)?;
        tabular::downcast::<StringArray>(&a).map_err(convert_err(i))
    };

    let entities = as_text(plan.entity)?;
    let times = match plan.updated_at {
        Some(i) => {
            let mut a = batch.column(i).clone();
            // Timestamps of any unit become milliseconds before the type is dropped.
            if let DataType::Timestamp(unit, tz) = a.data_type() {
                if *unit != TimeUnit::Millisecond {
                    let ms = DataType::Timestamp(TimeUnit::Millisecond, tz.clone());
                    a = convert(i, &a, &ms)?;
                }
            }
            let a = convert(i, &a, &DataType::Int64)?;
            Some(tabular::downcast::<Int64Array>(&a).map_err(convert_err(i))?)
        }
        None => None,
    };
    let cells = plan
        .columns
        .iter()
        .map(|&(i, col, kind)| {
            let cells = match kind {
                ColumnKind::Numeric => {
                    let a = convert(i, batch.column(i), &DataType::Float64)?;
                    Cells::Number(tabular::downcast::<Float64Array>(&a).map_err(convert_err(i))?)
                }
                ColumnKind::Categorical => Cells::Text(as_text(i)?),
            };
            Ok((i, col, cells))
        })
        .collect::<Result<Vec<_>, TabularError>>()?;

    for r in 0..batch.num_rows() {
        let row = done + r + 1;
        let cell_err = |i: usize, problem: String| TabularError::Cell {
            path: path.to_path_buf(),
            row: row as u64,
            column: name(i),
            problem,
        };
        if entities.is_null(r) {
            return Err(cell_err(plan.entity, "null entity id".to_string()).into());
        }
        let entity = entities.value(r);
        if entity.is_empty() {
            return Err(cell_err(plan.entity, "empty entity id".to_string()).into());
        }
        let updated_at_ms = match &times {
            Some(t) if t.is_valid(r) => t.value(r),
            _ => opts.default_updated_at_ms,
        };
        values.clear();
        for (i, col, cells) in &cells {
            let value = match cells {
                Cells::Number(a) if a.is_valid(r) => {
                    let x = a.value(r);
                    if !x.is_finite() {
                        return Err(
                            cell_err(*i, format!("expected a finite number, got {x}")).into()
                        );
                    }
                    if !(x as f32).is_finite() {
                        return Err(
                            cell_err(*i, format!("number {x:e} does not fit in an f32")).into()
                        );
                    }
                    FeatureValue::Number(x)
                }
                // Empty text means missing, as it does in CSV, so formats agree.
                Cells::Text(a) if a.is_valid(r) && !a.value(r).is_empty() => {
                    FeatureValue::Text(CompactString::new(a.value(r)))
                }
                _ => FeatureValue::Null,
            };
            values.push((*col, value));
        }
        store
            .upsert_indexed(entity, values, updated_at_ms)
            .map_err(|source| SnapshotError::Store {
                path: path.to_path_buf(),
                row,
                source,
            })?;
    }
    Ok(batch.num_rows())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use std::sync::Arc;

    use arrow::array::{DictionaryArray, Int32Array, TimestampSecondArray};
    use arrow::datatypes::Int32Type;

    use super::*;
    use crate::features::store::{Column, StoreConfig};

    type Dump = BTreeMap<String, (i64, Vec<FeatureValue>)>;

    fn cards_schema() -> StoreSchema {
        StoreSchema::new(vec![
            Column::numeric("account_age_days"),
            Column::numeric("credit_limit"),
            Column::numeric("avg_amount_90d"),
            Column::numeric("chargebacks_1y"),
            Column::categorical("card_tier"),
        ])
        .unwrap()
    }

    fn new_store() -> FeatureStore {
        FeatureStore::new(cards_schema(), StoreConfig::default())
    }

    fn opts() -> SnapshotOptions {
        SnapshotOptions {
            default_updated_at_ms: 7,
            batch_size: 2,
            ..SnapshotOptions::default()
        }
    }

    fn dump(store: &FeatureStore) -> Dump {
        let mut out = BTreeMap::new();
        store.for_each_row(|k, t, row| {
            let values = (0..store.schema().len())
                .map(|c| store.value(row, c))
                .collect();
            out.insert(k.to_string(), (t, values));
        });
        out
    }

    /// Five rows: a null number, an empty and a null category, an int column,
    /// an ignored column, and no `chargebacks_1y`.
    fn sample(dictionary_tier: bool) -> RecordBatch {
        let tiers = [
            Some("gold"),
            Some("std"),
            None,
            Some("platinum-with-a-very-long-name"),
            Some(""),
        ];
        let tier: ArrayRef = if dictionary_tier {
            Arc::new(tiers.into_iter().collect::<DictionaryArray<Int32Type>>())
        } else {
            Arc::new(StringArray::from(tiers.to_vec()))
        };
        RecordBatch::try_from_iter(vec![
            (
                "entity_id",
                Arc::new(StringArray::from(vec![
                    "card-1", "card-2", "card-3", "card-4", "card-5",
                ])) as ArrayRef,
            ),
            (
                "updated_at",
                Arc::new(Int64Array::from(vec![
                    Some(100),
                    Some(200),
                    None,
                    Some(400),
                    Some(500),
                ])),
            ),
            (
                "account_age_days",
                Arc::new(Int32Array::from(vec![10, 20, 30, 40, 50])),
            ),
            (
                "credit_limit",
                Arc::new(Float64Array::from(vec![
                    Some(1000.5),
                    None,
                    Some(3000.0),
                    Some(0.1),
                    Some(-2.0),
                ])),
            ),
            (
                "avg_amount_90d",
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0])),
            ),
            ("card_tier", tier),
            (
                "notes",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])),
            ),
        ])
        .unwrap()
    }

    fn write_parquet(path: &Path, batch: &RecordBatch) {
        let f = File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    fn write_ipc_file(path: &Path, batch: &RecordBatch) {
        let f = File::create(path).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(f, &batch.schema()).unwrap();
        w.write(batch).unwrap();
        w.finish().unwrap();
    }

    fn write_ipc_stream(path: &Path, batch: &RecordBatch) {
        let f = File::create(path).unwrap();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(f, &batch.schema()).unwrap();
        w.write(batch).unwrap();
        w.finish().unwrap();
    }

    fn write_csv(path: &Path, batch: &RecordBatch) {
        // The CSV writer cannot write dictionaries; the test data has none here.
        let f = File::create(path).unwrap();
        let mut w = arrow::csv::Writer::new(f);
        w.write(batch).unwrap();
    }

    fn load(path: &Path) -> (Dump, SnapshotReport) {
        let store = new_store();
        let report = load_snapshot(&store, path, &opts()).unwrap();
        (dump(&store), report)
    }

    #[test]
    fn all_formats_load_identically() {
        let dir = tempfile::tempdir().unwrap();
        let plain = sample(false);
        let dict = sample(true);
        let files = [
            ("s.parquet", &dict, write_parquet as fn(&Path, &RecordBatch)),
            ("s.pq", &plain, write_parquet),
            ("s.arrow", &dict, write_ipc_file),
            ("s.arrows", &plain, write_ipc_stream),
            ("s.ipc", &dict, write_ipc_stream),
            ("s.csv", &plain, write_csv),
        ];
        let mut results = Vec::new();
        for (name, batch, write) in files {
            let path = dir.path().join(name);
            write(&path, batch);
            results.push((name, load(&path)));
        }
        let (_, (first, report)) = &results[0];
        assert_eq!(report.rows, 5);
        assert_eq!(report.ignored_columns, vec!["notes".to_string()]);
        assert_eq!(report.missing_columns, vec!["chargebacks_1y".to_string()]);
        let num = FeatureValue::Number;
        let text = |s: &str| FeatureValue::Text(s.into());
        assert_eq!(
            first["card-1"],
            (
                100,
                vec![
                    num(10.0),
                    num(1000.5),
                    num(1.0),
                    FeatureValue::Null,
                    text("gold")
                ]
            )
        );
        assert_eq!(first["card-2"].1[1], FeatureValue::Null);
        assert_eq!(first["card-3"].0, 7, "null updated_at takes the default");
        assert_eq!(first["card-3"].1[4], FeatureValue::Null);
        assert_eq!(first["card-4"].1[1], num(f64::from(0.1f32)));
        assert_eq!(first["card-4"].1[4], text("platinum-with-a-very-long-name"));
        assert_eq!(
            first["card-5"].1[4],
            FeatureValue::Null,
            "empty category is missing"
        );
        for (name, (d, r)) in &results[1..] {
            assert_eq!(d, first, "{name}");
            assert_eq!(r, report, "{name}");
        }
    }

    #[test]
    fn unknown_formats_and_missing_files_are_named() {
        let store = new_store();
        let err = load_snapshot(&store, Path::new("cards.json"), &opts()).unwrap_err();
        assert!(matches!(err, SnapshotError::UnknownFormat { .. }), "{err}");
        let err = load_snapshot(&store, Path::new("/nonexistent/cards.csv"), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/cards.csv: cannot open snapshot"),
            "{err}"
        );
    }

    #[test]
    fn explicit_format_overrides_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cards.dat");
        write_parquet(&path, &sample(false));
        let store = new_store();
        let o = SnapshotOptions {
            format: Some(Format::Parquet),
            ..opts()
        };
        assert_eq!(load_snapshot(&store, &path, &o).unwrap().rows, 5);
    }

    fn write_text(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn bad_csv_cell_names_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_text(
            dir.path(),
            "cards.csv",
            "entity_id,notes,credit_limit,updated_at\nc1,x,10,1\nc2,y,abc,2\n",
        );
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: row 2: column `credit_limit`: expected a number, got \"abc\"",
                path.display()
            )
        );

        let path = write_text(
            dir.path(),
            "t.csv",
            "entity_id,updated_at\nc1,1\nc2,2\nc3,yesterday\n",
        );
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: row 3: column `updated_at`: expected an integer (epoch milliseconds), got \"yesterday\"",
                path.display()
            )
        );

        let path = write_text(
            dir.path(),
            "nan.csv",
            "entity_id,credit_limit\nc1,1\nc2,inf\n",
        );
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: row 2: column `credit_limit`: expected a finite number, got inf",
                path.display()
            )
        );

        let path = write_text(
            dir.path(),
            "ragged.csv",
            "entity_id,credit_limit\nc1,1\nc2\n",
        );
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Table(TabularError::Read { .. })),
            "{err}"
        );

        let path = write_text(
            dir.path(),
            "empty_id.csv",
            "entity_id,credit_limit\nc1,1\n,2\n",
        );
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: row 2: column `entity_id`: null entity id",
                path.display()
            )
        );

        let path = write_text(dir.path(), "noid.csv", "id,credit_limit\nc1,1\n");
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: no entity column `entity_id`", path.display())
        );

        let path = write_text(dir.path(), "empty.csv", "");
        assert!(load_snapshot(&new_store(), &path, &opts()).is_err());
    }

    #[test]
    fn truncated_ipc_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let batch = sample(false);
        for (name, write) in [
            ("t.arrow", write_ipc_file as fn(&Path, &RecordBatch)),
            ("t.arrows", write_ipc_stream),
        ] {
            let path = dir.path().join(name);
            write(&path, &batch);
            let bytes = std::fs::read(&path).unwrap();
            for cut in [bytes.len() / 2, bytes.len() - 9, 3] {
                std::fs::write(&path, &bytes[..cut]).unwrap();
                let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
                assert!(
                    matches!(err, SnapshotError::Table(TabularError::Read { .. })),
                    "{name} cut at {cut}: {err}"
                );
                assert!(err
                    .to_string()
                    .starts_with(&format!("{}: cannot read arrow ipc", path.display())));
            }
        }
    }

    #[test]
    fn column_type_and_value_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        let ids = Arc::new(StringArray::from(vec!["c1", "c2"])) as ArrayRef;

        let batch = RecordBatch::try_from_iter(vec![
            ("entity_id", ids.clone()),
            (
                "credit_limit",
                Arc::new(StringArray::from(vec!["1", "2"])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_parquet(&path, &batch);
        let store = new_store();
        let err = load_snapshot(&store, &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: column `credit_limit`: expected a numeric column, got Utf8",
                path.display()
            )
        );
        assert!(store.is_empty(), "a mistyped column writes nothing");

        let batch = RecordBatch::try_from_iter(vec![
            ("entity_id", ids.clone()),
            (
                "card_tier",
                Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_parquet(&path, &batch);
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("column `card_tier`: expected a text column, got Int32"),
            "{err}"
        );

        let batch = RecordBatch::try_from_iter(vec![
            ("entity_id", ids.clone()),
            (
                "credit_limit",
                Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_parquet(&path, &batch);
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: row 2: column `credit_limit`: expected a finite number, got NaN",
                path.display()
            )
        );

        let batch = RecordBatch::try_from_iter(vec![
            ("entity_id", ids.clone()),
            (
                "credit_limit",
                Arc::new(Float64Array::from(vec![1.0, 1e300])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_parquet(&path, &batch);
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("row 2: column `credit_limit`: number 1e300 does not fit in an f32"),
            "{err}"
        );

        let batch = RecordBatch::try_from_iter(vec![(
            "entity_id",
            Arc::new(StringArray::from(vec![Some("c1"), None])) as ArrayRef,
        )])
        .unwrap();
        write_parquet(&path, &batch);
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("row 2: column `entity_id`: null entity id"),
            "{err}"
        );

        let batch = RecordBatch::try_from_iter(vec![
            ("entity_id", ids.clone()),
            (
                "updated_at",
                Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_parquet(&path, &batch);
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert!(
            err.to_string()
                .contains("column `updated_at`: expected integer epoch milliseconds"),
            "{err}"
        );

        std::fs::write(&path, b"not a parquet file at all").unwrap();
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read parquet", path.display())),
            "{err}"
        );
    }

    #[test]
    fn timestamps_and_integer_ids_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ts.arrow");
        let batch = RecordBatch::try_from_iter(vec![
            (
                "entity_id",
                Arc::new(Int64Array::from(vec![41, 42])) as ArrayRef,
            ),
            (
                "updated_at",
                Arc::new(TimestampSecondArray::from(vec![1, 2])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_ipc_file(&path, &batch);
        let store = new_store();
        let report = load_snapshot(&store, &path, &opts()).unwrap();
        assert_eq!(report.rows, 2);
        assert_eq!(report.missing_columns.len(), 5);
        let d = dump(&store);
        assert_eq!(d["41"].0, 1_000);
        assert_eq!(d["42"].0, 2_000);
    }

    #[test]
    fn duplicate_file_columns_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_text(
            dir.path(),
            "dup.csv",
            "entity_id,credit_limit,credit_limit\nc1,1,2\n",
        );
        let err = load_snapshot(&new_store(), &path, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: duplicate column `credit_limit`", path.display())
        );
    }

    /// The committed fixtures (generated elsewhere); skipped while absent.
    #[test]
    fn committed_card_snapshots_agree() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let mut dumps = Vec::new();
        for name in ["cards.parquet", "cards.csv", "cards.arrow"] {
            let path = dir.join(name);
            if !path.exists() {
                eprintln!("skipping {}: not present", path.display());
                continue;
            }
            let store = FeatureStore::new(cards_schema(), StoreConfig::default());
            let report = load_snapshot(&store, &path, &SnapshotOptions::default())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(report.rows > 0, "{name}");
            assert!(report.missing_columns.is_empty(), "{name}: {report:?}");
            assert!(report.ignored_columns.is_empty(), "{name}: {report:?}");
            assert_eq!(store.len(), dump(&store).len());
            eprintln!("{name}: {} rows, {} entities", report.rows, store.len());
            dumps.push((name, dump(&store)));
        }
        for pair in dumps.windows(2) {
            let ((a, da), (b, db)) = (&pair[0], &pair[1]);
            assert_eq!(da.len(), db.len(), "{a} vs {b}");
            for (k, v) in da {
                assert_eq!(Some(v), db.get(k), "{a} vs {b}: {k}");
            }
        }
    }
}

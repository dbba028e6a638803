//! One reader for tabular files: Parquet, Arrow IPC (file or stream) and
//! CSV, as record batches. Used by the store's snapshot loader and by
//! `driftline profile`.
//!
//! Guarantees:
//!
//! - **Bounded memory.** Files are read one record batch at a time;
//!   Parquet and CSV batches hold at most [`ReadOptions::batch_rows`] rows
//!   and only the columns the caller keeps, Arrow IPC batches are read as
//!   written.
//! - **Formats told apart** by the file name ([`Format::from_path`]) or by
//!   name ([`Format`]'s `FromStr`); Arrow IPC file and stream formats by the
//!   `ARROW1` magic.
//! - **Errors say where.** Every [`TabularError`] names the file, and where
//!   it applies the column and the 1-based data row (the CSV header is not
//!   counted). Input never causes a panic.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

/// File format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Parquet,
    /// Arrow IPC, file (`ARROW1` magic) or stream format.
    ArrowIpc,
    /// Comma-separated with a header row.
    Csv,
}

impl Format {
    /// Format implied by the file extension (`.parquet`/`.pq`, `.arrow`/`.arrows`/`.ipc`, `.csv`).
    pub fn from_path(path: &Path) -> Option<Self> {
        path.extension()?.to_str()?.parse().ok()
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Parquet => "parquet",
            Format::ArrowIpc => "arrow ipc",
            Format::Csv => "csv",
        })
    }
}

/// A format name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown snapshot format `{0}` (expected parquet, pq, arrow, arrows, ipc or csv)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Accepts the extensions (`parquet`, `pq`, `arrow`, `arrows`, `ipc`, `csv`,
    /// case-insensitive) and `arrow_ipc`/`arrow-ipc`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Ok(Format::Parquet),
            "arrow" | "arrows" | "ipc" | "arrow_ipc" | "arrow-ipc" => Ok(Format::ArrowIpc),
            "csv" => Ok(Format::Csv),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// Why a table could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TabularError {
    #[error("{}: cannot read {format}: {source}", path.display())]
    Read {
        path: PathBuf,
        format: Format,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: duplicate column `{column}`", path.display())]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("{}: column `{column}`: expected {expected}, got {found}", path.display())]
    ColumnType {
        path: PathBuf,
        column: String,
        expected: &'static str,
        found: DataType,
    },
    #[error("{}: column `{column}`: {source}", path.display())]
    Convert {
        path: PathBuf,
        column: String,
        source: ArrowError,
    },
    /// `row` is 1-based and counts data rows only.
    #[error("{}: row {row}: column `{column}`: {problem}", path.display())]
    Cell {
        path: PathBuf,
        row: u64,
        column: String,
        problem: String,
    },
}

/// The type a CSV column is parsed as, and how a bad cell is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvType {
    /// Text, parsed by the caller.
    Text,
    /// A float: a bad cell "expected a number".
    Number,
    /// An integer; a bad cell is described as "expected" the given text
    /// (what the integer means, e.g. epoch milliseconds).
    Integer(&'static str),
}

impl CsvType {
    /// What a cell that does not parse should have been.
    fn expected(self) -> &'static str {
        match self {
            CsvType::Text => "text",
            CsvType::Number => "a number",
            CsvType::Integer(expected) => expected,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            CsvType::Text => DataType::Utf8,
            CsvType::Number => DataType::Float64,
            CsvType::Integer(_) => DataType::Int64,
        }
    }
}

/// How to read a table: which columns to keep, and (CSV has no types) the
/// type of each kept column.
pub struct ReadOptions<'a> {
    /// Rows per record batch (Parquet and CSV): the unit of memory use.
    pub batch_rows: usize,
    /// Whether a file column is read at all.
    pub keep: &'a dyn Fn(&str) -> bool,
    /// The type a kept CSV column is parsed as.
    pub csv_type: &'a dyn Fn(&str) -> CsvType,
}

/// Record batches whose errors already name the file.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, TabularError>>>;

/// An opened table.
pub struct Table {
    /// Every column of the file, in file order.
    pub file_columns: Vec<String>,
    /// Schema of the batches (a projection of the file's for Parquet and CSV).
    pub schema: SchemaRef,
    /// Row count when the format states it up front (Parquet).
    pub rows: Option<u64>,
    pub batches: Batches,
}

impl Table {
    /// Fails on a kept column that the file has twice (which one a reader
    /// would take is not defined).
    pub fn check_duplicates(
        &self,
        path: &Path,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(), TabularError> {
        for (i, name) in self.file_columns.iter().enumerate() {
            if keep(name) && self.file_columns[..i].contains(name) {
                return Err(TabularError::DuplicateColumn {
                    path: path.to_owned(),
                    column: name.clone(),
                });
            }
        }
        Ok(())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RawBatches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>;

/// Opens `file` (at `path`, for messages) as `format`.
pub fn open(
    file: File,
    path: &Path,
    format: Format,
    opts: &ReadOptions<'_>,
) -> Result<Table, TabularError> {
    let batch_rows = opts.batch_rows.max(1);
    let opened = match format {
        Format::Parquet => open_parquet(file, batch_rows, opts.keep),
        Format::ArrowIpc => open_ipc(file),
        Format::Csv => open_csv(file, batch_rows, opts),
    };
    let (file_columns, schema, rows, batches) = opened.map_err(|source| TabularError::Read {
        path: path.to_owned(),
        format,
        source,
    })?;
    let path = path.to_owned();
    // What a bad cell of each file column should have been (CSV only).
    let header: Vec<(String, &'static str)> = match format {
        Format::Csv => file_columns
            .iter()
            .map(|name| (name.clone(), (opts.csv_type)(name).expected()))
            .collect(),
        _ => Vec::new(),
    };
    let batches: Batches = Box::new(batches.map(move |b| {
        b.map_err(|e| match format {
            // arrow-csv reports a bad cell by header index and line; name
            // the column and row instead.
            Format::Csv => csv_error(&path, &header, e),
            _ => TabularError::Read {
                path: path.clone(),
                format,
                source: Box::new(e),
            },
        })
    }));
    Ok(Table {
        file_columns,
        schema,
        rows,
        batches,
    })
}

/// File columns, batch schema, row count if known, batches.
type Opened = (Vec<String>, SchemaRef, Option<u64>, RawBatches);

fn open_parquet(
    file: File,
    batch_rows: usize,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Opened, BoxError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
    let file_columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    // Top-level Arrow fields map one-to-one to Parquet root columns.
    let kept = file_columns
        .iter()
        .enumerate()
        .filter(|(_, n)| keep(n))
        .map(|(i, _)| i);
    let mask = ProjectionMask::roots(builder.parquet_schema(), kept);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()?;
    let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
    Ok((file_columns, schema, rows, Box::new(reader)))
}

fn open_ipc(mut file: File) -> Result<Opened, BoxError> {
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut file, &mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    let (schema, batches): (SchemaRef, RawBatches) = if n == magic.len() && &magic == b"ARROW1" {
        let reader = arrow::ipc::reader::FileReader::try_new_buffered(file, None)?;
        (reader.schema(), Box::new(reader))
    } else {
        let reader = arrow::ipc::reader::StreamReader::try_new_buffered(file, None)?;
        (reader.schema(), Box::new(reader))
    };
    let file_columns = schema.fields().iter().map(|f| f.name().clone()).collect();
    Ok((file_columns, schema, None, batches))
}

/// Reads until `buf` is full or the file ends; short files are not an error here.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn open_csv(mut file: File, batch_rows: usize, opts: &ReadOptions<'_>) -> Result<Opened, BoxError> {
    // Only the header is read here; types come from the caller.
    let (header, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(&mut file, Some(0))?;
    file.seek(SeekFrom::Start(0))?;
    let file_columns: Vec<String> = header.fields().iter().map(|f| f.name().clone()).collect();
    let fields: Vec<Field> = file_columns
        .iter()
        .map(|name| Field::new(name, (opts.csv_type)(name).data_type(), true))
        .collect();
    let kept: Vec<usize> = (0..file_columns.len())
        .filter(|&i| (opts.keep)(&file_columns[i]))
        .collect();
    let reader = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(fields)))
        .with_header(true)
        // The schema was built from this very header; re-checking would only trip on a BOM.
        .with_header_validation(false)
        .with_batch_size(batch_rows)
        .with_projection(kept)
        .build(BufReader::new(file))?;
    let schema = reader.schema();
    Ok((file_columns, schema, None, Box::new(reader)))
}

/// Turns arrow-csv's parse error into a row/column error; other errors pass through.
///
/// arrow-csv reports "Error while parsing value '<v>' as type '<T>' for column
/// <i> at line <n>", where `i` indexes the full header (not the projection) and
/// `n` counts data rows from 1 (the header is line 0): the numbering of
/// [`TabularError::Cell`]. The crate version is pinned, and a test checks this
/// translation, so a change of wording shows up as a failing test rather than
/// a worse message.
fn csv_error(path: &Path, header: &[(String, &'static str)], err: ArrowError) -> TabularError {
    if let ArrowError::ParseError(msg) = &err {
        if let Some((value, col, line)) = parse_csv_cell_error(msg) {
            if let Some((column, expected)) = header.get(col) {
                return TabularError::Cell {
                    path: path.to_path_buf(),
                    row: line as u64,
                    column: column.clone(),
                    problem: format!("expected {expected}, got {value:?}"),
                };
            }
        }
    }
    TabularError::Read {
        path: path.to_path_buf(),
        format: Format::Csv,
        source: Box::new(err),
    }
}

/// `(value, column index, line)` of an arrow-csv cell parse error.
fn parse_csv_cell_error(msg: &str) -> Option<(&str, usize, usize)> {
    const AS_TYPE: &str = "' as type '";
    let rest = msg.strip_prefix("Error while parsing value '")?;
    // The value may itself contain the separator text: try each occurrence.
    for (pos, _) in rest.match_indices(AS_TYPE) {
        let value = &rest[..pos];
        let tail = &rest[pos + AS_TYPE.len()..];
        let Some((_type, tail)) = tail.split_once("' for column ") else {
            continue;
        };
        let Some((col, tail)) = tail.split_once(" at line ") else {
            continue;
        };
        let end = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        if let (Ok(col), Ok(line)) = (col.parse(), tail[..end].parse()) {
            return Some((value, col, line));
        }
    }
    None
}

/// Text columns: plain, large, view or dictionary-encoded.
pub fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

/// Casts with `safe` off: an overflowing value must fail the read rather
/// than silently become a null (that is, a missing value).
pub fn cast(a: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(a, to, &options)
}

/// The concrete array behind `a`.
pub fn downcast<T: Array + Clone + 'static>(a: &ArrayRef) -> Result<T, ArrowError> {
    a.as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| ArrowError::CastError(format!("unexpected array type {}", a.data_type())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_and_extensions() {
        assert_eq!(
            Format::from_path(Path::new("a/b.PQ")),
            Some(Format::Parquet)
        );
        assert_eq!(
            Format::from_path(Path::new("x.arrows")),
            Some(Format::ArrowIpc)
        );
        assert_eq!(Format::from_path(Path::new("x.csv")), Some(Format::Csv));
        assert_eq!(Format::from_path(Path::new("x.json")), None);
        assert_eq!(Format::from_path(Path::new("noext")), None);
        assert_eq!("IPC".parse::<Format>(), Ok(Format::ArrowIpc));
        assert_eq!(
            "xlsx".parse::<Format>().unwrap_err().to_string(),
            "unknown snapshot format `xlsx` (expected parquet, pq, arrow, arrows, ipc or csv)"
        );
    }

    #[test]
    fn csv_cell_errors_are_parsed() {
        let msg = "Error while parsing value 'x, y' as type 'Float64' for column 2 at line 7. Row data: [..]";
        assert_eq!(parse_csv_cell_error(msg), Some(("x, y", 2, 7)));
        assert_eq!(parse_csv_cell_error("something else"), None);
    }

    #[test]
    fn a_bad_csv_cell_names_its_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id,x,skipped\na,1,q\nb,zz,q\n").unwrap();
        let keep = |name: &str| name != "skipped";
        let csv_type = |name: &str| {
            if name == "x" {
                CsvType::Number
            } else {
                CsvType::Text
            }
        };
        let opts = ReadOptions {
            batch_rows: 1,
            keep: &keep,
            csv_type: &csv_type,
        };
        let table = open(File::open(&path).unwrap(), &path, Format::Csv, &opts).unwrap();
        assert_eq!(table.file_columns, ["id", "x", "skipped"]);
        assert_eq!(
            table.schema.fields().len(),
            2,
            "the skipped column is not read"
        );
        let results: Vec<_> = table.batches.collect();
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: row 2: column `x`: expected a number, got \"zz\"",
                path.display()
            )
        );
    }
}

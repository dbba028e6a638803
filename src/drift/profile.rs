//! Reference profiles: the training distribution of every model input and
//! of the model's score, as the sketches the live windows are compared with.
//!
//! A profile is one JSON document, versioned by [`PROFILE_FORMAT`]:
//!
//! ```text
//! { "format": 2, "id": "...", "model": "...", "model_version": "...",
//!   "created_ms": ..., "source": { "path": "...", "rows": ..., "sha256": "..." },
//!   "entities": { "column": "entity_id", "events": ..., "distinct": ..., "kish": ... },
//!   "columns": [ { "name": "amount", "kind": "numeric", "sketch": {NumericSketch},
//!                  "values": {ColumnValues}, "season": "24h" (when seasonal) },
//!                { "name": "channel", "kind": "categorical", "sketch": {CategoricalSketch} }, ... ],
//!   "score": { "name": "score", "kind": "numeric", "sketch": {NumericSketch}, "values": {...} } }
//! ```
//!
//! Format 2 (issue 13) added `values` (a numeric column's values as the
//! model's `f32`, exact up to 2^16 and a KLL sketch beyond, with exact
//! moments: [`super::exact::ColumnValues`]), `entities` (the Kish
//! effective size of the rows' entities, for store and aggregate
//! columns) and `season` (a seasonal column's season). A format-1 profile is refused with a message naming the file
//! and the command that rebuilds it.
//!
//! Guarantees: a loaded profile names the file and the column in every
//! error; its columns are the watched columns (the model's inputs) in row
//! order with their kinds (booleans are categoricals with `false`/`true`),
//! checked by [`Profile::check_against`] before any window is compared with
//! it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::columns::Watched;
use super::exact::ColumnValues;
use super::sketch::{CategoricalSketch, NumericSketch};

/// Version of the profile document; bump on any change of its layout.
pub const PROFILE_FORMAT: u32 = 2;

/// Name of the score's column in profiles, windows and alerts.
pub const SCORE_COLUMN: &str = "score";

/// Errors reading, writing or checking a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("reading profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing profile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("profile {path}: sha256 mismatch: the manifest says {expected}, the file is {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("profile {path}: format {found}, this build reads format {PROFILE_FORMAT}; rebuild it with `driftline profile --model <model dir> --data <training data>`")]
    Format { path: PathBuf, found: u32 },
    #[error("profile {path} does not fit model {model}: {reason}")]
    Mismatch {
        path: PathBuf,
        model: String,
        reason: String,
    },
}

/// The reference sketch of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "sketch", rename_all = "snake_case")]
pub enum ColumnSketch {
    Numeric(NumericSketch),
    Categorical(CategoricalSketch),
}

impl ColumnSketch {
    /// An empty sketch of the same shape: the start of a window.
    pub fn empty_like(&self) -> Self {
        match self {
            ColumnSketch::Numeric(s) => ColumnSketch::Numeric(s.empty_like()),
            ColumnSketch::Categorical(s) => ColumnSketch::Categorical(s.empty_like()),
        }
    }

    /// Bytes held now (see the sketches' `bytes`).
    pub fn bytes(&self) -> usize {
        match self {
            ColumnSketch::Numeric(s) => s.bytes(),
            ColumnSketch::Categorical(s) => s.bytes(),
        }
    }

    /// The most [`bytes`](Self::bytes) can reach, however many values.
    pub fn bytes_bound(&self) -> usize {
        match self {
            ColumnSketch::Numeric(s) => s.bytes_bound(),
            ColumnSketch::Categorical(s) => s.bytes(),
        }
    }

    /// Values and missing values seen.
    pub fn total(&self) -> u64 {
        match self {
            ColumnSketch::Numeric(s) => s.total(),
            ColumnSketch::Categorical(s) => s.total(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ColumnSketch::Numeric(_) => "numeric",
            ColumnSketch::Categorical(_) => "categorical",
        }
    }
}

/// One profiled column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    #[serde(flatten)]
    pub sketch: ColumnSketch,
    /// A numeric column's values as the model reads them (`f32`), exact up
    /// to the reference cap; `None` for categoricals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<ColumnValues>,
    /// The column's season (`"24h"`): a window of events is not a sample
    /// of it, so live windows judge it on the last whole season of event
    /// time. `driftline profile` records it when replaying its own data
    /// in order through the monitor flags the column in more than 1% of
    /// the windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season: Option<String>,
}

/// The entities behind a profile's rows: how many independent draws a
/// store or aggregate column of it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceEntities {
    /// The data file's entity column.
    pub column: String,
    /// Rows with an entity id.
    pub events: u64,
    /// Distinct entities (estimated beyond the entity counter's exact size).
    pub distinct: f64,
    /// Kish effective size `events² / Σ m_e²`.
    pub kish: f64,
}

/// Where a profile's data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSource {
    /// The data file as given on the command line.
    pub path: String,
    pub rows: u64,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
}

/// A reference profile (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub format: u32,
    /// Names this profile in alerts and retrain requests:
    /// `<model>/<version>@<first 12 hex digits of the data's sha256>`.
    pub id: String,
    pub model: String,
    pub model_version: String,
    /// Creation time, epoch milliseconds.
    pub created_ms: i64,
    pub source: ProfileSource,
    /// The rows' entities, when the data has an entity column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<ReferenceEntities>,
    /// The model's inputs, in manifest order.
    pub columns: Vec<ColumnProfile>,
    /// The model's score on the same rows.
    pub score: ColumnProfile,
}

impl Profile {
    /// Reads and checks the format version.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        Self::load_verified(path, None)
    }

    /// Reads the file once, checks it against `expected_sha256` (the
    /// manifest's `reference_sha256`, when it has one) and parses the same
    /// bytes, so the profile used is the one that was hashed.
    pub fn load_verified(path: &Path, expected_sha256: Option<&str>) -> Result<Self, ProfileError> {
        let text = std::fs::read(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Some(expected) = expected_sha256 {
            // Hashed here rather than through `score`: drift sees numbers,
            // not models (the layout test keeps it that way).
            let actual: String = sha2::Sha256::digest(&text)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ProfileError::Checksum {
                    path: path.to_owned(),
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        Self::parse(&text, path)
    }

    /// Parses a profile document; `path` is only used in messages.
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, ProfileError> {
        // The format is read first so an old or newer file gets a clear
        // message rather than a missing-field error.
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let version: Version =
            serde_json::from_slice(text).map_err(|source| ProfileError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if version.format != PROFILE_FORMAT {
            return Err(ProfileError::Format {
                path: path.to_owned(),
                found: version.format,
            });
        }
        serde_json::from_slice(text).map_err(|source| ProfileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the profile (pretty JSON, so diffs of committed profiles read,
    /// with arrays of numbers or strings on one line: one line per byte of
    /// a KLL image made a profile about five times larger).
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let text = serde_json::to_vec_pretty(self).map_err(|source| ProfileError::Parse {
            path: path.to_owned(),
            source,
        })?;
        std::fs::write(path, inline_scalar_arrays(&text)).map_err(|source| ProfileError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks that the profile covers exactly the watched columns, in
    /// order, with matching kinds, and that its score is numeric.
    pub fn check_against(&self, watched: &Watched, path: &Path) -> Result<(), ProfileError> {
        let mismatch = |reason: String| ProfileError::Mismatch {
            path: path.to_owned(),
            model: watched.label(),
            reason,
        };
        let columns = watched.columns();
        if self.columns.len() != columns.len() {
            return Err(mismatch(format!(
                "{} columns profiled, the model has {} inputs",
                self.columns.len(),
                columns.len()
            )));
        }
        for (column, input) in self.columns.iter().zip(columns) {
            if column.name != input.name {
                return Err(mismatch(format!(
                    "column `{}` where the model's input `{}` is expected",
                    column.name, input.name
                )));
            }
            let expected = input.kind.sketch_kind();
            if column.sketch.kind() != expected {
                return Err(mismatch(format!(
                    "column `{}` is profiled as {}, the model declares it {expected}",
                    column.name,
                    column.sketch.kind()
                )));
            }
        }
        if !matches!(self.score.sketch, ColumnSketch::Numeric(_)) {
            return Err(mismatch("the score is not profiled as numeric".into()));
        }
        Ok(())
    }

    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Pretty JSON with every array that holds no object or array written on
/// one line (`[1, 2, 3]`). Only whitespace outside strings changes.
fn inline_scalar_arrays(pretty: &[u8]) -> Vec<u8> {
    /// End of the string starting at `at` (the index after its closing quote).
    fn string_end(text: &[u8], at: usize) -> usize {
        let mut i = at + 1;
        while i < text.len() {
            match text[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        text.len()
    }
    /// Index of the `]` closing the array at `at`, if it nests nothing.
    fn flat_array_end(text: &[u8], at: usize) -> Option<usize> {
        let mut i = at + 1;
        while i < text.len() {
            match text[i] {
                b'"' => i = string_end(text, i),
                b']' => return Some(i),
                b'[' | b'{' => return None,
                _ => i += 1,
            }
        }
        None
    }
    let mut out = Vec::with_capacity(pretty.len());
    let mut i = 0;
    while i < pretty.len() {
        match pretty[i] {
            b'"' => {
                let end = string_end(pretty, i);
                out.extend_from_slice(&pretty[i..end]);
                i = end;
            }
            b'[' => match flat_array_end(pretty, i) {
                Some(end) => {
                    let mut j = i;
                    while j <= end {
                        match pretty[j] {
                            b'"' => {
                                let e = string_end(pretty, j);
                                out.extend_from_slice(&pretty[j..e]);
                                j = e;
                                continue;
                            }
                            b' ' | b'\n' | b'\r' | b'\t' => {}
                            b',' => out.extend_from_slice(b", "),
                            c => out.push(c),
                        }
                        j += 1;
                    }
                    i = end + 1;
                }
                None => {
                    out.push(b'[');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_arrays_go_on_one_line_and_nothing_else_changes() {
        let value = serde_json::json!({
            "a": [1, 2.5, -3],
            "b": ["x, y", "[not] {an array}", "q\"uote\\"],
            "c": [{"d": []}, [1, [2]]],
            "e": {"f": "  spaced  "},
        });
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        let compact = inline_scalar_arrays(&pretty);
        let text = String::from_utf8(compact.clone()).unwrap();
        assert!(text.contains(r#""a": [1, 2.5, -3]"#), "{text}");
        assert!(text.contains(r#""d": []"#), "{text}");
        assert!(text.contains(r#""f": "  spaced  ""#), "{text}");
        let back: serde_json::Value = serde_json::from_slice(&compact).unwrap();
        assert_eq!(back, value);
    }
}

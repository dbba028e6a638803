//! Model manifests (`model.toml`): what a model expects and how to feed it.
//!
//! A manifest is parsed strictly (unknown keys are errors) and validated as a
//! whole: [`Manifest::load`] reports every problem it finds at once, each
//! naming the file and the input it is about, so a data scientist fixes a
//! manifest in one pass instead of one error per run.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::duration;
use crate::features::aggregates::{AggFn, AggregateSpec};

/// The manifest format this build understands.
pub const FORMAT_VERSION: u32 = 1;

/// Errors from reading or validating a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// A model directory's manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version; guards against silently misreading a newer layout.
    pub format: u32,
    /// Model name, reported on every prediction and metric.
    pub name: String,
    /// Model version, reported on every prediction and metric.
    pub version: String,
    /// One line for humans (shown by `/v1/models`).
    #[serde(default)]
    pub description: String,
    /// ONNX file, relative to the model directory.
    #[serde(default = "default_file")]
    pub file: String,
    /// Hex SHA-256 of the ONNX file, checked at load so a swapped or corrupted
    /// file never scores traffic under the wrong version.
    pub sha256: String,
    /// Which output tensor and column is the score.
    pub score: ScoreOutput,
    /// Ordered model inputs; the encoded row follows this order exactly.
    pub inputs: Vec<InputSpec>,
    /// Reference profile for drift detection, relative to the model directory.
    #[serde(default)]
    pub reference: Option<String>,
    /// Hex SHA-256 of the reference profile file, checked when the profile is
    /// loaded, so that a signed manifest also vouches for the distribution
    /// drift is judged against. Optional: manifests written before it stay valid.
    #[serde(default)]
    pub reference_sha256: Option<String>,
}

fn default_file() -> String {
    "model.onnx".to_owned()
}

/// Where the score is in the model's outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreOutput {
    /// Output tensor name (e.g. `probabilities` for skl2onnx classifiers).
    pub output: String,
    /// Column of that `[batch, k]` tensor (e.g. 1 = positive class).
    pub index: usize,
}

/// Value kind of an input as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Numeric,
    /// `true`/`false` (or 0/1), encoded as 1.0/0.0.
    Boolean,
    Categorical,
}

/// Where an input's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputSource {
    /// The event's own `features`.
    Event,
    /// The online feature store, by entity id.
    Store,
    /// A streaming aggregate over the entity's earlier events.
    Aggregate,
}

/// How a categorical becomes floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One float per vocabulary entry, 1.0 at the value's position.
    OneHot,
    /// One float: the value's position in the vocabulary.
    Ordinal,
}

/// What to do with a categorical value outside the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknown {
    /// Reject the event (`unknown_category`): the model never saw this value.
    #[default]
    Error,
    /// Encode as all zeros (one-hot) or -1 (ordinal), for models trained that way.
    Zeros,
}

/// A declared default, in the input's own kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DefaultValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// A streaming aggregate as declared in a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDecl {
    /// Event feature aggregated (e.g. `amount`).
    pub field: String,
    /// count, sum, mean, min or max.
    pub function: AggFn,
    /// Sliding window length, e.g. `1h`, `24h`, `7d`.
    pub window: String,
}

/// One model input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub kind: InputKind,
    pub source: InputSource,
    /// Required for categoricals.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// Categorical values in encoding order.
    #[serde(default)]
    pub vocabulary: Vec<String>,
    #[serde(default)]
    pub on_unknown: OnUnknown,
    /// Used when no source has a value; without it a missing value rejects the event.
    #[serde(default)]
    pub default: Option<DefaultValue>,
    /// Required when `source = "aggregate"`.
    #[serde(default)]
    pub aggregate: Option<AggregateDecl>,
}

impl InputSpec {
    /// Number of floats this input occupies in the encoded row.
    pub fn width(&self) -> usize {
        match (self.kind, self.encoding) {
            (InputKind::Categorical, Some(Encoding::OneHot)) => self.vocabulary.len(),
            _ => 1,
        }
    }
}

impl Manifest {
    /// Reads and validates `model.toml` (or another manifest path).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|source| ManifestError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let problems = manifest.problems();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Width of the encoded input row.
    pub fn row_width(&self) -> usize {
        self.inputs.iter().map(InputSpec::width).sum()
    }

    /// The streaming aggregates this model reads, named after their inputs.
    pub fn aggregate_specs(&self) -> Vec<AggregateSpec> {
        self.inputs
            .iter()
            .filter(|i| i.source == InputSource::Aggregate)
            .filter_map(|i| {
                let decl = i.aggregate.as_ref()?;
                Some(AggregateSpec {
                    name: i.name.as_str().into(),
                    field: decl.field.as_str().into(),
                    function: decl.function,
                    window_ms: duration::parse_ms(&decl.window).ok()?,
                })
            })
            .collect()
    }

    /// Every problem with this manifest, each naming the field it is about.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.format != FORMAT_VERSION {
            p.push(format!(
                "format: this build reads format {FORMAT_VERSION}, the manifest says {}",
                self.format
            ));
        }
        if self.name.trim().is_empty() {
            p.push("name: must not be empty".into());
        }
        if self.version.trim().is_empty() {
            p.push("version: must not be empty".into());
        }
        if !is_sha256_hex(&self.sha256) {
            p.push(format!(
                "sha256: expected 64 hex digits, got {:?}",
                self.sha256
            ));
        }
        if let Some(hash) = &self.reference_sha256 {
            if !is_sha256_hex(hash) {
                p.push(format!(
                    "reference_sha256: expected 64 hex digits, got {hash:?}"
                ));
            }
            if self.reference.is_none() {
                p.push("reference_sha256: set, but the manifest names no `reference`".into());
            }
        }
        if self.score.output.trim().is_empty() {
            p.push("score.output: must name an output tensor".into());
        }
        if self.inputs.is_empty() {
            p.push("inputs: a model needs at least one input".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let at = format!("inputs[{i}] (`{}`)", input.name);
            if input.name.trim().is_empty() {
                p.push(format!("inputs[{i}].name: must not be empty"));
            } else if !seen.insert(input.name.as_str()) {
                p.push(format!("{at}: duplicate input name"));
            }
            input_problems(input, &at, &mut p);
        }
        p
    }
}

/// Whether `s` is a hex SHA-256 digest (64 hex digits, either case).
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn input_problems(input: &InputSpec, at: &str, p: &mut Vec<String>) {
    match input.kind {
        InputKind::Categorical => {
            if input.encoding.is_none() {
                p.push(format!(
                    "{at}.encoding: categoricals need `one_hot` or `ordinal`"
                ));
            }
            if input.vocabulary.is_empty() {
                p.push(format!("{at}.vocabulary: categoricals need a vocabulary"));
            }
            let mut vocab = std::collections::HashSet::new();
            for v in &input.vocabulary {
                if !vocab.insert(v.as_str()) {
                    p.push(format!("{at}.vocabulary: {v:?} is listed twice"));
                }
            }
        }
        InputKind::Numeric | InputKind::Boolean => {
            if input.encoding.is_some() || !input.vocabulary.is_empty() {
                p.push(format!(
                    "{at}: encoding/vocabulary only apply to categorical inputs"
                ));
            }
        }
    }
    match (&input.default, input.kind) {
        (None, _) => {}
        (Some(DefaultValue::Number(v)), InputKind::Numeric) if v.is_finite() => {}
        (Some(DefaultValue::Number(v)), InputKind::Numeric) => {
            p.push(format!("{at}.default: must be finite, got {v}"))
        }
        (Some(DefaultValue::Bool(_)), InputKind::Boolean) => {}
        (Some(DefaultValue::Text(t)), InputKind::Categorical) => {
            if !input.vocabulary.iter().any(|v| v == t) {
                p.push(format!("{at}.default: {t:?} is not in the vocabulary"));
            }
        }
        (Some(d), kind) => p.push(format!(
            "{at}.default: {d:?} does not fit an input of kind {kind:?}"
        )),
    }
    match (input.source, &input.aggregate) {
        (InputSource::Aggregate, None) => p.push(format!(
            "{at}.aggregate: `source = \"aggregate\"` needs an aggregate = {{ field, function, window }}"
        )),
        (InputSource::Aggregate, Some(decl)) => {
            if input.kind != InputKind::Numeric {
                p.push(format!("{at}.kind: aggregates are numeric"));
            }
            if let Err(e) = duration::parse_ms(&decl.window) {
                p.push(format!("{at}.aggregate.window: {e}"));
            }
            if decl.field.trim().is_empty() {
                p.push(format!("{at}.aggregate.field: must name an event feature"));
            }
            // An empty window has no mean/min/max, and empty windows are normal
            // (a card's first transaction): without a default every first
            // event would be rejected.
            if matches!(decl.function, AggFn::Mean | AggFn::Min | AggFn::Max)
                && input.default.is_none()
            {
                p.push(format!(
                    "{at}.default: a {:?} aggregate needs a default for empty windows",
                    decl.function
                ));
            }
        }
        (_, Some(_)) => p.push(format!(
            "{at}.aggregate: only inputs with `source = \"aggregate\"` take an aggregate"
        )),
        (_, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format = 1
name = "m"
version = "1"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[score]
output = "probabilities"
index = 1
[[inputs]]
name = "amount"
kind = "numeric"
source = "event"
[[inputs]]
name = "cat"
kind = "categorical"
source = "event"
encoding = "one_hot"
vocabulary = ["a", "b", "c"]
[[inputs]]
name = "n1h"
kind = "numeric"
source = "aggregate"
aggregate = { field = "amount", function = "count", window = "1h" }
"#;

    #[test]
    fn parses_a_good_manifest_and_computes_width() {
        let m = Manifest::parse(GOOD, Path::new("m.toml")).unwrap();
        assert_eq!(m.row_width(), 1 + 3 + 1);
        let specs = m.aggregate_specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].window_ms, 3_600_000);
        assert_eq!(specs[0].name, "n1h");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let bad = GOOD
            .replace("format = 1", "format = 7")
            .replace("sha256 = \"0000", "sha256 = \"zz00")
            .replace(
                "vocabulary = [\"a\", \"b\", \"c\"]",
                "vocabulary = [\"a\", \"a\"]",
            )
            .replace("window = \"1h\"", "window = \"fortnight\"");
        let err = Manifest::parse(&bad, Path::new("models/x/model.toml")).unwrap_err();
        let ManifestError::Invalid { path, problems } = err else {
            panic!("expected Invalid");
        };
        assert_eq!(path, Path::new("models/x/model.toml"));
        assert!(
            problems.iter().any(|p| p.starts_with("format")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("sha256")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("listed twice")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("window")),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let bad = GOOD.replace("index = 1", "index = 1\ncolum = 2");
        let err = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("colum"), "{err}");
    }

    #[test]
    fn reference_sha256_is_optional_but_checked_when_present() {
        let with_reference = GOOD.replace(
            "[score]",
            "reference = \"reference.json\"\nreference_sha256 = \"REF\"\n[score]",
        );
        let good = with_reference.replace("REF", &"ab".repeat(32));
        let m = Manifest::parse(&good, Path::new("m.toml")).unwrap();
        assert_eq!(
            m.reference_sha256.as_deref(),
            Some("ab".repeat(32).as_str())
        );
        let err = Manifest::parse(&with_reference.replace("REF", "abc"), Path::new("m.toml"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("reference_sha256: expected 64 hex digits"),
            "{err}"
        );
        let orphan = GOOD.replace(
            "[score]",
            &format!("reference_sha256 = \"{}\"\n[score]", "ab".repeat(32)),
        );
        let err = Manifest::parse(&orphan, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("names no `reference`"), "{err}");
    }

    #[test]
    fn mean_aggregate_without_default_is_a_problem() {
        let bad = GOOD.replace("function = \"count\"", "function = \"mean\"");
        let err = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("needs a default"), "{err}");
    }

    #[test]
    fn default_must_fit_kind_and_vocabulary() {
        let bad = GOOD.replace(
            "vocabulary = [\"a\", \"b\", \"c\"]",
            "vocabulary = [\"a\", \"b\", \"c\"]\ndefault = \"z\"",
        );
        let err = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("not in the vocabulary"), "{err}");
        let bad = GOOD.replace(
            "kind = \"numeric\"\nsource = \"event\"",
            "kind = \"numeric\"\nsource = \"event\"\ndefault = \"x\"",
        );
        let err = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}

//! driftline's own ONNX-ML tree-ensemble ops for tract:
//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (`ai.onnx.ml`, opset 1-3).
//!
//! tract-onnx 0.23 ships a classifier that is ~1000x slower than onnxruntime,
//! rejects binary gradient-boosting models (`base_values` of length 2) and has
//! no regressor. [`register`] replaces/adds both ops in an [`OnnxOpRegister`],
//! so the rest of the graph keeps running on tract.
//!
//! Guarantees:
//! - **Load-time validation.** Every attribute of the ONNX-ML spec is parsed
//!   ([`parse`]); attribute lengths, node ids, child ids, cycles (a node reached
//!   twice), class/target ids, modes, `post_transform`, `aggregate_function`,
//!   `base_values` lengths and feature ids against the input width are checked
//!   when the model is loaded. A malformed model is a [`TreeError`] naming the
//!   attribute (and index), never a panic or a hang at scoring time.
//! - **onnxruntime semantics.** Scores follow onnxruntime's `TreeEnsemble*`
//!   kernels (tree_ensemble_aggregator.h / ml_common.h), checked against
//!   onnxruntime 1.32 on every mode, post transform, aggregate and
//!   base-values case (`tests/parity/tree_parity.rs`): comparisons of `f32` inputs
//!   against `f32` thresholds, NaN routed by `nodes_missing_value_tracks_true`
//!   (`x <op> t || (tracks_true && isnan(x))`), per-row accumulation in tree
//!   order in `f32`, onnxruntime's binary-classifier special cases (one weight
//!   column expanded to `[1-p, p]`, `[-s, s]` or logistic pairs), its labels,
//!   its post transforms (including its approximate `erfinv` for PROBIT) and
//!   its base values (an output no reached leaf scores stays 0: 1.32 adds no
//!   base value to it). The root of a tree is its first listed node and a
//!   tree's nodes must be contiguous, as in onnxruntime. Where onnxruntime
//!   leaves an output column unwritten (a binary row with one score and no
//!   expansion rule), driftline writes 0.
//! - **Double thresholds.** `nodes_values_as_tensor` in double precision
//!   (which onnxruntime 1.32 refuses for float inputs) is accepted: each
//!   threshold is rounded to `f32` in the direction that keeps every
//!   comparison with an `f32` input exactly what a double comparison gives.
//!   Double weights and base values are rounded to `f32`.
//! - **Speed.** Trees are flattened into one contiguous node array whose
//!   leaves loop onto themselves, and are evaluated tree by tree over the
//!   batch, several rows in lockstep, so the traversal is a branch-free loop
//!   whose loads overlap ([`ensemble`]). At batch 64 every demo tree model
//!   costs less per event than single-threaded onnxruntime (`benches/trees.rs`).
//!
//! Not supported (clear load-time errors): `classlabels_strings` (string
//! labels), non-`f32` inputs, a classifier with a single class label.

pub mod ensemble;
pub mod op;
pub mod parse;

use tract_onnx::model::OnnxOpRegister;

pub use ensemble::{Aggregate, Ensemble, EvalError, Mode, PostTransform};
pub use op::{TreeEnsembleOp, TreeEnsembleRules};
pub use parse::{parse_classifier, parse_regressor};

/// A malformed or unsupported tree-ensemble node, found at load time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeError {
    #[error("attribute {attr} is required but missing")]
    Missing { attr: &'static str },
    #[error("attribute {attr} has type {found}, expected {expected}")]
    WrongType {
        attr: String,
        found: String,
        expected: &'static str,
    },
    #[error(
        "attribute {attr} has {len} value(s), expected {expected} (one per entry of {reference})"
    )]
    Length {
        attr: String,
        len: usize,
        expected: usize,
        reference: &'static str,
    },
    #[error("{attr}[{index}] = {value}: {reason}")]
    Value {
        attr: String,
        index: usize,
        value: String,
        reason: String,
    },
    #[error("attribute {attr}: {reason}")]
    Invalid { attr: String, reason: String },
    #[error("attribute {attr}: {what} is not supported by driftline's tree ensembles")]
    Unsupported { attr: String, what: String },
}

impl TreeError {
    pub(crate) fn value(
        attr: impl Into<String>,
        index: usize,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        TreeError::Value {
            attr: attr.into(),
            index,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(attr: impl Into<String>, reason: impl Into<String>) -> Self {
        TreeError::Invalid {
            attr: attr.into(),
            reason: reason.into(),
        }
    }
}

/// Registers driftline's `TreeEnsembleClassifier` and `TreeEnsembleRegressor`,
/// replacing tract's own classifier.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", op::classifier_builder);
    reg.insert("TreeEnsembleRegressor", op::regressor_builder);
}

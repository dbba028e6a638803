//! The tract side: ONNX op builders, inference rules and the typed op.
//!
//! Structure mirrors tract-onnx's own ml ops: a builder parses the
//! `NodeProto` into an [`Ensemble`]; [`TreeEnsembleRules`] (an `Expansion`)
//! states the inference rules and, when the model is typed, wires one
//! [`TreeEnsembleOp`] (`TypedOp` + `EvalOp`) that produces every output of the
//! ONNX node in a single pass.

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{Array1, Array2};
use tract_onnx::tract_hir::internal::*;

use super::ensemble::Ensemble;
use super::parse::{parse_classifier, parse_regressor};

/// A shared ensemble; ops compare equal when they share it (identity, not
/// structure: thresholds may be NaN, and comparing big ensembles is waste).
#[derive(Debug, Clone)]
struct Shared(Arc<Ensemble>);

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Shared {}

pub(crate) fn classifier_builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ensemble = parse_classifier(node)?;
    Ok((expand(TreeEnsembleRules::new(ensemble)), vec![]))
}

pub(crate) fn regressor_builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ensemble = parse_regressor(node)?;
    Ok((expand(TreeEnsembleRules::new(ensemble)), vec![]))
}

/// Inference-time view of the op: shapes and types, then expansion.
#[derive(Debug, Clone)]
pub struct TreeEnsembleRules {
    ensemble: Shared,
}

impl TreeEnsembleRules {
    pub fn new(ensemble: Ensemble) -> Self {
        TreeEnsembleRules {
            ensemble: Shared(Arc::new(ensemble)),
        }
    }

    fn classifier(&self) -> bool {
        self.ensemble.0.is_classifier()
    }
}

impl Expansion for TreeEnsembleRules {
    fn name(&self) -> StaticName {
        if self.classifier() {
            "DriftlineTreeEnsembleClassifier".into()
        } else {
            "DriftlineTreeEnsembleRegressor".into()
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.classifier() { 2 } else { 1 })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, self.nboutputs()?)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].rank, 2)?;
        let scores = if self.classifier() {
            s.equals(&outputs[0].datum_type, i64::datum_type())?;
            s.equals(&outputs[0].rank, 1)?;
            s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
            &outputs[1]
        } else {
            &outputs[0]
        };
        s.equals(&scores.datum_type, f32::datum_type())?;
        s.equals(&scores.rank, 2)?;
        s.equals(&scores.shape[0], &inputs[0].shape[0])?;
        s.equals(&scores.shape[1], self.ensemble.0.n_outputs().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?;
        if fact.datum_type != f32::datum_type() || fact.rank() != 2 {
            bail!(
                "{}: input must be a rank-2 f32 tensor, got {:?}",
                self.name(),
                fact
            );
        }
        if let Some(width) = fact.shape[1].as_i64() {
            let width = width as usize;
            if width == 0 {
                bail!("{}: the input rows have no column", self.name());
            }
            if let Some(m) = self.ensemble.0.max_feature() {
                if m as usize >= width {
                    bail!(
                        "{}: attribute nodes_featureids uses feature {m} but the input has {width} column(s)",
                        self.name()
                    );
                }
            }
        }
        model.wire_node(
            prefix,
            TreeEnsembleOp {
                ensemble: self.ensemble.clone(),
            },
            inputs,
        )
    }
}

/// The typed, runnable op: `[N, F] f32 -> ([N] i64 labels,) [N, K] f32 scores`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEnsembleOp {
    ensemble: Shared,
}

impl TreeEnsembleOp {
    pub fn ensemble(&self) -> &Ensemble {
        &self.ensemble.0
    }
}

impl Op for TreeEnsembleOp {
    fn name(&self) -> StaticName {
        "DriftlineTreeEnsemble".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let e = self.ensemble();
        Ok(vec![format!(
            "{} trees, {} output(s), classifier: {}",
            e.n_trees(),
            e.n_outputs(),
            e.is_classifier()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (n, width) = match input.shape() {
            [n, w] => (*n, *w),
            other => bail!("tree ensemble input must be [N, F], got {other:?}"),
        };
        let rows = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let e = self.ensemble();
        let k = e.n_outputs();
        let mut scores = vec![0f32; n * k];
        if e.is_classifier() {
            let mut labels = vec![0i64; n];
            e.eval(rows, width, &mut scores, Some(&mut labels))?;
            Ok(tvec!(
                Array1::from_vec(labels).into_tvalue(),
                Array2::from_shape_vec((n, k), scores)?.into_tvalue()
            ))
        } else {
            e.eval(rows, width, &mut scores, None)?;
            Ok(tvec!(Array2::from_shape_vec((n, k), scores)?.into_tvalue()))
        }
    }
}

impl TypedOp for TreeEnsembleOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        let scores = f32::fact([n.clone(), self.ensemble().n_outputs().to_dim()]);
        Ok(if self.ensemble().is_classifier() {
            tvec!(i64::fact([n]), scores)
        } else {
            tvec!(scores)
        })
    }

    as_op!();
}

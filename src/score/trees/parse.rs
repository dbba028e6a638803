//! ONNX `NodeProto` attributes -> [`Ensemble`], with every length and id checked.
//!
//! Each attribute of the `ai.onnx.ml` TreeEnsembleClassifier/Regressor spec is
//! read here (`nodes_hitrates` only for its length: it never affects scores).
//! Errors name the attribute and, for per-entry problems, the index.

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

use super::ensemble::{
    Aggregate, Ensemble, Mode, PostTransform, RawEnsemble, RawNode, RawWeight, Threshold,
};
use super::TreeError;

/// Parses a `TreeEnsembleClassifier` node.
pub fn parse_classifier(node: &NodeProto) -> Result<Ensemble, TreeError> {
    let labels = match (
        attr(node, "classlabels_int64s"),
        attr(node, "classlabels_strings"),
    ) {
        (Some(a), None) => ints(a)?.to_vec(),
        (None, Some(_)) => {
            return Err(TreeError::Unsupported {
                attr: "classlabels_strings".into(),
                what: "string class labels (only classlabels_int64s)".into(),
            })
        }
        (None, None) => {
            return Err(TreeError::Missing {
                attr: "classlabels_int64s",
            })
        }
        (Some(_), Some(_)) => {
            return Err(TreeError::invalid(
                "classlabels_strings",
                "only one of classlabels_int64s and classlabels_strings may be set",
            ))
        }
    };
    if labels.len() < 2 {
        return Err(TreeError::Unsupported {
            attr: "classlabels_int64s".into(),
            what: format!("a classifier with {} class label(s)", labels.len()),
        });
    }
    let n = labels.len();
    let base = base_values(node)?;
    let base_ok = base.is_empty() || base.len() == n || (n == 2 && base.len() == 1);
    if !base_ok {
        return Err(TreeError::invalid(
            base_attr_name(node),
            format!(
                "{} value(s) for {n} classes: expected none, one per class{}",
                base.len(),
                if n == 2 { " or a single value" } else { "" }
            ),
        ));
    }
    build(node, "class", n, Aggregate::Sum, base, Some(labels))
}

/// Parses a `TreeEnsembleRegressor` node.
pub fn parse_regressor(node: &NodeProto) -> Result<Ensemble, TreeError> {
    let n_targets = match attr(node, "n_targets") {
        Some(a) => int(a)?,
        None => return Err(TreeError::Missing { attr: "n_targets" }),
    };
    if !(1..=1 << 20).contains(&n_targets) {
        return Err(TreeError::invalid(
            "n_targets",
            format!("{n_targets} is not between 1 and 2^20"),
        ));
    }
    let n = n_targets as usize;
    let aggregate = match attr(node, "aggregate_function") {
        None => Aggregate::Sum,
        Some(a) => {
            let s = string(a)?;
            Aggregate::parse(s).ok_or_else(|| {
                TreeError::invalid(
                    "aggregate_function",
                    format!("{s:?} is not one of SUM, AVERAGE, MIN, MAX"),
                )
            })?
        }
    };
    let base = base_values(node)?;
    if !(base.is_empty() || base.len() == n) {
        return Err(TreeError::invalid(
            base_attr_name(node),
            format!(
                "{} value(s) for {n} target(s): expected none or one per target",
                base.len()
            ),
        ));
    }
    build(node, "target", n, aggregate, base, None)
}

fn build(
    node: &NodeProto,
    prefix: &'static str,
    n_outputs: usize,
    aggregate: Aggregate,
    base: Vec<f32>,
    labels: Option<Vec<i64>>,
) -> Result<Ensemble, TreeError> {
    let tree_ids = required_ints(node, "nodes_treeids")?;
    let n = tree_ids.len();
    let node_ids = ints_len(node, "nodes_nodeids", n)?;
    let feature_ids = ints_len(node, "nodes_featureids", n)?;
    let true_ids = ints_len(node, "nodes_truenodeids", n)?;
    let false_ids = ints_len(node, "nodes_falsenodeids", n)?;
    let modes = match attr(node, "nodes_modes") {
        Some(a) => strings(a)?,
        None => {
            return Err(TreeError::Missing {
                attr: "nodes_modes",
            })
        }
    };
    check_len("nodes_modes", modes.len(), n)?;
    let thresholds = float_or_tensor(node, "nodes_values", "nodes_values_as_tensor")?;
    let thresholds = thresholds.unwrap_or_else(|| Floats::F32("nodes_values", vec![0.0; n]));
    check_len(thresholds.name(), thresholds.len(), n)?;
    let missing = match attr(node, "nodes_missing_value_tracks_true") {
        Some(a) => {
            let v = ints(a)?;
            check_len("nodes_missing_value_tracks_true", v.len(), n)?;
            v.to_vec()
        }
        None => vec![0; n],
    };
    if let Some(h) = float_or_tensor(node, "nodes_hitrates", "nodes_hitrates_as_tensor")? {
        check_len(h.name(), h.len(), n)?;
    }

    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mode = Mode::parse(&modes[i]).ok_or_else(|| {
            TreeError::value(
                "nodes_modes",
                i,
                &modes[i],
                "expected BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ or LEAF",
            )
        })?;
        let feature = if mode.is_some() {
            u32::try_from(feature_ids[i]).map_err(|_| {
                TreeError::value("nodes_featureids", i, feature_ids[i], "must be >= 0")
            })?
        } else {
            0
        };
        let threshold = match &thresholds {
            Floats::F32(_, v) => Threshold::F32(v[i]),
            Floats::F64(_, v) => Threshold::F64(v[i]),
        };
        if mode.is_some() {
            let bad = match threshold {
                Threshold::F32(t) => t.is_nan(),
                Threshold::F64(t) => t.is_nan(),
            };
            if bad {
                return Err(TreeError::value(
                    thresholds.name(),
                    i,
                    "NaN",
                    "a branch threshold must not be NaN",
                ));
            }
        }
        nodes.push(RawNode {
            tree: tree_ids[i],
            id: node_ids[i],
            feature,
            mode,
            threshold,
            true_id: true_ids[i],
            false_id: false_ids[i],
            nan_true: missing[i] != 0,
        });
    }

    let w_tree = required_ints(node, attr_name(prefix, "treeids"))?;
    let m = w_tree.len();
    let w_node = ints_len(node, attr_name(prefix, "nodeids"), m)?;
    let w_ids = ints_len(node, attr_name(prefix, "ids"), m)?;
    let w_values = float_or_tensor(
        node,
        attr_name(prefix, "weights"),
        attr_name(prefix, "weights_as_tensor"),
    )?
    .ok_or(TreeError::Missing {
        attr: attr_name(prefix, "weights"),
    })?;
    check_len(w_values.name(), w_values.len(), m)?;
    let weights = (0..m)
        .map(|k| RawWeight {
            tree: w_tree[k],
            node: w_node[k],
            target: w_ids[k],
            // onnxruntime accumulates float-input models in f32.
            value: match &w_values {
                Floats::F32(_, v) => v[k],
                Floats::F64(_, v) => v[k] as f32,
            },
        })
        .collect();

    let post = match attr(node, "post_transform") {
        None => PostTransform::None,
        Some(a) => {
            let s = string(a)?;
            PostTransform::parse(s).ok_or_else(|| {
                TreeError::invalid(
                    "post_transform",
                    format!("{s:?} is not one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT"),
                )
            })?
        }
    };

    Ensemble::build(RawEnsemble {
        nodes,
        weights,
        n_outputs,
        aggregate,
        post,
        base,
        labels,
        prefix,
    })
}

/// `{prefix}_{suffix}` as a `&'static str` (the handful of names we use).
fn attr_name(prefix: &'static str, suffix: &'static str) -> &'static str {
    match (prefix, suffix) {
        ("class", "treeids") => "class_treeids",
        ("class", "nodeids") => "class_nodeids",
        ("class", "ids") => "class_ids",
        ("class", "weights") => "class_weights",
        ("class", "weights_as_tensor") => "class_weights_as_tensor",
        ("target", "treeids") => "target_treeids",
        ("target", "nodeids") => "target_nodeids",
        ("target", "ids") => "target_ids",
        ("target", "weights") => "target_weights",
        ("target", "weights_as_tensor") => "target_weights_as_tensor",
        _ => "unknown attribute",
    }
}

/// A float list attribute or its `*_as_tensor` form, with the name it had.
enum Floats {
    F32(&'static str, Vec<f32>),
    F64(&'static str, Vec<f64>),
}

impl Floats {
    fn len(&self) -> usize {
        match self {
            Floats::F32(_, v) => v.len(),
            Floats::F64(_, v) => v.len(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Floats::F32(n, _) | Floats::F64(n, _) => n,
        }
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn type_name(a: &AttributeProto) -> String {
    AttributeType::try_from(a.r#type)
        .map(|t| format!("{t:?}"))
        .unwrap_or_else(|_| format!("#{}", a.r#type))
}

fn wrong(a: &AttributeProto, expected: &'static str) -> TreeError {
    TreeError::WrongType {
        attr: a.name.clone(),
        found: type_name(a),
        expected,
    }
}

fn is(a: &AttributeProto, t: AttributeType) -> bool {
    a.r#type == t as i32
}

fn ints(a: &AttributeProto) -> Result<&[i64], TreeError> {
    if is(a, AttributeType::Ints) {
        Ok(&a.ints)
    } else {
        Err(wrong(a, "INTS"))
    }
}

fn int(a: &AttributeProto) -> Result<i64, TreeError> {
    if is(a, AttributeType::Int) {
        Ok(a.i)
    } else {
        Err(wrong(a, "INT"))
    }
}

fn string(a: &AttributeProto) -> Result<&str, TreeError> {
    if !is(a, AttributeType::String) {
        return Err(wrong(a, "STRING"));
    }
    std::str::from_utf8(&a.s).map_err(|_| TreeError::invalid(a.name.clone(), "not UTF-8"))
}

fn strings(a: &AttributeProto) -> Result<Vec<String>, TreeError> {
    if !is(a, AttributeType::Strings) {
        return Err(wrong(a, "STRINGS"));
    }
    a.strings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            String::from_utf8(s.clone())
                .map_err(|_| TreeError::value(a.name.clone(), i, "<bytes>", "not UTF-8"))
        })
        .collect()
}

fn required_ints<'a>(node: &'a NodeProto, name: &'static str) -> Result<&'a [i64], TreeError> {
    match attr(node, name) {
        Some(a) => ints(a),
        None => Err(TreeError::Missing { attr: name }),
    }
}

fn check_len(name: &str, len: usize, expected: usize) -> Result<(), TreeError> {
    if len == expected {
        return Ok(());
    }
    let reference = if name.starts_with("nodes_") {
        "nodes_treeids"
    } else if name.starts_with("class_") {
        "class_treeids"
    } else {
        "target_treeids"
    };
    Err(TreeError::Length {
        attr: name.to_owned(),
        len,
        expected,
        reference,
    })
}

fn ints_len<'a>(node: &'a NodeProto, name: &'static str, n: usize) -> Result<&'a [i64], TreeError> {
    let v = required_ints(node, name)?;
    check_len(name, v.len(), n)?;
    Ok(v)
}

/// `name` (FLOATS) or `tensor_name` (a FLOAT or DOUBLE tensor); both is an error.
fn float_or_tensor(
    node: &NodeProto,
    name: &'static str,
    tensor_name: &'static str,
) -> Result<Option<Floats>, TreeError> {
    match (attr(node, name), attr(node, tensor_name)) {
        (Some(_), Some(_)) => Err(TreeError::invalid(
            tensor_name,
            format!("only one of {name} and {tensor_name} may be set"),
        )),
        (Some(a), None) => {
            if is(a, AttributeType::Floats) {
                Ok(Some(Floats::F32(name, a.floats.clone())))
            } else {
                Err(wrong(a, "FLOATS"))
            }
        }
        (None, Some(a)) => {
            if !is(a, AttributeType::Tensor) {
                return Err(wrong(a, "TENSOR"));
            }
            let t = a.t.as_ref().ok_or_else(|| {
                TreeError::invalid(tensor_name, "tensor attribute without a tensor")
            })?;
            tensor_floats(t, tensor_name).map(Some)
        }
        (None, None) => Ok(None),
    }
}

fn tensor_floats(t: &TensorProto, name: &'static str) -> Result<Floats, TreeError> {
    if !t.external_data.is_empty() {
        return Err(TreeError::Unsupported {
            attr: name.into(),
            what: "external tensor data".into(),
        });
    }
    let expected: Option<usize> = t.dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    });
    let values = if t.data_type == DataType::Double as i32 {
        let v: Vec<f64> = if !t.double_data.is_empty() {
            t.double_data.clone()
        } else {
            if !t.raw_data.len().is_multiple_of(8) {
                return Err(TreeError::invalid(
                    name,
                    "raw_data is not a whole number of doubles",
                ));
            }
            t.raw_data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        };
        Floats::F64(name, v)
    } else if t.data_type == DataType::Float as i32 {
        let v: Vec<f32> = if !t.float_data.is_empty() {
            t.float_data.clone()
        } else {
            if !t.raw_data.len().is_multiple_of(4) {
                return Err(TreeError::invalid(
                    name,
                    "raw_data is not a whole number of floats",
                ));
            }
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        Floats::F32(name, v)
    } else {
        return Err(TreeError::invalid(
            name,
            format!(
                "tensor element type #{} is neither FLOAT nor DOUBLE",
                t.data_type
            ),
        ));
    };
    if expected != Some(values.len()) {
        return Err(TreeError::invalid(
            name,
            format!(
                "tensor dims {:?} do not match its {} values",
                t.dims,
                values.len()
            ),
        ));
    }
    Ok(values)
}

fn base_attr_name(node: &NodeProto) -> &'static str {
    if attr(node, "base_values_as_tensor").is_some() {
        "base_values_as_tensor"
    } else {
        "base_values"
    }
}

fn base_values(node: &NodeProto) -> Result<Vec<f32>, TreeError> {
    Ok(
        match float_or_tensor(node, "base_values", "base_values_as_tensor")? {
            None => Vec::new(),
            Some(Floats::F32(_, v)) => v,
            Some(Floats::F64(_, v)) => v.into_iter().map(|x| x as f32).collect(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::trees::EvalError;

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Floats as i32,
            floats: v.to_vec(),
            ..Default::default()
        }
    }

    fn strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Strings as i32,
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    /// One split on x0 (true -> leaf 1 weighing 1, false -> leaf 2 weighing 2).
    fn regressor(threshold: AttributeProto, true_ids: &[i64]) -> NodeProto {
        NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            attribute: vec![
                ints("nodes_treeids", &[0, 0, 0]),
                ints("nodes_nodeids", &[0, 1, 2]),
                ints("nodes_featureids", &[0, 0, 0]),
                strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
                threshold,
                ints("nodes_truenodeids", true_ids),
                ints("nodes_falsenodeids", &[2, 0, 0]),
                ints("target_treeids", &[0, 0]),
                ints("target_nodeids", &[1, 2]),
                ints("target_ids", &[0, 0]),
                floats("target_weights", &[1.0, 2.0]),
                AttributeProto {
                    name: "n_targets".into(),
                    r#type: AttributeType::Int as i32,
                    i: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn score(e: &Ensemble, x: f32) -> f32 {
        let mut out = [0f32];
        e.eval(&[x], 1, &mut out, None).unwrap();
        out[0]
    }

    #[test]
    fn double_thresholds_compare_as_doubles() {
        let t = AttributeProto {
            name: "nodes_values_as_tensor".into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(TensorProto {
                dims: vec![3],
                data_type: DataType::Double as i32,
                double_data: vec![0.1, 0.0, 0.0],
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = parse_regressor(&regressor(t, &[1, 0, 0])).unwrap();
        // 0.1f32 is 0.100000001490116... > 0.1: the false branch, as in double.
        assert_eq!(score(&e, 0.1f32), 2.0);
        assert_eq!(score(&e, 0.1f32.next_down()), 1.0);
        // The f32 list form compares against 0.1f32 itself.
        let node = regressor(floats("nodes_values", &[0.1, 0.0, 0.0]), &[1, 0, 0]);
        assert_eq!(score(&parse_regressor(&node).unwrap(), 0.1f32), 1.0);
    }

    #[test]
    fn a_node_that_is_its_own_child_is_a_cycle_not_a_hang() {
        let node = regressor(floats("nodes_values", &[0.5, 0.0, 0.0]), &[0, 0, 0]);
        let err = parse_regressor(&node).unwrap_err().to_string();
        assert!(
            err.contains("nodes_truenodeids[0]") && err.contains("reached twice"),
            "{err}"
        );
    }

    #[test]
    fn unscorable_batches_are_errors_not_panics() {
        let node = regressor(floats("nodes_values", &[0.5, 0.0, 0.0]), &[1, 0, 0]);
        let e = parse_regressor(&node).unwrap();
        let mut out = [0f32; 2];
        assert_eq!(
            e.eval(&[1.0, 2.0, 3.0], 2, &mut out, None),
            Err(EvalError::Ragged { len: 3, width: 2 })
        );
        assert_eq!(e.eval(&[], 0, &mut out, None), Err(EvalError::NoColumns));
        assert!(matches!(
            e.eval(&[1.0], 1, &mut out, None),
            Err(EvalError::Buffer { what: "score", .. })
        ));
    }

    #[test]
    fn wrong_attribute_types_name_the_attribute() {
        let mut node = regressor(floats("nodes_values", &[0.5, 0.0, 0.0]), &[1, 0, 0]);
        node.attribute[0] = floats("nodes_treeids", &[0.0, 0.0, 0.0]);
        let err = parse_regressor(&node).unwrap_err().to_string();
        assert!(
            err.contains("nodes_treeids") && err.contains("INTS"),
            "{err}"
        );
    }
}

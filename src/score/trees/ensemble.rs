//! A validated tree ensemble, flattened for fast batch evaluation.
//!
//! Layout: all trees live in one `Vec<Node>` (16 bytes a node: packed
//! feature/mode/flags, `f32` threshold, `[false, true]` child indices). A leaf's
//! children are the leaf itself, so a traversal step is the same branch-free
//! code for every lane whether or not it has reached its leaf; leaf weights
//! live in flat parallel arrays indexed by node.
//!
//! Evaluation goes tree by tree over the batch (a tree's nodes stay in cache)
//! and walks [`LANES`] rows of a tree in lockstep: their loads and compares are
//! independent, so they overlap instead of forming one long dependency chain.
//! Each tree runs its shallowest-leaf depth unconditionally, then stops as soon
//! as every lane is at a leaf, and never more than its deepest-leaf depth:
//! traversal is bounded by construction (the builder rejected cycles). The
//! NaN test is compiled out for batches without NaN (one vectorised scan per
//! batch), and a uniform node mode (the usual case) is compiled in.
//!
//! Guarantees: [`Ensemble::eval`] never panics on well-formed buffers (lengths
//! are checked and reported as errors), and reproduces onnxruntime's
//! per-row arithmetic: the same comparisons, the same `f32` accumulation order
//! (trees in listed order, a leaf's weights in listed order) and the same
//! finalisation (see the `finalize_*` functions).

use super::TreeError;

/// Rows walked through a tree in lockstep.
pub const LANES: usize = 8;

/// Largest feature index a node may use (24 bits of a node's packed word).
pub const MAX_FEATURE: u32 = (1 << 24) - 1;

const FEATURE_MASK: u32 = MAX_FEATURE;
const MODE_SHIFT: u32 = 24;
const LEAF_BIT: u32 = 1 << 30;
const NAN_TRUE_BIT: u32 = 1 << 31;
/// Const-generic "mode" meaning: read the mode from each node.
const MIXED: u8 = 7;

/// A branch node's comparison (`nodes_modes`); the true branch is taken when
/// `x <op> threshold` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    Leq = 0,
    Lt = 1,
    Gte = 2,
    Gt = 3,
    Eq = 4,
    Neq = 5,
}

impl Mode {
    /// Parses an ONNX `nodes_modes` entry; `Ok(None)` is `LEAF`.
    pub fn parse(s: &str) -> Option<Option<Mode>> {
        Some(Some(match s {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => return Some(None),
            _ => return None,
        }))
    }
}

/// `post_transform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            _ => return None,
        })
    }
}

/// `aggregate_function` (regressor; a classifier always sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            _ => return None,
        })
    }
}

/// A batch [`Ensemble::eval`] cannot score (a caller bug, not a model defect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("input rows have no column")]
    NoColumns,
    #[error("the trees read feature {feature} but rows have {width} column(s)")]
    TooNarrow { feature: u32, width: usize },
    #[error("{len} floats is not a whole number of {width}-wide rows")]
    Ragged { len: usize, width: usize },
    #[error("the {what} buffer holds {len} values, {needed} needed")]
    Buffer {
        what: &'static str,
        len: usize,
        needed: usize,
    },
}

/// One flattened node.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Node {
    /// Feature index (bits 0-23), [`Mode`] (bits 24-26), leaf (bit 30),
    /// NaN takes the true branch (bit 31).
    packed: u32,
    threshold: f32,
    /// `[false child, true child]`, absolute indices; a leaf points to itself.
    children: [u32; 2],
}

impl Node {
    fn branch(feature: u32, mode: Mode, nan_true: bool, threshold: f32) -> Node {
        Node {
            packed: (feature & FEATURE_MASK)
                | ((mode as u32) << MODE_SHIFT)
                | if nan_true { NAN_TRUE_BIT } else { 0 },
            threshold,
            children: [0, 0],
        }
    }

    fn leaf(at: u32) -> Node {
        // Feature 0 and any threshold: a leaf's step goes back to itself.
        Node {
            packed: LEAF_BIT,
            threshold: 0.0,
            children: [at, at],
        }
    }

    #[inline(always)]
    fn feature(&self) -> usize {
        (self.packed & FEATURE_MASK) as usize
    }

    #[inline(always)]
    fn is_leaf(&self) -> bool {
        self.packed & LEAF_BIT != 0
    }

    #[inline(always)]
    fn nan_true(&self) -> bool {
        self.packed & NAN_TRUE_BIT != 0
    }

    #[inline(always)]
    fn mode_bits(&self) -> u8 {
        ((self.packed >> MODE_SHIFT) & 0x7) as u8
    }

    /// onnxruntime's test: `x <op> t || (missing_tracks_true && isnan(x))`.
    #[inline(always)]
    fn goes_true<const MODE: u8, const NAN: bool>(&self, x: f32) -> bool {
        let t = self.threshold;
        let mode = if MODE == MIXED {
            self.mode_bits()
        } else {
            MODE
        };
        let c = match mode {
            0 => x <= t,
            1 => x < t,
            2 => x >= t,
            3 => x > t,
            4 => x == t,
            _ => x != t,
        };
        if NAN {
            // `|`/`&` on bools keep this branch-free.
            c | (self.nan_true() & x.is_nan())
        } else {
            c
        }
    }

    /// The next node for `row`.
    ///
    /// # Safety
    /// `self.feature() < row.len()`: [`Ensemble::eval`] checks every branch's
    /// feature against the row width (and width >= 1 for leaves' feature 0).
    #[inline(always)]
    unsafe fn step<const MODE: u8, const NAN: bool>(&self, row: &[f32]) -> u32 {
        debug_assert!(self.feature() < row.len());
        // SAFETY: the caller guarantees the feature is within the row.
        let x = unsafe { *row.get_unchecked(self.feature()) };
        // A value select (cmov) on both children, loaded while the
        // comparison resolves: an indexed load of the chosen child would put
        // one more dependent load on the traversal's critical path.
        let [f, t] = self.children;
        std::hint::select_unpredictable(self.goes_true::<MODE, NAN>(x), t, f)
    }
}

/// One tree: where it starts and how deep its leaves are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub root: u32,
    /// Branch nodes on the shortest root-to-leaf path.
    pub min_depth: u32,
    /// Branch nodes on the longest root-to-leaf path.
    pub max_depth: u32,
}

/// Whether a row "has a score" for an output (onnxruntime's `has_score`),
/// which its binary-classifier and MIN/MAX rules depend on.
#[derive(Debug, Clone, PartialEq)]
enum HasScore {
    /// Known for every row from the model alone (per output).
    Static(Vec<bool>),
    /// Depends on the leaves a row reaches: tracked per row.
    Dynamic,
}

/// What the ensemble produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Classifier {
        labels: Vec<i64>,
        /// Two labels and every weight on one class id (onnxruntime's `binary_case_`).
        binary_case: bool,
        /// No negative class weight (onnxruntime's `weights_are_all_positive_`).
        all_positive: bool,
    },
    Regressor,
}

/// A validated, flattened tree ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    nodes: Vec<Node>,
    trees: Vec<Tree>,
    /// Per node: `[start, end)` into `weight_target` / `weight_value`.
    leaf_range: Vec<[u32; 2]>,
    weight_target: Vec<u32>,
    weight_value: Vec<f32>,
    /// Per node: its first weight (onnxruntime's single-output path), else 0.
    unique: Vec<f32>,
    /// Per node: the target of its first weight (0 without weights).
    unique_target: Vec<u32>,
    /// Every leaf has at most one weight: the summing path needs no ranges.
    one_weight_per_leaf: bool,
    n_outputs: usize,
    aggregate: Aggregate,
    post: PostTransform,
    base: Vec<f32>,
    kind: Kind,
    uniform_mode: Option<Mode>,
    any_nan_true: bool,
    max_feature: Option<u32>,
    has: HasScore,
}

/// One tree's node, as parsed (attribute order), before flattening.
#[derive(Debug, Clone, Copy)]
pub struct RawNode {
    pub tree: i64,
    pub id: i64,
    pub feature: u32,
    /// `None` for a leaf.
    pub mode: Option<Mode>,
    pub threshold: Threshold,
    pub true_id: i64,
    pub false_id: i64,
    pub nan_true: bool,
}

/// A threshold as given: `nodes_values` (f32) or `nodes_values_as_tensor`.
#[derive(Debug, Clone, Copy)]
pub enum Threshold {
    F32(f32),
    F64(f64),
}

/// One leaf weight, as parsed.
#[derive(Debug, Clone, Copy)]
pub struct RawWeight {
    pub tree: i64,
    pub node: i64,
    pub target: i64,
    pub value: f32,
}

/// Everything the builder needs; attribute names are for error messages.
#[derive(Debug, Clone)]
pub struct RawEnsemble {
    pub nodes: Vec<RawNode>,
    pub weights: Vec<RawWeight>,
    pub n_outputs: usize,
    pub aggregate: Aggregate,
    pub post: PostTransform,
    pub base: Vec<f32>,
    pub labels: Option<Vec<i64>>,
    /// `class` or `target`.
    pub prefix: &'static str,
}

/// The `f32` threshold that makes `x <op> t32` equal `(x as f64) <op> t` for
/// every `f32` x: onnxruntime compares double thresholds in double.
fn f32_threshold(mode: Mode, t: Threshold) -> f32 {
    let t = match t {
        Threshold::F32(t) => return t,
        Threshold::F64(t) => t,
    };
    let near = t as f32;
    if t.is_nan() || near as f64 == t {
        return near;
    }
    // Largest f32 below t and smallest above.
    let (down, up) = if (near as f64) < t {
        (near, near.next_up())
    } else {
        (near.next_down(), near)
    };
    match mode {
        // x <= t  <=>  x <= down;  x > t  <=>  x > down
        Mode::Leq | Mode::Gt => down,
        // x < t  <=>  x < up;  x >= t  <=>  x >= up
        Mode::Lt | Mode::Gte => up,
        // No f32 equals t: NaN makes `==` always false and `!=` always true.
        Mode::Eq | Mode::Neq => f32::NAN,
    }
}

impl Ensemble {
    /// Validates and flattens a parsed ensemble.
    pub fn build(raw: RawEnsemble) -> Result<Ensemble, TreeError> {
        use std::collections::HashMap;
        let p = raw.prefix;
        if raw.nodes.is_empty() {
            return Err(TreeError::invalid(
                "nodes_nodeids",
                "the ensemble has no nodes",
            ));
        }
        if raw.n_outputs == 0 {
            return Err(TreeError::invalid(
                if raw.labels.is_some() {
                    "classlabels_int64s"
                } else {
                    "n_targets"
                },
                "at least one output is required",
            ));
        }

        // Trees in order of first appearance, each contiguous (onnxruntime
        // takes a tree's first listed node as its root).
        let mut groups: Vec<(i64, usize, usize)> = Vec::new();
        let mut seen_trees: HashMap<i64, usize> = HashMap::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            match groups.last_mut() {
                Some((t, _, end)) if *t == n.tree => *end = i + 1,
                _ => {
                    if seen_trees.insert(n.tree, groups.len()).is_some() {
                        return Err(TreeError::value(
                            "nodes_treeids",
                            i,
                            n.tree,
                            "a tree's nodes must be listed contiguously (this tree appeared earlier)",
                        ));
                    }
                    groups.push((n.tree, i, i + 1));
                }
            }
        }

        let mut by_id: HashMap<(i64, i64), usize> = HashMap::with_capacity(raw.nodes.len());
        for (i, n) in raw.nodes.iter().enumerate() {
            if by_id.insert((n.tree, n.id), i).is_some() {
                return Err(TreeError::value(
                    "nodes_nodeids",
                    i,
                    n.id,
                    format!("node id appears twice in tree {}", n.tree),
                ));
            }
        }

        // Depth-first layout from each root, false child first so it usually
        // sits next to its parent. Every node is placed at most once: reaching
        // a placed node again is a cycle or a shared subtree.
        let mut new_index: Vec<Option<u32>> = vec![None; raw.nodes.len()];
        let mut order: Vec<usize> = Vec::with_capacity(raw.nodes.len());
        let mut trees = Vec::with_capacity(groups.len());
        for &(tree_id, first, _) in &groups {
            let root = first;
            let mut stack = vec![(root, 0u32, None::<(&'static str, usize)>)];
            let (mut min_depth, mut max_depth) = (u32::MAX, 0u32);
            while let Some((i, depth, via)) = stack.pop() {
                if new_index[i].is_some() {
                    let (attr, at) = via.unwrap_or(("nodes_nodeids", i));
                    return Err(TreeError::value(
                        attr,
                        at,
                        raw.nodes[i].id,
                        format!(
                            "node {} of tree {tree_id} is reached twice (a cycle or a shared subtree)",
                            raw.nodes[i].id
                        ),
                    ));
                }
                if order.len() >= u32::MAX as usize / 2 {
                    return Err(TreeError::invalid("nodes_nodeids", "too many nodes"));
                }
                new_index[i] = Some(order.len() as u32);
                order.push(i);
                let n = &raw.nodes[i];
                if n.mode.is_none() {
                    min_depth = min_depth.min(depth);
                    max_depth = max_depth.max(depth);
                    continue;
                }
                for (attr, child) in [
                    ("nodes_truenodeids", n.true_id),
                    ("nodes_falsenodeids", n.false_id),
                ] {
                    let Some(&c) = by_id.get(&(tree_id, child)) else {
                        return Err(TreeError::value(
                            attr,
                            i,
                            child,
                            format!("tree {tree_id} has no node with this id"),
                        ));
                    };
                    // Pushed last is visited first: the false child.
                    stack.push((c, depth + 1, Some((attr, i))));
                }
            }
            trees.push(Tree {
                root: new_index[root].unwrap_or(0),
                min_depth: if min_depth == u32::MAX { 0 } else { min_depth },
                max_depth,
            });
        }

        let mut nodes = Vec::with_capacity(order.len());
        let mut modes_seen: Option<Option<Mode>> = None;
        let mut any_nan_true = false;
        let mut max_feature: Option<u32> = None;
        for (at, &i) in order.iter().enumerate() {
            let n = &raw.nodes[i];
            let at = at as u32;
            let Some(mode) = n.mode else {
                nodes.push(Node::leaf(at));
                continue;
            };
            if n.feature > MAX_FEATURE {
                return Err(TreeError::value(
                    "nodes_featureids",
                    i,
                    n.feature,
                    format!("feature ids above {MAX_FEATURE} are not supported"),
                ));
            }
            modes_seen = Some(match modes_seen {
                None => Some(mode),
                Some(Some(m)) if m == mode => Some(m),
                Some(_) => None,
            });
            any_nan_true |= n.nan_true;
            max_feature = Some(max_feature.map_or(n.feature, |m| m.max(n.feature)));
            let mut node = Node::branch(
                n.feature,
                mode,
                n.nan_true,
                f32_threshold(mode, n.threshold),
            );
            let child = |id: i64| {
                by_id
                    .get(&(n.tree, id))
                    .and_then(|&c| new_index[c])
                    .unwrap_or(at)
            };
            node.children = [child(n.false_id), child(n.true_id)];
            nodes.push(node);
        }

        // Leaf weights, grouped per leaf in listed order.
        let mut per_leaf: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nodes.len()];
        let mut weights_seen = vec![false; raw.n_outputs];
        let mut all_positive = true;
        for (k, w) in raw.weights.iter().enumerate() {
            let Some(&i) = by_id.get(&(w.tree, w.node)) else {
                return Err(TreeError::value(
                    format!("{p}_nodeids"),
                    k,
                    w.node,
                    format!(
                        "tree {} has no node with this id (see {p}_treeids[{k}])",
                        w.tree
                    ),
                ));
            };
            if w.target < 0 || w.target as usize >= raw.n_outputs {
                return Err(TreeError::value(
                    format!("{p}_ids"),
                    k,
                    w.target,
                    format!(
                        "must be below the number of {} ({})",
                        if raw.labels.is_some() {
                            "class labels"
                        } else {
                            "targets (n_targets)"
                        },
                        raw.n_outputs
                    ),
                ));
            }
            if !w.value.is_finite() {
                return Err(TreeError::value(
                    format!("{p}_weights"),
                    k,
                    w.value,
                    "weights must be finite",
                ));
            }
            weights_seen[w.target as usize] = true;
            all_positive &= w.value >= 0.0;
            // Weights on branch nodes or unreachable nodes never contribute
            // (onnxruntime ignores them too: old onnxmltools wrote some).
            if raw.nodes[i].mode.is_some() {
                continue;
            }
            if let Some(at) = new_index[i] {
                per_leaf[at as usize].push((w.target as u32, w.value));
            }
        }
        let mut leaf_range = Vec::with_capacity(nodes.len());
        let mut weight_target = Vec::new();
        let mut weight_value = Vec::new();
        let mut unique = Vec::with_capacity(nodes.len());
        let mut unique_target = Vec::with_capacity(nodes.len());
        let one_weight_per_leaf = per_leaf.iter().all(|ws| ws.len() <= 1);
        for ws in &per_leaf {
            let start = weight_target.len() as u32;
            unique.push(ws.first().map_or(0.0, |w| w.1));
            unique_target.push(ws.first().map_or(0, |w| w.0));
            for &(t, v) in ws {
                weight_target.push(t);
                weight_value.push(v);
            }
            leaf_range.push([start, weight_target.len() as u32]);
        }

        // has_score per output: always (some tree scores it in every reachable
        // leaf), never (no leaf scores it), or row-dependent.
        let mut always = vec![false; raw.n_outputs];
        let mut ever = vec![false; raw.n_outputs];
        for &(_, first, end) in &groups {
            let mut leaves = 0usize;
            let mut count = vec![0usize; raw.n_outputs];
            let mut targets: Vec<u32> = Vec::new();
            for (n, at) in raw.nodes[first..end].iter().zip(&new_index[first..end]) {
                let Some(at) = at else { continue };
                if n.mode.is_some() {
                    continue;
                }
                leaves += 1;
                targets.clear();
                targets.extend(per_leaf[*at as usize].iter().map(|w| w.0));
                targets.sort_unstable();
                targets.dedup();
                for &c in &targets {
                    count[c as usize] += 1;
                    ever[c as usize] = true;
                }
            }
            for (a, &c) in always.iter_mut().zip(&count) {
                *a |= leaves > 0 && c == leaves;
            }
        }
        let has = if (0..raw.n_outputs).all(|c| always[c] || !ever[c]) {
            HasScore::Static(always)
        } else {
            HasScore::Dynamic
        };

        let kind = match raw.labels {
            Some(labels) => {
                let distinct = weights_seen.iter().filter(|s| **s).count();
                Kind::Classifier {
                    binary_case: labels.len() == 2 && distinct == 1,
                    all_positive,
                    labels,
                }
            }
            None => Kind::Regressor,
        };
        Ok(Ensemble {
            nodes,
            trees,
            leaf_range,
            weight_target,
            weight_value,
            unique,
            unique_target,
            one_weight_per_leaf,
            n_outputs: raw.n_outputs,
            aggregate: raw.aggregate,
            post: raw.post,
            base: raw.base,
            kind,
            uniform_mode: modes_seen.flatten(),
            any_nan_true,
            max_feature,
            has,
        })
    }

    /// Columns of the score output.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    pub fn is_classifier(&self) -> bool {
        matches!(self.kind, Kind::Classifier { .. })
    }

    /// Largest feature index any branch reads (`None`: the trees are leaves).
    pub fn max_feature(&self) -> Option<u32> {
        self.max_feature
    }

    /// Scores `n` rows of `width` floats. `scores` gets `n × n_outputs()`
    /// values; `labels` (classifiers) gets `n` labels.
    pub fn eval(
        &self,
        rows: &[f32],
        width: usize,
        scores: &mut [f32],
        mut labels: Option<&mut [i64]>,
    ) -> Result<(), EvalError> {
        if width == 0 {
            return Err(EvalError::NoColumns);
        }
        if let Some(feature) = self.max_feature {
            if feature as usize >= width {
                return Err(EvalError::TooNarrow { feature, width });
            }
        }
        if !rows.len().is_multiple_of(width) {
            return Err(EvalError::Ragged {
                len: rows.len(),
                width,
            });
        }
        let n = rows.len() / width;
        let k = self.n_outputs;
        if scores.len() != n * k {
            return Err(EvalError::Buffer {
                what: "score",
                len: scores.len(),
                needed: n * k,
            });
        }
        if let Some(l) = labels.as_deref() {
            if l.len() != n {
                return Err(EvalError::Buffer {
                    what: "label",
                    len: l.len(),
                    needed: n,
                });
            }
        }
        if n == 0 {
            return Ok(());
        }

        let single = k == 1 && !self.is_classifier();
        // MIN/MAX decide a row's first value by "has no score yet": always track.
        let track = !single
            && (self.has == HasScore::Dynamic
                || matches!(self.aggregate, Aggregate::Min | Aggregate::Max));
        let mut acc = vec![0f32; n * k];
        let mut has = if track {
            vec![false; n * k]
        } else {
            Vec::new()
        };
        let mut leaves: Vec<u32> = Vec::with_capacity(n);
        // NaN routing only matters when a row holds a NaN: a batch without
        // any takes the cheaper comparison (the scan is branch-free and
        // vectorises; it costs far less than a NaN test per node visit).
        let nan_routing = self.any_nan_true && has_nan(&rows[..n * width]);
        for (t, tree) in self.trees.iter().enumerate() {
            leaves.clear();
            self.walk(tree, rows, width, n, nan_routing, &mut leaves);
            if single {
                self.accumulate_single(&leaves, &mut acc, t == 0);
            } else {
                self.accumulate(&leaves, &mut acc, &mut has, track);
            }
        }

        let mut row_has = vec![false; k];
        for r in 0..n {
            let s = &mut acc[r * k..(r + 1) * k];
            let out = &mut scores[r * k..(r + 1) * k];
            if single {
                out[0] = self.finalize_single(s[0]);
                continue;
            }
            match &self.has {
                HasScore::Static(h) if !track => row_has.copy_from_slice(h),
                _ => row_has.copy_from_slice(&has[r * k..(r + 1) * k]),
            }
            match &self.kind {
                Kind::Regressor => self.finalize_regressor(s, &row_has, out),
                Kind::Classifier { .. } => {
                    let label = self.finalize_classifier(s, &mut row_has, out);
                    if let Some(l) = labels.as_deref_mut() {
                        l[r] = label;
                    }
                }
            }
        }
        Ok(())
    }

    /// Leaf node index reached by each of the `n` rows in `tree`.
    fn walk(
        &self,
        tree: &Tree,
        rows: &[f32],
        width: usize,
        n: usize,
        nan_routing: bool,
        out: &mut Vec<u32>,
    ) {
        macro_rules! go {
            ($mode:expr) => {
                if nan_routing {
                    self.walk_with::<{ $mode }, true>(tree, rows, width, n, out)
                } else {
                    self.walk_with::<{ $mode }, false>(tree, rows, width, n, out)
                }
            };
        }
        match self.uniform_mode {
            Some(Mode::Leq) => go!(0),
            Some(Mode::Lt) => go!(1),
            Some(Mode::Gte) => go!(2),
            Some(Mode::Gt) => go!(3),
            Some(Mode::Eq) => go!(4),
            Some(Mode::Neq) => go!(5),
            None => go!(MIXED),
        }
    }

    #[inline(always)]
    fn walk_with<const MODE: u8, const NAN: bool>(
        &self,
        tree: &Tree,
        rows: &[f32],
        width: usize,
        n: usize,
        out: &mut Vec<u32>,
    ) {
        let nodes = self.nodes.as_slice();
        // SAFETY (all `get_unchecked` / `step` calls below): node indices are
        // a tree's root or a node's child, all `< nodes.len()` by construction
        // in `build` (children are laid-out indices, leaves point to
        // themselves); `eval` checked `max_feature < width` and `width >= 1`,
        // and every `row` below is exactly `width` long. Bounds checks here
        // would cost a fifth of the traversal.
        let node = |i: u32| {
            debug_assert!((i as usize) < nodes.len());
            unsafe { nodes.get_unchecked(i as usize) }
        };
        let mut chunks = rows[..n * width].chunks_exact(width * LANES);
        for block in &mut chunks {
            let lanes: [&[f32]; LANES] =
                std::array::from_fn(|l| &block[l * width..(l + 1) * width]);
            let mut idx = [tree.root; LANES];
            for _ in 0..tree.min_depth {
                for (i, row) in idx.iter_mut().zip(&lanes) {
                    *i = unsafe { node(*i).step::<MODE, NAN>(row) };
                }
            }
            for _ in tree.min_depth..tree.max_depth {
                let mut done = true;
                for (i, row) in idx.iter_mut().zip(&lanes) {
                    let nd = node(*i);
                    done &= nd.is_leaf();
                    *i = unsafe { nd.step::<MODE, NAN>(row) };
                }
                if done {
                    break;
                }
            }
            out.extend_from_slice(&idx);
        }
        for row in chunks.remainder().chunks_exact(width) {
            let mut i = tree.root;
            for _ in 0..tree.max_depth {
                let nd = node(i);
                if nd.is_leaf() {
                    break;
                }
                i = unsafe { nd.step::<MODE, NAN>(row) };
            }
            out.push(i);
        }
    }

    /// onnxruntime's single-output path (one regression target): each tree
    /// adds (or min/maxes) its leaf's first weight.
    fn accumulate_single(&self, leaves: &[u32], acc: &mut [f32], first: bool) {
        let unique = self.unique.as_slice();
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => {
                for (a, &leaf) in acc.iter_mut().zip(leaves) {
                    *a += unique[leaf as usize];
                }
            }
            // Every tree scores in this path, so the first tree sets the value
            // ("has no score yet") and later trees compare.
            Aggregate::Min => {
                for (a, &leaf) in acc.iter_mut().zip(leaves) {
                    let w = unique[leaf as usize];
                    if first || w < *a {
                        *a = w;
                    }
                }
            }
            Aggregate::Max => {
                for (a, &leaf) in acc.iter_mut().zip(leaves) {
                    let w = unique[leaf as usize];
                    if first || w > *a {
                        *a = w;
                    }
                }
            }
        }
    }

    fn accumulate(&self, leaves: &[u32], acc: &mut [f32], has: &mut [bool], track: bool) {
        let k = self.n_outputs;
        if !track && self.one_weight_per_leaf {
            // Gradient-boosting layout (one weight per leaf): no ranges to
            // walk. A weightless leaf adds 0 to output 0, which changes nothing.
            for (row, &leaf) in acc.chunks_exact_mut(k).zip(leaves) {
                let leaf = leaf as usize;
                row[self.unique_target[leaf] as usize] += self.unique[leaf];
            }
            return;
        }
        for (r, &leaf) in leaves.iter().enumerate() {
            let [start, end] = self.leaf_range[leaf as usize];
            let (start, end) = (start as usize, end as usize);
            let row = &mut acc[r * k..(r + 1) * k];
            let targets = &self.weight_target[start..end];
            let values = &self.weight_value[start..end];
            match self.aggregate {
                Aggregate::Sum | Aggregate::Average => {
                    for (&t, &w) in targets.iter().zip(values) {
                        row[t as usize] += w;
                    }
                    if track {
                        for &t in targets {
                            has[r * k + t as usize] = true;
                        }
                    }
                }
                Aggregate::Min | Aggregate::Max => {
                    // MIN/MAX always track: "no score yet" decides the first value.
                    let hrow = &mut has[r * k..(r + 1) * k];
                    for (&t, &w) in targets.iter().zip(values) {
                        let t = t as usize;
                        let better = if self.aggregate == Aggregate::Min {
                            w < row[t]
                        } else {
                            w > row[t]
                        };
                        if !hrow[t] || better {
                            row[t] = w;
                        }
                        hrow[t] = true;
                    }
                }
            }
        }
    }

    /// onnxruntime's `FinalizeScores1` (one regression target).
    fn finalize_single(&self, s: f32) -> f32 {
        let origin = if self.base.len() == 1 {
            self.base[0]
        } else {
            0.0
        };
        let v = match self.aggregate {
            Aggregate::Average => s / self.trees.len() as f32 + origin,
            _ => s + origin,
        };
        if self.post == PostTransform::Probit {
            probit(v)
        } else {
            v
        }
    }

    /// onnxruntime's regressor `FinalizeScores` (several targets). As
    /// onnxruntime 1.32 does, a target no reached leaf scores stays 0: its
    /// base value is not added (checked against it, whatever the aggregate).
    fn finalize_regressor(&self, s: &mut [f32], has: &[bool], out: &mut [f32]) {
        let base = |j: usize| self.base.get(j).copied().unwrap_or(0.0);
        let n = self.trees.len() as f32;
        for (j, v) in s.iter_mut().enumerate() {
            *v = if !has[j] {
                0.0
            } else if self.aggregate == Aggregate::Average {
                *v / n + base(j)
            } else {
                *v + base(j)
            };
        }
        write_scores(s, self.post, -1, out);
    }

    /// onnxruntime's `TreeAggregatorClassifier::FinalizeScores`; returns the label.
    fn finalize_classifier(&self, s: &mut [f32], has: &mut [bool], out: &mut [f32]) -> i64 {
        let Kind::Classifier {
            labels,
            binary_case,
            all_positive,
        } = &self.kind
        else {
            return 0;
        };
        let base = self.base.as_slice();
        let mut add = -1;
        if s.len() > 2 {
            for (k, &b) in base.iter().enumerate() {
                if has[k] {
                    s[k] += b;
                } else {
                    has[k] = true;
                    s[k] = b;
                }
            }
            // First class with the strictly largest score among scored classes.
            let mut best: Option<(usize, f32)> = None;
            for (j, (&v, &h)) in s.iter().zip(has.iter()).enumerate() {
                if h && best.is_none_or(|(_, m)| v > m) {
                    best = Some((j, v));
                }
            }
            write_scores(s, self.post, add, out);
            // onnxruntime fails on a row where no class has a score (no base
            // values and no weight reached); the first label is the choice here.
            return labels[best.map_or(0, |b| b.0)];
        }
        // Two classes.
        let mut len = 2;
        match base.len() {
            2 => {
                if has[1] {
                    // As onnxruntime: base_values[0] is ignored and class 1 is
                    // rebuilt from class 0's score.
                    s[1] = base[1] + s[0];
                    s[0] = -s[1];
                    has[1] = true;
                } else {
                    // "Binary as multiclass": as onnxruntime 1.32, an unscored
                    // class gets no base value and stays 0.
                    if has[0] {
                        s[0] += base[0];
                    }
                }
            }
            1 => {
                s[0] += base[0];
                if !has[1] {
                    len = 1;
                }
            }
            _ => {
                add = 3;
                if !has[1] {
                    len = 1;
                }
            }
        }
        let (s1, h1) = if len == 2 && has[1] {
            (s[1], true)
        } else {
            (0.0, false)
        };
        let pos = if h1 {
            s1
        } else if has[0] {
            s[0]
        } else {
            0.0
        };
        let label = if *binary_case {
            let positive = if *all_positive { pos > 0.5 } else { pos > 0.0 };
            add = match (*all_positive, positive) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            };
            labels[positive as usize]
        } else if pos > 0.0 {
            1
        } else {
            0
        };
        write_scores(&mut s[..len], self.post, add, out);
        label
    }
}

/// Whether any value is NaN (no early exit, so it vectorises).
fn has_nan(values: &[f32]) -> bool {
    values
        .chunks(64)
        .any(|c| c.iter().fold(false, |acc, x| acc | x.is_nan()))
}

/// onnxruntime's `write_scores`: post transform, and the binary expansion of a
/// single score into two columns. Columns it leaves unwritten are 0.
fn write_scores(s: &mut [f32], post: PostTransform, add_second_class: i32, out: &mut [f32]) {
    out.fill(0.0);
    if s.len() >= 2 {
        match post {
            PostTransform::Probit => s.iter_mut().for_each(|v| *v = probit(*v)),
            PostTransform::Logistic => s.iter_mut().for_each(|v| *v = logistic(*v)),
            PostTransform::Softmax => softmax(s),
            PostTransform::SoftmaxZero => softmax_zero(s),
            PostTransform::None => {}
        }
        let n = s.len().min(out.len());
        out[..n].copy_from_slice(&s[..n]);
        return;
    }
    let Some(&v) = s.first() else { return };
    let pair = |a: f32, b: f32, out: &mut [f32]| {
        if let [o0, o1, ..] = out {
            *o0 = a;
            *o1 = b;
        } else if let [o0] = out {
            *o0 = a;
        }
    };
    if post == PostTransform::Probit {
        out[0] = probit(v);
        return;
    }
    match add_second_class {
        0 | 1 => pair(1.0 - v, v, out),
        2 | 3 if post == PostTransform::Logistic => pair(logistic(-v), logistic(v), out),
        2 | 3 => pair(-v, v, out),
        _ => out[0] = v,
    }
}

/// onnxruntime's `ComputeLogistic` (symmetric form, in f32).
#[inline]
pub fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 {
        1.0 - e
    } else {
        e
    }
}

/// onnxruntime's `ComputeProbit`: `sqrt(2) * erfinv(2p - 1)` with its
/// approximate `ErfInv` (Winitzki, a = 0.147), in f32, so values match it
/// rather than an exact inverse error function.
#[inline]
pub fn probit(p: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * p - 1.0)
}

fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

fn softmax(s: &mut [f32]) {
    let max = s.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let mut sum = 0f32;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    s.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax that leaves (near-)zero scores at zero, as onnxruntime's `ComputeSoftmaxZero`.
fn softmax_zero(s: &mut [f32]) {
    let max = s.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0f32;
    for v in s.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    s.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_thresholds_keep_comparisons_exact() {
        let t = 0.1f64; // not an f32
        for mode in [
            Mode::Leq,
            Mode::Lt,
            Mode::Gte,
            Mode::Gt,
            Mode::Eq,
            Mode::Neq,
        ] {
            let t32 = f32_threshold(mode, Threshold::F64(t));
            let node = Node::branch(0, mode, false, t32);
            let mut xs = vec![0.1f32, -1.0, 1.0];
            let (mut lo, mut hi) = (0.1f32, 0.1f32);
            for _ in 0..4 {
                lo = lo.next_down();
                hi = hi.next_up();
                xs.extend([lo, hi]);
            }
            for x in xs {
                let want = match mode {
                    Mode::Leq => (x as f64) <= t,
                    Mode::Lt => (x as f64) < t,
                    Mode::Gte => (x as f64) >= t,
                    Mode::Gt => (x as f64) > t,
                    Mode::Eq => (x as f64) == t,
                    Mode::Neq => (x as f64) != t,
                };
                assert_eq!(node.goes_true::<MIXED, false>(x), want, "{mode:?} {x}");
            }
        }
    }

    #[test]
    fn probit_matches_onnxruntime_approximation() {
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.96).abs() < 5e-3);
    }
}

#!/usr/bin/env python3
"""Tree-ensemble demo models, their onnxruntime fixtures and op edge cases.

Run from the repository root, after scripts/make_models.py has written
data/transactions.parquet:   python3 scripts/make_tree_models.py
(`--op-fixtures-only` rewrites only tests/fixtures/trees/, without training).
(package versions: scripts/requirements.txt plus scripts/requirements-trees.txt).

Rows are encoded exactly as scripts/make_models.py encodes them (its `encode`
and defaults are reused by import), the split is the same (first 80% by time
train, last 20% hold-out). Everything random is drawn from one Generator
seeded with SEED; only the timing file is a measurement.

Outputs
-------
models/<name>/1/{model.onnx,model.toml} for
    fraud-gbm      sklearn GradientBoostingClassifier (binary), skl2onnx
    fraud-lgbm     LightGBM LGBMClassifier, onnxmltools
    fraud-xgb      XGBoost XGBClassifier, onnxmltools
    fraud-lgbm-reg LightGBM LGBMRegressor on is_fraud (a raw score), onnxmltools
tests/fixtures/scores/<name>-1.jsonl
    Same format as fraud-rf-1.jsonl (regressor: "output" instead of
    "probabilities"). About 5% of the rows have 1-3 numeric inputs set to NaN
    in "input" (written as JSON null; "nan_inputs" lists their indices):
    onnxruntime's score for them is the reference, so the NaN routing of
    every converter (nodes_missing_value_tracks_true) is covered.
tests/fixtures/scores/fraud-rf-nan-1.jsonl
    The committed models/fraud-rf/1 scored by onnxruntime on the same rows
    (with the NaN rows), so the random forest's NaN routing is covered too.
tests/fixtures/scores/ort_timing_trees.json
    onnxruntime ns/event, 1 thread, batch 1/64/256 (same method as ort_timing.json).
tests/fixtures/trees/semantics/*.onnx + semantics.json
    Small hand-built TreeEnsembleClassifier/Regressor graphs covering every
    node mode, NaN tracking, post_transform, aggregate_function, base_values
    length and the *_as_tensor attributes (float tensors: onnxruntime 1.32
    cannot unpack double ones for float input), with onnxruntime's outputs
    (labels and scores) on random rows that include NaNs and exact threshold
    hits. Score entries onnxruntime never writes are "unwritten"
    (see run_prefilled); infinities are "inf"/"-inf", NaN is null.
tests/fixtures/trees/malformed/*.onnx + expected.json
    Graphs with one broken attribute each (expected.json: the attribute the
    load error must name), and ok.onnx, the same graph unbroken.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_models as mm  # noqa: E402

# onnxmltools declares `label` as [1]; onnxruntime warns on every batched run.
ort.set_default_logger_severity(3)

SEED = 20261125
NAN_ROW_FRACTION = 0.05
N_FIXTURE_ROWS = 1200
ROOT = Path.cwd()

# Encoded columns that are plain numerics (one float each): NaN candidates.
NUMERIC_COLUMNS = []
_pos = 0
for _name, _kind, _src, _vocab, _agg in mm.INPUTS:
    if _kind == "categorical":
        _pos += len(_vocab)
    else:
        if _kind == "numeric":
            NUMERIC_COLUMNS.append(_pos)
        _pos += 1


def load_columns() -> dict:
    t = pq.read_table(ROOT / "data" / "transactions.parquet")
    cols = {}
    for name, kind, *_ in mm.INPUTS:
        col = t.column(name)
        if kind == "categorical":
            cols[name] = np.array(col.to_pylist(), dtype=object)
        elif kind == "boolean":
            cols[name] = np.array(col.to_pylist(), dtype=bool)
        else:
            cols[name] = np.array([np.nan if v is None else v for v in col.to_pylist()], dtype=np.float64)
    cols["is_fraud"] = np.array(t.column("is_fraud").to_pylist(), dtype=np.int64)
    cols["event_id"] = t.column("event_id").to_pylist()
    cols["entity_id"] = t.column("entity_id").to_pylist()
    return cols


def defaults_of(cols: dict, train: np.ndarray) -> dict:
    """The manifest defaults, computed exactly as make_models.main does."""
    d = {c: float(np.nanmedian(cols[c][train])) for c in mm.STORE_NUMERIC}
    d["card_tier"] = "standard"
    d["txn_count_1h"] = 0.0
    med = float(np.median(cols["amount"][train]))
    d["amount_mean_24h"] = med
    d["amount_max_24h"] = med
    return d


def inject_nans(rng: np.random.Generator, X: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A copy of X with 1-3 numeric inputs NaN in `fraction` of the rows."""
    X = X.copy()
    rows = rng.choice(len(X), size=int(round(len(X) * fraction)), replace=False)
    for r in rows:
        k = int(rng.integers(1, 4))
        X[r, rng.choice(NUMERIC_COLUMNS, size=k, replace=False)] = np.nan
    return X, np.sort(rows)


def write_manifest(path: Path, name: str, desc: str, sha: str, defaults: dict, output: str, index: int) -> None:
    mm.write_manifest(path, name, desc, sha, defaults)
    text = path.read_text()
    text = text.replace('output = "probabilities"\nindex = 1', f'output = "{output}"\nindex = {index}', 1)
    path.write_text(text)


def fixed_name(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    model.graph.name = name.replace("-", "_")
    return model


# ----------------------------------------------------------------------------
# Demo models
# ----------------------------------------------------------------------------
def train_models(Xtr: np.ndarray, Xtr_nan: np.ndarray, ytr: np.ndarray, dim: int) -> list:
    import lightgbm as lgb
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat
    from sklearn.ensemble import GradientBoostingClassifier

    rs = SEED % 2**31
    specs = []

    gbm = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=rs)
    gbm.fit(Xtr.astype(np.float64), ytr)
    specs.append(("fraud-gbm", mm.to_onnx(gbm, dim), "probabilities", 1,
                  "sklearn GradientBoostingClassifier (100 trees, depth 3), binary; score = P(fraud)"))

    lgbm = lgb.LGBMClassifier(n_estimators=100, num_leaves=31, random_state=rs, n_jobs=1, verbose=-1)
    lgbm.fit(Xtr_nan, ytr)
    m = onnxmltools.convert_lightgbm(lgbm, initial_types=[("input", MlFloat([None, dim]))],
                                     zipmap=False, target_opset=15)
    specs.append(("fraud-lgbm", m, "probabilities", 1,
                  "LightGBM classifier (100 trees, 31 leaves), trained with missing values; score = P(fraud)"))

    xg = xgb.XGBClassifier(n_estimators=100, max_depth=6, random_state=rs, n_jobs=1, tree_method="hist")
    xg.fit(Xtr_nan, ytr)
    m = onnxmltools.convert_xgboost(xg, initial_types=[("input", MlFloat([None, dim]))],
                                    target_opset=15)
    specs.append(("fraud-xgb", m, "probabilities", 1,
                  "XGBoost classifier (100 trees, depth 6), trained with missing values; score = P(fraud)"))

    reg = lgb.LGBMRegressor(n_estimators=100, num_leaves=31, random_state=rs, n_jobs=1, verbose=-1)
    reg.fit(Xtr_nan, ytr.astype(np.float64))
    m = onnxmltools.convert_lightgbm(reg, initial_types=[("input", MlFloat([None, dim]))],
                                     target_opset=15)
    specs.append(("fraud-lgbm-reg", m, None, 0,
                  "LightGBM regressor on is_fraud (100 trees, 31 leaves), trained with missing values; score = raw regression output"))
    return specs


# ----------------------------------------------------------------------------
# Hand-built edge-case graphs
# ----------------------------------------------------------------------------
MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
N_FEATURES = 4
# Thresholds come from this grid so rows can hit them exactly (EQ/NEQ, boundaries).
GRID = np.array([-1.5, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0], dtype=np.float32)


def random_trees(rng, n_trees: int, depth: int, modes) -> list:
    """Full binary trees as lists of node dicts (node ids shuffled per tree)."""
    trees = []
    for t in range(n_trees):
        d = int(rng.integers(1, depth + 1))
        n_nodes = 2 ** (d + 1) - 1
        ids = rng.permutation(n_nodes)  # node k (BFS order) gets id ids[k]
        nodes = []
        for k in range(n_nodes):
            leaf = k >= 2 ** d - 1
            nodes.append({
                "tree": t, "id": int(ids[k]),
                "mode": "LEAF" if leaf else str(rng.choice(modes)),
                "feature": 0 if leaf else int(rng.integers(0, N_FEATURES)),
                "value": 0.0 if leaf else float(rng.choice(GRID) + (rng.random() * 0.3 if rng.random() < 0.3 else 0.0)),
                "true": 0 if leaf else int(ids[2 * k + 1]),
                "false": 0 if leaf else int(ids[2 * k + 2]),
                "missing": 0 if leaf else int(rng.random() < 0.5),
            })
        trees.append(nodes)
    return trees


def ensemble_node(kind: str, trees: list, leaf_weights, n_out: int, *, post="NONE", base=None,
                  aggregate=None, as_tensor=False, labels=None, shuffle_rng=None):
    # onnxruntime takes the first listed node of each tree as its root and
    # needs a tree's nodes to be contiguous: shuffle only the rest of a tree.
    nodes = []
    for tr in trees:
        rest = tr[1:]
        if shuffle_rng is not None:
            rest = [rest[i] for i in shuffle_rng.permutation(len(rest))]
        nodes += [tr[0]] + rest
    attrs = {
        "nodes_treeids": [n["tree"] for n in nodes],
        "nodes_nodeids": [n["id"] for n in nodes],
        "nodes_featureids": [n["feature"] for n in nodes],
        "nodes_modes": [n["mode"] for n in nodes],
        "nodes_truenodeids": [n["true"] for n in nodes],
        "nodes_falsenodeids": [n["false"] for n in nodes],
        "nodes_missing_value_tracks_true": [n["missing"] for n in nodes],
        "nodes_hitrates": [1.0] * len(nodes),
        "post_transform": post,
    }
    values = [n["value"] for n in nodes]
    prefix = "class" if kind == "classifier" else "target"
    tids, nids, cids, ws = [], [], [], []
    for (t, nid, c, w) in leaf_weights:
        tids.append(t)
        nids.append(nid)
        cids.append(c)
        ws.append(w)
    attrs[f"{prefix}_treeids"] = tids
    attrs[f"{prefix}_nodeids"] = nids
    attrs[f"{prefix}_ids"] = cids
    if as_tensor:
        # onnxruntime 1.32 reads *_as_tensor with the input's element type
        # (float here): a double tensor is "could not unpack" for float input.
        attrs["nodes_values_as_tensor"] = helper.make_tensor("v", TensorProto.FLOAT, [len(values)], values)
        attrs[f"{prefix}_weights_as_tensor"] = helper.make_tensor("w", TensorProto.FLOAT, [len(ws)], ws)
        if base is not None:
            # onnxruntime 1.32 cannot unpack a double base_values_as_tensor
            # ("could not unpack tensor attribute"): keep the float list.
            attrs["base_values"] = base
    else:
        attrs["nodes_values"] = values
        attrs[f"{prefix}_weights"] = ws
        if base is not None:
            attrs["base_values"] = base
    if kind == "classifier":
        attrs["classlabels_int64s"] = labels if labels is not None else list(range(n_out))
        return helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "probabilities"],
                                domain="ai.onnx.ml", **attrs)
    attrs["n_targets"] = n_out
    if aggregate is not None:
        attrs["aggregate_function"] = aggregate
    return helper.make_node("TreeEnsembleRegressor", ["input"], ["variable"], domain="ai.onnx.ml", **attrs)


def graph_model(node, kind: str, n_out: int, width: int = N_FEATURES) -> onnx.ModelProto:
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])
    if kind == "classifier":
        outs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, None])]
    else:
        outs = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, n_out])]
    g = helper.make_graph([node], "trees", [inp], outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 3)],
                             ir_version=8)


def leaves_of(trees):
    return [(n["tree"], n["id"]) for tr in trees for n in tr if n["mode"] == "LEAF"]


def semantic_cases(rng) -> list:
    """(name, kind, n_out, node) for every behaviour the Rust op must reproduce."""
    cases = []

    def w(scale=1.0, positive=False):
        v = float(rng.normal() * scale)
        return abs(v) if positive else v

    # Every node mode alone, then mixed, on a regressor (NaN tracking random per node).
    for mode in MODES + ["MIXED"]:
        modes = MODES if mode == "MIXED" else [mode]
        trees = random_trees(rng, 5, 4, modes)
        lw = [(t, n, 0, w()) for t, n in leaves_of(trees)]
        cases.append((f"reg-mode-{mode.lower()}", "regressor", 1,
                      ensemble_node("regressor", trees, lw, 1, shuffle_rng=rng)))

    # Regressor aggregates x post transforms x base values, 1 and 3 targets.
    for n_t in (1, 3):
        for agg in ("SUM", "AVERAGE", "MIN", "MAX"):
            for base in (None, [0.5] * 1 if n_t == 1 else [0.5, -1.0, 2.0]):
                trees = random_trees(rng, 6, 3, ["BRANCH_LEQ", "BRANCH_LT"])
                lw = []
                for t, n in leaves_of(trees):
                    for target in range(n_t):
                        # Some leaves leave a target out, so "has a score" differs per row.
                        if n_t > 1 and target == 2 and rng.random() < 0.5:
                            continue
                        lw.append((t, n, target, w()))
                tag = "nobase" if base is None else "base"
                cases.append((f"reg-t{n_t}-{agg.lower()}-{tag}", "regressor", n_t,
                              ensemble_node("regressor", trees, lw, n_t, aggregate=agg, base=base,
                                            shuffle_rng=rng)))
    trees = random_trees(rng, 4, 3, ["BRANCH_LEQ"])
    lw = [(t, n, 0, float(rng.uniform(0.05, 0.2))) for t, n in leaves_of(trees)]
    cases.append(("reg-probit", "regressor", 1, ensemble_node("regressor", trees, lw, 1, post="PROBIT")))
    trees = random_trees(rng, 5, 4, MODES)
    lw = [(t, n, tg, w()) for t, n in leaves_of(trees) for tg in range(2)]
    cases.append(("reg-as-tensor", "regressor", 2,
                  ensemble_node("regressor", trees, lw, 2, base=[0.1, 0.2], as_tensor=True)))

    # Binary classifiers: one weight column (GBM style), both columns (RF style),
    # all-positive single column (probability style), each post transform and
    # base_values length 0/1/2.
    for post in ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"):
        for base in (None, [0.3], [-0.4, 0.7]):
            trees = random_trees(rng, 5, 3, ["BRANCH_LEQ", "BRANCH_GT"])
            lw = [(t, n, 0, w(0.2 if post == "PROBIT" else 1.0)) for t, n in leaves_of(trees)]
            tag = "b0" if base is None else f"b{len(base)}"
            cases.append((f"clf2-single-{post.lower()}-{tag}", "classifier", 2,
                          ensemble_node("classifier", trees, lw, 2, post=post, base=base, labels=[3, 7])))
        trees = random_trees(rng, 5, 3, ["BRANCH_LEQ"])
        lw = [(t, n, c, float(rng.uniform(0, 0.2))) for t, n in leaves_of(trees) for c in range(2)]
        cases.append((f"clf2-both-{post.lower()}", "classifier", 2,
                      ensemble_node("classifier", trees, lw, 2, post=post)))
        trees = random_trees(rng, 5, 3, ["BRANCH_LEQ"])
        lw = [(t, n, 1, float(rng.uniform(0, 0.2))) for t, n in leaves_of(trees)]
        cases.append((f"clf2-positive-class1-{post.lower()}", "classifier", 2,
                      ensemble_node("classifier", trees, lw, 2, post=post)))
    trees = random_trees(rng, 5, 3, ["BRANCH_LEQ"])
    lw = [(t, n, 0, float(rng.uniform(0, 0.2))) for t, n in leaves_of(trees)]
    cases.append(("clf2-positive-class0", "classifier", 2, ensemble_node("classifier", trees, lw, 2)))
    # Class 1 scored in some leaves only: "has a score" differs per row.
    trees = random_trees(rng, 4, 3, ["BRANCH_LEQ"])
    lw = [(t, n, c, w()) for t, n in leaves_of(trees) for c in range(2) if c == 0 or rng.random() < 0.3]
    for post in ("NONE", "LOGISTIC"):
        for base in (None, [0.3], [-0.4, 0.7]):
            tag = "b0" if base is None else f"b{len(base)}"
            cases.append((f"clf2-sparse-{post.lower()}-{tag}", "classifier", 2,
                          ensemble_node("classifier", trees, lw, 2, post=post, base=base)))

    # Multi-class: GBM style (tree k scores class k % 3) and RF style (all classes).
    for post in ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"):
        for base in (None, [0.1, -0.2, 0.3]):
            trees = random_trees(rng, 6, 3, ["BRANCH_LEQ", "BRANCH_LT"])
            scale = 0.1 if post == "PROBIT" else 1.0
            lw = [(t, n, t % 3, w(scale)) for t, n in leaves_of(trees)]
            tag = "b0" if base is None else "b3"
            cases.append((f"clf3-gbm-{post.lower()}-{tag}", "classifier", 3,
                          ensemble_node("classifier", trees, lw, 3, post=post, base=base, labels=[10, 20, 30])))
            # SOFTMAX_ZERO's zero handling: exact zeros among the class scores.
            lw = [(t, n, c, 0.0 if rng.random() < 0.3 else float(rng.uniform(0, 0.3)))
                  for t, n in leaves_of(trees) for c in range(3)]
            cases.append((f"clf3-rf-{post.lower()}-{tag}", "classifier", 3,
                          ensemble_node("classifier", trees, lw, 3, post=post, base=base)))
    trees = random_trees(rng, 5, 4, MODES)
    lw = [(t, n, c, w()) for t, n in leaves_of(trees) for c in range(3)]
    cases.append(("clf3-as-tensor", "classifier", 3,
                  ensemble_node("classifier", trees, lw, 3, post="SOFTMAX", base=[0.1, 0.2, 0.3], as_tensor=True)))
    return cases


def run_prefilled(sess, kind: str, n_out: int, X: np.ndarray):
    """All outputs, plus which score entries onnxruntime never wrote.

    For a binary row left with one score and no rule to expand it (PROBIT, or
    one base value with weights on both classes) onnxruntime writes column 0
    only; column 1 is whatever the buffer held. Running into buffers
    pre-filled with two different sentinels finds those entries exactly; the
    fixture marks them "unwritten" (driftline writes 0 there).
    """
    runs = []
    for sentinel in (12345.0, -54321.0):
        b = sess.io_binding()
        b.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(X))
        scores = np.full((len(X), n_out), sentinel, np.float32)
        b.bind_output("probabilities" if kind == "classifier" else "variable", "cpu", 0, np.float32,
                      list(scores.shape), scores.ctypes.data)
        labels = np.zeros(len(X), np.int64)
        if kind == "classifier":
            b.bind_output("label", "cpu", 0, np.int64, list(labels.shape), labels.ctypes.data)
        sess.run_with_iobinding(b)
        runs.append((labels, scores, scores == sentinel))
    (labels, scores, u0), (_, _, u1) = runs
    return labels, scores, u0 & u1


def jfloat(v):
    """A float for JSON: NaN as null, infinities as strings (JSON has neither)."""
    v = float(v)
    if np.isnan(v):
        return None
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def semantic_rows(rng, n: int = 300) -> np.ndarray:
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32) * 1.5
    hit = rng.random(X.shape) < 0.3
    X[hit] = rng.choice(GRID, size=int(hit.sum()))
    X[rng.random(X.shape) < 0.08] = np.nan
    return X


MALFORMED = {
    # name: (attribute the error must name, mutation)
    "truenode-out-of-range": "nodes_truenodeids",
    "falsenode-other-tree": "nodes_falsenodeids",
    "cycle": "nodes_truenodeids",
    "duplicate-node": "nodes_nodeids",
    "length-mismatch": "nodes_values",
    "class-id-out-of-range": "class_ids",
    "unknown-mode": "nodes_modes",
    "weight-on-missing-node": "class_nodeids",
    "feature-out-of-range": "nodes_featureids",
    "bad-post-transform": "post_transform",
    "string-labels": "classlabels_strings",
    "base-values-length": "base_values",
    "tree-not-contiguous": "nodes_treeids",
}


def malformed_models() -> dict:
    """One tiny 2-feature binary classifier per broken attribute."""
    def base_attrs():
        # tree 0: node 0 splits on feature 0 -> leaves 1 (true) and 2 (false)
        return {
            "nodes_treeids": [0, 0, 0],
            "nodes_nodeids": [0, 1, 2],
            "nodes_featureids": [0, 0, 0],
            "nodes_modes": ["BRANCH_LEQ", "LEAF", "LEAF"],
            "nodes_values": [0.5, 0.0, 0.0],
            "nodes_truenodeids": [1, 0, 0],
            "nodes_falsenodeids": [2, 0, 0],
            "class_treeids": [0, 0],
            "class_nodeids": [1, 2],
            "class_ids": [1, 1],
            "class_weights": [0.2, 0.8],
            "classlabels_int64s": [0, 1],
            "post_transform": "NONE",
        }

    out = {"ok": None}
    for name in ["ok", *MALFORMED]:
        a = base_attrs()
        if name == "ok":
            pass
        elif name == "truenode-out-of-range":
            a["nodes_truenodeids"] = [7, 0, 0]
        elif name == "falsenode-other-tree":
            a["nodes_treeids"] = [0, 0, 1]
        elif name == "cycle":
            # 0 -> 1 -> 0: node 1 is a branch whose true child is the root.
            a["nodes_treeids"] = [0, 0, 0, 0]
            a["nodes_nodeids"] = [0, 1, 2, 3]
            a["nodes_featureids"] = [0, 1, 0, 0]
            a["nodes_values"] = [0.5, 0.5, 0.0, 0.0]
            a["nodes_modes"] = ["BRANCH_LEQ", "BRANCH_LEQ", "LEAF", "LEAF"]
            a["nodes_truenodeids"] = [1, 0, 0, 0]
            a["nodes_falsenodeids"] = [2, 3, 0, 0]
            a["class_nodeids"] = [2, 3]
        elif name == "duplicate-node":
            a["nodes_nodeids"] = [0, 1, 1]
        elif name == "length-mismatch":
            a["nodes_values"] = [0.5, 0.0]
        elif name == "class-id-out-of-range":
            a["class_ids"] = [1, 5]
        elif name == "unknown-mode":
            a["nodes_modes"] = ["BRANCH_SOMETIMES", "LEAF", "LEAF"]
        elif name == "weight-on-missing-node":
            a["class_nodeids"] = [1, 9]
        elif name == "feature-out-of-range":
            a["nodes_featureids"] = [5, 0, 0]
        elif name == "bad-post-transform":
            a["post_transform"] = "CUBE_ROOT"
        elif name == "string-labels":
            del a["classlabels_int64s"]
            a["classlabels_strings"] = ["no", "yes"]
        elif name == "base-values-length":
            a["base_values"] = [0.1, 0.2, 0.3]
        elif name == "tree-not-contiguous":
            # Tree 0's nodes around a node of tree 1.
            a["nodes_treeids"] = [0, 1, 0]
            a["nodes_nodeids"] = [0, 0, 2]
            a["nodes_modes"] = ["BRANCH_LEQ", "LEAF", "LEAF"]
            a["nodes_truenodeids"] = [2, 0, 0]
            a["class_treeids"] = [0, 1]
            a["class_nodeids"] = [2, 0]
        node = helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "probabilities"],
                                domain="ai.onnx.ml", **a)
        out[name] = graph_model(node, "classifier", 2, width=2)
    return out


# ----------------------------------------------------------------------------
def main() -> None:
    if not (ROOT / "Cargo.toml").exists():
        sys.exit("run from the repository root: python3 scripts/make_tree_models.py")
    op_only = "--op-fixtures-only" in sys.argv[1:]
    rng = np.random.default_rng(SEED)
    if op_only:
        # The same Generator state as a full run reaches after the demo models.
        rng = np.random.default_rng([SEED, 1])
        write_op_fixtures(rng)
        return
    cols = load_columns()
    n = len(cols["is_fraud"])
    n_train = int(round(n * mm.TRAIN_FRACTION))
    train = np.arange(n) < n_train
    defaults = defaults_of(cols, train)
    X = mm.encode(cols, defaults)
    y = cols["is_fraud"]
    dim = X.shape[1]
    Xtr, ytr = X[train], y[train]
    Xtr_nan, _ = inject_nans(rng, Xtr, NAN_ROW_FRACTION)

    # Fixture rows: every hold-out fraud, the rest drawn at random; ~5% get NaNs.
    ho_idx = np.flatnonzero(~train)
    fraud = ho_idx[y[ho_idx] == 1]
    rest = np.setdiff1d(ho_idx, fraud)
    extra = rng.choice(rest, size=max(0, N_FIXTURE_ROWS - len(fraud)), replace=False)
    rows = np.sort(np.concatenate([fraud, extra]))
    Xfx, nan_rows = inject_nans(rng, X[rows], NAN_ROW_FRACTION)
    nan_set = set(int(i) for i in nan_rows)

    specs = train_models(Xtr, Xtr_nan, ytr, dim)
    fx_dir = ROOT / "tests" / "fixtures" / "scores"
    timing = {
        "cpu": mm.cpu_model(),
        "onnxruntime": ort.__version__,
        "threads": {"intra_op": 1, "inter_op": 1},
        "method": "median over single InferenceSession.run calls (all outputs) after 200 warm-up "
                  "calls; ns per event = median call time / batch size; rows without NaN",
        "ns_per_event": {},
    }
    Xho = X[ho_idx]

    def write_fixture(path: Path, sess, output: str, index: int, key: str) -> float:
        out = sess.run([output], {"input": Xfx})[0]
        out = out.reshape(len(Xfx), -1)
        with open(path, "w") as f:
            for i, r in enumerate(rows):
                r = int(r)
                rec = {
                    "event_id": cols["event_id"][r],
                    "entity_id": cols["entity_id"][r],
                    "features": {nm: raw(cols, nm, r) for nm in mm.INPUT_NAMES},
                    "input": [None if np.isnan(v) else mm.f32(v) for v in Xfx[i]],
                    key: [mm.f32(v) for v in out[i]],
                    "score": mm.f32(out[i][index]),
                }
                if i in nan_set:
                    rec["nan_inputs"] = [int(j) for j in np.flatnonzero(np.isnan(Xfx[i]))]
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return float(out[:, index].std())

    summary = []
    for name, model, output, index, desc in specs:
        model = fixed_name(model, name)
        outputs = [o.name for o in model.graph.output]
        if output is None:
            output = outputs[0]
        assert output in outputs, (name, outputs)
        mdir = ROOT / "models" / name / "1"
        mdir.mkdir(parents=True, exist_ok=True)
        (mdir / "model.onnx").write_bytes(model.SerializeToString())
        sha = mm.sha256_file(mdir / "model.onnx")
        write_manifest(mdir / "model.toml", name, desc, sha, defaults, output, index)
        sess = mm.session(mdir / "model.onnx")
        key = "probabilities" if output == "probabilities" else "output"
        spread = write_fixture(fx_dir / f"{name}-1.jsonl", sess, output, index, key)
        ops = sorted({f"{nd.domain}:{nd.op_type}" for nd in model.graph.node})
        summary.append(f"{name}: outputs {outputs}, ops {ops}, score std {spread:.4f}")
        timing["ns_per_event"][name] = {str(b): round(mm.time_session(sess, Xho, b), 1) for b in (1, 64, 256)}

    rf_sess = mm.session(ROOT / "models" / "fraud-rf" / "1" / "model.onnx")
    write_fixture(fx_dir / "fraud-rf-nan-1.jsonl", rf_sess, "probabilities", 1, "probabilities")
    timing["ns_per_event"]["fraud-rf"] = {str(b): round(mm.time_session(rf_sess, Xho, b), 1) for b in (1, 64, 256)}
    (fx_dir / "ort_timing_trees.json").write_text(json.dumps(timing, indent=2) + "\n")

    write_op_fixtures(np.random.default_rng([SEED, 1]))

    import lightgbm
    import onnxmltools
    import sklearn
    import xgboost
    for line in summary:
        print(line)
    print(f"fixture rows: {len(rows)} ({len(nan_rows)} with NaN inputs)")
    print("ORT ns/event (1 thread): " + json.dumps(timing["ns_per_event"]))
    print(f"versions: sklearn {sklearn.__version__}, lightgbm {lightgbm.__version__}, xgboost {xgboost.__version__}, "
          f"onnxmltools {onnxmltools.__version__}, onnxruntime {ort.__version__}, onnx {onnx.__version__}")


def write_op_fixtures(rng: np.random.Generator) -> None:
    """tests/fixtures/trees/: op-semantics cases with onnxruntime outputs, malformed graphs."""
    sem_dir = ROOT / "tests" / "fixtures" / "trees" / "semantics"
    sem_dir.mkdir(parents=True, exist_ok=True)
    for old in sem_dir.glob("*.onnx"):
        old.unlink()
    Xs = semantic_rows(rng)
    records = {"rows": [[None if np.isnan(v) else float(v) for v in r] for r in Xs], "cases": []}
    for name, kind, n_out, node in semantic_cases(rng):
        model = graph_model(node, kind, n_out)
        path = sem_dir / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        sess = mm.session(path)
        labels, scores, unwritten = run_prefilled(sess, kind, n_out, Xs)
        rec = {"name": name, "kind": kind,
               "scores": [["unwritten" if unwritten[i, j] else jfloat(v) for j, v in enumerate(r)]
                          for i, r in enumerate(scores)]}
        if kind == "classifier":
            rec["label"] = [int(v) for v in labels]
        records["cases"].append(rec)
    (sem_dir / "semantics.json").write_text(json.dumps(records, separators=(",", ":")) + "\n")

    mal_dir = ROOT / "tests" / "fixtures" / "trees" / "malformed"
    mal_dir.mkdir(parents=True, exist_ok=True)
    for name, model in malformed_models().items():
        (mal_dir / f"{name}.onnx").write_bytes(model.SerializeToString())
    (mal_dir / "expected.json").write_text(json.dumps(MALFORMED, indent=2) + "\n")
    print(f"op fixtures: {len(records['cases'])} semantic cases, {len(MALFORMED)} malformed graphs")


def raw(cols: dict, name: str, r: int):
    return mm.raw_value(cols, name, r)

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Parity fixtures for driftline's rolling performance metrics (src/drift/labels/).

Run from the repository root:   python3 scripts/make_label_fixtures.py
(package versions: scripts/requirements-labels.txt; NumPy and scikit-learn only).

Writes tests/fixtures/labels/<name>.json, one data set each, drawn from one
Generator seeded with SEED. Scores are float32, as the models emit them, and
are written as the float64 value of that float32 (so Rust reads back the same
f32); every metric is computed in float64 from those values. Each file holds:

    name, threshold, scores, labels (0/1),
    expected   metrics over all pairs,
    rolling    {window, expected}: metrics over the last `window` pairs, which
               is what LabelJoin's window holds after labelling them in order.

tests/parity/label_parity.rs checks driftline against them within 1e-9.

Definitions (y = labels, p = scores as float64):

    count, positives  len(y), sum(y)
    accuracy          sklearn.metrics.accuracy_score(y, p >= threshold)
    roc_auc           sklearn.metrics.roc_auc_score(y, p); null with one class
    log_loss          sklearn.metrics.log_loss(y, y_proba=clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])
                      (scikit-learn >= 1.5 clips at the dtype's epsilon, 2.2e-16,
                      instead of the 1e-15 driftline uses; clipping first makes
                      its own clip a no-op, so the two agree)
    brier             sklearn.metrics.brier_score_loss(y, p)
"""

import json
import pathlib

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

SEED = 20260514
EPS = 1e-15
OUT = pathlib.Path("tests/fixtures/labels")

rng = np.random.default_rng(SEED)


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def informative(n, base_rate, separation):
    """Labels at `base_rate`; positives' scores shifted up by `separation`."""
    y = (rng.random(n) < base_rate).astype(np.int64)
    logit = rng.normal(0.0, 1.0, n) + separation * (2 * y - 1) - 1.0
    return f32(1.0 / (1.0 + np.exp(-logit))), y


def metrics(p, y, threshold):
    both = len(set(y.tolist())) == 2
    return {
        "count": int(len(y)),
        "positives": int(y.sum()),
        "accuracy": float(accuracy_score(y, (p >= threshold).astype(np.int64))),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "log_loss": float(log_loss(y, y_proba=np.clip(p, EPS, 1 - EPS), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
    }


def write(name, p, y, threshold=0.5, window=None):
    p, y = f32(p), np.asarray(y, dtype=np.int64)
    window = window or len(y)
    fixture = {
        "name": name,
        "generator": f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, seed {SEED}",
        "threshold": threshold,
        "scores": [float(v) for v in p],
        "labels": [int(v) for v in y],
        "expected": metrics(p, y, threshold),
        "rolling": {"window": window, "expected": metrics(p[-window:], y[-window:], threshold)},
    }
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"{path}: n={len(y)} {fixture['expected']}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)

    # A typical fraud-like window: rare positives, a good model.
    p, y = informative(5_000, 0.08, 1.5)
    write("rare_positives", p, y, window=5_000)

    # Balanced, weak model, at another accuracy threshold; the rolling window
    # is the last 1,000 of 3,000.
    p, y = informative(3_000, 0.5, 0.4)
    write("balanced_weak", p, y, threshold=0.3, window=1_000)

    # Scores rounded to 0.05: thousands of ties, which AUC must average.
    p, y = informative(2_000, 0.3, 0.8)
    write("ties", np.round(p * 20) / 20, y, window=700)

    # Only negatives: AUC undefined, the rest still defined.
    p, _ = informative(400, 0.0, 1.0)
    write("single_class", p, np.zeros(400, dtype=np.int64), window=150)

    # Certain scores, right and wrong, and values beyond the clip in both
    # directions: log-loss must clip to 1e-15 and stay finite.
    extremes = np.array([0.0, 1.0, 1e-20, 1.0 - 1e-8, 1e-7, 0.5, 0.5, 0.999999, 0.0, 1.0])
    labels = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 0])
    reps = 30
    order = rng.permutation(len(extremes) * reps)
    write("extremes", np.tile(extremes, reps)[order], np.tile(labels, reps)[order], window=97)

    # Drift: the model is good for the first half and near random after it;
    # the rolling window sees only the bad part.
    p1, y1 = informative(2_000, 0.2, 1.5)
    p2, y2 = informative(2_000, 0.2, 0.1)
    write("degrading", np.concatenate([p1, p2]), np.concatenate([y1, y2]), window=1_500)

    # A handful, small enough to check by hand.
    write("tiny", [0.1, 0.4, 0.4, 0.8, 0.35], [0, 0, 1, 1, 1], window=3)


if __name__ == "__main__":
    main()

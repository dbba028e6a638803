//! Rolling performance metrics against scikit-learn:
//! `tests/fixtures/labels/*.json`, written by
//! `scripts/make_label_fixtures.py` (definitions there and on
//! `driftline::drift::labels::WindowMetrics`).
//!
//! Each fixture is checked twice, within 1e-9: the metric functions over all
//! pairs, and a [`LabelJoin`] fed the predictions as one scored batch and the
//! labels in order, whose window must then hold exactly the last `window`
//! pairs.

use std::path::Path;

use driftline::drift::labels::{
    window_metrics, JoinOutcome, LabelConfig, LabelJoin, Scored, WindowMetrics,
};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-9;

#[derive(Deserialize)]
struct Fixture {
    name: String,
    threshold: f64,
    scores: Vec<f64>,
    labels: Vec<u8>,
    expected: Expected,
    rolling: Rolling,
}

#[derive(Deserialize)]
struct Rolling {
    window: usize,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    count: usize,
    positives: usize,
    accuracy: f64,
    roc_auc: Option<f64>,
    log_loss: f64,
    brier: f64,
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/labels");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 7, "fixtures missing in {}", dir.display());
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

fn pairs(f: &Fixture) -> Vec<Scored> {
    f.scores
        .iter()
        .zip(&f.labels)
        .map(|(&s, &l)| {
            let score = s as f32;
            assert_eq!(
                f64::from(score),
                s,
                "{}: score {s} is not a float32",
                f.name
            );
            Scored {
                score,
                label: l == 1,
            }
        })
        .collect()
}

fn check(name: &str, got: &WindowMetrics, want: &Expected) {
    assert_eq!(got.count, want.count, "{name}: count");
    assert_eq!(got.positives, want.positives, "{name}: positives");
    let close = |metric: &str, got: Option<f64>, want: Option<f64>| match (got, want) {
        (Some(g), Some(w)) => {
            println!("{name:>24} {metric:<9} |diff| {:.1e}", (g - w).abs());
            assert!(
                (g - w).abs() <= TOLERANCE,
                "{name}: {metric} {g} vs scikit-learn {w}"
            );
        }
        (None, None) => {}
        _ => panic!("{name}: {metric} {got:?} vs scikit-learn {want:?}"),
    };
    close("accuracy", got.accuracy, Some(want.accuracy));
    close("roc_auc", got.roc_auc, want.roc_auc);
    close("log_loss", got.log_loss, Some(want.log_loss));
    close("brier", got.brier, Some(want.brier));
}

#[test]
fn metrics_match_scikit_learn() {
    for f in fixtures() {
        let mut window = pairs(&f);
        let got = window_metrics(&mut window, f.threshold);
        check(&f.name, &got, &f.expected);
    }
}

#[test]
fn the_join_window_matches_scikit_learn_on_the_last_pairs() {
    for f in fixtures() {
        let join = LabelJoin::new(&LabelConfig {
            window: f.rolling.window,
            threshold: f.threshold,
            min_labels: 0,
            ..LabelConfig::default()
        })
        .unwrap();
        let ids: Vec<String> = (0..f.scores.len()).map(|i| format!("evt-{i:09}")).collect();
        let scored = pairs(&f);
        join.record(
            ids.iter()
                .zip(&scored)
                .map(|(id, s)| (id.as_str(), s.score, 0)),
            "1",
        );
        for (id, s) in ids.iter().zip(&scored) {
            assert!(
                matches!(join.label(id, s.label, None), JoinOutcome::Matched { .. }),
                "{}: {id} did not match",
                f.name
            );
        }
        let snapshot = join.snapshot();
        assert_eq!(snapshot.len(), 1, "{}", f.name);
        assert_eq!(snapshot[0].labelled, f.scores.len() as u64);
        check(
            &format!("{} (last {})", f.name, f.rolling.window),
            &snapshot[0].metrics,
            &f.rolling.expected,
        );
    }
}

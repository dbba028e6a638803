//! `[labels]`: the label join's limits and the `performance` alert
//! thresholds, validated all at once.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::metrics::WindowMetrics;
use crate::duration;

/// Largest window accepted: a snapshot sorts every window (for AUC), and
/// this keeps one under about 100 ms.
pub const MAX_WINDOW: usize = 1_000_000;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    /// The `[labels]` settings are unusable; every problem is listed.
    #[error("{} problem(s) in [labels]:\n  - {}", problems.len(), problems.join("\n  - "))]
    InvalidConfig { problems: Vec<String> },
}

/// `[labels]`: the label join and the `performance` alert thresholds.
///
/// The topic name is not here: it belongs with the other topic names in
/// `[kafka.topics]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelConfig {
    /// Most predictions held for a label (awaiting, or labelled and kept to
    /// spot repeated labels); beyond it the oldest are dropped and counted as
    /// `evicted`. About 100 bytes each (100 MB at the default), plus the id
    /// when it is longer than 24 bytes.
    pub max_pending: usize,
    /// How long a prediction waits for its label (e.g. `1h`), by wall clock
    /// from when it was scored; older ones are dropped and counted as
    /// `expired`. Set it above the label delay the producer of labels has.
    pub max_age: String,
    /// Labelled predictions per model version that the rolling metrics cover.
    pub window: usize,
    /// Score at or above which a prediction counts as positive, for accuracy.
    pub threshold: f64,
    /// Alert when accuracy falls below this; unset = not judged.
    pub min_accuracy: Option<f64>,
    /// Alert when ROC AUC falls below this; unset = not judged. AUC is
    /// undefined while the window holds one class only and is then not judged.
    pub min_auc: Option<f64>,
    /// Alert when log-loss rises above this; unset = not judged.
    pub max_log_loss: Option<f64>,
    /// Alert when the Brier score rises above this; unset = not judged.
    pub max_brier: Option<f64>,
    /// Labels a version's window must hold before its metrics are judged: a
    /// few dozen labels give metrics too noisy to alert on.
    pub min_labels: usize,
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig {
            max_pending: 1_000_000,
            max_age: "1h".into(),
            window: 5_000,
            threshold: 0.5,
            min_accuracy: None,
            // A floor that says "badly wrong" for any useful binary model;
            // set a tighter one per model.
            min_auc: Some(0.7),
            max_log_loss: None,
            max_brier: None,
            min_labels: 500,
        }
    }
}

impl LabelConfig {
    /// Every problem with these settings, each naming its key (`labels.*`).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_pending == 0 {
            p.push("labels.max_pending: must be at least 1".into());
        }
        if let Err(e) = duration::parse_ms(&self.max_age) {
            p.push(format!("labels.max_age: {e}"));
        }
        if !(1..=MAX_WINDOW).contains(&self.window) {
            p.push(format!(
                "labels.window: {} is outside 1..={MAX_WINDOW}",
                self.window
            ));
        }
        if self.min_labels > self.window {
            p.push(format!(
                "labels.min_labels: {} is more than labels.window ({}), so metrics would never be judged",
                self.min_labels, self.window
            ));
        }
        let unit = |key: &str, v: f64, p: &mut Vec<String>| {
            if !(0.0..=1.0).contains(&v) {
                p.push(format!("labels.{key}: {v} is outside 0..=1"));
            }
        };
        unit("threshold", self.threshold, &mut p);
        for (key, value) in [
            ("min_accuracy", self.min_accuracy),
            ("min_auc", self.min_auc),
            ("max_brier", self.max_brier),
        ] {
            if let Some(v) = value {
                unit(key, v, &mut p);
            }
        }
        if let Some(v) = self.max_log_loss {
            if !(v.is_finite() && v >= 0.0) {
                p.push(format!(
                    "labels.max_log_loss: {v} must be a non-negative number"
                ));
            }
        }
        p
    }

    /// `max_age` in milliseconds.
    pub fn max_age_ms(&self) -> Result<i64, LabelError> {
        duration::parse_ms(&self.max_age).map_err(|e| LabelError::InvalidConfig {
            problems: vec![format!("labels.max_age: {e}")],
        })
    }

    /// The thresholds `metrics` is on the wrong side of; empty when the window
    /// holds fewer than `min_labels` labels. A metric that is undefined (AUC
    /// with one class) is not judged.
    pub fn breaches(&self, metrics: &WindowMetrics) -> Vec<Breach> {
        if metrics.count < self.min_labels.max(1) {
            return Vec::new();
        }
        let checks = [
            (PerfMetric::Accuracy, metrics.accuracy, self.min_accuracy),
            (PerfMetric::RocAuc, metrics.roc_auc, self.min_auc),
            (PerfMetric::LogLoss, metrics.log_loss, self.max_log_loss),
            (PerfMetric::Brier, metrics.brier, self.max_brier),
        ];
        checks
            .into_iter()
            .filter_map(|(metric, value, limit)| {
                let (value, limit) = (value?, limit?);
                let bad = if metric.higher_is_better() {
                    value < limit
                } else {
                    value > limit
                };
                bad.then_some(Breach {
                    metric,
                    value,
                    limit,
                })
            })
            .collect()
    }
}

/// One of the rolling performance metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PerfMetric {
    Accuracy,
    RocAuc,
    LogLoss,
    Brier,
}

impl PerfMetric {
    /// Every metric, for pre-registering metric series.
    pub const ALL: [PerfMetric; 4] = [
        PerfMetric::Accuracy,
        PerfMetric::RocAuc,
        PerfMetric::LogLoss,
        PerfMetric::Brier,
    ];

    /// Stable name, for alert payloads and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            PerfMetric::Accuracy => "accuracy",
            PerfMetric::RocAuc => "roc_auc",
            PerfMetric::LogLoss => "log_loss",
            PerfMetric::Brier => "brier",
        }
    }

    /// Accuracy and AUC alert when low, the two losses when high.
    pub fn higher_is_better(self) -> bool {
        matches!(self, PerfMetric::Accuracy | PerfMetric::RocAuc)
    }
}

impl fmt::Display for PerfMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metric on the wrong side of its configured limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breach {
    pub metric: PerfMetric,
    pub value: f64,
    pub limit: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::labels::LabelJoin;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = LabelConfig::default();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.max_age_ms().unwrap(), 3_600_000);
        assert_eq!(
            (c.max_pending, c.window, c.min_labels),
            (1_000_000, 5_000, 500)
        );
        assert_eq!(c.min_auc, Some(0.7));
    }

    #[test]
    fn config_reads_from_toml_and_rejects_unknown_keys() {
        let c: LabelConfig =
            toml::from_str("max_age = \"2h\"\nwindow = 1000\nmin_labels = 100\nmax_brier = 0.2\n")
                .unwrap();
        assert_eq!(c.max_age_ms().unwrap(), 7_200_000);
        assert_eq!(c.max_brier, Some(0.2));
        assert_eq!(c.max_pending, 1_000_000);
        let err = toml::from_str::<LabelConfig>("max_logloss = 0.5\n").unwrap_err();
        assert!(err.to_string().contains("max_logloss"), "{err}");
    }

    #[test]
    fn every_config_problem_is_reported_at_once() {
        let c = LabelConfig {
            max_pending: 0,
            max_age: "soon".into(),
            window: 0,
            threshold: 1.5,
            min_accuracy: Some(-0.1),
            min_auc: Some(f64::NAN),
            max_log_loss: Some(-1.0),
            max_brier: Some(2.0),
            min_labels: 10,
        };
        let problems = c.problems();
        for key in [
            "labels.max_pending",
            "labels.max_age",
            "labels.window",
            "labels.min_labels",
            "labels.threshold",
            "labels.min_accuracy",
            "labels.min_auc",
            "labels.max_log_loss",
            "labels.max_brier",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing from {problems:?}"
            );
        }
        assert!(matches!(
            LabelJoin::new(&c),
            Err(LabelError::InvalidConfig { problems }) if problems.len() == 9
        ));
    }

    #[test]
    fn breaches_respect_min_labels_and_direction() {
        let c = LabelConfig {
            min_accuracy: Some(0.9),
            min_auc: Some(0.7),
            max_log_loss: Some(0.5),
            max_brier: Some(0.1),
            min_labels: 10,
            ..LabelConfig::default()
        };
        let mut m = WindowMetrics {
            count: 9,
            positives: 3,
            accuracy: Some(0.5),
            roc_auc: Some(0.6),
            log_loss: Some(0.9),
            brier: Some(0.3),
        };
        assert!(c.breaches(&m).is_empty(), "too few labels to judge");
        m.count = 10;
        let got: Vec<PerfMetric> = c.breaches(&m).iter().map(|b| b.metric).collect();
        assert_eq!(got, PerfMetric::ALL);
        m = WindowMetrics {
            count: 10,
            positives: 0,
            accuracy: Some(0.95),
            roc_auc: None,
            log_loss: Some(0.1),
            brier: Some(0.01),
        };
        assert!(c.breaches(&m).is_empty(), "good, and AUC undefined");
    }
}

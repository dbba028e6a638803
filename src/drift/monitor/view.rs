//! The drift view: what `GET /v1/drift` answers and what `driftline report
//! --json` writes, one type, so a dashboard or a CI script reads both the
//! same way (`docs/report.md` documents the schema).
//!
//! Guarantees: a [`WindowVerdict`] is derived from the evaluation's own
//! judgements (the `bad` flags of [`Judged`]), never recomputed; the
//! history a [`DriftStatus`] carries is bounded by the evaluator's
//! history length.

use serde::Serialize;

use super::config::{DriftConfig, WindowKind};
use super::evaluator::DriftStatus;
use super::judge::{ColumnStatus, Judged};
use super::window::WindowRef;

/// The `[drift]` settings the view was judged under.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewConfig {
    pub window: WindowKind,
    pub window_events: u64,
    pub window_duration: String,
    pub sub_windows: u32,
    pub min_samples: u64,
    pub fire_after: u32,
    pub resolve_after: u32,
    pub retrain_after: u32,
}

impl ViewConfig {
    /// The window and hysteresis settings of `config`.
    pub fn of(config: &DriftConfig) -> Self {
        ViewConfig {
            window: config.window,
            window_events: config.window_events,
            window_duration: config.window_duration.clone(),
            sub_windows: config.sub_windows,
            min_samples: config.min_samples,
            fire_after: config.fire_after,
            resolve_after: config.resolve_after,
            retrain_after: config.retrain_after,
        }
    }
}

/// `GET /v1/drift` and `driftline report --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftView {
    /// Always true (monitoring off answers 404 instead).
    pub enabled: bool,
    /// The reference profile's id.
    pub reference: String,
    pub config: ViewConfig,
    /// The latest evaluation: the service's current window, or the
    /// report's last window of the file.
    pub status: DriftStatus,
    /// What a report read and concluded (absent from `/v1/drift`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportSummary>,
}

/// One rule that judged a window bad: a column's statistic past its
/// threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadRule {
    /// The column, or `score`.
    pub column: String,
    pub statistic: &'static str,
    pub value: f64,
    pub threshold: Option<f64>,
}

/// One evaluation in the status history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowVerdict {
    pub window: WindowRef,
    /// Whether the window was judged (held all its sub-windows and
    /// `min_samples` events).
    pub judged: bool,
    /// Every bad judgement of the window, score included.
    pub bad: Vec<BadRule>,
    /// Alerts firing after the evaluation.
    pub firing: usize,
}

impl WindowVerdict {
    /// The verdict of `status`'s window.
    pub fn of(status: &DriftStatus, window: WindowRef, judged: bool) -> Self {
        let bad = status
            .columns
            .iter()
            .chain(status.score.as_ref())
            .flat_map(bad_rules)
            .collect();
        WindowVerdict {
            window,
            judged,
            bad,
            firing: status
                .alerts
                .iter()
                .filter(|a| a.state == super::AlertState::Firing)
                .count(),
        }
    }
}

fn bad_rules(column: &ColumnStatus) -> impl Iterator<Item = BadRule> + '_ {
    column
        .statistics
        .iter()
        .filter(|j: &&Judged| j.bad)
        .map(|j| BadRule {
            column: column.name.clone(),
            statistic: j.statistic,
            value: j.value,
            threshold: j.threshold,
        })
}

/// How often one rule judged a window bad over a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleCount {
    pub column: String,
    pub statistic: &'static str,
    /// Windows in which it was bad.
    pub windows: u64,
}

/// Rows left out of a report's score for one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedSummary {
    /// The reject reason's code.
    pub reason: String,
    pub rows: u64,
    /// The first such row, with its number.
    pub example: String,
}

/// What `driftline report` read and concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportSummary {
    /// The data file.
    pub data: String,
    /// `name/version` of the model that scored it.
    pub model: String,
    pub rows: u64,
    /// Rows the model scored (the rows the monitor saw).
    pub scored: u64,
    pub skipped: Vec<SkippedSummary>,
    /// Events per window (`--window`), `None` for the whole file as one.
    pub window_events: Option<u64>,
    /// Windows evaluated, and how many of them were judged.
    pub windows: u64,
    pub judged_windows: u64,
    /// Any judged statistic of any window was bad.
    pub drifted: bool,
    /// The rules that were bad, most windows first.
    pub rules: Vec<RuleCount>,
}

impl ReportSummary {
    /// Counts the bad rules of `history` (every window of the report) and
    /// sets `drifted`.
    pub fn conclude(&mut self, history: &[WindowVerdict]) {
        let mut rules: Vec<RuleCount> = Vec::new();
        for bad in history.iter().flat_map(|v| &v.bad) {
            match rules
                .iter_mut()
                .find(|r| r.column == bad.column && r.statistic == bad.statistic)
            {
                Some(r) => r.windows += 1,
                None => rules.push(RuleCount {
                    column: bad.column.clone(),
                    statistic: bad.statistic,
                    windows: 1,
                }),
            }
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.windows));
        self.windows = history.len() as u64;
        self.judged_windows = history.iter().filter(|v| v.judged).count() as u64;
        self.drifted = !rules.is_empty();
        self.rules = rules;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(judged: bool, bad: &[(&str, &'static str)]) -> WindowVerdict {
        WindowVerdict {
            window: WindowRef {
                start: 0,
                end: 1,
                count: 10,
            },
            judged,
            bad: bad
                .iter()
                .map(|&(column, statistic)| BadRule {
                    column: column.into(),
                    statistic,
                    value: 1.0,
                    threshold: Some(0.5),
                })
                .collect(),
            firing: 0,
        }
    }

    fn summary() -> ReportSummary {
        ReportSummary {
            data: "d.csv".into(),
            model: "m/1".into(),
            rows: 30,
            scored: 30,
            skipped: Vec::new(),
            window_events: Some(10),
            windows: 0,
            judged_windows: 0,
            drifted: false,
            rules: Vec::new(),
        }
    }

    #[test]
    fn a_report_counts_each_bad_rule_per_window_most_first() {
        let mut s = summary();
        s.conclude(&[
            verdict(true, &[("amount", "ks")]),
            verdict(true, &[("amount", "ks"), ("channel", "chi_square")]),
            verdict(false, &[]),
        ]);
        assert!(s.drifted);
        assert_eq!((s.windows, s.judged_windows), (3, 2));
        let rules: Vec<(&str, &str, u64)> = s
            .rules
            .iter()
            .map(|r| (r.column.as_str(), r.statistic, r.windows))
            .collect();
        assert_eq!(
            rules,
            [("amount", "ks", 2), ("channel", "chi_square", 1)],
            "{rules:?}"
        );
    }

    #[test]
    fn no_bad_rule_is_no_drift() {
        let mut s = summary();
        s.conclude(&[verdict(true, &[]), verdict(false, &[])]);
        assert!(!s.drifted);
        assert!(s.rules.is_empty());
        assert_eq!(s.judged_windows, 1);
    }
}

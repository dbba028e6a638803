//! Alerts: their kinds, states and messages, and the hysteresis that turns
//! a run of judgements into state changes.

use serde::Serialize;

use super::judge::Judged;
use super::window::WindowRef;

/// Kinds of alerts (spec: `drift-alerts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    DataDrift,
    PredictionDrift,
    MissingValues,
    Performance,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DataDrift => "data_drift",
            AlertKind::PredictionDrift => "prediction_drift",
            AlertKind::MissingValues => "missing_values",
            AlertKind::Performance => "performance",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// One `drift-alerts` message: one per state change of an episode of
/// (kind, feature). Spec fields, plus `p_value`, `ts`, the
/// `model_version` of a performance alert's version, and `statistics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertMessage {
    /// Stable for one firing episode: the resolved message repeats the
    /// firing message's id.
    pub alert_id: String,
    pub kind: AlertKind,
    pub model: String,
    pub model_version: String,
    pub feature: String,
    /// The lead statistic ([`lead`]): the most significant bad one when
    /// firing, the one that fired the episode when resolving.
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    pub state: AlertState,
    pub window: WindowRef,
    pub reference: String,
    /// When the state changed (wall clock, epoch ms).
    pub ts: i64,
    /// Every statistic of the episode's kind judged for the feature in this
    /// evaluation (the same objects as `/v1/drift`'s columns).
    pub statistics: Vec<Judged>,
}

/// One `retrain-requests` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrainRequest {
    pub request_id: String,
    pub model: String,
    pub model_version: String,
    /// Why: the alert that stayed firing, and every alert firing with it.
    pub trigger: String,
    pub alerts: Vec<AlertMessage>,
    pub window: WindowRef,
    pub reference: String,
    /// Evaluations the triggering alert had been firing.
    pub firing_evaluations: u32,
    pub ts: i64,
}

/// What the evaluator emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Alert(AlertMessage),
    Retrain(RetrainRequest),
}

/// One alert's current state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertStatus {
    pub kind: AlertKind,
    pub feature: String,
    /// The lead statistic (see [`AlertMessage::statistic`]).
    pub statistic: String,
    pub state: AlertState,
    pub since: i64,
    pub alert_id: String,
    pub value: f64,
    pub threshold: f64,
    /// Consecutive bad / good evaluations.
    pub bad_streak: u32,
    pub good_streak: u32,
    pub firing_evaluations: u32,
}

/// Names one alert: its kind and the column (or `model_version=...` of a
/// performance alert). Every statistic of the column judged under that
/// kind feeds the same episode, so statistics that hover at their
/// thresholds cannot page more than once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct AlertKey {
    pub(super) kind: AlertKind,
    pub(super) feature: String,
}

impl AlertKey {
    /// The id of a firing episode that starts at `now`: stable until it
    /// resolves, unique per model version, alert and start time.
    pub(super) fn alert_id(&self, model: &str, version: &str, now: i64) -> String {
        format!(
            "{model}/{version}:{}:{}:{now}",
            self.kind.as_str(),
            self.feature
        )
    }
}

/// The statistic that speaks for an episode's judgement: the most
/// significant bad one (smallest p-value; among statistics without one,
/// the largest multiple of its threshold), else, while an episode fired
/// by `fired_by` is open, that statistic, else the first judged one.
/// `None` when no statistic has a threshold (nothing to judge).
pub(super) fn lead<'a>(statistics: &'a [Judged], fired_by: Option<&str>) -> Option<&'a Judged> {
    let judged = || statistics.iter().filter(|j| j.threshold.is_some());
    let bad = judged().filter(|j| j.bad).min_by(|a, b| {
        let key = |j: &Judged| match (j.p_value, j.threshold) {
            (Some(p), _) => (0, p),
            (None, Some(t)) if t != 0.0 => (1, -(j.value / t).abs()),
            _ => (2, 0.0),
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    });
    bad.or_else(|| fired_by.and_then(|f| judged().find(|j| j.statistic == f)))
        .or_else(|| judged().next())
}

/// How many judgements in a row change an alert's state
/// (`drift.fire_after`, `drift.resolve_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rules {
    pub(super) fire_after: u32,
    pub(super) resolve_after: u32,
}

/// One alert between evaluations: its state, streaks, and the last
/// judged value (for messages).
#[derive(Debug, Default)]
pub(super) struct Hysteresis {
    pub(super) firing: bool,
    pub(super) bad_streak: u32,
    pub(super) good_streak: u32,
    /// Evaluations since it fired, the firing one and a resolving one
    /// included.
    pub(super) firing_evaluations: u32,
    /// Set when it fires; kept after it resolves, so the resolved message
    /// repeats the firing message's id.
    pub(super) alert_id: String,
    /// The statistic that fired the episode.
    pub(super) fired_by: String,
    /// The lead statistic of the last judgement.
    pub(super) statistic: String,
    /// Every statistic of the last judgement.
    pub(super) statistics: Vec<Judged>,
    /// When the state last changed.
    pub(super) since: i64,
    pub(super) value: f64,
    pub(super) threshold: f64,
    pub(super) p_value: Option<f64>,
}

impl Hysteresis {
    /// Takes one judgement at `now` and returns the state change it causes:
    /// firing after `fire_after` bad judgements in a row, resolving after
    /// `resolve_after` good ones in a row while firing.
    #[cfg(test)]
    pub(super) fn judge(&mut self, judged: &Judged, rules: Rules, now: i64) -> Option<AlertState> {
        self.judge_holding(judged, judged.bad, rules, now)
    }

    /// [`judge`](Self::judge) with the second level of the hysteresis: a
    /// judgement that is not bad but `holding` (still significant at the
    /// resolve level) keeps a firing alert firing and restarts its good
    /// streak; only clear judgements count towards resolving.
    pub(super) fn judge_holding(
        &mut self,
        judged: &Judged,
        holding: bool,
        rules: Rules,
        now: i64,
    ) -> Option<AlertState> {
        self.statistic = judged.statistic.to_string();
        self.value = judged.value;
        self.threshold = judged.threshold.unwrap_or(f64::NAN);
        self.p_value = judged.p_value;
        if judged.bad {
            self.bad_streak += 1;
            self.good_streak = 0;
            if self.firing {
                self.firing_evaluations += 1;
                None
            } else if self.bad_streak >= rules.fire_after {
                self.firing = true;
                self.fired_by = judged.statistic.to_string();
                self.firing_evaluations = 1;
                self.since = now;
                Some(AlertState::Firing)
            } else {
                None
            }
        } else {
            self.bad_streak = 0;
            if !self.firing {
                return None;
            }
            self.firing_evaluations += 1;
            if holding {
                self.good_streak = 0;
                return None;
            }
            self.good_streak += 1;
            if self.good_streak >= rules.resolve_after {
                self.firing = false;
                self.since = now;
                Some(AlertState::Resolved)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(bad: bool) -> Judged {
        Judged {
            statistic: "psi",
            value: if bad { 0.5 } else { 0.01 },
            threshold: Some(0.2),
            p_value: None,
            bound: None,
            effect: None,
            bad,
        }
    }

    /// The state changes of a run of judgements (`b` bad, `g` good).
    fn run(rules: Rules, pattern: &str) -> Vec<(usize, AlertState)> {
        let mut h = Hysteresis::default();
        pattern
            .chars()
            .enumerate()
            .filter_map(|(i, c)| h.judge(&judged(c == 'b'), rules, i as i64).map(|s| (i, s)))
            .collect()
    }

    #[test]
    fn fires_after_a_bad_streak_and_resolves_after_a_good_one() {
        let rules = Rules {
            fire_after: 2,
            resolve_after: 3,
        };
        // A lone bad judgement does not fire; two in a row do, once.
        assert_eq!(
            run(rules, "bgbbbbggbggg"),
            [(3, AlertState::Firing), (11, AlertState::Resolved)]
        );
        // Good judgements while not firing change nothing.
        assert!(run(rules, "ggggbgbg").is_empty());
    }

    #[test]
    fn a_holding_judgement_keeps_the_alert_firing_until_clear_ones_resolve_it() {
        let rules = Rules {
            fire_after: 1,
            resolve_after: 2,
        };
        let mut h = Hysteresis::default();
        // b: bad, h: not bad but still significant at the resolve level,
        // g: clear. A borderline statistic alternating b/h fires once.
        let mut changes = Vec::new();
        for (i, c) in "bhbhbhhgg".chars().enumerate() {
            let j = judged(c == 'b');
            if let Some(state) = h.judge_holding(&j, c != 'g', rules, i as i64) {
                changes.push((i, state));
            }
        }
        assert_eq!(
            changes,
            [(0, AlertState::Firing), (8, AlertState::Resolved)]
        );
        // Holding while not firing does not fire.
        let mut quiet = Hysteresis::default();
        assert_eq!(quiet.judge_holding(&judged(false), true, rules, 0), None);
        assert!(!quiet.firing);
    }

    #[test]
    fn a_bad_judgement_resets_the_good_streak() {
        let rules = Rules {
            fire_after: 1,
            resolve_after: 2,
        };
        assert_eq!(
            run(rules, "bgbgbgg"),
            [(0, AlertState::Firing), (6, AlertState::Resolved)]
        );
    }

    #[test]
    fn counts_evaluations_while_firing_and_keeps_the_last_value() {
        let rules = Rules {
            fire_after: 1,
            resolve_after: 2,
        };
        let mut h = Hysteresis::default();
        assert_eq!(h.judge(&judged(true), rules, 10), Some(AlertState::Firing));
        assert_eq!((h.firing_evaluations, h.since), (1, 10));
        assert_eq!(h.judge(&judged(true), rules, 11), None);
        assert_eq!(h.judge(&judged(false), rules, 12), None);
        assert_eq!(h.firing_evaluations, 3);
        assert_eq!((h.value, h.threshold), (0.01, 0.2));
        assert_eq!(
            h.judge(&judged(false), rules, 13),
            Some(AlertState::Resolved)
        );
        assert_eq!((h.firing, h.since, h.firing_evaluations), (false, 13, 4));
        // After resolving, a new episode needs a full bad streak again.
        assert_eq!(h.judge(&judged(true), rules, 14), Some(AlertState::Firing));
        assert_eq!(h.firing_evaluations, 1);
        let mut unthresholded = judged(false);
        unthresholded.threshold = None;
        h.judge(&unthresholded, rules, 15);
        assert!(h.threshold.is_nan());
    }

    #[test]
    fn alert_ids_name_the_episode() {
        let key = AlertKey {
            kind: AlertKind::DataDrift,
            feature: "amount".into(),
        };
        assert_eq!(
            key.alert_id("fraud", "3", 1_700),
            "fraud/3:data_drift:amount:1700"
        );
    }

    fn stat(statistic: &'static str, value: f64, threshold: f64, p: Option<f64>) -> Judged {
        Judged {
            statistic,
            value,
            threshold: Some(threshold),
            p_value: p,
            bound: None,
            effect: None,
            bad: match p {
                Some(p) => p <= 1e-5,
                None => value >= threshold,
            },
        }
    }

    #[test]
    fn the_lead_is_the_most_significant_bad_statistic_then_the_one_that_fired() {
        let mut unjudged = stat("js", 0.9, 0.1, None);
        unjudged.threshold = None;
        unjudged.bad = false;
        let firing = [
            unjudged.clone(),
            stat("psi", 0.5, 0.2, None),
            stat("ks", 0.1, 0.05, Some(1e-9)),
            stat("mean", 6.0, 4.4, Some(1e-12)),
            stat("scale", 1.0, 4.4, Some(0.3)),
        ];
        // p-values first, smallest wins; then multiples of the threshold.
        assert_eq!(lead(&firing, None).map(|j| j.statistic), Some("mean"));
        assert_eq!(lead(&firing[..3], None).map(|j| j.statistic), Some("ks"));
        assert_eq!(lead(&firing[..2], None).map(|j| j.statistic), Some("psi"));
        // Nothing bad: the statistic that fired the open episode, else the
        // first judged one; never an unjudged one.
        let calm = [
            unjudged.clone(),
            stat("psi", 0.01, 0.2, None),
            stat("ks", 0.01, 0.05, Some(0.4)),
        ];
        assert_eq!(lead(&calm, Some("ks")).map(|j| j.statistic), Some("ks"));
        assert_eq!(lead(&calm, Some("gone")).map(|j| j.statistic), Some("psi"));
        assert_eq!(lead(&calm[..1], None), None);
    }

    #[test]
    fn an_episode_remembers_the_statistic_that_fired_it() {
        let rules = Rules {
            fire_after: 1,
            resolve_after: 1,
        };
        let mut h = Hysteresis::default();
        let ks = stat("ks", 0.1, 0.05, Some(1e-9));
        assert_eq!(h.judge(&ks, rules, 1), Some(AlertState::Firing));
        assert_eq!(h.judge(&stat("psi", 0.5, 0.2, None), rules, 2), None);
        assert_eq!((h.fired_by.as_str(), h.statistic.as_str()), ("ks", "psi"));
    }
}

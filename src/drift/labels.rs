//! Label join and rolling performance metrics (spec: `labels` topic and
//! `performance` alerts).
//!
//! Ground truth arrives after the prediction it judges, on its own topic, by
//! `event_id`. [`LabelJoin`] holds recent predictions (score, model version,
//! when) and, when a label arrives, moves the pair into that model version's
//! rolling window of the last `window` labelled predictions;
//! [`LabelJoin::snapshot`] computes accuracy, ROC AUC, log-loss and Brier
//! score over each window. Whether a window is bad enough to alert on is
//! [`LabelConfig::breaches`]; hysteresis and alert state live with the caller.
//!
//! # Guarantees
//!
//! - **Bounded memory.** At most `max_pending` predictions are held, awaiting
//!   a label or already labelled (kept so that a repeated label reads as a
//!   [`JoinOutcome::Duplicate`], not as unmatched); recording one more drops
//!   the oldest. A prediction held longer than `max_age` of wall-clock time
//!   since it was recorded is dropped. Predictions sit in a queue in the order
//!   recorded, so both are O(1) amortised. Each model version's window holds
//!   at most `window` labelled pairs.
//! - **Every prediction is accounted for.** In [`JoinCounters`],
//!   `recorded = pending + matched + evicted + expired`: a recorded
//!   prediction is still awaiting its label, was labelled, or was dropped
//!   unlabelled for room or for age. Predictions not recorded are `skipped`
//!   (a non-finite score, or an id already held: a replay after a rebalance
//!   keeps the first prediction).
//! - **Exact join.** Ids are compared by their full text. A 64-bit hash
//!   indexes them; ids whose hash equals another held id's go to a map keyed
//!   by the id itself, so a collision costs a lookup, never a wrong match.
//! - **Short critical sections.** [`LabelJoin::record`] takes the lock once
//!   per scored batch and [`LabelJoin::label`] once per label; expiry is
//!   done inside those calls. [`LabelJoin::snapshot`] copies the windows
//!   under the lock and computes outside it.
//! - **Metrics match scikit-learn** on the same pairs within 1e-9
//!   (`tests/label_parity.rs`, fixtures from
//!   `scripts/make_label_fixtures.py`); definitions on [`WindowMetrics`].
//! - **No panics on input.** [`decode_label`] turns any byte string into a
//!   [`Label`] or a [`Rejection`] whose detail names the field.
//!
//! # What cannot join
//!
//! The join is in memory and per process. A label is [`JoinOutcome::Unmatched`]
//! when its prediction was made before this process started, by another
//! instance of the consumer group (every instance reads every label, each
//! matches only its own predictions), or was already evicted or expired. In a
//! group of `n` instances, about `(n - 1) / n` of labels are unmatched on each
//! one; that is expected, and `matched` summed over instances is the figure
//! to watch.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use compact_str::CompactString;
use parking_lot::Mutex;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::event::{now_ms, RejectReason, Rejection};
use crate::features::aggregates::parse_window;
use crate::features::shard::hash_key;

/// Lowest and highest probability log-loss uses: a confident wrong answer
/// costs `-ln(1e-15) ≈ 34.5`, not infinity. scikit-learn before 1.5 clipped
/// at this value; later versions clip at the machine epsilon of the input
/// type, so the parity fixtures clip before calling it.
pub const LOG_LOSS_EPS: f64 = 1e-15;

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
        if let Err(e) = parse_window(&self.max_age) {
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
        parse_window(&self.max_age).map_err(|e| LabelError::InvalidConfig {
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

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// One labelled prediction: the model's probability of the positive class
/// and the ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub label: bool,
}

/// Performance over one window of labelled predictions.
///
/// With `p` the score as `f64` and `y` the label as 0 or 1, over `n` pairs
/// (each value is `None` for an empty window):
///
/// - `accuracy`: the share with `(p >= threshold) == y`
///   (`sklearn.metrics.accuracy_score(y, p >= threshold)`);
/// - `roc_auc`: the Mann-Whitney statistic with tied scores given their
///   average rank, `(R₊ - n₊(n₊+1)/2) / (n₊ n₋)` where `R₊` is the rank sum of
///   the positives (`roc_auc_score(y, p)`); `None` unless both classes occur;
/// - `log_loss`: the mean of `-ln q` if `y = 1` and `-ln(1 - q)` if `y = 0`,
///   `q = clamp(p, 1e-15, 1 - 1e-15)` ([`LOG_LOSS_EPS`]; `log_loss(y, q)`);
/// - `brier`: the mean of `(p - y)²` (`brier_score_loss(y, p)`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowMetrics {
    /// Labelled predictions in the window.
    pub count: usize,
    /// Of those, labelled positive.
    pub positives: usize,
    pub accuracy: Option<f64>,
    pub roc_auc: Option<f64>,
    pub log_loss: Option<f64>,
    pub brier: Option<f64>,
}

/// All metrics of `window` (see [`WindowMetrics`]). Sorts `window` by score:
/// O(n log n) for AUC, the rest one pass.
pub fn window_metrics(window: &mut [Scored], threshold: f64) -> WindowMetrics {
    WindowMetrics {
        count: window.len(),
        positives: window.iter().filter(|s| s.label).count(),
        accuracy: accuracy(window, threshold),
        roc_auc: roc_auc_sorting(window),
        log_loss: log_loss(window),
        brier: brier(window),
    }
}

/// Share of predictions on the right side of `threshold`.
pub fn accuracy(window: &[Scored], threshold: f64) -> Option<f64> {
    mean(window, |s| {
        f64::from(u8::from((f64::from(s.score) >= threshold) == s.label))
    })
}

/// ROC AUC with ties at their average rank; `None` with one class only.
pub fn roc_auc(window: &[Scored]) -> Option<f64> {
    roc_auc_sorting(&mut window.to_vec())
}

fn roc_auc_sorting(window: &mut [Scored]) -> Option<f64> {
    let positives = window.iter().filter(|s| s.label).count();
    let negatives = window.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    window.sort_unstable_by(|a, b| a.score.total_cmp(&b.score));
    // Rank sums are multiples of 1/2 far below 2^53: exact in f64, so the
    // only rounding is the final division.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < window.len() {
        let tied = window[i..]
            .iter()
            .take_while(|s| s.score == window[i].score)
            .count();
        let j = i + tied.max(1);
        let tied_positives = window[i..j].iter().filter(|s| s.label).count();
        // Ranks i+1 ..= j, whose average is (i + 1 + j) / 2.
        rank_sum += tied_positives as f64 * (i + 1 + j) as f64 / 2.0;
        i = j;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean cross-entropy with probabilities clipped to `[1e-15, 1 - 1e-15]`.
pub fn log_loss(window: &[Scored]) -> Option<f64> {
    mean(window, |s| {
        let q = f64::from(s.score).clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        -if s.label { q.ln() } else { (1.0 - q).ln() }
    })
}

/// Mean squared difference between score and label.
pub fn brier(window: &[Scored]) -> Option<f64> {
    mean(window, |s| {
        let d = f64::from(s.score) - f64::from(u8::from(s.label));
        d * d
    })
}

fn mean(window: &[Scored], f: impl Fn(&Scored) -> f64) -> Option<f64> {
    if window.is_empty() {
        return None;
    }
    Some(window.iter().map(f).sum::<f64>() / window.len() as f64)
}

// ---------------------------------------------------------------------------
// Join
// ---------------------------------------------------------------------------

/// What became of one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Joined to its prediction, which is now in its version's window.
    /// `delay_ms` is the label's `ts` minus the prediction's, when the
    /// label has one.
    Matched { delay_ms: Option<i64> },
    /// No such prediction held (see the module docs for why).
    Unmatched,
    /// The prediction was already labelled; the first label stands.
    Duplicate,
}

/// Counts since start (`pending` and `held` are current values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JoinCounters {
    /// Predictions taken in.
    pub recorded: u64,
    /// Predictions not taken in: a non-finite score, or an id already held.
    pub skipped: u64,
    /// Labels joined to a prediction.
    pub matched: u64,
    /// Labels with no prediction held.
    pub unmatched: u64,
    /// Labels for a prediction already labelled.
    pub duplicates: u64,
    /// Unlabelled predictions dropped to stay within `max_pending`.
    pub evicted: u64,
    /// Unlabelled predictions dropped after `max_age`.
    pub expired: u64,
    /// Predictions awaiting a label now.
    pub pending: u64,
    /// Predictions held now (`pending` plus labelled ones kept to spot
    /// repeated labels); never more than `max_pending`.
    pub held: u64,
}

/// Rolling metrics of one model version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionMetrics {
    pub model_version: String,
    /// Labels joined to this version's predictions since start.
    pub labelled: u64,
    /// Over the last `window` of them.
    pub metrics: WindowMetrics,
}

/// Predictions awaiting labels, and per-version windows of labelled ones.
/// Shared (`Arc`) by the scoring thread, which records, and the label
/// follower, which labels.
pub struct LabelJoin {
    max_pending: usize,
    max_age_ms: i64,
    window: usize,
    threshold: f64,
    // A blocking mutex: every critical section is short (one batch, one
    // label, a window copy) and none spans I/O or an await.
    state: Mutex<State>,
    // Bad label records, counted by the follower without the join lock.
    rejected: [AtomicU64; RejectReason::ALL.len()],
    // Set once labels are being read. Until then a prediction could never
    // be judged, so the scoring loop does not hold it: the join would cost
    // its hash-table work per event and up to `max_pending` entries of
    // memory for nothing on a deployment without a labels topic.
    following: AtomicBool,
}

impl fmt::Debug for LabelJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabelJoin")
            .field("max_pending", &self.max_pending)
            .field("max_age_ms", &self.max_age_ms)
            .field("window", &self.window)
            .field("counters", &self.state.lock().counters())
            .finish()
    }
}

/// A prediction held for its label.
struct Held {
    id: CompactString,
    hash: u64,
    recorded_ms: i64,
    ts_ms: i64,
    score: f32,
    version: u32,
    labelled: bool,
}

struct VersionWindow {
    name: CompactString,
    /// Ring of the last `window` labelled pairs; order does not matter to
    /// any metric, so it is never rotated.
    ring: Vec<Scored>,
    next: usize,
    labelled: u64,
}

struct State {
    /// Id hash → sequence number of the held prediction. The index is 16
    /// bytes an entry whatever the id's length, and the id itself is stored
    /// once, in `held`.
    index: HashMap<u64, u64, foldhash::fast::RandomState>,
    /// Held ids whose hash another held id already has in `index`. Randomly
    /// seeded and keyed by the id, so crafted collisions of the fixed-seed
    /// `hash_key` cannot build long probe chains.
    collided: HashMap<CompactString, u64, foldhash::fast::RandomState>,
    /// Held predictions, oldest first; `held[i]` has sequence number
    /// `front_seq + i`.
    held: VecDeque<Held>,
    front_seq: u64,
    versions: Vec<VersionWindow>,
    // Plain counters under the lock the calls take anyway.
    recorded: u64,
    skipped: u64,
    matched: u64,
    unmatched: u64,
    duplicates: u64,
    evicted: u64,
    expired: u64,
    pending: u64,
}

impl State {
    fn counters(&self) -> JoinCounters {
        JoinCounters {
            recorded: self.recorded,
            skipped: self.skipped,
            matched: self.matched,
            unmatched: self.unmatched,
            duplicates: self.duplicates,
            evicted: self.evicted,
            expired: self.expired,
            pending: self.pending,
            held: self.held.len() as u64,
        }
    }

    /// Sequence number of the held prediction `id` (whose hash is `hash`).
    fn find(&self, id: &str, hash: u64) -> Option<u64> {
        if let Some(&seq) = self.index.get(&hash) {
            if self.get(seq).is_some_and(|h| h.id == id) {
                return Some(seq);
            }
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(id).copied()
    }

    fn get(&self, seq: u64) -> Option<&Held> {
        let i = usize::try_from(seq.checked_sub(self.front_seq)?).ok()?;
        self.held.get(i)
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Held> {
        let i = usize::try_from(seq.checked_sub(self.front_seq)?).ok()?;
        self.held.get_mut(i)
    }

    fn push(&mut self, held: Held) {
        let seq = self.front_seq + self.held.len() as u64;
        match self.index.entry(held.hash) {
            Entry::Vacant(slot) => {
                slot.insert(seq);
            }
            Entry::Occupied(_) => {
                self.collided.insert(held.id.clone(), seq);
            }
        }
        self.held.push_back(held);
        self.pending += 1;
    }

    /// Drops the oldest prediction; `true` if it was still unlabelled.
    fn pop_front(&mut self) -> Option<bool> {
        let held = self.held.pop_front()?;
        let seq = self.front_seq;
        self.front_seq += 1;
        if self.index.get(&held.hash) == Some(&seq) {
            self.index.remove(&held.hash);
        } else {
            self.collided.remove(&held.id);
        }
        if !held.labelled {
            self.pending -= 1;
        }
        Some(!held.labelled)
    }

    fn expire(&mut self, now_ms: i64, max_age_ms: i64) {
        // The queue is in recording order; a wall clock that steps back
        // only delays expiry, and `max_pending` still bounds the queue.
        while self
            .held
            .front()
            .is_some_and(|h| now_ms.saturating_sub(h.recorded_ms) > max_age_ms)
        {
            if self.pop_front() == Some(true) {
                self.expired += 1;
            }
        }
    }

    fn version(&mut self, name: &str, window: usize) -> u32 {
        // Linear: a process sees a handful of model versions.
        if let Some(i) = self.versions.iter().position(|v| v.name == name) {
            return i as u32;
        }
        self.versions.push(VersionWindow {
            name: CompactString::from(name),
            ring: Vec::with_capacity(window.min(4_096)),
            next: 0,
            labelled: 0,
        });
        (self.versions.len() - 1) as u32
    }
}

impl VersionWindow {
    fn push(&mut self, scored: Scored, window: usize) {
        self.labelled += 1;
        if self.ring.len() < window {
            self.ring.push(scored);
        } else {
            self.ring[self.next] = scored;
            self.next = (self.next + 1) % window;
        }
    }
}

impl LabelJoin {
    /// A join with `config`'s limits; fails on the problems
    /// [`LabelConfig::problems`] finds.
    pub fn new(config: &LabelConfig) -> Result<Self, LabelError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(LabelError::InvalidConfig { problems });
        }
        Ok(LabelJoin {
            max_pending: config.max_pending,
            max_age_ms: config.max_age_ms()?,
            window: config.window,
            threshold: config.threshold,
            state: Mutex::new(State {
                index: HashMap::default(),
                collided: HashMap::default(),
                held: VecDeque::new(),
                front_seq: 0,
                versions: Vec::new(),
                recorded: 0,
                skipped: 0,
                matched: 0,
                unmatched: 0,
                duplicates: 0,
                evicted: 0,
                expired: 0,
                pending: 0,
            }),
            rejected: Default::default(),
            following: AtomicBool::new(false),
        })
    }

    /// Whether labels are being read (see [`set_following`](Self::set_following)).
    pub fn following(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    /// Called by the label follower once it reads the labels topic; the
    /// scoring loop records predictions only from then on.
    pub fn set_following(&self, on: bool) {
        self.following.store(on, Ordering::Relaxed);
    }

    /// Holds one scored batch, `(event_id, score, ts_ms)` each, made by
    /// `model_version`, for its labels. Takes the lock once: `predictions`
    /// is iterated under it, so pass a plain iterator over the batch.
    ///
    /// About 120 ns a prediction with the default 1,000,000 held (two cache
    /// misses: the id's index slot and the evicted one's); `benches/labels.rs`.
    pub fn record<'a>(
        &self,
        predictions: impl IntoIterator<Item = (&'a str, f32, i64)>,
        model_version: &str,
    ) {
        self.record_at(now_ms(), predictions, model_version);
    }

    /// [`record`](Self::record) at wall-clock time `now_ms` (tests, replays).
    pub fn record_at<'a>(
        &self,
        now_ms: i64,
        predictions: impl IntoIterator<Item = (&'a str, f32, i64)>,
        model_version: &str,
    ) {
        let mut st = self.state.lock();
        st.expire(now_ms, self.max_age_ms);
        let version = st.version(model_version, self.window);
        for (id, score, ts_ms) in predictions {
            // NaN would poison every mean of the window; it cannot be judged.
            if !score.is_finite() {
                st.skipped += 1;
                continue;
            }
            let hash = hash_key(id);
            if st.find(id, hash).is_some() {
                st.skipped += 1;
                continue;
            }
            if st.held.len() >= self.max_pending && st.pop_front() == Some(true) {
                st.evicted += 1;
            }
            st.push(Held {
                id: CompactString::from(id),
                hash,
                recorded_ms: now_ms,
                ts_ms,
                score,
                version,
                labelled: false,
            });
            st.recorded += 1;
        }
    }

    /// Joins the label of `event_id` (`ts_ms`: the label's time, if known)
    /// to its prediction.
    pub fn label(&self, event_id: &str, label: bool, ts_ms: Option<i64>) -> JoinOutcome {
        self.label_at(now_ms(), event_id, label, ts_ms)
    }

    /// [`label`](Self::label) at wall-clock time `now_ms` (tests, replays).
    pub fn label_at(
        &self,
        now_ms: i64,
        event_id: &str,
        label: bool,
        ts_ms: Option<i64>,
    ) -> JoinOutcome {
        let hash = hash_key(event_id);
        let mut guard = self.state.lock();
        let st = &mut *guard;
        st.expire(now_ms, self.max_age_ms);
        let Some(held) = st.find(event_id, hash).and_then(|seq| st.get_mut(seq)) else {
            st.unmatched += 1;
            return JoinOutcome::Unmatched;
        };
        if held.labelled {
            st.duplicates += 1;
            return JoinOutcome::Duplicate;
        }
        held.labelled = true;
        let (score, version, predicted_ms) = (held.score, held.version, held.ts_ms);
        st.pending -= 1;
        st.matched += 1;
        if let Some(v) = st.versions.get_mut(version as usize) {
            v.push(Scored { score, label }, self.window);
        }
        JoinOutcome::Matched {
            delay_ms: ts_ms.map(|t| t.saturating_sub(predicted_ms)),
        }
    }

    /// Rolling metrics of every model version seen, in the order first seen.
    ///
    /// Cost: the windows are copied under the lock (8 bytes a pair, ~40 kB
    /// for a window of 5,000) and the metrics computed after releasing it;
    /// AUC sorts each copy, O(w log w): about 70 µs in all for w = 5,000
    /// (`benches/labels.rs`).
    pub fn snapshot(&self) -> Vec<VersionMetrics> {
        self.snapshot_at(now_ms())
    }

    /// [`snapshot`](Self::snapshot) at wall-clock time `now_ms`.
    pub fn snapshot_at(&self, now_ms: i64) -> Vec<VersionMetrics> {
        let copies: Vec<(String, u64, Vec<Scored>)> = {
            let mut st = self.state.lock();
            st.expire(now_ms, self.max_age_ms);
            st.versions
                .iter()
                .map(|v| (v.name.to_string(), v.labelled, v.ring.clone()))
                .collect()
        };
        copies
            .into_iter()
            .map(|(model_version, labelled, mut ring)| VersionMetrics {
                model_version,
                labelled,
                metrics: window_metrics(&mut ring, self.threshold),
            })
            .collect()
    }

    /// Counters now (expiring what is due first, so `pending` is current
    /// even when no predictions or labels arrive).
    pub fn counters(&self) -> JoinCounters {
        self.counters_at(now_ms())
    }

    /// [`counters`](Self::counters) at wall-clock time `now_ms`.
    pub fn counters_at(&self, now_ms: i64) -> JoinCounters {
        let mut st = self.state.lock();
        st.expire(now_ms, self.max_age_ms);
        st.counters()
    }

    /// Counts a label record that could not be read (called by the follower).
    pub fn count_rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Unreadable label records so far, by reason (reasons with none left out).
    pub fn rejected(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The accuracy threshold in use.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// A decoded `labels` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub event_id: CompactString,
    pub label: bool,
    /// When the label was established (epoch ms), if the producer said.
    pub ts_ms: Option<i64>,
}

// Prefixes our visitors put on their errors, so `classify` can tell them
// from serde_json's own.
const WRONG_TYPE: &str = "wrong type: ";
const BAD_TS: &str = "invalid timestamp: ";

/// Decodes one `labels` value: `{"event_id": "...", "label": 1, "ts": ...}`.
///
/// `label` is `0`, `1`, `true` or `false` (`0.0` and `1.0` too, as some
/// producers write every number as a float); `ts` is optional, epoch
/// milliseconds or RFC 3339. Other fields are ignored. Never panics.
pub fn decode_label(payload: &[u8]) -> Result<Label, Rejection> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectReason::MalformedJson,
            format!("message is not UTF-8: {e}"),
        )
    })?;
    // serde's derived struct visitor also takes `[id, label, ts]`; a label
    // is an object, and a positional array is a producer bug to surface.
    if text.trim_start().starts_with('[') {
        return Err(Rejection::new(
            RejectReason::WrongType,
            "a label must be a JSON object {\"event_id\", \"label\", \"ts\"}",
        ));
    }
    let raw: RawLabel = serde_json::from_str(text).map_err(classify)?;
    let event_id = match raw.event_id {
        Some(id) if !id.trim().is_empty() => id,
        Some(_) => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "`event_id` must be a non-empty string",
            ))
        }
        None => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "`event_id` is required",
            ))
        }
    };
    let label = raw.label.ok_or_else(|| {
        Rejection::new(
            RejectReason::MissingField,
            "`label` is required (0, 1, true or false)",
        )
    })?;
    Ok(Label {
        event_id,
        label,
        ts_ms: raw.ts,
    })
}

fn classify(err: serde_json::Error) -> Rejection {
    let msg = err.to_string();
    // `1e999` is well-formed JSON that serde_json reports as a syntax error.
    let reason = if msg.starts_with("number out of range") {
        RejectReason::NonFinite
    } else if !err.is_data() {
        RejectReason::MalformedJson
    } else if msg.starts_with(BAD_TS) {
        RejectReason::InvalidTimestamp
    } else {
        RejectReason::WrongType
    };
    Rejection::new(reason, msg)
}

#[derive(Deserialize)]
#[serde(expecting = "a label object {\"event_id\", \"label\", \"ts\"}")]
struct RawLabel {
    #[serde(default, deserialize_with = "event_id")]
    event_id: Option<CompactString>,
    #[serde(default, deserialize_with = "label_value")]
    label: Option<bool>,
    #[serde(default, deserialize_with = "timestamp")]
    ts: Option<i64>,
}

/// `event_id` must be a string, as in the `features` topic: a number could
/// never equal a scored event's id, so it is a producer bug to surface.
fn event_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CompactString>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<CompactString>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`event_id` as a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(CompactString::from(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(wrong_id(format_args!("number {v}")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(wrong_id(format_args!("number {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(wrong_id(format_args!("number {v}")))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(wrong_id(format_args!("{v}")))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_id(format_args!("an array")))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_id(format_args!("an object")))
        }
    }
    d.deserialize_any(V)
}

fn wrong_id<E: de::Error>(got: fmt::Arguments<'_>) -> E {
    E::custom(format_args!(
        "{WRONG_TYPE}`event_id` must be a string, got {got}"
    ))
}

fn wrong_label<E: de::Error>(got: fmt::Arguments<'_>) -> E {
    E::custom(format_args!(
        "{WRONG_TYPE}`label` must be 0, 1, true or false, got {got}"
    ))
}

fn label_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`label` as 0, 1, true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match v {
                0 => Ok(Some(false)),
                1 => Ok(Some(true)),
                _ => Err(wrong_label(format_args!("{v}"))),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(wrong_label(format_args!("{v}"))),
            }
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v == 0.0 {
                Ok(Some(false))
            } else if v == 1.0 {
                Ok(Some(true))
            } else {
                Err(wrong_label(format_args!("{v}")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Err(wrong_label(format_args!("the string {v:?}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_label(format_args!("an array")))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_label(format_args!("an object")))
        }
    }
    d.deserialize_any(V)
}

/// `ts`: epoch milliseconds or an RFC 3339 string (as in `features`).
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    fn bad<E: de::Error>(detail: fmt::Arguments<'_>) -> E {
        E::custom(format_args!("{BAD_TS}`ts` {detail}"))
    }
    impl<'de> Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`ts` as epoch milliseconds or an RFC 3339 string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| bad(format_args!("{v} is out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v.abs() < 9.0e15 {
                Ok(Some(v as i64))
            } else {
                Err(bad(format_args!("{v} is out of range")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|e| bad(format_args!("{v:?} is not RFC 3339: {e}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(bad(format_args!("must be a number or a string, got {v}")))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(bad(format_args!(
                "must be a number or a string, got an array"
            )))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(bad(format_args!(
                "must be a number or a string, got an object"
            )))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;

    fn join(max_pending: usize, max_age: &str, window: usize) -> LabelJoin {
        LabelJoin::new(&LabelConfig {
            max_pending,
            max_age: max_age.into(),
            window,
            min_labels: 0,
            ..LabelConfig::default()
        })
        .unwrap()
    }

    fn s(score: f32, label: bool) -> Scored {
        Scored { score, label }
    }

    // --- config ---

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

    // --- metrics ---

    #[test]
    fn metrics_of_a_small_window_by_hand() {
        // Scores 0.1(0) 0.4(0) 0.4(1) 0.8(1): ranks 1, 2.5, 2.5, 4;
        // R+ = 6.5, AUC = (6.5 - 3) / 4 = 0.875.
        let w = [s(0.1, false), s(0.4, false), s(0.4, true), s(0.8, true)];
        let m = window_metrics(&mut w.to_vec(), 0.5);
        assert_eq!((m.count, m.positives), (4, 2));
        assert_eq!(m.roc_auc, Some(0.875));
        assert_eq!(m.accuracy, Some(0.75));
        let p = |x: f32| f64::from(x);
        let ll = -((1.0 - p(0.1)).ln() + (1.0 - p(0.4)).ln() + p(0.4).ln() + p(0.8).ln()) / 4.0;
        assert!((m.log_loss.unwrap() - ll).abs() < 1e-15);
        let br =
            (p(0.1).powi(2) + p(0.4).powi(2) + (p(0.4) - 1.0).powi(2) + (p(0.8) - 1.0).powi(2))
                / 4.0;
        assert!((m.brier.unwrap() - br).abs() < 1e-15);
    }

    #[test]
    fn edge_windows() {
        let empty = window_metrics(&mut [], 0.5);
        assert_eq!(empty, WindowMetrics::default());
        let one_class = [s(0.2, true), s(0.9, true)];
        assert_eq!(roc_auc(&one_class), None);
        assert!(log_loss(&one_class).is_some());
        // All tied: AUC is exactly one half.
        let tied = [s(0.3, true), s(0.3, false), s(0.3, false)];
        assert_eq!(roc_auc(&tied), Some(0.5));
        // Certain and wrong: clipped, finite.
        let wrong = [s(0.0, true), s(1.0, false)];
        let ll = log_loss(&wrong).unwrap();
        // 1 - (1 - 1e-15) is 9.992e-16 in f64, as it is in scikit-learn.
        let want = -(LOG_LOSS_EPS.ln() + (1.0 - (1.0 - LOG_LOSS_EPS)).ln()) / 2.0;
        assert!((ll - want).abs() < 1e-12, "{ll} vs {want}");
        assert!(ll < 35.0);
        assert_eq!(roc_auc(&wrong), Some(0.0));
        assert_eq!(
            accuracy(&[s(0.5, true)], 0.5),
            Some(1.0),
            "at threshold = positive"
        );
    }

    #[test]
    fn auc_equals_pairwise_definition() {
        // AUC = P(score+ > score-) + P(tie)/2 over all pairs.
        let mut rng = 7u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rng >> 33
        };
        let w: Vec<Scored> = (0..300)
            .map(|_| s((next() % 20) as f32 / 20.0, next() % 3 == 0))
            .collect();
        let (pos, neg): (Vec<&Scored>, Vec<&Scored>) = w.iter().partition(|x| x.label);
        let mut wins = 0.0;
        for p in &pos {
            for n in &neg {
                wins += if p.score > n.score {
                    1.0
                } else if p.score == n.score {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let want = wins / (pos.len() * neg.len()) as f64;
        assert!((roc_auc(&w).unwrap() - want).abs() < 1e-12);
    }

    // --- join ---

    #[test]
    fn label_matches_once_then_is_a_duplicate() {
        let j = join(100, "1h", 10);
        j.record_at(T0, [("a", 0.9, T0 - 5), ("b", 0.2, T0)], "v1");
        assert_eq!(
            j.label_at(T0 + 10, "a", true, Some(T0 + 995)),
            JoinOutcome::Matched {
                delay_ms: Some(1_000)
            }
        );
        assert_eq!(
            j.label_at(T0 + 11, "a", false, None),
            JoinOutcome::Duplicate
        );
        assert_eq!(
            j.label_at(T0 + 12, "zzz", true, None),
            JoinOutcome::Unmatched
        );
        let c = j.counters_at(T0 + 13);
        assert_eq!(
            (c.recorded, c.matched, c.duplicates, c.unmatched),
            (2, 1, 1, 1)
        );
        assert_eq!((c.pending, c.held), (1, 2));
        let snap = j.snapshot_at(T0 + 14);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].model_version, "v1");
        assert_eq!(snap[0].labelled, 1);
        assert_eq!(snap[0].metrics.count, 1);
        assert_eq!(snap[0].metrics.accuracy, Some(1.0));
    }

    #[test]
    fn oldest_is_evicted_first_and_counted() {
        let j = join(3, "1h", 10);
        j.record_at(T0, [("a", 0.1, 0), ("b", 0.2, 0), ("c", 0.3, 0)], "v1");
        assert_eq!(
            j.label_at(T0, "b", true, None),
            JoinOutcome::Matched { delay_ms: None }
        );
        // Room for d and e: a (unlabelled, evicted) then b (labelled, not counted).
        j.record_at(T0, [("d", 0.4, 0), ("e", 0.5, 0)], "v1");
        let c = j.counters_at(T0);
        assert_eq!((c.evicted, c.held, c.pending), (1, 3, 3));
        assert_eq!(j.label_at(T0, "a", true, None), JoinOutcome::Unmatched);
        assert_eq!(j.label_at(T0, "b", true, None), JoinOutcome::Unmatched);
        assert!(matches!(
            j.label_at(T0, "c", true, None),
            JoinOutcome::Matched { .. }
        ));
    }

    #[test]
    fn old_predictions_expire_by_wall_clock() {
        let j = join(100, "10s", 10);
        j.record_at(T0, [("a", 0.1, 0)], "v1");
        j.record_at(T0 + 5_000, [("b", 0.1, 0)], "v1");
        // Exactly max_age old is still held; a millisecond more is not.
        assert!(matches!(
            j.label_at(T0 + 10_000, "a", true, None),
            JoinOutcome::Matched { .. }
        ));
        let c = j.counters_at(T0 + 15_001);
        assert_eq!((c.expired, c.pending, c.held), (1, 0, 0), "{c:?}");
        assert_eq!(
            j.label_at(T0 + 15_001, "b", true, None),
            JoinOutcome::Unmatched
        );
    }

    #[test]
    fn replayed_and_non_finite_predictions_are_skipped() {
        let j = join(100, "1h", 10);
        j.record_at(T0, [("a", 0.1, 0), ("a", 0.9, 0), ("n", f32::NAN, 0)], "v1");
        j.record_at(T0, [("a", 0.7, 0)], "v2");
        let c = j.counters_at(T0);
        assert_eq!((c.recorded, c.skipped, c.held), (1, 3, 1));
        j.label_at(T0, "a", true, None);
        let snap = j.snapshot_at(T0);
        assert_eq!(snap[0].metrics.count, 1);
        // `d * d`, not `powi(2)`: a release build folds the constant
        // `powi` differently in the last bit.
        let d = 1.0 - f64::from(0.1f32);
        assert_eq!(snap[0].metrics.brier, Some(d * d));
        assert_eq!(snap[1].metrics.count, 0, "the first prediction stands");
    }

    #[test]
    fn windows_are_per_version_and_keep_the_last_n() {
        let j = join(1_000, "1h", 4);
        let ids: Vec<String> = (0..10).map(|i| format!("evt-{i}")).collect();
        j.record_at(T0, ids[..6].iter().map(|id| (id.as_str(), 0.9, 0)), "v1");
        j.record_at(T0, ids[6..].iter().map(|id| (id.as_str(), 0.1, 0)), "v2");
        // v1: labels false, false, then four true: the window keeps the four.
        for (i, id) in ids[..6].iter().enumerate() {
            j.label_at(T0, id, i >= 2, None);
        }
        j.label_at(T0, &ids[6], true, None);
        let snap = j.snapshot_at(T0);
        let v1 = &snap[0];
        assert_eq!(
            (v1.labelled, v1.metrics.count, v1.metrics.positives),
            (6, 4, 4)
        );
        assert_eq!(v1.metrics.accuracy, Some(1.0));
        let v2 = &snap[1];
        assert_eq!((v2.model_version.as_str(), v2.metrics.count), ("v2", 1));
        assert_eq!(v2.metrics.accuracy, Some(0.0));
    }

    #[test]
    fn colliding_hashes_still_join_exactly() {
        // Force a collision: a held id and a new one under the same hash.
        let j = join(10, "1h", 10);
        {
            let mut st = j.state.lock();
            let h = hash_key("x");
            st.push(Held {
                id: "x".into(),
                hash: h,
                recorded_ms: T0,
                ts_ms: 0,
                score: 0.5,
                version: 0,
                labelled: false,
            });
            st.recorded += 1;
            // "y" stored under x's hash: must land in `collided`.
            st.push(Held {
                id: "y".into(),
                hash: h,
                recorded_ms: T0,
                ts_ms: 0,
                score: 0.5,
                version: 0,
                labelled: false,
            });
            st.recorded += 1;
            assert_eq!(st.collided.len(), 1);
            assert_eq!(st.find("y", h), Some(1));
            assert_eq!(st.find("x", h), Some(0));
            assert_eq!(st.find("z", h), None);
            st.versions.push(VersionWindow {
                name: "v".into(),
                ring: Vec::new(),
                next: 0,
                labelled: 0,
            });
            // Evicting x frees the index slot; y is still found.
            assert_eq!(st.pop_front(), Some(true));
            assert!(st.index.is_empty());
            assert_eq!(st.find("y", h), Some(1));
        }
    }

    #[test]
    fn rejected_counts_by_reason() {
        let j = join(10, "1h", 10);
        j.count_rejected(RejectReason::WrongType);
        j.count_rejected(RejectReason::WrongType);
        j.count_rejected(RejectReason::MalformedJson);
        assert_eq!(
            j.rejected(),
            vec![
                (RejectReason::MalformedJson, 1),
                (RejectReason::WrongType, 2)
            ]
        );
    }

    #[test]
    fn join_is_shared_across_threads() {
        let j = std::sync::Arc::new(join(10_000, "1h", 1_000));
        let ids: Vec<String> = (0..2_000).map(|i| format!("e{i}")).collect();
        let writer = {
            let (j, ids) = (j.clone(), ids.clone());
            std::thread::spawn(move || {
                for chunk in ids.chunks(100) {
                    j.record(chunk.iter().map(|id| (id.as_str(), 0.6, 0)), "v");
                }
            })
        };
        writer.join().unwrap();
        let reader = {
            let j = j.clone();
            std::thread::spawn(move || {
                ids.iter()
                    .filter(|id| matches!(j.label(id, true, None), JoinOutcome::Matched { .. }))
                    .count()
            })
        };
        assert_eq!(reader.join().unwrap(), 2_000);
        assert_eq!(j.counters().matched, 2_000);
    }

    // --- decoding ---

    #[test]
    fn decodes_every_accepted_label_form() {
        for (text, want) in [
            (r#"{"event_id":"e1","label":1}"#, true),
            (r#"{"event_id":"e1","label":0}"#, false),
            (r#"{"event_id":"e1","label":true}"#, true),
            (r#"{"event_id":"e1","label":false,"ts":null}"#, false),
            (r#"{"event_id":"e1","label":1.0}"#, true),
            (r#"{"label":0.0,"event_id":"e1","extra":[1,2]}"#, false),
        ] {
            let l = decode_label(text.as_bytes()).unwrap();
            assert_eq!(
                (l.event_id.as_str(), l.label, l.ts_ms),
                ("e1", want, None),
                "{text}"
            );
        }
        let l = decode_label(br#"{"event_id":"e","label":1,"ts":1700000000123}"#).unwrap();
        assert_eq!(l.ts_ms, Some(1_700_000_000_123));
        let l =
            decode_label(br#"{"event_id":"e","label":1,"ts":"2023-11-14T22:13:20.5Z"}"#).unwrap();
        assert_eq!(l.ts_ms, Some(1_700_000_000_500));
    }

    #[test]
    fn bad_labels_are_rejected_naming_the_field() {
        for (text, reason, field) in [
            (&b"\xff\xfe"[..], RejectReason::MalformedJson, "UTF-8"),
            (b"{\"event_id\":", RejectReason::MalformedJson, "EOF"),
            (b"[1,2]", RejectReason::WrongType, "JSON object"),
            (b" 3", RejectReason::WrongType, "label object"),
            (b"", RejectReason::MalformedJson, "EOF"),
            (b"not json", RejectReason::MalformedJson, "expected"),
            (b"{\"label\":1}", RejectReason::MissingField, "event_id"),
            (
                b"{\"event_id\":\" \",\"label\":1}",
                RejectReason::MissingField,
                "event_id",
            ),
            (
                b"{\"event_id\":7,\"label\":1}",
                RejectReason::WrongType,
                "event_id",
            ),
            (b"{\"event_id\":\"e\"}", RejectReason::MissingField, "label"),
            (
                b"{\"event_id\":\"e\",\"label\":null}",
                RejectReason::MissingField,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":2}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":-1}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":0.5}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":\"1\"}",
                RejectReason::WrongType,
                "label",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":1e999}",
                RejectReason::NonFinite,
                "range",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":1,\"ts\":\"yesterday\"}",
                RejectReason::InvalidTimestamp,
                "ts",
            ),
            (
                b"{\"event_id\":\"e\",\"label\":1,\"ts\":true}",
                RejectReason::InvalidTimestamp,
                "ts",
            ),
        ] {
            let err = decode_label(text).unwrap_err();
            assert_eq!(
                err.reason,
                reason,
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
            assert!(
                err.detail.contains(field),
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_label(&bytes);
        }

        #[test]
        fn decoding_never_panics_on_near_labels(
            id in "[a-z0-9\" ]{0,8}",
            label in "(0|1|2|true|false|null|-1|0\\.5|\"1\"|\\[\\]|\\{\\})",
            ts in "(1700000000000|\"2024-01-01T00:00:00Z\"|null|\"x\"|1e30|-5)",
        ) {
            let text = format!(r#"{{"event_id":"{id}","label":{label},"ts":{ts}}}"#);
            let _ = decode_label(text.as_bytes());
        }
    }

    // --- bounded memory, against a plain reference model ---

    #[derive(Debug, Clone)]
    enum Op {
        Record(Vec<u8>, u8),
        Label(u8, bool),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (proptest::collection::vec(0u8..40, 0..12), 0u8..2).prop_map(|(ids, v)| Op::Record(ids, v)),
            3 => (0u8..40, any::<bool>()).prop_map(|(id, l)| Op::Label(id, l)),
            1 => (0i64..4_000).prop_map(Op::Advance),
        ]
    }

    /// The join as a plain list scanned on every call.
    #[derive(Default)]
    struct Model {
        held: Vec<(u8, i64, bool, u8)>,
        counters: JoinCounters,
        labelled: [usize; 2],
    }

    impl Model {
        fn expire(&mut self, now: i64, max_age: i64) {
            while self.held.first().is_some_and(|h| now - h.1 > max_age) {
                let h = self.held.remove(0);
                if !h.2 {
                    self.counters.expired += 1;
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn memory_stays_bounded_and_matches_the_reference(
            max_pending in 1usize..16,
            window in 1usize..6,
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let max_age = 10_000;
            let j = join(max_pending, "10s", window);
            let mut m = Model::default();
            let mut now = T0;
            let name = |id: u8| format!("e{id}");
            for op in ops {
                match op {
                    Op::Advance(ms) => now += ms,
                    Op::Record(ids, v) => {
                        let names: Vec<String> = ids.iter().map(|&i| name(i)).collect();
                        j.record_at(now, names.iter().map(|n| (n.as_str(), 0.5, 0)), &format!("v{v}"));
                        m.expire(now, max_age);
                        for id in ids {
                            if m.held.iter().any(|h| h.0 == id) {
                                m.counters.skipped += 1;
                                continue;
                            }
                            if m.held.len() >= max_pending && !m.held.remove(0).2 {
                                m.counters.evicted += 1;
                            }
                            m.held.push((id, now, false, v));
                            m.counters.recorded += 1;
                        }
                    }
                    Op::Label(id, label) => {
                        let got = j.label_at(now, &name(id), label, None);
                        m.expire(now, max_age);
                        let want = match m.held.iter_mut().find(|h| h.0 == id) {
                            None => { m.counters.unmatched += 1; JoinOutcome::Unmatched }
                            Some(h) if h.2 => { m.counters.duplicates += 1; JoinOutcome::Duplicate }
                            Some(h) => {
                                h.2 = true;
                                m.counters.matched += 1;
                                m.labelled[h.3 as usize] += 1;
                                JoinOutcome::Matched { delay_ms: None }
                            }
                        };
                        prop_assert_eq!(got, want);
                    }
                }
                let c = j.counters_at(now);
                m.expire(now, max_age);
                m.counters.held = m.held.len() as u64;
                m.counters.pending = m.held.iter().filter(|h| !h.2).count() as u64;
                prop_assert_eq!(c, m.counters);
                prop_assert!(c.held <= max_pending as u64);
                prop_assert_eq!(c.recorded, c.pending + c.matched + c.evicted + c.expired);
                let st = j.state.lock();
                prop_assert_eq!(st.index.len() + st.collided.len(), st.held.len());
                for v in &st.versions {
                    prop_assert!(v.ring.len() <= window);
                }
            }
            for v in j.snapshot_at(now) {
                let i: usize = v.model_version[1..].parse().unwrap();
                prop_assert_eq!(v.labelled as usize, m.labelled[i]);
                prop_assert_eq!(v.metrics.count, m.labelled[i].min(window));
            }
        }
    }
}

//! Label join and rolling performance metrics (spec: `labels` topic and
//! `performance` alerts), a file per job: `config.rs` (`[labels]`),
//! `metrics.rs` (the metrics of one window), `join.rs` (predictions held
//! for their labels).
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
//!   (`tests/parity/label_parity.rs`, fixtures from
//!   `scripts/make_label_fixtures.py`); definitions on [`WindowMetrics`].
//! - **No panics on input.** Records are decoded next to the other
//!   decoders ([`crate::source::labels::decode_label`]); what reaches the
//!   join is an id, a label and a time.
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

mod config;
mod join;
mod metrics;

pub use self::config::{Breach, LabelConfig, LabelError, PerfMetric, MAX_WINDOW};
pub use self::join::{JoinCounters, JoinOutcome, LabelJoin, VersionMetrics};
// `self::`: a bare `metrics` would be ambiguous with the `metrics` crate.
pub use self::metrics::{
    accuracy, brier, log_loss, roc_auc, window_metrics, Scored, WindowMetrics, LOG_LOSS_EPS,
};

//! The in-process hot path: decode → enrich → score, one batch at a time.
//!
//! Guarantees: every input message yields exactly one outcome, a score or a
//! [`Rejection`], reported with the message's index in the batch so the
//! caller can route it (prediction or DLQ) and commit its offset. Order within
//! a batch is kept. A model failure rejects the batch's events with
//! `model_error` instead of dropping them. Work and allocations are per batch:
//! the row and score buffers are reused across calls.
//!
//! A second version scoring the same events (a rollout's shadow) sees the
//! aggregate inputs the first one saw: the first captures, per event
//! marked [`Decoded::shadowed`], the streaming aggregates as of that event
//! into an [`AggregateTap`] ([`Tap::Capture`]), also when it rejects the
//! event in enrichment (the aggregates as they stand, the event not folded
//! in); the second, on the same aggregator, encodes those values without
//! touching the aggregator, which by then holds the whole batch
//! ([`Tap::Read`]). An event the tap lacks (the first pipeline refused its
//! event time, or the second reads another aggregator) is read live. The
//! tap's buffers are reused across batches; nothing is captured when no
//! event is marked.
//!
//! Event time is checked before anything reads or folds it: an event dated
//! more than [`InputLimits::max_future_skew_ms`] ahead of the caller's wall
//! clock is `future_timestamp`, one older than
//! [`InputLimits::max_event_age_ms`] is `stale_timestamp`. Both leave the
//! aggregates and the drift windows untouched: one event dated years ahead
//! would otherwise move its entity's aggregate windows there, and every later
//! event of the entity would be dropped as late.

use std::sync::Arc;

use crate::config::PipelineConfig;
use crate::drift::monitor::Recorder;
use crate::enrich::{Aggregates, EnrichSetupError, Enricher, Scratch, StoreLookup};
use crate::event::{Event, RejectReason, Rejection};
use crate::features::aggregates::Aggregator;
use crate::features::store::FeatureStore;
use crate::score::{Model, ModelError, Session};
use crate::source::arrow::BatchLimits;
use crate::source::decode::{decode_json_with, DecodeLimits};

/// Errors building a pipeline (start-up only).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Setup(#[from] EnrichSetupError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// One input message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub payload: &'a [u8],
    /// Broker timestamp, used as event time when the event carries no `ts`.
    pub timestamp_ms: Option<i64>,
}

/// A decoded event waiting for enrichment and scoring.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Position of the input in the caller's batch (several events may share
    /// one position when a message carried a batch).
    pub index: usize,
    pub event: Event,
    /// Broker timestamp, used as event time when the event carries no `ts`.
    pub broker_ts: Option<i64>,
    /// Fold the event into the streaming aggregates; false for an event the
    /// restored aggregate state already holds (a replay after a crash).
    pub observe: bool,
    /// Feed the event to drift monitoring; false for a replay. Apart from
    /// `observe` because a shadowed event is not folded in again by the
    /// candidate, yet its drift monitor must see it.
    pub monitor: bool,
    /// Another version scores this event too (a rollout's shadow): with
    /// [`Tap::Capture`], the aggregates as of it are captured for that
    /// version.
    pub shadowed: bool,
}

impl Decoded {
    pub fn new(index: usize, event: Event, broker_ts: Option<i64>) -> Self {
        Decoded {
            index,
            event,
            broker_ts,
            observe: true,
            monitor: true,
            shadowed: false,
        }
    }
}

/// The streaming aggregates as one pipeline read them for the events it
/// scored marked [`Decoded::shadowed`], for another pipeline on the same
/// aggregator scoring the same events. Holds one batch (events are told
/// apart by [`Decoded::index`], which must be unique among the marked
/// events of a batch); its buffers are reused across batches.
#[derive(Debug, Default)]
pub struct AggregateTap {
    /// The aggregator the values were read from.
    aggregator: Option<Arc<Aggregator>>,
    /// Values per event: one per aggregate, in the aggregator's order.
    width: usize,
    /// [`Decoded::index`] of each captured event, ascending.
    indices: Vec<usize>,
    values: Vec<f64>,
}

impl AggregateTap {
    /// Forgets the previous batch's values (keeping the buffers).
    fn start(&mut self, aggregator: Option<&Arc<Aggregator>>) {
        self.aggregator = aggregator.cloned();
        self.width = aggregator.map_or(0, |a| a.specs().len());
        self.indices.clear();
        self.values.clear();
    }

    /// Room for the values of the event at `index`.
    fn slot(&mut self, index: usize) -> &mut [f64] {
        debug_assert!(self.indices.last().is_none_or(|&last| last < index));
        self.indices.push(index);
        let start = self.values.len();
        self.values.resize(start + self.width, f64::NAN);
        &mut self.values[start..]
    }

    /// The values captured for the event at `index`, if `aggregator` is
    /// the one they were read from.
    fn get(&self, index: usize, aggregator: Option<&Arc<Aggregator>>) -> Option<&[f64]> {
        let same =
            matches!((aggregator, &self.aggregator), (Some(a), Some(b)) if Arc::ptr_eq(a, b));
        let k = self.indices.binary_search(&index).ok().filter(|_| same)?;
        self.values.get(k * self.width..(k + 1) * self.width)
    }
}

/// What a pipeline does with an [`AggregateTap`] for one batch.
#[derive(Debug)]
pub enum Tap<'a> {
    /// Nothing: the aggregates are read (and folded into) as they stand.
    None,
    /// Clears the tap, then captures the aggregates of each scored event
    /// marked [`Decoded::shadowed`] as this pipeline read them.
    Capture(&'a mut AggregateTap),
    /// Encodes each event the tap holds with its captured aggregates (the
    /// aggregator is not touched for it); other events read them live.
    Read(&'a AggregateTap),
}

/// A scored event.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Position of the message in the batch.
    pub index: usize,
    pub event: Event,
    /// Event time actually used (event `ts`, else broker timestamp, else wall clock).
    pub ts_ms: i64,
    pub score: f32,
}

/// A message that could not be scored.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub index: usize,
    pub rejection: Rejection,
    /// The decoded event when decoding succeeded (enrichment or the model
    /// rejected it), so a caller can render what it was.
    pub event: Option<Event>,
}

/// Outcomes of one batch, reused across calls.
#[derive(Debug, Default)]
pub struct BatchOutput {
    pub scored: Vec<Scored>,
    pub rejected: Vec<Rejected>,
    /// Store lookups of the scored events: (hits, misses, expired).
    pub store_hits: u64,
    pub store_misses: u64,
    pub store_expired: u64,
}

impl BatchOutput {
    pub fn clear(&mut self) {
        self.scored.clear();
        self.rejected.clear();
        self.store_hits = 0;
        self.store_misses = 0;
        self.store_expired = 0;
    }
}

/// Default of `pipeline.max_future_skew`: producer clocks drift by seconds,
/// not minutes.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// The input rules of `[pipeline]`: message, batch and id sizes, and how far
/// event time may be from the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// `pipeline.max_message_bytes` (JSON events).
    pub max_message_bytes: usize,
    /// `pipeline.max_id_bytes`.
    pub max_id_bytes: usize,
    /// `pipeline.max_batch_bytes` (Arrow IPC messages).
    pub max_batch_bytes: usize,
    /// `pipeline.max_batch_rows`.
    pub max_batch_rows: usize,
    /// `pipeline.max_batch_decoded_bytes`.
    pub max_batch_decoded_bytes: usize,
    /// `pipeline.max_future_skew`; `None` = no bound.
    pub max_future_skew_ms: Option<i64>,
    /// `pipeline.max_event_age`; `None` = no bound.
    pub max_event_age_ms: Option<i64>,
}

impl InputLimits {
    /// The defaults, with `max_message_bytes` for JSON events.
    pub fn with_max_message_bytes(max_message_bytes: usize) -> Self {
        let batch = BatchLimits::with_max_message_bytes(16 * 1024 * 1024);
        InputLimits {
            max_message_bytes,
            max_id_bytes: batch.max_id_bytes,
            max_batch_bytes: batch.max_message_bytes,
            max_batch_rows: batch.max_rows,
            max_batch_decoded_bytes: batch.max_decoded_bytes,
            max_future_skew_ms: Some(DEFAULT_MAX_FUTURE_SKEW_MS),
            max_event_age_ms: None,
        }
    }

    /// The limits a `[pipeline]` section sets.
    pub fn from_config(p: &PipelineConfig) -> Result<Self, crate::config::BadDuration> {
        Ok(InputLimits {
            max_message_bytes: p.max_message_bytes,
            max_id_bytes: p.max_id_bytes,
            max_batch_bytes: p.max_batch_bytes,
            max_batch_rows: p.max_batch_rows,
            max_batch_decoded_bytes: p.max_batch_decoded_bytes,
            max_future_skew_ms: p.max_future_skew_ms()?,
            max_event_age_ms: p.max_event_age_ms()?,
        })
    }

    /// What the JSON decoder enforces.
    pub fn decode(&self) -> DecodeLimits {
        DecodeLimits {
            max_message_bytes: self.max_message_bytes,
            max_id_bytes: self.max_id_bytes,
        }
    }

    /// What the Arrow IPC decoder enforces.
    pub fn batch(&self) -> BatchLimits {
        BatchLimits {
            max_message_bytes: self.max_batch_bytes,
            max_rows: self.max_batch_rows,
            max_decoded_bytes: self.max_batch_decoded_bytes,
            max_id_bytes: self.max_id_bytes,
        }
    }

    /// Why event time `ts_ms` is refused at wall-clock time `now_ms`, if it is.
    /// `from_event` says whether it came from the event's `ts` (else from the
    /// broker timestamp), for the detail.
    pub fn check_time(&self, ts_ms: i64, now_ms: i64, from_event: bool) -> Result<(), Rejection> {
        let source = if from_event {
            "`ts`"
        } else {
            "the broker timestamp (the event has no `ts`)"
        };
        let ahead = ts_ms.saturating_sub(now_ms);
        if let Some(max) = self.max_future_skew_ms.filter(|&max| ahead > max) {
            return Err(Rejection::new(
                RejectReason::FutureTimestamp,
                format!(
                    "event time {} from {source} is {ahead} ms ahead of the clock, \
                     the limit is {max} ms (pipeline.max_future_skew)",
                    show_time(ts_ms)
                ),
            ));
        }
        let age = now_ms.saturating_sub(ts_ms);
        if let Some(max) = self.max_event_age_ms.filter(|&max| age > max) {
            return Err(Rejection::new(
                RejectReason::StaleTimestamp,
                format!(
                    "event time {} from {source} is {age} ms old, the limit is {max} ms \
                     (pipeline.max_event_age)",
                    show_time(ts_ms)
                ),
            ));
        }
        Ok(())
    }
}

/// Epoch milliseconds as RFC 3339 for a detail (the number when out of chrono's range).
fn show_time(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ts_ms} ms"))
}

/// Decode, enrich and score for one model on one thread.
#[derive(Debug)]
pub struct Pipeline {
    enricher: Enricher,
    session: Session,
    limits: InputLimits,
    scratch: Scratch,
    rows: Vec<f32>,
    scores: Vec<f32>,
    /// Drift monitoring of what the model saw, when configured.
    recorder: Option<Recorder>,
    /// Per scored row, for the recorder: defaulted inputs (row-major),
    /// whether the event counts (not a replay), and its event time.
    defaulted: Vec<bool>,
    observed: Vec<bool>,
    times: Vec<i64>,
}

impl Pipeline {
    pub fn new(
        model: &Arc<Model>,
        store: Option<Arc<FeatureStore>>,
        aggregator: Option<Arc<Aggregator>>,
        max_message_bytes: usize,
    ) -> Result<Self, PipelineError> {
        let enricher = Enricher::new(model.manifest(), store, aggregator)?;
        Ok(Pipeline {
            enricher,
            session: model.session()?,
            limits: InputLimits::with_max_message_bytes(max_message_bytes),
            scratch: Scratch::default(),
            rows: Vec::new(),
            scores: Vec::new(),
            recorder: None,
            defaulted: Vec::new(),
            observed: Vec::new(),
            times: Vec::new(),
        })
    }

    /// Replaces the input rules (by default those of
    /// [`InputLimits::with_max_message_bytes`]).
    pub fn set_input_limits(&mut self, limits: InputLimits) {
        self.limits = limits;
    }

    /// The input rules in force, for callers that decode themselves.
    pub fn input_limits(&self) -> &InputLimits {
        &self.limits
    }

    /// Feeds every scored event (replays excepted) to `recorder`.
    pub fn set_recorder(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// Takes the drift recorder away (to move it to another version's
    /// pipeline: drift watches what the served version sees).
    pub fn take_recorder(&mut self) -> Option<Recorder> {
        self.recorder.take()
    }

    /// The drift windows' bytes (open, queued, held), their bound and the
    /// scores thinned to keep it, when the recorder is here.
    pub fn drift_usage(&self) -> Option<(usize, usize, u64)> {
        let r = self.recorder.as_ref()?;
        let config = r.plan().config();
        // The open sub-window, a full queue, the evaluator's sub-windows.
        let windows = 1 + config.queue.max(1) + config.sub_windows.max(1) as usize;
        Some((
            r.stats().bytes(),
            windows * config.max_window_bytes,
            r.stats().thinned.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    /// Closes a due time window of the drift recorder (a quiet stream
    /// scores nothing that would close it).
    pub fn tick(&mut self) {
        if let Some(r) = self.recorder.as_mut() {
            r.tick();
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        self.session.model()
    }

    /// Processes one batch of raw messages; results go to `out` (cleared first).
    pub fn process(&mut self, messages: &[Message<'_>], now_ms: i64, out: &mut BatchOutput) {
        out.clear();
        let limits = self.limits.decode();
        let events = messages.iter().enumerate().filter_map(|(index, m)| {
            match decode_json_with(m.payload, limits) {
                Ok(event) => Some(Decoded::new(index, event, m.timestamp_ms)),
                Err(rejection) => {
                    out.rejected.push(Rejected {
                        index,
                        rejection,
                        event: None,
                    });
                    None
                }
            }
        });
        let events: Vec<_> = events.collect();
        self.score_events(events, now_ms, out);
    }

    /// Enriches and scores already decoded events (the Kafka loop, with its
    /// Arrow batches and replay marks, enters here). Appends to `out`.
    pub fn score_events(&mut self, events: Vec<Decoded>, now_ms: i64, out: &mut BatchOutput) {
        self.score_events_with(events, now_ms, out, None, Tap::None);
    }

    /// [`score_events`](Self::score_events), feeding `recorder` instead of
    /// the pipeline's own (a rollout candidate's drift monitor, which the
    /// scoring loop holds apart from the primary's), and capturing or
    /// reading the aggregates of shadowed events through `tap`.
    pub fn score_events_with(
        &mut self,
        events: Vec<Decoded>,
        now_ms: i64,
        out: &mut BatchOutput,
        recorder: Option<&mut Recorder>,
        mut tap: Tap<'_>,
    ) {
        if let Tap::Capture(t) = &mut tap {
            t.start(self.enricher.aggregator());
        }
        let recording = recorder.is_some() || self.recorder.is_some();
        let width = self.enricher.width();
        self.rows.clear();
        self.defaulted.clear();
        self.observed.clear();
        self.times.clear();
        let first_scored = out.scored.len();
        for Decoded {
            index,
            event,
            broker_ts,
            observe,
            monitor,
            shadowed,
        } in events
        {
            let ts_ms = event.ts_ms.or(broker_ts).unwrap_or(now_ms);
            if let Err(rejection) = self.limits.check_time(ts_ms, now_ms, event.ts_ms.is_some()) {
                out.rejected.push(Rejected {
                    index,
                    rejection,
                    event: Some(event),
                });
                continue;
            }
            let start = self.rows.len();
            self.rows.resize(start + width, 0.0);
            let aggregator = self.enricher.aggregator();
            let aggregates = match &mut tap {
                Tap::Capture(t) if shadowed && aggregator.is_some() => Aggregates::Capture {
                    observe,
                    into: t.slot(index),
                },
                Tap::Read(t) => match t.get(index, aggregator) {
                    Some(values) => Aggregates::Captured(values),
                    None => Aggregates::Live { observe },
                },
                _ => Aggregates::Live { observe },
            };
            match self.enricher.enrich_with(
                &event,
                ts_ms,
                now_ms,
                aggregates,
                &mut self.scratch,
                &mut self.rows[start..],
            ) {
                Ok(lookup) => {
                    if recording {
                        self.defaulted.extend_from_slice(self.scratch.defaulted());
                        self.observed.push(monitor);
                        self.times.push(ts_ms);
                    }
                    match lookup {
                        StoreLookup::Hit => out.store_hits += 1,
                        StoreLookup::Miss => out.store_misses += 1,
                        StoreLookup::Expired => out.store_expired += 1,
                        StoreLookup::NotUsed => {}
                    }
                    out.scored.push(Scored {
                        index,
                        event,
                        ts_ms,
                        score: f32::NAN,
                    });
                }
                Err(rejection) => {
                    self.rows.truncate(start);
                    out.rejected.push(Rejected {
                        index,
                        rejection,
                        event: Some(event),
                    });
                }
            }
        }
        self.scores.clear();
        if let Err(e) = self.session.score(&self.rows, &mut self.scores) {
            let detail = e.to_string();
            for s in out.scored.drain(first_scored..) {
                out.rejected.push(Rejected {
                    index: s.index,
                    rejection: Rejection::new(RejectReason::ModelError, detail.clone()),
                    event: Some(s.event),
                });
            }
            return;
        }
        for (s, score) in out.scored[first_scored..].iter_mut().zip(&self.scores) {
            s.score = *score;
        }
        if let Some(recorder) = recorder.or(self.recorder.as_mut()) {
            let inputs = self.defaulted.len() / self.observed.len().max(1);
            for (k, &score) in self.scores.iter().enumerate() {
                if !self.observed.get(k).copied().unwrap_or(false) {
                    continue;
                }
                let row = &self.rows[k * width..(k + 1) * width];
                let defaulted = &self.defaulted[k * inputs..(k + 1) * inputs];
                let entity = out
                    .scored
                    .get(first_scored + k)
                    .map_or("", |s| s.event.entity_id.as_str());
                recorder.observe(row, defaulted, score, self.times[k], entity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_is_checked_against_both_bounds() {
        let now = 1_795_000_000_000;
        let limits = InputLimits {
            max_event_age_ms: Some(3_600_000),
            ..InputLimits::with_max_message_bytes(1024)
        };
        assert!(limits.check_time(now, now, true).is_ok());
        assert!(limits.check_time(now + 300_000, now, true).is_ok());
        assert!(limits.check_time(now - 3_600_000, now, true).is_ok());
        let future = limits.check_time(now + 300_001, now, false).unwrap_err();
        assert_eq!(future.reason, RejectReason::FutureTimestamp);
        assert!(future.detail.contains("broker timestamp"), "{future}");
        let stale = limits.check_time(now - 3_600_001, now, true).unwrap_err();
        assert_eq!(stale.reason, RejectReason::StaleTimestamp);
        assert!(stale.detail.contains("`ts`"), "{stale}");
        // Extremes neither overflow nor pass.
        assert!(limits.check_time(i64::MAX, now, true).is_err());
        assert!(limits.check_time(i64::MIN, now, true).is_err());
        let open = InputLimits {
            max_future_skew_ms: None,
            ..InputLimits::with_max_message_bytes(1024)
        };
        assert!(open.check_time(i64::MAX, now, true).is_ok());
        assert!(open.check_time(i64::MIN, now, true).is_ok());
    }

    /// A pipeline of fraud-mlp 1 (three aggregate inputs, last in the row)
    /// on `aggregator` (a new one when `None`).
    fn fraud_pipeline(aggregator: Option<Arc<Aggregator>>) -> Pipeline {
        let manifest = crate::score::Manifest::parse(
            include_str!("../models/fraud-mlp/1/model.toml"),
            std::path::Path::new("models/fraud-mlp/1/model.toml"),
        )
        .unwrap();
        let (store, own) = crate::app::sources(
            &manifest,
            crate::features::store::StoreConfig::default(),
            crate::features::aggregates::AggregatorConfig::default(),
        )
        .unwrap();
        let model = Model::from_bytes(
            manifest,
            include_bytes!("../models/fraud-mlp/1/model.onnx"),
            std::path::Path::new("models/fraud-mlp/1"),
        )
        .unwrap();
        Pipeline::new(&Arc::new(model), store, aggregator.or(own), 1 << 16).unwrap()
    }

    /// A batch: card-1 buys four times, card-2 twice, a minute apart; every
    /// event shadowed.
    /// The events as the worker hands them to the shadow: not folded in.
    fn for_the_shadow(events: &[Decoded]) -> Vec<Decoded> {
        events
            .iter()
            .map(|d| Decoded {
                observe: false,
                ..d.clone()
            })
            .collect()
    }

    fn shadowed_batch(start_ms: i64) -> Vec<Decoded> {
        let cards = ["card-1", "card-2", "card-1", "card-1", "card-2", "card-1"];
        cards
            .iter()
            .enumerate()
            .map(|(i, card)| {
                let json = format!(
                    r#"{{"event_id":"e{i}","entity_id":"{card}","ts":{},"features":{{
                    "amount":{},"merchant_category":"grocery","channel":"chip","hour":12,
                    "is_international":false,"distance_from_home_km":3.5}}}}"#,
                    start_ms + 60_000 * i as i64,
                    10.0 * (i + 1) as f64,
                );
                let limits = InputLimits::with_max_message_bytes(1 << 16).decode();
                let event = decode_json_with(json.as_bytes(), limits).unwrap();
                Decoded {
                    shadowed: true,
                    ..Decoded::new(i, event, None)
                }
            })
            .collect()
    }

    #[test]
    fn a_shadow_encodes_the_aggregates_the_primary_read_per_event_and_folds_nothing() {
        let mut primary = fraud_pipeline(None);
        let aggregator = primary.enricher.aggregator().cloned().unwrap();
        let mut shadow = fraud_pipeline(Some(Arc::clone(&aggregator)));
        let mut tap = AggregateTap::default();
        let (mut out, mut shadow_out) = (BatchOutput::default(), BatchOutput::default());
        let start = 1_795_000_000_000;
        let now = start + 3_600_000;
        for batch in 0..2 {
            let events = shadowed_batch(start + 600_000 * batch);
            let shadowed = for_the_shadow(&events);
            out.clear();
            shadow_out.clear();
            // The worker's order: the primary captures, then the shadow reads.
            primary.score_events_with(events, now, &mut out, None, Tap::Capture(&mut tap));
            shadow.score_events_with(shadowed, now, &mut shadow_out, None, Tap::Read(&tap));
            assert_eq!(out.scored.len(), 6, "{:?}", out.rejected);
            assert_eq!(shadow_out.scored.len(), 6, "{:?}", shadow_out.rejected);
            // The same model on the same inputs: the same rows and scores.
            assert_eq!(shadow.rows, primary.rows, "batch {batch}");
            let scores = |o: &BatchOutput| o.scored.iter().map(|s| s.score).collect::<Vec<_>>();
            assert_eq!(scores(&shadow_out), scores(&out));
            // txn_count_1h as of each event: card-1's count grows within the
            // batch (the primary folds each event in before the next).
            let width = primary.enricher.width();
            let counts: Vec<f32> = primary
                .rows
                .chunks(width)
                .map(|row| row[width - 3])
                .collect();
            let expected = match batch {
                0 => [0.0, 0.0, 1.0, 2.0, 1.0, 3.0],
                _ => [4.0, 2.0, 5.0, 6.0, 3.0, 7.0],
            };
            assert_eq!(counts, expected, "batch {batch}");
        }
        // Each event folded in exactly once (by the primary).
        let mut now_values = vec![f64::NAN; aggregator.specs().len()];
        aggregator.read("card-1", start + 600_000 + 360_000, &mut now_values);
        assert_eq!(now_values[0], 8.0);
        aggregator.read("card-2", start + 600_000 + 360_000, &mut now_values);
        assert_eq!(now_values[0], 4.0);
    }

    #[test]
    fn a_shadow_on_another_aggregator_reads_it_without_folding_in() {
        let mut primary = fraud_pipeline(None);
        let mut shadow = fraud_pipeline(None);
        let own = shadow.enricher.aggregator().cloned().unwrap();
        let mut tap = AggregateTap::default();
        let mut out = BatchOutput::default();
        let mut shadow_out = BatchOutput::default();
        let start = 1_795_000_000_000;
        let events = shadowed_batch(start);
        let shadowed = for_the_shadow(&events);
        let now = start + 3_600_000;
        primary.score_events_with(events, now, &mut out, None, Tap::Capture(&mut tap));
        shadow.score_events_with(shadowed, now, &mut shadow_out, None, Tap::Read(&tap));
        assert_eq!(shadow_out.scored.len(), 6, "{:?}", shadow_out.rejected);
        // Its own aggregator, empty and left so: every count reads 0.
        let width = shadow.enricher.width();
        assert!(shadow.rows.chunks(width).all(|row| row[width - 3] == 0.0));
        let mut values = vec![f64::NAN; own.specs().len()];
        own.read("card-1", start + 360_000, &mut values);
        assert_eq!(values[0], 0.0);
    }
}

//! The in-process hot path: decode → enrich → score, one batch at a time.
//!
//! Guarantees: every input message yields exactly one outcome, a score or a
//! [`Rejection`], reported with the message's index in the batch so the
//! caller can route it (prediction or DLQ) and commit its offset. Order within
//! a batch is kept. A model failure rejects the batch's events with
//! `model_error` instead of dropping them. Work and allocations are per batch:
//! the row and score buffers are reused across calls.

use std::sync::Arc;

use crate::drift::monitor::Recorder;
use crate::enrich::{EnrichSetupError, Enricher, Scratch, StoreLookup};
use crate::event::{Event, RejectReason, Rejection};
use crate::features::aggregates::Aggregator;
use crate::features::store::FeatureStore;
use crate::score::{Model, ModelError, Session};
use crate::source::decode::decode_json;

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
}

impl Decoded {
    pub fn new(index: usize, event: Event, broker_ts: Option<i64>) -> Self {
        Decoded {
            index,
            event,
            broker_ts,
            observe: true,
        }
    }
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

/// Decode, enrich and score for one model on one thread.
#[derive(Debug)]
pub struct Pipeline {
    enricher: Enricher,
    session: Session,
    max_message_bytes: usize,
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
            max_message_bytes,
            scratch: Scratch::default(),
            rows: Vec::new(),
            scores: Vec::new(),
            recorder: None,
            defaulted: Vec::new(),
            observed: Vec::new(),
            times: Vec::new(),
        })
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
        let events = messages.iter().enumerate().filter_map(|(index, m)| {
            match decode_json(m.payload, self.max_message_bytes) {
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
        } in events
        {
            let ts_ms = event.ts_ms.or(broker_ts).unwrap_or(now_ms);
            let start = self.rows.len();
            self.rows.resize(start + width, 0.0);
            match self.enricher.enrich_with(
                &event,
                ts_ms,
                now_ms,
                observe,
                &mut self.scratch,
                &mut self.rows[start..],
            ) {
                Ok(lookup) => {
                    if self.recorder.is_some() {
                        self.defaulted.extend_from_slice(self.scratch.defaulted());
                        self.observed.push(observe);
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
        if let Some(recorder) = self.recorder.as_mut() {
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

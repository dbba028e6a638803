//! Enrichment: from a decoded event to the model's encoded input row.
//!
//! Each model input is resolved in this order: the event's own features (a
//! request-time value always wins, which also lets a producer override a
//! stored value), then the input's declared source (the online store by
//! entity id, or the streaming aggregates), then the manifest's default.
//!
//! Guarantees:
//! - never panics on input; every failure is a [`Rejection`] with a stable
//!   reason code (`missing_feature`, `wrong_type`, `non_finite`,
//!   `unknown_category`) and a detail naming the feature;
//! - a rejected event leaves the streaming aggregates untouched: all checks
//!   that can fail run before the event is folded into the aggregates;
//! - no allocation per event once the [`Scratch`] buffers are warm;
//! - with [`Aggregates::Capture`], the values of every aggregate as of the
//!   event (what a model reading them would see, before the event is folded
//!   in) are handed out even when this model reads none or rejects the
//!   event, and [`Aggregates::Captured`] encodes exactly those values: two
//!   models scoring one event see the same aggregate inputs.

use std::sync::Arc;

use compact_str::CompactString;

use crate::event::{Event, FeatureValue, RejectReason, Rejection};
use crate::features::aggregates::Aggregator;
use crate::features::store::{FeatureStore, Lookup, Row};
use crate::score::manifest::{
    DefaultValue, Encoding, InputKind, InputSource, InputSpec, Manifest, OnUnknown,
};

/// Errors wiring an enricher to its sources (start-up, not per event).
#[derive(Debug, thiserror::Error)]
pub enum EnrichSetupError {
    #[error("model {model}: input `{input}` reads the store, but no feature store is configured")]
    NoStore { model: String, input: String },
    #[error("model {model}: input `{input}` reads the store, which has no column of that name")]
    NoStoreColumn { model: String, input: String },
    #[error("model {model}: input `{input}` is an aggregate, but no aggregator is configured")]
    NoAggregator { model: String, input: String },
    #[error("model {model}: input `{input}` is an aggregate the aggregator does not compute")]
    NoAggregate { model: String, input: String },
}

/// How one input is resolved and where it lands in the row.
#[derive(Debug)]
struct Slot {
    name: CompactString,
    kind: InputKind,
    source: InputSource,
    offset: usize,
    encoding: Option<Encoding>,
    vocabulary: Vec<CompactString>,
    on_unknown: OnUnknown,
    default: Option<FeatureValue>,
    store_column: usize,
    aggregate_index: usize,
}

/// Builds encoded rows for one model.
#[derive(Debug)]
pub struct Enricher {
    model: String,
    width: usize,
    slots: Vec<Slot>,
    store: Option<Arc<FeatureStore>>,
    aggregator: Option<Arc<Aggregator>>,
    reads_store: bool,
    reads_aggregates: bool,
}

/// Per-thread reusable buffers.
#[derive(Debug, Default)]
pub struct Scratch {
    row: Row,
    aggregates: Vec<f64>,
    /// Per input of the last enriched event: no value was found and the
    /// manifest default was used (drift monitoring counts it as missing).
    defaulted: Vec<bool>,
}

impl Scratch {
    /// Per input (manifest order) of the last successfully enriched event:
    /// whether its value is the manifest default for lack of one.
    pub fn defaulted(&self) -> &[bool] {
        &self.defaulted
    }
}

/// Where enrichment takes an event's streaming aggregates from.
#[derive(Debug)]
pub enum Aggregates<'a> {
    /// From the aggregator, as of the event; `observe` folds the event in
    /// after the read (false for a replay the restored state already holds,
    /// or for a model scoring an event another one folds in).
    Live { observe: bool },
    /// As `Live`, and every aggregate the aggregator computes (in
    /// [`Aggregator::specs`] order, NaN for an empty window) is written to
    /// `into`, also when this model reads none of them or rejects the event
    /// before its aggregates (the event is then not folded in), so that
    /// another model scoring the same event can read what it saw. `into`
    /// holds one value per aggregate (the aggregator panics otherwise).
    Capture { observe: bool, into: &'a mut [f64] },
    /// Values captured for this event by a model on the same aggregator
    /// (its `Capture`); the aggregator is not touched.
    Captured(&'a [f64]),
}

/// What enrichment saw for one event, for store hit/miss telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLookup {
    /// The model reads nothing from the store.
    NotUsed,
    Hit,
    Miss,
    Expired,
}

impl Enricher {
    /// Wires the manifest's inputs to the store columns and aggregates.
    pub fn new(
        manifest: &Manifest,
        store: Option<Arc<FeatureStore>>,
        aggregator: Option<Arc<Aggregator>>,
    ) -> Result<Self, EnrichSetupError> {
        let model = format!("{}/{}", manifest.name, manifest.version);
        let mut slots = Vec::with_capacity(manifest.inputs.len());
        let mut offset = 0;
        for input in &manifest.inputs {
            let (store_column, aggregate_index) =
                wire(&model, input, store.as_deref(), aggregator.as_deref())?;
            slots.push(Slot {
                name: input.name.as_str().into(),
                kind: input.kind,
                source: input.source,
                offset,
                encoding: input.encoding,
                vocabulary: input.vocabulary.iter().map(|v| v.as_str().into()).collect(),
                on_unknown: input.on_unknown,
                default: input.default.as_ref().map(|d| match d {
                    DefaultValue::Bool(b) => FeatureValue::Bool(*b),
                    DefaultValue::Number(n) => FeatureValue::Number(*n),
                    DefaultValue::Text(t) => FeatureValue::Text(t.as_str().into()),
                }),
                store_column,
                aggregate_index,
            });
            offset += input.width();
        }
        let reads_store = slots.iter().any(|s| s.source == InputSource::Store);
        let reads_aggregates = slots.iter().any(|s| s.source == InputSource::Aggregate);
        Ok(Enricher {
            model,
            width: offset,
            slots,
            store,
            aggregator,
            reads_store,
            reads_aggregates,
        })
    }

    /// Width of the encoded row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Encodes `event` into `out` (exactly [`Enricher::width`] floats).
    ///
    /// `ts_ms` is the event time used for aggregates; `now_ms` the wall clock
    /// used for store staleness.
    pub fn enrich(
        &self,
        event: &Event,
        ts_ms: i64,
        now_ms: i64,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<StoreLookup, Rejection> {
        let live = Aggregates::Live { observe: true };
        self.enrich_with(event, ts_ms, now_ms, live, scratch, out)
    }

    /// [`enrich`](Self::enrich), choosing where the aggregates come from
    /// and whether the event is folded into them. A replayed event (one the
    /// restored aggregate state already holds) is read against that state
    /// but not counted twice.
    pub fn enrich_with(
        &self,
        event: &Event,
        ts_ms: i64,
        now_ms: i64,
        mut aggregates: Aggregates<'_>,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<StoreLookup, Rejection> {
        debug_assert_eq!(out.len(), self.width);
        let lookup = match (&self.store, self.reads_store) {
            (Some(store), true) => match store.get(&event.entity_id, now_ms, &mut scratch.row) {
                Lookup::Hit { .. } => StoreLookup::Hit,
                Lookup::Miss => StoreLookup::Miss,
                Lookup::Expired => StoreLookup::Expired,
            },
            _ => StoreLookup::NotUsed,
        };
        scratch.defaulted.clear();
        scratch.defaulted.resize(self.slots.len(), false);
        // Pass 1: everything that can reject the event, before it touches the aggregates.
        if let Err(rejection) = self.encode_direct(event, lookup, scratch, out) {
            // Another model may accept the event: it reads the aggregates
            // as they stand, without this event (which is not folded in).
            if let (Aggregates::Capture { into, .. }, Some(aggregator)) =
                (&mut aggregates, &self.aggregator)
            {
                aggregator.read(&event.entity_id, ts_ms, into);
            }
            return Err(rejection);
        }
        // Pass 2: aggregates. Reading and folding in happen under one lock; an
        // empty window is NaN and falls back to the default, which the manifest
        // guarantees for every function that can be empty.
        let values: &[f64] = match (aggregates, &self.aggregator) {
            (Aggregates::Captured(values), _) => values,
            (Aggregates::Live { observe }, Some(aggregator)) if self.reads_aggregates => {
                let read = &mut scratch.aggregates;
                read.resize(aggregator.specs().len(), f64::NAN);
                read_aggregates(aggregator, event, ts_ms, observe, read);
                read
            }
            (Aggregates::Capture { observe, into }, Some(aggregator)) => {
                if self.reads_aggregates {
                    read_aggregates(aggregator, event, ts_ms, observe, into);
                } else {
                    aggregator.read(&event.entity_id, ts_ms, into);
                }
                into
            }
            _ => &[],
        };
        if self.reads_aggregates {
            for (i, slot) in self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.source == InputSource::Aggregate)
            {
                if event.features.get(&slot.name).is_some_and(|v| !is_null(v)) {
                    continue; // overridden: encoded in pass 1
                }
                let computed = values
                    .get(slot.aggregate_index)
                    .copied()
                    .filter(|v| !v.is_nan())
                    .map(FeatureValue::Number);
                scratch.defaulted[i] = computed.is_none();
                match computed.as_ref().or(slot.default.as_ref()) {
                    Some(v) => encode(slot, v, out)?,
                    None => return Err(missing(slot, lookup)),
                }
            }
        }
        Ok(lookup)
    }

    /// Encodes the inputs that are not computed aggregates: the event's and
    /// the store's, and aggregates the event overrides (pass 1 of
    /// [`enrich_with`](Self::enrich_with): everything that can reject).
    fn encode_direct(
        &self,
        event: &Event,
        lookup: StoreLookup,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), Rejection> {
        for (i, slot) in self.slots.iter().enumerate() {
            let from_event = event.features.get(&slot.name).filter(|v| !is_null(v));
            if slot.source == InputSource::Aggregate {
                // An override of an aggregate is the event's own value: a
                // bad one rejects the event here, before it is folded in.
                if let Some(v) = from_event {
                    encode(slot, v, out)?;
                }
                continue;
            }
            let stored;
            let value = match from_event {
                Some(v) => Some(v),
                None if slot.source == InputSource::Store && lookup == StoreLookup::Hit => {
                    stored = self.stored_value(&scratch.row, slot.store_column);
                    stored.as_ref()
                }
                None => None,
            };
            scratch.defaulted[i] = value.is_none();
            match value.or(slot.default.as_ref()) {
                Some(v) => encode(slot, v, out)?,
                None => return Err(missing(slot, lookup)),
            }
        }
        Ok(())
    }

    fn stored_value(&self, row: &Row, column: usize) -> Option<FeatureValue> {
        let store = self.store.as_ref()?;
        match store.value(row, column) {
            FeatureValue::Null => None,
            v => Some(v),
        }
    }

    /// The model this enricher feeds, as `name/version`.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The aggregator the aggregate inputs are read from, if any.
    pub fn aggregator(&self) -> Option<&Arc<Aggregator>> {
        self.aggregator.as_ref()
    }
}

/// Every aggregate of `event`'s entity as of the event into `out`, folding
/// the event in after the read when `observe` (one lock for both).
fn read_aggregates(
    aggregator: &Aggregator,
    event: &Event,
    ts_ms: i64,
    observe: bool,
    out: &mut [f64],
) {
    if observe {
        aggregator.read_then_observe(&event.entity_id, ts_ms, &event.features, out);
    } else {
        aggregator.read(&event.entity_id, ts_ms, out);
    }
}

fn wire(
    model: &str,
    input: &InputSpec,
    store: Option<&FeatureStore>,
    aggregator: Option<&Aggregator>,
) -> Result<(usize, usize), EnrichSetupError> {
    let err_ctx = || (model.to_owned(), input.name.clone());
    match input.source {
        InputSource::Event => Ok((usize::MAX, usize::MAX)),
        InputSource::Store => {
            let Some(store) = store else {
                let (model, input) = err_ctx();
                return Err(EnrichSetupError::NoStore { model, input });
            };
            match store.schema().index_of(&input.name) {
                Some(col) => Ok((col, usize::MAX)),
                None => {
                    let (model, input) = err_ctx();
                    Err(EnrichSetupError::NoStoreColumn { model, input })
                }
            }
        }
        InputSource::Aggregate => {
            let Some(aggregator) = aggregator else {
                let (model, input) = err_ctx();
                return Err(EnrichSetupError::NoAggregator { model, input });
            };
            match aggregator.specs().iter().position(|s| s.name == input.name) {
                Some(i) => Ok((usize::MAX, i)),
                None => {
                    let (model, input) = err_ctx();
                    Err(EnrichSetupError::NoAggregate { model, input })
                }
            }
        }
    }
}

fn is_null(v: &FeatureValue) -> bool {
    matches!(v, FeatureValue::Null)
}

fn missing(slot: &Slot, lookup: StoreLookup) -> Rejection {
    let why = match (slot.source, lookup) {
        (InputSource::Store, StoreLookup::Miss) => "not in the event, entity not in the store",
        (InputSource::Store, StoreLookup::Expired) => {
            "not in the event, the entity's stored row is older than the store ttl"
        }
        (InputSource::Store, _) => "not in the event nor in the entity's stored row",
        (InputSource::Aggregate, _) => "not in the event and the aggregate window is empty",
        (InputSource::Event, _) => "not in the event",
    };
    Rejection::new(
        RejectReason::MissingFeature,
        format!(
            "feature `{}`: {why}, and the model declares no default",
            slot.name
        ),
    )
}

fn wrong_type(slot: &Slot, expected: &str, got: &FeatureValue) -> Rejection {
    Rejection::new(
        RejectReason::WrongType,
        format!(
            "feature `{}`: expected {expected}, got {} {}",
            slot.name,
            got.kind(),
            shown(got)
        ),
    )
}

fn shown(v: &FeatureValue) -> String {
    match v {
        FeatureValue::Null => String::new(),
        FeatureValue::Bool(b) => b.to_string(),
        FeatureValue::Number(n) => n.to_string(),
        FeatureValue::Text(t) => {
            let t: String = t.chars().take(64).collect();
            format!("{t:?}")
        }
    }
}

/// Producers in Python send `"NaN"`/`"Infinity"` as strings when their JSON
/// encoder refuses the bare tokens; name that for what it is.
fn looks_non_finite(t: &str) -> bool {
    let t = t.trim().trim_start_matches(['+', '-']);
    t.eq_ignore_ascii_case("nan")
        || t.eq_ignore_ascii_case("inf")
        || t.eq_ignore_ascii_case("infinity")
}

fn encode(slot: &Slot, value: &FeatureValue, out: &mut [f32]) -> Result<(), Rejection> {
    match slot.kind {
        InputKind::Numeric => {
            let x = match value {
                FeatureValue::Number(n) => *n,
                FeatureValue::Bool(b) => f64::from(u8::from(*b)),
                FeatureValue::Text(t) if looks_non_finite(t) => {
                    return Err(Rejection::new(
                        RejectReason::NonFinite,
                        format!("feature `{}`: {t:?} is not a finite number", slot.name),
                    ))
                }
                other => return Err(wrong_type(slot, "a number", other)),
            };
            let f = x as f32;
            if !f.is_finite() {
                return Err(Rejection::new(
                    RejectReason::NonFinite,
                    format!("feature `{}`: {x} is not a finite 32-bit float", slot.name),
                ));
            }
            out[slot.offset] = f;
        }
        InputKind::Boolean => {
            out[slot.offset] = match value {
                FeatureValue::Bool(b) => f32::from(u8::from(*b)),
                FeatureValue::Number(n) if *n == 0.0 || *n == 1.0 => *n as f32,
                other => return Err(wrong_type(slot, "true/false (or 0/1)", other)),
            };
        }
        InputKind::Categorical => {
            let FeatureValue::Text(t) = value else {
                return Err(wrong_type(slot, "a category string", value));
            };
            let position = slot.vocabulary.iter().position(|v| v == t);
            let width = slot.vocabulary.len();
            match (slot.encoding, position) {
                (Some(Encoding::OneHot), Some(p)) => {
                    out[slot.offset..slot.offset + width].fill(0.0);
                    out[slot.offset + p] = 1.0;
                }
                (Some(Encoding::Ordinal), Some(p)) => out[slot.offset] = p as f32,
                (_, None) if slot.on_unknown == OnUnknown::Zeros => match slot.encoding {
                    Some(Encoding::Ordinal) => out[slot.offset] = -1.0,
                    _ => out[slot.offset..slot.offset + width].fill(0.0),
                },
                (_, None) => {
                    return Err(Rejection::new(
                        RejectReason::UnknownCategory,
                        format!(
                            "feature `{}`: {} is not one of the model's {width} categories",
                            slot.name,
                            shown(value)
                        ),
                    ))
                }
                (None, Some(_)) => {
                    // Manifest validation requires an encoding for categoricals.
                    return Err(Rejection::new(
                        RejectReason::WrongType,
                        format!("feature `{}`: categorical without an encoding", slot.name),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Features;
    use crate::features::aggregates::AggregatorConfig;
    use crate::features::store::StoreConfig;
    use std::path::Path;

    const MANIFEST: &str = r#"
format = 1
name = "t"
version = "1"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[score]
output = "probabilities"
index = 1
[[inputs]]
name = "amount"
kind = "numeric"
source = "event"
[[inputs]]
name = "cat"
kind = "categorical"
source = "event"
encoding = "one_hot"
vocabulary = ["a", "b", "c"]
[[inputs]]
name = "flag"
kind = "boolean"
source = "event"
default = false
[[inputs]]
name = "limit"
kind = "numeric"
source = "store"
[[inputs]]
name = "tier"
kind = "categorical"
source = "store"
encoding = "ordinal"
vocabulary = ["x", "y"]
default = "x"
[[inputs]]
name = "n1h"
kind = "numeric"
source = "aggregate"
aggregate = { field = "amount", function = "count", window = "1h" }
[[inputs]]
name = "mean1h"
kind = "numeric"
source = "aggregate"
default = -1.0
aggregate = { field = "amount", function = "mean", window = "1h" }
"#;
    // Row layout: amount | cat a b c | flag | limit | tier | n1h | mean1h
    const WIDTH: usize = 9;

    struct Fixture {
        enricher: Enricher,
        store: Arc<FeatureStore>,
        scratch: Scratch,
    }

    fn fixture(manifest: &str) -> Fixture {
        let m = Manifest::parse(manifest, Path::new("t.toml")).unwrap();
        let (store, aggregator) =
            crate::app::sources(&m, StoreConfig::default(), AggregatorConfig::default()).unwrap();
        let store = store.unwrap();
        let mut stored = Features::default();
        stored.insert("limit", FeatureValue::Number(5000.0));
        stored.insert("tier", FeatureValue::Text("y".into()));
        store.upsert("known", &stored, 0).unwrap();
        Fixture {
            enricher: Enricher::new(&m, Some(Arc::clone(&store)), aggregator).unwrap(),
            store,
            scratch: Scratch::default(),
        }
    }

    fn event(entity: &str, features: &[(&str, FeatureValue)]) -> Event {
        let mut f = Features::default();
        for (k, v) in features {
            f.insert(*k, v.clone());
        }
        Event {
            event_id: "e".into(),
            entity_id: entity.into(),
            ts_ms: None,
            features: f,
        }
    }

    fn num(x: f64) -> FeatureValue {
        FeatureValue::Number(x)
    }
    fn text(s: &str) -> FeatureValue {
        FeatureValue::Text(s.into())
    }

    impl Fixture {
        fn run(&mut self, e: &Event, ts: i64) -> Result<Vec<f32>, Rejection> {
            let mut out = vec![f32::NAN; WIDTH];
            self.enricher
                .enrich(e, ts, ts, &mut self.scratch, &mut out)
                .map(|_| out)
        }
    }

    #[test]
    fn resolves_event_then_store_then_aggregates_then_default() {
        let mut f = fixture(MANIFEST);
        assert_eq!(f.enricher.width(), WIDTH);
        let e = event("known", &[("amount", num(10.0)), ("cat", text("b"))]);
        let row = f.run(&e, 1_000).unwrap();
        // flag defaults to false; limit and tier come from the store; the
        // aggregates exclude the current event (count 0, mean empty → default).
        assert_eq!(row, vec![10.0, 0.0, 1.0, 0.0, 0.0, 5000.0, 1.0, 0.0, -1.0]);
        let e = event(
            "known",
            &[
                ("amount", num(30.0)),
                ("cat", text("c")),
                ("flag", FeatureValue::Bool(true)),
            ],
        );
        let row = f.run(&e, 2_000).unwrap();
        assert_eq!(row, vec![30.0, 0.0, 0.0, 1.0, 1.0, 5000.0, 1.0, 1.0, 10.0]);
        // A request-time value overrides the store.
        let e = event(
            "known",
            &[
                ("amount", num(1.0)),
                ("cat", text("a")),
                ("limit", num(7.0)),
            ],
        );
        let row = f.run(&e, 3_000).unwrap();
        assert_eq!(row[5], 7.0);
        assert_eq!(row[7], 2.0);
        assert_eq!(row[8], 20.0);
    }

    #[test]
    fn missing_feature_names_the_feature_and_why() {
        let mut f = fixture(MANIFEST);
        let err = f
            .run(&event("known", &[("cat", text("a"))]), 0)
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingFeature);
        assert!(
            err.detail.contains("`amount`") && err.detail.contains("not in the event"),
            "{err}"
        );
        // `limit` has no default and the entity is not in the store.
        let err = f
            .run(
                &event("stranger", &[("amount", num(1.0)), ("cat", text("a"))]),
                0,
            )
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingFeature);
        assert!(
            err.detail.contains("`limit`") && err.detail.contains("not in the store"),
            "{err}"
        );
        // Null counts as missing, not as a value.
        let err = f
            .run(
                &event(
                    "known",
                    &[("amount", FeatureValue::Null), ("cat", text("a"))],
                ),
                0,
            )
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingFeature);
    }

    #[test]
    fn wrong_types_are_rejected() {
        let mut f = fixture(MANIFEST);
        for (features, name) in [
            (
                vec![("amount", text("twelve")), ("cat", text("a"))],
                "amount",
            ),
            (vec![("amount", num(1.0)), ("cat", num(3.0))], "cat"),
            (
                vec![
                    ("amount", num(1.0)),
                    ("cat", text("a")),
                    ("flag", text("yes")),
                ],
                "flag",
            ),
            (
                vec![("amount", num(1.0)), ("cat", text("a")), ("flag", num(2.0))],
                "flag",
            ),
        ] {
            let err = f.run(&event("known", &features), 0).unwrap_err();
            assert_eq!(err.reason, RejectReason::WrongType, "{err}");
            assert!(err.detail.contains(&format!("`{name}`")), "{err}");
        }
    }

    #[test]
    fn non_finite_numbers_are_rejected() {
        let mut f = fixture(MANIFEST);
        for bad in [
            text("NaN"),
            text("-Infinity"),
            num(1e300),
            num(f64::NAN),
            num(f64::INFINITY),
        ] {
            let err = f
                .run(
                    &event("known", &[("amount", bad.clone()), ("cat", text("a"))]),
                    0,
                )
                .unwrap_err();
            assert_eq!(err.reason, RejectReason::NonFinite, "{bad:?}: {err}");
        }
    }

    #[test]
    fn unknown_categories_are_rejected_or_zeroed_as_declared() {
        let mut f = fixture(MANIFEST);
        let err = f
            .run(
                &event("known", &[("amount", num(1.0)), ("cat", text("zzz"))]),
                0,
            )
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::UnknownCategory);
        assert!(err.detail.contains("\"zzz\""), "{err}");

        let lenient = MANIFEST.replace(
            "vocabulary = [\"a\", \"b\", \"c\"]",
            "vocabulary = [\"a\", \"b\", \"c\"]\non_unknown = \"zeros\"",
        );
        let mut f = fixture(&lenient);
        let row = f
            .run(
                &event("known", &[("amount", num(1.0)), ("cat", text("zzz"))]),
                0,
            )
            .unwrap();
        assert_eq!(&row[1..4], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_rejected_event_leaves_the_aggregates_untouched() {
        let mut f = fixture(MANIFEST);
        let bad = event("known", &[("amount", num(100.0)), ("cat", text("zzz"))]);
        assert!(f.run(&bad, 1_000).is_err());
        let good = event("known", &[("amount", num(1.0)), ("cat", text("a"))]);
        let row = f.run(&good, 2_000).unwrap();
        assert_eq!(row[7], 0.0, "the rejected event was counted");
        assert_eq!(row[8], -1.0);
    }

    #[test]
    fn a_bad_override_of_an_aggregate_rejects_before_the_event_is_folded_in() {
        let mut f = fixture(MANIFEST);
        let bad = event(
            "known",
            &[
                ("amount", num(100.0)),
                ("cat", text("a")),
                ("n1h", text("many")),
            ],
        );
        assert!(f.run(&bad, 1_000).is_err());
        let good = event("known", &[("amount", num(1.0)), ("cat", text("a"))]);
        let row = f.run(&good, 2_000).unwrap();
        assert_eq!(row[7], 0.0, "the rejected event was counted");
        assert_eq!(row[8], -1.0, "the rejected event's amount was folded in");
        // A good override is the event's value, and the event is folded in.
        let overridden = event(
            "known",
            &[("amount", num(3.0)), ("cat", text("a")), ("n1h", num(42.0))],
        );
        assert_eq!(f.run(&overridden, 3_000).unwrap()[7], 42.0);
        assert_eq!(f.run(&good, 4_000).unwrap()[7], 2.0);
    }

    #[test]
    fn deleted_entities_fall_back_to_defaults_or_reject() {
        let mut f = fixture(MANIFEST);
        assert!(f.store.delete("known"));
        let err = f
            .run(
                &event("known", &[("amount", num(1.0)), ("cat", text("a"))]),
                0,
            )
            .unwrap_err();
        assert!(err.detail.contains("`limit`"), "{err}");
        let row = f
            .run(
                &event(
                    "known",
                    &[
                        ("amount", num(1.0)),
                        ("cat", text("a")),
                        ("limit", num(3.0)),
                    ],
                ),
                0,
            )
            .unwrap();
        assert_eq!(row[6], 0.0, "tier falls back to its default \"x\"");
    }

    /// `manifest`'s enricher on `f`'s store and aggregator.
    fn beside(f: &Fixture, manifest: &str) -> Enricher {
        let m = Manifest::parse(manifest, Path::new("t.toml")).unwrap();
        let aggregator = f.enricher.aggregator().cloned();
        Enricher::new(&m, Some(Arc::clone(&f.store)), aggregator).unwrap()
    }

    #[test]
    fn a_captured_event_encodes_the_aggregates_the_capturing_model_read() {
        let mut f = fixture(MANIFEST);
        let other = beside(&f, MANIFEST);
        let aggregator = f.enricher.aggregator().cloned().unwrap();
        let mut captured = vec![f64::NAN; aggregator.specs().len()];
        let mut other_scratch = Scratch::default();
        // One entity, several events close together (one batch's worth).
        for (i, amount) in [10.0, 20.0, 30.0, 40.0].into_iter().enumerate() {
            let e = event("known", &[("amount", num(amount)), ("cat", text("a"))]);
            let ts = 1_000 + i as i64;
            let mut first = vec![f32::NAN; WIDTH];
            let into = &mut captured;
            let capture = Aggregates::Capture {
                observe: true,
                into,
            };
            f.enricher
                .enrich_with(&e, ts, ts, capture, &mut f.scratch, &mut first)
                .unwrap();
            let mut second = vec![f32::NAN; WIDTH];
            let read = Aggregates::Captured(&captured);
            other
                .enrich_with(&e, ts, ts, read, &mut other_scratch, &mut second)
                .unwrap();
            assert_eq!(first, second, "event {i}");
            assert_eq!(first[7], i as f32, "the count as of event {i}");
            assert_eq!(other_scratch.defaulted(), f.scratch.defaulted());
        }
        // Folded in once each: by the capturing model only.
        let mut now = vec![f64::NAN; aggregator.specs().len()];
        aggregator.read("known", 1_004, &mut now);
        assert_eq!(now[0], 4.0);
        assert_eq!(now[1], 25.0);
    }

    #[test]
    fn a_capture_holds_the_aggregates_as_they_stand_when_its_model_rejects() {
        let mut f = fixture(MANIFEST);
        let lenient = MANIFEST.replace(
            "vocabulary = [\"a\", \"b\", \"c\"]",
            "vocabulary = [\"a\", \"b\", \"c\"]\non_unknown = \"zeros\"",
        );
        let other = beside(&f, &lenient);
        let aggregator = f.enricher.aggregator().cloned().unwrap();
        let mut captured = vec![f64::NAN; aggregator.specs().len()];
        let good = event("known", &[("amount", num(10.0)), ("cat", text("a"))]);
        f.run(&good, 1_000).unwrap();
        // The capturing model rejects the unknown category before its
        // aggregates; the other model accepts it.
        let odd = event("known", &[("amount", num(99.0)), ("cat", text("zzz"))]);
        let capture = Aggregates::Capture {
            observe: true,
            into: &mut captured,
        };
        let mut row = vec![f32::NAN; WIDTH];
        let err = f
            .enricher
            .enrich_with(&odd, 1_001, 1_001, capture, &mut f.scratch, &mut row)
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::UnknownCategory);
        assert_eq!(captured[..2], [1.0, 10.0]);
        let mut scratch = Scratch::default();
        let read = Aggregates::Captured(&captured);
        other
            .enrich_with(&odd, 1_001, 1_001, read, &mut scratch, &mut row)
            .unwrap();
        assert_eq!(row[7..], [1.0, 10.0]);
        // Nobody folded the rejected event in.
        let next = f.run(&good, 1_002).unwrap();
        assert_eq!(next[7..], [1.0, 10.0]);
    }
}

//! Synthetic card-fraud event source for `driftline demo` and load tests.
//!
//! A Rust port of the generative model that `scripts/make_models.py` used to
//! build the training data of the bundled `fraud-mlp` and `fraud-rf` models
//! (the script's docstring is the reference; every constant below matches it).
//! The port reproduces the *distributions*, not the Python random stream: the
//! same seed gives the same events here, never the same events as the script.
//!
//! What it guarantees:
//!
//! - **Deterministic**: a seed fixes the card population and the whole event
//!   stream (for a given `rand` version and platform).
//! - **Simulated time**: events come out in non-decreasing `ts` order from a
//!   superposition of per-card Poisson processes with a daily profile, so each
//!   card makes its modelled number of transactions per simulated day
//!   regardless of how fast the caller pulls events. No wall clock is read.
//! - **Vocabularies**: `merchant_category`, `channel` and `card_tier` only take
//!   values from [`MERCHANT_CATEGORIES`], [`CHANNELS`] and [`CARD_TIERS`],
//!   unless a [`Shift`] surges a category outside the vocabulary on purpose.
//! - **Request-time features only**: an event carries the six event features;
//!   the store features come from [`FraudGenerator::cards`] and the aggregates
//!   are the service's job, as in production.
//!
//! The model, in short: each card has a tier, a credit limit, an account age,
//! a typical amount, a chargeback count and a daily rate; 65% of cards are
//! active this week. Legit spending is daytime-heavy; a compromised card
//! produces a night-heavy burst of 2-6 large, mostly online, more often
//! international transactions within 30 minutes. About 2% of transactions are
//! fraud.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write as _;

use compact_str::{format_compact, CompactString};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Exp1, StandardNormal};

use crate::event::{Event, FeatureValue, Features};

/// Merchant categories, in the models' one-hot order.
pub const MERCHANT_CATEGORIES: [&str; 8] = [
    "grocery",
    "restaurants",
    "fuel",
    "online_retail",
    "travel",
    "electronics",
    "gaming",
    "pharmacy",
];

/// Payment channels, in the models' one-hot order.
pub const CHANNELS: [&str; 4] = ["chip", "contactless", "online", "swipe"];

/// Card tiers, in the models' one-hot order.
pub const CARD_TIERS: [&str; 3] = ["standard", "gold", "platinum"];

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

// --- Card population -------------------------------------------------------
const TIER_P: [f64; 3] = [0.70, 0.22, 0.08];
/// Median credit limit by tier (log-normal).
const TIER_LIMIT_MEDIAN: [f64; 3] = [3000.0, 8000.0, 20000.0];
const LIMIT_SIGMA: f64 = 0.4;
const AGE_DAYS: (f64, f64) = (30.0, 3650.0);
const AVG_AMOUNT_MEDIAN: f64 = 45.0;
const AVG_AMOUNT_SIGMA: f64 = 0.6;
const CHARGEBACK_LAMBDA: f64 = 0.1;
const CHARGEBACK_MAX: u32 = 5;
/// Legit transactions per day of an active card.
const DAILY_RATE: (f64, f64) = (1.0, 8.0);
/// Share of cards that transact at all; the others only sit in the store
/// (and can still be compromised).
const P_ACTIVE: f64 = 0.65;
/// Fraud bursts per card per day, multiplied by (1 + 4 * chargebacks_1y):
/// cards with a chargeback history are compromised more often.
const BURST_RATE_BASE: f64 = 0.0107;
const BURST_CHARGEBACK_FACTOR: f64 = 4.0;

// --- Transactions ------------------------------------------------------------
const LEGIT_CATEGORY_P: [f64; 8] = [0.25, 0.20, 0.12, 0.15, 0.05, 0.08, 0.05, 0.10];
const FRAUD_CATEGORY_P: [f64; 8] = [0.04, 0.03, 0.03, 0.30, 0.12, 0.30, 0.15, 0.03];
/// Added to the log-median amount, per category.
const CATEGORY_OFFSET: [f64; 8] = [0.0, -0.2, 0.1, 0.3, 1.2, 1.0, -0.3, -0.4];
const AMOUNT_SIGMA: f64 = 0.7;
/// Fraud amounts have three times the card's usual median.
const FRAUD_AMOUNT_MULT: f64 = 3.0;
const LEGIT_CHANNEL_P: [f64; 4] = [0.45, 0.30, 0.20, 0.05];
const FRAUD_CHANNEL_P: [f64; 4] = [0.12, 0.08, 0.60, 0.20];
const LEGIT_P_INTERNATIONAL: f64 = 0.03;
const FRAUD_P_INTERNATIONAL: f64 = 0.25;
const LEGIT_DISTANCE_MEAN_KM: f64 = 8.0;
const FRAUD_DISTANCE_MEAN_KM: f64 = 80.0;
/// Extra distance of an international transaction (uniform).
const INTERNATIONAL_EXTRA_KM: (f64, f64) = (500.0, 5000.0);
const BURST_SIZE: (u32, u32) = (2, 6);
const BURST_SPAN_MS: i64 = 1_800_000;

/// Relative intensity of legit activity per UTC hour (daytime-heavy).
const LEGIT_HOUR_WEIGHTS: [f64; 24] = [
    0.20, 0.12, 0.08, 0.06, 0.06, 0.12, 0.30, 0.60, 0.90, 1.10, 1.20, 1.40, 1.60, 1.40, 1.20, 1.20,
    1.30, 1.50, 1.60, 1.50, 1.20, 0.90, 0.60, 0.35,
];
/// Relative intensity of fraud burst starts per UTC hour (night-heavy).
const FRAUD_HOUR_WEIGHTS: [f64; 24] = [
    1.6, 1.8, 2.0, 2.0, 1.8, 1.4, 0.8, 0.5, 0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6,
    0.6, 0.7, 0.9, 1.1, 1.4,
];

/// One generated transaction and its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The event as a producer would send it (event features only).
    pub event: Event,
    /// Whether the transaction belongs to a fraud burst.
    pub is_fraud: bool,
}

/// A distribution change injected on purpose (used to demo drift alerts).
///
/// `Shift::default()` is "no shift": an `amount_scale` that is not a positive
/// finite number (the derived default is `0.0`) means no scaling, and setting
/// the default shift leaves the event stream exactly as it was.
#[derive(Debug, Clone, Default)]
pub struct Shift {
    /// Multiplies every amount, legit and fraud (1.0 = none).
    pub amount_scale: f64,
    /// `(category, share)`: each event is forced into `category` with
    /// probability `share` (clamped to 0..=1), and its amount follows that
    /// category. A category outside [`MERCHANT_CATEGORIES`] is emitted as-is
    /// (amount offset 0), which demos unknown-category handling.
    pub surge_category: Option<(String, f64)>,
}

/// The static, store-side description of one card.
#[derive(Debug, Clone)]
struct Card {
    id: CompactString,
    tier: usize,
    credit_limit: f64,
    account_age_days: f64,
    avg_amount_90d: f64,
    chargebacks_1y: f64,
}

/// A superposition of per-card Poisson processes sharing one daily profile,
/// sampled by thinning: candidates arrive at the peak-hour intensity and are
/// kept with probability `weight[hour] / max weight`. This gives exactly
/// the piecewise-constant intensity of the Python model in streaming form.
#[derive(Debug, Clone)]
struct Process {
    /// Card index per entry and cumulative rates, for picking the card of an
    /// accepted arrival in proportion to its rate.
    cards: Vec<u32>,
    cumulative: Vec<f64>,
    /// Mean gap between candidates, in ms (infinite when no card has a rate).
    candidate_gap_ms: f64,
    accept: [f64; 24],
    /// Time of the next candidate, in fractional epoch ms.
    next_ms: f64,
}

impl Process {
    /// `rates` are `(card index, events per day)`.
    fn new(
        rates: Vec<(u32, f64)>,
        hour_weights: &[f64; 24],
        start_ms: i64,
        rng: &mut SmallRng,
    ) -> Self {
        let sum_w: f64 = hour_weights.iter().sum();
        let max_w = hour_weights.iter().copied().fold(0.0, f64::max);
        let mut accept = [0.0; 24];
        for (a, w) in accept.iter_mut().zip(hour_weights) {
            *a = w / max_w;
        }
        let mut cards = Vec::with_capacity(rates.len());
        let mut cumulative = Vec::with_capacity(rates.len());
        let mut total = 0.0;
        for (card, rate) in rates {
            if rate > 0.0 {
                total += rate;
                cards.push(card);
                cumulative.push(total);
            }
        }
        // Intensity during hour h is total * 24 * w[h] / sum(w) per day; the
        // candidate stream runs at the peak-hour intensity.
        let peak_per_ms = total * 24.0 * (max_w / sum_w) / DAY_MS as f64;
        let candidate_gap_ms = if peak_per_ms > 0.0 {
            1.0 / peak_per_ms
        } else {
            f64::INFINITY
        };
        let mut process = Process {
            cards,
            cumulative,
            candidate_gap_ms,
            accept,
            next_ms: start_ms as f64,
        };
        process.advance(rng);
        process
    }

    /// Moves to the next candidate arrival.
    fn advance(&mut self, rng: &mut SmallRng) {
        let e: f64 = rng.sample(Exp1);
        self.next_ms += self.candidate_gap_ms * e;
    }

    /// Whether the candidate at `ts_ms` is kept (thinning step).
    fn accepts(&self, ts_ms: i64, rng: &mut SmallRng) -> bool {
        rng.random::<f64>() < self.accept[hour_of(ts_ms)]
    }

    /// A card, in proportion to its rate.
    fn pick(&self, rng: &mut SmallRng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= u);
        // `u < total`, so `i` is in range; the fallback only guards rounding.
        self.cards
            .get(i)
            .or(self.cards.last())
            .copied()
            .unwrap_or(0)
    }
}

/// The training week's cards: see [`FraudGenerator::training_population`].
const POPULATION: &str = include_str!("population.csv");

/// A row of the embedded card population that does not read (a build
/// defect: the file is generated and tested).
#[derive(Debug, thiserror::Error)]
#[error("src/demo/population.csv, row {row}: expected {what}")]
pub struct PopulationError {
    pub row: usize,
    pub what: &'static str,
}

/// Deterministic synthetic fraud event stream over a fixed card population.
#[derive(Debug, Clone)]
pub struct FraudGenerator {
    rng: SmallRng,
    cards: Vec<Card>,
    legit: Process,
    bursts: Process,
    /// Scheduled burst transactions: `(ts, scheduling order, card)`, earliest
    /// first; the order breaks ties so equal timestamps stay deterministic.
    pending: BinaryHeap<Reverse<(i64, u64, u32)>>,
    scheduled: u64,
    /// Number of events emitted so far (event ids start at 1).
    seq: u64,
    clock_ms: i64,
    shift: Shift,
}

impl FraudGenerator {
    /// A generator with `cards` cards (at least 1) whose simulated clock
    /// starts at `start_ms` (epoch ms). The whole stream is a function of
    /// `(seed, cards, start_ms)`.
    pub fn new(seed: u64, cards: usize, start_ms: i64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = cards.max(1);
        let mut population = Vec::with_capacity(n);
        let mut legit_rates = Vec::with_capacity(n);
        let mut burst_rates = Vec::with_capacity(n);
        for i in 0..n {
            let tier = pick_index(&mut rng, &TIER_P);
            let limit = log_normal(&mut rng, TIER_LIMIT_MEDIAN[tier].ln(), LIMIT_SIGMA);
            let credit_limit = ((limit / 100.0).round() * 100.0).max(100.0);
            let account_age_days = rng.random_range(AGE_DAYS.0..AGE_DAYS.1).floor();
            let avg_amount_90d = round_to(
                log_normal(&mut rng, AVG_AMOUNT_MEDIAN.ln(), AVG_AMOUNT_SIGMA),
                100.0,
            );
            let chargebacks_1y =
                f64::from(poisson_small(&mut rng, CHARGEBACK_LAMBDA).min(CHARGEBACK_MAX));
            let rate = rng.random_range(DAILY_RATE.0..DAILY_RATE.1);
            let active = rng.random::<f64>() < P_ACTIVE;
            let idx = i as u32;
            if active {
                legit_rates.push((idx, rate));
            }
            burst_rates.push((
                idx,
                BURST_RATE_BASE * (1.0 + BURST_CHARGEBACK_FACTOR * chargebacks_1y),
            ));
            population.push(Card {
                id: format_compact!("card-{:06}", i + 1),
                tier,
                credit_limit,
                account_age_days,
                avg_amount_90d,
                chargebacks_1y,
            });
        }
        // A stream with no legit traffic would be all fraud (and a tiny
        // population can draw no active card): keep at least one active.
        if legit_rates.is_empty() {
            legit_rates.push((0, rng.random_range(DAILY_RATE.0..DAILY_RATE.1)));
        }
        Self::assemble(rng, population, legit_rates, burst_rates, start_ms)
    }

    /// A generator over the training week's 2,000 cards
    /// (`src/demo/population.csv`, from `scripts/make_demo_population.py`):
    /// their store features, and daily rates equal to their legit
    /// transactions in the week over 7, so the amounts (clustered by card)
    /// follow the training distribution. Events are drawn as by
    /// [`new`](Self::new).
    pub fn training_population(seed: u64, start_ms: i64) -> Result<Self, PopulationError> {
        let rng = SmallRng::seed_from_u64(seed);
        let mut population = Vec::new();
        let mut legit_rates = Vec::new();
        let mut burst_rates = Vec::new();
        for (i, line) in POPULATION.lines().skip(1).enumerate() {
            let row = i + 2;
            let cells: Vec<&str> = line.split(',').collect();
            let [id, tier, age, limit, avg, chargebacks, week] = cells[..] else {
                return Err(PopulationError {
                    row,
                    what: "7 cells",
                });
            };
            let number = |cell: &str, what| {
                cell.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or(PopulationError { row, what })
            };
            let tier = CARD_TIERS
                .iter()
                .position(|t| *t == tier)
                .ok_or(PopulationError {
                    row,
                    what: "a card tier",
                })?;
            let chargebacks_1y = number(chargebacks, "chargebacks_1y")?;
            let idx = population.len() as u32;
            let week = number(week, "legit_events_week")?;
            if week > 0.0 {
                legit_rates.push((idx, week / 7.0));
            }
            burst_rates.push((
                idx,
                BURST_RATE_BASE * (1.0 + BURST_CHARGEBACK_FACTOR * chargebacks_1y),
            ));
            population.push(Card {
                id: CompactString::from(id),
                tier,
                credit_limit: number(limit, "credit_limit")?,
                account_age_days: number(age, "account_age_days")?,
                avg_amount_90d: number(avg, "avg_amount_90d")?,
                chargebacks_1y,
            });
        }
        if legit_rates.is_empty() {
            return Err(PopulationError {
                row: 1,
                what: "a card with legit transactions",
            });
        }
        Ok(Self::assemble(
            rng,
            population,
            legit_rates,
            burst_rates,
            start_ms,
        ))
    }

    fn assemble(
        mut rng: SmallRng,
        population: Vec<Card>,
        legit_rates: Vec<(u32, f64)>,
        burst_rates: Vec<(u32, f64)>,
        start_ms: i64,
    ) -> Self {
        let legit = Process::new(legit_rates, &LEGIT_HOUR_WEIGHTS, start_ms, &mut rng);
        let bursts = Process::new(burst_rates, &FRAUD_HOUR_WEIGHTS, start_ms, &mut rng);
        FraudGenerator {
            rng,
            cards: population,
            legit,
            bursts,
            pending: BinaryHeap::new(),
            scheduled: 0,
            seq: 0,
            clock_ms: start_ms,
            shift: Shift::default(),
        }
    }

    /// Store snapshot rows: (entity_id, store features) for every card.
    ///
    /// Features: `account_age_days`, `credit_limit`, `avg_amount_90d`,
    /// `chargebacks_1y` (numbers) and `card_tier` (text), as in
    /// `data/cards.parquet`. Unlike that file, no cell is null.
    pub fn cards(&self) -> impl Iterator<Item = (&str, Features)> + '_ {
        self.cards.iter().map(|card| {
            let features = Features(vec![
                (
                    "account_age_days".into(),
                    FeatureValue::Number(card.account_age_days),
                ),
                (
                    "credit_limit".into(),
                    FeatureValue::Number(card.credit_limit),
                ),
                (
                    "avg_amount_90d".into(),
                    FeatureValue::Number(card.avg_amount_90d),
                ),
                (
                    "chargebacks_1y".into(),
                    FeatureValue::Number(card.chargebacks_1y),
                ),
                (
                    "card_tier".into(),
                    FeatureValue::Text(CompactString::const_new(CARD_TIERS[card.tier])),
                ),
            ]);
            (card.id.as_str(), features)
        })
    }

    /// Next transaction; the simulated clock advances by an exponential
    /// inter-arrival so that every card's daily rate matches the model
    /// (simulated time, not wall time).
    ///
    /// Timestamps never decrease. Event ids are `evt-000000001`, `evt-000000002`, ...
    pub fn next_event(&mut self) -> Generated {
        loop {
            let legit_t = self.legit.next_ms;
            let burst_t = self.bursts.next_ms;
            if let Some(&Reverse((ts, _, card))) = self.pending.peek() {
                // `<=`: a scheduled transaction at the same instant goes first,
                // its burst having been created earlier.
                if (ts as f64) <= legit_t && (ts as f64) <= burst_t {
                    self.pending.pop();
                    return self.emit(ts, card, true);
                }
            }
            if legit_t <= burst_t {
                let ts = legit_t.floor() as i64;
                self.legit.advance(&mut self.rng);
                if self.legit.accepts(ts, &mut self.rng) {
                    let card = self.legit.pick(&mut self.rng);
                    return self.emit(ts, card, false);
                }
            } else {
                let ts = burst_t.floor() as i64;
                self.bursts.advance(&mut self.rng);
                if self.bursts.accepts(ts, &mut self.rng) {
                    let card = self.bursts.pick(&mut self.rng);
                    self.schedule_burst(ts, card);
                }
            }
        }
    }

    /// Replaces the injected distribution change (`Shift::default()` clears it).
    pub fn set_shift(&mut self, shift: Shift) {
        self.shift = shift;
    }

    /// The simulated time: the timestamp of the last event, or the start time
    /// before the first one.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    /// Queues the transactions of one burst: the first at `start`, the others
    /// uniformly within the next 30 minutes. Their features are drawn when
    /// they are emitted, so a shift set in between applies to them.
    fn schedule_burst(&mut self, start: i64, card: u32) {
        let size = self.rng.random_range(BURST_SIZE.0..=BURST_SIZE.1);
        for k in 0..size {
            let offset = if k == 0 {
                0
            } else {
                self.rng.random_range(0..BURST_SPAN_MS)
            };
            self.scheduled += 1;
            self.pending
                .push(Reverse((start + offset, self.scheduled, card)));
        }
    }

    fn emit(&mut self, ts: i64, card: u32, is_fraud: bool) -> Generated {
        self.seq += 1;
        self.clock_ms = ts;
        let avg_amount = self.cards[card as usize].avg_amount_90d;
        let features = self.draw_features(ts, avg_amount, is_fraud);
        let event = Event {
            event_id: format_compact!("evt-{:09}", self.seq),
            entity_id: self.cards[card as usize].id.clone(),
            ts_ms: Some(ts),
            features,
        };
        Generated { event, is_fraud }
    }

    /// The six event features of one transaction.
    fn draw_features(&mut self, ts: i64, avg_amount: f64, is_fraud: bool) -> Features {
        let rng = &mut self.rng;
        let (category_p, channel_p, p_international, distance_mean, median) = if is_fraud {
            (
                &FRAUD_CATEGORY_P,
                &FRAUD_CHANNEL_P,
                FRAUD_P_INTERNATIONAL,
                FRAUD_DISTANCE_MEAN_KM,
                avg_amount * FRAUD_AMOUNT_MULT,
            )
        } else {
            (
                &LEGIT_CATEGORY_P,
                &LEGIT_CHANNEL_P,
                LEGIT_P_INTERNATIONAL,
                LEGIT_DISTANCE_MEAN_KM,
                avg_amount,
            )
        };

        // Only draw for the surge when one is set, so that no shift and
        // `Shift::default()` give the same stream.
        let surged = match &self.shift.surge_category {
            Some((name, share)) if rng.random::<f64>() < share.clamp(0.0, 1.0) => {
                Some(name.as_str())
            }
            _ => None,
        };
        let (category, offset) = match surged {
            Some(name) => {
                let offset = MERCHANT_CATEGORIES
                    .iter()
                    .position(|c| *c == name)
                    .map_or(0.0, |i| CATEGORY_OFFSET[i]);
                (CompactString::from(name), offset)
            }
            None => {
                let i = pick_index(rng, category_p);
                (
                    CompactString::const_new(MERCHANT_CATEGORIES[i]),
                    CATEGORY_OFFSET[i],
                )
            }
        };

        let scale = self.shift.amount_scale;
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        let amount = log_normal(rng, median.ln() + offset, AMOUNT_SIGMA) * scale;
        let amount = round_to(amount, 100.0).max(0.01);

        let mut channel = CHANNELS[pick_index(rng, channel_p)];
        // These merchants have no card-present terminal.
        if category == "online_retail" || category == "gaming" {
            channel = "online";
        }

        let international = rng.random::<f64>() < p_international;
        let e: f64 = rng.sample(Exp1);
        let mut distance = distance_mean * e;
        if international {
            distance += rng.random_range(INTERNATIONAL_EXTRA_KM.0..INTERNATIONAL_EXTRA_KM.1);
        }
        let distance = round_to(distance, 10.0);

        Features(vec![
            ("amount".into(), FeatureValue::Number(amount)),
            ("merchant_category".into(), FeatureValue::Text(category)),
            (
                "channel".into(),
                FeatureValue::Text(CompactString::const_new(channel)),
            ),
            ("hour".into(), FeatureValue::Number(hour_of(ts) as f64)),
            ("is_international".into(), FeatureValue::Bool(international)),
            (
                "distance_from_home_km".into(),
                FeatureValue::Number(distance),
            ),
        ])
    }
}

/// Serializes an event as the spec's JSON (`{"event_id","entity_id","ts","features":{...}}`),
/// appending to `out` (no trailing newline).
///
/// `ts` is left out when the event has none. Non-finite numbers, which JSON
/// cannot carry, are written as `null`.
pub fn write_json(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"event_id\":");
    write_json_str(&event.event_id, out);
    out.extend_from_slice(b",\"entity_id\":");
    write_json_str(&event.entity_id, out);
    if let Some(ts) = event.ts_ms {
        // Writing into a Vec<u8> cannot fail.
        let _ = write!(out, ",\"ts\":{ts}");
    }
    out.extend_from_slice(b",\"features\":{");
    for (i, (name, value)) in event.features.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(name, out);
        out.push(b':');
        match value {
            FeatureValue::Null => out.extend_from_slice(b"null"),
            FeatureValue::Bool(true) => out.extend_from_slice(b"true"),
            FeatureValue::Bool(false) => out.extend_from_slice(b"false"),
            // `Display` for f64 is the shortest string that parses back to the
            // same value, and never uses exponent notation: valid JSON.
            FeatureValue::Number(x) if x.is_finite() => {
                let _ = write!(out, "{x}");
            }
            FeatureValue::Number(_) => out.extend_from_slice(b"null"),
            FeatureValue::Text(s) => write_json_str(s, out),
        }
    }
    out.extend_from_slice(b"}}");
}

/// Writes `s` as a JSON string literal.
fn write_json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            // Everything else, multi-byte UTF-8 included, is copied as-is.
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match short {
            Some(escape) => out.extend_from_slice(escape),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// UTC hour of an epoch-ms timestamp.
fn hour_of(ts_ms: i64) -> usize {
    (ts_ms.rem_euclid(DAY_MS) / HOUR_MS) as usize
}

/// Index drawn with probabilities `p` (which sum to 1).
fn pick_index(rng: &mut SmallRng, p: &[f64]) -> usize {
    let mut u = rng.random::<f64>();
    for (i, &pi) in p.iter().enumerate() {
        if u < pi {
            return i;
        }
        u -= pi;
    }
    // Only reachable through rounding of the last few ulps.
    p.len() - 1
}

/// LogNormal(mu, sigma) via a standard normal, so no fallible constructor.
fn log_normal(rng: &mut SmallRng, mu: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    (mu + sigma * z).exp()
}

/// Poisson sample for a small mean (Knuth's product method; fine for 0.1).
fn poisson_small(rng: &mut SmallRng, lambda: f64) -> u32 {
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = rng.random::<f64>();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

/// Rounds to a multiple of `1 / per_unit` (100.0: cents, 10.0: tenths).
fn round_to(x: f64, per_unit: f64) -> f64 {
    (x * per_unit).round() / per_unit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-01T00:00:00Z, the start of the Python data set.
    const START: i64 = 1_793_491_200_000;

    fn text<'a>(event: &'a Event, name: &str) -> &'a str {
        match event.features.get(name) {
            Some(FeatureValue::Text(s)) => s.as_str(),
            other => panic!("{name}: expected text, got {other:?}"),
        }
    }

    fn number(event: &Event, name: &str) -> f64 {
        number_of(&event.features, name)
    }

    fn number_of(features: &Features, name: &str) -> f64 {
        match features.get(name) {
            Some(FeatureValue::Number(x)) => *x,
            other => panic!("{name}: expected number, got {other:?}"),
        }
    }

    fn median(mut xs: Vec<f64>) -> f64 {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let mut a = FraudGenerator::new(7, 500, START);
        let mut b = FraudGenerator::new(7, 500, START);
        let mut c = FraudGenerator::new(8, 500, START);
        assert!(a.cards().eq(b.cards()));
        let mut differs = false;
        for _ in 0..5_000 {
            let (x, y, z) = (a.next_event(), b.next_event(), c.next_event());
            assert_eq!(x, y);
            differs |= x != z;
        }
        assert!(differs);
        assert_eq!(a.clock_ms(), b.clock_ms());
    }

    #[test]
    fn fraud_share_is_about_two_percent() {
        let mut g = FraudGenerator::new(42, 2_000, START);
        let n = 100_000;
        let fraud = (0..n).filter(|_| g.next_event().is_fraud).count();
        let share = fraud as f64 / n as f64;
        assert!((0.015..=0.026).contains(&share), "fraud share {share}");
    }

    #[test]
    fn daily_volume_matches_the_card_rates() {
        let mut g = FraudGenerator::new(3, 2_000, START);
        let legit_per_day = g.legit.cumulative.last().copied().unwrap_or(0.0);
        let bursts_per_day = g.bursts.cumulative.last().copied().unwrap_or(0.0);
        let mean_burst = f64::from(BURST_SIZE.0 + BURST_SIZE.1) / 2.0;
        let days = 10;
        let end = START + days * DAY_MS;
        let (mut legit, mut fraud) = (0.0, 0.0);
        loop {
            let e = g.next_event();
            if e.event.ts_ms.unwrap_or(end) >= end {
                break;
            }
            if e.is_fraud {
                fraud += 1.0;
            } else {
                legit += 1.0;
            }
        }
        let legit_rate = legit / days as f64;
        assert!(
            (legit_rate / legit_per_day - 1.0).abs() < 0.03,
            "{legit_rate} vs {legit_per_day}"
        );
        let fraud_rate = fraud / days as f64;
        let expected = bursts_per_day * mean_burst;
        assert!(
            (fraud_rate / expected - 1.0).abs() < 0.25,
            "{fraud_rate} vs {expected}"
        );
    }

    #[test]
    fn values_come_from_the_vocabularies_and_time_is_consistent() {
        let mut g = FraudGenerator::new(11, 1_000, START);
        let mut last_ts = START;
        let mut hours = [0usize; 24];
        for i in 1..=20_000u64 {
            let Generated { event, .. } = g.next_event();
            assert_eq!(event.event_id, format!("evt-{i:09}"));
            assert!(event.entity_id.starts_with("card-") && event.entity_id.len() == 11);
            let names: Vec<&str> = event.features.iter().map(|(k, _)| k).collect();
            assert_eq!(
                names,
                [
                    "amount",
                    "merchant_category",
                    "channel",
                    "hour",
                    "is_international",
                    "distance_from_home_km"
                ]
            );
            let category = text(&event, "merchant_category");
            let channel = text(&event, "channel");
            assert!(MERCHANT_CATEGORIES.contains(&category), "{category}");
            assert!(CHANNELS.contains(&channel), "{channel}");
            if category == "online_retail" || category == "gaming" {
                assert_eq!(channel, "online");
            }
            assert!(matches!(
                event.features.get("is_international"),
                Some(FeatureValue::Bool(_))
            ));
            assert!(number(&event, "amount") >= 0.01);
            assert!(number(&event, "distance_from_home_km") >= 0.0);
            let ts = event.ts_ms.expect("generated events carry a timestamp");
            assert!(ts >= last_ts, "time went back: {ts} < {last_ts}");
            last_ts = ts;
            let hour = number(&event, "hour");
            assert_eq!(hour, hour_of(ts) as f64);
            hours[hour as usize] += 1;
            assert_eq!(g.clock_ms(), ts);
        }
        // Daytime-heavy: noon is far busier than 3 a.m.
        assert!(hours[12] > 5 * hours[3], "{hours:?}");
        for (id, features) in g.cards() {
            assert!(id.starts_with("card-"));
            match features.get("card_tier") {
                Some(FeatureValue::Text(t)) => assert!(CARD_TIERS.contains(&t.as_str())),
                other => panic!("card_tier: {other:?}"),
            }
            assert_eq!(features.len(), 5);
        }
        assert_eq!(g.cards().count(), 1_000);
        assert_eq!(g.cards().next().map(|(id, _)| id), Some("card-000001"));
    }

    #[test]
    fn json_round_trips() {
        let mut g = FraudGenerator::new(5, 300, START);
        let mut buf = Vec::new();
        for _ in 0..500 {
            let event = g.next_event().event;
            buf.clear();
            write_json(&event, &mut buf);
            let v: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
            assert_eq!(v["event_id"], event.event_id.as_str());
            assert_eq!(v["entity_id"], event.entity_id.as_str());
            assert_eq!(v["ts"].as_i64(), event.ts_ms);
            let obj = v["features"].as_object().expect("features object");
            assert_eq!(obj.len(), event.features.len());
            for (name, value) in event.features.iter() {
                let j = &obj[name];
                match value {
                    FeatureValue::Number(x) => assert_eq!(j.as_f64(), Some(*x), "{name}"),
                    FeatureValue::Text(s) => assert_eq!(j.as_str(), Some(s.as_str()), "{name}"),
                    FeatureValue::Bool(b) => assert_eq!(j.as_bool(), Some(*b), "{name}"),
                    FeatureValue::Null => assert!(j.is_null()),
                }
            }
        }
    }

    #[test]
    fn json_escapes_strings_and_handles_odd_values() {
        let mut features = Features::default();
        features.insert(
            "quote\"back\\slash",
            FeatureValue::Text("line\nbreak\u{1}é".into()),
        );
        features.insert("missing", FeatureValue::Null);
        features.insert("nan", FeatureValue::Number(f64::NAN));
        features.insert("tiny", FeatureValue::Number(1e-300));
        let event = Event {
            event_id: "e\"1".into(),
            entity_id: "card-1".into(),
            ts_ms: None,
            features,
        };
        let mut buf = Vec::new();
        write_json(&event, &mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
        assert_eq!(v["event_id"], "e\"1");
        assert!(v.get("ts").is_none());
        assert_eq!(v["features"]["quote\"back\\slash"], "line\nbreak\u{1}é");
        assert!(v["features"]["missing"].is_null());
        assert!(v["features"]["nan"].is_null());
        assert_eq!(v["features"]["tiny"].as_f64(), Some(1e-300));
    }

    #[test]
    fn the_training_population_is_the_training_weeks_cards() {
        let g = FraudGenerator::training_population(3, START).expect("the embedded population");
        let cards: Vec<(&str, Features)> = g.cards().collect();
        assert_eq!(cards.len(), 2_000);
        assert_eq!(cards[1].0, "card-000002");
        // data/cards.csv: card-000002,...,2737.0,4000.0,112.64,0.0,standard
        assert_eq!(number_of(&cards[1].1, "avg_amount_90d"), 112.64);
        assert_eq!(number_of(&cards[1].1, "account_age_days"), 2737.0);
        // 40,994 legit transactions in the training week.
        let per_day: f64 = g.legit.cumulative.last().copied().unwrap_or(0.0);
        assert!((per_day - 40_994.0 / 7.0).abs() < 1e-6, "{per_day}");
        // Card 1 had none: never picked for legit traffic.
        assert!(!g.legit.cards.contains(&0));
    }

    #[test]
    fn shift_scales_the_amount_median() {
        let amounts = |shift: Option<Shift>| {
            let mut g = FraudGenerator::new(9, 1_000, START);
            if let Some(s) = shift {
                g.set_shift(s);
            }
            (0..20_000)
                .map(|_| number(&g.next_event().event, "amount"))
                .collect::<Vec<_>>()
        };
        let base = amounts(None);
        // The default shift is no shift at all: same stream.
        assert_eq!(base, amounts(Some(Shift::default())));
        let doubled = amounts(Some(Shift {
            amount_scale: 2.0,
            surge_category: None,
        }));
        let ratio = median(doubled) / median(base);
        assert!((ratio - 2.0).abs() < 0.02, "median ratio {ratio}");
    }

    #[test]
    fn surge_forces_the_category_share() {
        let mut g = FraudGenerator::new(13, 1_000, START);
        g.set_shift(Shift {
            amount_scale: 1.0,
            surge_category: Some(("gaming".into(), 0.5)),
        });
        let n = 20_000;
        let gaming = (0..n)
            .filter(|_| {
                let e = g.next_event().event;
                let is_gaming = text(&e, "merchant_category") == "gaming";
                if is_gaming {
                    assert_eq!(text(&e, "channel"), "online");
                }
                is_gaming
            })
            .count();
        // 0.5 forced + 0.5 * ~5% natural.
        let share = gaming as f64 / n as f64;
        assert!((0.50..0.56).contains(&share), "gaming share {share}");

        g.set_shift(Shift {
            amount_scale: 1.0,
            surge_category: Some(("crypto".into(), 1.0)),
        });
        assert_eq!(text(&g.next_event().event, "merchant_category"), "crypto");
    }

    #[test]
    fn zero_cards_still_yields_events() {
        let mut g = FraudGenerator::new(1, 0, START);
        assert_eq!(g.cards().count(), 1);
        for _ in 0..100 {
            assert_eq!(g.next_event().event.entity_id, "card-000001");
        }
    }
}

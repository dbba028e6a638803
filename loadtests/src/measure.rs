//! The generator and the measurer of one run (one system, one scenario).
//!
//! Three threads share one clock origin (`start`):
//! - the **producer** sends event `seq` (a realistic fraud event from
//!   [`FraudGenerator`], id `lt-<seq>`, key = card id) when the
//!   [`Schedule`] says it is due, whether or not the system keeps up (open
//!   loop); a full local queue delays sends, which shows as latency;
//! - the **reader** reads every partition of the output topic and of the
//!   DLQ from the beginning (no consumer group), finds `seq` in each value
//!   and records `read time − scheduled send time` in microseconds, into the
//!   histogram of the segment the event was scheduled in;
//! - the **monitor** (the calling thread) samples the counters every 100 ms,
//!   shows progress, judges saturation steps, watches the processes, and
//!   after the last send waits for the outputs to drain.
//!
//! Guarantees: latency is never measured from the actual send time, so a
//! stall of any part (generator, broker, system) counts in full; only the
//! first arrival of an event is timed, later ones count as duplicates;
//! every event handed to the producer ends as received, DLQ, refused by the
//! broker on the way in (counted apart), or lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use driftline::demo::generator::{write_json, FraudGenerator};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::eventid::{event_id, parse_seq};
use crate::saturation::{judge, Behind, Rules, Step};
use crate::scenario::Plan;
use crate::schedule::Schedule;
use crate::seqset::{Accounting, Arrival, SeqSet};

/// Latency histograms: 1 µs .. 10 min at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant, valid histogram bounds"))
}

/// Topic names of one run.
#[derive(Debug, Clone)]
pub struct Topics {
    pub features: String,
    pub predictions: String,
    pub dlq: String,
    /// A topic only the generator writes to, once, before the clock starts.
    pub warmup: String,
}

/// What one run needs to know.
pub struct Setup<'a> {
    pub bootstrap: String,
    /// librdkafka properties of the system's consumers (`[kafka.client]` +
    /// `[kafka.consumer]`): the reader uses them too, so "readable" means
    /// readable by a consumer configured like the system's.
    pub consumer_properties: Vec<(String, String)>,
    /// `[kafka.client]` properties (connection, security): the generator's
    /// producer uses them.
    pub client_properties: Vec<(String, String)>,
    pub topics: Topics,
    pub partitions: i32,
    pub dlq_partitions: i32,
    pub plan: &'a Plan,
    pub cards: usize,
    pub seed: u64,
    pub linger_ms: u32,
    /// Longest wait for outputs after the last send.
    pub drain: Duration,
    /// Saturation mode: how steps are judged.
    pub rules: Option<Rules>,
    /// Processes whose CPU (and, for the system, memory) is sampled.
    pub system_pid: u32,
    pub broker_pid: u32,
}

/// One 100 ms sample of the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Seconds since the schedule's start.
    pub t: f64,
    pub sent: u64,
    /// Distinct events out (predictions + DLQ).
    pub done: u64,
    pub system_cpu_s: Option<f64>,
    pub broker_cpu_s: Option<f64>,
    /// This process: the generator, its producer, the reader.
    pub loadgen_cpu_s: Option<f64>,
    /// The whole machine (to see what other processes took).
    pub machine_busy_s: Option<f64>,
    pub system_rss_kb: Option<u64>,
    /// Latency of the first arrivals read since the previous sample with a
    /// value (about one second): (p50, p99, max) in µs.
    pub latency_us: Option<(u64, u64, u64)>,
}

impl Sample {
    pub fn lag(&self) -> u64 {
        self.sent.saturating_sub(self.done)
    }
}

/// The outcome of one saturation step.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub segment: usize,
    pub step: Step,
    /// Seconds the step was measured over (sample to sample).
    pub window: (f64, f64),
    pub verdict: Result<(), Behind>,
}

/// Everything one run measured.
pub struct Measurement {
    /// First-arrival latencies per schedule segment, in µs.
    pub by_segment: Vec<Histogram<u64>>,
    pub samples: Vec<Sample>,
    /// The system's threads and their CPU time, about once a second:
    /// (seconds since the schedule's start, threads).
    pub threads: Vec<(f64, Vec<crate::procs::ThreadCpu>)>,
    pub accounting: Accounting,
    /// Values on the output topics that carry no id of ours.
    pub foreign: u64,
    /// Seconds (from start) when the last event was sent.
    pub sending_ended: f64,
    /// Sent − out when the last event was sent.
    pub lag_at_end: u64,
    /// Seconds spent waiting for the last outputs.
    pub drain_secs: f64,
    /// Saturation steps judged, in order.
    pub steps: Vec<StepOutcome>,
}

/// Producer context of the generator: counts refused deliveries.
struct CountFailures {
    failed: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for CountFailures {}

impl ProducerContext for CountFailures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *lock(&self.last_error) = Some(e.to_string());
        }
    }
}

/// The generator's producer: `properties` first, then what it must control.
fn generator_producer(
    properties: &[(String, String)],
    bootstrap: &str,
    linger_ms: u32,
    context: CountFailures,
) -> anyhow::Result<ThreadedProducer<CountFailures>> {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms.to_string())
        // Retries never duplicate: every duplicate counted is the system's.
        .set("enable.idempotence", "true")
        .create_with_context(context)
        .context("creating the generator's producer")
}

/// What the reader has seen.
struct Received {
    predictions: SeqSet,
    dlq: SeqSet,
    by_segment: Vec<Histogram<u64>>,
    /// Since the monitor last took it (saturation steps).
    window: Histogram<u64>,
    /// Every measured (non-warm-up) first arrival, for the progress line.
    so_far: Histogram<u64>,
    /// Since the monitor last took it (the per-second timeline).
    second: Histogram<u64>,
    foreign: u64,
    last_error: Option<String>,
}

impl Received {
    fn done(&self) -> u64 {
        self.predictions.unique() + self.dlq.unique()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking thread cannot leave these counters half-updated in a way
    // that matters for a report; keep going with what is there.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Flags the monitor sets for the other threads.
#[derive(Default)]
struct Flags {
    /// Stop sending (saturation found, or the schedule is over); flush.
    stop_sending: AtomicBool,
    /// Something failed: stop at once, no flush.
    abort: AtomicBool,
    /// Stop reading.
    stop_reading: AtomicBool,
}

/// Runs one measurement. `watch` is called with every sample and fails the
/// run when a process it watches has died; `interrupted` is Ctrl-C.
pub fn run(
    setup: &Setup<'_>,
    progress: &ProgressBar,
    interrupted: &AtomicBool,
    watch: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Measurement> {
    let schedule = &setup.plan.schedule;
    let segments = schedule.segments().len();
    let received = Mutex::new(Received {
        predictions: SeqSet::new(schedule.total()),
        dlq: SeqSet::new(schedule.total()),
        by_segment: (0..segments).map(|_| new_histogram()).collect(),
        window: new_histogram(),
        so_far: new_histogram(),
        second: new_histogram(),
        foreign: 0,
        last_error: None,
    });
    let sent = AtomicU64::new(0);
    let failed = Arc::new(AtomicU64::new(0));
    let produce_error = Arc::new(Mutex::new(None));
    let flags = Flags::default();

    let producer = generator_producer(
        &setup.client_properties,
        &setup.bootstrap,
        setup.linger_ms,
        CountFailures {
            failed: failed.clone(),
            last_error: produce_error.clone(),
        },
    )?;
    let reader = reader(setup)?;
    warm_up(&producer, &reader, setup)?;
    // The generator is built before the clock starts: with a million cards
    // it takes a moment.
    let generator = FraudGenerator::new(setup.seed, setup.cards, driftline::event::now_ms());

    let start = Instant::now();
    let outcome = std::thread::scope(|s| {
        let producing = std::thread::Builder::new()
            .name("lt-producer".into())
            .spawn_scoped(s, || {
                produce(
                    generator,
                    &producer,
                    &setup.topics.features,
                    schedule,
                    start,
                    &flags,
                    &sent,
                )
            })
            .context("starting the producer thread")?;
        let reading = std::thread::Builder::new()
            .name("lt-reader".into())
            .spawn_scoped(s, || {
                read(&reader, setup, start, &flags, &received);
            });
        let reading = match reading {
            Ok(r) => r,
            Err(e) => {
                flags.abort.store(true, Ordering::Relaxed);
                return Err(anyhow!("starting the reader thread: {e}"));
            }
        };
        let mut monitor = Monitor {
            setup,
            start,
            sent: &sent,
            failed: &failed,
            received: &received,
            flags: &flags,
            progress,
            samples: Vec::new(),
            threads: Vec::new(),
            steps: Vec::new(),
        };
        let result = monitor.run(&producing, interrupted, watch);
        if result.is_err() {
            flags.abort.store(true, Ordering::Relaxed);
        }
        flags.stop_sending.store(true, Ordering::Relaxed);
        flags.stop_reading.store(true, Ordering::Relaxed);
        let _ = producing.join();
        let _ = reading.join();
        result.map(|(ended, lag, drain)| {
            (
                monitor.samples,
                monitor.threads,
                monitor.steps,
                ended,
                lag,
                drain,
            )
        })
    });
    let (samples, threads, steps, sending_ended, lag_at_end, drain_secs) = outcome?;
    let received = received.into_inner().unwrap_or_else(|p| p.into_inner());
    let accounting = Accounting {
        sent: sent.load(Ordering::Relaxed),
        produce_failed: failed.load(Ordering::Relaxed),
        received: received.predictions.unique(),
        dlq: received.dlq.unique(),
        duplicates: received.predictions.duplicates() + received.dlq.duplicates(),
    };
    if accounting.produce_failed > 0 {
        eprintln!(
            "warning: the broker refused {} event(s) on the way in: {}",
            accounting.produce_failed,
            lock(&produce_error).as_deref().unwrap_or("?")
        );
    }
    Ok(Measurement {
        by_segment: received.by_segment,
        samples,
        threads,
        accounting,
        foreign: received.foreign
            + received.predictions.out_of_range()
            + received.dlq.out_of_range(),
        sending_ended,
        lag_at_end,
        drain_secs,
        steps,
    })
}

fn reader(setup: &Setup<'_>) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    for (k, v) in &setup.consumer_properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", &setup.bootstrap)
        // Required by librdkafka; nothing is committed and no group is joined.
        .set("group.id", "driftline-loadtest-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("creating the reader")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..setup.partitions {
        tpl.add_partition_offset(&setup.topics.predictions, p, Offset::Beginning)?;
    }
    for p in 0..setup.dlq_partitions {
        tpl.add_partition_offset(&setup.topics.dlq, p, Offset::Beginning)?;
    }
    consumer
        .assign(&tpl)
        .context("assigning the output topics")?;
    Ok(consumer)
}

/// Gets the generator's producer and the reader going before the clock
/// starts, so their start-up is not measured as the system's latency: an
/// idempotent producer's first acknowledgement waits for its producer id
/// (about a second on Tansu), and the reader's first fetch waits for the
/// offsets of its partitions.
fn warm_up(
    producer: &ThreadedProducer<CountFailures>,
    reader: &BaseConsumer,
    setup: &Setup<'_>,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(30);
    producer
        .client()
        .fetch_metadata(Some(&setup.topics.features), timeout)
        .context("metadata of the input topic")?;
    producer
        .send(BaseRecord::<[u8], [u8]>::to(&setup.topics.warmup).payload(b"warm-up"))
        .map_err(|(e, _)| anyhow!("sending the warm-up record: {e}"))?;
    producer
        .flush(timeout)
        .context("the warm-up record was not acknowledged")?;
    // Nothing to read yet (fresh topics): these polls only connect and
    // resolve the partitions' start offsets.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(50)) {
            return Err(anyhow!("the output topics are not empty before the run"));
        }
    }
    Ok(())
}

fn produce(
    mut generator: FraudGenerator,
    producer: &ThreadedProducer<CountFailures>,
    topic: &str,
    schedule: &Schedule,
    start: Instant,
    flags: &Flags,
    sent: &AtomicU64,
) {
    let mut buf = Vec::with_capacity(512);
    let stopped =
        || flags.stop_sending.load(Ordering::Relaxed) || flags.abort.load(Ordering::Relaxed);
    'events: for seq in 0..schedule.total() {
        let Some(due) = schedule.due(seq) else { break };
        let due = start + due;
        // Sleep in short slices so a stop is seen within 50 ms even in a pause.
        loop {
            if stopped() {
                break 'events;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
        let mut event = generator.next_event().event;
        event.event_id = event_id(seq).into();
        buf.clear();
        write_json(&event, &mut buf);
        let record = BaseRecord::to(topic)
            .key(event.entity_id.as_bytes())
            .payload(&buf[..]);
        // A full local queue means the broker is not taking the load: wait
        // (open loop: this shows as latency), never drop.
        match driftline::sink::send_waiting(producer, record, Some(&flags.abort)) {
            Ok(true) => {}
            Ok(false) => break 'events,
            Err(e) => {
                eprintln!("error: the generator cannot produce: {e}");
                break 'events;
            }
        }
        sent.store(seq + 1, Ordering::Relaxed);
    }
    if !flags.abort.load(Ordering::Relaxed) {
        if let Err(e) = producer.flush(Duration::from_secs(60)) {
            eprintln!("warning: the generator's producer did not flush: {e}");
        }
    }
}

fn read(
    consumer: &BaseConsumer,
    setup: &Setup<'_>,
    start: Instant,
    flags: &Flags,
    received: &Mutex<Received>,
) {
    let schedule = &setup.plan.schedule;
    while !flags.stop_reading.load(Ordering::Relaxed) {
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                lock(received).last_error = Some(e.to_string());
                continue;
            }
            Some(Ok(m)) => m,
        };
        let now = Instant::now();
        let to_predictions = message.topic() == setup.topics.predictions;
        let seq = message.payload().and_then(parse_seq);
        let mut r = lock(received);
        let Some(seq) = seq else {
            r.foreign += 1;
            continue;
        };
        let arrival = if to_predictions {
            r.predictions.insert(seq)
        } else {
            r.dlq.insert(seq)
        };
        if arrival != Arrival::First {
            continue;
        }
        let (Some(segment), Some(due)) = (schedule.segment_of(seq), schedule.due(seq)) else {
            continue;
        };
        let us = now.saturating_duration_since(start + due).as_micros() as u64;
        r.by_segment[segment].saturating_record(us.max(1));
        r.window.saturating_record(us.max(1));
        r.second.saturating_record(us.max(1));
        if segment > 0 {
            r.so_far.saturating_record(us.max(1));
        }
    }
}

struct Monitor<'a> {
    setup: &'a Setup<'a>,
    start: Instant,
    sent: &'a AtomicU64,
    failed: &'a AtomicU64,
    received: &'a Mutex<Received>,
    flags: &'a Flags,
    progress: &'a ProgressBar,
    samples: Vec<Sample>,
    threads: Vec<(f64, Vec<crate::procs::ThreadCpu>)>,
    steps: Vec<StepOutcome>,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Draining ends early when nothing new arrived for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(10);

impl Monitor<'_> {
    /// Returns (seconds when sending ended, lag then, seconds drained).
    fn run(
        &mut self,
        producing: &std::thread::ScopedJoinHandle<'_, ()>,
        interrupted: &AtomicBool,
        watch: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<(f64, u64, f64)> {
        let schedule = &self.setup.plan.schedule;
        let steps = self.setup.plan.steps.clone();
        let mut next_step = 0usize;
        let mut step_start: Option<Sample> = None;
        let mut last_draw = Instant::now();
        self.progress
            .set_length((schedule.secs() * 10.0).round() as u64);

        // Sending.
        while !producing.is_finished() {
            std::thread::sleep(SAMPLE_EVERY);
            self.tick(interrupted, watch)?;
            let now = *self.samples.last().ok_or_else(|| anyhow!("no sample"))?;
            // Saturation: judge a step once its end has passed.
            if let (Some(rules), Some(&segment)) = (self.setup.rules, steps.get(next_step)) {
                let (begin, end) = schedule.bounds(segment).unwrap_or((0.0, 0.0));
                if step_start.is_none() && now.t >= begin {
                    lock(self.received).window.reset();
                    step_start = Some(now);
                }
                if let (Some(first), true) = (step_start, now.t >= end) {
                    let outcome = self.judge_step(segment, first, now, &rules);
                    let behind = outcome.verdict.is_err();
                    self.report_step(&outcome);
                    self.steps.push(outcome);
                    next_step += 1;
                    step_start = None;
                    if behind {
                        self.flags.stop_sending.store(true, Ordering::Relaxed);
                    }
                }
            }
            if last_draw.elapsed() >= Duration::from_millis(250) {
                last_draw = Instant::now();
                self.draw("");
            }
        }
        let ended = self.start.elapsed().as_secs_f64();
        let sent = self.sent.load(Ordering::Relaxed);
        let lag_at_end = sent.saturating_sub(lock(self.received).done());

        // Draining: until every accepted event is out, nothing new arrives
        // for a while, or the drain time is over.
        let drain_started = Instant::now();
        let mut last_done = (lock(self.received).done(), Instant::now());
        loop {
            let expected = sent.saturating_sub(self.failed.load(Ordering::Relaxed));
            let done = lock(self.received).done();
            if done >= expected
                || last_done.1.elapsed() >= DRAIN_QUIET
                || drain_started.elapsed() >= self.setup.drain
            {
                break;
            }
            if done != last_done.0 {
                last_done = (done, Instant::now());
            }
            std::thread::sleep(SAMPLE_EVERY);
            self.tick(interrupted, watch)?;
            if last_draw.elapsed() >= Duration::from_millis(250) {
                last_draw = Instant::now();
                self.draw("draining");
            }
        }
        // The reader may still be inside one poll: give it a moment so a
        // record read right now is counted.
        std::thread::sleep(Duration::from_millis(200));
        self.tick(interrupted, watch)?;
        Ok((ended, lag_at_end, drain_started.elapsed().as_secs_f64()))
    }

    fn tick(
        &mut self,
        interrupted: &AtomicBool,
        watch: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if interrupted.load(Ordering::Relaxed) {
            return Err(anyhow!("interrupted"));
        }
        watch()?;
        let t = self.start.elapsed().as_secs_f64();
        let second_passed = self
            .samples
            .iter()
            .rev()
            .find(|s| s.latency_us.is_some())
            .map_or(t >= 1.0, |s| t - s.t >= 1.0);
        let (done, latency_us) = {
            let mut r = lock(self.received);
            let latency = (second_passed && !r.second.is_empty()).then(|| {
                let h = &r.second;
                (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
            });
            if latency.is_some() {
                r.second.reset();
            }
            (r.done(), latency)
        };
        self.samples.push(Sample {
            t,
            sent: self.sent.load(Ordering::Relaxed),
            done,
            latency_us,
            system_cpu_s: crate::procs::cpu_secs(self.setup.system_pid),
            broker_cpu_s: crate::procs::cpu_secs(self.setup.broker_pid),
            loadgen_cpu_s: crate::procs::cpu_secs(std::process::id()),
            machine_busy_s: crate::procs::machine_busy_secs(),
            system_rss_kb: crate::procs::status_kb(self.setup.system_pid, "VmRSS"),
        });
        if second_passed || self.threads.is_empty() {
            self.threads
                .push((t, crate::procs::thread_cpu(self.setup.system_pid)));
        }
        Ok(())
    }

    fn judge_step(
        &self,
        segment: usize,
        first: Sample,
        last: Sample,
        rules: &Rules,
    ) -> StepOutcome {
        let schedule = &self.setup.plan.schedule;
        let seg = &schedule.segments()[segment];
        let secs = (last.t - first.t).max(1e-3);
        let p99 = {
            let r = lock(self.received);
            (!r.window.is_empty()).then(|| r.window.value_at_quantile(0.99))
        };
        // Counts are scaled from the sampled window to the step's nominal
        // length so that a sample landing late does not look like a surplus.
        let scale = seg.secs / secs;
        let step = Step {
            rate: seg.rate,
            secs: seg.secs,
            sent: ((last.sent - first.sent) as f64 * scale).round() as u64,
            read: ((last.done.saturating_sub(first.done)) as f64 * scale).round() as u64,
            lag_start: first.lag(),
            lag_end: last.lag(),
            p99_us: p99,
        };
        StepOutcome {
            segment,
            step,
            window: (first.t, last.t),
            verdict: judge(&step, rules),
        }
    }

    fn report_step(&self, o: &StepOutcome) {
        let s = &o.step;
        let label = &self.setup.plan.schedule.segments()[o.segment].label;
        let line = format!(
            "  {label:>7}: target {:>7.0}/s  in {:>7.0}/s  out {:>7.0}/s  lag {:>7}  p99 {:>9}  {}",
            s.rate,
            s.sent as f64 / s.secs,
            s.read as f64 / s.secs,
            s.lag_end,
            s.p99_us
                .map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
            match &o.verdict {
                Ok(()) => "kept up".to_string(),
                Err(why) => format!("BEHIND: {why}"),
            }
        );
        self.progress.suspend(|| eprintln!("{line}"));
    }

    fn draw(&self, phase: &str) {
        let Some(now) = self.samples.last() else {
            return;
        };
        // Rates over the last second.
        let back = self
            .samples
            .iter()
            .rev()
            .find(|s| now.t - s.t >= 1.0)
            .copied()
            .unwrap_or_default();
        let dt = (now.t - back.t).max(1e-3);
        let rate_in = (now.sent - back.sent) as f64 / dt;
        let rate_out = now.done.saturating_sub(back.done) as f64 / dt;
        let p99 = {
            let r = lock(self.received);
            (!r.so_far.is_empty()).then(|| r.so_far.value_at_quantile(0.99))
        };
        let schedule = &self.setup.plan.schedule;
        let segment = schedule
            .segment_of(now.sent)
            .and_then(|i| schedule.segments().get(i))
            .map_or_else(
                || "end".to_string(),
                |s| format!("{} {:.0}/s", s.label, s.rate),
            );
        self.progress
            .set_position((now.t * 10.0).round().min(schedule.secs() * 10.0) as u64);
        self.progress.set_message(format!(
            "{} | in {:>7.0}/s out {:>7.0}/s | lag {:>7} | p99 so far {}",
            if phase.is_empty() {
                segment
            } else {
                phase.to_string()
            },
            rate_in,
            rate_out,
            now.lag(),
            p99.map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
        ));
    }
}

/// `(t, value)` points of one sampled quantity (samples without a value left out).
pub fn series(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| value(s).map(|v| (s.t, v)))
        .collect()
}

/// The value at `t`, linearly interpolated between the points around it
/// (points sorted by time); clamped to the first and last point.
pub fn interpolate(points: &[(f64, f64)], t: f64) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    if t <= first.0 {
        return Some(first.1);
    }
    if t >= last.0 {
        return Some(last.1);
    }
    let i = points.partition_point(|p| p.0 <= t);
    let (a, b) = (points[i - 1], points[i]);
    let w = if b.0 > a.0 {
        (t - a.0) / (b.0 - a.0)
    } else {
        0.0
    };
    Some(a.1 + (b.1 - a.1) * w)
}

/// Average rate of change of a counter between `a` and `b` (per second).
pub fn rate_between(points: &[(f64, f64)], a: f64, b: f64) -> Option<f64> {
    if b <= a {
        return None;
    }
    Some((interpolate(points, b)? - interpolate(points, a)?) / (b - a))
}

/// Seconds from `burst_end` until the lag is back at or below `threshold`
/// (`None`: it never was within the samples).
pub fn recovery_secs(samples: &[Sample], burst_end: f64, threshold: u64) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.t >= burst_end)
        .find(|s| s.lag() <= threshold)
        .map(|s| s.t - burst_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `generate` sends rate × duration events, keyed by card, with the
    /// load test's ids, and a bad rate is refused.
    #[test]
    fn generate_sends_the_schedule_to_a_broker() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("features", 2, 1).unwrap();
        let options = GenerateOptions {
            brokers: cluster.bootstrap_servers(),
            topic: "features".into(),
            rate: 2000.0,
            duration_s: 0.5,
            cards: 50,
            seed: 3,
            linger_ms: 5,
            properties: vec![("client.id".into(), "generate-test".into())],
        };
        let stop = AtomicBool::new(false);
        let g = generate(&options, &stop, Duration::from_secs(60)).unwrap();
        assert_eq!((g.sent, g.failed), (1000, 0));
        assert!(g.secs >= 0.49, "{g:?}");

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "generate-test")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("features", p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seqs.len() < 1000 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                assert!(m.key().is_some_and(|k| k.starts_with(b"card-")));
                seqs.push(parse_seq(m.payload().unwrap()).unwrap());
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..1000).collect::<Vec<u64>>());

        let bad = GenerateOptions {
            rate: 0.0,
            ..options
        };
        assert!(generate(&bad, &stop, Duration::from_secs(1)).is_err());
    }

    fn sample(t: f64, sent: u64, done: u64) -> Sample {
        Sample {
            t,
            sent,
            done,
            ..Default::default()
        }
    }

    #[test]
    fn counters_interpolate_between_samples() {
        let s = [
            sample(1.0, 100, 90),
            sample(2.0, 300, 290),
            sample(3.0, 300, 300),
        ];
        let sent = series(&s, |x| Some(x.sent as f64));
        assert_eq!(interpolate(&sent, 0.0), Some(100.0));
        assert_eq!(interpolate(&sent, 1.5), Some(200.0));
        assert_eq!(interpolate(&sent, 2.0), Some(300.0));
        assert_eq!(interpolate(&sent, 9.0), Some(300.0));
        assert_eq!(interpolate(&[], 1.0), None);
        assert_eq!(rate_between(&sent, 1.0, 2.0), Some(200.0));
        assert_eq!(rate_between(&sent, 1.5, 3.0), Some(100.0 / 1.5));
        assert_eq!(rate_between(&sent, 2.0, 2.0), None);
        let none = series(&s, |x| x.system_cpu_s);
        assert!(none.is_empty());
    }

    #[test]
    fn recovery_is_the_first_time_lag_is_back_down() {
        let s = [
            sample(9.0, 1000, 990),
            sample(10.0, 6000, 3000), // burst ends at 10.0 with 3000 behind
            sample(11.0, 6100, 4500),
            sample(12.5, 6250, 6240),
            sample(13.0, 6300, 6295),
        ];
        assert_eq!(recovery_secs(&s, 10.0, 20), Some(2.5));
        assert_eq!(recovery_secs(&s, 10.0, 5), Some(3.0));
        assert_eq!(recovery_secs(&s, 10.0, 1), None);
        // Already caught up when the burst ends.
        assert_eq!(recovery_secs(&s, 13.0, 10), Some(0.0));
    }
}

/// What `loadtest generate` sends, and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub brokers: String,
    pub topic: String,
    /// Events per second, open loop.
    pub rate: f64,
    /// How long; 0 = until interrupted.
    pub duration_s: f64,
    pub cards: usize,
    pub seed: u64,
    pub linger_ms: u32,
    /// librdkafka properties of the producer (security settings and the like).
    pub properties: Vec<(String, String)>,
}

/// What a `generate` run sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generated {
    pub sent: u64,
    pub failed: u64,
    pub secs: f64,
}

/// "Until interrupted" is a schedule this long.
const FOREVER_S: f64 = 30.0 * 24.0 * 3600.0;

/// The load generator alone, against any broker (the compose file's
/// profile-gated `loadgen` service): the load test's open-loop producer of
/// fraud events (`lt-<seq>` ids, keyed by card) at a fixed rate, with a
/// progress line every `report_every`. Nothing is read back. Stops at the
/// end of `duration_s` or when `interrupted` is set, then flushes.
pub fn generate(
    options: &GenerateOptions,
    interrupted: &AtomicBool,
    report_every: Duration,
) -> anyhow::Result<Generated> {
    if !(options.rate > 0.0 && options.rate.is_finite()) {
        return Err(anyhow!("--rate must be a positive number of events/s"));
    }
    if !(options.duration_s >= 0.0 && options.duration_s.is_finite()) {
        return Err(anyhow!(
            "--duration must be 0 (until stopped) or a number of seconds"
        ));
    }
    let secs = if options.duration_s == 0.0 {
        FOREVER_S
    } else {
        options.duration_s
    };
    let schedule = Schedule::new(vec![crate::schedule::Segment::new(
        "generate",
        options.rate,
        secs,
    )]);
    let failed = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(Mutex::new(None));
    let producer = generator_producer(
        &options.properties,
        &options.brokers,
        options.linger_ms,
        CountFailures {
            failed: failed.clone(),
            last_error: last_error.clone(),
        },
    )?;
    let generator = FraudGenerator::new(options.seed, options.cards, driftline::event::now_ms());
    let flags = Flags::default();
    let sent = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let producing = s.spawn(|| {
            produce(
                generator,
                &producer,
                &options.topic,
                &schedule,
                start,
                &flags,
                &sent,
            )
        });
        let mut last = (Instant::now(), 0u64);
        while !producing.is_finished() {
            if interrupted.load(Ordering::Relaxed) {
                flags.stop_sending.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(100));
            if last.0.elapsed() >= report_every {
                let n = sent.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
                println!(
                    "{:>8.0} s: {n} events sent to {}, {rate:.0}/s, {} refused{}",
                    start.elapsed().as_secs_f64(),
                    options.topic,
                    failed.load(Ordering::Relaxed),
                    lock(&last_error)
                        .as_deref()
                        .map(|e| format!(" (last: {e})"))
                        .unwrap_or_default()
                );
                last = (Instant::now(), n);
            }
        }
        let _ = producing.join();
    });
    Ok(Generated {
        sent: sent.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
    })
}

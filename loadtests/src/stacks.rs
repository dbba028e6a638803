//! Where driftline's CPU goes under load: `perf script` output (samples with
//! call stacks, as `loadtests/profile.sh` records them) summed per thread
//! and, for the scoring thread, per pipeline stage.
//!
//! Guarantees: every sample is counted once, in its thread; a scoring-thread
//! sample goes to the first stage (from the leaf up) whose function it is
//! in, so a stage's share includes what it calls (allocations, hashing,
//! librdkafka) and the shares add up to the thread's total. The folded
//! stacks (`root;...;leaf count`) are the input of any flame-graph tool.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One sample: thread name and frames, leaf first.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub thread: String,
    pub frames: Vec<String>,
}

/// Parses `perf script -F comm,tid,ip,sym` output: a header line
/// (`<comm> <tid>`, the name may hold spaces) then one indented line per
/// frame (`<ip> <symbol>`), samples separated by blank lines.
pub fn parse_perf_script(text: &str) -> Vec<Sample> {
    let mut samples: Vec<Sample> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let mut parts: Vec<&str> = line.split_whitespace().collect();
            // The last field is the thread id.
            if parts.len() > 1 && parts[parts.len() - 1].parse::<u64>().is_ok() {
                parts.pop();
            }
            samples.push(Sample {
                thread: parts.join(" "),
                frames: Vec::new(),
            });
            continue;
        }
        let Some(sample) = samples.last_mut() else {
            continue;
        };
        let mut fields = line.trim().splitn(2, char::is_whitespace);
        let (Some(_ip), Some(sym)) = (fields.next(), fields.next()) else {
            continue;
        };
        let sym = sym.trim();
        let sym = sym.strip_suffix(" (inlined)").unwrap_or(sym);
        sample.frames.push(sym.to_string());
    }
    samples
}

/// Stages of the scoring thread: (name, substrings of a frame that mean
/// it). Checked leaf first, so a specific stage wins over the general one
/// that calls it.
pub const STAGES: &[(&str, &[&str])] = &[
    (
        "decode (JSON, Arrow)",
        &["decode_json", "decode_arrow_batch"],
    ),
    (
        "enrich (store, aggregates, encoding)",
        &["Enricher::enrich_with"],
    ),
    ("model (tract)", &["Session::score"]),
    ("drift sketches", &["Recorder::observe", "Recorder::tick"]),
    ("label join", &["LabelJoin::record"]),
    ("prediction JSON", &["Prediction::write_json"]),
    (
        "produce (librdkafka send, headers)",
        &[
            "Sink::send",
            "send_dlq",
            "prediction_headers",
            "OwnedHeaders",
        ],
    ),
    (
        "checkpoint and commit",
        &["Worker::checkpoint", "Worker::commit"],
    ),
    ("consume (librdkafka poll)", &["BaseConsumer<C>::poll"]),
    (
        "batch bookkeeping (copy, offsets, metrics)",
        &["Worker::process", "Worker::push"],
    ),
];

/// The thread that runs `serve`'s loop (named in `driftline::serve::start`).
pub const SCORING_THREAD: &str = "scoring";

/// Samples per thread and per scoring-thread stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub samples: usize,
    pub by_thread: BTreeMap<String, usize>,
    pub by_stage: BTreeMap<String, usize>,
    /// Folded stacks, root first: `a;b;c` → samples.
    pub folded: BTreeMap<String, usize>,
}

pub fn summarize(samples: &[Sample]) -> Summary {
    let mut s = Summary {
        samples: samples.len(),
        ..Summary::default()
    };
    for sample in samples {
        *s.by_thread.entry(sample.thread.clone()).or_default() += 1;
        if sample.thread == SCORING_THREAD {
            let stage = sample
                .frames
                .iter()
                .find_map(|f| {
                    STAGES
                        .iter()
                        .find(|(_, keys)| keys.iter().any(|k| f.contains(k)))
                        .map(|(name, _)| *name)
                })
                .unwrap_or("other (loop, runtime)");
            *s.by_stage.entry(stage.to_string()).or_default() += 1;
        }
        let mut stack = vec![sample.thread.replace(';', ":")];
        stack.extend(sample.frames.iter().rev().map(|f| f.replace(';', ":")));
        *s.folded.entry(stack.join(";")).or_default() += 1;
    }
    s
}

/// The summary as Markdown: threads (share of the samples, cores, µs per
/// event) and the scoring thread's stages. `secs`: how long perf recorded;
/// `events_per_s`: the load, for the per-event column.
pub fn markdown(s: &Summary, hz: f64, secs: f64, events_per_s: Option<f64>) -> String {
    let mut o = String::new();
    let cores = |n: usize| n as f64 / hz / secs.max(1e-9);
    let per_event = |n: usize| match events_per_s.filter(|r| *r > 0.0) {
        Some(r) => format!("{:.2}", cores(n) / r * 1e6),
        None => "-".to_string(),
    };
    let share = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
    let _ = writeln!(
        o,
        "{} samples at {hz} Hz over {secs} s: {:.2} cores in all.\n",
        s.samples,
        cores(s.samples)
    );
    let _ = writeln!(
        o,
        "| thread | share | cores | CPU µs per event |\n|---|---:|---:|---:|"
    );
    for (name, n) in most_first(&s.by_thread) {
        let _ = writeln!(
            o,
            "| {name} | {:.1} % | {:.2} | {} |",
            share(n, s.samples),
            cores(n),
            per_event(n)
        );
    }
    let scoring: usize = s.by_stage.values().sum();
    if scoring > 0 {
        let _ = writeln!(
            o,
            "\nScoring thread by stage (a stage includes what it calls):\n\n| stage | share of the thread | CPU µs per event |\n|---|---:|---:|"
        );
        for (name, n) in most_first(&s.by_stage) {
            let _ = writeln!(
                o,
                "| {name} | {:.1} % | {} |",
                share(n, scoring),
                per_event(n)
            );
        }
    }
    o
}

/// Folded stacks, one `stack count` line each (flamegraph.pl, inferno).
pub fn folded(s: &Summary) -> String {
    let mut o = String::new();
    for (stack, n) in &s.folded {
        let _ = writeln!(o, "{stack} {n}");
    }
    o
}

/// Sample counts, largest first (ties in name order: the sort is stable).
fn most_first(counts: &BTreeMap<String, usize>) -> Vec<(&str, usize)> {
    let mut v: Vec<(&str, usize)> = counts.iter().map(|(k, &n)| (k.as_str(), n)).collect();
    v.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "scoring 101 \n\
        \t     a1 driftline::source::decode::decode_json\n\
        \t     a2 driftline::serve::worker::Worker::process\n\
        \t     a3 driftline::serve::poll_loop\n\
        \n\
        scoring 101 \n\
        \t     b0 malloc\n\
        \t     b1 driftline::sink::Sink::send (inlined)\n\
        \t     b2 driftline::serve::worker::Worker::process\n\
        \n\
        scoring 101 \n\
        \t     c1 driftline::serve::worker::Worker::process\n\
        \n\
        rdk:broker1 102 \n\
        \t     d1 rd_kafka_transport_poll\n\
        \n\
        producer polling 103 \n\
        \t     e1 <driftline::sink::SinkContext as a;b>::delivery\n";

    #[test]
    fn samples_go_to_their_thread_and_innermost_stage() {
        let samples = parse_perf_script(SCRIPT);
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[4].thread, "producer polling");
        assert_eq!(samples[1].frames[1], "driftline::sink::Sink::send");
        let s = summarize(&samples);
        assert_eq!(s.by_thread["scoring"], 3);
        assert_eq!(s.by_thread["rdk:broker1"], 1);
        assert_eq!(s.by_stage["decode (JSON, Arrow)"], 1);
        assert_eq!(s.by_stage["produce (librdkafka send, headers)"], 1);
        assert_eq!(s.by_stage["batch bookkeeping (copy, offsets, metrics)"], 1);
        assert_eq!(s.by_stage.values().sum::<usize>(), 3);
        // Root first; a `;` inside a symbol cannot split a frame.
        assert_eq!(
            s.folded["scoring;driftline::serve::poll_loop;driftline::serve::worker::Worker::process;driftline::source::decode::decode_json"],
            1
        );
        assert!(s
            .folded
            .contains_key("producer polling;<driftline::sink::SinkContext as a:b>::delivery"));
    }

    #[test]
    fn markdown_gives_cores_and_per_event_cost() {
        let s = summarize(&parse_perf_script(SCRIPT));
        // 5 samples at 1 Hz over 1 s = 5 cores; at 1,000,000 events/s that
        // is 5 µs per event, 3 of them on the scoring thread.
        let md = markdown(&s, 1.0, 1.0, Some(1_000_000.0));
        assert!(md.contains("5.00 cores in all"), "{md}");
        assert!(md.contains("| scoring | 60.0 % | 3.00 | 3.00 |"), "{md}");
        assert!(
            md.contains("| decode (JSON, Arrow) | 33.3 % | 1.00 |"),
            "{md}"
        );
        assert_eq!(folded(&s).lines().count(), 5);
    }
}

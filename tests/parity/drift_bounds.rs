//! Time-based drift windows no longer keep every score (issue 15, point 3):
//! scores are kept only for the sequential detector, within
//! `drift.max_window_bytes` per sub-window (sketches included), thinned
//! evenly past it, and the thinning is counted.

use driftline::drift::monitor::{DriftConfig, Window};
use driftline::drift::synthetic::{draw, encode, Shift, Simulation};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::atomic::Ordering::Relaxed;

/// Feeds `n` events into a one-second time window, lets it run out and
/// returns it closed, with the scores fed in order, the plan's score cap
/// and the scores thinned.
fn closed_window(config: &str, n: usize) -> (Window, Vec<f32>, usize, u64) {
    let config: DriftConfig = toml::from_str(config).expect("a [drift] section");
    let mut sim = Simulation::new(config, 3).expect("the toy monitor");
    let mut rng = StdRng::seed_from_u64(4);
    let mut scores = Vec::with_capacity(n);
    for i in 0..n {
        let e = draw(&mut rng, Shift::None);
        let (row, missing) = encode(&e);
        sim.recorder.observe(&row, &missing, e.score, i as i64, "");
        scores.push(e.score);
    }
    // Waiting for the window's wall-clock length, not asserting on time.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sim.recorder.tick();
    let window = sim.rx.try_recv().expect("the time window closed");
    assert_eq!(window.count, n as u64);
    let stats = sim.recorder.stats();
    assert!(
        stats.queued_bytes.load(Relaxed) >= window.bytes(),
        "the closed window is counted until the evaluator takes it"
    );
    let thinned = stats.thinned.load(Relaxed);
    (window, scores, sim.recorder.plan().score_cap(), thinned)
}

#[test]
fn without_the_sequential_detector_no_score_is_kept() {
    let (window, _, _, thinned) = closed_window(
        "window = \"time\"\nwindow_duration = \"1s\"\nsub_windows = 1\n",
        200_000,
    );
    assert_eq!(window.scores.len(), 0);
    assert_eq!(thinned, 0);
}

#[test]
fn the_sequential_detector_gets_an_evenly_thinned_sample_past_the_cap() {
    let n = 100_000;
    let max_bytes = 96 * 1024;
    let (window, scores, cap, thinned) = closed_window(
        &format!(
            "window = \"time\"\nwindow_duration = \"1s\"\nsub_windows = 1\n\
             sequential = true\nmax_window_bytes = {max_bytes}\n"
        ),
        n,
    );
    assert!(window.bytes() <= max_bytes, "{} bytes", window.bytes());
    assert!((1000..max_bytes / 4).contains(&cap), "score cap {cap}");
    // The smallest power-of-two stride that fits the cap: 128 here.
    let stride = (0..)
        .map(|k| 1usize << k)
        .find(|s| n.div_ceil(*s) <= cap)
        .unwrap_or(1);
    let expected: Vec<f32> = scores.iter().copied().step_by(stride).collect();
    assert!(expected.len() <= cap && expected.len() * 2 > cap);
    assert_eq!(window.scores, expected);
    assert!(thinned > 0, "dropped scores are counted");

    // Under the cap every score is kept, in order.
    let (window, scores, _, thinned) = closed_window(
        "window = \"time\"\nwindow_duration = \"1s\"\nsub_windows = 1\nsequential = true\n",
        5000,
    );
    assert_eq!(window.scores, scores);
    assert_eq!(thinned, 0);
}

/// A seasonal column's window keeps at most one season of event-time
/// slices (25 hour slices of a day), however far apart and out of order
/// the events' times are, and the window stays within the plan's bound.
#[test]
fn season_slices_stay_within_one_season_whatever_the_event_times() {
    use driftline::drift::monitor::{Plan, Recorder, RecorderStats};
    use driftline::drift::synthetic::{profile, watched};
    use rand::Rng;
    use std::sync::Arc;

    let mut reference = profile(1, 50_000).expect("the toy profile");
    reference.columns[0].season = Some("24h".into());
    let config: DriftConfig =
        toml::from_str("window_events = 100000\nsub_windows = 1\n").expect("a [drift] section");
    let plan = Arc::new(
        Plan::new(
            &watched(),
            reference,
            std::path::Path::new("toy/reference.json"),
            config,
        )
        .expect("the toy plan"),
    );
    let (mut recorder, rx) = Recorder::new(plan.clone(), Arc::new(RecorderStats::default()));
    let mut rng = StdRng::seed_from_u64(9);
    let day = 86_400_000i64;
    for _ in 0..100_000 {
        let e = draw(&mut rng, Shift::None);
        let (row, missing) = encode(&e);
        // Thirty days of event time, in no order.
        let ts = rng.random_range(0..30 * day);
        recorder.observe(&row, &missing, e.score, ts, "");
    }
    let window = rx.try_recv().expect("the count window closed");
    let slices = &window.seasons[0];
    assert!((20..=25).contains(&slices.len()), "{} slices", slices.len());
    let newest = slices.last().map(|s| s.bucket_ms).unwrap_or(0);
    assert!(slices.iter().all(|s| s.bucket_ms >= newest - day));
    assert!(slices.windows(2).all(|p| p[0].bucket_ms < p[1].bucket_ms));
    assert!(
        window.bytes() <= plan.window_bytes_bound(),
        "{} bytes, bound {}",
        window.bytes(),
        plan.window_bytes_bound()
    );
}

/// The entity counter's bytes stay under its bound with many more
/// entities than it keeps exactly, merged or updating.
#[test]
fn the_entity_counter_is_bounded() {
    use driftline::drift::distinct::{EntityCounter, BYTES_BOUND};
    let mut a = EntityCounter::new();
    let mut b = EntityCounter::new();
    for i in 0..200_000 {
        a.update(&format!("card-{i}"));
        b.update(&format!("card-{}", i * 3));
    }
    assert!(a.bytes() <= BYTES_BOUND, "{} > {BYTES_BOUND}", a.bytes());
    a.merge(&b).expect("same seed");
    a.update("one more");
    assert!(a.bytes() <= BYTES_BOUND, "{} > {BYTES_BOUND}", a.bytes());
    assert!(a.bytes() > 4096 * 16, "it counts the entries it keeps");
}

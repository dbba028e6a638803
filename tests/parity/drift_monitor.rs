//! The drift monitor without Kafka: recorder → windows → evaluator, on a
//! small model (a number, a one-hot categorical, a boolean) with a reference
//! profile built from the same generator.
//!
//! - stationary streams raise no alert; a mean shift, a variance change, a
//!   category surge and a missing-value surge each raise one episode on
//!   the right (kind, feature), with the right statistic bad, which
//!   resolves once after the shift ends (one firing and one resolved
//!   message per episode, every statistic in each);
//! - hysteresis: `fire_after` bad evaluations fire once, `resolve_after`
//!   good ones resolve once, one retrain request per firing episode;
//! - two instances' windows merged give the statistics of one instance that
//!   saw every event (exact for counts, within the stated bound for KS and
//!   Wasserstein); windows survive serialisation.

use driftline::drift::monitor::{
    AlertKind, AlertState, DriftConfig, DriftStatus, Output, Window, WindowKind,
};
use driftline::drift::synthetic::{draw, encode, Shift, Simulation};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn config() -> DriftConfig {
    DriftConfig {
        window: WindowKind::Count,
        window_events: 5000,
        sub_windows: 5,
        min_samples: 1000,
        ..DriftConfig::default()
    }
}

fn harness(config: DriftConfig, seed: u64) -> Simulation {
    Simulation::new(config, seed).expect("the toy monitor")
}

fn alerts(h: &Simulation) -> Vec<(AlertKind, String, AlertState)> {
    h.outputs()
        .iter()
        .filter_map(|o| match o {
            Output::Alert(a) => Some((a.kind, a.feature.clone(), a.state)),
            Output::Retrain(_) => None,
        })
        .collect()
}

#[test]
fn a_stationary_stream_raises_no_alert() {
    let mut h = harness(config(), 2);
    h.feed(100_000, Shift::None);
    assert_eq!(alerts(&h), vec![], "no alert on 100k stationary events");
    let status = h.status.read().clone();
    assert_eq!(
        status.evaluations, 96,
        "one evaluation per 1000-event sub-window once the 5 of a window are in"
    );
    let amount = &status.columns[0];
    assert!(amount
        .statistics
        .iter()
        .any(|j| j.statistic == "psi" && j.value < 0.01));
}

fn fired(h: &Simulation, kind: AlertKind, feature: &str) -> bool {
    alerts(h)
        .iter()
        .any(|(k, f, st)| *k == kind && f == feature && *st == AlertState::Firing)
}

/// Whether `statistic` of `feature` is bad at the latest evaluation.
fn bad_now(h: &Simulation, feature: &str, statistic: &str) -> bool {
    let status = h.status.read();
    status
        .columns
        .iter()
        .chain(status.score.as_ref())
        .filter(|c| c.name == feature)
        .flat_map(|c| &c.statistics)
        .any(|j| j.statistic == statistic && j.bad)
}

#[test]
fn each_kind_of_shift_fires_on_its_feature_and_statistic_then_resolves() {
    let cases = [
        (Shift::Mean(0.5), AlertKind::DataDrift, "amount", "ks"),
        (Shift::Scale(1.6), AlertKind::DataDrift, "amount", "ks"),
        (
            Shift::Surge(0.10),
            AlertKind::DataDrift,
            "channel",
            "chi_square",
        ),
        (
            Shift::Missing(0.3),
            AlertKind::MissingValues,
            "amount",
            "missing_rate",
        ),
        (Shift::Mean(2.0), AlertKind::DataDrift, "amount", "anderson"),
        (Shift::Mean(1.0), AlertKind::PredictionDrift, "score", "ks"),
    ];
    for (i, (shift, kind, feature, statistic)) in cases.into_iter().enumerate() {
        let mut h = harness(config(), 10 + i as u64);
        h.feed(10_000, Shift::None);
        assert_eq!(alerts(&h), vec![], "{shift:?}: nothing before the shift");
        h.feed(10_000, shift);
        assert!(
            fired(&h, kind, feature) && bad_now(&h, feature, statistic),
            "{shift:?}: expected {kind:?} {feature} with {statistic} bad, got {:?}",
            alerts(&h)
        );
        h.feed(20_000, Shift::None);
        let alerts = alerts(&h);
        for (k, f, _) in alerts.iter().filter(|a| a.2 == AlertState::Firing) {
            let states: Vec<AlertState> = alerts
                .iter()
                .filter(|a| (&a.0, &a.1) == (k, f))
                .map(|a| a.2)
                .collect();
            assert_eq!(
                states,
                [AlertState::Firing, AlertState::Resolved],
                "{shift:?}: {k:?} {f}: one firing and one resolved message: {alerts:?}"
            );
        }
        // Every message carries the statistics of its feature, the lead
        // one among them.
        for o in h.outputs() {
            if let Output::Alert(a) = o {
                assert!(
                    a.statistics.iter().any(|j| j.statistic == a.statistic)
                        && a.statistics.len()
                            >= 2 - usize::from(a.kind == AlertKind::MissingValues),
                    "{a:?}"
                );
            }
        }
        if kind == AlertKind::DataDrift && feature == "channel" {
            assert!(
                !alerts.iter().any(|a| a.1 == "amount"),
                "a channel surge does not fire on amount: {alerts:?}"
            );
        }
    }
}

#[test]
fn hysteresis_fires_and_resolves_once_and_requests_retraining_once() {
    let config = DriftConfig {
        sub_windows: 1,
        window_events: 2000,
        fire_after: 2,
        resolve_after: 3,
        retrain_after: 4,
        ..config()
    };
    let mut h = harness(config, 3);
    h.feed(2000, Shift::Mean(3.0));
    assert_eq!(alerts(&h), vec![], "one bad window is not enough");
    h.feed(2000, Shift::Mean(3.0));
    let firing: Vec<_> = alerts(&h);
    assert!(
        fired(&h, AlertKind::DataDrift, "amount") && bad_now(&h, "amount", "mean"),
        "{firing:?}"
    );
    // Stays firing: no repeated messages, one retrain request at 4 windows.
    h.feed(2000 * 6, Shift::Mean(3.0));
    assert_eq!(alerts(&h), firing, "no repeats while firing");
    let retrains = |h: &Simulation| {
        h.outputs()
            .iter()
            .filter_map(|o| match o {
                Output::Retrain(r) => Some(r.clone()),
                Output::Alert(_) => None,
            })
            .collect::<Vec<_>>()
    };
    let r = retrains(&h);
    assert_eq!(r.len(), 1, "one retrain request per episode");
    assert_eq!(r[0].reference, "toy/7@test");
    assert!(r[0]
        .alerts
        .iter()
        .any(|a| a.feature == "amount"
            && a.statistics.iter().any(|j| j.statistic == "mean" && j.bad)));
    // Two good windows do not resolve, the third does.
    h.feed(2000 * 2, Shift::None);
    assert_eq!(alerts(&h), firing);
    h.feed(2000, Shift::None);
    let after = alerts(&h);
    assert_eq!(
        after.len(),
        firing.len() * 2,
        "each alert resolved once: {after:?}"
    );
    // The resolved message repeats the firing message's id.
    let outputs = h.outputs();
    let ids: Vec<(&str, AlertState)> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Alert(a) if a.feature == "amount" && a.kind == AlertKind::DataDrift => {
                Some((a.alert_id.as_str(), a.state))
            }
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0].0, ids[1].0);
}

#[test]
fn windows_of_two_instances_merge_into_the_view_of_one() {
    let sized = |events| DriftConfig {
        sub_windows: 1,
        window_events: events,
        ..config()
    };
    let mut one = harness(sized(4000), 4);
    let mut a = harness(sized(2000), 5);
    let mut b = harness(sized(2000), 6);
    let mut rng = StdRng::seed_from_u64(99);
    for i in 0..4000 {
        let e = draw(
            &mut rng,
            if i % 2 == 0 {
                Shift::Mean(0.3)
            } else {
                Shift::Missing(0.1)
            },
        );
        let (row, missing) = encode(&e);
        one.recorder.observe(&row, &missing, e.score, i, "");
        let half = if i % 2 == 0 { &mut a } else { &mut b };
        half.recorder.observe(&row, &missing, e.score, i, "");
    }
    let take = |h: &Simulation| h.rx.try_recv().expect("a closed window");
    let (whole, wa, wb) = (take(&one), take(&a), take(&b));
    // Windows travel between instances serialised.
    let wire = |w: &Window| -> Window {
        serde_json::from_slice(&serde_json::to_vec(w).expect("serialise")).expect("deserialise")
    };
    let mut merged = wire(&wa);
    merged.merge(&wire(&wb)).expect("same reference");
    assert_eq!(merged.count, whole.count);
    assert_eq!(merged.first_ts_ms, Some(0));
    assert_eq!(merged.last_ts_ms, Some(3999));
    one.evaluator.push(whole);
    let single = one.status.read().clone();
    let mut c = harness(sized(4000), 7);
    c.evaluator.push(merged);
    let combined = c.status.read().clone();
    let columns = |s: &DriftStatus| {
        let mut v = s.columns.clone();
        v.extend(s.score.clone());
        v
    };
    for (x, y) in columns(&single).iter().zip(columns(&combined).iter()) {
        assert_eq!((x.count, x.missing), (y.count, y.missing), "{}", x.name);
        assert_eq!(x.statistics.len(), y.statistics.len(), "{}", x.name);
        for (p, q) in x.statistics.iter().zip(&y.statistics) {
            assert_eq!(p.statistic, q.statistic);
            match p.bound {
                // Quantile-sketch statistics: both within their bounds of
                // the exact value, so within the sum of both of each other.
                Some(bound) if p.statistic == "ks" || p.statistic == "wasserstein" => {
                    let allowed = bound + q.bound.unwrap_or(0.0);
                    assert!(
                        (p.value - q.value).abs() <= allowed,
                        "{} {}: {} vs {} (allowed {allowed})",
                        x.name,
                        p.statistic,
                        p.value,
                        q.value
                    );
                }
                // Moment tests are exact up to the order of the sums
                // (float noise); count statistics are exact.
                _ if ["mean", "variance", "scale"].contains(&p.statistic) => {
                    assert!(
                        (p.value - q.value).abs() <= 1e-9 * p.value.abs().max(1.0),
                        "{} {}: {} vs {}",
                        x.name,
                        p.statistic,
                        p.value,
                        q.value
                    );
                }
                _ => assert_eq!(p.value, q.value, "{} {}", x.name, p.statistic),
            }
        }
    }
    assert_eq!(
        single.columns[0].statistics.len(),
        10,
        "amount: psi, js, wasserstein, ks, anderson, mean, scale, variance, cusum, missing_rate"
    );
}

#[test]
fn time_windows_close_on_the_clock_even_when_the_stream_is_quiet() {
    let config = DriftConfig {
        window: WindowKind::Time,
        window_duration: "300ms".into(),
        sub_windows: 1,
        ..config()
    };
    let mut h = harness(config, 8);
    h.feed(3000, Shift::None);
    h.tick();
    assert_eq!(h.status.read().evaluations, 0, "the window is still open");
    std::thread::sleep(std::time::Duration::from_millis(350));
    h.tick();
    let status = h.status.read().clone();
    assert_eq!(status.evaluations, 1);
    assert_eq!(status.window.map(|w| w.count), Some(3000));
    // Nothing arrives: the next window closes empty and is not judged.
    std::thread::sleep(std::time::Duration::from_millis(350));
    h.tick();
    assert_eq!(
        h.status.read().evaluations,
        1,
        "an empty window is below min_samples"
    );
    assert_eq!(alerts(&h), vec![]);
}

#[test]
fn performance_below_its_threshold_fires_a_performance_alert_per_version() {
    use driftline::drift::monitor::PerformanceReading;
    let auc = std::sync::Arc::new(std::sync::Mutex::new(0.9));
    let source = auc.clone();
    let mut h = harness(config(), 9).with_performance(Box::new(move || {
        let value = *source.lock().expect("auc");
        vec![PerformanceReading {
            model_version: "7".into(),
            labels: 5000,
            metrics: vec![
                ("auc", value, Some(0.7), true),
                ("logloss", 0.3, None, false),
            ],
            judged: true,
        }]
    }));
    h.feed(10_000, Shift::None);
    assert_eq!(alerts(&h), vec![]);
    *auc.lock().expect("auc") = 0.62;
    h.feed(1000, Shift::None);
    let fired = h.outputs();
    let perf: Vec<_> = fired
        .iter()
        .filter_map(|o| match o {
            Output::Alert(a) if a.kind == AlertKind::Performance => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(perf.len(), 1, "{fired:?}");
    assert_eq!(perf[0].statistic, "auc");
    assert_eq!(perf[0].model_version, "7");
    assert_eq!((perf[0].value, perf[0].threshold), (0.62, 0.7));
    let status = h.status.read().clone();
    assert_eq!(status.performance.len(), 1);
    *auc.lock().expect("auc") = 0.91;
    h.feed(5000, Shift::None);
    assert!(
        alerts(&h).contains(&(
            AlertKind::Performance,
            "model_version=7".into(),
            AlertState::Resolved
        )),
        "{:?}",
        alerts(&h)
    );
}

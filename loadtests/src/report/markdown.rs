//! `report.md`: the report as tables, every number also in `report.json`;
//! "-" where a value is missing.

use std::fmt::Write as _;

use super::model::*;

/// An integer with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(r: Option<f64>) -> String {
    r.filter(|r| r.is_finite() && *r >= 0.0)
        .map_or("-".into(), |r| thousands(r.round() as u64))
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) if v < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

fn signed_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:+.2} ms"))
}

fn times(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}×"))
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or("-".into(), f)
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured (or the bounds cannot tell)",
    }
}

pub(super) fn bounded_ratio(r: Option<f64>, bound: Option<Bound>) -> String {
    opt(r, |r| {
        format!("{}{r:.2}", bound.unwrap_or(Bound::Exact).prefix())
    })
}

/// `report.md`.
pub fn markdown(report: &Report, command: &str) -> String {
    let mut o = String::new();
    let g = &report.goals;
    let _ = writeln!(o, "# driftline load test\n");
    let _ = writeln!(
        o,
        "Run {} → {} on {} cores ({}, {:.0} GB); broker: {}. Command: `{command}`.\n",
        report.started_utc,
        report.finished_utc,
        report.machine.cores,
        report.machine.cpu,
        report.machine.memory_gb,
        report.broker
    );
    let _ = writeln!(
        o,
        "Every latency is end to end: from the time the generator was *scheduled* to send the event to the time its output was read back from the broker (open loop; see loadtests/README.md). Both systems ran one after the other on the same broker, machine and settings.\n"
    );
    let _ = writeln!(o, "| goal | measured | target | |\n|---|---:|---:|---|");
    let _ = writeln!(
        o,
        "| saturation throughput, driftline / pass-through | {} | ≥ {SATURATION_GOAL} | {} |",
        bounded_ratio(g.saturation_ratio, g.saturation_ratio_is),
        met(g.saturation_met)
    );
    let _ = writeln!(
        o,
        "| p99 at steady-half, driftline − pass-through | {} | ≤ {P99_DELTA_GOAL_MS} ms | {} |\n",
        signed_ms(g.steady_half_p99_delta_ms),
        met(g.steady_half_met)
    );
    for s in &report.scenarios {
        scenario_markdown(&mut o, s);
    }
    o
}

fn scenario_markdown(o: &mut String, s: &ScenarioResult) {
    let (p, d, c) = (&s.passthrough, &s.driftline, &s.comparison);
    let _ = writeln!(o, "## {}\n", s.name);
    if !s.description.is_empty() {
        let _ = writeln!(o, "{}\n", s.description.trim());
    }
    let _ = writeln!(
        o,
        "Mode {}, {} partitions, {} cards; rate: {:.0}/s ({}).\n",
        s.mode,
        s.partitions,
        thousands(s.cards as u64),
        s.rate,
        s.rate_source
    );
    let _ = writeln!(
        o,
        "| | pass-through | driftline | driftline vs pass-through |\n|---|---:|---:|---:|"
    );
    let mut row = |name: &str, a: String, b: String, cmp: String| {
        let _ = writeln!(o, "| {name} | {a} | {b} | {cmp} |");
    };
    if let (Some(ps), Some(ds)) = (&p.saturation, &d.saturation) {
        let sat = |r: &SaturationResult| {
            let v = rate(r.throughput);
            match r.limit {
                Limit::System => v,
                Limit::Input => format!("≥ {v} (input side limit)"),
                Limit::NotReached => format!("≥ {v} (not reached)"),
            }
        };
        row(
            "saturation throughput (events/s)",
            sat(ps),
            sat(ds),
            format!(
                "**{}** (goal ≥ {SATURATION_GOAL})",
                bounded_ratio(c.saturation_ratio, c.saturation_ratio_is)
            ),
        );
    }
    row(
        "target rate (events/s)",
        rate(Some(p.rate_target)),
        rate(Some(d.rate_target)),
        String::new(),
    );
    row(
        "rate in (events/s)",
        rate(p.rate_in),
        rate(d.rate_in),
        String::new(),
    );
    row(
        "rate out (events/s)",
        rate(p.rate_out),
        rate(d.rate_out),
        times(c.rate_out_ratio),
    );
    let l = |r: &SystemResult, f: fn(&Percentiles) -> f64| ms(r.latency.as_ref().map(f));
    row(
        "latency p50 (ms)",
        l(p, |x| x.p50_ms),
        l(d, |x| x.p50_ms),
        String::new(),
    );
    row(
        "latency p90 (ms)",
        l(p, |x| x.p90_ms),
        l(d, |x| x.p90_ms),
        String::new(),
    );
    row(
        "latency p99 (ms)",
        l(p, |x| x.p99_ms),
        l(d, |x| x.p99_ms),
        format!("{} ({})", signed_ms(c.p99_delta_ms), times(c.p99_ratio)),
    );
    row(
        "latency p99.9 (ms)",
        l(p, |x| x.p999_ms),
        l(d, |x| x.p999_ms),
        String::new(),
    );
    row(
        "latency max (ms)",
        l(p, |x| x.max_ms),
        l(d, |x| x.max_ms),
        String::new(),
    );
    row(
        "events timed",
        opt(p.latency.as_ref(), |x| thousands(x.count)),
        opt(d.latency.as_ref(), |x| thousands(x.count)),
        String::new(),
    );
    let n = |v: u64| thousands(v);
    row("events sent", n(p.sent), n(d.sent), String::new());
    row("lost", n(p.lost), n(d.lost), String::new());
    row(
        "duplicates",
        n(p.duplicates),
        n(d.duplicates),
        String::new(),
    );
    row("DLQ", n(p.dlq), n(d.dlq), String::new());
    if p.produce_failed + d.produce_failed > 0 {
        row(
            "refused by the broker on the way in",
            n(p.produce_failed),
            n(d.produce_failed),
            String::new(),
        );
    }
    row(
        "lag when sending stopped",
        n(p.lag_at_end),
        n(d.lag_at_end),
        String::new(),
    );
    if let (Some(pb), Some(db)) = (&p.burst, &d.burst) {
        let rec = |b: &BurstResult| {
            opt(b.recovery_s, |s| format!("{s:.1}")).replace('-', "not recovered")
        };
        row(
            "recovery after the burst (s)",
            rec(pb),
            rec(db),
            format!(
                "lag ≤ {} / {} events",
                thousands(pb.recovery_threshold),
                thousands(db.recovery_threshold)
            ),
        );
        row("peak lag", n(pb.peak_lag), n(db.peak_lag), String::new());
        let p99 = |x: &Option<Percentiles>| ms(x.as_ref().map(|x| x.p99_ms));
        row(
            "p99 of events sent during the burst (ms)",
            p99(&pb.burst),
            p99(&db.burst),
            String::new(),
        );
        row(
            "p99 of events sent after the burst (ms)",
            p99(&pb.after),
            p99(&db.after),
            String::new(),
        );
    }
    let pct = |v: Option<f64>| opt(v, |v| format!("{v:.0} %"));
    row(
        "CPU of the system",
        pct(p.cpu_percent),
        pct(d.cpu_percent),
        String::new(),
    );
    row(
        "CPU of the broker",
        pct(p.broker_cpu_percent),
        pct(d.broker_cpu_percent),
        String::new(),
    );
    row(
        "CPU of the load generator and reader",
        pct(p.loadgen_cpu_percent),
        pct(d.loadgen_cpu_percent),
        String::new(),
    );
    row(
        "CPU of other processes (should be ~0)",
        pct(p.other_cpu_percent),
        pct(d.other_cpu_percent),
        String::new(),
    );
    let us = |v: Option<f64>| opt(v, |v| format!("{v:.2}"));
    row(
        "CPU per event out: system (µs)",
        us(p.cpu_us_per_event),
        us(d.cpu_us_per_event),
        opt(c.cpu_per_event_ratio, |r| format!("{r:.2}×")),
    );
    row(
        "CPU per event out: broker / load generator (µs)",
        format!(
            "{} / {}",
            us(p.broker_cpu_us_per_event),
            us(p.loadgen_cpu_us_per_event)
        ),
        format!(
            "{} / {}",
            us(d.broker_cpu_us_per_event),
            us(d.loadgen_cpu_us_per_event)
        ),
        String::new(),
    );
    let mb = |v: Option<f64>| opt(v, |v| format!("{v:.0}"));
    row(
        "RSS, largest sample (MB)",
        mb(p.rss_mb),
        mb(d.rss_mb),
        String::new(),
    );
    row(
        "RSS at the start / end of the measured window (MB)",
        format!("{} / {}", mb(p.rss_start_mb), mb(p.rss_end_mb)),
        format!("{} / {}", mb(d.rss_start_mb), mb(d.rss_end_mb)),
        String::new(),
    );
    row(
        "RSS peak, VmHWM (MB)",
        mb(p.peak_rss_mb),
        mb(d.peak_rss_mb),
        String::new(),
    );
    row(
        "ready after (s)",
        format!("{:.1}", p.ready_s),
        format!("{:.1}", d.ready_s),
        String::new(),
    );
    row(
        "exit after SIGTERM",
        p.exit.clone(),
        d.exit.clone(),
        String::new(),
    );
    let _ = writeln!(o);
    for r in [p, d] {
        if r.threads.is_empty() {
            continue;
        }
        let list: Vec<String> = r
            .threads
            .iter()
            .take(8)
            .map(|t| match t.us_per_event {
                Some(us) => format!("{} {:.0} % ({us:.2} µs/event)", t.name, t.cpu_percent),
                None => format!("{} {:.0} %", t.name, t.cpu_percent),
            })
            .collect();
        let _ = writeln!(
            o,
            "{} threads (100 % = one core): {}.\n",
            r.system,
            list.join(", ")
        );
    }
    for r in [p, d] {
        let Some(sat) = &r.saturation else { continue };
        let _ = writeln!(
            o,
            "{} steps:\n\n| target (events/s) | in | out | lag at end | p99 (ms) | verdict |\n|---:|---:|---:|---:|---:|---|",
            r.system
        );
        for st in &sat.steps {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                rate(Some(st.rate_target)),
                rate(Some(st.rate_in)),
                rate(Some(st.rate_out)),
                thousands(st.lag_end),
                ms(st.p99_ms),
                match &st.behind {
                    None => "kept up".to_string(),
                    Some(b) => format!("behind: {b}"),
                }
            );
        }
        let _ = writeln!(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

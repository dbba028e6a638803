//! The report's files: `report.json`, `report.md`, the `.hgrm` percentile
//! distributions, `latency.svg`, and a run's timeline CSV.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;

use super::markdown::markdown;
use super::model::Report;
use super::svg::{chart_title, svg, Chart};
use crate::measure::Sample;

/// Writes every report file into `out`.
pub fn write_all(
    out: &Path,
    report: &Report,
    command: &str,
    histograms: &[(String, String, Histogram<u64>)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(out.join("report.json"), json + "\n")?;
    std::fs::write(out.join("report.md"), markdown(report, command))?;
    for (scenario, system, h) in histograms {
        std::fs::write(out.join(format!("{scenario}-{system}.hgrm")), hgrm(h))?;
    }
    let charts: Vec<Chart<'_>> = report
        .scenarios
        .iter()
        .map(|s| Chart {
            title: chart_title(s),
            series: histograms
                .iter()
                .filter(|(name, _, _)| *name == s.name)
                .map(|(_, system, h)| {
                    let name = if system == "passthrough" {
                        "pass-through"
                    } else {
                        system.as_str()
                    };
                    (name, h)
                })
                .collect(),
        })
        .collect();
    svg(&out.join("latency.svg"), &charts).context("writing latency.svg")?;
    Ok(())
}

/// HdrHistogram's classic percentile distribution (`outputPercentileDistribution`
/// with 5 ticks per half distance), values in ms for a histogram in µs.
pub fn hgrm(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    o,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(o, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / SCALE };
    let stdev = if h.is_empty() { 0.0 } else { h.stdev() / SCALE };
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    let _ = writeln!(o, "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]");
    let _ = writeln!(
        o,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    o
}

/// A run's samples as CSV, one row per second: counters, lag, latency of
/// what was read in that second, CPU (cumulative seconds) and memory.
pub fn timeline_csv(samples: &[Sample]) -> String {
    let mut o = String::from(
        "t_s,sent,out,lag,p50_ms,p99_ms,max_ms,system_cpu_s,broker_cpu_s,loadgen_cpu_s,machine_busy_s,system_rss_mb\n",
    );
    let f = |v: Option<f64>, d: usize| v.map_or(String::new(), |v| format!("{v:.d$}"));
    for s in samples.iter().filter(|s| s.latency_us.is_some()) {
        let (p50, p99, max) = s.latency_us.unwrap_or_default();
        let _ = writeln!(
            o,
            "{:.1},{},{},{},{:.3},{:.3},{:.3},{},{},{},{},{}",
            s.t,
            s.sent,
            s.done,
            s.lag(),
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            max as f64 / 1000.0,
            f(s.system_cpu_s, 2),
            f(s.broker_cpu_s, 2),
            f(s.loadgen_cpu_s, 2),
            f(s.machine_busy_s, 2),
            f(s.system_rss_kb.map(|kb| kb as f64 / 1024.0), 1),
        );
    }
    o
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_600_000), "2026-11-25T09:46:40Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn hgrm_has_the_classic_layout() {
        let mut h = crate::measure::new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let text = hgrm(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].trim_start().starts_with("Value"));
        assert!(lines[1].is_empty());
        // Rows: value (ms), percentile, cumulative count, 1/(1-p).
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "0.001");
        let last_row = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        let last: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!(last.len(), 3, "{last_row}");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        let counts: Vec<u64> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        // 10,000 µs sits in a bucket whose highest equivalent value is 10,007.
        assert!(text.contains("#[Max     =       10.007, Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048"));
    }
}

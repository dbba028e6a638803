//! `latency.svg`: latency by percentile on a "nines" axis, both systems on
//! one chart per scenario.

use std::path::Path;

use hdrhistogram::Histogram;

use super::markdown::bounded_ratio;
use super::model::{ScenarioResult, P99_DELTA_GOAL_MS, SATURATION_GOAL};

/// Label of a position on the "nines" axis: 0 → 0%, 1 → 90%, 2 → 99%, 3 → 99.9%.
pub fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as i64 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

/// Points (nines, ms) of a latency-by-percentile curve.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return vec![];
    }
    // Beyond log10(count) nines the curve is the max: stop there.
    let max_x = (h.len() as f64).log10().clamp(1.0, 6.0);
    let steps = (max_x * 50.0).ceil() as usize;
    let mut points: Vec<(f64, f64)> = (0..=steps)
        .map(|i| {
            let x = max_x * i as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q).max(1) as f64 / 1000.0)
        })
        .collect();
    points.push((max_x, h.max().max(1) as f64 / 1000.0));
    points
}

/// Tick values for a log axis from `lo` to `hi`: 1, 1.5, 2, 3, 5, 7 per
/// decade, thinned to at most about a dozen.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return vec![];
    }
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 1.5, 2.0, 3.0, 5.0, 7.0] {
            let t = decade * m;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    let keep = ticks.len().div_ceil(12).max(1);
    ticks.into_iter().step_by(keep).collect()
}

/// One chart of `latency.svg`.
pub struct Chart<'a> {
    pub title: String,
    pub series: Vec<(&'a str, &'a Histogram<u64>)>,
}

/// The title of a scenario's chart, with its ratios.
pub fn chart_title(s: &ScenarioResult) -> String {
    let c = &s.comparison;
    let mut parts = vec![];
    if c.saturation_ratio.is_some() {
        parts.push(format!(
            "throughput driftline/pass-through {} (goal ≥ {SATURATION_GOAL})",
            bounded_ratio(c.saturation_ratio, c.saturation_ratio_is)
        ));
    }
    if let Some(d) = c.p99_delta_ms {
        let goal = if s.name == "steady-half" {
            format!(" (goal ≤ {P99_DELTA_GOAL_MS} ms)")
        } else {
            String::new()
        };
        parts.push(format!("p99 Δ {d:+.2} ms{goal}"));
    }
    if let Some(r) = c.rate_out_ratio {
        parts.push(format!("out rate {r:.2}×"));
    }
    format!("{}: {}", s.name, parts.join(", "))
}

/// Writes `latency.svg`: one chart per scenario, stacked.
pub fn svg(path: &Path, charts: &[Chart<'_>]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    const COLORS: [RGBColor; 4] = [
        RGBColor(120, 120, 120),
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    let n = charts.len().max(1) as u32;
    let root = SVGBackend::new(path, (960, 420 * n)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        for (area, chart) in root.split_evenly((n as usize, 1)).iter().zip(charts) {
            let curves: Vec<(&str, Vec<(f64, f64)>)> = chart
                .series
                .iter()
                .map(|(name, h)| (*name, percentile_curve(h)))
                .collect();
            let all = curves.iter().flat_map(|(_, c)| c.iter());
            let max_x = all.clone().map(|p| p.0).fold(2.0, f64::max).ceil();
            let lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = all.map(|p| p.1).fold(0.0, f64::max);
            let (lo, hi) = if lo.is_finite() && hi > 0.0 {
                (lo * 0.8, hi * 1.25)
            } else {
                (0.1, 10.0)
            };
            let mut c = ChartBuilder::on(area)
                .caption(&chart.title, ("sans-serif", 17))
                .margin(14)
                .margin_right(40)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(
                    0f64..max_x,
                    (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
                )?;
            c.configure_mesh()
                .x_desc("percentile")
                .y_desc("latency, scheduled send → output read (ms)")
                .x_labels(max_x as usize + 1)
                .x_label_formatter(&|x| nines_label(*x))
                .y_label_formatter(&|y| {
                    if *y >= 10.0 {
                        format!("{y:.0}")
                    } else {
                        format!("{y:.2}")
                    }
                })
                .draw()?;
            for (i, (name, curve)) in curves.into_iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                c.draw_series(LineSeries::new(curve, color.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_labels() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
    }

    #[test]
    fn log_ticks_cover_the_range() {
        assert_eq!(log_ticks(30.0, 140.0), vec![30.0, 50.0, 70.0, 100.0]);
        let wide = log_ticks(0.5, 20_000.0);
        assert!(wide.len() <= 12 && wide.len() >= 5, "{wide:?}");
        assert!(wide.iter().all(|t| (0.5..=20_000.0).contains(t)));
        assert!(log_ticks(0.0, 1.0).is_empty());
        assert!(log_ticks(5.0, 5.0).is_empty());
    }

    #[test]
    fn curve_spans_the_nines_the_data_supports() {
        let mut h = crate::measure::new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let c = percentile_curve(&h);
        assert_eq!(c.first().map(|p| p.0), Some(0.0));
        assert!((c.last().unwrap().0 - 3.0).abs() < 1e-9);
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(percentile_curve(&crate::measure::new_histogram()).is_empty());
    }
}

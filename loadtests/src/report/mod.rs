//! Results, ratios and the report files.
//!
//! One run of one system becomes a [`SystemResult`] ([`summarize`]); a
//! scenario pairs the pass-through's and driftline's results with their
//! [`Comparison`]; the whole command writes `report.json` (every number),
//! `report.md` (tables), `<scenario>-<system>.hgrm` (percentile
//! distributions in HdrHistogram's classic text format, values in
//! milliseconds) and `latency.svg` (latency by percentile, both systems on
//! one chart per scenario).
//!
//! Guarantees: a ratio or difference is `None` (shown as "-") when an
//! operand is missing or zero, never a division by zero or a NaN in the
//! files; every number in `report.md` is also in `report.json`.
//!
//! One job per file: `model.rs` (the result model), `summary.rs`
//! (measurements to results, ratios, goals), `markdown.rs` (`report.md`),
//! `svg.rs` (`latency.svg`), `files.rs` (writing them all, `.hgrm`, the
//! timeline CSV).

mod files;
mod markdown;
mod model;
mod summary;
mod svg;

pub use self::files::{hgrm, timeline_csv, utc, write_all};
pub use self::markdown::{markdown, thousands};
pub use self::model::*;
pub use self::summary::{combine_steps, compare, goals, ratio, summarize, thread_shares};
pub use self::svg::{chart_title, log_ticks, nines_label, percentile_curve, svg, Chart};

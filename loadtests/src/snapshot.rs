//! Store snapshots for scenarios with more entities than `data/cards.parquet`.
//!
//! Writes the generator's own cards (the same `(seed, cards)` as the events
//! of the scenario, so every event's card is in the store) as CSV with the
//! columns of `data/cards.csv`: `entity_id`, `updated_at` (epoch ms) and the
//! five store features the fraud models read. The file is rewritten on
//! every run, so it always matches the scenario.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use driftline::demo::generator::FraudGenerator;
use driftline::event::FeatureValue;

/// Store columns, in `data/cards.csv` order.
pub const COLUMNS: [&str; 5] = [
    "account_age_days",
    "credit_limit",
    "avg_amount_90d",
    "chargebacks_1y",
    "card_tier",
];

/// Writes the snapshot of `cards` cards of generator `seed` to `path`;
/// returns the number of rows.
pub fn write_csv(path: &Path, seed: u64, cards: usize, updated_at: i64) -> anyhow::Result<u64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    // The start time only shapes event timestamps, not the cards.
    let generator = FraudGenerator::new(seed, cards, updated_at);
    write!(out, "entity_id,updated_at")?;
    for c in COLUMNS {
        write!(out, ",{c}")?;
    }
    writeln!(out)?;
    let mut rows = 0u64;
    for (entity, features) in generator.cards() {
        write!(out, "{entity},{updated_at}")?;
        for c in COLUMNS {
            match features.get(c) {
                Some(FeatureValue::Number(x)) => write!(out, ",{x}")?,
                Some(FeatureValue::Text(t)) => write!(out, ",{t}")?,
                Some(FeatureValue::Bool(b)) => write!(out, ",{b}")?,
                // An empty cell reads as null: the model's default applies.
                Some(FeatureValue::Null) | None => write!(out, ",")?,
            }
        }
        writeln!(out)?;
        rows += 1;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_generators_cards_with_the_store_columns() {
        let dir = std::env::temp_dir().join(format!("lt-snapshot-{}", std::process::id()));
        let path = dir.join("cards.csv");
        let rows = write_csv(&path, 7, 25, 1_763_792_400_000).unwrap();
        assert_eq!(rows, 25);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "entity_id,updated_at,account_age_days,credit_limit,avg_amount_90d,chargebacks_1y,card_tier"
        );
        assert_eq!(lines.len(), 26);
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(first[0], "card-000001");
        assert_eq!(first[1], "1763792400000");
        assert_eq!(first.len(), 7);
        assert!(first[2..6].iter().all(|v| v.parse::<f64>().is_ok()));
        assert!(["standard", "gold", "platinum"].contains(&first[6]));
    }
}

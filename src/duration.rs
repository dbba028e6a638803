//! Durations as written in configuration and manifests: `500ms`, `30s`,
//! `15m`, `1h`, `7d`.
//!
//! Guarantees: a duration is a positive whole number followed by one unit
//! (`ms`, `s`, `m`, `h`, `d`), surrounding spaces allowed; anything else,
//! including zero and values that overflow `i64` milliseconds, is a
//! [`DurationError`] that quotes the input. Nothing here falls back to a
//! default: callers report the error against their key.

use std::time::Duration;

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason}")]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a duration such as `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"24h"` or
/// `"7d"` into milliseconds.
pub fn parse_ms(s: &str) -> Result<i64, DurationError> {
    let err = |reason| DurationError {
        input: s.to_string(),
        reason,
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(err("expected a number followed by ms, s, m, h or d"));
    }
    let unit_ms: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(err("missing unit (ms, s, m, h or d)")),
        _ => return Err(err("unknown unit (expected ms, s, m, h or d)")),
    };
    let n: i64 = digits.parse().map_err(|_| err("number too large"))?;
    if n == 0 {
        return Err(err("must be positive"));
    }
    n.checked_mul(unit_ms)
        .ok_or_else(|| err("number too large"))
}

/// As [`parse_ms`], as a [`Duration`].
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    // parse_ms only returns positive values, so the cast is exact.
    parse_ms(s).map(|ms| Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("15m"), Ok(900_000));
        assert_eq!(parse_ms("1h"), Ok(H));
        assert_eq!(parse_ms("24h"), Ok(24 * H));
        assert_eq!(parse_ms("7d"), Ok(7 * 24 * H));
        assert_eq!(parse_ms(" 2h "), Ok(2 * H));
        assert_eq!(parse("5ms"), Ok(Duration::from_millis(5)));
        for bad in [
            "",
            "h",
            "0s",
            "10",
            "10x",
            "1.5h",
            "-1h",
            "1 h",
            "99999999999999999999d",
            "9999999999999999d",
        ] {
            let err = parse_ms(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{bad}`")),
                "{bad:?}: {err}"
            );
            assert_eq!(parse(bad), Err(err));
        }
    }
}

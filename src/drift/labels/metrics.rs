//! Rolling performance metrics over a window of labelled predictions,
//! defined to match scikit-learn (see [`WindowMetrics`]).

/// Lowest and highest probability log-loss uses: a confident wrong answer
/// costs `-ln(1e-15) ≈ 34.5`, not infinity. scikit-learn before 1.5 clipped
/// at this value; later versions clip at the machine epsilon of the input
/// type, so the parity fixtures clip before calling it.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// One labelled prediction: the model's probability of the positive class
/// and the ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub label: bool,
}

/// Performance over one window of labelled predictions.
///
/// With `p` the score as `f64` and `y` the label as 0 or 1, over `n` pairs
/// (each value is `None` for an empty window):
///
/// - `accuracy`: the share with `(p >= threshold) == y`
///   (`sklearn.metrics.accuracy_score(y, p >= threshold)`);
/// - `roc_auc`: the Mann-Whitney statistic with tied scores given their
///   average rank, `(R₊ - n₊(n₊+1)/2) / (n₊ n₋)` where `R₊` is the rank sum of
///   the positives (`roc_auc_score(y, p)`); `None` unless both classes occur;
/// - `log_loss`: the mean of `-ln q` if `y = 1` and `-ln(1 - q)` if `y = 0`,
///   `q = clamp(p, 1e-15, 1 - 1e-15)` ([`LOG_LOSS_EPS`]; `log_loss(y, q)`);
/// - `brier`: the mean of `(p - y)²` (`brier_score_loss(y, p)`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowMetrics {
    /// Labelled predictions in the window.
    pub count: usize,
    /// Of those, labelled positive.
    pub positives: usize,
    pub accuracy: Option<f64>,
    pub roc_auc: Option<f64>,
    pub log_loss: Option<f64>,
    pub brier: Option<f64>,
}

/// All metrics of `window` (see [`WindowMetrics`]). Sorts `window` by score:
/// O(n log n) for AUC, the rest one pass.
pub fn window_metrics(window: &mut [Scored], threshold: f64) -> WindowMetrics {
    WindowMetrics {
        count: window.len(),
        positives: window.iter().filter(|s| s.label).count(),
        accuracy: accuracy(window, threshold),
        roc_auc: roc_auc_sorting(window),
        log_loss: log_loss(window),
        brier: brier(window),
    }
}

/// Share of predictions on the right side of `threshold`.
pub fn accuracy(window: &[Scored], threshold: f64) -> Option<f64> {
    mean(window, |s| {
        f64::from(u8::from((f64::from(s.score) >= threshold) == s.label))
    })
}

/// ROC AUC with ties at their average rank; `None` with one class only.
pub fn roc_auc(window: &[Scored]) -> Option<f64> {
    roc_auc_sorting(&mut window.to_vec())
}

fn roc_auc_sorting(window: &mut [Scored]) -> Option<f64> {
    let positives = window.iter().filter(|s| s.label).count();
    let negatives = window.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    window.sort_unstable_by(|a, b| a.score.total_cmp(&b.score));
    // Rank sums are multiples of 1/2 far below 2^53: exact in f64, so the
    // only rounding is the final division.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < window.len() {
        let tied = window[i..]
            .iter()
            .take_while(|s| s.score == window[i].score)
            .count();
        let j = i + tied.max(1);
        let tied_positives = window[i..j].iter().filter(|s| s.label).count();
        // Ranks i+1 ..= j, whose average is (i + 1 + j) / 2.
        rank_sum += tied_positives as f64 * (i + 1 + j) as f64 / 2.0;
        i = j;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean cross-entropy with probabilities clipped to `[1e-15, 1 - 1e-15]`.
pub fn log_loss(window: &[Scored]) -> Option<f64> {
    mean(window, |s| {
        let q = f64::from(s.score).clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        -if s.label { q.ln() } else { (1.0 - q).ln() }
    })
}

/// Mean squared difference between score and label.
pub fn brier(window: &[Scored]) -> Option<f64> {
    mean(window, |s| {
        let d = f64::from(s.score) - f64::from(u8::from(s.label));
        d * d
    })
}

fn mean(window: &[Scored], f: impl Fn(&Scored) -> f64) -> Option<f64> {
    if window.is_empty() {
        return None;
    }
    Some(window.iter().map(f).sum::<f64>() / window.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(score: f32, label: bool) -> Scored {
        Scored { score, label }
    }

    #[test]
    fn metrics_of_a_small_window_by_hand() {
        // Scores 0.1(0) 0.4(0) 0.4(1) 0.8(1): ranks 1, 2.5, 2.5, 4;
        // R+ = 6.5, AUC = (6.5 - 3) / 4 = 0.875.
        let w = [s(0.1, false), s(0.4, false), s(0.4, true), s(0.8, true)];
        let m = window_metrics(&mut w.to_vec(), 0.5);
        assert_eq!((m.count, m.positives), (4, 2));
        assert_eq!(m.roc_auc, Some(0.875));
        assert_eq!(m.accuracy, Some(0.75));
        let p = |x: f32| f64::from(x);
        let ll = -((1.0 - p(0.1)).ln() + (1.0 - p(0.4)).ln() + p(0.4).ln() + p(0.8).ln()) / 4.0;
        assert!((m.log_loss.unwrap() - ll).abs() < 1e-15);
        let br =
            (p(0.1).powi(2) + p(0.4).powi(2) + (p(0.4) - 1.0).powi(2) + (p(0.8) - 1.0).powi(2))
                / 4.0;
        assert!((m.brier.unwrap() - br).abs() < 1e-15);
    }

    #[test]
    fn edge_windows() {
        let empty = window_metrics(&mut [], 0.5);
        assert_eq!(empty, WindowMetrics::default());
        let one_class = [s(0.2, true), s(0.9, true)];
        assert_eq!(roc_auc(&one_class), None);
        assert!(log_loss(&one_class).is_some());
        // All tied: AUC is exactly one half.
        let tied = [s(0.3, true), s(0.3, false), s(0.3, false)];
        assert_eq!(roc_auc(&tied), Some(0.5));
        // Certain and wrong: clipped, finite.
        let wrong = [s(0.0, true), s(1.0, false)];
        let ll = log_loss(&wrong).unwrap();
        // 1 - (1 - 1e-15) is 9.992e-16 in f64, as it is in scikit-learn.
        let want = -(LOG_LOSS_EPS.ln() + (1.0 - (1.0 - LOG_LOSS_EPS)).ln()) / 2.0;
        assert!((ll - want).abs() < 1e-12, "{ll} vs {want}");
        assert!(ll < 35.0);
        assert_eq!(roc_auc(&wrong), Some(0.0));
        assert_eq!(
            accuracy(&[s(0.5, true)], 0.5),
            Some(1.0),
            "at threshold = positive"
        );
    }

    #[test]
    fn auc_equals_pairwise_definition() {
        // AUC = P(score+ > score-) + P(tie)/2 over all pairs.
        let mut rng = 7u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rng >> 33
        };
        let w: Vec<Scored> = (0..300)
            .map(|_| s((next() % 20) as f32 / 20.0, next() % 3 == 0))
            .collect();
        let (pos, neg): (Vec<&Scored>, Vec<&Scored>) = w.iter().partition(|x| x.label);
        let mut wins = 0.0;
        for p in &pos {
            for n in &neg {
                wins += if p.score > n.score {
                    1.0
                } else if p.score == n.score {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let want = wins / (pos.len() * neg.len()) as f64;
        assert!((roc_auc(&w).unwrap() - want).abs() < 1e-12);
    }
}

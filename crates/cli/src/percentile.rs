//! Nearest-rank percentiles: every reported figure is a value that was really observed, which
//! matters with the small sample sizes a demo or a pool peek produces.

use serde::Serialize;

/// The `pct`-th percentile (0 < pct <= 100) of `values` by the nearest-rank method: the value at
/// rank `ceil(pct / 100 * n)` of the sorted values. `None` for an empty sample or a `pct`
/// outside (0, 100].
pub fn nearest_rank(values: &[u64], pct: f64) -> Option<u64> {
    if values.is_empty() || !(pct > 0.0 && pct <= 100.0) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Some(sorted[rank(sorted.len(), pct) - 1])
}

/// 1-based nearest rank of `pct` in a sample of `n` (n >= 1).
fn rank(n: usize, pct: f64) -> usize {
    // pct / 100 * n in integer-friendly form; the tiny epsilon keeps 95% of 20 at rank 19
    // rather than 20 when floating point lands a hair above the integer.
    let exact = pct / 100.0 * n as f64;
    let rank = (exact - 1e-9).ceil() as usize;
    rank.clamp(1, n)
}

/// Minimum, median and maximum of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub min: u64,
    pub p50: u64,
    pub max: u64,
}

impl Spread {
    pub fn of(values: &[u64]) -> Option<Self> {
        Some(Self {
            min: *values.iter().min()?,
            p50: nearest_rank(values, 50.0)?,
            max: *values.iter().max()?,
        })
    }
}

/// The tail figures of a latency sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tail {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
}

impl Tail {
    pub fn of(values: &[u64]) -> Option<Self> {
        Some(Self {
            p50: nearest_rank(values, 50.0)?,
            p95: nearest_rank(values, 95.0)?,
            p99: nearest_rank(values, 99.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_sample_has_no_percentiles() {
        assert_eq!(nearest_rank(&[], 50.0), None);
        assert_eq!(Tail::of(&[]), None);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn percentiles_outside_zero_to_hundred_are_refused() {
        assert_eq!(nearest_rank(&[1, 2, 3], 0.0), None);
        assert_eq!(nearest_rank(&[1, 2, 3], 100.1), None);
        assert_eq!(nearest_rank(&[1, 2, 3], f64::NAN), None);
    }

    #[test]
    fn a_single_value_is_every_percentile() {
        assert_eq!(
            Tail::of(&[42]),
            Some(Tail {
                p50: 42,
                p95: 42,
                p99: 42
            })
        );
    }

    #[test]
    fn nearest_rank_picks_an_observed_value_not_an_interpolation() {
        // Ranks: 50% of 4 is 2 -> 20; never the midpoint 25.
        assert_eq!(nearest_rank(&[40, 10, 30, 20], 50.0), Some(20));
    }

    #[test]
    fn twenty_samples_put_p95_at_rank_nineteen_and_p99_at_the_maximum() {
        let values: Vec<u64> = (1..=20).rev().collect();
        assert_eq!(
            Tail::of(&values),
            Some(Tail {
                p50: 10,
                p95: 19,
                p99: 20
            })
        );
    }

    #[test]
    fn the_hundredth_percentile_is_the_maximum() {
        assert_eq!(nearest_rank(&[3, 9, 1], 100.0), Some(9));
    }

    #[test]
    fn a_tiny_percentile_is_the_minimum() {
        assert_eq!(nearest_rank(&[3, 9, 1], 0.1), Some(1));
    }

    #[test]
    fn spread_reports_min_median_and_max() {
        assert_eq!(Spread::of(&[5, 1, 9, 7, 3]), Some(Spread { min: 1, p50: 5, max: 9 }));
    }
}

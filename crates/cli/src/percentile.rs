//! Summaries of small samples (a demo, a pool peek) by nearest rank
//! ([`warmpool_core::metrics::nearest_rank`]): every reported figure was really observed.

use serde::Serialize;
use warmpool_core::metrics::nearest_rank;

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
    fn spread_reports_min_median_and_max() {
        assert_eq!(Spread::of(&[5, 1, 9, 7, 3]), Some(Spread { min: 1, p50: 5, max: 9 }));
    }
}

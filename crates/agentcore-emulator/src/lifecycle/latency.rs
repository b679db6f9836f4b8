//! How latency is drawn: a lognormal fitted to the two published figures of AgentCore.

use std::time::Duration;

use rand::{Rng, RngExt};

use crate::Error;

/// z-score of the 99th percentile of the standard normal distribution.
const Z_P99: f64 = 2.326;

/// A lognormal latency distribution given by its median and 99th percentile, the two figures
/// published for AgentCore.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyProfile {
    pub median: Duration,
    pub p99: Duration,
}

impl LatencyProfile {
    /// Platform V1's published cold-start figures, a new session's first invocation, for a
    /// small image (V1 starts the container per session, so a large image starts slower).
    pub const COLD_START: Self = Self {
        median: Duration::from_millis(2_900),
        p99: Duration::from_millis(4_900),
    };
    /// Platform V2's snapshot restore: p75 about 2.0 s (published 1.9-2.2 s), with a narrow
    /// tail, and no term for the image's size since the container is not started again.
    pub const COLD_START_V2: Self = Self {
        median: Duration::from_millis(1_800),
        p99: Duration::from_millis(2_800),
    };
    /// Published figures for an invocation on an already-warm session.
    pub const WARM: Self = Self {
        median: Duration::from_millis(200),
        p99: Duration::from_millis(450),
    };

    /// Draws one latency. Box–Muller keeps us off `rand_distr` for a single distribution.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let median = self.median.as_secs_f64();
        if median <= 0.0 {
            return Duration::ZERO;
        }
        let sigma = (self.p99.as_secs_f64() / median).ln().max(0.0) / Z_P99;
        // 1 - [0, 1) is (0, 1]: ln(0) would be -inf.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::try_from_secs_f64(median * (sigma * z).exp()).unwrap_or(Duration::ZERO)
    }

    pub(super) fn validate(&self, field: &'static str) -> Result<(), Error> {
        if self.p99 < self.median {
            return Err(Error::invalid_config(field, "p99 must not be below the median"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn latency_distribution_matches_published_median_and_p99() {
        let mut rng = StdRng::seed_from_u64(7);
        for profile in [
            LatencyProfile::COLD_START,
            LatencyProfile::COLD_START_V2,
            LatencyProfile::WARM,
        ] {
            let mut samples: Vec<f64> = (0..50_000).map(|_| profile.sample(&mut rng).as_secs_f64()).collect();
            samples.sort_by(f64::total_cmp);
            let median = samples[samples.len() / 2];
            let p99 = samples[samples.len() * 99 / 100];
            let want_median = profile.median.as_secs_f64();
            let want_p99 = profile.p99.as_secs_f64();
            assert!(
                (median / want_median - 1.0).abs() < 0.03,
                "median {median} vs {want_median}"
            );
            assert!((p99 / want_p99 - 1.0).abs() < 0.05, "p99 {p99} vs {want_p99}");
        }
    }
}

//! The adaptive target: sized from the claim rate (Little's law on the pool queue) and this
//! environment's warmup time, raised by pre-warm windows.

use super::Schedule;
use crate::metrics::nearest_rank_of_sorted;
use crate::num::ceil_u32;
use crate::ports::PoolDepth;
use std::collections::VecDeque;
use std::time::Duration;

/// Sizing from demand: `rate * p95 warmup * safety + floor`, clamped to `[min, max]`; inside a
/// window of `prewarm`, at least that window's target.
#[derive(Debug, Clone, PartialEq)]
pub struct Adaptive {
    /// How many warmup times' worth of claims the pool holds visibly. With one-for-one refills
    /// the warmups in progress already cover the mean, so 1 leaves room for a rate step
    /// between two rounds and for the refill lag the warmup time leaves out (trigger, pacing);
    /// the simulation benchmark shows the trade-off (README.md, Pool lifecycle).
    pub safety_factor: f64,
    /// Sessions kept whatever the rate, so the first claims after a quiet spell are warm.
    pub floor: u32,
    pub min: u32,
    pub max: u32,
    /// Warmup time assumed until this environment has measured enough of its own.
    pub default_warmup: Duration,
    /// The claim rate assumed when the pool is found empty: the creation budget, the fastest
    /// claims refills can keep up with. An empty pool says demand outran supply, not by how
    /// much; beyond the budget only a pre-warm helps, so sizing for more only adds cost.
    pub empty_pool_rate: f64,
    /// Known bursts: a reactive size cannot absorb a burst above the creation budget, whose
    /// excess has to be warm before it starts (README.md, Pool lifecycle, Pre-warming a known burst).
    pub prewarm: Option<Schedule>,
}

/// What the scheduled run saw of the pool, before touching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    pub depth: PoolDepth,
    /// When the oldest visible message was sent to the queue.
    pub oldest_sent_at_ms: Option<u64>,
    /// This environment's recent p95 warmup latency, if it has enough samples.
    pub warmup_p95: Option<Duration>,
}

/// Below this the oldest message's wait is too short to divide by.
const MIN_WAIT_MS: u64 = 100;

impl Adaptive {
    /// Claims per second, by Little's law on the pool queue; `None` for an empty pool.
    pub fn claim_rate(observation: &Observation, now_ms: u64) -> Option<f64> {
        let depth = observation.depth.total();
        let oldest = observation.oldest_sent_at_ms?;
        if depth == 0 {
            return None;
        }
        let wait_ms = now_ms.saturating_sub(oldest).max(MIN_WAIT_MS);
        Some(depth as f64 * 1_000.0 / wait_ms as f64)
    }

    pub fn target(&self, now_ms: u64, rate: Option<f64>, warmup_p95: Option<Duration>) -> u32 {
        let prewarm = self
            .prewarm
            .as_ref()
            .and_then(|schedule| schedule.window_at(now_ms))
            .map_or(0, |window| window.target);
        let rate = rate.unwrap_or(self.empty_pool_rate);
        let warmup = warmup_p95.unwrap_or(self.default_warmup).as_secs_f64();
        let sized = rate * warmup * self.safety_factor;
        let sized = if sized.is_finite() && sized >= 0.0 {
            ceil_u32(sized)
        } else {
            u32::MAX
        };
        sized.saturating_add(self.floor).clamp(self.min, self.max).max(prewarm)
    }
}

/// The latest warmup latencies of this execution environment, for the adaptive target.
#[derive(Debug, Clone, Default)]
pub struct WarmupTimes {
    /// In arrival order, and the same values sorted: the p95 is read at every run, so it is
    /// kept ready rather than sorted each time.
    samples: VecDeque<u64>,
    sorted: Vec<u64>,
}

impl WarmupTimes {
    /// Enough to make the p95 mean something, few enough to follow a change within minutes.
    const CAPACITY: usize = 200;
    const MIN_SAMPLES: usize = 20;

    pub fn record(&mut self, latencies_ms: impl IntoIterator<Item = u64>) {
        for latency in latencies_ms {
            if self.samples.len() == Self::CAPACITY
                && let Some(oldest) = self.samples.pop_front()
                && let Ok(at) = self.sorted.binary_search(&oldest)
            {
                self.sorted.remove(at);
            }
            self.samples.push_back(latency);
            let at = self.sorted.partition_point(|v| *v <= latency);
            self.sorted.insert(at, latency);
        }
    }

    /// Nearest-rank p95, once there are enough samples.
    pub fn p95(&self) -> Option<Duration> {
        if self.samples.len() < Self::MIN_SAMPLES {
            return None;
        }
        nearest_rank_of_sorted(&self.sorted, 95.0).map(Duration::from_millis)
    }
}

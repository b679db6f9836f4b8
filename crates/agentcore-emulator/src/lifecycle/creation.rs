//! The creation budget of the modelled service: a token bucket for new microVMs, and the
//! sliding-window count that checks a run stayed inside it.

/// Token bucket for microVM creations.
#[derive(Debug, Clone)]
pub(super) struct CreationBucket {
    tokens: f64,
    pub(super) refilled_at_ms: u64,
}

impl CreationBucket {
    /// Tolerates float drift so that, at 25/s, exactly 40 ms buys one token.
    const EPSILON: f64 = 1e-9;

    pub(super) fn full(rate: f64) -> Self {
        Self {
            tokens: Self::capacity(rate),
            refilled_at_ms: 0,
        }
    }

    /// A burst below one token would never allow a creation at sub-1/s rates.
    fn capacity(rate: f64) -> f64 {
        if rate > 0.0 { rate.max(1.0) } else { 0.0 }
    }

    pub(super) fn refill(&mut self, now_ms: u64, rate: f64) {
        let elapsed_ms = now_ms.saturating_sub(self.refilled_at_ms);
        self.tokens = (self.tokens + elapsed_ms as f64 * rate / 1000.0).min(Self::capacity(rate));
        self.refilled_at_ms = self.refilled_at_ms.max(now_ms);
    }

    pub(super) fn has_token(&self) -> bool {
        self.tokens + Self::EPSILON >= 1.0
    }

    pub(super) fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Most timestamps within any half-open window `[t, t + window_ms)`.
pub(super) fn max_in_window(times_ms: &[u64], window_ms: u64) -> u32 {
    let mut sorted = times_ms.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window_ms {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    u32::try_from(best).unwrap_or(u32::MAX)
}

//! What pooled sessions cost while they idle, by platform (AgentCore prices of 2026, us-east-1).
//!
//! An idle session is billed for the memory it holds; its CPU is billed only while it works,
//! so the idle cost of a pool is session-hours x memory per session x the GB-hour price. The
//! vCPU-hour price is kept for the cost of the work itself (docs/operations.md, Cost).

use agentcore_emulator::lifecycle::Platform;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pricing {
    pub usd_per_gb_hour: f64,
    pub usd_per_vcpu_hour: f64,
    /// Memory one idle session holds, as published measurements found it.
    pub gb_per_session: f64,
}

impl Pricing {
    pub const fn of(platform: Platform) -> Self {
        match platform {
            // Even a trivial V1 session held about 1 GB.
            Platform::V1 => Self {
                usd_per_gb_hour: 0.00945,
                usd_per_vcpu_hour: 0.0895,
                gb_per_session: 1.0,
            },
            // V2 bills about 1.2 GB per session.
            Platform::V2 => Self {
                usd_per_gb_hour: 0.0169,
                usd_per_vcpu_hour: 0.1276,
                gb_per_session: 1.2,
            },
        }
    }

    /// Dollars for `session_hours` of idle pooled sessions.
    pub fn idle_cost_usd(&self, session_hours: f64) -> f64 {
        session_hours * self.gb_per_session * self.usd_per_gb_hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_cost_is_session_hours_times_memory_times_the_gb_hour_price() {
        let v1 = Pricing::of(Platform::V1).idle_cost_usd(1_000.0);
        let v2 = Pricing::of(Platform::V2).idle_cost_usd(1_000.0);
        assert!((v1 - 9.45).abs() < 1e-9, "V1: 1,000 s-h x 1 GB x $0.00945 = {v1}");
        assert!((v2 - 20.28).abs() < 1e-9, "V2: 1,000 s-h x 1.2 GB x $0.0169 = {v2}");
    }
}

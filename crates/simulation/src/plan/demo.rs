//! What `make demo`'s pool part should measure, predicted by the same simulation: the pool
//! filled once with `n` sessions by one count event (`replenish {"count": n}`), no scheduled
//! round (the demo's local stack runs none), the functions' default settings (a static
//! target of 10, fallbacks not replaced), then `n` claims through get-session, `concurrency`
//! at a time, each followed by its agent call, and the refill the claims trigger.

use super::trace::Trace;
use crate::{Policy, Run, Settings, SimError, simulate};
use std::time::Duration;

/// From the fill to the first claim through the pool: the fill's own warmups, `pool status`
/// and the comparison's route without the pool come first (about 30 s on the dev machine).
const FIRST_CLAIM_AFTER_MS: u64 = 30_000;
/// One caller's claim and warm agent call (29 ms and 203 ms at p50 in the demo's example).
const CALL_MS: u64 = 232;

/// What the demo measures, as predicted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoPrediction {
    pub warm_hit_rate: f64,
    /// Visible sessions once the claims' refills are done (`pool depth after the run`).
    pub depth_after: u64,
    pub p50_ms: u64,
}

/// The demo's claims: `concurrency` callers, each starting its next call when one ends.
pub fn demo_trace(n: u32, concurrency: u32) -> Trace {
    let concurrency = u64::from(concurrency.max(1));
    let exact: Vec<u64> = (0..u64::from(n))
        .map(|i| FIRST_CLAIM_AFTER_MS + i / concurrency * CALL_MS)
        .collect();
    let minutes = exact.last().map_or(1, |last| last / 60_000 + 1);
    let mut per_minute = vec![0_u32; usize::try_from(minutes).unwrap_or(1)];
    for at in &exact {
        if let Some(c) = per_minute.get_mut(usize::try_from(at / 60_000).unwrap_or(0)) {
            *c += 1;
        }
    }
    Trace {
        name: "demo".into(),
        start_ms: 0,
        per_minute,
        exact: Some(exact),
        notes: vec![format!("make demo's pool part: {n} claims, {concurrency} at a time")],
    }
}

/// The demo's run, simulated.
pub fn simulate_demo(n: u32, concurrency: u32) -> Result<Run, SimError> {
    let trace = demo_trace(n, concurrency);
    let settings = Settings {
        lead_in: Duration::ZERO,
        initial_fill: n,
        rounds: false,
        prewarm_scale: 0.0,
        // The crates' own defaults, which the local stack leaves in place (the modelled
        // deployment of the bench sizes MAX_CONCURRENT_RUNS and the rest for AWS).
        project_env: [
            ("CREATION_BUDGET_PER_SEC", "20"),
            ("MAX_CONCURRENT_RUNS", "10"),
            ("MAX_CREATIONS_PER_RUN", "50"),
            ("ADAPTIVE_DEFAULT_WARMUP_MS", "5000"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
        ..Settings::default()
    };
    simulate(&trace.profile(25), Policy::Project, &settings)
}

pub fn predict(n: u32, concurrency: u32) -> Result<DemoPrediction, SimError> {
    let run = simulate_demo(n, concurrency)?;
    Ok(DemoPrediction {
        warm_hit_rate: run.row.warm_hit_rate,
        depth_after: run.details.final_depth,
        p50_ms: run.row.p50_ms,
    })
}

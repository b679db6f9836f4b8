//! What a run measured, how the project compares with the reference at equal hit rates, and
//! the figures the benchmark keeps in `target/bench/summary.json`.

use crate::Policy;
use agentcore_emulator::lifecycle::Platform;
use serde::Serialize;
use serde_json::{Map, Value};

/// One line of the result, in the shape `target/bench/summary.json` keeps under `simulation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub profile: String,
    pub policy: Policy,
    /// The platform whose cold start and prices the run used.
    pub platform: Platform,
    pub warm_hit_rate: f64,
    pub dead_ids_handed_out: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub idle_session_hours: f64,
    /// The idle session-hours priced at the platform's memory per session and GB-hour price.
    pub idle_cost_usd: f64,
    /// The median target of the scheduled rounds while measured; `None` without rounds.
    pub target_median: Option<u32>,
    pub creation_throttles: u64,
}

/// What else a run saw, for the printed table and for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub requests: u64,
    pub fresh_fallbacks: u64,
    pub stale_discarded_at_claim: u64,
    pub gave_up: u64,
    pub heartbeats: u64,
    pub heartbeats_cold: u64,
    pub retired: u64,
    pub trimmed: u64,
    pub stops: u64,
    pub warmups_deferred: u64,
    /// Requests that went through a claim (every one, without affinity) and turns that reused
    /// their conversation's session instead.
    pub claims: u64,
    pub reused: u64,
    /// Sessions the service created while measured: warmups, fresh fallbacks, cold heartbeats.
    pub creations: u64,
    /// Idle time of sessions after a caller used them, until the next turn or the idle
    /// timeout (milliseconds, inside the window); the pool's own idle time is the row's.
    pub held_idle_ms: u64,
    /// The measured window on the virtual clock, and the visible sessions pooled at the end.
    pub window: (u64, u64),
    pub final_depth: u64,
    /// Depth of the pool (visible sessions) at every scheduled round, as (time, depth).
    pub depths: Vec<(u64, u64)>,
    /// (virtual time, target) of every scheduled round.
    pub targets: Vec<(u64, u32)>,
    pub events: u64,
}

impl Details {
    /// The lowest and the highest target of the rounds from `from_ms` on; `None` without any.
    pub fn target_range(&self, from_ms: u64) -> Option<(u32, u32)> {
        let targets = self.targets.iter().filter(|t| t.0 >= from_ms).map(|t| t.1);
        targets.clone().min().zip(targets.max())
    }

    /// The median target of the rounds from `from_ms` on; `None` without any.
    pub fn target_median(&self, from_ms: u64) -> Option<u32> {
        let mut targets: Vec<u32> = self.targets.iter().filter(|t| t.0 >= from_ms).map(|t| t.1).collect();
        targets.sort_unstable();
        targets.get(targets.len() / 2).copied()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub row: Row,
    pub details: Details,
}

/// The reference with one fixed pool size on one profile.
#[derive(Debug, Clone, Serialize)]
pub struct ReferencePool<'a> {
    pub reference_pool: u32,
    #[serde(flatten)]
    pub row: &'a Row,
}

/// How the reference pools run on a profile fare at the project's hit rate there.
#[derive(Debug, Clone, Copy)]
pub enum AtEqualHitRate<'a> {
    /// The cheapest pool (fewest idle session-hours) that reaches it.
    Reached(&'a ReferencePool<'a>),
    /// None reaches it: the one that came closest.
    NotReached(&'a ReferencePool<'a>),
    /// No reference pool was run on the profile.
    NoRun,
}

/// The reference pools of `project`'s profile against the project's hit rate.
pub fn at_equal_hit_rate<'a>(project: &Row, pools: &'a [ReferencePool<'a>]) -> AtEqualHitRate<'a> {
    let candidates = pools.iter().filter(|p| p.row.profile == project.profile);
    let cheapest = candidates
        .clone()
        .filter(|p| p.row.warm_hit_rate >= project.warm_hit_rate)
        .min_by(|a, b| a.row.idle_session_hours.total_cmp(&b.row.idle_session_hours));
    if let Some(pool) = cheapest {
        return AtEqualHitRate::Reached(pool);
    }
    candidates
        .max_by(|a, b| a.row.warm_hit_rate.total_cmp(&b.row.warm_hit_rate))
        .map_or(AtEqualHitRate::NoRun, AtEqualHitRate::NotReached)
}

/// What goes into the summary: `simulation` and `simulation_reference_pools`, replacing
/// what an earlier run wrote there.
pub fn summary_figures(runs: &[Run], pools: &[ReferencePool]) -> serde_json::Result<Map<String, Value>> {
    let rows: Vec<_> = runs.iter().map(|r| &r.row).collect();
    Ok(Map::from_iter([
        ("simulation".to_string(), serde_json::to_value(rows)?),
        ("simulation_reference_pools".to_string(), serde_json::to_value(pools)?),
    ]))
}

/// One side of the one-shot against affinity comparison, as the summary keeps it under
/// `simulation_conversations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationRow {
    pub profile: String,
    /// `one-shot` (every turn claims) or `affinity` (later turns reuse the live session).
    pub mode: &'static str,
    pub turns: u32,
    pub think_time_secs: f64,
    pub warm_hit_rate: f64,
    pub claims_per_request: f64,
    pub creations: u64,
    /// The pool's idle session-hours (what the rows of `simulation` count).
    pub idle_session_hours: f64,
    /// Idle session-hours of sessions after use, until the next turn or the idle timeout.
    pub held_idle_session_hours: f64,
    /// The highest target of the scheduled rounds while measured: the pre-warm stock of a burst.
    pub peak_target: Option<u32>,
}

impl ConversationRow {
    pub fn of(run: &Run, mode: &'static str, shape: &crate::Conversation, lead_in_ms: u64) -> Self {
        let d = &run.details;
        Self {
            profile: run.row.profile.clone(),
            mode,
            turns: shape.turns.get(),
            think_time_secs: shape.think_time.as_secs_f64(),
            warm_hit_rate: run.row.warm_hit_rate,
            claims_per_request: d.claims as f64 / d.requests.max(1) as f64,
            creations: d.creations,
            idle_session_hours: run.row.idle_session_hours,
            held_idle_session_hours: d.held_idle_ms as f64 / 3_600_000.0,
            peak_target: d.target_range(lead_in_ms).map(|(_, hi)| hi),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(profile: &str, policy: Policy, warm_hit_rate: f64, idle_session_hours: f64) -> Row {
        Row {
            profile: profile.into(),
            policy,
            platform: Platform::V1,
            warm_hit_rate,
            dead_ids_handed_out: 0,
            p50_ms: 230,
            p99_ms: 480,
            idle_session_hours,
            idle_cost_usd: 0.0,
            target_median: None,
            creation_throttles: 0,
        }
    }

    #[test]
    fn at_equal_hit_rate_the_cheapest_pool_that_reaches_it_is_chosen_else_the_closest() {
        let project = row("steady", Policy::Project, 0.99, 100.0);
        let rows = [
            row("steady", Policy::Reference, 0.95, 50.0),
            row("steady", Policy::Reference, 1.0, 600.0),
            row("steady", Policy::Reference, 0.995, 300.0),
            row("day", Policy::Reference, 1.0, 10.0),
        ];
        let pools: Vec<_> = [100, 3_000, 300, 100]
            .into_iter()
            .zip(&rows)
            .map(|(reference_pool, row)| ReferencePool { reference_pool, row })
            .collect();
        let AtEqualHitRate::Reached(pool) = at_equal_hit_rate(&project, &pools) else {
            panic!("a pool reaches 99%");
        };
        assert_eq!(pool.reference_pool, 300);
        let demanding = row("steady", Policy::Project, 1.0, 100.0);
        let strict: Vec<_> = pools.iter().filter(|p| p.reference_pool != 3_000).cloned().collect();
        let AtEqualHitRate::NotReached(best) = at_equal_hit_rate(&demanding, &strict) else {
            panic!("no pool reaches 100%");
        };
        assert_eq!(best.reference_pool, 300);
        let elsewhere = row("burst", Policy::Project, 0.9, 1.0);
        assert!(matches!(at_equal_hit_rate(&elsewhere, &pools), AtEqualHitRate::NoRun));
    }

    #[test]
    fn the_target_range_counts_only_rounds_from_the_given_moment() {
        let details = Details {
            targets: vec![(0, 500), (10, 4), (20, 9), (30, 6)],
            ..Details::default()
        };
        assert_eq!(details.target_range(10), Some((4, 9)));
        assert_eq!(details.target_range(31), None);
    }
}

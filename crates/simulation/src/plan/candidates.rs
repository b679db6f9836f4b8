//! The configurations the planner tries, each written once as the pool template's parameters
//! (`infra/pool.yaml`), from which both the simulated functions' environment and the deploy
//! command are made: what is simulated is what gets deployed.
//!
//! From the trace: static sizes at the median, the 90th percentile and the busiest of the
//! fitted slot targets; scheduled windows fitted at the 90th percentile and at the busiest
//! minute of each slot of the week (0607); the adaptive target alone, and with the fitted windows
//! of the slots whose demand outruns the creation budget as pre-warm minimums; with a
//! conversation shape, each of them again with affinity on.

use super::fit::{Fit, FitRules, fit_best};
use super::trace::Trace;
use crate::Conversation;
use agentcore_emulator::lifecycle::Platform;
use serde::Serialize;
use std::time::Duration;
use warmpool_core::metrics::nearest_rank;
use warmpool_core::num::ceil_u32;

/// What the team tells the planner about its account and runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The account's new-session quota per second in the region (AgentCore default 25).
    pub creation_quota: u32,
    /// The pool's share of it, as `CreationBudgetPerSec` (sessions per second).
    pub creation_budget: u32,
    pub platform: Platform,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub gb_per_session: f64,
    pub usd_per_gb_hour: f64,
    /// With leases on: the shape of the conversations, for the affinity candidates.
    pub conversation: Option<Conversation>,
    /// The warm-hit rate the recommendation must reach, 0 to 1.
    pub goal: f64,
    pub seed: u64,
}

/// How a candidate sizes the pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum Sizing {
    Static { target: u32 },
    Scheduled { default: u32, schedule: String },
    Adaptive { max: u32, prewarm: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub name: String,
    pub sizing: Sizing,
    pub affinity: bool,
}

/// The p95 warmup the deployment is sized for, by platform (the service's cold-start p99
/// rounded up, as the bench's deployment takes it).
pub fn sizing_warmup(platform: Platform) -> Duration {
    match platform {
        Platform::V1 => Duration::from_secs(5),
        Platform::V2 => Duration::from_secs(3),
    }
}

/// Headroom of the fitted and static targets over `rate x warmup`: the refill's trigger and
/// pacing lag, which the warmup time leaves out.
const HEADROOM: f64 = 1.5;
const FLOOR: u32 = 2;

impl Params {
    pub fn fit_rules(&self, quantile: f64) -> FitRules {
        FitRules {
            quantile,
            budget_per_sec: f64::from(self.creation_budget),
            warmup_p95: sizing_warmup(self.platform),
            headroom: HEADROOM,
            floor: FLOOR,
            slot_minutes: 10,
        }
    }

    /// `CreationBudgetPerSec`, `MaxConcurrentRuns` (budget x warmup p95) and
    /// `MaxCreationsPerRun` (budget x the 60 s schedule), as operations.md sizes them, and the
    /// session lifecycle.
    pub fn common_parameters(&self) -> Vec<(&'static str, String)> {
        let budget = self.creation_budget.max(1);
        let warmup = u32::try_from(sizing_warmup(self.platform).as_secs()).unwrap_or(5);
        vec![
            ("CreationBudgetPerSec", budget.to_string()),
            ("MaxConcurrentRuns", (budget * warmup).to_string()),
            ("MaxCreationsPerRun", (budget * 60).to_string()),
            ("SessionIdleTimeoutSecs", self.idle_timeout.as_secs().to_string()),
            ("SessionMaxLifetimeSecs", self.max_lifetime.as_secs().to_string()),
            ("ReplaceFreshFallbacks", "true".to_string()),
        ]
    }
}

impl Candidate {
    /// The pool template's parameters this candidate sets, beyond [`Params::common_parameters`].
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        let mut parameters = self.sizing_parameters();
        if self.affinity {
            // Affinity is the lease table's: get-session reuses a user's live session only
            // with it (the simulation models the reuse itself, so no variable is fed to it).
            parameters.push((LEASES_PARAMETER, "true".into()));
        }
        parameters
    }

    fn sizing_parameters(&self) -> Vec<(&'static str, String)> {
        match &self.sizing {
            Sizing::Static { target } => vec![("PoolTargetMode", "static".into()), ("PoolTarget", target.to_string())],
            Sizing::Scheduled { default, schedule } => vec![
                ("PoolTargetMode", "scheduled".into()),
                ("PoolTarget", default.to_string()),
                ("PoolTargetSchedule", schedule.clone()),
            ],
            Sizing::Adaptive { max, prewarm } => {
                let mut parameters = vec![
                    ("PoolTargetMode", "adaptive".into()),
                    ("PoolTargetMax", max.to_string()),
                ];
                if let Some(schedule) = prewarm {
                    parameters.push(("PoolTargetSchedule", schedule.clone()));
                }
                parameters
            }
        }
    }
}

/// The pool template's switch for leases, which affinity needs.
pub const LEASES_PARAMETER: &str = "EnableLeases";

/// The environment variable each template parameter the planner sets becomes, as
/// `infra/pool.yaml` passes it (checked against the template by a test).
pub const ENV_OF_PARAMETER: [(&str, &str); 11] = [
    ("PoolTargetMode", "POOL_TARGET_MODE"),
    ("PoolTarget", "POOL_TARGET"),
    ("PoolTargetSchedule", "POOL_TARGET_SCHEDULE"),
    ("PoolTargetMax", "POOL_TARGET_MAX"),
    ("CreationBudgetPerSec", "CREATION_BUDGET_PER_SEC"),
    ("MaxConcurrentRuns", "MAX_CONCURRENT_RUNS"),
    ("MaxCreationsPerRun", "MAX_CREATIONS_PER_RUN"),
    ("SessionIdleTimeoutSecs", "SESSION_IDLE_TIMEOUT_SECS"),
    ("SessionMaxLifetimeSecs", "SESSION_MAX_LIFETIME_SECS"),
    ("ReplaceFreshFallbacks", "REPLACE_FRESH_FALLBACKS"),
    ("AdaptiveSafetyFactor", "ADAPTIVE_SAFETY_FACTOR"),
];

/// The functions' environment for `parameters`, as the template would set it.
pub fn environment(parameters: &[(&'static str, String)]) -> Vec<(String, String)> {
    parameters
        .iter()
        .filter_map(|(name, value)| {
            ENV_OF_PARAMETER
                .iter()
                .find(|(p, _)| p == name)
                .map(|(_, env)| (env.to_string(), value.clone()))
        })
        .collect()
}

/// The adaptive target's ceiling: room for the trace's busiest minute three times over.
fn adaptive_max(trace: &Trace, params: &Params) -> u32 {
    let peak = f64::from(trace.per_minute.iter().copied().max().unwrap_or(0)) / 60.0;
    ceil_u32(peak * sizing_warmup(params.platform).as_secs_f64() * 3.0)
        .saturating_add(FLOOR)
        .max(500)
}

fn static_sizes(busiest: &Fit) -> Vec<u32> {
    let hourly: Vec<u64> = busiest.hourly.iter().flatten().map(|t| u64::from(*t)).collect();
    let mut sizes: Vec<u32> = [50.0, 90.0, 100.0]
        .iter()
        .filter_map(|p| nearest_rank(&hourly, *p))
        .map(|t| u32::try_from(t).unwrap_or(u32::MAX))
        .collect();
    sizes.dedup();
    sizes
}

/// Every candidate for `trace`, affinity off first, then (with a conversation shape) on.
pub fn candidates(trace: &Trace, params: &Params) -> Vec<Candidate> {
    let (start, minutes) = (trace.start_ms, &trace.per_minute);
    let busiest = fit_best(start, minutes, &params.fit_rules(1.0));
    let typical = fit_best(start, minutes, &params.fit_rules(0.9));
    let mut sizings: Vec<(String, Sizing)> = static_sizes(&busiest)
        .into_iter()
        .map(|target| (format!("static {target}"), Sizing::Static { target }))
        .collect();
    for (name, fitted) in [("scheduled p90", &typical), ("scheduled max", &busiest)] {
        if fitted.windows.is_empty() {
            continue;
        }
        let sizing = Sizing::Scheduled {
            default: fitted.default,
            schedule: fitted.schedule(),
        };
        // The same schedule twice would be simulated twice for the same row.
        match sizings.iter_mut().find(|(_, s)| *s == sizing) {
            Some((first, _)) => first.push_str(" = max"),
            None => sizings.push((name.to_string(), sizing)),
        }
    }
    let max = adaptive_max(trace, params);
    sizings.push(("adaptive".into(), Sizing::Adaptive { max, prewarm: None }));
    let fine = Fit::prewarm_only(start, minutes, &params.fit_rules(1.0));
    let prewarm = match fine {
        Some(f) if f.schedule().len() > super::fit::MAX_SCHEDULE_LEN => {
            let hourly = FitRules {
                slot_minutes: 60,
                ..params.fit_rules(1.0)
            };
            Fit::prewarm_only(start, minutes, &hourly)
        }
        other => other,
    };
    if let Some(prewarm) = prewarm {
        let prewarm = Some(prewarm.schedule());
        sizings.push(("adaptive + pre-warm".into(), Sizing::Adaptive { max, prewarm }));
    }
    let modes: &[bool] = if params.conversation.is_some() {
        &[false, true]
    } else {
        &[false]
    };
    modes
        .iter()
        .flat_map(|affinity| {
            sizings.iter().map(move |(name, sizing)| Candidate {
                name: if *affinity {
                    format!("{name}, affinity")
                } else {
                    name.clone()
                },
                sizing: sizing.clone(),
                affinity: *affinity,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_the_planner_sets_feeds_its_variable_in_the_pool_template() {
        let template = include_str!("../../../../infra/pool.yaml");
        for (parameter, env) in ENV_OF_PARAMETER {
            assert!(
                template.contains(&format!("\n  {parameter}:\n")),
                "{parameter} is no parameter of infra/pool.yaml"
            );
            let fed = template
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{env}: ")) && l.contains(&format!("!Ref {parameter}")));
            assert!(fed, "infra/pool.yaml does not pass {parameter} as {env}");
        }
        assert!(template.contains(&format!("\n  {LEASES_PARAMETER}:\n")));
    }
}

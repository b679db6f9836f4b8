//! The policies compared, and how each one is deployed for a run.
//!
//! The project's deployment is sized as the operations guide advises: a creation budget of 80%
//! of the account's quota, `MAX_CONCURRENT_RUNS` = budget x 5 s (the p95 warmup, rounded up)
//! execution environments, each with its own pacer and warmup-time window,
//! `MAX_CREATIONS_PER_RUN` = budget x the 60 s schedule, and on a profile with bursts the
//! pre-warm windows an operator who knows them would schedule ([`Profile::prewarm_schedule`]).
//! get-session's `{"count": n}` events, the schedule's events and the schedule's top-up events
//! wait in Lambda's async queue for a free environment. Callers retry a throttled cold start
//! as the SDK's standard mode does (three attempts, full-jitter backoff) and then give up.

use crate::{Profile, Settings, SimError};
use serde::Serialize;
use std::time::Duration;
use warmpool_core::config::Env;
use warmpool_core::pool::Lifecycle;
use warmpool_core::pool::claim::{ClaimPolicy, OnEmpty};
use warmpool_core::pool::maintenance;
use warmpool_core::pool::quota::CreationBudget;
use warmpool_core::pool::warmup::WarmupPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// A new session for every request.
    None,
    /// Fixed pool, one-for-one refill on claim, no heartbeat, no retirement, no staleness check.
    Reference,
    /// This project: adaptive target, heartbeats, retirement, paced creations, stale checks.
    Project,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::None, Policy::Reference, Policy::Project];

    pub fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Reference => "reference",
            Policy::Project => "project",
        }
    }
}

/// The p95 warmup the deployment is sized for: the service's cold-start p99 rounded up to
/// whole seconds, so 5 s on V1 (p99 4.9 s) and 3 s on V2 (p99 2.8 s). It sizes
/// `MAX_CONCURRENT_RUNS`, the pre-warm windows and the adaptive target's default warmup.
pub(crate) fn sizing_warmup(settings: &Settings) -> Duration {
    let p99 = settings.service.cold_start().p99;
    let whole = p99.as_secs() + u64::from(p99.subsec_nanos() > 0);
    Duration::from_secs(whole)
}

/// A policy as deployed for one run: how get-session claims, what replenish's schedule does,
/// and how many execution environments run replenish.
pub(crate) struct Deployment {
    /// `None` when every request starts a new session.
    pub claim: Option<ClaimPolicy>,
    /// `None` when nothing runs on a schedule.
    pub maintenance: Option<maintenance::Settings>,
    /// replenish's execution environments; 0 for a policy that is neither paced nor limited
    /// in concurrency.
    pub environments: usize,
    pub budget: CreationBudget,
    pub max_count: u32,
    pub warmup: WarmupPolicy,
    /// get-session's lifecycle rule, which also decides whether a held session is alive.
    pub lifecycle: Lifecycle,
}

impl Deployment {
    pub fn new(profile: &Profile, policy: Policy, settings: &Settings) -> Result<Self, SimError> {
        let env = modelled_env(profile, settings)?;
        let replenish = replenish::Config::from_env(&env)?;
        let get_session = get_session::Config::from_env(&env)?;
        let lifecycle = get_session.claim.lifecycle;
        let (claim, maintenance, environments) = match policy {
            Policy::None => (None, None, 0),
            // The reference trusts whatever it pooled: no lifetime rule at claim. It replaces
            // what it took, never a fallback (`replace_fresh_fallbacks` stays off).
            Policy::Reference => (Some(reference_claim()), None, 0),
            Policy::Project => (
                Some(get_session.claim),
                Some(replenish.maintenance.clone()),
                replenish.creation_budget.max_concurrent_runs.get() as usize,
            ),
        };
        Ok(Self {
            claim,
            maintenance,
            environments,
            budget: replenish.creation_budget,
            max_count: replenish.max_count_per_trigger,
            warmup: replenish.warmup,
            lifecycle,
        })
    }
}

fn reference_claim() -> ClaimPolicy {
    ClaimPolicy {
        lifecycle: Lifecycle {
            idle_timeout: Duration::from_secs(u64::from(u32::MAX)),
            max_lifetime: Duration::from_secs(u64::from(u32::MAX)),
            safety_margin: Duration::ZERO,
        },
        on_empty: OnEmpty::Fresh,
        ..ClaimPolicy::default()
    }
}

/// The profile of the claims: with affinity, a conversation claims once for all its turns,
/// so the pool sees the request rate divided by the turns, and so does the pre-warm an
/// operator sizes from the claim rate (bursts only: other shapes schedule no window).
fn claims_of(profile: &Profile, settings: &Settings) -> Profile {
    let share = match (&settings.conversation, settings.affinity) {
        (Some(shape), true) => 1.0 / f64::from(shape.turns.get()),
        _ => 1.0,
    };
    let shape = match &profile.shape {
        crate::Shape::Bursts {
            base,
            factor,
            every,
            length,
            offset,
        } => crate::Shape::Bursts {
            base: base * share,
            factor: *factor,
            every: *every,
            length: *length,
            offset: *offset,
        },
        other => other.clone(),
    };
    Profile {
        shape,
        ..profile.clone()
    }
}

/// The environment of replenish and get-session in the modelled deployment, with the
/// settings' own project environment on top.
fn modelled_env(profile: &Profile, settings: &Settings) -> Result<Env, SimError> {
    let budget = (profile.creation_quota * 4 / 5).max(1);
    let warmup = sizing_warmup(settings);
    let prewarm = claims_of(profile, settings)
        .prewarm_schedule(settings.lead_in, f64::from(budget), warmup, settings.prewarm_scale)
        .map_err(|reason| SimError::Profile(profile.name.clone(), reason))?;
    let (runs, per_run, default_warmup_ms) = (
        (budget * u32::try_from(warmup.as_secs()).unwrap_or(u32::MAX)).to_string(),
        (budget * 60).to_string(),
        warmup.as_millis().to_string(),
    );
    let budget = budget.to_string();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("POOL_QUEUE_URL", "simulated"),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
        ("CREATION_BUDGET_PER_SEC", &budget),
        ("MAX_CONCURRENT_RUNS", &runs),
        ("MAX_CREATIONS_PER_RUN", &per_run),
        ("ADAPTIVE_DEFAULT_WARMUP_MS", &default_warmup_ms),
        // Nothing is logged here; set so that parsing the config does not warn about it.
        ("SESSION_LOG_KEY", "simulated-deployment-log-key"),
        (
            "AGENT_RUNTIME_ARN",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/sim",
        ),
    ];
    if let Some(schedule) = &prewarm {
        pairs.push(("POOL_TARGET_SCHEDULE", schedule));
    }
    pairs.extend(settings.project_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Ok(Env::from_pairs(pairs))
}

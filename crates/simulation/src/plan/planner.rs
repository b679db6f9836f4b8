//! One planning run: every candidate through the simulation, `threads` at a time, then the
//! figures, the frontier and the recommendation with its deploy command.

use super::candidates::{Candidate, Params, candidates, environment};
use super::choose::{Choice, Figures, mark_frontier, recommend};
use super::overrides::{deploy_command, parameter_overrides};
use super::trace::Trace;
use crate::{Policy, Run, Settings, SimError, run_jobs_counted};
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Traffic before the trace starts, at its opening rate, so every candidate starts settled.
const LEAD_IN: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub name: String,
    pub goal: f64,
    pub goal_reached: bool,
    pub affinity: bool,
    /// The `--parameter-overrides` value for `sam deploy`.
    pub parameter_overrides: String,
    /// The `make deploy-pool` line that applies it.
    pub deploy_command: String,
}

/// The recommended candidate's run over time, for the chart (not in the JSON).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// (epoch ms, requests per second) per minute of the trace.
    pub demand: Vec<(u64, f64)>,
    /// (epoch ms, value) per scheduled round while measured.
    pub target: Vec<(u64, u32)>,
    pub depth: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub trace: String,
    pub trace_start: String,
    pub trace_minutes: usize,
    pub requests: u64,
    pub notes: Vec<String>,
    pub creation_quota: u32,
    pub creation_budget: u32,
    pub platform: agentcore_emulator::lifecycle::Platform,
    pub candidates: Vec<Figures>,
    pub recommendation: Option<Recommendation>,
    #[serde(skip)]
    pub timeline: Timeline,
    /// How long each candidate's run took, in the candidates' order (not in the JSON: it is
    /// the machine's, not the plan's).
    #[serde(skip)]
    pub run_times: Vec<Duration>,
}

/// The simulation settings of `candidate` on `trace`.
pub fn settings(trace: &Trace, params: &Params, candidate: &Candidate) -> Settings {
    let defaults = Settings::default();
    let mut parameters = params.common_parameters();
    parameters.extend(candidate.parameters());
    Settings {
        seed: params.seed,
        service: agentcore_emulator::lifecycle::LifecycleConfig {
            platform: params.platform,
            idle_timeout: params.idle_timeout,
            max_lifetime: params.max_lifetime,
            ..defaults.service.clone()
        },
        lead_in: LEAD_IN,
        clock_origin_ms: trace.start_ms.saturating_sub(warmpool_core::clock::millis(LEAD_IN)),
        prewarm_scale: 0.0,
        conversation: params.conversation,
        affinity: candidate.affinity,
        project_env: environment(&parameters),
        ..defaults
    }
}

fn timeline(trace: &Trace, run: &Run) -> Timeline {
    let (from, to) = run.details.window;
    let measured = |t: &u64| *t >= from && *t < to;
    Timeline {
        demand: trace
            .per_minute
            .iter()
            .enumerate()
            .map(|(m, c)| (trace.start_ms + m as u64 * 60_000, f64::from(*c) / 60.0))
            .collect(),
        target: run
            .details
            .targets
            .iter()
            .filter(|(t, _)| measured(t))
            .copied()
            .collect(),
        depth: run
            .details
            .depths
            .iter()
            .filter(|(t, _)| measured(t))
            .copied()
            .collect(),
    }
}

/// Every candidate on `trace`; `requests_done` counts the requests simulated so far, out of
/// `trace.requests()` per candidate (plus the lead-in's).
pub fn plan(trace: &Trace, params: &Params, threads: usize, requests_done: &AtomicU64) -> Result<Plan, SimError> {
    let candidates = candidates(trace, params);
    let profile = trace.profile(params.creation_quota);
    let jobs = candidates
        .iter()
        .map(|c| (profile.clone(), Policy::Project, settings(trace, params, c)))
        .collect();
    let (runs, run_times): (Vec<Run>, Vec<Duration>) =
        run_jobs_counted(jobs, threads, requests_done)?.into_iter().unzip();
    let hours = trace.duration().as_secs_f64() / 3_600.0;
    let per_session_hour = params.gb_per_session * params.usd_per_gb_hour;
    let mut figures: Vec<Figures> = candidates
        .iter()
        .zip(&runs)
        .map(|(c, run)| Figures::of(c.clone(), run, hours, per_session_hour))
        .collect();
    mark_frontier(&mut figures);
    let choice = recommend(&figures, params.goal);
    let recommendation = choice.map(|Choice { index, goal_reached }| {
        let candidate = &figures[index].candidate;
        let mut parameters = params.common_parameters();
        parameters.extend(candidate.parameters());
        Recommendation {
            name: candidate.name.clone(),
            goal: params.goal,
            goal_reached,
            affinity: candidate.affinity,
            parameter_overrides: parameter_overrides(&parameters),
            deploy_command: deploy_command(&parameters, params.creation_budget, params.creation_quota),
        }
    });
    let timeline = choice.map(|c| timeline(trace, &runs[c.index])).unwrap_or_default();
    Ok(Plan {
        trace: trace.name.clone(),
        trace_start: super::time::format_instant(trace.start_ms),
        trace_minutes: trace.per_minute.len(),
        requests: trace.requests(),
        notes: trace.notes.clone(),
        creation_quota: params.creation_quota,
        creation_budget: params.creation_budget,
        platform: params.platform,
        candidates: figures,
        recommendation,
        timeline,
        run_times,
    })
}

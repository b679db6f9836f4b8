//! A discrete-event simulation of the warm pool over hours of traffic, on a virtual clock.
//!
//! What runs is the project's own code, not a model of it: the `Claimer` over the in-memory
//! FIFO queue (which honours visibility on the virtual clock), the scheduled round
//! (`maintenance::round`: target sizing, sweep with heartbeats, retirement, trimming), the
//! creation `Pacer` and the warmup retry decisions (`WarmupPolicy::backoff_ceiling`,
//! `AgentError::is_retryable`). They meet the emulator's own lifecycle `Model` of AgentCore
//! (cold and warm latencies, idle timeout, max lifetime, creation quota). The async pieces
//! finish without waiting on anything, so each event polls them to completion at one instant
//! of the virtual clock; the warmup loop, which sleeps in production, is driven here as events
//! (an attempt at its paced slot, its return after the model's latency, a retry after the
//! backoff), the same steps `warmup::warm_new_sessions` takes.
//!
//! The parts, by job:
//! - [`profile`]: the traffic, as request rates over time and seeded arrivals drawn from them;
//! - [`conversation`]: the same traffic as conversations of several turns, for affinity;
//! - [`policy`]: the policies compared, and how each is deployed for a run;
//! - `world`: the simulated AgentCore service and the idle time of pooled microVMs;
//! - `engine`: the discrete-event loop, with the callers' side and replenish's warmups;
//! - [`report`]: what a run measured, and the figures the benchmark keeps;
//! - [`plan`]: `warmpool plan`, the simulation as a sizing tool for a trace.
//!
//! Everything random comes from seeded generators, so a run repeats exactly.

pub mod conversation;
pub mod cost;
mod engine;
mod error;
pub mod plan;
pub mod policy;
pub mod profile;
pub mod report;
mod settings;
mod world;

pub use conversation::{Conversation, Turn};
pub use error::SimError;
pub use policy::Policy;
pub use profile::{Profile, Shape};
pub use report::{ConversationRow, Details, ReferencePool, Row, Run};
pub use settings::Settings;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Runs every policy on every profile, `threads` at a time; rows in profile, then policy order.
pub fn run_all(profiles: &[Profile], settings: &Settings, threads: usize) -> Result<Vec<Run>, SimError> {
    let jobs = profiles
        .iter()
        .flat_map(|p| Policy::ALL.map(|policy| (p.clone(), policy, settings.clone())))
        .collect();
    run_jobs(jobs, threads)
}

/// Runs each (profile, policy, settings), `threads` at a time; results in the jobs' order.
pub fn run_jobs(jobs: Vec<(Profile, Policy, Settings)>, threads: usize) -> Result<Vec<Run>, SimError> {
    let runs = run_jobs_counted(jobs, threads, &AtomicU64::new(0))?;
    Ok(runs.into_iter().map(|(run, _)| run).collect())
}

/// As [`run_jobs`], adding each request the runs have handled to `requests_done` as they go
/// (in steps of a few thousand), for a progress display; each run comes with the wall time it
/// took (one thread's, so its CPU time when no more runs than cores go at once).
pub fn run_jobs_counted(
    jobs: Vec<(Profile, Policy, Settings)>,
    threads: usize,
    requests_done: &AtomicU64,
) -> Result<Vec<(Run, Duration)>, SimError> {
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some((i, (profile, policy, settings))) = next else {
                        break;
                    };
                    let started = Instant::now();
                    let run = engine::Engine::new(&profile, policy, &settings)
                        .and_then(|engine| engine.run(Some(requests_done)))
                        .map(|run| (run, started.elapsed()));
                    results.lock().unwrap_or_else(|p| p.into_inner()).push((i, run));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, run)| run).collect()
}

/// One policy on one profile.
pub fn simulate(profile: &Profile, policy: Policy, settings: &Settings) -> Result<Run, SimError> {
    engine::Engine::new(profile, policy, settings)?.run(None)
}

#[cfg(test)]
mod tests;

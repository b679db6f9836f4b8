//! A discrete-event simulation of the warm pool over hours of traffic, on a virtual clock.
//!
//! What runs is the project's own code, not a model of it: the [`Claimer`] over the in-memory
//! FIFO queue (which honours visibility on the virtual clock), the scheduled round
//! ([`maintenance::round`]: target sizing, sweep with heartbeats, retirement, trimming), the
//! creation [`Pacer`] and the warmup retry decisions ([`WarmupPolicy::backoff_ceiling`],
//! [`AgentError::is_retryable`]). They meet the emulator's own [`Model`] of AgentCore
//! (cold and warm latencies, idle timeout, max lifetime, creation quota). The async pieces
//! finish without waiting on anything, so each event polls them to completion at one instant
//! of the virtual clock; the warmup loop, which sleeps in production, is driven here as events
//! (an attempt at its paced slot, its return after the model's latency, a retry after the
//! backoff), the same steps `warmup::warm_new_sessions` takes.
//!
//! Deployment modelled for the project policy, sized as README.md (Pool lifecycle) advises: a creation
//! budget of 80% of the account's quota, `MAX_CONCURRENT_RUNS` = budget x 5 s (the p95
//! warmup, rounded up) execution environments, each with its own pacer and warmup-time window,
//! `MAX_CREATIONS_PER_RUN` = budget x the 60 s schedule, and on a profile with bursts the
//! pre-warm windows an operator who knows them would schedule ([`Profile::prewarm_schedule`]).
//! get-session's `{"count": n}` events, the schedule's events and the schedule's top-up events
//! wait in Lambda's async queue for a free environment. Callers retry a throttled cold start
//! as the SDK's standard mode does (three attempts, full-jitter backoff) and then give up.
//! Everything random comes from seeded generators, so a run repeats exactly.

mod profile;
mod world;

pub use profile::{Profile, Shape};

use agentcore_emulator::lifecycle::{LifecycleConfig, Model};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warmpool_core::clock::{Clock, ManualClock, millis};
use warmpool_core::config::Env;
use warmpool_core::fakes::MemoryPool;
use warmpool_core::maintenance;
use warmpool_core::metrics::nearest_rank;
use warmpool_core::pool::{ClaimPolicy, Claimer, Lifecycle, OnEmpty, Source};
use warmpool_core::ports::ReplenishTrigger;
use warmpool_core::quota::{CreationBudget, Pacer, spread};
use warmpool_core::session::{PooledSession, SessionId};
use warmpool_core::target::WarmupTimes;
use warmpool_core::warmup::WarmupPolicy;
use world::{SimAgent, World, agent_error};

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

/// One line of the result, in the shape `target/bench/summary.json` keeps under `simulation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub profile: String,
    pub policy: Policy,
    pub warm_hit_rate: f64,
    pub dead_ids_handed_out: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub idle_session_hours: f64,
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
    /// (virtual time, target) of every scheduled round.
    pub targets: Vec<(u64, u32)>,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub row: Row,
    pub details: Details,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation settings: {0}")]
    Config(#[from] warmpool_core::ConfigError),
    #[error("{0} waited on something; the simulated ports never should")]
    Blocked(&'static str),
    #[error("the pool queue failed: {0}")]
    Queue(#[from] warmpool_core::QueueError),
    #[error("the simulation did not settle within {0} events")]
    Runaway(u64),
    #[error("profile {0}: {1}")]
    Profile(String, String),
}

impl SimError {
    /// A simulation is deterministic: running it again gives the same failure.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// The simulated service: the emulator's defaults are the published AgentCore figures.
    pub service: LifecycleConfig,
    /// Traffic at the profile's opening rate before measuring, so every policy starts settled.
    pub lead_in: Duration,
    /// get-session's synchronous invoke, receive and delete, before the caller's own call.
    pub claim_overhead: Duration,
    /// From get-session's `Event` invoke (or the schedule) to replenish starting on it.
    pub trigger_delay: Duration,
    /// replenish's Lambda timeout (its runs stop retrying this long after they start).
    pub run_timeout: Duration,
    pub reference_pool: u32,
    /// How a caller retries a throttled cold start, and how often at most.
    pub caller_retry: WarmupPolicy,
    pub caller_max_attempts: u32,
    /// The project's settings, as environment variables of replenish and get-session; they
    /// take precedence over the modelled deployment's.
    pub project_env: Vec<(String, String)>,
    /// The pre-warm windows' targets as a share of what the bursts need (0 schedules none).
    pub prewarm_scale: f64,
}

impl Default for Settings {
    fn default() -> Self {
        // The defaults, but for the adaptive mode, room to grow, and fallbacks replaced.
        let env = [
            ("POOL_TARGET_MODE", "adaptive"),
            ("POOL_TARGET_MAX", "1000"),
            ("REPLACE_FRESH_FALLBACKS", "true"),
        ];
        Self {
            seed: 42,
            // Active sessions are not what this compares: no cap that would bind.
            service: LifecycleConfig {
                max_active_sessions: 10_000_000,
                ..LifecycleConfig::default()
            },
            lead_in: Duration::from_secs(15 * 60),
            claim_overhead: Duration::from_millis(30),
            trigger_delay: Duration::from_millis(100),
            run_timeout: Duration::from_secs(60),
            reference_pool: 100,
            caller_retry: WarmupPolicy::default(),
            caller_max_attempts: 3,
            project_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            prewarm_scale: 1.0,
        }
    }
}

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
                    let run = simulate(&profile, policy, &settings);
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
    Engine::new(profile, policy, settings)?.run()
}

/// Claims ask for replacements through this; the engine turns each request into an event.
#[derive(Debug, Default)]
struct Requests(Mutex<Vec<u32>>);

impl Requests {
    fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ReplenishTrigger for Requests {
    async fn request(&self, count: u32) -> Result<(), warmpool_core::TriggerError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(count);
        Ok(())
    }
}

type SimClaimer = Claimer<Arc<MemoryPool>, Arc<Requests>, ManualClock>;

#[derive(Debug, Clone, Copy)]
enum Job {
    Refill(u32),
    Maintain,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Arrival(usize),
    CallerInvoke(usize),
    JobArrives(Job),
    Attempt(usize),
    WarmupReturns { warm: usize, created: u64, latency_ms: u64 },
    Schedule,
}

struct Request {
    arrived: u64,
    session: Option<SessionId>,
    from_pool: bool,
    attempts: u32,
}

/// One session being warmed, inside run `run`.
struct Warm {
    run: usize,
    session: SessionId,
    attempt: u32,
}

/// A replenish invocation; `env` is `None` for the reference, which is neither paced nor
/// limited in concurrency.
struct RunState {
    env: Option<usize>,
    pending: u32,
    deadline: u64,
}

/// One replenish execution environment.
struct Environment {
    pacer: Pacer,
    warmup_times: WarmupTimes,
}

struct Engine<'a> {
    profile: &'a Profile,
    policy: Policy,
    settings: &'a Settings,
    clock: ManualClock,
    queue: Arc<MemoryPool>,
    agent: SimAgent,
    claimer: Option<SimClaimer>,
    replacements: Arc<Requests>,
    maintenance: Option<maintenance::Settings>,
    budget: CreationBudget,
    max_count: u32,
    warmup: WarmupPolicy,
    rng: StdRng,
    events: BinaryHeap<Reverse<(u64, u64)>>,
    payloads: Vec<Option<Event>>,
    requests: Vec<Request>,
    warms: Vec<Warm>,
    runs: Vec<RunState>,
    environments: Vec<Environment>,
    idle_environments: VecDeque<usize>,
    waiting_jobs: VecDeque<Job>,
    window: (u64, u64),
    ttfb_ms: Vec<u64>,
    warm_hits: u64,
    dead_ids: u64,
    throttles_before: Option<u64>,
    details: Details,
}

/// The p95 warmup the deployment is sized for (the service's cold start p99 is about 5 s).
const WARMUP_P95: Duration = Duration::from_secs(5);

/// Most events one run may process: far above what the longest profile needs.
const MAX_EVENTS: u64 = 200_000_000;
/// Work still in flight this long after the traffic ends is abandoned.
const DRAIN: Duration = Duration::from_secs(30 * 60);

fn ready<F: std::future::Future>(future: F, what: &'static str) -> Result<F::Output, SimError> {
    future.now_or_never().ok_or(SimError::Blocked(what))
}

impl<'a> Engine<'a> {
    fn new(profile: &'a Profile, policy: Policy, settings: &'a Settings) -> Result<Self, SimError> {
        let clock = ManualClock::at(0);
        let queue = Arc::new(MemoryPool::with_clock(Arc::new(clock.clone())));
        let lead_in = millis(settings.lead_in);
        let window = (lead_in, lead_in + millis(profile.duration));
        let world = World::new(
            Model::new(LifecycleConfig {
                creation_rate_per_sec: f64::from(profile.creation_quota),
                ..settings.service.clone()
            }),
            StdRng::seed_from_u64(settings.seed ^ 0x5eed_0001),
            window,
        );
        let agent = SimAgent {
            world: Arc::new(Mutex::new(world)),
            clock: clock.clone(),
        };
        let replacements = Arc::new(Requests::default());
        let budget = (profile.creation_quota * 4 / 5).max(1);
        let prewarm = profile
            .prewarm_schedule(settings.lead_in, f64::from(budget), WARMUP_P95, settings.prewarm_scale)
            .map_err(|reason| SimError::Profile(profile.name.clone(), reason))?;
        let (runs, per_run) = (
            (budget * WARMUP_P95.as_secs() as u32).to_string(),
            (budget * 60).to_string(),
        );
        let budget = budget.to_string();
        let mut env_pairs: Vec<(&str, &str)> = vec![
            ("POOL_QUEUE_URL", "simulated"),
            ("REPLENISH_FUNCTION_NAME", "replenish"),
            ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
            ("CREATION_BUDGET_PER_SEC", &budget),
            ("MAX_CONCURRENT_RUNS", &runs),
            ("MAX_CREATIONS_PER_RUN", &per_run),
            (
                "AGENT_RUNTIME_ARN",
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/sim",
            ),
        ];
        if let Some(schedule) = &prewarm {
            env_pairs.push(("POOL_TARGET_SCHEDULE", schedule));
        }
        env_pairs.extend(settings.project_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let env = Env::from_pairs(env_pairs);
        let replenish = replenish::Config::from_env(&env)?;
        let get_session = get_session::Config::from_env(&env)?;
        let claim_policy = get_session.claim;
        let (budget, max_count) = (replenish.creation_budget, replenish.max_count_per_trigger);
        let (claimer_policy, maintenance, environments) = match policy {
            Policy::None => (None, None, 0),
            // The reference trusts whatever it pooled: no lifetime rule at claim. It replaces
            // what it took, never a fallback (`replace_fresh_fallbacks` stays off).
            Policy::Reference => (
                Some(ClaimPolicy {
                    lifecycle: Lifecycle {
                        idle_timeout: Duration::from_secs(u64::from(u32::MAX)),
                        max_lifetime: Duration::from_secs(u64::from(u32::MAX)),
                        safety_margin: Duration::ZERO,
                    },
                    on_empty: OnEmpty::Fresh,
                    ..ClaimPolicy::default()
                }),
                None,
                0,
            ),
            Policy::Project => (
                Some(claim_policy),
                Some(replenish.maintenance.clone()),
                replenish.creation_budget.max_concurrent_runs.get() as usize,
            ),
        };
        let claimer = claimer_policy.map(|policy| Claimer {
            queue: queue.clone(),
            trigger: replacements.clone(),
            clock: clock.clone(),
            policy,
        });
        Ok(Self {
            profile,
            policy,
            settings,
            clock,
            queue,
            agent,
            claimer,
            replacements,
            maintenance,
            budget,
            max_count,
            warmup: replenish.warmup,
            rng: StdRng::seed_from_u64(settings.seed ^ 0x5eed_0002),
            events: BinaryHeap::new(),
            payloads: Vec::new(),
            requests: Vec::new(),
            warms: Vec::new(),
            runs: Vec::new(),
            environments: (0..environments)
                .map(|_| Environment {
                    pacer: Pacer::new(&replenish.creation_budget),
                    warmup_times: WarmupTimes::default(),
                })
                .collect(),
            idle_environments: (0..environments).collect(),
            waiting_jobs: VecDeque::new(),
            window,
            ttfb_ms: Vec::new(),
            warm_hits: 0,
            dead_ids: 0,
            throttles_before: None,
            details: Details::default(),
        })
    }

    fn at(&mut self, time: u64, event: Event) {
        let seq = self.payloads.len() as u64;
        self.payloads.push(Some(event));
        self.events.push(Reverse((time, seq)));
    }

    fn run(mut self) -> Result<Run, SimError> {
        for (i, arrived) in self
            .profile
            .arrivals(self.settings.lead_in, self.settings.seed)
            .into_iter()
            .enumerate()
        {
            self.requests.push(Request {
                arrived,
                session: None,
                from_pool: false,
                attempts: 0,
            });
            self.at(arrived, Event::Arrival(i));
        }
        match self.policy {
            Policy::None => {}
            Policy::Reference => {
                let fill = self.settings.reference_pool;
                self.start_run(None, fill, 0)?;
            }
            Policy::Project => self.at(0, Event::Schedule),
        }
        let stop_at = self.window.1 + millis(DRAIN);
        while let Some(Reverse((time, seq))) = self.events.pop() {
            if time > stop_at {
                break;
            }
            self.details.events += 1;
            if self.details.events > MAX_EVENTS {
                return Err(SimError::Runaway(MAX_EVENTS));
            }
            if time >= self.window.0 && self.throttles_before.is_none() {
                self.throttles_before = Some(self.agent.world().model.stats().throttled);
            }
            self.clock.set(time);
            let Some(event) = self.payloads.get_mut(seq as usize).and_then(Option::take) else {
                continue;
            };
            self.handle(time, event)?;
        }
        Ok(self.finish())
    }

    fn handle(&mut self, now: u64, event: Event) -> Result<(), SimError> {
        match event {
            Event::Arrival(request) => self.arrive(now, request),
            Event::CallerInvoke(request) => {
                self.caller_invoke(now, request);
                Ok(())
            }
            Event::JobArrives(job) => self.job_arrives(now, job),
            Event::Attempt(warm) => self.attempt(now, warm),
            Event::WarmupReturns {
                warm,
                created,
                latency_ms,
            } => self.warmup_returns(warm, created, latency_ms),
            Event::Schedule => {
                if let Some(settings) = &self.maintenance {
                    let next = now + millis(settings.rules.interval);
                    if next <= self.window.1 {
                        self.at(next, Event::Schedule);
                    }
                }
                self.at(
                    now + millis(self.settings.trigger_delay),
                    Event::JobArrives(Job::Maintain),
                );
                Ok(())
            }
        }
    }

    fn arrive(&mut self, now: u64, request: usize) -> Result<(), SimError> {
        let Some(claimer) = &self.claimer else {
            self.requests[request].session = Some(SessionId::generate());
            self.caller_invoke(now, request);
            return Ok(());
        };
        let claim = ready(claimer.claim(), "a claim")?.map_err(|e| match e {
            warmpool_core::pool::ClaimError::Queue(q) => SimError::Queue(q),
            warmpool_core::pool::ClaimError::PoolEmpty => SimError::Blocked("an empty pool with fallback on"),
        })?;
        let counted = now >= self.window.0 && now < self.window.1;
        if counted {
            self.details.stale_discarded_at_claim += u64::from(claim.stale_discarded);
            self.details.fresh_fallbacks += u64::from(claim.session.source == Source::Fresh);
        }
        let entry = &mut self.requests[request];
        entry.from_pool = claim.session.source == Source::Pool;
        entry.session = Some(claim.session.session_id);
        for count in self.replacements.take() {
            let at = now + millis(self.settings.trigger_delay);
            match self.policy {
                Policy::Project => self.at(at, Event::JobArrives(Job::Refill(count))),
                _ => self.start_run(None, count, at)?,
            }
        }
        self.at(now + millis(self.settings.claim_overhead), Event::CallerInvoke(request));
        Ok(())
    }

    fn caller_invoke(&mut self, now: u64, request: usize) {
        let Some(session) = self.requests[request].session.clone() else {
            return;
        };
        let from_pool = self.requests[request].from_pool;
        let counted = {
            let arrived = self.requests[request].arrived;
            arrived >= self.window.0 && arrived < self.window.1
        };
        let mut world = self.agent.world();
        if from_pool && self.requests[request].attempts == 0 {
            world.handed_out(&session, now);
        }
        match world.invoke(&session, now) {
            Ok(admission) => {
                drop(world);
                if counted {
                    let arrived = self.requests[request].arrived;
                    self.details.requests += 1;
                    self.ttfb_ms.push(now + millis(admission.latency) - arrived);
                    if admission.cold {
                        self.dead_ids += u64::from(from_pool);
                    } else {
                        self.warm_hits += 1;
                    }
                }
            }
            Err(rejection) => {
                drop(world);
                let error = agent_error(&rejection);
                let entry = &mut self.requests[request];
                entry.attempts += 1;
                if !error.is_retryable() || entry.attempts >= self.settings.caller_max_attempts {
                    if counted {
                        self.details.requests += 1;
                        self.details.gave_up += 1;
                    }
                    return;
                }
                let ceiling = self.settings.caller_retry.backoff_ceiling(entry.attempts - 1);
                let pause = self.jitter(ceiling);
                self.at(now + pause, Event::CallerInvoke(request));
            }
        }
    }

    fn jitter(&mut self, ceiling: Duration) -> u64 {
        self.rng.random_range(0..=millis(ceiling))
    }

    fn job_arrives(&mut self, now: u64, job: Job) -> Result<(), SimError> {
        match self.idle_environments.pop_front() {
            Some(env) => {
                if !self.start_job(now, env, job)? {
                    self.idle_environments.push_front(env);
                }
                Ok(())
            }
            None => {
                self.waiting_jobs.push_back(job);
                Ok(())
            }
        }
    }

    /// Starts `job` in `env`; `false` when it needed no warmup and the environment is free again.
    fn start_job(&mut self, now: u64, env: usize, job: Job) -> Result<bool, SimError> {
        let count = match job {
            // As replenish's count run: no more than the pool has room for.
            Job::Refill(count) => match &self.maintenance {
                None => count,
                Some(settings) => {
                    let p95 = self.environments[env].warmup_times.p95();
                    let sizing = ready(
                        maintenance::size(
                            &*self.queue,
                            &self.clock,
                            &settings.target,
                            settings.limits.max_hidden,
                            p95,
                        ),
                        "sizing the pool",
                    )??;
                    count.min(sizing.room())
                }
            },
            Job::Maintain => {
                let Some(settings) = &self.maintenance else {
                    return Ok(false);
                };
                self.clock.set(now);
                let p95 = self.environments[env].warmup_times.p95();
                let round = ready(
                    maintenance::round(
                        &*self.queue,
                        &self.agent,
                        &self.clock,
                        settings,
                        p95,
                        self.settings.run_timeout,
                    ),
                    "a maintenance round",
                )??;
                self.details.targets.push((now, round.sizing.target.value));
                if now >= self.window.0 && now < self.window.1 {
                    self.details.heartbeats += u64::from(round.sweep.heartbeats);
                    self.details.retired += u64::from(round.sweep.retired);
                    self.details.trimmed += u64::from(round.sweep.trimmed);
                }
                // As replenish does: the top-up goes out as count events, and this run ends.
                let spacing = millis(self.budget.dispatch_spacing());
                for (i, count) in spread(round.top_up, &self.budget, self.max_count)
                    .into_iter()
                    .enumerate()
                {
                    let at = now + millis(self.settings.trigger_delay) + i as u64 * spacing;
                    self.at(at, Event::JobArrives(Job::Refill(count)));
                }
                0
            }
        };
        if count == 0 {
            return Ok(false);
        }
        self.start_run(Some(env), count, now)?;
        Ok(true)
    }

    fn start_run(&mut self, env: Option<usize>, count: u32, now: u64) -> Result<(), SimError> {
        let run = self.runs.len();
        self.runs.push(RunState {
            env,
            pending: count,
            deadline: now + millis(self.settings.run_timeout),
        });
        if count == 0 {
            return self.run_done(run);
        }
        for _ in 0..count {
            let warm = self.warms.len();
            let session = SessionId::parse(format!("sim-{}-{warm:032}", self.policy.name()))
                .unwrap_or_else(|_| SessionId::generate());
            self.warms.push(Warm {
                run,
                session,
                attempt: 0,
            });
            self.schedule_attempt(warm, now)?;
        }
        Ok(())
    }

    /// The next attempt at this environment's next creation slot, as `warm_new_sessions` waits
    /// for `CreationPacer::wait_turn`; no slot before the run's deadline defers the warmup.
    fn schedule_attempt(&mut self, warm: usize, not_before: u64) -> Result<(), SimError> {
        let run = self.warms[warm].run;
        let (env, deadline) = (self.runs[run].env, self.runs[run].deadline);
        let slot = match env {
            None => Some(not_before),
            Some(env) => self.environments[env].pacer.reserve(not_before, deadline),
        };
        match slot {
            Some(slot) => {
                self.at(slot, Event::Attempt(warm));
                Ok(())
            }
            None => {
                self.details.warmups_deferred += 1;
                self.warm_done(warm)
            }
        }
    }

    fn attempt(&mut self, now: u64, warm: usize) -> Result<(), SimError> {
        let session = self.warms[warm].session.clone();
        let outcome = self.agent.world().invoke(&session, now);
        match outcome {
            Ok(admission) => {
                let latency_ms = millis(admission.latency);
                self.at(
                    now + latency_ms,
                    Event::WarmupReturns {
                        warm,
                        created: now,
                        latency_ms,
                    },
                );
                Ok(())
            }
            Err(rejection) => {
                let error = agent_error(&rejection);
                let attempt = self.warms[warm].attempt;
                self.warms[warm].attempt += 1;
                let pause = self.jitter(self.warmup.backoff_ceiling(attempt));
                let deadline = self.runs[self.warms[warm].run].deadline;
                if !error.is_retryable() || now + pause >= deadline {
                    self.warm_done(warm)
                } else {
                    self.schedule_attempt(warm, now + pause)
                }
            }
        }
    }

    fn warmup_returns(&mut self, warm: usize, created: u64, latency_ms: u64) -> Result<(), SimError> {
        let session = self.warms[warm].session.clone();
        // As warm_one: enqueued once warm, stamped with the moment the warmup started.
        ready(
            warmpool_core::ports::PoolQueue::enqueue(
                &*self.queue,
                &PooledSession::new(session.clone(), created, created),
            ),
            "an enqueue",
        )??;
        self.agent.world().pooled(session, created);
        if let Some(env) = self.runs[self.warms[warm].run].env {
            self.environments[env].warmup_times.record([latency_ms]);
        }
        self.warm_done(warm)
    }

    fn warm_done(&mut self, warm: usize) -> Result<(), SimError> {
        let run = self.warms[warm].run;
        self.runs[run].pending = self.runs[run].pending.saturating_sub(1);
        if self.runs[run].pending == 0 {
            return self.run_done(run);
        }
        Ok(())
    }

    /// The environment takes the next waiting event now, or waits for one. A loop, not a
    /// recursion: a long queue of events that need no warmup finishes here at once.
    fn run_done(&mut self, run: usize) -> Result<(), SimError> {
        let Some(env) = self.runs[run].env else {
            return Ok(());
        };
        while let Some(job) = self.waiting_jobs.pop_front() {
            if self.start_job(self.clock.now_ms(), env, job)? {
                return Ok(());
            }
        }
        self.idle_environments.push_back(env);
        Ok(())
    }

    fn finish(mut self) -> Run {
        let world = self.agent.world();
        let throttles = world.model.stats().throttled - self.throttles_before.unwrap_or(0);
        let idle_session_hours = world.idle_session_hours();
        self.details.heartbeats_cold = world.heartbeats_cold;
        self.details.stops = world.stops;
        drop(world);
        let requests = self.details.requests.max(1);
        let row = Row {
            profile: self.profile.name.clone(),
            policy: self.policy,
            warm_hit_rate: self.warm_hits as f64 / requests as f64,
            dead_ids_handed_out: self.dead_ids,
            p50_ms: nearest_rank(&self.ttfb_ms, 50.0).unwrap_or(0),
            p99_ms: nearest_rank(&self.ttfb_ms, 99.0).unwrap_or(0),
            idle_session_hours,
            creation_throttles: throttles,
        };
        Run {
            row,
            details: self.details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, duration_min: u64, shape: Shape) -> Profile {
        Profile {
            name: name.into(),
            duration: Duration::from_secs(duration_min * 60),
            shape,
            creation_quota: 25,
        }
    }

    fn quick() -> Settings {
        Settings {
            lead_in: Duration::from_secs(5 * 60),
            ..Settings::default()
        }
    }

    #[test]
    fn the_same_seed_repeats_a_run_exactly_and_another_seed_does_not() {
        let steady = profile("t", 10, Shape::Steady { rate: 5.0 });
        let a = simulate(&steady, Policy::Project, &quick()).unwrap();
        let b = simulate(&steady, Policy::Project, &quick()).unwrap();
        assert_eq!(a, b);
        let other = Settings { seed: 7, ..quick() };
        assert_ne!(a, simulate(&steady, Policy::Project, &other).unwrap());
    }

    #[test]
    fn the_adaptive_target_follows_a_rate_step_up_and_down() {
        let twenty = Duration::from_secs(20 * 60);
        let steps = profile(
            "steps",
            60,
            Shape::Steps(vec![(twenty, 2.0), (twenty, 10.0), (twenty, 2.0)]),
        );
        let settings = quick();
        let run = simulate(&steps, Policy::Project, &settings).unwrap();
        let start = millis(settings.lead_in);
        // The median target over the second half of each step, once the rounds caught up.
        let median = |step: u64| {
            let from = start + step * millis(twenty) + millis(twenty) / 2;
            let mut targets: Vec<u32> = run
                .details
                .targets
                .iter()
                .filter(|(t, _)| *t >= from && *t < from + millis(twenty) / 2)
                .map(|(_, target)| *target)
                .collect();
            targets.sort_unstable();
            targets[targets.len() / 2]
        };
        let (low, high, low_again) = (median(0), median(1), median(2));
        assert!(high >= 3 * low, "2/s -> {low}, 10/s -> {high}");
        assert!(low_again * 2 <= high, "back at 2/s -> {low_again}, was {high}");
        assert!(run.row.warm_hit_rate >= 0.99, "{:?}", run.row);
    }

    #[test]
    fn on_a_quiet_pool_the_reference_hands_out_dead_ids_and_heartbeats_prevent_them() {
        let quiet = profile("quiet", 60, Shape::Steady { rate: 0.01 });
        let reference = simulate(&quiet, Policy::Reference, &quick()).unwrap();
        let project = simulate(&quiet, Policy::Project, &quick()).unwrap();
        assert!(reference.row.dead_ids_handed_out > 0, "{:?}", reference.row);
        assert_eq!(project.row.dead_ids_handed_out, 0);
        assert!(project.details.heartbeats > 0);
        assert!(project.row.warm_hit_rate >= 0.99, "{:?}", project.row);
    }

    #[test]
    fn sessions_are_retired_before_their_max_lifetime_and_never_handed_out_past_it() {
        // One-hour lifetimes in the service and in the project's settings alike.
        let mut settings = quick();
        settings.service.max_lifetime = Duration::from_secs(3_600);
        settings.project_env.extend([
            ("SESSION_MAX_LIFETIME_SECS".to_string(), "3600".to_string()),
            ("RETIRE_SPREAD_SECS".to_string(), "600".to_string()),
        ]);
        // A claim every hour or so: pooled sessions grow old before anyone takes them.
        let quiet = profile("quiet", 240, Shape::Steady { rate: 0.0003 });
        let project = simulate(&quiet, Policy::Project, &settings).unwrap();
        assert!(project.details.retired > 0, "{:?}", project.details);
        assert!(project.details.stops >= project.details.retired);
        assert_eq!(project.row.dead_ids_handed_out, 0);
    }

    #[test]
    fn a_prewarm_window_absorbs_a_burst_above_the_creation_budget() {
        // One 5x burst at minute 25 of the clock, 40/s above a 20/s budget.
        let burst = profile(
            "burst",
            30,
            Shape::Bursts {
                base: 10.0,
                factor: 5.0,
                every: Duration::from_secs(30 * 60),
                length: Duration::from_secs(5 * 60),
                offset: Duration::from_secs(20 * 60),
            },
        );
        let reactive = Settings {
            prewarm_scale: 0.0,
            ..quick()
        };
        let without = simulate(&burst, Policy::Project, &reactive).unwrap();
        let with = simulate(&burst, Policy::Project, &quick()).unwrap();
        assert!(without.row.warm_hit_rate < 0.9, "{:?}", without.row);
        assert!(with.row.warm_hit_rate >= 0.99, "{:?}", with.row);
        assert_eq!(with.row.dead_ids_handed_out, 0);
        let peak = with.details.targets.iter().map(|(_, t)| *t).max();
        assert_eq!(peak, Some(9_250), "the window's target was in force");
    }

    #[test]
    fn without_a_pool_every_request_is_a_cold_start() {
        let steady = profile("t", 10, Shape::Steady { rate: 5.0 });
        let none = simulate(&steady, Policy::None, &quick()).unwrap();
        assert_eq!(none.row.warm_hit_rate, 0.0);
        assert!(none.row.p50_ms > 2_000, "{:?}", none.row);
        assert_eq!(none.row.idle_session_hours, 0.0);
    }
}

//! The discrete-event loop: events on the virtual clock, in time order, each run to
//! completion at its instant. The callers' side (claims, invokes, retries) is in `callers`,
//! replenish's side (execution environments, runs, paced warmups) in `warmups`.

mod affinity;
mod callers;
mod warmups;

use crate::cost::Pricing;
use crate::policy::Deployment;
use crate::world::{SimAgent, World};
use crate::{Details, Policy, Profile, Row, Run, Settings, SimError};
use agentcore_emulator::lifecycle::{LifecycleConfig, Model};
use futures::FutureExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warmpool_core::clock::{ManualClock, millis};
use warmpool_core::fakes::MemoryPool;
use warmpool_core::metrics::nearest_rank;
use warmpool_core::pool::claim::Claimer;
use warmpool_core::pool::quota::Pacer;
use warmpool_core::pool::target::WarmupTimes;
use warmpool_core::ports::{PoolQueue, ReplenishTrigger};
use warmpool_core::session::SessionId;

/// Claims ask for replacements through this; the engine turns each request into an event.
#[derive(Debug, Default)]
struct Requests(Mutex<Vec<u32>>);

impl Requests {
    fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ReplenishTrigger for Requests {
    async fn request(&self, count: u32) -> Result<(), warmpool_core::error::TriggerError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(count);
        Ok(())
    }
}

type SimClaimer = Claimer<Arc<MemoryPool>, Arc<Requests>, ManualClock>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Refill(u32),
    Maintain,
}

// Ordered only so that it can ride in the heap: (time, sequence) already decide the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
    /// The conversation this request is a turn of, with conversations on.
    conversation: Option<u32>,
}

/// The session a conversation holds under affinity, and its lease's clock.
struct Binding {
    session: SessionId,
    created_at: u64,
    last_use: u64,
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

pub(crate) struct Engine<'a> {
    profile: &'a Profile,
    policy: Policy,
    settings: &'a Settings,
    clock: ManualClock,
    queue: Arc<MemoryPool>,
    agent: SimAgent,
    claimer: Option<SimClaimer>,
    replacements: Arc<Requests>,
    deployment: Deployment,
    rng: StdRng,
    /// (time, sequence, event): in time order, and in order of scheduling at one instant.
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    scheduled: u64,
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
    creations_before: Option<u64>,
    creations_after: Option<u64>,
    /// Per conversation, the session its turns reuse while it is alive (affinity on).
    bindings: Vec<Option<Binding>>,
    details: Details,
}

/// Most events one run may process: far above what the longest profile needs.
const MAX_EVENTS: u64 = 200_000_000;
/// Arrivals between two additions to the progress counter.
const PROGRESS_STEP: usize = 4_096;
/// Work still in flight this long after the traffic ends is abandoned.
const DRAIN: Duration = Duration::from_secs(30 * 60);

fn ready<F: std::future::Future>(future: F, what: &'static str) -> Result<F::Output, SimError> {
    future.now_or_never().ok_or(SimError::Blocked(what))
}

impl<'a> Engine<'a> {
    pub(crate) fn new(profile: &'a Profile, policy: Policy, settings: &'a Settings) -> Result<Self, SimError> {
        let clock = ManualClock::at(settings.clock_origin_ms);
        let queue = Arc::new(MemoryPool::with_clock(Arc::new(clock.clone())));
        let lead_in = settings.clock_origin_ms + millis(settings.lead_in);
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
        let deployment = Deployment::new(profile, policy, settings)?;
        let claimer = deployment.claim.map(|policy| Claimer {
            queue: queue.clone(),
            trigger: replacements.clone(),
            clock: clock.clone(),
            policy,
        });
        let environments = (0..deployment.environments)
            .map(|_| Environment {
                pacer: Pacer::new(&deployment.budget),
                warmup_times: WarmupTimes::default(),
            })
            .collect();
        Ok(Self {
            profile,
            policy,
            settings,
            clock,
            queue,
            agent,
            claimer,
            replacements,
            rng: StdRng::seed_from_u64(settings.seed ^ 0x5eed_0002),
            events: BinaryHeap::new(),
            scheduled: 0,
            requests: Vec::new(),
            warms: Vec::new(),
            runs: Vec::new(),
            environments,
            idle_environments: (0..deployment.environments).collect(),
            waiting_jobs: VecDeque::new(),
            window,
            ttfb_ms: Vec::new(),
            warm_hits: 0,
            dead_ids: 0,
            throttles_before: None,
            creations_before: None,
            creations_after: None,
            bindings: Vec::new(),
            details: Details::default(),
            deployment,
        })
    }

    fn at(&mut self, time: u64, event: Event) {
        self.scheduled += 1;
        self.events.push(Reverse((time, self.scheduled, event)));
    }

    /// Runs to the end; every few thousand arrivals handled are added to `progress`.
    pub(crate) fn run(mut self, progress: Option<&AtomicU64>) -> Result<Run, SimError> {
        let (lead_in, seed) = (self.settings.lead_in, self.settings.seed);
        let arrivals: Vec<(u64, Option<u32>)> = match &self.settings.conversation {
            None => self
                .profile
                .arrivals(lead_in, seed)
                .into_iter()
                .map(|at| (at, None))
                .collect(),
            Some(shape) => shape
                .turns(self.profile, lead_in, seed)
                .into_iter()
                .map(|t| (t.at, Some(t.conversation)))
                .collect(),
        };
        let conversations = arrivals.iter().filter_map(|a| a.1).max().map_or(0, |c| c as usize + 1);
        self.bindings = (0..conversations).map(|_| None).collect();
        let origin = self.settings.clock_origin_ms;
        for (i, (arrived, conversation)) in arrivals.into_iter().enumerate() {
            let arrived = arrived + origin;
            self.requests.push(Request {
                arrived,
                session: None,
                from_pool: false,
                attempts: 0,
                conversation,
            });
            self.at(arrived, Event::Arrival(i));
        }
        match self.policy {
            Policy::None => {}
            Policy::Reference => {
                let fill = self.settings.reference_pool;
                self.start_run(None, fill, origin)?;
            }
            Policy::Project => {
                if self.settings.rounds {
                    self.at(origin, Event::Schedule);
                }
                if self.settings.initial_fill > 0 {
                    self.at(origin, Event::JobArrives(Job::Refill(self.settings.initial_fill)));
                }
            }
        }
        let stop_at = self.window.1 + millis(DRAIN);
        while let Some(Reverse((time, _, event))) = self.events.pop() {
            if time > stop_at {
                break;
            }
            self.details.events += 1;
            if self.details.events > MAX_EVENTS {
                return Err(SimError::Runaway(MAX_EVENTS));
            }
            if time >= self.window.0 && self.throttles_before.is_none() {
                let world = self.agent.world();
                let stats = world.model.stats();
                self.throttles_before = Some(stats.throttled);
                self.creations_before = Some(stats.creations);
            }
            if time >= self.window.1 && self.creations_after.is_none() {
                self.creations_after = Some(self.agent.world().model.stats().creations);
            }
            self.clock.set(time);
            if let (Event::Arrival(i), Some(progress)) = (&event, progress)
                && (i + 1) % PROGRESS_STEP == 0
            {
                progress.fetch_add(PROGRESS_STEP as u64, Ordering::Relaxed);
            }
            self.handle(time, event)?;
        }
        if let Some(progress) = progress {
            progress.fetch_add((self.requests.len() % PROGRESS_STEP) as u64, Ordering::Relaxed);
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
                if let Some(settings) = &self.deployment.maintenance {
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

    fn finish(mut self) -> Run {
        self.release_bindings();
        let world = self.agent.world();
        let throttles = world.model.stats().throttled - self.throttles_before.unwrap_or(0);
        let creations_after = self.creations_after.unwrap_or(world.model.stats().creations);
        self.details.creations = creations_after - self.creations_before.unwrap_or(0);
        let idle_session_hours = world.idle_session_hours();
        self.details.heartbeats_cold = world.heartbeats_cold;
        self.details.window = self.window;
        self.details.final_depth = ready(PoolQueue::depth(&*self.queue), "the pool's depth")
            .ok()
            .and_then(Result::ok)
            .map_or(0, |d| d.visible);
        self.details.stops = world.stops;
        drop(world);
        let requests = self.details.requests.max(1);
        let platform = self.settings.service.platform;
        let row = Row {
            profile: self.profile.name.clone(),
            policy: self.policy,
            platform,
            warm_hit_rate: self.warm_hits as f64 / requests as f64,
            dead_ids_handed_out: self.dead_ids,
            p50_ms: nearest_rank(&self.ttfb_ms, 50.0).unwrap_or(0),
            p99_ms: nearest_rank(&self.ttfb_ms, 99.0).unwrap_or(0),
            idle_session_hours,
            idle_cost_usd: Pricing::of(platform).idle_cost_usd(idle_session_hours),
            target_median: self.details.target_median(self.window.0),
            creation_throttles: throttles,
        };
        Run {
            row,
            details: self.details,
        }
    }
}

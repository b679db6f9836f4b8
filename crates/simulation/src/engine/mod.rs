//! The discrete-event loop: events on the virtual clock, in time order, each run to
//! completion at its instant. The callers' side (claims, invokes, retries) is in `callers`,
//! replenish's side (execution environments, runs, paced warmups) in `warmups`.

mod affinity;
mod callers;
mod tally;
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
use tally::{Histogram, Slots};
use warmpool_core::clock::{ManualClock, millis};
use warmpool_core::fakes::MemoryPool;
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

/// A request between its arrival and its answer.
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
    /// Every arrival (time, conversation) in time order, and the next one due: kept out of
    /// the heap, which then holds only the work in flight.
    arrivals: Vec<(u64, Option<u32>)>,
    next_arrival: usize,
    /// Requests in flight, in reused slots: a week has millions, a moment a few hundred.
    requests: Slots<Request>,
    warms: Slots<Warm>,
    runs: Slots<RunState>,
    /// Session IDs drawn so far: each warmup and each fresh session gets the next one.
    ids_drawn: u64,
    environments: Vec<Environment>,
    idle_environments: VecDeque<usize>,
    waiting_jobs: VecDeque<Job>,
    window: (u64, u64),
    ttfb_ms: Histogram,
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
/// Events between two sweeps of the ended sessions out of the service's books.
const FORGET_EVERY: u64 = 1 << 18;
/// Arrivals between two additions to the progress counter.
const PROGRESS_STEP: usize = 4_096;
/// Work still in flight this long after the traffic ends is abandoned.
const DRAIN: Duration = Duration::from_secs(30 * 60);

/// A bijection of `u64` that spreads consecutive numbers (the splitmix64 finaliser).
fn scramble(n: u64) -> u64 {
    let n = (n ^ (n >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let n = (n ^ (n >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    n ^ (n >> 31)
}

/// `n` as 16 lowercase hex digits (what `format!("{n:016x}")` writes, without its machinery).
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        let nibble = (n >> (shift * 4)) & 0xf;
        out.push(char::from(DIGITS[usize::from(u8::try_from(nibble).unwrap_or(0))]));
    }
}

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
            })
            .without_history(),
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
            arrivals: Vec::new(),
            next_arrival: 0,
            requests: Slots::default(),
            warms: Slots::default(),
            runs: Slots::default(),
            ids_drawn: 0,
            environments,
            idle_environments: (0..deployment.environments).collect(),
            waiting_jobs: VecDeque::new(),
            window,
            ttfb_ms: Histogram::default(),
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

    /// A new session ID, unique in the run and the same in every run of the same events
    /// (the service only needs them distinct; drawing UUIDs would cost a system call each).
    /// It opens with a scrambled form of its number, so that IDs differ in their first bytes
    /// and the service's lookups compare little.
    fn next_session_id(&mut self) -> SessionId {
        let n = self.ids_drawn;
        self.ids_drawn += 1;
        let mut id = String::with_capacity(48);
        push_hex(&mut id, scramble(n));
        id.push_str("-sim-");
        id.push_str(self.policy.name());
        id.push('-');
        push_hex(&mut id, n);
        SessionId::parse(id).unwrap_or_else(|_| SessionId::generate())
    }

    fn at(&mut self, time: u64, event: Event) {
        self.scheduled += 1;
        self.events.push(Reverse((time, self.scheduled, event)));
    }

    /// Runs to the end; every few thousand measured arrivals handled are added to `progress`.
    pub(crate) fn run(mut self, progress: Option<&AtomicU64>) -> Result<Run, SimError> {
        self.arrivals = self.arrivals();
        let conversations = self
            .arrivals
            .iter()
            .filter_map(|a| a.1)
            .max()
            .map_or(0, |c| c as usize + 1);
        self.bindings = (0..conversations).map(|_| None).collect();
        let origin = self.settings.clock_origin_ms;
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
        // Progress counts the measured requests, as the trace does; not the lead-in's.
        let measured = self.arrivals.partition_point(|a| a.0 < self.window.0)
            ..self.arrivals.partition_point(|a| a.0 < self.window.1);
        while let Some((time, event)) = self.next_event() {
            if time > stop_at {
                break;
            }
            self.details.events += 1;
            if self.details.events > MAX_EVENTS {
                return Err(SimError::Runaway(MAX_EVENTS));
            }
            if self.details.events.is_multiple_of(FORGET_EVERY) {
                self.agent.world().model.forget_ended(time);
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
                && measured.contains(i)
                && (i + 1 - measured.start) % PROGRESS_STEP == 0
            {
                progress.fetch_add(PROGRESS_STEP as u64, Ordering::Relaxed);
            }
            self.handle(time, event)?;
        }
        if let Some(progress) = progress {
            progress.fetch_add((measured.len() % PROGRESS_STEP) as u64, Ordering::Relaxed);
        }
        Ok(self.finish())
    }

    /// Every arrival on the virtual clock, sorted by time (stably: at one instant, in the
    /// order drawn, as they were scheduled before).
    fn arrivals(&self) -> Vec<(u64, Option<u32>)> {
        let (lead_in, seed) = (self.settings.lead_in, self.settings.seed);
        let origin = self.settings.clock_origin_ms;
        let mut arrivals: Vec<(u64, Option<u32>)> = match &self.settings.conversation {
            None => self
                .profile
                .arrivals(lead_in, seed)
                .into_iter()
                .map(|at| (at + origin, None))
                .collect(),
            Some(shape) => shape
                .turns(self.profile, lead_in, seed)
                .into_iter()
                .map(|t| (t.at + origin, Some(t.conversation)))
                .collect(),
        };
        arrivals.sort_by_key(|a| a.0);
        arrivals
    }

    /// The next arrival or the next scheduled event, whichever comes first; an arrival first
    /// at one instant, as when every arrival was scheduled before anything else.
    fn next_event(&mut self) -> Option<(u64, Event)> {
        let arrival = self.arrivals.get(self.next_arrival).map(|a| a.0);
        let scheduled = self.events.peek().map(|Reverse((time, _, _))| *time);
        match (arrival, scheduled) {
            (Some(at), next) if next.is_none_or(|time| at <= time) => {
                self.next_arrival += 1;
                Some((at, Event::Arrival(self.next_arrival - 1)))
            }
            _ => self.events.pop().map(|Reverse((time, _, event))| (time, event)),
        }
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
            p50_ms: self.ttfb_ms.nearest_rank(50.0).unwrap_or(0),
            p99_ms: self.ttfb_ms.nearest_rank(99.0).unwrap_or(0),
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

#[cfg(test)]
mod tests {
    #[test]
    fn session_ids_write_their_numbers_as_sixteen_hex_digits() {
        for n in [0, 1, 0xabc, u64::MAX, super::scramble(7)] {
            let mut written = String::new();
            super::push_hex(&mut written, n);
            assert_eq!(written, format!("{n:016x}"));
        }
    }
}

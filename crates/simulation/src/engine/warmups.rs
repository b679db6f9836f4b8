//! replenish's side: count and scheduled events wait for a free execution environment; a run
//! warms its sessions one by one at the environment's paced creation slots, retries what the
//! service refuses within the run's deadline, and pools what comes back warm.

use super::{Engine, Event, Job, RunState, Warm, ready};
use crate::SimError;
use crate::world::agent_error;
use warmpool_core::clock::{Clock, millis};
use warmpool_core::pool::maintenance;
use warmpool_core::pool::quota::spread;
use warmpool_core::ports::PoolQueue;
use warmpool_core::session::PooledSession;

impl Engine<'_> {
    pub(super) fn job_arrives(&mut self, now: u64, job: Job) -> Result<(), SimError> {
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
            Job::Refill(count) => self.room_for(env, count)?,
            Job::Maintain => {
                self.maintain(now, env)?;
                0
            }
        };
        if count == 0 {
            return Ok(false);
        }
        self.start_run(Some(env), count, now)?;
        Ok(true)
    }

    /// As replenish's count run: no more than the pool has room for.
    fn room_for(&self, env: usize, count: u32) -> Result<u32, SimError> {
        let Some(settings) = &self.deployment.maintenance else {
            return Ok(count);
        };
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
        Ok(count.min(sizing.room()))
    }

    /// The scheduled run in `env`: one maintenance round, whose top-up goes out as count
    /// events, as replenish sends it; the run itself warms nothing.
    fn maintain(&mut self, now: u64, env: usize) -> Result<(), SimError> {
        let Some(settings) = &self.deployment.maintenance else {
            return Ok(());
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
        self.details.depths.push((now, round.sizing.depth.visible));
        if now >= self.window.0 && now < self.window.1 {
            self.details.heartbeats += u64::from(round.sweep.heartbeats);
            self.details.retired += u64::from(round.sweep.retired);
            self.details.trimmed += u64::from(round.sweep.trimmed);
        }
        let budget = &self.deployment.budget;
        let spacing = millis(budget.dispatch_spacing());
        for (i, count) in spread(round.top_up, budget, self.deployment.max_count)
            .into_iter()
            .enumerate()
        {
            let at = now + millis(self.settings.trigger_delay) + i as u64 * spacing;
            self.at(at, Event::JobArrives(Job::Refill(count)));
        }
        Ok(())
    }

    pub(super) fn start_run(&mut self, env: Option<usize>, count: u32, now: u64) -> Result<(), SimError> {
        let run = self.runs.insert(RunState {
            env,
            pending: count,
            deadline: now + millis(self.settings.run_timeout),
        });
        if count == 0 {
            return self.run_done(run);
        }
        for _ in 0..count {
            let session = self.next_session_id();
            let warm = self.warms.insert(Warm {
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

    pub(super) fn attempt(&mut self, now: u64, warm: usize) -> Result<(), SimError> {
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
                let pause = self.jitter(self.deployment.warmup.backoff_ceiling(attempt));
                let deadline = self.runs[self.warms[warm].run].deadline;
                if !error.is_retryable() || now + pause >= deadline {
                    self.warm_done(warm)
                } else {
                    self.schedule_attempt(warm, now + pause)
                }
            }
        }
    }

    pub(super) fn warmup_returns(&mut self, warm: usize, created: u64, latency_ms: u64) -> Result<(), SimError> {
        let session = self.warms[warm].session.clone();
        // As warm_one: enqueued once warm, stamped with the moment the warmup started.
        ready(
            PoolQueue::enqueue(&*self.queue, &PooledSession::new(session.clone(), created, created)),
            "an enqueue",
        )??;
        self.agent.world().pooled(session, created);
        if let Some(env) = self.runs[self.warms[warm].run].env {
            self.environments[env].warmup_times.record([latency_ms]);
        }
        self.warm_done(warm)
    }

    fn warm_done(&mut self, warm: usize) -> Result<(), SimError> {
        let Some(Warm { run, .. }) = self.warms.remove(warm) else {
            return Ok(());
        };
        self.runs[run].pending = self.runs[run].pending.saturating_sub(1);
        if self.runs[run].pending == 0 {
            return self.run_done(run);
        }
        Ok(())
    }

    /// The environment takes the next waiting event now, or waits for one. A loop, not a
    /// recursion: a long queue of events that need no warmup finishes here at once.
    fn run_done(&mut self, run: usize) -> Result<(), SimError> {
        let Some(env) = self.runs.remove(run).and_then(|r| r.env) else {
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
}

//! The callers' side: a request claims from the pool (or starts a new session), then invokes
//! its session after the claim's overhead, retrying a throttled cold start as the SDK does.

use super::{Engine, Event, Job, Request, ready};
use crate::world::agent_error;
use crate::{Policy, SimError};
use rand::RngExt;
use std::time::Duration;
use warmpool_core::clock::millis;
use warmpool_core::pool::claim::{ClaimError, Source};

impl Engine<'_> {
    pub(super) fn arrive(&mut self, now: u64, arrival: usize) -> Result<(), SimError> {
        let request = self.requests.insert(Request {
            arrived: now,
            session: None,
            from_pool: false,
            attempts: 0,
            conversation: self.arrivals[arrival].1,
        });
        let counted = now >= self.window.0 && now < self.window.1;
        if let Some(session) = self.reusable(request, now) {
            // get-session answers `"source": "reused"`: one lease read, no pool message.
            self.details.reused += u64::from(counted);
            self.requests[request].session = Some(session);
            self.at(now + millis(self.settings.claim_overhead), Event::CallerInvoke(request));
            return Ok(());
        }
        self.details.claims += u64::from(counted);
        let Some(claimer) = &self.claimer else {
            let session = self.next_session_id();
            self.bind(request, &session, now, now);
            self.requests[request].session = Some(session);
            self.caller_invoke(now, request);
            return Ok(());
        };
        let claim = ready(claimer.claim(), "a claim")?.map_err(|e| match e {
            ClaimError::Queue(q) => SimError::Queue(q),
            ClaimError::PoolEmpty => SimError::Blocked("an empty pool with fallback on"),
        })?;
        if counted {
            self.details.stale_discarded_at_claim += u64::from(claim.stale_discarded);
            self.details.fresh_fallbacks += u64::from(claim.session.source == Source::Fresh);
        }
        let created_at = match claim.session.source {
            Source::Pool => claim.session.created_at,
            _ => now,
        };
        self.bind(request, &claim.session.session_id, created_at, now);
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

    pub(super) fn caller_invoke(&mut self, now: u64, request: usize) {
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
                self.used(request, &session, now);
                let Some(answered) = self.requests.remove(request) else {
                    return;
                };
                if counted {
                    self.details.requests += 1;
                    self.ttfb_ms.record(now + millis(admission.latency) - answered.arrived);
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
                    self.requests.remove(request);
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

    pub(super) fn jitter(&mut self, ceiling: Duration) -> u64 {
        self.rng.random_range(0..=millis(ceiling))
    }
}

//! The claim soak: many concurrent claimers against an in-memory pool that, like moto, accepts
//! a receipt handle after its visibility ended, with the clock jumping past the visibility
//! timeout between some receives and their deletes (a Lambda frozen mid-claim). A message
//! whose visibility ended can be received again by another claimer; if both deletes succeed,
//! only the claimer's own timing can tell that its claim is void.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warmpool_core::clock::{Clock, ManualClock};
use warmpool_core::error::QueueError;
use warmpool_core::fakes::{MemoryPool, RecordingTrigger};
use warmpool_core::pool::Lifecycle;
use warmpool_core::pool::claim::{ClaimPolicy, Claimer, OnEmpty, Source};
use warmpool_core::ports::{PoolDepth, PoolQueue, Received};
use warmpool_core::session::{PooledSession, SessionId};

#[derive(Debug, Clone)]
pub struct ClaimSoak {
    pub claims: u64,
    pub claimers: usize,
    /// Sessions kept in the pool (refilled after every claim).
    pub pool_size: usize,
    /// Chance that the clock jumps past the visibility timeout right after a receive.
    pub jump_rate: f64,
    pub seed: u64,
}

impl Default for ClaimSoak {
    fn default() -> Self {
        Self {
            claims: 100_000,
            claimers: 32,
            pool_size: 64,
            jump_rate: 0.02,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimReport {
    pub claims: u64,
    pub from_pool: u64,
    pub double_handouts: u64,
    pub clock_jumps: u64,
    pub void_claims: u64,
}

/// The pool as a frozen claimer sees it: after some receives the clock jumps past the
/// visibility timeout and the claimer yields, so others receive the re-visible message first.
struct JumpingPool {
    inner: MemoryPool,
    clock: ManualClock,
    rng: Mutex<StdRng>,
    jump_rate: f64,
    jumps: Mutex<u64>,
}

impl PoolQueue for JumpingPool {
    async fn receive(&self, max: u8, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let received = self.inner.receive(max, wait, visibility).await?;
        let jump = !received.is_empty() && self.rng.lock().expect("rng").random::<f64>() < self.jump_rate;
        if jump {
            *self.jumps.lock().expect("jumps") += 1;
            self.clock.advance(visibility + Duration::from_secs(1));
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
        Ok(received)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }

    async fn enqueue(&self, session: &PooledSession) -> Result<(), QueueError> {
        self.inner.enqueue(session).await
    }

    async fn depth(&self) -> Result<PoolDepth, QueueError> {
        self.inner.depth().await
    }
}

fn long_lived() -> Lifecycle {
    // Clock jumps add up to hours of virtual time: sessions must not go stale meanwhile, so
    // that every claim is a real test of the handout rule rather than a stale discard.
    Lifecycle {
        idle_timeout: Duration::from_secs(10_000_000),
        max_lifetime: Duration::from_secs(10_000_000),
        safety_margin: Duration::from_secs(60),
    }
}

fn pooled(clock: &ManualClock) -> PooledSession {
    let now = clock.now_ms();
    PooledSession::new(SessionId::generate(), now, now)
}

pub async fn run(soak: &ClaimSoak) -> ClaimReport {
    let clock = ManualClock::at(1_000_000);
    let inner = MemoryPool::with_clock(Arc::new(clock.clone()));
    inner.accept_stale_receipts();
    for _ in 0..soak.pool_size {
        inner.push(&pooled(&clock));
    }
    let claimer = Arc::new(Claimer {
        queue: JumpingPool {
            inner,
            clock: clock.clone(),
            rng: Mutex::new(StdRng::seed_from_u64(soak.seed)),
            jump_rate: soak.jump_rate,
            jumps: Mutex::new(0),
        },
        trigger: RecordingTrigger::default(),
        clock: clock.clone(),
        policy: ClaimPolicy {
            lifecycle: long_lived(),
            wait: Duration::ZERO,
            on_empty: OnEmpty::Fresh,
            ..ClaimPolicy::default()
        },
    });
    let handed: Arc<Mutex<HashMap<SessionId, u32>>> = Arc::default();
    let per_claimer = soak.claims / soak.claimers as u64;
    let mut tasks = Vec::new();
    for _ in 0..soak.claimers {
        let (claimer, handed, clock) = (claimer.clone(), handed.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            let mut from_pool = 0u64;
            for _ in 0..per_claimer {
                let Ok(claim) = claimer.claim().await else { continue };
                if claim.session.source == Source::Pool {
                    from_pool += 1;
                    *handed
                        .lock()
                        .expect("handed")
                        .entry(claim.session.session_id)
                        .or_insert(0) += 1;
                }
                for _ in 0..claim.consumed {
                    claimer.queue.inner.push(&pooled(&clock));
                }
            }
            from_pool
        }));
    }
    let mut from_pool = 0;
    for task in tasks {
        from_pool += task.await.expect("claimer task");
    }
    let double_handouts = handed.lock().expect("handed").values().map(|n| u64::from(n - 1)).sum();
    let clock_jumps = *claimer.queue.jumps.lock().expect("jumps");
    ClaimReport {
        claims: per_claimer * soak.claimers as u64,
        from_pool,
        double_handouts,
        clock_jumps,
        void_claims: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn claims_through_clock_jumps_past_the_visibility_never_hand_one_session_out_twice() {
        let report = run(&ClaimSoak {
            claims: 4_000,
            claimers: 16,
            pool_size: 8,
            jump_rate: 0.05,
            seed: 7,
        })
        .await;

        assert!(report.clock_jumps > 50, "the soak must really jump: {report:?}");
        assert!(report.from_pool > 1_000, "{report:?}");
        assert_eq!(report.double_handouts, 0, "{report:?}");
    }
}

//! The get-session paths that go through the lease table: a handout (replayed, reused, or
//! claimed and bound) and a release.

use crate::{FUNCTION, GetSession, GetSessionError};
use serde::Serialize;
use tokio::time::Instant;
use tracing::info;
use warmpool_core::clock::Clock;
use warmpool_core::lease::UserId;
use warmpool_core::lease::handout::{Handout, HandoutKind, LeaseError, Request};
use warmpool_core::lease::ports::LeaseTable;
use warmpool_core::metrics::MetricSet;
use warmpool_core::pool::claim::{ClaimError, ClaimedSession};
use warmpool_core::ports::{AgentRuntime, PoolQueue, ReplenishTrigger};
use warmpool_core::session::SessionId;

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseAnswer {
    pub released: SessionId,
    pub user_id: UserId,
    /// The lease had ended before: this call repeated the stop.
    pub already_ended: bool,
}

impl From<LeaseError> for GetSessionError {
    fn from(error: LeaseError) -> Self {
        match error {
            LeaseError::Claim(ClaimError::PoolEmpty) => Self::PoolEmpty,
            LeaseError::Claim(ClaimError::Queue(e)) => Self::PoolUnavailable(e),
            other => Self::Lease(other),
        }
    }
}

impl<Q, T, C, L, A> GetSession<Q, T, C, L, A>
where
    Q: PoolQueue,
    T: ReplenishTrigger,
    C: Clock,
    L: LeaseTable,
    A: AgentRuntime,
{
    pub(crate) async fn leased_handout(&self, request: &Request) -> Result<ClaimedSession, GetSessionError> {
        let Some(leases) = &self.leases else {
            return Err(GetSessionError::LeasesOff);
        };
        let started = Instant::now();
        let result = leases.handout(&self.claimer, &self.versions, request).await;
        let latency_ms = warmpool_core::clock::millis(started.elapsed());
        let now = self.claimer.clock.now_ms();
        let handout: Handout = match result {
            Ok(handout) => handout,
            Err(error) => {
                let empty = matches!(error, LeaseError::Claim(ClaimError::PoolEmpty));
                MetricSet::new(FUNCTION, &self.pool_name)
                    .count("ClaimPoolEmpty", u32::from(empty))
                    .count("LeaseErrors", u32::from(!empty))
                    .emit(now);
                return Err(error.into());
            }
        };
        match &handout.claim {
            Some(claim) => self.emit_claim(claim, latency_ms, now, |m| lease_counts(m, &handout)),
            None => lease_counts(MetricSet::new(FUNCTION, &self.pool_name), &handout)
                .millis("ClaimLatency", latency_ms as f64)
                .emit(now),
        }
        info!(
            session = %handout.answer.session_id.log_id(&self.claimer.policy.log_key),
            source = handout.answer.source.label(),
            kind = ?handout.kind,
            conflicts = handout.conflicts,
            correlation_id = request.correlation.as_ref().map(|c| c.as_str()).unwrap_or(""),
            latency_ms,
            "session handed out under a lease"
        );
        Ok(handout.answer)
    }

    pub(crate) async fn release(
        &self,
        session_id: &SessionId,
        user: &UserId,
    ) -> Result<ReleaseAnswer, GetSessionError> {
        let Some(leases) = &self.leases else {
            return Err(GetSessionError::LeasesOff);
        };
        let now = self.claimer.clock.now_ms();
        let result = leases.release(session_id, user, now).await;
        MetricSet::new(FUNCTION, &self.pool_name)
            .count("Releases", u32::from(result.is_ok()))
            .count("ReleasesRefused", u32::from(result.is_err()))
            .emit(now);
        let released = result?;
        info!(
            session = %session_id.log_id(&self.claimer.policy.log_key),
            already_ended = released.already_ended,
            "lease released and session stopped"
        );
        Ok(ReleaseAnswer {
            released: session_id.clone(),
            user_id: user.clone(),
            already_ended: released.already_ended,
        })
    }
}

fn lease_counts(metrics: MetricSet, handout: &Handout) -> MetricSet {
    metrics
        .count("ClaimReused", u32::from(handout.kind == HandoutKind::Reused))
        .count("LeaseReplays", u32::from(handout.kind == HandoutKind::Replayed))
        .count("LeaseConflicts", handout.conflicts)
        .count("SessionsDisposed", handout.disposed)
}

//! get-session's side of leases: a handout (replayed for a correlation ID, reused for a user,
//! or claimed from the pool and bound), and a release.
//!
//! Races are decided by the table: each write is conditioned on what was read, and a writer
//! that lost reads again (at most [`ROUNDS`] times). A session claimed from the pool for a
//! binding that then lost its race was never handed to anyone: it is stopped ([`Leases::dispose`]),
//! so no pooled session is lost without a stop or handed to two callers.

use super::ports::LeaseTable;
use super::{AuditEvent, AuditRecord, Correlation, EndReason, Ending, Expect, Lease, LeaseOp, LeaseSettings, UserId};
use super::{CorrelationId, Lookup};
use crate::clock::{Clock, millis};
use crate::error::TableError;
use crate::pool::claim::{Claim, ClaimError, ClaimedSession, Claimer, Source};
use crate::pool::version::VersionWatch;
use crate::ports::{AgentRuntime, PoolQueue, ReplenishTrigger};
use crate::session::{LogKey, SessionId};
use crate::stop::{STOP_BACKOFF, StopOutcome, stop_until_gone};
use std::time::Duration;
use tracing::{error, warn};

/// Reads and writes one request may go through before it gives up on a contended lease.
pub const ROUNDS: u32 = 3;
/// What a stop inside a get-session call may take: the caller is waiting.
const STOP_BUDGET: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Claim(ClaimError),
    #[error("the lease changed under {ROUNDS} reads in a row; try again")]
    Contention,
    #[error("the session is not leased to this user")]
    NotHolder,
    #[error("the lease ended but the session did not stop yet ({0}); release it again to retry")]
    StopFailed(String),
}

impl LeaseError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Table(e) => e.is_retryable(),
            Self::Claim(e) => e.is_retryable(),
            Self::Contention | Self::StopFailed(_) => true,
            Self::NotHolder => false,
        }
    }
}

/// What a handout request names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub user: Option<UserId>,
    pub correlation: Option<CorrelationId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoutKind {
    /// A new session, from the pool or fresh, now leased.
    Claimed,
    /// The user's live session.
    Reused,
    /// The answer an earlier call under the same correlation ID got.
    Replayed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handout {
    pub answer: ClaimedSession,
    pub kind: HandoutKind,
    /// The claim behind a [`HandoutKind::Claimed`] answer (for its metrics).
    pub claim: Option<Claim>,
    /// Writes that lost a race and were read again.
    pub conflicts: u32,
    /// Sessions claimed for a lost race and stopped.
    pub disposed: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// The lease had ended before (an earlier release, or the sweep); the stop was repeated.
    pub already_ended: bool,
}

/// Which item of a write proves it landed.
enum Mine<'a> {
    User(&'a UserId, &'a str),
    Session(&'a SessionId, &'a str),
}

pub struct Leases<L, A> {
    pub table: L,
    /// Stops released and disposed sessions.
    pub agent: A,
    pub settings: LeaseSettings,
    pub log_key: LogKey,
}

impl<L: LeaseTable, A: AgentRuntime> Leases<L, A> {
    pub async fn handout<Q, T, C>(
        &self,
        claimer: &Claimer<Q, T, C>,
        versions: &VersionWatch,
        request: &Request,
    ) -> Result<Handout, LeaseError>
    where
        Q: PoolQueue,
        T: ReplenishTrigger,
        C: Clock,
    {
        let (mut conflicts, mut disposed) = (0, 0);
        for _ in 0..ROUNDS {
            let now = claimer.clock.now_ms();
            let found = self
                .table
                .lookup(request.user.as_ref(), request.correlation.as_ref(), None)
                .await?;
            let done = |answer, kind, claim| Handout {
                answer,
                kind,
                claim,
                conflicts,
                disposed,
            };
            if let Some(earlier) = found.correlation.filter(|c| now < c.until) {
                return Ok(done(earlier.answer, HandoutKind::Replayed, None));
            }
            let live = found.user.clone().filter(|l| self.settings.is_live(l, now));
            if let (Some(user), Some(lease)) = (&request.user, live) {
                match self.reuse(user, lease, request, now).await? {
                    Some(answer) => return Ok(done(answer, HandoutKind::Reused, None)),
                    None => {
                        conflicts += 1;
                        continue;
                    }
                }
            }
            let claim = claimer.claim_with(versions).await.map_err(LeaseError::Claim)?;
            match self.bind(&claim.session, found.user, request, now).await {
                Ok(Some(answer)) => return Ok(done(answer, HandoutKind::Claimed, Some(claim))),
                Ok(None) => {
                    conflicts += 1;
                    disposed += 1;
                    self.dispose(&claim.session, now).await;
                }
                Err(error) => {
                    // Not recorded, so never to be handed out: it goes rather than idles.
                    self.dispose(&claim.session, now).await;
                    return Err(error);
                }
            }
        }
        Err(LeaseError::Contention)
    }

    /// The user's live lease, used once more: `None` if it changed since it was read.
    async fn reuse(
        &self,
        user: &UserId,
        lease: Lease,
        request: &Request,
        now: u64,
    ) -> Result<Option<ClaimedSession>, LeaseError> {
        let expect = Expect::LiveFor(lease.session_id.clone());
        let next = self.settings.rewritten(Lease {
            last_use_at: now,
            ..lease
        });
        let answer = next.answer(Source::Reused);
        let mut ops = vec![self.audit(AuditEvent::Reuse, &next, request.correlation.as_ref(), now)];
        ops.extend(self.correlate(request, &answer, now, &next.write_id));
        let write_id = next.write_id.clone();
        ops.push(LeaseOp::User { lease: next, expect });
        let landed = self.commit(&ops, Mine::User(user, &write_id)).await?;
        Ok(landed.then_some(answer))
    }

    /// Leases a just-claimed session: `None` if another call won the user or correlation ID.
    async fn bind(
        &self,
        claimed: &ClaimedSession,
        previous: Option<Lease>,
        request: &Request,
        now: u64,
    ) -> Result<Option<ClaimedSession>, LeaseError> {
        let lease = self.settings.rewritten(Lease {
            session_id: claimed.session_id.clone(),
            user_id: request.user.clone(),
            source: claimed.source,
            created_at: claimed.created_at,
            last_ping_at: claimed.last_ping_at,
            bound_at: now,
            last_use_at: now,
            ended: None,
            stop_pending: false,
            due_at: None,
            write_id: String::new(),
        });
        let answer = lease.answer(claimed.source);
        let mut ops = vec![self.audit(AuditEvent::Handout, &lease, request.correlation.as_ref(), now)];
        ops.extend(self.correlate(request, &answer, now, &lease.write_id));
        if request.user.is_some() {
            // The user item carries a user's live lease; the session item only records whose
            // it is, outside the sweep's index.
            ops.push(LeaseOp::Session {
                lease: Lease {
                    due_at: None,
                    ..lease.clone()
                },
                expect: Expect::Absent,
            });
            ops.push(LeaseOp::User {
                lease: lease.clone(),
                expect: previous.map_or(Expect::Absent, |p| Expect::Write(p.write_id)),
            });
        } else {
            ops.push(LeaseOp::Session {
                lease: lease.clone(),
                expect: Expect::Absent,
            });
        }
        let landed = self
            .commit(&ops, Mine::Session(&lease.session_id, &lease.write_id))
            .await?;
        Ok(landed.then_some(answer))
    }

    /// Ends the holder's lease and stops its session now.
    pub async fn release(&self, session_id: &SessionId, user: &UserId, now: u64) -> Result<Released, LeaseError> {
        for _ in 0..ROUNDS {
            let found: Lookup = self.table.lookup(Some(user), None, Some(session_id)).await?;
            let holds = found.session.as_ref().is_some_and(|s| s.user_id.as_ref() == Some(user));
            if !holds {
                return Err(LeaseError::NotHolder);
            }
            // The user's current lease, unless they were bound to another session since (then
            // this lease is over already, but its holder still wants the session gone).
            let current = found.user.filter(|l| &l.session_id == session_id);
            let Some(lease) = current.clone().filter(|l| l.ended.is_none()) else {
                if current.is_some_and(|l| l.ended.map(|e| e.reason) == Some(EndReason::Released) && !l.stop_pending) {
                    return Ok(Released { already_ended: true });
                }
                self.stop(session_id).await?;
                return Ok(Released { already_ended: true });
            };
            let replaces = lease.write_id.clone();
            let ended = self.settings.rewritten(Lease {
                ended: Some(Ending {
                    at: now,
                    reason: EndReason::Released,
                }),
                stop_pending: true,
                ..lease
            });
            let ops = [
                self.audit(AuditEvent::Release, &ended, None, now),
                LeaseOp::User {
                    lease: ended.clone(),
                    expect: Expect::Write(replaces),
                },
            ];
            if !self.commit(&ops, Mine::User(user, &ended.write_id)).await? {
                continue;
            }
            self.stop(session_id).await?;
            self.mark_stopped(ended).await;
            return Ok(Released { already_ended: false });
        }
        Err(LeaseError::Contention)
    }

    async fn stop(&self, session_id: &SessionId) -> Result<(), LeaseError> {
        match stop_until_gone(&self.agent, session_id, STOP_BUDGET, &STOP_BACKOFF, &self.log_key).await {
            StopOutcome::Stopped { .. } | StopOutcome::Gone { .. } => Ok(()),
            StopOutcome::Refused(e) | StopOutcome::GaveUp { last: e, .. } => Err(LeaseError::StopFailed(e.to_string())),
        }
    }

    /// The stop went through: the sweep has nothing left to do. If this write fails, the sweep
    /// stops the session once more, which is harmless.
    async fn mark_stopped(&self, ended: Lease) {
        let replaces = ended.write_id.clone();
        let done = self.settings.rewritten(Lease {
            stop_pending: false,
            ..ended
        });
        if let Err(error) = self
            .table
            .commit(&[LeaseOp::User {
                lease: done,
                expect: Expect::Write(replaces),
            }])
            .await
        {
            warn!(%error, "could not record that a released session stopped; the sweep stops it again");
        }
    }

    /// Stops a claimed session that lost its binding race. If the stop does not go through,
    /// the session is recorded as an ended lease owing a stop, for the sweep.
    async fn dispose(&self, claimed: &ClaimedSession, now: u64) {
        let session = claimed.session_id.log_id(&self.log_key);
        if self.stop(&claimed.session_id).await.is_ok() {
            return;
        }
        let orphan = self.settings.rewritten(Lease {
            session_id: claimed.session_id.clone(),
            user_id: None,
            source: claimed.source,
            created_at: claimed.created_at,
            last_ping_at: claimed.last_ping_at,
            bound_at: now,
            last_use_at: now,
            ended: Some(Ending {
                at: now,
                reason: EndReason::Abandoned,
            }),
            stop_pending: true,
            due_at: None,
            write_id: String::new(),
        });
        if let Err(error) = self
            .table
            .commit(&[LeaseOp::Session {
                lease: orphan,
                expect: Expect::Absent,
            }])
            .await
        {
            error!(%session, %error, "an unbound session could not be stopped nor recorded; it idles out, handed to nobody");
        }
    }

    fn correlate(&self, request: &Request, answer: &ClaimedSession, now: u64, write_id: &str) -> Option<LeaseOp> {
        request.correlation.as_ref().map(|id| {
            LeaseOp::Correlate(Correlation {
                id: id.clone(),
                answer: answer.clone(),
                at: now,
                until: now + millis(self.settings.correlation_window),
                write_id: write_id.to_string(),
            })
        })
    }

    pub fn audit(&self, event: AuditEvent, lease: &Lease, correlation: Option<&CorrelationId>, now: u64) -> LeaseOp {
        LeaseOp::Audit(audit_record(
            &self.settings,
            &self.log_key,
            event,
            lease,
            correlation,
            now,
        ))
    }

    /// Commits `ops`; on a failed condition or an unknown outcome, reads back whether the
    /// write is there (the SDK may have retried one that landed). `Ok(false)`: another
    /// writer's state is there.
    async fn commit(&self, ops: &[LeaseOp], mine: Mine<'_>) -> Result<bool, LeaseError> {
        let error = match self.table.commit(ops).await {
            Ok(()) => return Ok(true),
            Err(error) if error.is_condition_failed() || error.is_retryable() => error,
            Err(error) => return Err(error.into()),
        };
        let landed = match mine {
            Mine::User(user, id) => self
                .table
                .lookup(Some(user), None, None)
                .await?
                .user
                .is_some_and(|l| l.write_id == id),
            Mine::Session(session, id) => self
                .table
                .lookup(None, None, Some(session))
                .await?
                .session
                .is_some_and(|l| l.write_id == id),
        };
        match landed {
            true => Ok(true),
            false if error.is_condition_failed() => Ok(false),
            false => Err(error.into()),
        }
    }
}

/// An audit record of `event` on `lease` at `now`, expiring after the retention.
pub fn audit_record(
    settings: &LeaseSettings,
    log_key: &LogKey,
    event: AuditEvent,
    lease: &Lease,
    correlation: Option<&CorrelationId>,
    now: u64,
) -> AuditRecord {
    AuditRecord {
        at: now,
        event,
        source: if event == AuditEvent::Reuse {
            Source::Reused
        } else {
            lease.source
        },
        user_id: lease.user_id.clone(),
        correlation_id: correlation.cloned(),
        session: lease.session_id.log_id(log_key).to_string(),
        id: lease.write_id.clone(),
        expires_at: (now + millis(settings.audit_retention)) / 1000,
    }
}

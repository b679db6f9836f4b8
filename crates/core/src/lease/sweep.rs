//! replenish's side of leases: each scheduled run closes leases whose session can no longer
//! be alive, ends and stops those held past the longest conversation allowed, retries stops
//! that did not go through, and counts the sessions in use.

use super::handout::audit_record;
use super::ports::LeaseTable;
use super::{AuditEvent, EndReason, Ending, Expect, Lease, LeaseItem, LeaseOp, LeaseSettings};
use crate::error::TableError;
use crate::ports::AgentRuntime;
use crate::session::LogKey;
use crate::stop::stop_before;
use tokio::time::Instant;
use tracing::warn;

/// Open leases counted at most, per run.
pub const MAX_COUNTED: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub expired: u32,
    pub abandoned: u32,
    pub stopped: u32,
    pub stop_failed: u32,
    /// Changed since the due index was read: the next run sees them as they are.
    pub changed: u32,
    /// Due leases left for the next run (the run's time ran out).
    pub deferred: u32,
    pub in_use: u64,
}

pub struct LeaseSweep<'a, L, A> {
    pub table: &'a L,
    pub agent: &'a A,
    pub settings: &'a LeaseSettings,
    pub log_key: &'a LogKey,
}

impl<L: LeaseTable, A: AgentRuntime> LeaseSweep<'_, L, A> {
    pub async fn run(&self, now: u64, limit: usize, deadline: Instant) -> Result<SweepReport, TableError> {
        let mut report = SweepReport::default();
        for (item, lease) in self.table.due(now, limit).await? {
            if Instant::now() >= deadline {
                report.deferred += 1;
                continue;
            }
            if let Err(error) = self.settle(item, lease, now, deadline, &mut report).await {
                warn!(%error, "a due lease could not be settled; the next run retries");
            }
        }
        report.in_use = self.table.open_count(MAX_COUNTED).await?;
        Ok(report)
    }

    async fn settle(
        &self,
        item: LeaseItem,
        lease: Lease,
        now: u64,
        deadline: Instant,
        report: &mut SweepReport,
    ) -> Result<(), TableError> {
        let settings = self.settings;
        let over = lease.bound_at + crate::clock::millis(settings.max_conversation);
        let (reason, event) = match lease.ended {
            Some(_) if lease.stop_pending => return self.stop(item, lease, deadline, report).await,
            Some(_) => return Ok(()),
            None if now >= settings.alive_until(&lease) => (EndReason::Expired, AuditEvent::Expire),
            None if now >= over => (EndReason::Abandoned, AuditEvent::Abandon),
            None => return Ok(()),
        };
        let replaces = lease.write_id.clone();
        let ended = settings.rewritten(Lease {
            ended: Some(Ending { at: now, reason }),
            // An expired session is gone already; an abandoned one is alive and must go.
            stop_pending: reason == EndReason::Abandoned,
            ..lease
        });
        let audit = audit_record(settings, self.log_key, event, &ended, None, now);
        match self
            .table
            .commit(&[LeaseOp::Audit(audit), op(item, ended.clone(), replaces)])
            .await
        {
            Ok(()) => {}
            Err(error) if error.is_condition_failed() => {
                report.changed += 1;
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        match reason {
            EndReason::Expired => report.expired += 1,
            _ => {
                report.abandoned += 1;
                self.stop(item, ended, deadline, report).await?;
            }
        }
        Ok(())
    }

    async fn stop(
        &self,
        item: LeaseItem,
        lease: Lease,
        deadline: Instant,
        report: &mut SweepReport,
    ) -> Result<(), TableError> {
        if !stop_before(self.agent, &lease.session_id, deadline, self.log_key)
            .await
            .ended()
        {
            // Still owed: due again after the retry pause.
            report.stop_failed += 1;
            return Ok(());
        }
        report.stopped += 1;
        let replaces = lease.write_id.clone();
        let done = self.settings.rewritten(Lease {
            stop_pending: false,
            ..lease
        });
        match self.table.commit(&[op(item, done, replaces)]).await {
            Err(error) if !error.is_condition_failed() => Err(error),
            _ => Ok(()),
        }
    }
}

fn op(item: LeaseItem, lease: Lease, replaces: String) -> LeaseOp {
    match item {
        LeaseItem::User => LeaseOp::User {
            lease,
            expect: Expect::Write(replaces),
        },
        LeaseItem::Session => LeaseOp::Session {
            lease,
            expect: Expect::Write(replaces),
        },
    }
}

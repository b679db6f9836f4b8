//! An in-memory lease table with the DynamoDB adapter's conditions, for unit tests of the
//! decisions; the adapter itself is tested against moto.

use super::ports::{AuditQuery, LeaseTable};
use super::{AuditRecord, Correlation, CorrelationId, Expect, Lease, LeaseItem, LeaseOp, Lookup, UserId};
use crate::error::{TableError, TableErrorKind};
use crate::session::SessionId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserId, Lease>,
    sessions: HashMap<SessionId, Lease>,
    correlations: HashMap<CorrelationId, Correlation>,
    audit: Vec<AuditRecord>,
}

#[derive(Debug, Default)]
pub struct MemoryLeaseTable {
    state: Mutex<State>,
    /// The next this many commits land but answer with a transport error (a lost answer).
    lose_answers: AtomicU32,
    commits: AtomicU32,
    lookups: AtomicU32,
}

impl MemoryLeaseTable {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lose_next_answers(&self, n: u32) {
        self.lose_answers.store(n, Ordering::SeqCst);
    }

    pub fn user(&self, user: &UserId) -> Option<Lease> {
        self.state().users.get(user).cloned()
    }

    pub fn session(&self, session: &SessionId) -> Option<Lease> {
        self.state().sessions.get(session).cloned()
    }

    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.state().audit.clone()
    }

    /// Writes a lease as it is, with no condition: a test's setup.
    pub fn put_user(&self, lease: Lease) {
        let user = lease.user_id.clone().expect("a user lease");
        self.state().sessions.insert(lease.session_id.clone(), lease.clone());
        self.state().users.insert(user, lease);
    }

    /// (commits, lookups) so far.
    pub fn calls(&self) -> (u32, u32) {
        (self.commits.load(Ordering::SeqCst), self.lookups.load(Ordering::SeqCst))
    }
}

fn failed(what: &str) -> TableError {
    TableError::new(
        "commit",
        TableErrorKind::ConditionFailed,
        format!("condition failed: {what}"),
    )
}

fn admits(stored: Option<&Lease>, expect: &Expect) -> bool {
    match (stored, expect) {
        (None, Expect::Absent) => true,
        (Some(stored), Expect::Write(id)) => &stored.write_id == id,
        (Some(stored), Expect::LiveFor(session)) => &stored.session_id == session && stored.ended.is_none(),
        _ => false,
    }
}

impl State {
    fn check(&self, op: &LeaseOp) -> Result<(), TableError> {
        let ok = match op {
            LeaseOp::Session { lease, expect } => admits(self.sessions.get(&lease.session_id), expect),
            LeaseOp::User { lease, expect } => {
                let user = lease
                    .user_id
                    .as_ref()
                    .ok_or_else(|| failed("a user lease without a user"))?;
                admits(self.users.get(user), expect)
            }
            LeaseOp::Correlate(c) => self.correlations.get(&c.id).is_none_or(|old| old.until <= c.at),
            LeaseOp::Audit(record) => !self.audit.iter().any(|a| a.id == record.id && a.at == record.at),
        };
        if ok { Ok(()) } else { Err(failed(&format!("{op:?}"))) }
    }

    fn apply(&mut self, op: &LeaseOp) {
        match op {
            LeaseOp::Session { lease, .. } => {
                self.sessions.insert(lease.session_id.clone(), lease.clone());
            }
            LeaseOp::User { lease, .. } => {
                if let Some(user) = &lease.user_id {
                    self.users.insert(user.clone(), lease.clone());
                }
            }
            LeaseOp::Correlate(c) => {
                self.correlations.insert(c.id.clone(), c.clone());
            }
            LeaseOp::Audit(record) => self.audit.push(record.clone()),
        }
    }
}

impl LeaseTable for MemoryLeaseTable {
    async fn lookup(
        &self,
        user: Option<&UserId>,
        correlation: Option<&CorrelationId>,
        session: Option<&SessionId>,
    ) -> Result<Lookup, TableError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let state = self.state();
        Ok(Lookup {
            user: user.and_then(|u| state.users.get(u).cloned()),
            correlation: correlation.and_then(|c| state.correlations.get(c).cloned()),
            session: session.and_then(|s| state.sessions.get(s).cloned()),
        })
    }

    async fn commit(&self, ops: &[LeaseOp]) -> Result<(), TableError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        let mut state = self.state();
        ops.iter().try_for_each(|op| state.check(op))?;
        ops.iter().for_each(|op| state.apply(op));
        let lose = self
            .lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(TableError::new(
                "commit",
                TableErrorKind::Transport,
                "the answer was lost",
            ));
        }
        Ok(())
    }

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<(LeaseItem, Lease)>, TableError> {
        let state = self.state();
        let users = state.users.values().map(|l| (LeaseItem::User, l));
        let sessions = state.sessions.values().map(|l| (LeaseItem::Session, l));
        let mut due: Vec<(LeaseItem, Lease)> = users
            .chain(sessions)
            .filter(|(_, l)| l.due_at.is_some_and(|d| d <= now_ms))
            .map(|(i, l)| (i, l.clone()))
            .collect();
        due.sort_by_key(|(_, l)| l.due_at);
        due.truncate(limit);
        Ok(due)
    }

    async fn open_count(&self, limit: usize) -> Result<u64, TableError> {
        let state = self.state();
        let open = state.users.values().chain(state.sessions.values());
        let count = open
            .filter(|l| l.due_at.is_some() && l.ended.is_none())
            .take(limit)
            .count();
        Ok(crate::num::count_u32(count).into())
    }

    async fn audit(&self, query: &AuditQuery, limit: usize) -> Result<Vec<AuditRecord>, TableError> {
        let state = self.state();
        let mut records: Vec<AuditRecord> = state
            .audit
            .iter()
            .filter(|r| match query {
                AuditQuery::User(user) => r.user_id.as_ref() == Some(user),
                AuditQuery::Session(hash) => &r.session == hash,
            })
            .cloned()
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.at));
        records.truncate(limit);
        Ok(records)
    }
}

use super::fakes::MemoryLeaseTable;
use super::handout::{HandoutKind, LeaseError, Leases, Request};
use super::sweep::LeaseSweep;
use super::*;
use crate::clock::ManualClock;
use crate::fakes::{MemoryPool, RecordingTrigger, ScriptedAgent};
use crate::pool::claim::{ClaimPolicy, Claimer};
use crate::pool::version::VersionWatch;
use crate::session::{LogKey, PooledSession, SessionId};
use std::time::Duration;

const NOW: u64 = 1_800_000_000_000;

fn settings() -> LeaseSettings {
    LeaseSettings {
        lifecycle: Lifecycle::default(),
        correlation_window: Duration::from_secs(300),
        max_conversation: Duration::from_secs(3600),
        audit_retention: Duration::from_secs(90 * 86_400),
    }
}

struct Fixture {
    leases: Leases<MemoryLeaseTable, ScriptedAgent>,
    claimer: Claimer<MemoryPool, RecordingTrigger, ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        let policy = ClaimPolicy {
            wait: Duration::ZERO,
            ..ClaimPolicy::default()
        };
        Self {
            leases: Leases {
                table: MemoryLeaseTable::default(),
                agent: ScriptedAgent::default(),
                settings: settings(),
                log_key: LogKey::development(),
            },
            claimer: Claimer {
                queue: MemoryPool::default(),
                trigger: RecordingTrigger::default(),
                clock: ManualClock::at(NOW),
                policy,
            },
        }
    }

    fn pool(&self, n: usize) -> Vec<SessionId> {
        (0..n)
            .map(|_| {
                let session = PooledSession::new(SessionId::generate(), NOW - 10_000, NOW - 1_000);
                self.claimer.queue.push(&session);
                session.session_id
            })
            .collect()
    }

    async fn handout(&self, user: Option<&str>, correlation: Option<&str>) -> Result<handout::Handout, LeaseError> {
        let request = Request {
            user: user.map(|u| UserId::parse(u).unwrap()),
            correlation: correlation.map(|c| CorrelationId::parse(c).unwrap()),
        };
        self.leases
            .handout(&self.claimer, &VersionWatch::disabled(), &request)
            .await
    }

    fn clock(&self) -> &ManualClock {
        &self.claimer.clock
    }
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

#[tokio::test]
async fn when_a_user_calls_again_while_their_session_is_alive_then_they_get_it_back_as_reused() {
    let f = Fixture::new();
    f.pool(2);
    let first = f.handout(Some("alice"), None).await.unwrap();
    f.clock().advance(Duration::from_secs(600));
    let second = f.handout(Some("alice"), None).await.unwrap();

    assert_eq!(first.answer.source, Source::Pool);
    assert_eq!(
        (second.kind, second.answer.source),
        (HandoutKind::Reused, Source::Reused)
    );
    assert_eq!(second.answer.session_id, first.answer.session_id);
    assert_eq!(second.answer.user_id, Some(user("alice")));
    assert_eq!(f.claimer.queue.len(), 1, "the second call claimed nothing");
    let lease = f.leases.table.user(&user("alice")).unwrap();
    assert_eq!(lease.last_use_at, NOW + 600_000, "every call refreshes the last use");
}

#[tokio::test]
async fn when_the_users_session_idled_past_its_timeout_then_a_new_one_is_claimed_and_bound() {
    let f = Fixture::new();
    f.pool(2);
    let first = f.handout(Some("alice"), None).await.unwrap();
    // 900 s idle timeout less the 60 s margin.
    f.clock().advance(Duration::from_secs(840));
    let second = f.handout(Some("alice"), None).await.unwrap();

    assert_eq!(second.kind, HandoutKind::Claimed);
    assert_ne!(second.answer.session_id, first.answer.session_id);
    assert_eq!(
        f.leases.table.user(&user("alice")).unwrap().session_id,
        second.answer.session_id
    );
}

#[tokio::test]
async fn a_retried_call_with_one_correlation_id_gets_the_same_session_and_claims_nothing_more() {
    let f = Fixture::new();
    f.pool(2);
    let first = f.handout(None, Some("req-1")).await.unwrap();
    let again = f.handout(None, Some("req-1")).await.unwrap();

    assert_eq!(again.kind, HandoutKind::Replayed);
    assert_eq!(again.answer, first.answer);
    assert_eq!(f.claimer.queue.len(), 1);
    f.clock().advance(Duration::from_secs(301));
    let later = f.handout(None, Some("req-1")).await.unwrap();
    assert_ne!(later.answer.session_id, first.answer.session_id, "the window is over");
}

#[tokio::test]
async fn when_another_call_bound_the_user_first_then_the_loser_stops_its_claim_and_reuses_the_winner() {
    let f = Fixture::new();
    let ids = f.pool(2);
    // The winner's binding lands between this call's read and its write.
    let winner = Lease {
        session_id: ids[1].clone(),
        user_id: Some(user("alice")),
        source: Source::Pool,
        created_at: NOW - 10_000,
        last_ping_at: Some(NOW - 1_000),
        bound_at: NOW,
        last_use_at: NOW,
        ended: None,
        stop_pending: false,
        due_at: None,
        write_id: "winner".into(),
    };
    let f = RacingFixture { f, winner };
    let answer = f.run().await.unwrap();

    assert_eq!(answer.answer.session_id, ids[1], "the winner's session");
    assert_eq!(answer.answer.source, Source::Reused);
    assert_eq!(answer.disposed, 1);
    assert_eq!(
        f.f.leases.agent.stopped(),
        vec![ids[0].clone()],
        "the loser's claim is stopped"
    );
    assert!(f.f.leases.table.session(&ids[0]).is_none(), "never bound");
}

/// Binds the winner right after the loser claimed its session from the pool.
struct RacingFixture {
    f: Fixture,
    winner: Lease,
}

impl RacingFixture {
    async fn run(&self) -> Result<handout::Handout, LeaseError> {
        let racing = RacingPool {
            inner: &self.f.claimer.queue,
            table: &self.f.leases.table,
            winner: std::sync::Mutex::new(Some(self.winner.clone())),
        };
        let claimer = Claimer {
            queue: racing,
            trigger: RecordingTrigger::default(),
            clock: self.f.claimer.clock.clone(),
            policy: self.f.claimer.policy,
        };
        let request = Request {
            user: Some(user("alice")),
            correlation: None,
        };
        self.f
            .leases
            .handout(&claimer, &VersionWatch::disabled(), &request)
            .await
    }
}

struct RacingPool<'a> {
    inner: &'a MemoryPool,
    table: &'a MemoryLeaseTable,
    winner: std::sync::Mutex<Option<Lease>>,
}

impl crate::ports::PoolQueue for RacingPool<'_> {
    async fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<crate::ports::Received>, crate::error::QueueError> {
        let received = self.inner.receive(max, wait, visibility).await?;
        if let Some(winner) = self.winner.lock().unwrap().take() {
            self.table.put_user(winner);
        }
        Ok(received)
    }
    async fn delete(&self, receipt: &str) -> Result<(), crate::error::QueueError> {
        self.inner.delete(receipt).await
    }
    async fn enqueue(&self, session: &PooledSession) -> Result<(), crate::error::QueueError> {
        self.inner.enqueue(session).await
    }
    async fn depth(&self) -> Result<crate::ports::PoolDepth, crate::error::QueueError> {
        self.inner.depth().await
    }
}

#[tokio::test]
async fn a_binding_whose_answer_was_lost_is_recognised_as_landed_and_nothing_is_stopped() {
    let f = Fixture::new();
    f.pool(1);
    f.leases.table.lose_next_answers(1);
    let answer = f.handout(Some("alice"), Some("req-1")).await.unwrap();

    assert_eq!(answer.kind, HandoutKind::Claimed);
    assert!(f.leases.agent.stopped().is_empty());
    assert_eq!(
        f.leases.table.user(&user("alice")).unwrap().session_id,
        answer.answer.session_id
    );
    assert_eq!(f.leases.table.audit_records().len(), 1, "one handout, one record");
}

#[tokio::test]
async fn only_the_holder_can_release_and_a_release_stops_the_session_and_ends_the_lease() {
    let f = Fixture::new();
    f.pool(1);
    let held = f.handout(Some("alice"), None).await.unwrap().answer.session_id;

    let refused = f.leases.release(&held, &user("mallory"), NOW).await.unwrap_err();
    assert!(matches!(refused, LeaseError::NotHolder), "{refused}");
    assert!(f.leases.agent.stopped().is_empty(), "nothing stopped for a non-holder");
    let unknown = f.leases.release(&SessionId::generate(), &user("alice"), NOW).await;
    assert!(matches!(unknown, Err(LeaseError::NotHolder)));

    let released = f.leases.release(&held, &user("alice"), NOW + 1).await.unwrap();
    assert!(!released.already_ended);
    assert_eq!(f.leases.agent.stopped(), vec![held.clone()]);
    let lease = f.leases.table.user(&user("alice")).unwrap();
    assert_eq!(lease.ended.map(|e| e.reason), Some(EndReason::Released));
    assert!(!lease.stop_pending);
    assert!(
        f.leases
            .release(&held, &user("alice"), NOW + 2)
            .await
            .unwrap()
            .already_ended
    );

    let next = f.handout(Some("alice"), None).await;
    assert!(
        next.is_err() || next.unwrap().answer.session_id != held,
        "a released session is never reused"
    );
}

#[tokio::test]
async fn a_release_whose_stop_fails_ends_the_lease_and_the_sweep_stops_it_later() {
    let f = Fixture::new();
    f.pool(1);
    let held = f.handout(Some("alice"), None).await.unwrap().answer.session_id;
    // Refused once (a policy being fixed, say): not retried within the call.
    f.leases.agent.fail_stops_with([crate::error::AgentErrorKind::Rejected]);

    let error = f.leases.release(&held, &user("alice"), NOW).await.unwrap_err();
    assert!(
        matches!(error, LeaseError::StopFailed(_)) && error.is_retryable(),
        "{error}"
    );
    assert!(f.leases.table.user(&user("alice")).unwrap().stop_pending);

    let later = NOW + 61_000;
    let report = sweep(&f, later).await;
    assert_eq!(report.stopped, 1, "{report:?}");
    assert_eq!(f.leases.agent.stopped(), vec![held]);
    assert!(!f.leases.table.user(&user("alice")).unwrap().stop_pending);
}

async fn sweep(f: &Fixture, now: u64) -> sweep::SweepReport {
    let sweep = LeaseSweep {
        table: &f.leases.table,
        agent: &f.leases.agent,
        settings: &f.leases.settings,
        log_key: &f.leases.log_key,
    };
    sweep
        .run(now, 100, tokio::time::Instant::now() + Duration::from_secs(30))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sweep_closes_expired_leases_and_stops_abandoned_ones_and_counts_those_in_use() {
    let f = Fixture::new();
    f.pool(3);
    let idle = f.handout(Some("idle"), None).await.unwrap().answer.session_id;
    let chatty = f.handout(Some("chatty"), None).await.unwrap().answer.session_id;
    f.handout(None, None).await.unwrap();
    assert_eq!(sweep(&f, NOW).await.in_use, 3);

    // "chatty" keeps using its session for over an hour; "idle" stopped after its first call.
    for minute in 1..=62 {
        f.clock().set(NOW + minute * 60_000);
        f.handout(Some("chatty"), None).await.unwrap();
    }
    let report = sweep(&f, NOW + 62 * 60_000).await;

    assert_eq!((report.expired, report.abandoned), (2, 1), "{report:?}");
    assert_eq!(
        f.leases.agent.stopped(),
        vec![chatty.clone()],
        "only the live one is stopped"
    );
    assert_eq!(
        f.leases.table.user(&user("idle")).unwrap().ended.map(|e| e.reason),
        Some(EndReason::Expired)
    );
    assert_ne!(idle, chatty);
    assert_eq!(report.in_use, 0);
    let events: Vec<_> = f.leases.table.audit_records().iter().map(|r| r.event).collect();
    assert!(events.contains(&AuditEvent::Abandon) && events.contains(&AuditEvent::Expire));
}

#[tokio::test]
async fn the_audit_trail_names_the_session_by_its_keyed_hash_only() {
    let f = Fixture::new();
    f.pool(1);
    let answer = f.handout(Some("alice"), Some("req-9")).await.unwrap().answer;
    f.handout(Some("alice"), None).await.unwrap();
    let records = f.leases.table.audit_records();

    assert_eq!(records.len(), 2);
    let hash = answer.session_id.log_id(&LogKey::development()).to_string();
    for record in &records {
        assert_eq!(record.session, hash);
        let text = serde_json::to_string(record).unwrap();
        assert!(!text.contains(answer.session_id.as_str()), "{text}");
    }
    assert_eq!(
        (records[0].event, records[0].source),
        (AuditEvent::Handout, Source::Pool)
    );
    assert_eq!(
        records[0].correlation_id.as_ref().map(CorrelationId::as_str),
        Some("req-9")
    );
    assert_eq!(
        (records[1].event, records[1].source),
        (AuditEvent::Reuse, Source::Reused)
    );
    assert_eq!(records[0].expires_at, (NOW + 90 * 86_400_000) / 1000);
}

#[tokio::test]
async fn a_claim_with_leases_costs_one_read_and_one_write() {
    let f = Fixture::new();
    f.pool(2);
    f.handout(Some("alice"), Some("c-1")).await.unwrap();
    assert_eq!(f.leases.table.calls(), (1, 1));
    f.handout(Some("alice"), None).await.unwrap();
    assert_eq!(f.leases.table.calls(), (2, 2), "a reuse: one read, one write");
}

#[test]
fn ids_must_be_printable_bounded_and_not_empty() {
    for bad in ["", "has space", "tab\t", "é", &"x".repeat(129)] {
        assert!(UserId::parse(bad).is_err(), "{bad:?}");
        assert!(CorrelationId::parse(bad).is_err(), "{bad:?}");
    }
    assert!(UserId::parse("user-42@example.com").is_ok());
    assert!(serde_json::from_str::<UserId>("\"\"").is_err());
}

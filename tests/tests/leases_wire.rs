//! Leases through the real get-session function, over the wire: the lease table on moto
//! (DynamoDB), the pool queue on moto (SQS), sessions and stops at the AgentCore emulator.

use agentcore_emulator::RunningEmulator;
use agentcore_emulator::lifecycle::SessionState;
use futures::future::join_all;
use get_session::{Answer, GetSession, GetSessionError};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use warmpool_core::aws::{AgentCoreRuntime, DynamoLeaseTable, SqsPoolQueue};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::lease::ports::{AuditQuery, LeaseTable};
use warmpool_core::lease::sweep::LeaseSweep;
use warmpool_core::lease::{AuditEvent, UserId};
use warmpool_core::pool::claim::{ClaimedSession, Source};
use warmpool_core::ports::{AgentRuntime, PoolQueue};
use warmpool_core::session::{LogKey, PooledSession, SessionId};
use warmpool_local_stack::setup::leases::create_lease_table;
use warmpool_tests::faults::{self, Fault, FaultInjector};
use warmpool_tests::*;

type Function = GetSession<SqsPoolQueue, RecordingTrigger, SystemClock, DynamoLeaseTable, AgentCoreRuntime>;

struct Stack {
    function: Function,
    config: get_session::Config,
    queue: SqsPoolQueue,
    table: DynamoLeaseTable,
    emulator: RunningEmulator,
    faults: FaultInjector,
    /// The warm sessions the pool started with.
    pooled: Vec<SessionId>,
}

async fn stack(pool: usize, extra: &[(&str, &str)]) -> Stack {
    let moto = &Moto::shared().endpoint;
    let faults = FaultInjector::seeded(1);
    let dynamodb = faults::dynamodb_client(&sdk_config(moto), &faults);
    let table_name = format!("leases-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    create_lease_table(&dynamodb, &table_name).await.expect("lease table");
    let queue = pool_queue("leased").await;
    let emulator = emulator(fast_lifecycle()).await;
    let agent = agent_runtime(&emulator);
    // Real, warm sessions: each was invoked once at the emulator before it was pooled.
    let now = SystemClock.now_ms();
    let mut pooled = Vec::new();
    for _ in 0..pool {
        let id = SessionId::generate();
        agent.invoke(&id, b"{}").await.expect("warm a session");
        queue
            .enqueue(&PooledSession::new(id.clone(), now, now))
            .await
            .expect("pool it");
        pooled.push(id);
    }
    let mut pairs = vec![
        ("POOL_QUEUE_URL", queue.queue_url()),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("FRESH_FALLBACK", "false"),
        ("LEASE_TABLE_NAME", table_name.as_str()),
        ("AGENT_RUNTIME_ARN", RUNTIME_ARN),
    ];
    pairs.extend_from_slice(extra);
    let config = get_session::Config::from_env(&Env::from_pairs(pairs)).expect("get-session config");
    let leases = config.leases.clone().expect("leases on");
    let table = DynamoLeaseTable::new(dynamodb, &table_name, leases.keep());
    let function = GetSession::new(&config, queue.clone(), RecordingTrigger::default(), SystemClock).with_leases(
        &config,
        table.clone(),
        agent,
    );
    Stack {
        function,
        config,
        queue,
        table,
        emulator,
        faults,
        pooled,
    }
}

fn event(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, lambda_runtime::Context::default())
}

impl Stack {
    async fn claim(&self, payload: Value) -> ClaimedSession {
        match self.function.respond(event(payload)).await.expect("a handout") {
            Answer::Session(session) => session,
            other => panic!("not a session: {other:?}"),
        }
    }

    fn state(&self, id: &SessionId) -> SessionState {
        session_view(&self.emulator.sessions(), id).state
    }

    async fn left_in_pool(&self) -> HashSet<SessionId> {
        drain_pooled(&self.queue)
            .await
            .into_iter()
            .map(|s| s.session_id)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_first_calls_for_one_user_bind_one_session_and_stop_every_other_claimed_one() {
    let stack = stack(8, &[]).await;
    let answers: Vec<ClaimedSession> = join_all((0..8).map(|_| stack.claim(json!({"userId": "alice"})))).await;

    let bound: HashSet<&SessionId> = answers.iter().map(|a| &a.session_id).collect();
    assert_eq!(bound.len(), 1, "one session for the user: {answers:?}");
    let bound = (*bound.iter().next().unwrap()).clone();
    assert!(
        answers
            .iter()
            .all(|a| a.user_id.as_ref().map(UserId::as_str) == Some("alice"))
    );
    // Every pooled session is accounted for: bound, still pooled, or stopped; none is lost.
    let left = stack.left_in_pool().await;
    for id in &stack.pooled {
        let state = stack.state(id);
        let fate = (id == &bound, left.contains(id), state == SessionState::Stopped);
        assert!(
            matches!(fate, (true, false, false) | (false, true, false) | (false, false, true)),
            "{id}: bound, pooled, stopped = {fate:?}"
        );
    }
    assert_eq!(stack.state(&bound), SessionState::Active, "the bound session lives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_and_repeated_calls_under_one_correlation_id_get_one_session() {
    let stack = stack(6, &[]).await;
    let first = join_all((0..4).map(|_| stack.claim(json!({"correlationId": "order-17"})))).await;
    let again = stack.claim(json!({"correlationId": "order-17"})).await;

    let ids: HashSet<&SessionId> = first.iter().chain([&again]).map(|a| &a.session_id).collect();
    assert_eq!(ids.len(), 1, "{first:?} {again:?}");
    assert!(first.iter().all(|a| a == &again), "the same answer each time");
    let other = stack.claim(json!({"correlationId": "order-18"})).await;
    assert_ne!(other.session_id, again.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_turn_reuses_the_users_session_and_a_binding_whose_answer_was_lost_still_counts_once() {
    let stack = stack(3, &[]).await;
    // The first binding lands and its answer is lost: the SDK retries it.
    stack.faults.next("TransactWriteItems", Fault::LoseAnswer, 1);
    let first = stack.claim(json!({"userId": "bob", "correlationId": "turn-1"})).await;
    assert_eq!(stack.faults.injected("TransactWriteItems", Fault::LoseAnswer), 1);
    let second = stack.claim(json!({"userId": "bob"})).await;

    assert_eq!(first.source, Source::Pool);
    assert_eq!(
        (second.session_id.clone(), second.source),
        (first.session_id.clone(), Source::Reused)
    );
    assert_eq!(
        stack.state(&first.session_id),
        SessionState::Active,
        "nothing was stopped"
    );
    assert_eq!(stack.left_in_pool().await.len(), 2, "one claim for two turns");
    let trail = stack
        .table
        .audit(&AuditQuery::User(UserId::parse("bob").unwrap()), 10)
        .await
        .unwrap();
    let events: Vec<AuditEvent> = trail.iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [AuditEvent::Reuse, AuditEvent::Handout],
        "newest first, one handout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_holder_can_release_and_a_release_stops_the_session_at_once() {
    let stack = stack(2, &[]).await;
    let held = stack.claim(json!({"userId": "carol"})).await.session_id;

    for (user, session) in [("mallory", held.clone()), ("carol", SessionId::generate())] {
        let error = stack
            .function
            .respond(event(json!({"release": session.as_str(), "userId": user})))
            .await
            .unwrap_err();
        assert!(!error.is_retryable());
        assert_eq!(Diagnostic::from(error).error_type, "NotHolder");
    }
    assert_eq!(
        stack.state(&held),
        SessionState::Active,
        "a refused release stops nothing"
    );

    let released = stack
        .function
        .respond(event(json!({"release": held.as_str(), "userId": "carol"})))
        .await
        .unwrap();
    assert!(matches!(&released, Answer::Released(r) if r.released == held && !r.already_ended));
    assert_eq!(stack.state(&held), SessionState::Stopped);
    let next = stack.claim(json!({"userId": "carol"})).await;
    assert_ne!(next.session_id, held, "a released session is never handed out again");
    let trail = stack
        .table
        .audit(
            &AuditQuery::Session(held.log_id(&stack.config.claim.log_key).to_string()),
            10,
        )
        .await
        .unwrap();
    let events: Vec<AuditEvent> = trail.iter().map(|r| r.event).collect();
    assert_eq!(events, [AuditEvent::Release, AuditEvent::Handout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_stops_a_session_held_past_the_longest_conversation_and_counts_those_in_use() {
    let stack = stack(2, &[("LEASE_MAX_CONVERSATION_SECS", "1")]).await;
    let abandoned = stack.claim(json!({"userId": "dave"})).await.session_id;
    let settings = stack.config.leases.as_ref().unwrap().settings;
    let agent = agent_runtime(&stack.emulator);
    let log_key = LogKey::development();
    let sweep = LeaseSweep {
        table: &stack.table,
        agent: &agent,
        settings: &settings,
        log_key: &log_key,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let before = sweep.run(SystemClock.now_ms(), 100, deadline).await.unwrap();
    assert_eq!((before.abandoned, before.in_use), (0, 1), "{before:?}");

    let later = SystemClock.now_ms() + 1_500;
    let report = sweep.run(later, 100, deadline).await.unwrap();

    assert_eq!(
        (report.abandoned, report.stopped, report.in_use),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(stack.state(&abandoned), SessionState::Stopped);
    let error = stack
        .function
        .respond(event(json!({"release": abandoned.as_str(), "userId": "dave"})))
        .await;
    assert!(error.is_ok(), "the holder may still release it: {error:?}");
}

#[tokio::test]
async fn leases_off_keeps_one_receive_and_one_delete_and_refuses_lease_requests() {
    let queue = pool_queue("unleased").await;
    let now = SystemClock.now_ms();
    queue
        .enqueue(&PooledSession::new(SessionId::generate(), now, now))
        .await
        .unwrap();
    let env = Env::from_pairs([("POOL_QUEUE_URL", queue.queue_url()), ("REPLENISH_FUNCTION_NAME", "r")]);
    let config = get_session::Config::from_env(&env).unwrap();
    let function = GetSession::new(&config, queue.clone(), RecordingTrigger::default(), SystemClock);

    let refused = function.respond(event(json!({"userId": "erin"}))).await.unwrap_err();
    assert!(matches!(refused, GetSessionError::LeasesOff), "{refused}");
    let claimed = function.handle(event(json!({"correlationId": "c-1"}))).await.unwrap();
    assert_eq!((claimed.source, claimed.user_id), (Source::Pool, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_is_bound_once_so_it_can_never_be_given_a_second_user() {
    use warmpool_core::lease::{Expect, LeaseOp};
    let stack = stack(1, &[]).await;
    let held = stack.claim(json!({"userId": "frank"})).await.session_id;
    let lookup = stack.table.lookup(None, None, Some(&held)).await.unwrap();
    let mut other = lookup.session.expect("the session item");
    other.user_id = Some(UserId::parse("grace").unwrap());
    other.write_id = "grace's binding".into();

    let refused = stack
        .table
        .commit(&[LeaseOp::Session {
            lease: other,
            expect: Expect::Absent,
        }])
        .await
        .unwrap_err();

    assert!(refused.is_condition_failed(), "{refused}");
    let after = stack
        .table
        .lookup(None, None, Some(&held))
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(after.user_id.as_ref().map(UserId::as_str), Some("frank"));
}

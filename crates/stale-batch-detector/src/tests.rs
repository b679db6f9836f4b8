use super::*;
use warmpool_core::batch::fakes::{MemorySink, MemoryTable};
use warmpool_core::batch::ports::Due;
use warmpool_core::batch::{BatchStatus, Change, ObjectRef, Transition};
use warmpool_core::clock::ManualClock;
use warmpool_core::config::Env;
use warmpool_core::fakes::ScriptedAgent;
use warmpool_core::session::SessionId;

const NOW: u64 = 1_800_000_000_000;

type TestDetector = Detector<MemoryTable, MemorySink, ScriptedAgent, ManualClock>;

fn detector() -> TestDetector {
    Detector::new(
        Config::from_env(&Env::from_pairs(config::tests::REQUIRED)).unwrap(),
        MemoryTable::default(),
        MemorySink::default(),
        MemorySink::default(),
        ScriptedAgent::default(),
        ManualClock::at(NOW),
    )
}

fn running(f: &TestDetector, name: &str, attempt: u32, deadline: u64) -> BatchRow {
    let mut row = BatchRow::new_running(
        BatchId::parse(name).unwrap(),
        vec![ObjectRef::new("docs", format!("incoming/{name}/a.txt"))],
        3,
        SessionId::generate(),
        deadline - 60_000,
        deadline,
    );
    row.attempt = attempt;
    f.table.insert(row.clone());
    row
}

fn schedule() -> LambdaEvent<Value> {
    let payload = serde_json::from_str(include_str!("../../../events/stale-batch-detector-schedule.json")).unwrap();
    LambdaEvent::new(payload, Default::default())
}

#[tokio::test]
async fn overdue_attempts_are_retried_or_failed_and_timely_ones_are_left_alone() {
    let f = detector();
    let late = running(&f, "late", 1, NOW - 1);
    let last = running(&f, "last", 3, NOW - 5_000);
    let timely = running(&f, "timely", 1, NOW + 1);

    let report = f.handle(schedule()).await.unwrap();

    assert_eq!((report.overdue, report.retried, report.failed), (2, 1, 1));
    let row = |r: &BatchRow| f.table.row(&r.batch_id).unwrap();
    assert_eq!((row(&late).status, row(&late).attempt), (BatchStatus::Pending, 2));
    assert_eq!(row(&last).status, BatchStatus::Failed);
    assert!(
        row(&last)
            .last_error
            .unwrap()
            .contains("passed its deadline 5000 ms ago")
    );
    assert_eq!(row(&timely).status, BatchStatus::Running);
    assert_eq!(f.batch_queue.bodies().len(), 1);
    assert_eq!(f.failure_queue.bodies().len(), 1);
    let mut stopped = f.agent.stopped();
    stopped.sort();
    let mut expected = vec![late.session_id.unwrap(), last.session_id.unwrap()];
    expected.sort();
    assert_eq!(stopped, expected);
}

#[tokio::test]
async fn two_overlapping_runs_settle_each_attempt_once() {
    let f = detector();
    for n in 0..10 {
        running(&f, &format!("b-{n}"), 1, NOW - 1);
    }

    let (a, b) = tokio::join!(f.handle(schedule()), f.handle(schedule()));

    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.retried + b.retried, 10, "{a:?} {b:?}");
    assert_eq!(a.already_settled + b.already_settled, a.overdue + b.overdue - 10);
    assert!(
        f.table
            .rows()
            .iter()
            .all(|r| (r.status, r.attempt) == (BatchStatus::Pending, 2))
    );
}

#[tokio::test]
async fn an_attempt_the_agent_gave_up_is_failed_with_the_agents_reason() {
    let f = detector();
    let row = running(&f, "gave-up", 1, NOW + 600_000);
    let attempt = row.running_attempt().unwrap();
    f.table
        .transition(&Transition::of_running(
            &attempt,
            Change::Expire {
                reason: agent_gave_up(1, "document incoming/gave-up/a.txt not found"),
            },
            NOW - 1,
        ))
        .await
        .unwrap();

    let report = f.handle(schedule()).await.unwrap();

    assert_eq!(report.retried, 1);
    let stored = f.table.row(&row.batch_id).unwrap();
    assert!(stored.last_error.unwrap().contains("not found"));
}

#[tokio::test]
async fn a_failing_enqueue_is_counted_and_left_for_the_next_run() {
    let f = detector();
    let row = running(&f, "b", 1, NOW - 1);
    f.batch_queue.fail_next(1);

    let report = f.handle(schedule()).await.unwrap();
    assert_eq!((report.errors, report.retried), (1, 0));
    assert_eq!(f.table.row(&row.batch_id).unwrap().status, BatchStatus::Running);

    let report = f.handle(schedule()).await.unwrap();
    assert_eq!(report.retried, 1);
}

#[tokio::test]
async fn when_the_retry_request_of_a_pending_batch_is_lost_then_the_detector_resends_or_fails_it() {
    let f = detector();
    let row = running(&f, "stranded", 1, NOW - 1);
    f.handle(schedule()).await.unwrap();
    assert_eq!(f.table.row(&row.batch_id).unwrap().status, BatchStatus::Pending);
    let sent_before = f.batch_queue.bodies().len();

    // The retry request went to the DLQ: nothing will ever start attempt 2.
    f.clock.advance(std::time::Duration::from_secs(3_600));
    f.handle(schedule()).await.unwrap();

    let stored = f.table.row(&row.batch_id).unwrap();
    assert!(
        f.batch_queue.bodies().len() > sent_before || stored.status == BatchStatus::Failed,
        "still {stored:?}"
    );
}

#[tokio::test]
async fn when_a_batch_succeeded_then_the_detector_stops_its_session() {
    let f = detector();
    let row = running(&f, "done", 1, NOW + 600_000);
    let attempt = row.running_attempt().unwrap();
    f.table
        .transition(&Transition::of_running(
            &attempt,
            Change::Succeed { result_ref: "r".into() },
            NOW - 1,
        ))
        .await
        .unwrap();

    f.handle(schedule()).await.unwrap();

    assert_eq!(f.agent.stopped(), vec![row.session_id.unwrap()]);
}

#[tokio::test]
async fn when_the_failure_notice_cannot_be_sent_then_a_later_run_sends_it() {
    let f = detector();
    let row = running(&f, "last", 3, NOW - 1);
    f.failure_queue.fail_next(3);
    f.handle(schedule()).await.unwrap();
    assert_eq!(f.table.row(&row.batch_id).unwrap().status, BatchStatus::Failed);
    assert!(f.failure_queue.bodies().is_empty());

    f.clock.advance(std::time::Duration::from_secs(300));
    f.handle(schedule()).await.unwrap();

    assert_eq!(f.failure_queue.bodies().len(), 1, "sent exactly once, by the later run");
}

#[tokio::test]
async fn when_a_row_does_not_read_then_it_is_counted_quarantined_and_the_others_settle() {
    let f = detector();
    f.table
        .insert_unreadable("hostile", "document key longer than S3 allows", NOW - 10);
    let honest = running(&f, "honest", 1, NOW - 1);

    let report = f.handle(schedule()).await.unwrap();

    assert_eq!(
        (report.unreadable, report.quarantined, report.retried),
        (1, 1, 1),
        "{report:?}"
    );
    assert!(f.table.quarantined("hostile").unwrap().contains("does not read"));
    assert_eq!(f.table.row(&honest.batch_id).unwrap().attempt, 2);
    let again = f.handle(schedule()).await.unwrap();
    assert_eq!(again.unreadable, 0, "out of the index once quarantined");
}

#[tokio::test]
async fn when_an_unreadable_row_changes_before_its_quarantine_then_it_is_left_for_the_next_run() {
    let f = detector();
    f.table.insert_unreadable("hostile", "bad", NOW - 10);
    let Due::Unreadable(read) = f.table.overdue(NOW, 10, 0).await.unwrap().remove(0) else {
        panic!("the fake reads it as unreadable");
    };
    f.table.touch_unreadable("hostile");

    assert!(matches!(f.quarantine(&read).await, Acted::Skipped));
    assert!(f.table.quarantined("hostile").is_none());
}

#[tokio::test]
async fn successive_runs_start_at_successive_shards() {
    let f = detector();
    let first = f.handle(schedule()).await.unwrap().first_shard;
    let second = f.handle(schedule()).await.unwrap().first_shard;
    assert_eq!(second, (first + 1) % 8);
}

#[tokio::test]
async fn a_closed_follow_up_is_not_done_again() {
    let f = detector();
    let row = running(&f, "done", 1, NOW + 600_000);
    let attempt = row.running_attempt().unwrap();
    f.table
        .transition(&Transition::of_running(
            &attempt,
            Change::Succeed { result_ref: "r".into() },
            NOW - 1,
        ))
        .await
        .unwrap();

    let first = f.handle(schedule()).await.unwrap();
    let second = f.handle(schedule()).await.unwrap();

    assert_eq!((first.closed, second.closed), (1, 0));
    assert!(f.table.row(&row.batch_id).unwrap().closed_at.is_some());
    assert_eq!(f.agent.stopped().len(), 1);
}

#[tokio::test]
async fn a_manual_run_is_accepted_and_anything_else_is_a_validation_error() {
    let f = detector();
    assert!(
        f.handle(LambdaEvent::new(serde_json::json!({}), Default::default()))
            .await
            .is_ok()
    );
    let error = f
        .handle(LambdaEvent::new(serde_json::json!({"count": 1}), Default::default()))
        .await
        .unwrap_err();
    assert!(matches!(error, DetectorError::Validation(_)) && !error.is_retryable());
}

use super::*;

fn id(raw: &str) -> BatchId {
    BatchId::parse(raw).unwrap()
}

fn row(status: BatchStatus, attempt: u32) -> BatchRow {
    let mut row = BatchRow::new_running(
        id("case-1"),
        vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
        3,
        SessionId::generate(),
        1_000,
        61_000,
    );
    row.status = status;
    row.attempt = attempt;
    if status == BatchStatus::Pending {
        row.session_id = None;
    }
    row
}

#[test]
fn batch_ids_are_single_safe_path_segments() {
    for ok in ["case-4711", "a", "2026.01_claims-B", &"x".repeat(128)] {
        assert!(BatchId::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é", &"x".repeat(129), "-x"] {
        assert!(BatchId::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(id("c1").manifest_key(), "incoming/c1/manifest.json");
}

#[test]
fn object_refs_round_trip_as_s3_uris_and_refuse_anything_else() {
    let object = ObjectRef::parse("s3://my-docs/incoming/c1/a b.txt").unwrap();
    assert_eq!(
        (object.bucket.as_str(), object.key.as_str()),
        ("my-docs", "incoming/c1/a b.txt")
    );
    assert_eq!(object.to_string(), "s3://my-docs/incoming/c1/a b.txt");
    for bad in [
        "my-docs/a",
        "s3://my-docs",
        "s3://my-docs/",
        "s3://My_Docs/a",
        "https://x/y",
        "s3://ab/k",
    ] {
        assert!(ObjectRef::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_first_request_for_an_unknown_batch_starts_it_and_a_later_attempt_is_unknown() {
    assert_eq!(admit(None, 1), Admission::StartNew);
    assert_eq!(admit(None, 2), Admission::Unknown);
}

#[test]
fn a_duplicate_of_a_running_or_finished_batch_is_acknowledged_without_a_second_run() {
    for status in [BatchStatus::Running, BatchStatus::Succeeded, BatchStatus::Failed] {
        assert!(matches!(admit(Some(&row(status, 1)), 1), Admission::Duplicate { .. }));
    }
}

#[test]
fn a_retry_starts_only_if_the_row_waits_for_exactly_that_attempt() {
    assert_eq!(admit(Some(&row(BatchStatus::Pending, 2)), 2), Admission::StartPending);
    assert!(matches!(
        admit(Some(&row(BatchStatus::Pending, 3)), 2),
        Admission::Duplicate { .. }
    ));
    assert!(matches!(
        admit(Some(&row(BatchStatus::Running, 3)), 2),
        Admission::Duplicate { .. }
    ));
    assert!(matches!(
        admit(Some(&row(BatchStatus::Pending, 2)), 3),
        Admission::Early { .. }
    ));
    assert!(matches!(
        admit(Some(&row(BatchStatus::Running, 1)), 2),
        Admission::Early { .. }
    ));
    assert!(matches!(
        admit(Some(&row(BatchStatus::Succeeded, 1)), 2),
        Admission::Duplicate { .. }
    ));
}

#[test]
fn a_transition_applies_only_to_the_expected_status_attempt_and_session() {
    let running = row(BatchStatus::Running, 1);
    let attempt = running.running_attempt().unwrap();
    let succeed = Transition::of_running(
        &attempt,
        Change::Succeed {
            result_ref: "s3://r/x".into(),
        },
        9,
    );
    let done = succeed.apply(&running).unwrap();
    assert_eq!(
        (done.status, done.result_ref.as_deref()),
        (BatchStatus::Succeeded, Some("s3://r/x"))
    );
    assert!(succeed.apply(&done).is_err(), "a second outcome for the same attempt");

    let other_session = RunningAttempt {
        session_id: SessionId::generate(),
        ..attempt.clone()
    };
    let foreign = Transition::of_running(&other_session, Change::Succeed { result_ref: "x".into() }, 9);
    assert!(foreign.apply(&running).is_err(), "another session's write");
}

#[test]
fn retry_moves_to_the_next_attempt_and_clears_the_session_so_only_a_start_follows() {
    let running = row(BatchStatus::Running, 1);
    let attempt = running.running_attempt().unwrap();
    let retried = Transition::of_running(
        &attempt,
        Change::Retry {
            reason: "late".into(),
            start_by: 370_000,
        },
        70_000,
    )
    .apply(&running)
    .unwrap();
    assert_eq!((retried.status, retried.attempt), (BatchStatus::Pending, 2));
    assert_eq!((retried.session_id.as_ref(), retried.deadline), (None, Some(370_000)));
    assert_eq!(admit(Some(&retried), 2), Admission::StartPending);

    let next = SessionId::generate();
    let started = Transition::start(id("case-1"), 2, next.clone(), 71_000, 131_000)
        .apply(&retried)
        .unwrap();
    assert_eq!((started.status, started.session_id), (BatchStatus::Running, Some(next)));
    assert_eq!(started.deadline, Some(131_000));
}

#[test]
fn a_never_started_pending_attempt_is_handed_over_to_the_next_number() {
    let pending = BatchRow::new_pending(
        id("case-1"),
        vec![ObjectRef::new("docs", "incoming/case-1/a")],
        3,
        5,
        10,
    );
    let next = Transition::of_row(
        &pending,
        Change::Retry {
            reason: "no session".into(),
            start_by: 20,
        },
        11,
    )
    .apply(&pending)
    .unwrap();
    assert_eq!(
        (next.status, next.attempt, next.deadline),
        (BatchStatus::Pending, 2, Some(20))
    );
    assert_eq!(
        admit(Some(&next), 1),
        Admission::Duplicate {
            status: BatchStatus::Pending,
            attempt: 2
        }
    );
}

#[test]
fn every_transition_stamps_its_own_write_id_and_a_close_keeps_the_first_notice_time() {
    let running = row(BatchStatus::Running, 3);
    let fail = Transition::of_row(&running, Change::Fail { reason: "x".into() }, 100);
    let failed = fail.apply(&running).unwrap();
    assert_eq!(failed.write_id.as_deref(), Some(fail.write_id.as_str()));
    assert_eq!(failed.deadline, Some(100 + FOLLOW_UP_GRACE_MS));
    assert!(failed.owes_follow_up());
    let closed = Transition::of_row(&failed, Change::Close { notified: true }, 200)
        .apply(&failed)
        .unwrap();
    assert_eq!((closed.notified_at, closed.closed_at), (Some(200), Some(200)));
    assert!(!closed.owes_follow_up());
}

#[test]
fn error_texts_are_bounded_on_a_char_boundary_with_a_marker() {
    assert_eq!(bounded_error("short"), "short");
    let long = "é".repeat(MAX_ERROR_BYTES);
    let bounded = bounded_error(&long);
    assert!(bounded.len() <= MAX_ERROR_BYTES, "{}", bounded.len());
    assert!(bounded.ends_with(" [truncated]"));
    assert!(bounded.trim_end_matches(" [truncated]").chars().all(|c| c == 'é'));
}

#[test]
fn an_expired_attempt_stays_running_with_its_deadline_now() {
    let running = row(BatchStatus::Running, 1);
    let attempt = running.running_attempt().unwrap();
    let expired = Transition::of_running(
        &attempt,
        Change::Expire {
            reason: "S3 refused".into(),
        },
        5_000,
    )
    .apply(&running)
    .unwrap();
    assert_eq!((expired.status, expired.deadline), (BatchStatus::Running, Some(5_000)));
}

#[test]
fn the_last_allowed_attempt_is_exhausted_after_failing() {
    assert_eq!(
        row(BatchStatus::Running, 2).after_failed_attempt(),
        AfterFailure::Retry { next_attempt: 3 }
    );
    assert_eq!(
        row(BatchStatus::Running, 3).after_failed_attempt(),
        AfterFailure::Exhausted
    );
}

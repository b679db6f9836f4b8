use super::*;

fn table() -> DynamoTrackingTable {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .build();
    DynamoTrackingTable::new(Client::from_conf(config), "t", TrackingLayout::default())
}

fn running() -> BatchRow {
    BatchRow::new_running(
        BatchId::parse("case-1").unwrap(),
        vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
        3,
        SessionId::generate(),
        1_000,
        61_000,
    )
}

#[test]
fn a_row_survives_the_trip_through_an_item() {
    let row = running();
    let item = table().item_from_row(&row);
    assert_eq!(row_from_item(&item).unwrap(), row);
    assert!(item.contains_key("runningShard"), "RUNNING rows are in the index");
    assert!(!item.contains_key("expiresAt"), "a running row never expires");
}

#[test]
fn a_settled_row_stays_in_the_index_until_it_is_closed_and_then_expires() {
    let row = running();
    let attempt = row.running_attempt().unwrap();
    let succeed = Transition::of_running(
        &attempt,
        Change::Succeed {
            result_ref: "s3://r/x".into(),
        },
        2_000,
    );
    let (update, condition, values) = table().update_of(&succeed);
    assert!(update.contains("#runningShard = :shard"), "{update}");
    assert_eq!(values[":due"], n(2_000), "its follow-up is due at once");
    assert!(update.contains("#expiresAt = :expiresAt"), "{update}");
    assert_eq!(values[":expiresAt"], n(2 + 30 * 24 * 3600));
    assert_eq!(
        condition,
        "#status = :expectedStatus AND #attempt = :expectedAttempt AND #sessionId = :expectedSession"
    );
    let succeeded = succeed.apply(&row).unwrap();
    let (update, _, _) = table().update_of(&Transition::of_row(
        &succeeded,
        Change::Close { notified: false },
        3_000,
    ));
    assert!(update.ends_with("REMOVE #runningShard"), "{update}");
    assert!(!update.contains("notifiedAt"), "{update}");
}

#[test]
fn a_pending_row_is_in_the_index_at_its_start_by_time() {
    let pending = BatchRow::new_pending(
        BatchId::parse("case-1").unwrap(),
        vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
        3,
        1_000,
        301_000,
    );
    let item = table().item_from_row(&pending);
    assert_eq!(item["deadline"], n(301_000));
    assert!(item.contains_key("runningShard"));
    assert_eq!(row_from_item(&item).unwrap(), pending);
}

#[test]
fn pinned_documents_and_legacy_string_documents_both_read() {
    let mut row = running();
    row.documents[0].version_id = Some("3HL4kqtJlcpXroDTDmJ".into());
    row.documents[0].size = Some(42);
    let mut item = table().item_from_row(&row);
    assert_eq!(row_from_item(&item).unwrap(), row);
    item.insert(
        "documents".into(),
        AttributeValue::L(vec![s("s3://docs/incoming/case-1/a.txt")]),
    );
    let legacy = row_from_item(&item).unwrap();
    assert_eq!(
        legacy.documents,
        vec![ObjectRef::new("docs", "incoming/case-1/a.txt").into()]
    );
}

#[test]
fn when_a_stored_list_breaks_the_manifest_rules_then_the_row_is_unreadable_with_a_fingerprint() {
    let mut item = table().item_from_row(&running());
    let long = format!("s3://docs/incoming/case-1/{}", "k".repeat(1_100));
    item.insert("documents".into(), AttributeValue::L(vec![s(long)]));
    let Due::Unreadable(unreadable) = due_from_item(&item) else {
        panic!("read a row the manifest rules refuse");
    };
    assert_eq!(unreadable.key, "case-1");
    assert!(unreadable.reason.len() <= crate::batch::MAX_ERROR_BYTES);
    let (update, condition, values) = table().quarantine_of(&unreadable, "quarantined", 9);
    assert!(condition.contains("#status = :seen0"), "{condition}");
    assert!(condition.contains("#updatedAt = :seen3"), "{condition}");
    assert_eq!(values[":seen0"], s("RUNNING"));
    assert!(update.contains("REMOVE #runningShard"), "{update}");
}

#[test]
fn a_start_is_conditioned_on_a_pending_row_without_a_session() {
    let start = Transition::start(BatchId::parse("c").unwrap(), 2, SessionId::generate(), 5, 10);
    let (update, condition, _) = table().update_of(&start);
    assert!(condition.ends_with("attribute_not_exists(#sessionId)"), "{condition}");
    assert!(update.contains("#runningShard = :shard"), "{update}");
    let names = names_used(&[&update, &condition]);
    assert_eq!(names["#status"], "status");
    assert!(
        !names.contains_key("#resultRef"),
        "unused names are refused by DynamoDB"
    );
}

#[test]
fn a_stored_row_that_does_not_read_is_corrupt_not_a_panic() {
    let mut item = table().item_from_row(&running());
    item.insert("status".into(), s("EXPLODED"));
    assert_eq!(row_from_item(&item).unwrap_err().kind, TableErrorKind::Corrupt);
    item.remove("status");
    assert_eq!(row_from_item(&item).unwrap_err().kind, TableErrorKind::Corrupt);
}

#[test]
fn running_shards_are_stable_and_within_range() {
    assert_eq!(
        running_shard(&BatchId::parse("case-1").unwrap(), 8),
        running_shard(&BatchId::parse("case-1").unwrap(), 8)
    );
    let shards: std::collections::HashSet<u32> = (0..200)
        .map(|n| running_shard(&BatchId::parse(format!("b-{n}")).unwrap(), 8))
        .collect();
    assert!(shards.iter().all(|s| *s < 8));
    assert_eq!(shards.len(), 8, "200 ids should reach every shard");
    assert_eq!(running_shard(&BatchId::parse("x").unwrap(), 0), 0);
}

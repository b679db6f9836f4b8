//! The batch path under hostile input and lost answers, at the wire: the stale-batch detector
//! and the tracking table on moto (DynamoDB, SQS) with the real SDK clients, the AgentCore
//! emulator for StopRuntimeSession. Rows are written straight to the table where a test needs
//! a row no function of ours would write.

use aws_sdk_dynamodb::types::AttributeValue;
use cli::batch_setup::{BatchQueueSettings, BatchResources, Clients, create_batch_resources};
use std::collections::HashMap;
use std::time::Duration;
use warmpool_core::aws::dynamodb::TrackingLayout;
use warmpool_core::aws::{AgentCoreRuntime, DynamoTrackingTable, SqsMessageSink};
use warmpool_core::batch::ports::TrackingTable;
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus, ObjectRef, running_shard};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::session::SessionId;
use warmpool_tests::batch_stack::scheduled;
use warmpool_tests::{Moto, RUNTIME_ARN, agent_runtime, emulator, fast_lifecycle, sdk_config};

type WireDetector = stale_batch_detector::Detector<DynamoTrackingTable, SqsMessageSink, AgentCoreRuntime, SystemClock>;

struct Fixture {
    resources: BatchResources,
    dynamodb: aws_sdk_dynamodb::Client,
    table: DynamoTrackingTable,
    detector: WireDetector,
    _emulator: agentcore_emulator::RunningEmulator,
}

async fn fixture(extra: &[(&str, &str)]) -> Fixture {
    let moto = Moto::shared();
    let sdk = sdk_config(&moto.endpoint);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let s3 = warmpool_core::aws::s3::client(&sdk, true);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let name = format!("f{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let settings = BatchQueueSettings {
        max_receive_count: 5,
        visibility_timeout: Duration::from_secs(30),
    };
    let clients = Clients {
        sqs: &sqs,
        s3: &s3,
        dynamodb: &dynamodb,
    };
    let resources = create_batch_resources(&clients, &name, &settings)
        .await
        .expect("batch resources");
    let table = DynamoTrackingTable::new(dynamodb.clone(), &resources.tracking_table, TrackingLayout::default());
    let emulator = emulator(fast_lifecycle()).await;
    let mut pairs: Vec<(&str, &str)> = vec![
        ("TRACKING_TABLE", resources.tracking_table.as_str()),
        ("BATCH_QUEUE_URL", &resources.batch_queue_url),
        ("FAILURE_QUEUE_URL", &resources.failure_queue_url),
        ("AGENT_RUNTIME_ARN", RUNTIME_ARN),
    ];
    pairs.extend_from_slice(extra);
    let config = stale_batch_detector::Config::from_env(&Env::from_pairs(pairs)).expect("detector config");
    let detector = stale_batch_detector::Detector::new(
        config,
        table.clone(),
        SqsMessageSink::new(sqs.clone(), &resources.batch_queue_url),
        SqsMessageSink::new(sqs, &resources.failure_queue_url),
        agent_runtime(&emulator),
        SystemClock,
    );
    Fixture {
        resources,
        dynamodb,
        table,
        detector,
        _emulator: emulator,
    }
}

/// A RUNNING first attempt of `name`, already past its deadline, written through the adapter.
async fn overdue_row(f: &Fixture, name: &str) -> BatchRow {
    let now = SystemClock.now_ms();
    let row = BatchRow::new_running(
        BatchId::parse(name).unwrap(),
        vec![ObjectRef::new(
            &f.resources.documents_bucket,
            format!("incoming/{name}/a.txt"),
        )],
        3,
        SessionId::generate(),
        now - 120_000,
        now - 60_000,
    );
    f.table.create(&row).await.expect("create the row");
    row
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A RUNNING, overdue item that no parser of ours accepts: its only document's key is longer
/// than S3 allows, as a manifest could once write it.
async fn put_hostile_item(f: &Fixture, name: &str) {
    let now = SystemClock.now_ms();
    let key = format!("incoming/{name}/{}", "k".repeat(1_100));
    let item: HashMap<String, AttributeValue> = [
        ("batchId", s(name)),
        ("status", s("RUNNING")),
        ("attempt", n(1)),
        ("maxAttempts", n(3)),
        ("sessionId", s(SessionId::generate().as_str())),
        (
            "documents",
            AttributeValue::L(vec![s(&format!("s3://{}/{key}", f.resources.documents_bucket))]),
        ),
        ("acceptedAt", n(now - 120_000)),
        ("startedAt", n(now - 120_000)),
        ("updatedAt", n(now - 120_000)),
        ("deadline", n(now - 90_000)),
        (
            "runningShard",
            n(u64::from(running_shard(&BatchId::parse(name).unwrap(), 8))),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    f.dynamodb
        .put_item()
        .table_name(&f.resources.tracking_table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put the hostile item");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_row_cannot_be_read_then_the_detector_quarantines_it_and_settles_the_others() {
    let f = fixture(&[]).await;
    put_hostile_item(&f, "hostile-1").await;
    let honest = overdue_row(&f, "honest-1").await;

    let report = f
        .detector
        .handle(scheduled())
        .await
        .expect("no input can stop the detector");

    let settled = f.table.get(&honest.batch_id).await.unwrap().unwrap();
    assert_eq!(
        (settled.status, settled.attempt),
        (BatchStatus::Pending, 2),
        "{report:?}"
    );
    let raw = f
        .dynamodb
        .get_item()
        .table_name(&f.resources.tracking_table)
        .key("batchId", s("hostile-1"))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(raw.get("status"), Some(&s("FAILED")), "{raw:?}");
    assert!(!raw.contains_key("runningShard"), "out of the index: {raw:?}");
    let reason = raw
        .get("lastError")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    assert!(reason.contains("quarantined"), "{reason}");

    let again = f.detector.handle(scheduled()).await.expect("the next run too");
    assert_eq!(again.overdue, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_shard_zero_holds_more_than_a_run_settles_then_other_shards_still_get_their_turn() {
    let f = fixture(&[("MAX_BATCHES_PER_RUN", "1")]).await;
    let in_shard = |shard: u32| {
        (0..)
            .map(move |i| format!("s{shard}-{i}"))
            .filter(move |name| running_shard(&BatchId::parse(name.as_str()).unwrap(), 8) == shard)
    };
    for name in in_shard(0).take(8) {
        overdue_row(&f, &name).await;
    }
    let lonely = overdue_row(&f, &in_shard(5).next().unwrap()).await;

    for _ in 0..8 {
        f.detector.handle(scheduled()).await.expect("a run");
    }

    let row = f.table.get(&lonely.batch_id).await.unwrap().unwrap();
    assert_eq!(row.status, BatchStatus::Pending, "shard 5 was never reached: {row:?}");
}

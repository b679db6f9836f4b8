//! `--output json` on every command that prints a result, end to end: the real `warmpool`
//! binary against the local stack on 127.0.0.1, its stdout parsed as one JSON document.
//! Long waits run with stderr piped, so they also show the plain-line progress a script sees.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::{Killed, RUNTIME_ARN, emulator, first_json_document, get_session, moto, run, run_json, warmpool};
use warmpool_core::batch::ports::TrackingTable;
use warmpool_core::pool::claim::{ClaimedSession, Source};
use warmpool_core::session::{PooledSession, SessionId};

fn args(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn pool_prewarm_prints_the_plan_as_json() {
    let mut command = warmpool(&[]);
    command.args(args(
        "pool prewarm --base-rate 10 --peak-rate 50 --burst-secs 300 --starts-at *:25 --output json",
    ));
    let (plan, _) = run_json(command).await;
    assert_eq!(plan["target"], 9250);
    assert_eq!(plan["leadSecs"].as_u64().map(|s| s / 60), Some(16));
    assert_eq!(plan["poolTargetSchedule"], "* *:09-*:30=9250");
}

/// `warmpool ... | head -1`: the reader leaving early is no failure of the command.
#[tokio::test]
async fn a_reader_that_closes_stdout_early_is_no_crash() {
    let mut command = warmpool(&[]);
    command
        .args(args(
            "pool prewarm --base-rate 10 --peak-rate 50 --burst-secs 300 --output json",
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start warmpool");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("warmpool ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn local_relay_prints_where_it_listens_as_json() {
    let mut command = warmpool(&[]);
    command
        .args(args("local relay --forward http://127.0.0.1:9 --output json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut relay = Killed(command.spawn().expect("start the relay"));
    let listening = first_json_document(&mut relay.0, Duration::from_secs(30));
    let endpoint = listening["endpointUrl"].as_str().unwrap_or_default();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{listening}");
    assert_eq!(listening["forward"], "http://127.0.0.1:9");
    // It really listens there: an invoke behind the dead forward is the function's failure.
    let answer = reqwest::Client::new()
        .post(format!("{endpoint}/2015-03-31/functions/f/invocations"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the relay answers");
    assert_eq!(
        answer.headers().get("X-Amz-Function-Error").map(|v| v.as_bytes()),
        Some(&b"Unhandled"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_prints_the_claim_the_call_and_whether_the_microvm_was_warm_as_json() {
    let emulator = emulator().await;
    // get-session hands out the same pooled session twice: its first call starts a microVM,
    // the second finds it warm (as the emulator's admin view reports it).
    let session = SessionId::generate();
    let pooled = session.clone();
    let lambda = get_session(move || ClaimedSession {
        session_id: pooled.clone(),
        source: Source::Pool,
        created_at: 1,
        last_ping_at: Some(1),
        user_id: None,
    })
    .await;
    let (agent_url, lambda_url) = (emulator.endpoint_url(), lambda.endpoint_url());
    let invoke = || {
        let mut command = warmpool(&[
            ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", &agent_url),
            ("AWS_ENDPOINT_URL_LAMBDA", &lambda_url),
        ]);
        command
            .args(args("invoke --output json --runtime-arn"))
            .arg(RUNTIME_ARN)
            .args(["--emulator-url", &agent_url, "--payload", r#"{"prompt":"hi"}"#]);
        command
    };
    let (first, _) = run_json(invoke()).await;
    let (second, _) = run_json(invoke()).await;
    assert_eq!(first["sessionId"], session.as_str());
    assert_eq!(first["source"], "pool");
    assert_eq!(
        (first["microvm"].as_str(), second["microvm"].as_str()),
        (Some("cold"), Some("warm"))
    );
    assert_eq!(first["response"]["echo"]["prompt"], "hi", "{first}");
    let (claim, agent, total) = (&first["claimMs"], &first["agentMs"], &first["totalMs"]);
    assert_eq!(claim.as_u64().zip(agent.as_u64()).map(|(c, a)| c + a), total.as_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_compare_prints_both_routes_and_every_sample_as_json() {
    let emulator = emulator().await;
    let lambda = get_session(|| ClaimedSession {
        session_id: SessionId::generate(),
        source: Source::Fresh,
        created_at: 1,
        last_ping_at: None,
        user_id: None,
    })
    .await;
    let (agent_url, lambda_url) = (emulator.endpoint_url(), lambda.endpoint_url());
    let mut command = warmpool(&[
        ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", &agent_url),
        ("AWS_ENDPOINT_URL_LAMBDA", &lambda_url),
    ]);
    command
        .args(args("demo compare -n 3 --concurrency 2 --output json --runtime-arn"))
        .arg(RUNTIME_ARN)
        .args(["--emulator-url", &agent_url]);
    let (report, progress) = run_json(command).await;
    for route in ["withoutPool", "throughPool"] {
        assert_eq!(report[route]["invocations"], 3, "{route}: {report}");
        assert_eq!(report[route]["errors"], 0, "{route}: {report}");
        assert_eq!(report[route]["cold"], 3, "fresh sessions are cold: {report}");
    }
    assert_eq!(report["samplesThroughPool"].as_array().map(Vec::len), Some(3));
    assert!(
        progress.contains("invocations through the pool (claim, then invoke), 2 at a time: 3/3"),
        "{progress}"
    );
}

/// The admin view is read once both routes have run: its failure must not throw their
/// results away.
#[tokio::test(flavor = "multi_thread")]
async fn demo_compare_keeps_its_results_when_the_emulator_admin_view_fails() {
    let emulator = emulator().await;
    let lambda = get_session(|| ClaimedSession {
        session_id: SessionId::generate(),
        source: Source::Fresh,
        created_at: 1,
        last_ping_at: None,
        user_id: None,
    })
    .await;
    let (agent_url, lambda_url) = (emulator.endpoint_url(), lambda.endpoint_url());
    let mut command = warmpool(&[
        ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", &agent_url),
        ("AWS_ENDPOINT_URL_LAMBDA", &lambda_url),
    ]);
    command
        .args(args(
            "demo compare -n 2 --output json --emulator-url http://127.0.0.1:9 --runtime-arn",
        ))
        .arg(RUNTIME_ARN);
    let (report, stderr) = run_json(command).await;
    assert_eq!(report["throughPool"]["invocations"], 2, "{report}");
    assert_eq!(report["throughPool"]["warmthUnknown"], 2, "{report}");
    assert!(stderr.contains("cannot tell warmth"), "{stderr}");
}

fn sqs() -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto())
        .credentials_provider(Credentials::new("test", "test", None, None, "cli-tests"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

fn dynamodb() -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto())
        .credentials_provider(Credentials::new("test", "test", None, None, "cli-tests"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[tokio::test(flavor = "multi_thread")]
async fn local_setup_pool_and_pool_status_print_json_and_the_wait_for_depth_shows_progress() {
    let endpoint = [("AWS_ENDPOINT_URL", moto())];
    let mut command = warmpool(&endpoint);
    command.args([
        "local",
        "setup",
        "pool",
        "--name",
        &unique("cli-pool"),
        "--output",
        "json",
    ]);
    let (created, _) = run_json(command).await;
    let queue_url = created["queueUrl"].as_str().unwrap_or_default().to_string();
    assert!(queue_url.ends_with(".fifo"), "{created}");

    let now = warmpool_core::clock::Clock::now_ms(&warmpool_core::clock::SystemClock);
    for _ in 0..2 {
        let session = PooledSession::new(SessionId::generate(), now, now);
        sqs()
            .send_message()
            .queue_url(&queue_url)
            .message_body(session.to_body())
            .message_group_id(session.session_id.as_str())
            .message_deduplication_id(session.deduplication_id())
            .send()
            .await
            .expect("put a session in the pool");
    }
    let mut command = warmpool(&endpoint);
    command
        .args(["pool", "status", "--queue-url", &queue_url])
        .args(args("--sample 5 --wait-depth 2 --wait-secs 30 --output json"));
    let (report, progress) = run_json(command).await;
    assert_eq!(
        (report["visible"].as_u64(), report["peek"]["sampled"].as_u64()),
        (Some(2), Some(2)),
        "{report}"
    );
    assert_eq!(report["queueUrl"], queue_url.as_str());
    assert!(progress.contains("waiting for the pool to fill: 2/2"), "{progress}");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_setup_batches_batch_submit_and_batch_status_print_json() {
    let endpoint = [("AWS_ENDPOINT_URL", moto())];
    let mut command = warmpool(&endpoint);
    command
        .args(["local", "setup", "batches", "--name", &unique("cli")])
        .args(args("--s3-path-style --output json"));
    let (resources, _) = run_json(command).await;
    let bucket = resources["documents_bucket"].as_str().unwrap_or_default().to_string();
    let table = resources["tracking_table"].as_str().unwrap_or_default().to_string();
    assert!(!bucket.is_empty() && !table.is_empty(), "{resources}");
    assert!(
        resources["batch_queue_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http"))
    );

    let folder = std::env::temp_dir().join(unique("cli-batch"));
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("a.txt"), "alpha").unwrap();
    std::fs::write(folder.join("sub/b.md"), "# beta").unwrap();
    let submit = |extra: &[&str]| {
        let mut command = warmpool(&endpoint);
        command
            .args(extra)
            .args(["batch", "submit"])
            .arg(&folder)
            .args(["--bucket", &bucket, "--s3-path-style"]);
        command
    };
    let mut as_json = submit(&[]);
    as_json.args(["--output", "json"]);
    let (submission, _) = run_json(as_json).await;
    assert_eq!(
        submission["documents"].as_array().map(Vec::len),
        Some(2),
        "{submission}"
    );
    let batch_id = submission["batchId"].as_str().unwrap_or_default().to_string();

    // `-q` keeps what scripts read from the old `batch submit --quiet`: the ID alone.
    let quiet = run(submit(&["-q"])).await;
    let id_line = String::from_utf8_lossy(&quiet.stdout).trim().to_string();
    assert!(
        quiet.status.success() && !id_line.contains(char::is_whitespace),
        "{id_line:?}"
    );
    std::fs::remove_dir_all(&folder).unwrap();

    // No invoker runs here: the test writes the row the invoker would have.
    write_running_row(&table, &batch_id).await;
    let mut command = warmpool(&endpoint);
    command
        .args(["batch", "status", &batch_id, "--table", &table])
        .args(args("--wait-secs 1 --output json"));
    let (status, progress) = run_json(command).await;
    assert_eq!(
        (status["batchId"].as_str(), status["status"].as_str()),
        (Some(batch_id.as_str()), Some("RUNNING"))
    );
    assert_eq!(status["maxAttempts"], 3);
    assert!(
        progress.contains(&format!("waiting for batch {batch_id}: RUNNING, attempt 1 of 3")),
        "{progress}"
    );

    // A failing emulator admin view costs the microVM line, not the row.
    let mut command = warmpool(&endpoint);
    command
        .args(["batch", "status", &batch_id, "--table", &table])
        .args(args("--emulator-url http://127.0.0.1:9 --output json"));
    let (status, stderr) = run_json(command).await;
    assert_eq!(
        (status["status"].as_str(), status["microvm"].as_str()),
        (Some("RUNNING"), Some("unknown"))
    );
    assert!(stderr.contains("cannot tell warmth"), "{stderr}");
}

/// The RUNNING row of attempt 1 the invoker would have written for `batch_id`.
async fn write_running_row(table: &str, batch_id: &str) {
    let id = warmpool_core::batch::BatchId::parse(batch_id).unwrap();
    let row = warmpool_core::batch::BatchRow::new_running(
        id.clone(),
        vec![warmpool_core::batch::ObjectRef::new(
            "documents",
            format!("{}a.txt", id.incoming_prefix()),
        )],
        3,
        SessionId::generate(),
        1_000,
        61_000,
    );
    let tracking = warmpool_core::aws::DynamoTrackingTable::new(dynamodb(), table, Default::default());
    tracking.create(&row).await.expect("write the tracking row");
}

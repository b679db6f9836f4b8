//! `make bench`: claim throughput of 32 concurrent claimers against the same local SQS, with
//! the pool in ONE message group (the published reference layout) versus one group per
//! session (this project's layout). Writes `target/bench/summary.json` and prints the figures.
//!
//! Then the cost of leases: get-session's claim latency against the same local stack without a
//! lease table, with one (a first claim: claim and bind), and a second turn (a reuse), under
//! `leases` in the summary.
//!
//! Built in the dev profile on purpose: the server (moto) is the bottleneck, not this code.

use serde_json::{Map, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::pool::claim::{ClaimError, ClaimPolicy, Claimer, OnEmpty};
use warmpool_core::ports::PoolQueue;
use warmpool_core::session::{PooledSession, SessionId};
use warmpool_tests::{fill_pool, merge_into_summary, pool_queue};

const CLAIMERS: usize = 32;
const POOL: usize = 600;
const TIME_LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy)]
enum Layout {
    SingleGroup,
    GroupPerSession,
}

struct Run {
    claims: u64,
    false_empties: u64,
    attempts: u64,
    seconds: f64,
}

impl Run {
    fn claims_per_second(&self) -> f64 {
        self.claims as f64 / self.seconds
    }

    fn false_empty_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.false_empties as f64 / self.attempts as f64
        }
    }
}

/// Every claimer claims until the pool is really empty. An empty answer while messages are
/// still in the queue is a false empty: that caller would have been sent to a cold start.
async fn measure(layout: Layout) -> Run {
    let queue = pool_queue("bench").await;
    let now = SystemClock.now_ms();
    let sessions: Vec<PooledSession> = (0..POOL)
        .map(|_| PooledSession::new(SessionId::generate(), now, now))
        .collect();
    fill_pool(&queue, &sessions, |s| match layout {
        Layout::SingleGroup => "pool".to_string(),
        Layout::GroupPerSession => s.message_group_id().to_string(),
    })
    .await;
    let claimer = Arc::new(Claimer {
        queue: queue.clone(),
        trigger: RecordingTrigger::default(),
        clock: SystemClock,
        policy: ClaimPolicy {
            on_empty: OnEmpty::Fail,
            ..ClaimPolicy::default()
        },
    });
    let (claims, false_empties, attempts) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let (claimer, queue) = (claimer.clone(), queue.clone());
            let (claims, false_empties, attempts) = (claims.clone(), false_empties.clone(), attempts.clone());
            tokio::spawn(async move {
                while started.elapsed() < TIME_LIMIT && attempts.load(Ordering::SeqCst) < (POOL * 20) as u64 {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    match claimer.claim().await {
                        Ok(_) => {
                            claims.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(ClaimError::PoolEmpty) => {
                            if queue.depth().await.expect("depth").total() == 0 {
                                break;
                            }
                            false_empties.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => panic!("claim failed: {error}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("claimer");
    }
    Run {
        claims: claims.load(Ordering::SeqCst),
        false_empties: false_empties.load(Ordering::SeqCst),
        attempts: attempts.load(Ordering::SeqCst),
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> std::io::Result<()> {
    println!("claim throughput: {CLAIMERS} concurrent claimers, {POOL} pooled sessions, local SQS (moto)");
    let single = measure(Layout::SingleGroup).await;
    let per_session = measure(Layout::GroupPerSession).await;
    println!(
        "{:<28} {:>12} {:>12} {:>14}",
        "layout", "claims", "claims/s", "false empty"
    );
    for (name, run) in [("one message group", &single), ("one group per session", &per_session)] {
        println!(
            "{:<28} {:>12} {:>12.1} {:>13.2}%",
            name,
            run.claims,
            run.claims_per_second(),
            run.false_empty_rate() * 100.0
        );
    }
    let ratio = per_session.claims_per_second() / single.claims_per_second();
    println!("throughput ratio (per-session groups / one group): {ratio:.2}x");
    let figures = Map::from_iter([
        ("claim_tps_single_group".to_string(), json!(single.claims_per_second())),
        (
            "claim_tps_per_session_group".to_string(),
            json!(per_session.claims_per_second()),
        ),
        ("claim_tps_ratio".to_string(), json!(ratio)),
        (
            "false_empty_rate_single_group".to_string(),
            json!(single.false_empty_rate()),
        ),
        (
            "false_empty_rate_per_session_group".to_string(),
            json!(per_session.false_empty_rate()),
        ),
    ]);
    let mut figures = figures;
    figures.insert("leases".to_string(), lease_costs().await);
    let path = merge_into_summary(figures)?;
    println!("written to {}", path.display());
    Ok(())
}

/// Claims measured per mode of the lease comparison.
const LEASE_CLAIMS: usize = 200;

/// p50 and p99 of `samples` in milliseconds.
fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    (at(50), at(99))
}

/// get-session's claim latency (its own `respond`, real SDK clients, moto and the emulator),
/// sequential so that each figure is one claim's cost, not queueing.
async fn lease_costs() -> serde_json::Value {
    use get_session::GetSession;
    use lambda_runtime::LambdaEvent;
    use warmpool_core::aws::DynamoLeaseTable;
    use warmpool_core::config::Env;
    let moto = &warmpool_tests::Moto::shared().endpoint;
    let dynamodb = aws_sdk_dynamodb::Client::new(&warmpool_tests::sdk_config(moto));
    let table_name = format!("bench-leases-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    warmpool_local_stack::setup::leases::create_lease_table(&dynamodb, &table_name)
        .await
        .expect("lease table");
    let emulator = warmpool_tests::emulator(warmpool_tests::fast_lifecycle()).await;
    let queue = pool_queue("bench-leases").await;
    let now = SystemClock.now_ms();
    let sessions: Vec<PooledSession> = (0..LEASE_CLAIMS * 2)
        .map(|_| PooledSession::new(SessionId::generate(), now, now))
        .collect();
    fill_pool(&queue, &sessions, |s| s.message_group_id().to_string()).await;
    let env = Env::from_pairs([
        ("POOL_QUEUE_URL", queue.queue_url()),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("LEASE_TABLE_NAME", table_name.as_str()),
        ("AGENT_RUNTIME_ARN", warmpool_tests::RUNTIME_ARN),
    ]);
    let config = get_session::Config::from_env(&env).expect("config");
    let keep = config.leases.as_ref().expect("leases").keep();
    let plain = GetSession::new(&config, queue.clone(), RecordingTrigger::default(), SystemClock);
    let leased = GetSession::new(&config, queue.clone(), RecordingTrigger::default(), SystemClock).with_leases(
        &config,
        DynamoLeaseTable::new(dynamodb, &table_name, keep),
        warmpool_tests::agent_runtime(&emulator),
    );
    let mut timed = Vec::new();
    for mode in ["off", "first", "reuse"] {
        let mut samples = Vec::new();
        for n in 0..LEASE_CLAIMS {
            let payload = match mode {
                "off" => json!({}),
                "first" => json!({ "userId": format!("bench-user-{n}") }),
                _ => json!({ "userId": "bench-user-0" }),
            };
            let event = LambdaEvent::new(payload, lambda_runtime::Context::default());
            let started = Instant::now();
            let answer = match mode {
                "off" => plain.respond(event).await,
                _ => leased.respond(event).await,
            };
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            answer.expect("a claim");
        }
        timed.push((mode, percentiles(samples)));
    }
    let (off, first, reuse) = (timed[0].1, timed[1].1, timed[2].1);
    println!("claim latency, {LEASE_CLAIMS} sequential claims each (get-session against moto):");
    println!("{:<28} {:>10} {:>10}", "leases", "p50 ms", "p99 ms");
    for (mode, (p50, p99)) in &timed {
        println!("{mode:<28} {p50:>10.1} {p99:>10.1}");
    }
    println!(
        "p50 ratio with leases / without: first claim {:.2}x, reuse {:.2}x",
        first.0 / off.0,
        reuse.0 / off.0
    );
    json!({
        "claims_per_mode": LEASE_CLAIMS,
        "off_p50_ms": off.0, "off_p99_ms": off.1,
        "first_claim_p50_ms": first.0, "first_claim_p99_ms": first.1,
        "reuse_p50_ms": reuse.0, "reuse_p99_ms": reuse.1,
        "first_claim_p50_ratio": first.0 / off.0,
        "reuse_p50_ratio": reuse.0 / off.0,
    })
}

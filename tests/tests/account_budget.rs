//! Two pools of one account under one creation quota: the emulator, like AgentCore, counts
//! every new session of the account against one token bucket, whichever runtime or pool asked.

use agentcore_emulator::RunningEmulator;
use agentcore_emulator::lifecycle::{LifecycleConfig, Stats};
use lambda_runtime::LambdaEvent;
use warmpool_core::pool::quota::{PoolShare, check_account_shares};
use warmpool_tests::*;

/// The account's quota at the emulator, scaled down from 25/s so the test takes seconds.
const ACCOUNT_QUOTA: u32 = 10;
const SESSIONS_PER_POOL: u32 = 15;

/// Both pools top up `SESSIONS_PER_POOL` at once, each paced at its own share; what the
/// emulator saw.
async fn top_up_two_pools_at_once(name: &str, shares: [u32; 2]) -> Stats {
    let emulator = emulator(LifecycleConfig {
        creation_rate_per_sec: f64::from(ACCOUNT_QUOTA),
        ..fast_lifecycle()
    })
    .await;
    let mut runs = Vec::new();
    let mut relays = Vec::new();
    for (pool, share) in shares.iter().enumerate() {
        let queue = pool_queue(&format!("{name}-{pool}")).await;
        let share = share.to_string();
        let settings = [
            ("CREATION_BUDGET_PER_SEC", share.as_str()),
            ("MAX_CONCURRENT_RUNS", "1"),
            ("WARMUP_CONCURRENCY", "8"),
            ("POOL_TARGET", "100"),
        ];
        let (function, relay, _) = replenish_with_relay(queue, &emulator, &settings).await;
        relays.push(relay);
        runs.push(tokio::spawn(async move {
            let payload = serde_json::json!({ "count": SESSIONS_PER_POOL });
            let event = LambdaEvent::new(payload, lambda_runtime::Context::default());
            function.handle(event).await.expect("replenish run")
        }));
    }
    for run in runs {
        run.await.expect("run");
    }
    stats_of(&emulator)
}

fn stats_of(emulator: &RunningEmulator) -> Stats {
    let stats = emulator.stats();
    println!(
        "creations {} throttled {} most in any second {} per second {:?}",
        stats.creations, stats.throttled, stats.max_creations_in_any_second, stats.creations_per_second
    );
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_whose_shares_fit_the_account_quota_top_up_together_without_a_throttle() {
    let shares = [ACCOUNT_QUOTA / 2, ACCOUNT_QUOTA / 2];
    let deployed = [PoolShare {
        pool: "chat".into(),
        per_second: shares[0],
    }];
    assert!(check_account_shares(&deployed, "search", shares[1], ACCOUNT_QUOTA).is_ok());

    let stats = top_up_two_pools_at_once("shares", shares).await;

    assert_eq!(stats.throttled, 0, "the account's quota never had to refuse a creation");
    // Exact slots give at most the quota in any second; one run per pool can add one at a
    // window's edge (see warmpool_core::pool::quota).
    assert!(
        stats.max_creations_in_any_second <= ACCOUNT_QUOTA + 2,
        "{:?}",
        stats.creations_per_second
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_that_each_assume_the_whole_quota_throttle_each_other_and_the_check_refuses_them() {
    let deployed = [PoolShare {
        pool: "chat".into(),
        per_second: ACCOUNT_QUOTA,
    }];
    assert!(check_account_shares(&deployed, "search", ACCOUNT_QUOTA, ACCOUNT_QUOTA).is_err());

    let stats = top_up_two_pools_at_once("whole", [ACCOUNT_QUOTA, ACCOUNT_QUOTA]).await;

    assert!(stats.throttled > 0, "twice the quota asked at once must be throttled");
}

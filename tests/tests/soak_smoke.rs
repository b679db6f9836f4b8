//! The batch soak in small: 20 batches through the real functions with the soak's fault mix,
//! so CI runs the soak's own code and its counts. `make soak` runs the full 1,000.

use std::time::Duration;
use warmpool_tests::soak::batches::{self, BatchSoak};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_batches_under_the_soak_fault_mix_lose_nothing_and_break_no_invariant() {
    let soak = BatchSoak {
        batches: 20,
        max_open: 20,
        pool_target: 24,
        probers: 2,
        wall_limit: Duration::from_secs(50),
        agent_binary: batches::built_agent().or_else(batches::build_agent),
        ..BatchSoak::default()
    };
    let report = batches::run(&soak).await;
    eprintln!("{:#?}", report.figures());
    assert_eq!(
        report.agent_mode, "per-session-process",
        "the agent binary was not found or built"
    );
    let figures = report.figures();
    for key in batches::BatchReport::MUST_BE_ZERO {
        assert_eq!(figures[key], 0, "{key}: {:?}", report.findings);
    }
    assert_eq!(report.succeeded + report.failed, 20);
    assert!(
        report.probes.probes > 0 && report.probes.accepted == 0,
        "{:?}",
        report.probes
    );
}

//! `make soak`: long runs under injected faults that count invariant violations, written to
//! `target/bench/soak.json`. A benchmark, not a test: it reports, and exits non-zero only when
//! a count that must be zero is not.

use serde_json::{Map, Value, json};
use std::process::ExitCode;
use warmpool_tests::soak::batches::{self, BatchReport, BatchSoak};
use warmpool_tests::soak::claims::{self, ClaimSoak};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let soak = ClaimSoak::default();
    let report = claims::run(&soak).await;
    println!(
        "claims: {} ({} from the pool), clock jumps past the visibility: {}, double handouts: {} ({:.1} s)",
        report.claims,
        report.from_pool,
        report.clock_jumps,
        report.double_handouts,
        started.elapsed().as_secs_f64()
    );
    let mut figures = Map::new();
    figures.insert("claims".into(), json!(report.claims));
    figures.insert("double_handouts".into(), json!(report.double_handouts));
    let mut faults = Map::new();
    faults.insert("claim_clock_jumps".into(), json!(report.clock_jumps));

    let batch_soak = BatchSoak::from_env();
    if batch_soak.agent_binary.is_none() {
        eprintln!("soak: target/debug/document-agent not built; the agent runs in-process (agent_mode)");
    }
    let batch = batches::run(&batch_soak).await;
    println!(
        "batches: {} ({} succeeded, {} failed), lost {}, attempts on two sessions {}, foreign result writes {}, \
         late terminal {}, sessions left running {} ({:.1} s, agent {})",
        batch.batches,
        batch.succeeded,
        batch.failed,
        batch.lost_batches,
        batch.attempts_on_two_sessions,
        batch.foreign_result_writes,
        batch.late_terminal_batches,
        batch.sessions_left_running,
        batch.wall_secs,
        batch.agent_mode
    );
    for finding in &batch.findings {
        eprintln!("soak finding: {finding}");
    }
    figures.extend(batch.figures());
    faults.extend(batch.faults_injected.clone());
    figures.insert("faults_injected".into(), Value::Object(faults));
    figures.insert("wall_secs".into(), json!(started.elapsed().as_secs_f64()));

    let must_be_zero = ["double_handouts"].into_iter().chain(BatchReport::MUST_BE_ZERO);
    write(&figures);
    let broken: Vec<&str> = must_be_zero.filter(|k| figures[*k] != json!(0)).collect();
    if !broken.is_empty() {
        eprintln!("soak: invariants broken: {broken:?} (see target/bench/soak.json)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn write(figures: &Map<String, Value>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/soak.json");
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(figures).unwrap_or_default()));
    match written {
        Ok(()) => println!("written to {}", path.display()),
        Err(e) => eprintln!("{}: {e}", path.display()),
    }
}

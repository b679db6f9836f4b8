//! `make soak`: long runs under injected faults that count invariant violations, written to
//! `target/bench/soak.json`. A benchmark, not a test: it reports, and exits non-zero only when
//! a count that must be zero is not.

use serde_json::{Map, Value, json};
use std::process::ExitCode;
use warmpool_tests::soak::claims::{self, ClaimSoak};

#[tokio::main(flavor = "current_thread")]
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
    figures.insert(
        "faults_injected".into(),
        json!({ "claim_clock_jumps": report.clock_jumps }),
    );
    let must_be_zero = ["double_handouts"];
    write(&figures);
    if must_be_zero.iter().any(|k| figures[*k] != json!(0)) {
        eprintln!("soak: an invariant was broken (see target/bench/soak.json)");
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

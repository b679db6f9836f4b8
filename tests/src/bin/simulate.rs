//! `make bench`, second part: the pool policies side by side in a discrete-event simulation
//! (see `warmpool_tests::simulation`). Prints the table and merges it into
//! `target/bench/summary.json` under `simulation`.
//!
//! `SIM_SEED` changes the seed (42); `SIM_REFERENCE_POOL` the reference's fixed pool (100);
//! `SIM_THREADS` the runs in parallel (available cores);
//! `SIM_PROJECT_ENV` adds settings to the project's, e.g. `ADAPTIVE_SAFETY_FACTOR=0.5,ADAPTIVE_FLOOR=4`.

use serde_json::{Map, Value};
use std::process::ExitCode;
use std::time::Instant;
use warmpool_tests::merge_into_summary;
use warmpool_tests::simulation::{Policy, Profile, Row, Run, Settings, run_all, run_jobs};

/// Fixed pools the reference is also run with, to compare at equal hit rates.
const LARGER_REFERENCE_POOLS: [u32; 3] = [300, 1_000, 3_000];

/// The reference with one fixed pool size on one profile.
#[derive(Debug, serde::Serialize)]
struct ReferencePool<'a> {
    reference_pool: u32,
    #[serde(flatten)]
    row: &'a Row,
}

/// What goes into the summary: `simulation` and `simulation_reference_pools`, replacing
/// what an earlier run wrote there.
fn figures(runs: &[Run], pools: &[ReferencePool]) -> serde_json::Result<Map<String, Value>> {
    let rows: Vec<_> = runs.iter().map(|r| &r.row).collect();
    Ok(Map::from_iter([
        ("simulation".to_string(), serde_json::to_value(rows)?),
        ("simulation_reference_pools".to_string(), serde_json::to_value(pools)?),
    ]))
}

fn table(runs: &[Run], lead_in_ms: u64) -> String {
    let mut out = format!(
        "{:<15} {:<10} {:>9} {:>8} {:>7} {:>7} {:>9} {:>9} | {:>7} {:>7} {:>9} {:>7} {:>8}\n",
        "profile",
        "policy",
        "warm hit",
        "dead ID",
        "p50 ms",
        "p99 ms",
        "idle s-h",
        "throttle",
        "fresh",
        "gave up",
        "heartbeat",
        "retired",
        "target"
    );
    for run in runs {
        let (row, d) = (&run.row, &run.details);
        let targets = d.targets.iter().filter(|t| t.0 >= lead_in_ms).map(|t| t.1);
        let target = match (targets.clone().min(), targets.max()) {
            (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<15} {:<10} {:>8.2}% {:>8} {:>7} {:>7} {:>9.1} {:>9} | {:>7} {:>7} {:>9} {:>7} {:>8}\n",
            row.profile,
            row.policy.name(),
            row.warm_hit_rate * 100.0,
            row.dead_ids_handed_out,
            row.p50_ms,
            row.p99_ms,
            row.idle_session_hours,
            row.creation_throttles,
            d.fresh_fallbacks,
            d.gave_up,
            d.heartbeats,
            d.retired,
            target
        ));
    }
    out.push_str(
        "(right of |: fresh fallbacks, requests given up after three throttled attempts, heartbeats, \
         retirements, range of the adaptive target while measured)\n",
    );
    out
}

/// For each profile, the project against the cheapest reference pool that reaches its hit rate.
fn equal_hit_rate(runs: &[Run], pools: &[ReferencePool]) -> String {
    let mut out = String::from("at the project's hit rate, the cheapest reference pool among those run:\n");
    for project in runs.iter().map(|r| &r.row).filter(|r| r.policy == Policy::Project) {
        let candidates = pools.iter().filter(|p| p.row.profile == project.profile);
        let cheapest = candidates
            .clone()
            .filter(|p| p.row.warm_hit_rate >= project.warm_hit_rate)
            .min_by(|a, b| a.row.idle_session_hours.total_cmp(&b.row.idle_session_hours));
        let verdict = match cheapest {
            Some(p) => format!(
                "reference pool {} reaches it with {:.1} idle s-h",
                p.reference_pool, p.row.idle_session_hours
            ),
            None => {
                let best = candidates.max_by(|a, b| a.row.warm_hit_rate.total_cmp(&b.row.warm_hit_rate));
                best.map_or("no reference run".into(), |p| {
                    format!(
                        "no reference pool reaches it (best {:.2}% with {})",
                        p.row.warm_hit_rate * 100.0,
                        p.reference_pool
                    )
                })
            }
        };
        out.push_str(&format!(
            "  {:<15} project {:.2}% with {:.1} idle s-h; {verdict}\n",
            project.profile,
            project.warm_hit_rate * 100.0,
            project.idle_session_hours
        ));
    }
    out
}

fn main() -> ExitCode {
    let mut settings = Settings::default();
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        settings.seed = seed;
    }
    if let Some(size) = std::env::var("SIM_REFERENCE_POOL").ok().and_then(|s| s.parse().ok()) {
        settings.reference_pool = size;
    }
    let extra = std::env::var("SIM_PROJECT_ENV").unwrap_or_default();
    for pair in extra.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            eprintln!("simulate: SIM_PROJECT_ENV wants KEY=VALUE pairs, got {pair:?}");
            return ExitCode::FAILURE;
        };
        settings
            .project_env
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    let threads = std::env::var("SIM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let profiles = Profile::standard();
    println!(
        "simulation: {} profiles x 3 policies, seed {}, creation quota {}/s, virtual clock",
        profiles.len(),
        settings.seed,
        settings.service.creation_rate_per_sec
    );
    let started = Instant::now();
    let runs = match run_all(&profiles, &settings, threads) {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("simulate: {error}");
            return ExitCode::FAILURE;
        }
    };
    let lead_in_ms = warmpool_core::clock::millis(settings.lead_in);
    print!("{}", table(&runs, lead_in_ms));
    let larger: Vec<_> = profiles
        .iter()
        .flat_map(|profile| {
            LARGER_REFERENCE_POOLS.map(|size| {
                let settings = Settings {
                    reference_pool: size,
                    ..settings.clone()
                };
                (profile.clone(), Policy::Reference, settings)
            })
        })
        .collect();
    let sizes: Vec<u32> = larger.iter().map(|job| job.2.reference_pool).collect();
    let larger = match run_jobs(larger, threads) {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("simulate: {error}");
            return ExitCode::FAILURE;
        }
    };
    let pools: Vec<ReferencePool> = runs
        .iter()
        .filter(|r| r.row.policy == Policy::Reference)
        .map(|r| (settings.reference_pool, r))
        .chain(sizes.into_iter().zip(&larger))
        .map(|(reference_pool, run)| ReferencePool {
            reference_pool,
            row: &run.row,
        })
        .collect();
    for pool in &pools {
        println!(
            "  reference pool {:>5} on {:<15} {:>7.2}% warm, {:>5} dead IDs, {:>9.1} idle s-h",
            pool.reference_pool,
            pool.row.profile,
            pool.row.warm_hit_rate * 100.0,
            pool.row.dead_ids_handed_out,
            pool.row.idle_session_hours
        );
    }
    print!("{}", equal_hit_rate(&runs, &pools));
    println!("simulated in {:.1} s of wall time", started.elapsed().as_secs_f64());
    match figures(&runs, &pools)
        .map_err(std::io::Error::from)
        .and_then(merge_into_summary)
    {
        Ok(path) => {
            println!("written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("simulate: cannot write the summary: {error}");
            ExitCode::FAILURE
        }
    }
}

//! `make bench`, second part: the pool policies side by side in a discrete-event simulation
//! (the `warmpool-simulation` crate, `crates/simulation`). Prints the tables and merges the
//! figures into `target/bench/summary.json` under `simulation` and `simulation_reference_pools`.
//! Every profile and policy runs on platform V1 and again on V2 (the same seed, V2's cold start
//! and prices); the larger reference pools run on V1 only, to keep the run short.
//!
//! Then the conversation workload (`SIM_TURNS` turns of `SIM_THINK_SECS` mean think time, 5 and
//! 30) on the two-hour profiles, the project's policy with affinity off (every turn claims) and on
//! (later turns reuse their live session), side by side under `simulation_conversations`.
//!
//! Last, the planner (`warmpool plan`) on the built-in `week` trace, all candidates, with
//! progress lines: its wall time and its pace next to the 60 s target, under `planner`.
//!
//! `SIM_SEED` changes the seed (42); `SIM_REFERENCE_POOL` the reference's fixed pool (100);
//! `SIM_THREADS` the runs in parallel (available cores);
//! `SIM_PROJECT_ENV` adds settings to the project's, e.g. `ADAPTIVE_SAFETY_FACTOR=0.5,ADAPTIVE_FLOOR=4`.

use agentcore_emulator::lifecycle::Platform;
use cli::table::Table;
use std::fmt::Display;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;
use warmpool_simulation::conversation::side_by_side;
use warmpool_simulation::cost::Pricing;
use warmpool_simulation::report::{AtEqualHitRate, at_equal_hit_rate, summary_figures};
use warmpool_simulation::{
    Conversation, ConversationRow, Policy, Profile, ReferencePool, Run, Settings, SimError, run_all, run_jobs,
};
use warmpool_tests::merge_into_summary;

/// Fixed pools the reference is also run with, to compare at equal hit rates.
const LARGER_REFERENCE_POOLS: [u32; 3] = [300, 1_000, 3_000];

/// A number from the environment; `None` when unset or unreadable.
fn number<T: FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// The settings and the runs in parallel, from the `SIM_*` variables; unset or unreadable
/// numbers keep their defaults.
fn settings_from_env() -> Result<(Settings, usize), String> {
    let mut settings = Settings::default();
    if let Some(seed) = number("SIM_SEED") {
        settings.seed = seed;
    }
    if let Some(size) = number("SIM_REFERENCE_POOL") {
        settings.reference_pool = size;
    }
    let extra = std::env::var("SIM_PROJECT_ENV").unwrap_or_default();
    for pair in extra.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("SIM_PROJECT_ENV wants KEY=VALUE pairs, got {pair:?}"));
        };
        settings
            .project_env
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    let threads = number("SIM_THREADS").unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    Ok((settings, threads))
}

/// Every run, one line each; the right part counts what the policies did.
fn policies_table(runs: &[Run], lead_in_ms: u64) -> String {
    let mut table = Table::with_header([
        "profile",
        "policy",
        "warm hit",
        "dead ID",
        "p50 ms",
        "p99 ms",
        "idle s-h",
        "throttle",
        "|",
        "fresh",
        "gave up",
        "heartbeat",
        "retired",
        "target",
    ]);
    for run in runs {
        let (row, d) = (&run.row, &run.details);
        let target = d
            .target_range(lead_in_ms)
            .map_or_else(|| "-".to_string(), |(lo, hi)| format!("{lo}..{hi}"));
        table.row([
            row.profile.clone(),
            row.policy.name().to_string(),
            format!("{:.2}%", row.warm_hit_rate * 100.0),
            row.dead_ids_handed_out.to_string(),
            row.p50_ms.to_string(),
            row.p99_ms.to_string(),
            format!("{:.1}", row.idle_session_hours),
            row.creation_throttles.to_string(),
            "|".to_string(),
            d.fresh_fallbacks.to_string(),
            d.gave_up.to_string(),
            d.heartbeats.to_string(),
            d.retired.to_string(),
            target,
        ]);
    }
    let mut out = table.render();
    out.push_str(
        "(right of |: fresh fallbacks, requests given up after three throttled attempts, heartbeats, \
         retirements, range of the adaptive target while measured)\n",
    );
    out
}

/// V1 and V2 side by side for each profile and policy: `v1` and `v2` hold the same jobs in
/// the same order.
fn platforms_table(v1: &[Run], v2: &[Run], lead_in_ms: u64) -> String {
    let mut table = Table::with_header([
        "profile",
        "policy",
        "warm V1",
        "warm V2",
        "p99 V1",
        "p99 V2",
        "target V1",
        "target V2",
        "idle s-h V1",
        "idle s-h V2",
        "idle $ V1",
        "idle $ V2",
    ]);
    let target = |run: &Run| {
        run.details
            .target_median(lead_in_ms)
            .map_or_else(|| "-".to_string(), |t| t.to_string())
    };
    for (a, b) in v1.iter().zip(v2) {
        table.row([
            a.row.profile.clone(),
            a.row.policy.name().to_string(),
            format!("{:.2}%", a.row.warm_hit_rate * 100.0),
            format!("{:.2}%", b.row.warm_hit_rate * 100.0),
            a.row.p99_ms.to_string(),
            b.row.p99_ms.to_string(),
            target(a),
            target(b),
            format!("{:.1}", a.row.idle_session_hours),
            format!("{:.1}", b.row.idle_session_hours),
            format!("{:.2}", a.row.idle_cost_usd),
            format!("{:.2}", b.row.idle_cost_usd),
        ]);
    }
    let mut out = table.render();
    let (p1, p2) = (Pricing::of(Platform::V1), Pricing::of(Platform::V2));
    out.push_str(&format!(
        "(target: median adaptive target while measured; idle $ = idle session-hours x GB per session x \
         GB-hour price: V1 {} GB x ${}, V2 {} GB x ${})\n",
        p1.gb_per_session, p1.usd_per_gb_hour, p2.gb_per_session, p2.usd_per_gb_hour
    ));
    out
}

/// The reference at each fixed pool size it ran with, one line per profile and size.
fn reference_pools_table(pools: &[ReferencePool]) -> String {
    let mut table = Table::with_header(["profile", "reference pool", "warm hit", "dead IDs", "idle s-h"]);
    for pool in pools {
        table.row([
            pool.row.profile.clone(),
            pool.reference_pool.to_string(),
            format!("{:.2}%", pool.row.warm_hit_rate * 100.0),
            pool.row.dead_ids_handed_out.to_string(),
            format!("{:.1}", pool.row.idle_session_hours),
        ]);
    }
    table.render()
}

/// For each profile, the project against the cheapest reference pool that reaches its hit rate.
fn equal_hit_rate(runs: &[Run], pools: &[ReferencePool]) -> String {
    let mut out = String::from("at the project's hit rate, the cheapest reference pool among those run:\n");
    for project in runs.iter().map(|r| &r.row).filter(|r| r.policy == Policy::Project) {
        let verdict = match at_equal_hit_rate(project, pools) {
            AtEqualHitRate::Reached(p) => format!(
                "reference pool {} reaches it with {:.1} idle s-h",
                p.reference_pool, p.row.idle_session_hours
            ),
            AtEqualHitRate::NotReached(p) => format!(
                "no reference pool reaches it (best {:.2}% with {})",
                p.row.warm_hit_rate * 100.0,
                p.reference_pool
            ),
            AtEqualHitRate::NoRun => "no reference run".to_string(),
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

/// The reference on every profile with each of the larger fixed pools, as (pool, run).
fn larger_reference_pools(
    profiles: &[Profile],
    settings: &Settings,
    threads: usize,
) -> Result<Vec<(u32, Run)>, SimError> {
    let jobs: Vec<_> = profiles
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
    let sizes: Vec<u32> = jobs.iter().map(|job| job.2.reference_pool).collect();
    Ok(sizes.into_iter().zip(run_jobs(jobs, threads)?).collect())
}

/// The conversation shape from `SIM_TURNS` and `SIM_THINK_SECS`.
fn conversation_from_env() -> Conversation {
    Conversation {
        turns: number("SIM_TURNS").unwrap_or(std::num::NonZeroU32::MIN.saturating_add(4)),
        think_time: std::time::Duration::from_secs(number("SIM_THINK_SECS").unwrap_or(30)),
    }
}

/// One-shot against affinity, two lines per profile.
fn conversations_table(rows: &[ConversationRow]) -> String {
    let mut table = Table::with_header([
        "profile",
        "mode",
        "warm hit",
        "claims/req",
        "creations",
        "pool idle s-h",
        "held idle s-h",
        "peak target",
    ]);
    for row in rows {
        table.row([
            row.profile.clone(),
            row.mode.to_string(),
            format!("{:.2}%", row.warm_hit_rate * 100.0),
            format!("{:.3}", row.claims_per_request),
            row.creations.to_string(),
            format!("{:.1}", row.idle_session_hours),
            format!("{:.1}", row.held_idle_session_hours),
            row.peak_target.map_or_else(|| "-".to_string(), |t| t.to_string()),
        ]);
    }
    let mut out = table.render();
    out.push_str(
        "(held idle: sessions after use, until the next turn or the idle timeout; peak target: the \
         highest target while measured, the pre-warm stock on the burst profiles)\n",
    );
    out
}

/// The project's policy on the two-hour profiles, conversations with affinity off and on.
fn conversation_rows(
    profiles: &[Profile],
    settings: &Settings,
    threads: usize,
) -> Result<Vec<ConversationRow>, SimError> {
    let shape = conversation_from_env();
    let short: Vec<Profile> = profiles
        .iter()
        .filter(|p| p.duration.as_secs() <= 2 * 3_600)
        .cloned()
        .collect();
    let lead_in_ms = warmpool_core::clock::millis(settings.lead_in);
    Ok(side_by_side(&short, settings, shape, threads)?
        .iter()
        .flat_map(|(one_shot, affinity)| {
            [
                ConversationRow::of(one_shot, "one-shot", &shape, lead_in_ms),
                ConversationRow::of(affinity, "affinity", &shape, lead_in_ms),
            ]
        })
        .collect())
}

/// The planner on the built-in `week` trace, all candidates, timed; a progress line every ten
/// seconds while it runs.
fn planner_figures(threads: usize) -> Result<serde_json::Value, SimError> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use warmpool_simulation::plan::{Params, builtin, candidates::candidates, plan};
    let Some(week) = builtin::trace("week") else {
        return Err(SimError::Profile("week".into(), "no built-in week".into()));
    };
    let params = Params {
        creation_quota: 25,
        creation_budget: 20,
        platform: Platform::V1,
        idle_timeout: std::time::Duration::from_secs(900),
        max_lifetime: std::time::Duration::from_secs(28_800),
        gb_per_session: Pricing::of(Platform::V1).gb_per_session,
        usd_per_gb_hour: Pricing::of(Platform::V1).usd_per_gb_hour,
        conversation: None,
        goal: 0.99,
        seed: 42,
    };
    let count = candidates(&week, &params).len() as u64;
    let total = week.requests() * count;
    let (done, finished) = (AtomicU64::new(0), AtomicBool::new(false));
    let started = Instant::now();
    let planned = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                if started.elapsed().as_millis() % 10_000 < 200 {
                    println!(
                        "  planner: {} of {total} requests simulated",
                        done.load(Ordering::Relaxed).min(total)
                    );
                }
            }
        });
        let planned = plan(&week, &params, threads, &done);
        finished.store(true, Ordering::Relaxed);
        planned
    })?;
    let secs = started.elapsed().as_secs_f64();
    let candidate_secs: serde_json::Map<String, serde_json::Value> = planned
        .candidates
        .iter()
        .zip(&planned.run_times)
        .map(|(figures, took)| (figures.candidate.name.clone(), took.as_secs_f64().into()))
        .collect();
    Ok(serde_json::json!({
        "trace": "week (built-in)",
        "candidates": count,
        "threads": threads,
        "requests_simulated": total,
        "wall_secs": secs,
        "requests_per_sec": total as f64 / secs.max(1e-9),
        "target_secs": 60,
        "recommended": planned.recommendation.map(|r| r.name),
        // Each candidate's run on one thread: two cores need at least half their sum.
        "candidate_secs": candidate_secs,
    }))
}

/// The conversation comparison and the planner's timing, each printed as it comes.
fn conversations_and_planner(
    profiles: &[Profile],
    settings: &Settings,
    threads: usize,
) -> Result<(Vec<ConversationRow>, serde_json::Value), SimError> {
    let conversations = conversation_rows(profiles, settings, threads)?;
    let shape = conversation_from_env();
    println!(
        "conversations of {} turns, {} s mean think time, platform V1: one-shot against affinity (same turns)",
        shape.turns,
        shape.think_time.as_secs()
    );
    print!("{}", conversations_table(&conversations));
    println!("planner (warmpool plan) on the week trace, every candidate:");
    let planner = planner_figures(threads)?;
    println!(
        "  {} candidates, {} requests in {:.1} s ({:.0} requests/s; target 60 s)",
        planner["candidates"],
        planner["requests_simulated"],
        planner["wall_secs"].as_f64().unwrap_or(0.0),
        planner["requests_per_sec"].as_f64().unwrap_or(0.0),
    );
    if let Some(each) = planner["candidate_secs"].as_object() {
        let each: Vec<String> = each
            .iter()
            .map(|(name, secs)| format!("{name} {:.1} s", secs.as_f64().unwrap_or(0.0)))
            .collect();
        println!("  each candidate, on one thread: {}", each.join(", "));
    }
    Ok((conversations, planner))
}

fn failed(what: impl Display) -> ExitCode {
    eprintln!("simulate: {what}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let (settings, threads) = match settings_from_env() {
        Ok(found) => found,
        Err(reason) => return failed(reason),
    };
    let profiles = Profile::standard();
    println!(
        "simulation: {} profiles x 3 policies on platforms V1 and V2, seed {}, creation quota {}/s, virtual clock",
        profiles.len(),
        settings.seed,
        settings.service.creation_rate_per_sec
    );
    let started = Instant::now();
    let mut settings_v2 = settings.clone();
    settings_v2.service.platform = Platform::V2;
    let (runs, runs_v2) = match run_all(&profiles, &settings, threads)
        .and_then(|v1| Ok((v1, run_all(&profiles, &settings_v2, threads)?)))
    {
        Ok(runs) => runs,
        Err(error) => return failed(error),
    };
    println!("platform V1:");
    print!(
        "{}",
        policies_table(&runs, warmpool_core::clock::millis(settings.lead_in))
    );
    let larger = match larger_reference_pools(&profiles, &settings, threads) {
        Ok(larger) => larger,
        Err(error) => return failed(error),
    };
    let pools: Vec<ReferencePool> = runs
        .iter()
        .filter(|r| r.row.policy == Policy::Reference)
        .map(|r| (settings.reference_pool, r))
        .chain(larger.iter().map(|(size, run)| (*size, run)))
        .map(|(reference_pool, run)| ReferencePool {
            reference_pool,
            row: &run.row,
        })
        .collect();
    print!("{}", reference_pools_table(&pools));
    print!("{}", equal_hit_rate(&runs, &pools));
    println!("platform V1 against V2 (same seed and traffic):");
    print!(
        "{}",
        platforms_table(&runs, &runs_v2, warmpool_core::clock::millis(settings.lead_in))
    );
    let (conversations, planner) = match conversations_and_planner(&profiles, &settings, threads) {
        Ok(found) => found,
        Err(error) => return failed(error),
    };
    println!("simulated in {:.1} s of wall time", started.elapsed().as_secs_f64());
    let both: Vec<Run> = runs.iter().chain(&runs_v2).cloned().collect();
    let figures = summary_figures(&both, &pools).and_then(|mut figures| {
        figures.insert("simulation_conversations".into(), serde_json::to_value(&conversations)?);
        figures.insert("planner".into(), planner);
        Ok(figures)
    });
    match figures.map_err(std::io::Error::from).and_then(merge_into_summary) {
        Ok(path) => {
            println!("written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => failed(format_args!("cannot write the summary: {error}")),
    }
}

//! The planner end to end on small traces.

use super::*;
use crate::{Conversation, Policy, simulate};
use agentcore_emulator::lifecycle::Platform;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn params() -> Params {
    Params {
        creation_quota: 25,
        creation_budget: 20,
        platform: Platform::V1,
        idle_timeout: Duration::from_secs(900),
        max_lifetime: Duration::from_secs(28_800),
        gb_per_session: 1.0,
        usd_per_gb_hour: 0.00945,
        conversation: None,
        goal: 0.99,
        seed: 42,
    }
}

/// Two hours from Monday 08:00: 3/s, then 12/s from 09:00 with a 45/s rush at 09:30-09:34.
fn morning() -> Trace {
    let per_minute = (0..120)
        .map(|m| match m {
            90..94 => 45 * 60,
            60.. => 12 * 60,
            _ => 3 * 60,
        })
        .collect();
    Trace {
        name: "morning".into(),
        start_ms: builtin::MONDAY + 8 * 3_600_000,
        per_minute,
        exact: None,
        notes: Vec::new(),
    }
}

#[test]
fn when_the_recommendation_is_deployed_in_the_simulation_it_reaches_the_hit_rate_goal() {
    let trace = morning();
    let done = AtomicU64::new(0);
    let plan = plan(&trace, &params(), 2, &done).unwrap();
    assert!(done.load(Ordering::Relaxed) >= trace.requests() * plan.candidates.len() as u64);
    let names: Vec<&str> = plan.candidates.iter().map(|c| c.candidate.name.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("max")) && names.contains(&"adaptive + pre-warm"),
        "{names:?}"
    );
    let recommendation = plan.recommendation.clone().unwrap();
    assert!(recommendation.goal_reached, "{:#?}", plan.candidates);
    let chosen = plan
        .candidates
        .iter()
        .find(|c| c.candidate.name == recommendation.name)
        .unwrap();
    assert!(chosen.warm_hit_rate >= 0.99 && chosen.on_frontier, "{chosen:?}");
    let cheaper_reaching = plan
        .candidates
        .iter()
        .filter(|c| c.warm_hit_rate >= 0.99 && c.dead_ids_handed_out == 0)
        .any(|c| c.cost_per_month_usd < chosen.cost_per_month_usd);
    assert!(!cheaper_reaching, "{:#?}", plan.candidates);
    // The parameters of the deploy command, simulated once more, reach the goal again.
    let settings = planner::settings(&trace, &params(), &chosen.candidate);
    let again = simulate(&trace.profile(25), Policy::Project, &settings).unwrap();
    assert!(again.row.warm_hit_rate >= 0.99, "{:?}", again.row);
    assert!(
        recommendation.deploy_command.contains("PoolTargetMode="),
        "{}",
        recommendation.deploy_command
    );
}

#[test]
fn with_a_conversation_shape_every_candidate_is_tried_with_affinity_too_and_claims_fewer() {
    let trace = Trace {
        per_minute: vec![300; 40],
        ..morning()
    };
    let with_chats = Params {
        conversation: Some(Conversation {
            turns: std::num::NonZeroU32::new(4).unwrap(),
            think_time: Duration::from_secs(20),
        }),
        ..params()
    };
    let plan = plan(&trace, &with_chats, 2, &AtomicU64::new(0)).unwrap();
    let (off, on): (Vec<_>, Vec<_>) = plan.candidates.iter().partition(|c| !c.candidate.affinity);
    assert_eq!(off.len(), on.len());
    assert!(on.iter().all(|c| c.claims_per_request < 0.4), "{on:#?}");
    assert!(off.iter().all(|c| c.claims_per_request > 0.99), "{off:#?}");
}

#[test]
fn the_demo_prediction_is_a_full_hit_rate_and_a_pool_refilled_to_its_size() {
    let predicted = demo::predict(20, 4).unwrap();
    assert_eq!(predicted.warm_hit_rate, 1.0, "{predicted:?}");
    assert_eq!(predicted.depth_after, 20, "{predicted:?}");
}

#[test]
fn a_schedule_fitted_alike_at_p90_and_at_the_busiest_minute_is_one_candidate() {
    // Every minute of an hour alike: its 90th percentile is its busiest minute.
    let trace = Trace {
        name: "flat hours".into(),
        start_ms: builtin::MONDAY + 8 * 3_600_000,
        per_minute: (0..120).map(|m| if m < 60 { 3 * 60 } else { 12 * 60 }).collect(),
        exact: None,
        notes: Vec::new(),
    };
    let names: Vec<String> = candidates::candidates(&trace, &params())
        .into_iter()
        .map(|c| c.name)
        .filter(|n| n.starts_with("scheduled"))
        .collect();
    assert_eq!(names, ["scheduled p90 = max"]);
}

//! The policies' behaviour over whole runs: what each one hands out, and what the project's
//! adaptive target, heartbeats, retirement and pre-warm windows do to it.

use super::*;
use crate::cost::Pricing;
use agentcore_emulator::lifecycle::Platform;
use std::time::Duration;
use warmpool_core::clock::millis;

fn profile(name: &str, duration_min: u64, shape: Shape) -> Profile {
    Profile {
        name: name.into(),
        duration: Duration::from_secs(duration_min * 60),
        shape,
        creation_quota: 25,
    }
}

fn quick() -> Settings {
    Settings {
        lead_in: Duration::from_secs(5 * 60),
        ..Settings::default()
    }
}

#[test]
fn the_same_seed_repeats_a_run_exactly_and_another_seed_does_not() {
    let steady = profile("t", 10, Shape::Steady { rate: 5.0 });
    let a = simulate(&steady, Policy::Project, &quick()).unwrap();
    let b = simulate(&steady, Policy::Project, &quick()).unwrap();
    assert_eq!(a, b);
    let other = Settings { seed: 7, ..quick() };
    assert_ne!(a, simulate(&steady, Policy::Project, &other).unwrap());
}

#[test]
fn parallel_runs_come_back_in_job_order_each_with_its_time_and_requests_counted() {
    let (light, busy) = (
        profile("light", 10, Shape::Steady { rate: 1.0 }),
        profile("busy", 10, Shape::Steady { rate: 5.0 }),
    );
    let jobs = vec![
        (busy.clone(), Policy::Project, quick()),
        (light.clone(), Policy::Project, quick()),
    ];
    let counted = AtomicU64::new(0);
    let runs = run_jobs_counted(jobs, 2, &counted).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].0, simulate(&busy, Policy::Project, &quick()).unwrap());
    assert_eq!(runs[1].0, simulate(&light, Policy::Project, &quick()).unwrap());
    assert!(runs.iter().all(|(_, took)| *took > Duration::ZERO));
    let measured: u64 = runs.iter().map(|(run, _)| run.details.requests).sum();
    assert_eq!(counted.into_inner(), measured);
}

#[test]
fn the_adaptive_target_follows_a_rate_step_up_and_down() {
    let twenty = Duration::from_secs(20 * 60);
    let steps = profile(
        "steps",
        60,
        Shape::Steps(vec![(twenty, 2.0), (twenty, 10.0), (twenty, 2.0)]),
    );
    let settings = quick();
    let run = simulate(&steps, Policy::Project, &settings).unwrap();
    let start = millis(settings.lead_in);
    // The median target over the second half of each step, once the rounds caught up.
    let median = |step: u64| {
        let from = start + step * millis(twenty) + millis(twenty) / 2;
        let mut targets: Vec<u32> = run
            .details
            .targets
            .iter()
            .filter(|(t, _)| *t >= from && *t < from + millis(twenty) / 2)
            .map(|(_, target)| *target)
            .collect();
        targets.sort_unstable();
        targets[targets.len() / 2]
    };
    let (low, high, low_again) = (median(0), median(1), median(2));
    assert!(high >= 3 * low, "2/s -> {low}, 10/s -> {high}");
    assert!(low_again * 2 <= high, "back at 2/s -> {low_again}, was {high}");
    assert!(run.row.warm_hit_rate >= 0.99, "{:?}", run.row);
}

#[test]
fn on_a_quiet_pool_the_reference_hands_out_dead_ids_and_heartbeats_prevent_them() {
    let quiet = profile("quiet", 60, Shape::Steady { rate: 0.01 });
    let reference = simulate(&quiet, Policy::Reference, &quick()).unwrap();
    let project = simulate(&quiet, Policy::Project, &quick()).unwrap();
    assert!(reference.row.dead_ids_handed_out > 0, "{:?}", reference.row);
    assert_eq!(project.row.dead_ids_handed_out, 0);
    assert!(project.details.heartbeats > 0);
    assert!(project.row.warm_hit_rate >= 0.99, "{:?}", project.row);
}

#[test]
fn sessions_are_retired_before_their_max_lifetime_and_never_handed_out_past_it() {
    // One-hour lifetimes in the service and in the project's settings alike.
    let mut settings = quick();
    settings.service.max_lifetime = Duration::from_secs(3_600);
    settings.project_env.extend([
        ("SESSION_MAX_LIFETIME_SECS".to_string(), "3600".to_string()),
        ("RETIRE_SPREAD_SECS".to_string(), "600".to_string()),
    ]);
    // A claim every hour or so: pooled sessions grow old before anyone takes them.
    let quiet = profile("quiet", 240, Shape::Steady { rate: 0.0003 });
    let project = simulate(&quiet, Policy::Project, &settings).unwrap();
    assert!(project.details.retired > 0, "{:?}", project.details);
    assert!(project.details.stops >= project.details.retired);
    assert_eq!(project.row.dead_ids_handed_out, 0);
}

#[test]
fn a_prewarm_window_absorbs_a_burst_above_the_creation_budget() {
    // One 5x burst at minute 25 of the clock, 40/s above a 20/s budget.
    let burst = profile(
        "burst",
        30,
        Shape::Bursts {
            base: 10.0,
            factor: 5.0,
            every: Duration::from_secs(30 * 60),
            length: Duration::from_secs(5 * 60),
            offset: Duration::from_secs(20 * 60),
        },
    );
    let reactive = Settings {
        prewarm_scale: 0.0,
        ..quick()
    };
    let without = simulate(&burst, Policy::Project, &reactive).unwrap();
    let with = simulate(&burst, Policy::Project, &quick()).unwrap();
    assert!(without.row.warm_hit_rate < 0.9, "{:?}", without.row);
    assert!(with.row.warm_hit_rate >= 0.99, "{:?}", with.row);
    assert_eq!(with.row.dead_ids_handed_out, 0);
    let peak = with.details.targets.iter().map(|(_, t)| *t).max();
    assert_eq!(peak, Some(9_250), "the window's target was in force");
}

#[test]
fn without_a_pool_every_request_is_a_cold_start() {
    let steady = profile("t", 10, Shape::Steady { rate: 5.0 });
    let none = simulate(&steady, Policy::None, &quick()).unwrap();
    assert_eq!(none.row.warm_hit_rate, 0.0);
    assert!(none.row.p50_ms > 2_000, "{:?}", none.row);
    assert_eq!(none.row.idle_session_hours, 0.0);
}

#[test]
fn when_the_platform_is_v2_then_cold_starts_are_faster_and_the_adaptive_target_smaller() {
    let steady = profile("t", 20, Shape::Steady { rate: 10.0 });
    let on = |platform| {
        let mut settings = quick();
        settings.service.platform = platform;
        settings
    };
    let (v1, v2) = (on(Platform::V1), on(Platform::V2));
    let none_v2 = simulate(&steady, Policy::None, &v2).unwrap();
    assert!((1_500..=2_300).contains(&none_v2.row.p50_ms), "{:?}", none_v2.row);
    let project_v1 = simulate(&steady, Policy::Project, &v1).unwrap();
    let project_v2 = simulate(&steady, Policy::Project, &v2).unwrap();
    let (t1, t2) = (project_v1.row.target_median, project_v2.row.target_median);
    assert!(
        t2.zip(t1).is_some_and(|(t2, t1)| t2 < t1),
        "V1 target {t1:?}, V2 {t2:?}"
    );
    assert!(project_v2.row.warm_hit_rate >= 0.99, "{:?}", project_v2.row);
    assert_eq!(project_v2.row.platform, Platform::V2);
    let priced = Pricing::of(Platform::V2).idle_cost_usd(project_v2.row.idle_session_hours);
    assert!((project_v2.row.idle_cost_usd - priced).abs() < 1e-9);
}

fn chats(affinity: bool) -> Settings {
    Settings {
        conversation: Some(Conversation {
            turns: std::num::NonZeroU32::new(6).unwrap(),
            think_time: Duration::from_secs(30),
        }),
        affinity,
        ..quick()
    }
}

#[test]
fn when_affinity_is_on_then_later_turns_reuse_their_session_and_claims_per_request_fall() {
    let steady = profile("chat", 30, Shape::Steady { rate: 6.0 });
    let one_shot = simulate(&steady, Policy::Project, &chats(false)).unwrap();
    let affinity = simulate(&steady, Policy::Project, &chats(true)).unwrap();
    let per_request = |run: &Run| run.details.claims as f64 / run.details.requests as f64;
    assert_eq!(one_shot.details.requests, affinity.details.requests, "the same traffic");
    assert!((per_request(&one_shot) - 1.0).abs() < 1e-9, "{:?}", one_shot.details);
    assert!(per_request(&affinity) < 0.25, "{:?}", affinity.details);
    assert_eq!(
        affinity.details.claims + affinity.details.reused,
        affinity.details.requests
    );
    assert!(affinity.row.warm_hit_rate >= 0.99, "{:?}", affinity.row);
    assert!(
        affinity.details.creations * 3 < one_shot.details.creations,
        "{:?} {:?}",
        affinity.details,
        one_shot.details
    );
    assert!(affinity.row.idle_session_hours < one_shot.row.idle_session_hours);
}

#[test]
fn when_a_held_session_is_past_its_idle_timeout_less_the_margin_then_the_next_turn_claims_again() {
    // Think times around the 15-minute idle timeout: many turns find their session gone.
    let mut settings = chats(true);
    settings.conversation = Some(Conversation {
        turns: std::num::NonZeroU32::new(3).unwrap(),
        think_time: Duration::from_secs(15 * 60),
    });
    let quiet = profile("slow chat", 90, Shape::Steady { rate: 0.5 });
    let run = simulate(&quiet, Policy::Project, &settings).unwrap();
    assert!(
        run.details.reused > 0 && run.details.claims > run.details.requests / 3,
        "{:?}",
        run.details
    );
    assert_eq!(
        run.row.dead_ids_handed_out, 0,
        "no turn reached a session the service ended"
    );
}

#[test]
fn when_affinity_is_on_the_prewarm_a_burst_needs_shrinks_with_the_turns() {
    let burst = profile(
        "burst",
        30,
        Shape::Bursts {
            base: 10.0,
            factor: 5.0,
            every: Duration::from_secs(30 * 60),
            length: Duration::from_secs(5 * 60),
            offset: Duration::from_secs(20 * 60),
        },
    );
    let one_shot = simulate(&burst, Policy::Project, &chats(false)).unwrap();
    let affinity = simulate(&burst, Policy::Project, &chats(true)).unwrap();
    let peak = |run: &Run| run.details.targets.iter().map(|(_, t)| *t).max().unwrap_or(0);
    assert!(
        peak(&affinity) * 4 < peak(&one_shot),
        "{} vs {}",
        peak(&affinity),
        peak(&one_shot)
    );
    assert!(affinity.row.warm_hit_rate >= 0.99, "{:?}", affinity.row);
}

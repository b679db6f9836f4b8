//! The model's behaviour, one rule per test, on a hand-driven clock.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const ID: &str = "session-0000000000000000000000000001";
const OTHER: &str = "session-0000000000000000000000000002";

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn cfg() -> LifecycleConfig {
    LifecycleConfig {
        idle_timeout: Duration::from_secs(2),
        max_lifetime: Duration::from_secs(10),
        ..LifecycleConfig::default()
    }
}

fn view(model: &Model, id: &str, now_ms: u64) -> SessionView {
    model
        .sessions(now_ms)
        .into_iter()
        .find(|v| v.session_id == id)
        .expect("session is known")
}

#[test]
fn first_invocation_of_an_unknown_id_is_a_cold_start() {
    let mut model = Model::new(cfg());
    let admission = model.invoke(ID, 0, &mut rng()).unwrap();
    assert!(admission.cold);
    assert_eq!(admission.generation, 1);
    assert_eq!(model.stats().creations, 1);
}

#[test]
fn invoking_an_active_session_is_warm_on_the_same_microvm() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    let admission = model.invoke(ID, 1_999, &mut rng).unwrap();
    assert!(!admission.cold);
    assert_eq!(admission.generation, 1);
    let v = view(&model, ID, 1_999);
    assert_eq!(v.invocation_count, 2);
    assert_eq!(v.state, SessionState::Active);
    assert_eq!(v.history.iter().map(|r| r.cold).collect::<Vec<_>>(), [true, false]);
}

#[test]
fn invoking_an_idle_expired_session_cold_starts_a_new_microvm() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    assert_eq!(view(&model, ID, 2_000).state, SessionState::IdleExpired);
    let admission = model.invoke(ID, 2_000, &mut rng).unwrap();
    assert!(admission.cold);
    assert_eq!(admission.generation, 2);
    assert_eq!(view(&model, ID, 2_000).created_at_ms, 2_000);
    assert_eq!(model.stats().creations, 2);
}

#[test]
fn heartbeats_keep_a_session_warm_until_its_max_lifetime_then_it_cold_starts() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    for t in (1_000..10_000).step_by(1_000) {
        assert!(!model.invoke(ID, t, &mut rng).unwrap().cold, "at {t} ms");
    }
    assert_eq!(view(&model, ID, 10_000).state, SessionState::LifetimeExpired);
    let admission = model.invoke(ID, 10_000, &mut rng).unwrap();
    assert!(admission.cold);
    assert_eq!(admission.generation, 2);
}

#[test]
fn state_names_the_limit_that_struck_first() {
    let mut model = Model::new(LifecycleConfig {
        idle_timeout: Duration::from_secs(5),
        max_lifetime: Duration::from_secs(6),
        ..LifecycleConfig::default()
    });
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    model.invoke(ID, 4_000, &mut rng).unwrap();
    // Idle would end at 9 s, lifetime ended at 6 s.
    assert_eq!(view(&model, ID, 9_500).state, SessionState::LifetimeExpired);
    model.invoke(OTHER, 0, &mut rng).unwrap();
    assert_eq!(view(&model, OTHER, 5_500).state, SessionState::IdleExpired);
}

#[test]
fn a_stopped_session_is_gone_and_its_id_cold_starts_next_time() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    model.stop(ID, 100).unwrap();
    assert_eq!(view(&model, ID, 100).state, SessionState::Stopped);
    let admission = model.invoke(ID, 200, &mut rng).unwrap();
    assert!(admission.cold);
    assert_eq!(admission.generation, 2);
    assert_eq!(model.stats().stops, 1);
}

#[test]
fn stopping_an_unknown_or_ended_session_is_not_found() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    assert_eq!(model.stop(ID, 0), Err(Rejection::SessionNotFound));
    model.invoke(ID, 0, &mut rng).unwrap();
    model.stop(ID, 1).unwrap();
    assert_eq!(model.stop(ID, 2), Err(Rejection::SessionNotFound));
    model.invoke(OTHER, 0, &mut rng).unwrap();
    assert_eq!(model.stop(OTHER, 2_000), Err(Rejection::SessionNotFound));
    assert_eq!(model.stats().stops, 1);
}

#[test]
fn a_crashed_session_cold_starts_on_its_next_invocation() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    assert!(model.crash(ID, 10));
    assert!(!model.crash(ID, 11), "a dead microVM cannot crash again");
    assert_eq!(view(&model, ID, 20).state, SessionState::Crashed);
    assert!(model.invoke(ID, 30, &mut rng).unwrap().cold);
    assert_eq!(model.stats().crashes, 1);
}

#[test]
fn with_crash_rate_one_the_invocation_fails_and_the_microvm_is_gone() {
    let mut model = Model::new(LifecycleConfig {
        crash_rate: 1.0,
        ..cfg()
    });
    let mut rng = rng();
    assert_eq!(model.invoke(ID, 0, &mut rng), Err(Rejection::Crashed { generation: 1 }));
    assert_eq!(view(&model, ID, 1).state, SessionState::Crashed);
    model.set_faults(Faults {
        crash_rate: 0.0,
        ..model.faults()
    });
    let admission = model.invoke(ID, 2, &mut rng).unwrap();
    assert!(admission.cold);
    assert_eq!(admission.generation, 2);
}

#[test]
fn with_error_rate_one_invocations_fail_without_touching_any_microvm() {
    let mut model = Model::new(LifecycleConfig {
        error_rate: 1.0,
        ..cfg()
    });
    assert_eq!(model.invoke(ID, 0, &mut rng()), Err(Rejection::InternalError));
    assert!(model.sessions(0).is_empty());
    let stats = model.stats();
    assert_eq!((stats.errors, stats.creations), (1, 0));
}

#[test]
fn fault_rates_fail_about_that_share_of_invocations() {
    let mut model = Model::new(LifecycleConfig {
        error_rate: 0.1,
        creation_rate_per_sec: 1e9,
        max_active_sessions: usize::MAX,
        ..cfg()
    });
    let mut rng = rng();
    for i in 0..10_000 {
        let _ = model.invoke(&format!("{ID}-{i}"), 0, &mut rng);
    }
    let errors = model.stats().errors;
    assert!((850..=1_150).contains(&errors), "{errors} errors");
}

#[test]
fn creations_beyond_the_rate_are_throttled_until_tokens_refill() {
    let mut model = Model::new(LifecycleConfig {
        creation_rate_per_sec: 5.0,
        ..cfg()
    });
    let mut rng = rng();
    for i in 0..5 {
        model.invoke(&format!("{ID}-{i}"), 1_000, &mut rng).unwrap();
    }
    assert_eq!(model.invoke(OTHER, 1_000, &mut rng), Err(Rejection::Throttled));
    assert_eq!(model.invoke(OTHER, 1_199, &mut rng), Err(Rejection::Throttled));
    assert!(model.invoke(OTHER, 1_200, &mut rng).unwrap().cold);
    let stats = model.stats();
    assert_eq!((stats.creations, stats.throttled), (6, 2));
}

#[test]
fn warm_invocations_are_not_subject_to_the_creation_rate() {
    let mut model = Model::new(LifecycleConfig {
        creation_rate_per_sec: 1.0,
        ..cfg()
    });
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    assert_eq!(model.invoke(OTHER, 0, &mut rng), Err(Rejection::Throttled));
    for _ in 0..100 {
        assert!(!model.invoke(ID, 1, &mut rng).unwrap().cold);
    }
}

#[test]
fn a_sub_one_per_second_rate_still_allows_one_creation() {
    let mut model = Model::new(LifecycleConfig {
        creation_rate_per_sec: 0.5,
        ..cfg()
    });
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    assert_eq!(model.invoke(OTHER, 1_999, &mut rng), Err(Rejection::Throttled));
    model.invoke(OTHER, 2_000, &mut rng).unwrap();
}

#[test]
fn throttle_all_refuses_new_microvms_until_cleared_but_warm_sessions_serve() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    model.set_faults(Faults {
        throttle_all: true,
        ..model.faults()
    });
    assert_eq!(model.invoke(OTHER, 1, &mut rng), Err(Rejection::Throttled));
    assert!(!model.invoke(ID, 1, &mut rng).unwrap().cold);
    model.set_faults(Faults {
        throttle_all: false,
        ..model.faults()
    });
    assert!(model.invoke(OTHER, 2, &mut rng).unwrap().cold);
}

#[test]
fn creations_beyond_the_active_cap_are_refused_until_a_session_ends() {
    let mut model = Model::new(LifecycleConfig {
        max_active_sessions: 2,
        ..cfg()
    });
    let mut rng = rng();
    model.invoke("a".repeat(33).as_str(), 0, &mut rng).unwrap();
    model.invoke("b".repeat(33).as_str(), 0, &mut rng).unwrap();
    assert_eq!(
        model.invoke(ID, 0, &mut rng),
        Err(Rejection::QuotaExceeded { limit: 2 })
    );
    model.stop("a".repeat(33).as_str(), 1).unwrap();
    model.invoke(ID, 1, &mut rng).unwrap();
    // Idle expiry frees slots too.
    assert_eq!(model.active_sessions(2_000), 1);
    model.invoke(OTHER, 2_000, &mut rng).unwrap();
    assert_eq!(model.stats().quota_rejected, 1);
}

#[test]
fn a_quota_rejection_does_not_spend_a_creation_token() {
    let mut model = Model::new(LifecycleConfig {
        max_active_sessions: 1,
        creation_rate_per_sec: 2.0,
        ..cfg()
    });
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    for _ in 0..5 {
        let _ = model.invoke(OTHER, 0, &mut rng);
    }
    model.stop(ID, 0).unwrap();
    model.invoke(OTHER, 0, &mut rng).unwrap();
}

#[test]
fn stats_count_creations_per_second_and_in_any_sliding_second() {
    let mut model = Model::new(LifecycleConfig {
        creation_rate_per_sec: 10.0,
        ..cfg()
    });
    let mut rng = rng();
    // Five creations late in second 0 and two early in second 1: aligned seconds split
    // them, one sliding second holds all seven.
    let times = [900, 900, 900, 900, 900, 1_100, 1_100];
    for (n, t) in times.into_iter().enumerate() {
        model.invoke(&format!("{ID}-{n}"), t, &mut rng).unwrap();
    }
    let stats = model.stats();
    assert_eq!(stats.creations_per_second, BTreeMap::from([(0, 5), (1, 2)]));
    assert_eq!(stats.max_creations_in_any_second, 7);
}

#[test]
fn latency_scale_multiplies_sampled_latencies() {
    let scaled = LifecycleConfig {
        latency_scale: 0.01,
        ..cfg()
    };
    let mut full = Model::new(cfg());
    let mut fast = Model::new(scaled);
    let a = full.invoke(ID, 0, &mut rng()).unwrap().latency;
    let b = fast.invoke(ID, 0, &mut rng()).unwrap().latency;
    assert!(a > Duration::from_secs(1));
    assert!((b.as_secs_f64() - a.as_secs_f64() * 0.01).abs() < 1e-6);
}

#[test]
fn the_same_seed_and_calls_reproduce_the_same_run() {
    let run = || {
        let mut model = Model::new(LifecycleConfig {
            crash_rate: 0.2,
            error_rate: 0.1,
            creation_rate_per_sec: 3.0,
            ..cfg()
        });
        let mut rng = StdRng::seed_from_u64(42);
        (0..200)
            .map(|i| model.invoke(&format!("{ID}-{}", i % 7), i * 150, &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn reset_forgets_sessions_counters_and_fault_changes() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    model.set_faults(Faults {
        throttle_all: true,
        ..model.faults()
    });
    model.reset(5_000);
    assert!(model.sessions(5_000).is_empty());
    assert_eq!(model.stats(), Stats::default());
    assert!(!model.faults().throttle_all);
    assert!(model.invoke(ID, 5_000, &mut rng).unwrap().cold);
}

#[test]
fn validation_rejects_probabilities_outside_zero_to_one() {
    let bad = LifecycleConfig {
        crash_rate: 1.5,
        ..cfg()
    };
    assert!(bad.validate().is_err());
    assert!(cfg().validate().is_ok());
    assert!(
        Faults {
            error_rate: -0.1,
            ..Faults::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn late_answers_need_a_delay_and_rates_must_be_probabilities() {
    let late_without_delay = Faults {
        next_late_answers: 1,
        ..Faults::default()
    };
    assert!(late_without_delay.validate().is_err());
    let too_late = Faults {
        late_answer_rate: 0.5,
        late_answer_ms: 16 * 60 * 1_000,
        ..Faults::default()
    };
    assert!(too_late.validate().is_err());
    for bad in [
        Faults {
            lost_answer_rate: 1.01,
            ..Faults::default()
        },
        Faults {
            stop_throttle_rate: f64::NAN,
            ..Faults::default()
        },
        Faults {
            stop_error_rate: -1.0,
            ..Faults::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn next_lost_answers_hit_exactly_that_many_admitted_invocations() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.set_faults(Faults {
        next_lost_answers: 2,
        ..model.faults()
    });
    let answers: Vec<Answer> = (0..3).map(|t| model.invoke(ID, t, &mut rng).unwrap().answer).collect();
    assert_eq!(answers, [Answer::Lost, Answer::Lost, Answer::Delivered]);
    // The invocations were admitted all the same: one microVM, three invocations.
    let v = view(&model, ID, 3);
    assert_eq!((v.generation, v.invocation_count), (1, 3));
    assert_eq!(model.stats().lost_answers, 2);
    assert_eq!(model.faults().next_lost_answers, 0);
}

#[test]
fn late_answers_carry_their_delay_and_a_lost_answer_wins_over_a_late_one() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.set_faults(Faults {
        next_lost_answers: 1,
        next_late_answers: 1,
        late_answer_ms: 1_500,
        ..model.faults()
    });
    let first = model.invoke(ID, 0, &mut rng).unwrap().answer;
    let second = model.invoke(ID, 1, &mut rng).unwrap().answer;
    assert_eq!(
        (first, second),
        (Answer::Lost, Answer::Late(Duration::from_millis(1_500)))
    );
    let stats = model.stats();
    assert_eq!((stats.lost_answers, stats.late_answers), (1, 1));
}

#[test]
fn a_faulted_stop_leaves_the_session_running_and_counts_its_kind() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    model.set_faults(Faults {
        next_stop_throttles: 1,
        next_stop_errors: 1,
        ..model.faults()
    });
    assert_eq!(model.request_stop(ID, 1, &mut rng), Err(StopRejection::Throttled));
    assert_eq!(model.request_stop(ID, 2, &mut rng), Err(StopRejection::InternalError));
    assert_eq!(view(&model, ID, 3).state, SessionState::Active);
    assert!(!model.invoke(ID, 3, &mut rng).unwrap().cold);
    assert_eq!(model.request_stop(ID, 4, &mut rng), Ok(()));
    assert_eq!(model.request_stop(ID, 5, &mut rng), Err(StopRejection::SessionNotFound));
    let stats = model.stats();
    assert_eq!(
        (
            stats.stop_throttles,
            stats.stop_errors,
            stats.stops,
            stats.stops_not_found
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn stop_fault_rates_refuse_stops_until_lowered() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    model.set_faults(Faults {
        stop_throttle_rate: 1.0,
        ..model.faults()
    });
    for t in 1..=3 {
        assert_eq!(model.request_stop(ID, t, &mut rng), Err(StopRejection::Throttled));
    }
    model.set_faults(Faults {
        stop_throttle_rate: 0.0,
        ..model.faults()
    });
    assert_eq!(model.request_stop(ID, 4, &mut rng), Ok(()));
    assert_eq!(model.stats().stop_throttles, 3);
}

#[test]
fn an_invocation_in_flight_holds_the_idle_timeout_and_its_end_restarts_the_clock() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    let generation = model.invoke(ID, 0, &mut rng).unwrap().generation;
    model.begin_work(ID, generation, 0);
    assert_eq!(
        view(&model, ID, 5_000).state,
        SessionState::Active,
        "idle 2 s, but working"
    );
    model.end_work(ID, generation, 5_000);
    assert_eq!(view(&model, ID, 6_999).state, SessionState::Active);
    assert_eq!(view(&model, ID, 7_000).state, SessionState::IdleExpired);
}

#[test]
fn healthy_busy_keeps_a_session_past_its_idle_timeout_until_the_agent_is_healthy_again() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    let generation = model.invoke(ID, 0, &mut rng).unwrap().generation;
    assert!(model.report_ping(ID, generation, true, 1_900));
    assert_eq!(view(&model, ID, 4_000).state, SessionState::Active);
    assert!(view(&model, ID, 4_000).busy);
    assert!(model.report_ping(ID, generation, false, 4_000));
    assert_eq!(view(&model, ID, 5_999).state, SessionState::Active);
    assert_eq!(view(&model, ID, 6_000).state, SessionState::IdleExpired);
    // A Healthy ping of a session that was not busy does not move its idle clock.
    let other = model.invoke(OTHER, 0, &mut rng).unwrap().generation;
    assert!(model.report_ping(OTHER, other, false, 1_500));
    assert_eq!(view(&model, OTHER, 2_000).state, SessionState::IdleExpired);
}

#[test]
fn a_busy_session_still_ends_at_its_max_lifetime() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    let generation = model.invoke(ID, 0, &mut rng).unwrap().generation;
    model.report_ping(ID, generation, true, 1_000);
    assert_eq!(view(&model, ID, 10_000).state, SessionState::LifetimeExpired);
}

#[test]
fn reports_about_an_ended_or_older_microvm_are_ignored() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    model.invoke(ID, 0, &mut rng).unwrap();
    assert!(!model.report_ping(ID, 1, true, 2_500), "expired at 2 s");
    let generation = model.invoke(ID, 3_000, &mut rng).unwrap().generation;
    assert_eq!(generation, 2);
    assert!(!model.report_ping(ID, 1, true, 3_100), "generation 1 is gone");
    model.begin_work(ID, 1, 3_100);
    assert_eq!(view(&model, ID, 5_000).state, SessionState::IdleExpired);
}

#[test]
fn idle_candidates_are_sessions_near_their_idle_timeout_or_busy_soonest_first() {
    let mut model = Model::new(cfg());
    let mut rng = rng();
    let a = model.invoke(ID, 0, &mut rng).unwrap().generation;
    let b = model.invoke(OTHER, 500, &mut rng).unwrap().generation;
    let far = "session-0000000000000000000000000003";
    model.invoke(far, 1_500, &mut rng).unwrap();
    let working = "session-0000000000000000000000000004";
    let w = model.invoke(working, 0, &mut rng).unwrap().generation;
    model.begin_work(working, w, 0);

    // At 1.6 s with 1 s ahead: ID idles at 2 s, OTHER at 2.5 s, `far` at 3.5 s.
    assert_eq!(
        model.idle_candidates(1_600, 1_000),
        [(ID.to_owned(), a), (OTHER.to_owned(), b)]
    );
    model.report_ping(far, 1, true, 1_600);
    assert_eq!(model.idle_candidates(1_600, 0), [(far.to_owned(), 1)]);
    assert_eq!(model.session_state(ID, 1_600), Some((1, SessionState::Active)));
    assert_eq!(model.session_state("unknown-session-id-000000000000000", 0), None);
}

#[test]
fn when_nothing_is_set_then_the_model_follows_the_2026_quotas() {
    let cfg = LifecycleConfig::default();
    assert_eq!(cfg.max_active_sessions, 5_000);
    assert_eq!(cfg.creation_rate_per_sec, 25.0);
}

#[test]
fn when_the_region_is_not_one_of_the_two_large_ones_then_half_the_active_sessions() {
    assert_eq!(platform::default_active_sessions("us-east-1"), 5_000);
    assert_eq!(platform::default_active_sessions("us-west-2"), 5_000);
    assert_eq!(platform::default_active_sessions("eu-central-1"), 2_500);
    assert_eq!(platform::default_active_sessions("ap-southeast-2"), 2_500);
}

/// The `percent`-th percentile of 20,000 cold starts drawn from the configured platform.
fn cold_start_quantile(platform: Platform, percent: usize) -> f64 {
    let cfg = LifecycleConfig {
        platform,
        ..LifecycleConfig::default()
    };
    let mut rng = rng();
    let mut samples: Vec<f64> = (0..20_000)
        .map(|_| cfg.cold_start().sample(&mut rng).as_secs_f64())
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() * percent / 100]
}

#[test]
fn when_the_platform_is_v2_then_the_cold_start_p75_is_about_two_seconds() {
    let p75 = cold_start_quantile(Platform::V2, 75);
    assert!((1.9..=2.2).contains(&p75), "V2 cold start p75 {p75:.3} s");
}

#[test]
fn when_the_platform_is_v1_then_the_cold_start_keeps_its_published_figures() {
    let median = cold_start_quantile(Platform::V1, 50);
    assert!((median / 2.9 - 1.0).abs() < 0.03, "V1 cold start median {median:.3} s");
    assert_eq!(LifecycleConfig::default().platform, Platform::V1);
}

#[test]
fn forgetting_ended_sessions_keeps_the_live_ones_and_the_counters() {
    let mut model = Model::new(cfg());
    model.invoke(ID, 0, &mut rng()).unwrap();
    model.invoke(OTHER, 1_500, &mut rng()).unwrap();
    // ID idled out at 2 s; OTHER lives until 3.5 s.
    model.forget_ended(2_500);
    let known: Vec<String> = model.sessions(2_500).into_iter().map(|v| v.session_id).collect();
    assert_eq!(known, [OTHER]);
    assert_eq!(model.active_sessions(2_500), 1);
    assert_eq!(model.stats().creations, 2);
    assert!(!model.invoke(OTHER, 2_600, &mut rng()).unwrap().cold);
    // The forgotten ID cold-starts, as an ended one does.
    assert!(model.invoke(ID, 2_600, &mut rng()).unwrap().cold);
}

#[test]
fn a_model_without_history_admits_the_same_and_records_nothing() {
    let (mut with, mut without) = (Model::new(cfg()), Model::new(cfg()).without_history());
    for at in [0, 500, 2_600] {
        assert_eq!(with.invoke(ID, at, &mut rng()), without.invoke(ID, at, &mut rng()));
    }
    assert_eq!(view(&with, ID, 2_600).history.len(), 3);
    assert!(view(&without, ID, 2_600).history.is_empty());
    assert_eq!(with.stats(), without.stats());
}

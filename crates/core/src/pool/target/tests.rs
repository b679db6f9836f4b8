use super::*;
use crate::ports::PoolDepth;
use std::time::Duration;

/// Monday 2024-01-01 00:00 UTC.
const MONDAY: u64 = 1_704_067_200_000;
const HOUR: u64 = 3_600_000;

fn office_hours() -> Schedule {
    Schedule::parse("Mon-Fri 08:00-18:00=50; Sat 10:00-12:00=20", 5).unwrap()
}

#[test]
fn the_schedule_switches_targets_exactly_at_window_edges() {
    let s = office_hours();
    let at = |day: u64, hour: u64, ms: u64| MONDAY + day * 24 * HOUR + hour * HOUR + ms;
    assert_eq!(s.target_at(at(0, 8, 0) - 1), 5);
    assert_eq!(s.target_at(at(0, 8, 0)), 50);
    assert_eq!(s.target_at(at(0, 18, 0) - 1), 50);
    assert_eq!(s.target_at(at(0, 18, 0)), 5);
    assert_eq!(s.target_at(at(4, 12, 0)), 50, "friday");
    assert_eq!(s.target_at(at(5, 11, 0)), 20, "saturday window");
    assert_eq!(s.target_at(at(5, 12, 0)), 5);
    assert_eq!(s.target_at(at(6, 11, 0)), 5, "sunday has no window");
}

#[test]
fn windows_may_wrap_the_week_and_end_at_midnight() {
    let s = Schedule::parse("Sat-Mon 20:00-24:00=9; * 00:00-01:00=3", 1).unwrap();
    assert_eq!(s.target_at(MONDAY + 23 * HOUR), 9);
    assert_eq!(s.target_at(MONDAY + 24 * HOUR + 30 * 60_000), 3, "tuesday 00:30");
    assert_eq!(s.target_at(MONDAY + 24 * HOUR + 21 * HOUR), 1, "tuesday evening");
    assert_eq!(s.target_at(MONDAY - 3 * HOUR), 9, "sunday 21:00");
}

#[test]
fn malformed_schedules_are_refused_with_the_reason() {
    for spec in [
        "",
        "Mon 08:00-18:00",
        "Mon 18:00-08:00=5",
        "Funday 08:00-09:00=5",
        "Mon 08:00-25:00=5",
        "Mon 08:61-09:00=5",
        "Mon 8-9=5",
        "Mon 08:00-09:00=many",
    ] {
        assert!(Schedule::parse(spec, 1).is_err(), "accepted {spec:?}");
    }
}

fn adaptive() -> Adaptive {
    Adaptive {
        safety_factor: 2.0,
        floor: 2,
        min: 3,
        max: 400,
        default_warmup: Duration::from_secs(5),
        empty_pool_rate: 20.0,
        prewarm: None,
    }
}

fn observed(depth: u64, oldest_wait_ms: u64, now: u64) -> Observation {
    Observation {
        depth: PoolDepth {
            visible: depth,
            in_flight: 0,
        },
        oldest_sent_at_ms: Some(now - oldest_wait_ms),
        warmup_p95: None,
    }
}

#[test]
fn the_claim_rate_is_depth_over_the_oldest_wait() {
    let now = MONDAY;
    assert_eq!(Adaptive::claim_rate(&observed(50, 10_000, now), now), Some(5.0));
    assert_eq!(Adaptive::claim_rate(&observed(0, 10_000, now), now), None);
    let unknown = Observation::default();
    assert_eq!(Adaptive::claim_rate(&unknown, now), None);
}

#[test]
fn the_adaptive_target_is_rate_times_warmup_times_safety_plus_floor_clamped() {
    let a = adaptive();
    let now = MONDAY;
    assert_eq!(a.target(now, Some(10.0), Some(Duration::from_secs(4))), 82);
    assert_eq!(a.target(now, Some(10.0), None), 102, "default warmup time");
    assert_eq!(a.target(now, Some(0.0), None), 3, "min");
    assert_eq!(a.target(now, Some(1_000.0), None), 400, "max");
    assert_eq!(
        a.target(now, None, None),
        202,
        "an empty pool sizes for the budget rate"
    );
}

#[test]
fn a_prewarm_window_raises_the_adaptive_target_only_while_it_lasts() {
    let a = Adaptive {
        prewarm: Some(Schedule::parse("* *:40-*:60=5000", 0).unwrap()),
        ..adaptive()
    };
    let minute = |m: u64| MONDAY + 7 * HOUR + m * 60_000;
    let warmup = Some(Duration::from_secs(4));
    assert_eq!(a.target(minute(39), Some(10.0), warmup), 82, "before the window");
    assert_eq!(
        a.target(minute(40), Some(10.0), warmup),
        5_000,
        "above max while it lasts"
    );
    assert_eq!(a.target(minute(40), None, warmup), 5_000, "an empty pool too");
    assert_eq!(a.target(minute(40), Some(1_000.0), warmup), 5_000);
    assert_eq!(a.target(minute(60), Some(10.0), warmup), 82, "the next hour's start");
    let small = Adaptive {
        prewarm: Some(Schedule::parse("* *:40-*:60=50", 0).unwrap()),
        ..adaptive()
    };
    assert_eq!(
        small.target(minute(45), Some(10.0), warmup),
        82,
        "demand above the window"
    );
}

#[test]
fn hourly_windows_repeat_every_hour_of_their_days() {
    let s = Schedule::parse("Mon *:09-*:30=900; Mon *:39-*:60=900", 4).unwrap();
    let at = |hour: u64, minute: u64| MONDAY + hour * HOUR + minute * 60_000;
    assert_eq!(s.target_at(at(0, 8)), 4);
    assert_eq!(s.target_at(at(0, 9)), 900);
    assert_eq!(s.target_at(at(13, 29)), 900);
    assert_eq!(s.target_at(at(13, 30)), 4);
    assert_eq!(s.target_at(at(23, 59)), 900);
    assert_eq!(s.target_at(at(24, 10)), 4, "tuesday");
    for spec in ["* *:30-*:09=5", "* *:09-10:00=5", "* *:9-*:30=5", "* *:00-*:61=5"] {
        assert!(Schedule::parse(spec, 1).is_err(), "accepted {spec:?}");
    }
}

#[test]
fn the_adaptive_target_follows_a_rate_step_up_and_down() {
    let policy = TargetPolicy::Adaptive(adaptive());
    let now = MONDAY;
    // 2/s: 20 pooled, oldest waited 10 s. 20/s: 80 pooled, 4 s. Back to 2/s.
    let low = policy.target(now, &observed(20, 10_000, now)).value;
    let high = policy.target(now, &observed(80, 4_000, now)).value;
    let low_again = policy.target(now, &observed(80, 40_000, now)).value;
    assert_eq!((low, high, low_again), (22, 202, 22));
}

#[test]
fn a_burst_above_the_budget_needs_its_excess_warm_before_it_starts() {
    let burst = Burst {
        base_rate: 10.0,
        peak_rate: 50.0,
        length: Duration::from_secs(300),
    };
    let five_s = Duration::from_secs(5);
    // (50 - 20) x 300 + 50 x 5 = 9,250, built at 20 - 10 = 10/s: 925 s, 16 minutes.
    let plan = burst.prewarm(20.0, five_s).unwrap();
    assert_eq!(plan.target, 9_250);
    assert_eq!(plan.lead, Duration::from_secs(16 * 60));
    // Within the budget only the refill lag needs covering, a minute ahead.
    let plan = burst.prewarm(80.0, five_s).unwrap();
    assert_eq!((plan.target, plan.lead), (250, Duration::from_secs(60)));
    assert!(burst.prewarm(10.0, five_s).unwrap_err().contains("base rate"));
    let upside_down = Burst {
        peak_rate: 5.0,
        ..burst
    };
    assert!(upside_down.prewarm(20.0, five_s).is_err());
}

#[test]
fn prewarm_windows_open_the_lead_before_the_burst_and_wrap_at_the_period() {
    let plan = Prewarm {
        target: 900,
        lead: Duration::from_secs(16 * 60),
    };
    let five_min = Duration::from_secs(300);
    assert_eq!(plan.windows("*:25", five_min).unwrap(), "* *:09-*:30=900");
    assert_eq!(
        plan.windows("*:05", five_min).unwrap(),
        "* *:49-*:60=900; * *:00-*:10=900"
    );
    assert_eq!(plan.windows("08:00", five_min).unwrap(), "* 07:44-08:05=900");
    assert_eq!(
        plan.windows("00:10", five_min).unwrap(),
        "* 23:54-24:00=900; * 00:00-00:15=900"
    );
    assert!(plan.windows("*:25", Duration::from_secs(50 * 60)).is_err());
    assert!(plan.windows("8am", five_min).is_err());
    // What it writes, the schedule reads back.
    let schedule = Schedule::parse(&plan.windows("*:05", five_min).unwrap(), 0).unwrap();
    assert_eq!(schedule.target_at(MONDAY + 9 * HOUR + 50 * 60_000), 900);
    assert_eq!(schedule.target_at(MONDAY + 9 * HOUR + 9 * 60_000), 900);
    assert_eq!(schedule.target_at(MONDAY + 9 * HOUR + 10 * 60_000), 0);
}

#[test]
fn warmup_p95_needs_enough_samples_and_follows_recent_ones() {
    let mut times = WarmupTimes::default();
    times.record(1..=19);
    assert_eq!(times.p95(), None);
    times.record([20]);
    assert_eq!(times.p95(), Some(Duration::from_millis(19)));
    times.record(std::iter::repeat_n(3_000, 200));
    assert_eq!(times.p95(), Some(Duration::from_millis(3_000)));
}

#[test]
fn warmup_p95_is_the_nearest_rank_of_the_latest_samples_as_they_roll() {
    let mut times = WarmupTimes::default();
    let latencies: Vec<u64> = (0..1_000u64).map(|i| 800 + (i * 7_919) % 4_001).collect();
    for (i, latency) in latencies.iter().enumerate() {
        times.record([*latency]);
        let latest = &latencies[(i + 1).saturating_sub(200)..=i];
        let expected = (latest.len() >= 20)
            .then(|| crate::metrics::nearest_rank(latest, 95.0))
            .flatten();
        assert_eq!(
            times.p95(),
            expected.map(Duration::from_millis),
            "after {} samples",
            i + 1
        );
    }
}

#[test]
fn target_mode_and_schedule_come_from_the_environment() {
    let env = Env::from_pairs([
        (MODE, "scheduled"),
        (SCHEDULE, "Mon-Fri 08:00-18:00=50"),
        (STATIC_TARGET, "4"),
    ]);
    let policy = TargetPolicy::from_env(&env).unwrap();
    assert_eq!(policy.target(MONDAY + 9 * HOUR, &Observation::default()).value, 50);
    assert_eq!(policy.target(MONDAY, &Observation::default()).value, 4);
    let missing = Env::from_pairs([(MODE, "scheduled")]);
    assert!(matches!(
        TargetPolicy::from_env(&missing),
        Err(ConfigError::Missing(SCHEDULE))
    ));
    let bad = Env::from_pairs([(MODE, "sometimes")]);
    assert!(TargetPolicy::from_env(&bad).is_err());
    let prewarmed = Env::from_pairs([(MODE, "adaptive"), (SCHEDULE, "Mon 08:00-09:00=700")]);
    let policy = TargetPolicy::from_env(&prewarmed).unwrap();
    assert_eq!(policy.target(MONDAY + 8 * HOUR, &Observation::default()).value, 700);
    // Outside it, an empty pool: 20/s (the default budget) x 5 s + 2.
    assert_eq!(policy.target(MONDAY, &Observation::default()).value, 102);
    let blank = Env::from_pairs([(MODE, "adaptive"), (SCHEDULE, " ")]);
    assert!(matches!(
        TargetPolicy::from_env(&blank),
        Ok(TargetPolicy::Adaptive(Adaptive { prewarm: None, .. }))
    ));
    let malformed = Env::from_pairs([(MODE, "adaptive"), (SCHEDULE, "Mon 9-10=7")]);
    assert!(matches!(
        TargetPolicy::from_env(&malformed),
        Err(ConfigError::Invalid { key: SCHEDULE, .. })
    ));
    assert_eq!(
        TargetPolicy::from_env(&Env::default()).unwrap(),
        TargetPolicy::Static(10)
    );
}

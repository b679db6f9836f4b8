use super::*;

/// Monday 2026-01-05 00:00 UTC.
const MONDAY: u64 = 1_767_571_200_000;

/// A week from Monday: 2/s, weekdays 09:00-17:00 at 12/s with a 50/s rush 12:00-12:10.
fn office_week() -> Vec<u32> {
    (0..7 * 24 * 60)
        .map(|m| {
            let (day, minute) = (m / 1_440, m % 1_440);
            let per_sec = match (day < 5, minute) {
                (true, 720..730) => 50,
                (true, 540..1_020) => 12,
                _ => 2,
            };
            per_sec * 60
        })
        .collect()
}

fn rules() -> FitRules {
    FitRules {
        quantile: 1.0,
        budget_per_sec: 20.0,
        warmup_p95: Duration::from_secs(5),
        headroom: 1.5,
        floor: 2,
        slot_minutes: 60,
    }
}

#[test]
fn the_hours_of_the_week_are_counted_from_monday_utc() {
    assert_eq!(hour_of_week(MONDAY), 0);
    assert_eq!(hour_of_week(MONDAY + 9 * HOUR_MS + 59 * 60_000), 9);
    assert_eq!(hour_of_week(MONDAY + 6 * 24 * HOUR_MS + 23 * HOUR_MS), 167);
    assert_eq!(hour_of_week(0), 3 * 24, "1970-01-01 was a Thursday");
}

#[test]
fn windows_fitted_to_known_rises_open_the_lead_the_budget_needs_before_each() {
    let fit = fit(MONDAY, &office_week(), &rules());
    assert_eq!(fit.default, 17, "2/s x 5 s x 1.5 + 2");
    // The rush: 50/s x 5 s x 1.5 + 2 = 377, plus 10 min x 30/s above the budget = 18,377,
    // coarsened to 19,000; built at the 8/s the 12/s hour leaves, 40 minutes ahead.
    assert_eq!(
        fit.schedule(),
        "Mon,Tue,Wed,Thu,Fri 11:20-13:00=19000; Mon,Tue,Wed,Thu,Fri 08:59-12:00=92; Mon,Tue,Wed,Thu,Fri 13:00-17:00=92"
    );
    let parsed = warmpool_core::pool::target::Schedule::parse(&fit.schedule(), fit.default).unwrap();
    let at = |day: u64, hour: u64, minute: u64| MONDAY + ((day * 24 + hour) * 60 + minute) * 60_000;
    assert_eq!(parsed.target_at(at(0, 8, 58)), 17);
    assert_eq!(parsed.target_at(at(0, 8, 59)), 92, "the lead before nine");
    assert_eq!(parsed.target_at(at(2, 11, 20)), 19_000, "the rush's stock, built ahead");
    assert_eq!(parsed.target_at(at(2, 13, 0)), 92);
    assert_eq!(parsed.target_at(at(5, 12, 5)), 17, "no rush on Saturday");
}

#[test]
fn a_rise_the_spare_budget_needs_hours_to_stock_opens_hours_ahead() {
    // Weekdays at 19/s leave 1/s of a 20/s budget: the rush's stock of about 13,000 takes more
    // than three hours to build (at most an hour of lead left the rush 1.5% short of warm).
    let week: Vec<u32> = office_week()
        .into_iter()
        .map(|per_minute| match per_minute / 60 {
            50 => 40 * 60,
            12 => 19 * 60,
            _ => per_minute,
        })
        .collect();
    let fit = fit(MONDAY, &week, &rules());
    let parsed = warmpool_core::pool::target::Schedule::parse(&fit.schedule(), fit.default).unwrap();
    let at = |hour: u64, minute: u64| MONDAY + (hour * 60 + minute) * 60_000;
    let rush = parsed.target_at(at(12, 5));
    assert!(rush > 12_000, "{}", fit.schedule());
    assert_eq!(
        parsed.target_at(at(9, 0)),
        rush,
        "three hours ahead: {}",
        fit.schedule()
    );
    assert!(parsed.target_at(at(13, 30)) < 1_000);
}

#[test]
fn the_prewarm_windows_keep_only_the_hours_the_budget_cannot_follow() {
    let only = Fit::prewarm_only(MONDAY, &office_week(), &rules()).unwrap();
    assert_eq!(only.default, 0);
    assert_eq!(only.schedule(), "Mon,Tue,Wed,Thu,Fri 11:20-13:00=19000");
    let calm: Vec<u32> = vec![600; 7 * 24 * 60];
    assert_eq!(Fit::prewarm_only(MONDAY, &calm, &rules()), None);
    // Every hour alike, and every one above the budget: one window all week.
    let rushed: Vec<u32> = (0..7 * 24 * 60).map(|m| if m % 60 < 5 { 3_000 } else { 600 }).collect();
    let always = Fit::prewarm_only(MONDAY, &rushed, &rules()).unwrap();
    assert_eq!(always.schedule(), "* 00:00-24:00=9400");
}

#[test]
fn a_lead_before_midnight_becomes_a_window_on_the_day_before() {
    // Busy from Tuesday 00:00 only: the lead opens on Monday evening.
    let trace: Vec<u32> = (0..7 * 24 * 60)
        .map(|m| if (1_440..2_880).contains(&m) { 600 } else { 0 })
        .collect();
    let fit = fit(
        MONDAY,
        &trace,
        &FitRules {
            budget_per_sec: 10.5,
            ..rules()
        },
    );
    assert_eq!(fit.default, 2);
    assert_eq!(fit.schedule(), "Mon 23:59-24:00=77; Tue 00:00-24:00=77");
}

#[test]
fn in_ten_minute_slots_a_short_rush_is_held_only_around_itself() {
    let fine = fit_best(MONDAY, &office_week(), &rules());
    // The rush's stock from 11:20 (the 8/s left over builds the 18,908 more in 40 minutes)
    // to 12:10, when the rush ends, then the 12/s level again.
    let parsed = warmpool_core::pool::target::Schedule::parse(&fine.schedule(), fine.default).unwrap();
    let at = |day: u64, hour: u64, minute: u64| MONDAY + ((day * 24 + hour) * 60 + minute) * 60_000;
    assert_eq!(parsed.target_at(at(1, 11, 20)), 19_000, "{}", fine.schedule());
    assert_eq!(parsed.target_at(at(1, 12, 5)), 19_000, "{}", fine.schedule());
    assert_eq!(parsed.target_at(at(1, 12, 10)), 92, "{}", fine.schedule());
    assert_eq!(parsed.target_at(at(1, 8, 59)), 92);
    assert_eq!(parsed.target_at(at(1, 8, 58)), 17);
    assert!(fine.schedule().len() < fit(MONDAY, &office_week(), &rules()).schedule().len() * 3);
}

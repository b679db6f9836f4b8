//! The built-in traces: the bench's profiles, and `week`, a working week at about ten
//! requests a second (the planner's speed figure in `make bench` runs it).

use super::trace::Trace;
use crate::Profile;

/// Monday 2026-01-05 00:00 UTC: built-in traces start on a Monday, so their weekdays mean
/// something to the fitted windows.
pub const MONDAY: u64 = 1_767_571_200_000;

/// The names `--profile` takes.
pub const NAMES: [&str; 5] = ["steady", "burst", "day", "burst-quota100", "week"];

/// Requests a second in `minute` of the week from Monday 00:00: 6/s at night, 19/s on
/// weekdays 09:00-17:00 with a 40/s rush at 12:00-12:10, 7/s at weekends.
fn week_rate(minute: u64) -> u32 {
    let (day, of_day) = (minute / 1_440, minute % 1_440);
    match (day < 5, of_day) {
        (true, 720..730) => 40,
        (true, 540..1_020) => 19,
        (false, _) => 7,
        _ => 6,
    }
}

/// The built-in trace called `name`, if there is one.
pub fn trace(name: &str) -> Option<Trace> {
    if name == "week" {
        return Some(Trace {
            name: "week".into(),
            start_ms: MONDAY,
            per_minute: (0..7 * 1_440).map(|m| week_rate(m) * 60).collect(),
            exact: None,
            notes: vec!["built-in profile \"week\": nights 6/s, weekdays 09-17 19/s with a 40/s rush at 12:00-12:10, weekends 7/s".into()],
        });
    }
    Profile::standard()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| Trace::of_profile(&p, MONDAY))
}

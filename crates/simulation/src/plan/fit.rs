//! Scheduled windows fitted to a trace, per slot of the week (UTC): 10-minute slots when the
//! schedule they make fits in a template parameter, else hours. Below, "hour" is a slot.
//!
//! Each of the 168 hours gets the `quantile` of the per-second demand of its minutes (over
//! every week the trace holds) and a target sized as the adaptive mode sizes one
//! (`rate x warmup p95 x headroom + floor`), plus the stock that demand above the creation
//! budget drains during the hour (the deepest deficit of a running balance, as
//! [`warmpool_core::pool::target::Burst::prewarm`] reasons for one burst). A rise has to be
//! built before it starts, at what the budget leaves over the hour before: the window opens
//! that lead earlier, in whole minutes, at most six hours. Hours of equal target merge, days
//! with equal windows share one; windows are listed highest target first, since the first
//! window that contains an instant wins and a lead overlaps the hour before it.

use super::time::format_instant;
use std::collections::BTreeMap;
use std::time::Duration;
use warmpool_core::metrics::nearest_rank;
use warmpool_core::num::{ceil_u32, ceil_u64};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// CloudFormation keeps a parameter value to 4,096 bytes; targets are coarsened until the
/// schedule fits with room to spare.
pub const MAX_SCHEDULE_LEN: usize = 4_000;

/// How the fit sizes each hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitRules {
    /// 0.5 sizes for the median minute of each hour, 1.0 for its busiest.
    pub quantile: f64,
    pub budget_per_sec: f64,
    pub warmup_p95: Duration,
    pub headroom: f64,
    pub floor: u32,
    /// The length of a slot of the week, in minutes: 60 (hours) or a divisor of it.
    pub slot_minutes: u32,
}

impl FitRules {
    fn slot(&self) -> u32 {
        match self.slot_minutes {
            m @ (1 | 2 | 3 | 4 | 5 | 6 | 10 | 12 | 15 | 20 | 30 | 60) => m,
            _ => 60,
        }
    }
    fn slots_per_day(&self) -> usize {
        (1_440 / self.slot()) as usize
    }
    fn slot_of_week(&self, ms: u64) -> usize {
        let day = usize::try_from((ms / DAY_MS + 3) % 7).unwrap_or(0);
        let in_day = usize::try_from(ms % DAY_MS / (u64::from(self.slot()) * 60_000)).unwrap_or(0);
        day * self.slots_per_day() + in_day
    }
}

/// One window: on `days`, from `start_minute` to `end_minute` after midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FittedWindow {
    pub days: Vec<usize>,
    pub start_minute: u32,
    pub end_minute: u32,
    pub target: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// The target outside every window (`POOL_TARGET`).
    pub default: u32,
    pub windows: Vec<FittedWindow>,
    /// Per slot of the week from Monday 00:00: `None` where the trace has no minute.
    pub hourly: Vec<Option<u32>>,
}

/// Hour of the week, Monday 00:00 UTC first, of an epoch instant (1970-01-01 was a Thursday).
pub fn hour_of_week(ms: u64) -> usize {
    let hours = ms / HOUR_MS;
    usize::try_from((hours / 24 + 3) % 7 * 24 + hours % 24).unwrap_or(0)
}

/// Per hour of the week, the per-second rates of its minutes and the deficit of each time
/// the trace passes through it.
#[derive(Debug, Default, Clone)]
struct HourSamples {
    rates: Vec<u64>,
    deficits: Vec<u64>,
}

fn samples(start_ms: u64, per_minute: &[u32], rules: &FitRules) -> Vec<HourSamples> {
    let mut slots = vec![HourSamples::default(); rules.slots_per_day() * 7];
    let slot_ms = u64::from(rules.slot()) * 60_000;
    let (mut current, mut deficit, mut worst) = (None, 0.0_f64, 0.0_f64);
    for (m, count) in per_minute.iter().enumerate() {
        let at = start_ms + m as u64 * 60_000;
        let slot = rules.slot_of_week(at);
        let pass = at / slot_ms;
        if current != Some(pass) {
            if let Some(previous) = current {
                slots[rules.slot_of_week(previous * slot_ms)]
                    .deficits
                    .push(ceil_u64(worst));
            }
            (current, deficit, worst) = (Some(pass), 0.0, 0.0);
        }
        // Rates kept in thousandths of a request per second, for the integer quantile.
        slots[slot].rates.push(u64::from(*count) * 1_000 / 60);
        deficit = (deficit + f64::from(*count) - rules.budget_per_sec * 60.0).max(0.0);
        worst = worst.max(deficit);
    }
    if let Some(previous) = current {
        slots[rules.slot_of_week(previous * slot_ms)]
            .deficits
            .push(ceil_u64(worst));
    }
    slots
}

/// Rounds up to two significant digits (`digits` = 2), so neighbouring hours merge.
fn coarse(target: u32, digits: u32) -> u32 {
    let mut step = 1_u32;
    while target / step >= 10_u32.pow(digits) {
        step = step.saturating_mul(10);
    }
    target.div_ceil(step).saturating_mul(step)
}

/// The fitted windows of a trace starting at `start_ms` (a whole minute).
pub fn fit(start_ms: u64, per_minute: &[u32], rules: &FitRules) -> Fit {
    let hours = samples(start_ms, per_minute, rules);
    let percentile = rules.quantile.clamp(0.0, 1.0) * 100.0;
    let demand: Vec<Option<f64>> = hours
        .iter()
        .map(|h| nearest_rank(&h.rates, percentile).map(|r| r as f64 / 1_000.0))
        .collect();
    let sized = |h: usize, digits: u32| -> Option<u32> {
        let rate = demand[h]?;
        let stock = nearest_rank(&hours[h].deficits, percentile).unwrap_or(0);
        let reactive = ceil_u32(rate * rules.warmup_p95.as_secs_f64() * rules.headroom);
        let target = reactive
            .saturating_add(rules.floor)
            .saturating_add(u32::try_from(stock).unwrap_or(u32::MAX));
        Some(coarse(target, digits))
    };
    let mut digits = 2;
    loop {
        let hourly: Vec<Option<u32>> = (0..hours.len()).map(|h| sized(h, digits)).collect();
        let fit = windows_of(hourly, &demand, rules, None);
        if digits == 1 || fit.schedule().len() <= MAX_SCHEDULE_LEN {
            return fit;
        }
        digits = 1;
    }
}

/// The longest lead a window opens with: sessions warmed that early still have hours of their
/// 8-hour lifetime left when the rise comes.
const MAX_LEAD_MINUTES: u32 = 360;

/// Minutes of lead a rise of `rise` sessions needs when `spare` creations a second are free.
fn lead_minutes(rise: u32, spare: f64) -> u32 {
    if rise == 0 {
        return 0;
    }
    if spare <= 0.0 {
        return MAX_LEAD_MINUTES;
    }
    ceil_u32(f64::from(rise) / spare / 60.0).clamp(1, MAX_LEAD_MINUTES)
}

/// Slot targets into windows above the default (the least slot target, or `default`), with
/// their leads.
fn windows_of(hourly: Vec<Option<u32>>, demand: &[Option<f64>], rules: &FitRules, default: Option<u32>) -> Fit {
    let default = default.unwrap_or_else(|| hourly.iter().flatten().copied().min().unwrap_or(0));
    let (per_day, slot) = (rules.slots_per_day(), rules.slot());
    let week = per_day * 7;
    let target_of = |h: usize| hourly[h % week].unwrap_or(default);
    // (day, start minute, end minute, target), built run by run within each day.
    let mut spans: Vec<(usize, u32, u32, u32)> = Vec::new();
    for day in 0..7 {
        let mut at = 0;
        while at < per_day {
            let h = day * per_day + at;
            let target = target_of(h);
            let mut end = at + 1;
            while end < per_day && target_of(day * per_day + end) == target {
                end += 1;
            }
            if target > default {
                let before = (h + week - 1) % week;
                let rise = target.saturating_sub(target_of(before));
                let spare = rules.budget_per_sec - demand[before].unwrap_or(0.0);
                let lead = lead_minutes(rise, spare);
                let start = u32::try_from(at).unwrap_or(0) * slot;
                let end_minute = u32::try_from(end).unwrap_or(0) * slot;
                if lead > start {
                    // The lead reaches into the day before: its own window there.
                    spans.push(((day + 6) % 7, 1_440 - (lead - start), 1_440, target));
                }
                spans.push((day, start.saturating_sub(lead), end_minute, target));
            }
            at = end;
        }
    }
    let mut grouped: BTreeMap<(u32, u32, u32), Vec<usize>> = BTreeMap::new();
    for (day, start, end, target) in spans {
        grouped.entry((start, end, target)).or_default().push(day);
    }
    let mut windows: Vec<FittedWindow> = grouped
        .into_iter()
        .map(|((start_minute, end_minute, target), mut days)| {
            days.sort_unstable();
            days.dedup();
            FittedWindow {
                days,
                start_minute,
                end_minute,
                target,
            }
        })
        .collect();
    windows.sort_by(|a, b| {
        b.target
            .cmp(&a.target)
            .then(a.days.cmp(&b.days))
            .then(a.start_minute.cmp(&b.start_minute))
    });
    Fit {
        default,
        windows,
        hourly,
    }
}

fn clock(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

impl FittedWindow {
    fn render(&self) -> String {
        let days: Vec<&str> = self.days.iter().filter_map(|d| DAY_NAMES.get(*d).copied()).collect();
        let days = if days.len() == 7 {
            "*".to_string()
        } else {
            days.join(",")
        };
        format!(
            "{days} {}-{}={}",
            clock(self.start_minute),
            clock(self.end_minute),
            self.target
        )
    }
}

impl Fit {
    /// `POOL_TARGET_SCHEDULE`; empty when no hour needs more than the default.
    pub fn schedule(&self) -> String {
        self.windows
            .iter()
            .map(FittedWindow::render)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The windows where the demand outruns the creation budget, alone: the pre-warm
    /// minimums of an adaptive target (`None` when there is no such hour).
    pub fn prewarm_only(start_ms: u64, per_minute: &[u32], rules: &FitRules) -> Option<Fit> {
        let hours = samples(start_ms, per_minute, rules);
        let percentile = rules.quantile.clamp(0.0, 1.0) * 100.0;
        let full = fit(start_ms, per_minute, rules);
        let hourly: Vec<Option<u32>> = (0..hours.len())
            .map(|h| {
                let stock = nearest_rank(&hours[h].deficits, percentile).unwrap_or(0);
                Some(if stock > 0 { full.hourly[h].unwrap_or(0) } else { 0 })
            })
            .collect();
        if hourly.iter().all(|t| *t == Some(0)) {
            return None;
        }
        let demand: Vec<Option<f64>> = hours
            .iter()
            .map(|h| nearest_rank(&h.rates, percentile).map(|r| r as f64 / 1_000.0))
            .collect();
        Some(windows_of(hourly, &demand, rules, Some(0)))
    }
}

/// The fit in 10-minute slots when its schedule fits in a parameter, else in hours: a burst
/// shorter than an hour is then held only around itself.
pub fn fit_best(start_ms: u64, per_minute: &[u32], rules: &FitRules) -> Fit {
    let fine = fit(
        start_ms,
        per_minute,
        &FitRules {
            slot_minutes: 10,
            ..*rules
        },
    );
    if fine.schedule().len() <= MAX_SCHEDULE_LEN {
        return fine;
    }
    fit(
        start_ms,
        per_minute,
        &FitRules {
            slot_minutes: 60,
            ..*rules
        },
    )
}

/// A line per window, for the report: `Mon-Fri 08:59-17:00 target 152`.
pub fn describe(fit: &Fit, start_ms: u64) -> String {
    format!(
        "fitted from {}: {} outside the windows; {}",
        format_instant(start_ms),
        fit.default,
        if fit.windows.is_empty() {
            "no window".to_string()
        } else {
            fit.schedule()
        }
    )
}

#[cfg(test)]
mod tests;

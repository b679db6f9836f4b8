//! How many warm sessions the pool should hold: a static value, a weekly schedule of windows
//! (UTC), or an adaptive size from the observed claim rate and warmup time, which a schedule
//! may raise during its windows (a pre-warm ahead of a burst the operator knows about, the way
//! scheduled scaling raises the minimum under target tracking).
//!
//! Adaptive sizing adds nothing to the claim path. The scheduled run measures the claim rate
//! from the pool queue itself, by Little's law: a queue holding `depth` messages whose oldest
//! has waited `w` seconds is drained at about `depth / w` per second (claims take the oldest
//! first, and replenish refills one for one). The warmup time is what this replenish
//! environment measured on its own warmups. Nothing new is stored anywhere.

use crate::config::Env;
use crate::error::ConfigError;
use crate::metrics::nearest_rank;
use crate::ports::PoolDepth;
use crate::quota::CreationBudget;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

pub const MODE: &str = "POOL_TARGET_MODE";
pub const STATIC_TARGET: &str = "POOL_TARGET";
pub const SCHEDULE: &str = "POOL_TARGET_SCHEDULE";
pub const MIN: &str = "POOL_TARGET_MIN";
pub const MAX: &str = "POOL_TARGET_MAX";
pub const SAFETY_FACTOR: &str = "ADAPTIVE_SAFETY_FACTOR";
pub const FLOOR: &str = "ADAPTIVE_FLOOR";
pub const DEFAULT_WARMUP: &str = "ADAPTIVE_DEFAULT_WARMUP_MS";

const DAY_MS: u64 = 86_400_000;
const MINUTE_MS: u64 = 60_000;
const DAY_MINUTES: u32 = 24 * 60;
const HOUR_MINUTES: u32 = 60;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One window of the schedule: on these weekdays, from `start_minute` (inclusive) to
/// `end_minute` (exclusive) into each period, the target is `target`. The period is the day
/// (minutes after midnight UTC) or, for `*:MM-*:MM` windows, every hour of those days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    /// 1440 (daily) or 60 (hourly).
    pub period_minutes: u32,
    pub start_minute: u32,
    pub end_minute: u32,
    pub target: u32,
}

/// Windows like Lambda provisioned concurrency's scheduled scaling; the first window that
/// contains the instant wins, and outside every window the default applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub windows: Vec<Window>,
    pub default: u32,
}

impl Schedule {
    pub fn target_at(&self, now_ms: u64) -> u32 {
        self.window_at(now_ms).map_or(self.default, |w| w.target)
    }

    /// The first window that contains the instant.
    pub fn window_at(&self, now_ms: u64) -> Option<&Window> {
        let days = now_ms / DAY_MS;
        // 1970-01-01 was a Thursday (index 3 when Monday is 0).
        let weekday = ((days + 3) % 7) as usize;
        let minute = ((now_ms % DAY_MS) / MINUTE_MS) as u32;
        self.windows.iter().find(|w| {
            let into_period = minute % w.period_minutes;
            w.days[weekday] && w.start_minute <= into_period && into_period < w.end_minute
        })
    }

    /// `Mon-Fri 08:00-18:00=50; Sat,Sun 10:00-14:00=20; * 00:00-06:00=2; * *:50-*:60=900`:
    /// days as names, ranges (wrapping, `Fri-Mon`), lists or `*`; times UTC, end exclusive,
    /// `24:00` allowed; `*:MM-*:MM` repeats every hour of those days (`*:60` ends the hour).
    pub fn parse(spec: &str, default: u32) -> Result<Self, String> {
        let windows = spec
            .split(';')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(parse_window)
            .collect::<Result<Vec<_>, _>>()?;
        if windows.is_empty() {
            return Err("no window given".into());
        }
        Ok(Self { windows, default })
    }
}

fn parse_window(raw: &str) -> Result<Window, String> {
    let bad = |why: &str| format!("window {raw:?}: {why}");
    let (when, target) = raw
        .split_once('=')
        .ok_or_else(|| bad("expected `<days> <HH:MM>-<HH:MM>=<target>`"))?;
    let target = target.trim().parse().map_err(|_| bad("target is not a whole number"))?;
    let mut parts = when.split_whitespace();
    let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected `<days> <HH:MM>-<HH:MM>`"));
    };
    let (start, end) = times.split_once('-').ok_or_else(|| bad("expected a time range"))?;
    let (period_minutes, start_minute, end_minute) = match (start.strip_prefix("*:"), end.strip_prefix("*:")) {
        (Some(start), Some(end)) => (
            HOUR_MINUTES,
            parse_minute(start).map_err(|e| bad(&e))?,
            parse_minute(end).map_err(|e| bad(&e))?,
        ),
        (None, None) => (
            DAY_MINUTES,
            parse_time(start).map_err(|e| bad(&e))?,
            parse_time(end).map_err(|e| bad(&e))?,
        ),
        _ => return Err(bad("both ends are `HH:MM`, or both are `*:MM`")),
    };
    if start_minute >= end_minute {
        return Err(bad(
            "start must be before end (split a window that crosses midnight or the hour in two)",
        ));
    }
    Ok(Window {
        days: parse_days(days).map_err(|e| bad(&e))?,
        period_minutes,
        start_minute,
        end_minute,
        target,
    })
}

/// Minutes into the hour of an hourly window: `00` to `60`.
fn parse_minute(raw: &str) -> Result<u32, String> {
    match raw.parse::<u32>() {
        Ok(m) if raw.len() == 2 && m <= HOUR_MINUTES => Ok(m),
        _ => Err(format!("\"*:{raw}\" is not a minute of the hour (*:00 to *:60)")),
    }
}

fn parse_time(raw: &str) -> Result<u32, String> {
    let (h, m) = raw.split_once(':').ok_or_else(|| format!("{raw:?} is not HH:MM"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("{raw:?} is not HH:MM"))?,
        m.parse().map_err(|_| format!("{raw:?} is not HH:MM"))?,
    );
    if m >= 60 || h * 60 + m > 24 * 60 {
        return Err(format!("{raw:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

fn parse_days(raw: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    if raw == "*" {
        return Ok([true; 7]);
    }
    let index = |name: &str| {
        let lower = name.to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|d| *d == lower)
            .ok_or_else(|| format!("{name:?} is not a weekday (Mon..Sun)"))
    };
    for part in raw.split(',') {
        match part.split_once('-') {
            None => days[index(part)?] = true,
            Some((from, to)) => {
                let (from, to) = (index(from)?, index(to)?);
                let mut day = from;
                loop {
                    days[day] = true;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
        }
    }
    Ok(days)
}

/// Sizing from demand: `rate * p95 warmup * safety + floor`, clamped to `[min, max]`; inside a
/// window of `prewarm`, at least that window's target.
#[derive(Debug, Clone, PartialEq)]
pub struct Adaptive {
    /// How many warmup times' worth of claims the pool holds visibly. With one-for-one refills
    /// the warmups in progress already cover the mean, so 1 leaves room for a rate step
    /// between two rounds and for the refill lag the warmup time leaves out (trigger, pacing);
    /// the simulation benchmark shows the trade-off (README.md, Pool lifecycle).
    pub safety_factor: f64,
    /// Sessions kept whatever the rate, so the first claims after a quiet spell are warm.
    pub floor: u32,
    pub min: u32,
    pub max: u32,
    /// Warmup time assumed until this environment has measured enough of its own.
    pub default_warmup: Duration,
    /// The claim rate assumed when the pool is found empty: the creation budget, the fastest
    /// claims refills can keep up with. An empty pool says demand outran supply, not by how
    /// much; beyond the budget only a pre-warm helps, so sizing for more only adds cost.
    pub empty_pool_rate: f64,
    /// Known bursts: a reactive size cannot absorb a burst above the creation budget, whose
    /// excess has to be warm before it starts (README.md, Pool lifecycle, Pre-warming a known burst).
    pub prewarm: Option<Schedule>,
}

/// What the scheduled run saw of the pool, before touching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    pub depth: PoolDepth,
    /// When the oldest visible message was sent to the queue.
    pub oldest_sent_at_ms: Option<u64>,
    /// This environment's recent p95 warmup latency, if it has enough samples.
    pub warmup_p95: Option<Duration>,
}

/// Below this the oldest message's wait is too short to divide by.
const MIN_WAIT_MS: u64 = 100;

impl Adaptive {
    /// Claims per second, by Little's law on the pool queue; `None` for an empty pool.
    pub fn claim_rate(observation: &Observation, now_ms: u64) -> Option<f64> {
        let depth = observation.depth.total();
        let oldest = observation.oldest_sent_at_ms?;
        if depth == 0 {
            return None;
        }
        let wait_ms = now_ms.saturating_sub(oldest).max(MIN_WAIT_MS);
        Some(depth as f64 * 1_000.0 / wait_ms as f64)
    }

    pub fn target(&self, now_ms: u64, rate: Option<f64>, warmup_p95: Option<Duration>) -> u32 {
        let prewarm = self
            .prewarm
            .as_ref()
            .and_then(|schedule| schedule.window_at(now_ms))
            .map_or(0, |window| window.target);
        let rate = rate.unwrap_or(self.empty_pool_rate);
        let warmup = warmup_p95.unwrap_or(self.default_warmup).as_secs_f64();
        let sized = (rate * warmup * self.safety_factor).ceil();
        let sized = if sized.is_finite() && sized >= 0.0 {
            sized.min(f64::from(u32::MAX)) as u32
        } else {
            u32::MAX
        };
        sized.saturating_add(self.floor).clamp(self.min, self.max).max(prewarm)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetPolicy {
    Static(u32),
    Scheduled(Schedule),
    Adaptive(Adaptive),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    Static,
    Scheduled,
    Adaptive,
}

/// The target in force and, for the adaptive mode, the claim rate it was sized from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub value: u32,
    pub mode: Mode,
    pub claim_rate: Option<f64>,
}

impl TargetPolicy {
    pub fn target(&self, now_ms: u64, observation: &Observation) -> Target {
        match self {
            Self::Static(value) => Target {
                value: *value,
                mode: Mode::Static,
                claim_rate: None,
            },
            Self::Scheduled(schedule) => Target {
                value: schedule.target_at(now_ms),
                mode: Mode::Scheduled,
                claim_rate: None,
            },
            Self::Adaptive(adaptive) => {
                let rate = Adaptive::claim_rate(observation, now_ms);
                Target {
                    value: adaptive.target(now_ms, rate, observation.warmup_p95),
                    mode: Mode::Adaptive,
                    claim_rate: rate,
                }
            }
        }
    }

    /// Whether sizing needs the claim rate, hence the pool's oldest message (one more SQS call).
    pub fn needs_claim_rate(&self) -> bool {
        matches!(self, Self::Adaptive(_))
    }

    /// `POOL_TARGET_MODE` = `static` (default: `POOL_TARGET`, 10), `scheduled`
    /// (`POOL_TARGET_SCHEDULE`, `POOL_TARGET` outside its windows) or `adaptive`
    /// (`ADAPTIVE_SAFETY_FACTOR` 1, `ADAPTIVE_FLOOR` 2, `POOL_TARGET_MIN` 0, `POOL_TARGET_MAX` 500,
    /// `ADAPTIVE_DEFAULT_WARMUP_MS` 5000, and an optional `POOL_TARGET_SCHEDULE` of pre-warm
    /// windows that raise the target while they last).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mode: String = env.parse_or(MODE, "static".to_string())?;
        let static_target: u32 = env.parse_or(STATIC_TARGET, 10)?;
        let schedule = |default| -> Result<Option<Schedule>, ConfigError> {
            let Some(spec) = env.optional(SCHEDULE) else {
                return Ok(None);
            };
            Schedule::parse(&spec, default)
                .map(Some)
                .map_err(|reason| ConfigError::Invalid {
                    key: SCHEDULE,
                    value: spec,
                    reason,
                })
        };
        match mode.as_str() {
            "static" => Ok(Self::Static(static_target)),
            "scheduled" => schedule(static_target)?
                .map(Self::Scheduled)
                .ok_or(ConfigError::Missing(SCHEDULE)),
            "adaptive" => {
                let adaptive = Adaptive {
                    safety_factor: env.parse_or(SAFETY_FACTOR, 1.0)?,
                    floor: env.parse_or(FLOOR, 2)?,
                    min: env.parse_or(MIN, 0)?,
                    max: env.parse_or(MAX, 500)?,
                    default_warmup: env.millis_or(DEFAULT_WARMUP, 5_000)?,
                    empty_pool_rate: f64::from(CreationBudget::from_env(env)?.per_second.get()),
                    prewarm: schedule(0)?,
                };
                if !(adaptive.safety_factor.is_finite() && adaptive.safety_factor > 0.0) {
                    return Err(ConfigError::Invalid {
                        key: SAFETY_FACTOR,
                        value: adaptive.safety_factor.to_string(),
                        reason: "must be a positive number".into(),
                    });
                }
                if adaptive.min > adaptive.max {
                    return Err(ConfigError::Invalid {
                        key: MIN,
                        value: adaptive.min.to_string(),
                        reason: format!("must not exceed {MAX} ({})", adaptive.max),
                    });
                }
                Ok(Self::Adaptive(adaptive))
            }
            other => Err(ConfigError::Invalid {
                key: MODE,
                value: other.to_string(),
                reason: "expected static, scheduled or adaptive".into(),
            }),
        }
    }
}

/// A burst the operator knows about: `peak_rate` claims per second for `length`, over a
/// `base_rate` the rest of the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    pub base_rate: f64,
    pub peak_rate: f64,
    pub length: Duration,
}

/// The pre-warm window a burst needs: `target` sessions, from `lead` before the burst starts
/// to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prewarm {
    pub target: u32,
    pub lead: Duration,
}

impl Burst {
    /// During the burst replenish creates at most `budget_per_sec`, so the excess claims must
    /// find warm sessions already pooled, plus one warmup time of the peak for the refill lag.
    /// They are built at what the budget leaves above the base rate, as late as that allows
    /// (the idle time is the cost), rounded up to the minute the schedule works in.
    pub fn prewarm(&self, budget_per_sec: f64, warmup_p95: Duration) -> Result<Prewarm, String> {
        let rates = [self.base_rate, self.peak_rate, budget_per_sec];
        if rates.iter().any(|r| !r.is_finite() || *r < 0.0) || self.peak_rate < self.base_rate {
            return Err("rates must be finite, not negative, and the peak at least the base".into());
        }
        let build_rate = budget_per_sec - self.base_rate;
        if build_rate <= 0.0 {
            return Err(format!(
                "a creation budget of {budget_per_sec}/s does not exceed the base rate of {}/s: nothing is left to build a stock with",
                self.base_rate
            ));
        }
        let excess = (self.peak_rate - budget_per_sec).max(0.0) * self.length.as_secs_f64();
        let stock = (excess + self.peak_rate * warmup_p95.as_secs_f64()).ceil();
        if stock > f64::from(u32::MAX) {
            return Err("the burst needs more sessions than a target can hold".into());
        }
        let lead_minutes = (stock / build_rate / 60.0).ceil().max(1.0);
        Ok(Prewarm {
            target: stock as u32,
            lead: Duration::from_secs(lead_minutes as u64 * 60),
        })
    }
}

impl Prewarm {
    /// The `POOL_TARGET_SCHEDULE` windows, every day, for a burst that starts at `start`
    /// (`HH:MM` daily or `*:MM` hourly, UTC) and lasts `length`: from `lead` before it to its
    /// end, in whole minutes, written as two windows where it crosses midnight or the hour.
    pub fn windows(&self, start: &str, length: Duration) -> Result<String, String> {
        let (period, start_minute) = match start.strip_prefix("*:") {
            Some(minute) => (HOUR_MINUTES, parse_minute(minute)?),
            None => (DAY_MINUTES, parse_time(start)?),
        };
        let minutes = |d: Duration| u32::try_from(d.as_secs().div_ceil(60)).unwrap_or(u32::MAX);
        let span = minutes(self.lead).saturating_add(minutes(length));
        if span > period {
            return Err(format!(
                "the lead and the burst ({span} min) do not fit in one period of {period} min"
            ));
        }
        let open = (start_minute % period + period - minutes(self.lead) % period) % period;
        let close = open + span;
        let at = |minute: u32| match period {
            HOUR_MINUTES => format!("*:{minute:02}"),
            _ => format!("{:02}:{:02}", minute / 60, minute % 60),
        };
        let window = |from, to| format!("* {}-{}={}", at(from), at(to), self.target);
        let mut windows = vec![window(open, close.min(period))];
        if close > period {
            windows.push(window(0, close - period));
        }
        Ok(windows.join("; "))
    }
}

/// The latest warmup latencies of this execution environment, for the adaptive target.
#[derive(Debug, Clone, Default)]
pub struct WarmupTimes {
    samples: VecDeque<u64>,
}

impl WarmupTimes {
    /// Enough to make the p95 mean something, few enough to follow a change within minutes.
    const CAPACITY: usize = 200;
    const MIN_SAMPLES: usize = 20;

    pub fn record(&mut self, latencies_ms: impl IntoIterator<Item = u64>) {
        for latency in latencies_ms {
            if self.samples.len() == Self::CAPACITY {
                self.samples.pop_front();
            }
            self.samples.push_back(latency);
        }
    }

    /// Nearest-rank p95, once there are enough samples.
    pub fn p95(&self) -> Option<Duration> {
        if self.samples.len() < Self::MIN_SAMPLES {
            return None;
        }
        let samples: Vec<u64> = self.samples.iter().copied().collect();
        nearest_rank(&samples, 95.0).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

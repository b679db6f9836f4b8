//! The weekly schedule of target windows (`POOL_TARGET_SCHEDULE`), UTC.

const DAY_MS: u64 = 86_400_000;
const MINUTE_MS: u64 = 60_000;
pub(super) const DAY_MINUTES: u32 = 24 * 60;
pub(super) const HOUR_MINUTES: u32 = 60;
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
pub(super) fn parse_minute(raw: &str) -> Result<u32, String> {
    match raw.parse::<u32>() {
        Ok(m) if raw.len() == 2 && m <= HOUR_MINUTES => Ok(m),
        _ => Err(format!("\"*:{raw}\" is not a minute of the hour (*:00 to *:60)")),
    }
}

pub(super) fn parse_time(raw: &str) -> Result<u32, String> {
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

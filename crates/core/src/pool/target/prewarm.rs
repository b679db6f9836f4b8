//! Pre-warm plans: the window a known burst needs, written as schedule windows.

use super::windows::{DAY_MINUTES, HOUR_MINUTES, parse_minute, parse_time};
use crate::num::{ceil_u32, ceil_u64};
use std::time::Duration;

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
            target: ceil_u32(stock),
            lead: Duration::from_secs(ceil_u64(lead_minutes).saturating_mul(60)),
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

//! Load profiles: request rates over time, and seeded Poisson arrivals drawn from them.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::sync::Arc;
use std::time::Duration;
use warmpool_core::clock::millis;
use warmpool_core::num::{floor_u64, round_u32};
use warmpool_core::pool::target::{Burst, Prewarm};

const HOUR_MS: f64 = 3_600_000.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Steady {
        rate: f64,
    },
    /// `base`, and `base * factor` for `length` at the start of every `every`, after `offset`.
    Bursts {
        base: f64,
        factor: f64,
        every: Duration,
        length: Duration,
        offset: Duration,
    },
    /// A day from midnight: quiet night, ramp to a busy morning, steady afternoon, ramp down.
    Day,
    /// Constant rates one after the other (the last one lasts to the end).
    Steps(Vec<(Duration, f64)>),
    /// Measured traffic: requests in each minute from the start (none after the last); with
    /// `exact`, the requests' own offsets from the start (milliseconds, in order), which then
    /// replace the Poisson draw.
    PerMinute {
        counts: Arc<[u32]>,
        exact: Option<Arc<[u64]>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub duration: Duration,
    pub shape: Shape,
    /// The account's session-creation quota during this profile (AgentCore default 25/s).
    pub creation_quota: u32,
}

/// Day shape, as (hour, requests per second) corners joined by straight lines.
const DAY: [(f64, f64); 8] = [
    (0.0, 0.02),
    (7.0, 0.02),
    (9.0, 15.0),
    (12.0, 15.0),
    (12.0, 8.0),
    (17.0, 8.0),
    (20.0, 0.02),
    (24.0, 0.02),
];

impl Profile {
    /// The benchmark's profiles: steady, bursts and a day at the default creation quota, and
    /// the bursts once more with the quota raised to where a 5x burst fits in it.
    pub fn standard() -> Vec<Profile> {
        let bursts = Shape::Bursts {
            base: 10.0,
            factor: 5.0,
            every: Duration::from_secs(30 * 60),
            length: Duration::from_secs(5 * 60),
            offset: Duration::from_secs(10 * 60),
        };
        vec![
            Profile {
                name: "steady".into(),
                duration: Duration::from_secs(2 * 3_600),
                shape: Shape::Steady { rate: 10.0 },
                creation_quota: 25,
            },
            Profile {
                name: "burst".into(),
                duration: Duration::from_secs(2 * 3_600),
                shape: bursts.clone(),
                creation_quota: 25,
            },
            Profile {
                name: "day".into(),
                duration: Duration::from_secs(24 * 3_600),
                shape: Shape::Day,
                creation_quota: 25,
            },
            Profile {
                name: "burst-quota100".into(),
                duration: Duration::from_secs(2 * 3_600),
                shape: bursts,
                creation_quota: 100,
            },
        ]
    }

    /// Requests per second `t_ms` after the profile starts.
    pub fn rate_at(&self, t_ms: u64) -> f64 {
        match &self.shape {
            Shape::Steady { rate } => *rate,
            Shape::Bursts {
                base,
                factor,
                every,
                length,
                offset,
            } => {
                let (every, length, offset) = (millis(*every), millis(*length), millis(*offset));
                let in_burst = t_ms >= offset && every > 0 && (t_ms - offset) % every < length;
                if in_burst { base * factor } else { *base }
            }
            Shape::Day => {
                let hour = (t_ms as f64 % (24.0 * HOUR_MS)) / HOUR_MS;
                DAY.windows(2)
                    .find(|w| w[0].0 <= hour && hour < w[1].0)
                    .map_or(DAY[0].1, |w| {
                        let ((h0, r0), (h1, r1)) = (w[0], w[1]);
                        r0 + (r1 - r0) * (hour - h0) / (h1 - h0)
                    })
            }
            Shape::PerMinute { counts, .. } => {
                let minute = usize::try_from(t_ms / 60_000).unwrap_or(usize::MAX);
                counts.get(minute).map_or(0.0, |c| f64::from(*c) / 60.0)
            }
            Shape::Steps(steps) => {
                let mut start = 0;
                for (length, rate) in steps {
                    start += millis(*length);
                    if t_ms < start {
                        return *rate;
                    }
                }
                steps.last().map_or(0.0, |(_, rate)| *rate)
            }
        }
    }

    pub fn peak(&self) -> f64 {
        match &self.shape {
            Shape::Steady { rate } => *rate,
            Shape::Bursts { base, factor, .. } => base * factor.max(1.0),
            Shape::Day => DAY.iter().map(|(_, r)| *r).fold(0.0, f64::max),
            Shape::Steps(steps) => steps.iter().map(|(_, r)| *r).fold(0.0, f64::max),
            Shape::PerMinute { counts, .. } => f64::from(counts.iter().copied().max().unwrap_or(0)) / 60.0,
        }
    }

    /// The pre-warm windows (`POOL_TARGET_SCHEDULE`) an operator who knows this profile's
    /// bursts would set, from [`Burst::prewarm`], with the window targets scaled by `scale`:
    /// `None` for a profile without bursts or a scale of 0. The bursts must repeat within the
    /// hour on whole minutes of the simulation clock (which starts on 1970-01-01, 00:00 UTC).
    pub fn prewarm_schedule(
        &self,
        lead_in: Duration,
        budget_per_sec: f64,
        warmup_p95: Duration,
        scale: f64,
    ) -> Result<Option<String>, String> {
        let Shape::Bursts {
            base,
            factor,
            every,
            length,
            offset,
        } = &self.shape
        else {
            return Ok(None);
        };
        let burst = Burst {
            base_rate: *base,
            peak_rate: base * factor,
            length: *length,
        };
        let plan = burst.prewarm(budget_per_sec, warmup_p95)?;
        let target = round_u32(f64::from(plan.target) * scale);
        if target == 0 {
            return Ok(None);
        }
        let minutes = |d: Duration| d.as_secs().is_multiple_of(60).then_some(d.as_secs() / 60);
        let (Some(first), Some(every)) = (minutes(lead_in + *offset), minutes(*every)) else {
            return Err("bursts must start on whole minutes".into());
        };
        if every == 0 || !60_u64.is_multiple_of(every) {
            return Err(format!("bursts every {every} min do not repeat within the hour"));
        }
        let plan = Prewarm { target, ..plan };
        let windows = (0..60 / every)
            .map(|k| plan.windows(&format!("*:{:02}", (first + k * every) % 60), *length))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(windows.join("; ")))
    }

    /// Arrival times on the simulation clock: a lead-in at the profile's opening rate, then the
    /// profile. Poisson arrivals by thinning, so the same seed gives the same arrivals to every
    /// policy.
    pub fn arrivals(&self, lead_in: Duration, seed: u64) -> Vec<u64> {
        let Shape::PerMinute { exact: Some(exact), .. } = &self.shape else {
            return self.arrivals_scaled(lead_in, seed, 1.0);
        };
        // The lead-in drawn at the opening rate, then the trace's own requests.
        let lead_ms = millis(lead_in);
        let mut arrivals: Vec<u64> = self
            .arrivals_scaled(lead_in, seed, 1.0)
            .into_iter()
            .take_while(|at| *at < lead_ms)
            .collect();
        let end = millis(self.duration);
        arrivals.extend(exact.iter().filter(|at| **at < end).map(|at| at + lead_ms));
        arrivals
    }

    /// As [`Profile::arrivals`], at `scale` times the profile's rate.
    pub fn arrivals_scaled(&self, lead_in: Duration, seed: u64, scale: f64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let (lead_in, end) = (millis(lead_in), millis(lead_in) + millis(self.duration));
        let peak = self.peak() * scale;
        let mut arrivals = Vec::new();
        if peak <= 0.0 {
            return arrivals;
        }
        let mut t = 0.0_f64;
        // Bounded: the expected count is peak * duration; the cap is far above it.
        let cap = usize::try_from(floor_u64(peak * end as f64 / 1_000.0 * 4.0))
            .unwrap_or(usize::MAX)
            .saturating_add(1_000);
        while arrivals.len() < cap {
            let u: f64 = 1.0 - rng.random::<f64>();
            t += -u.ln() / peak * 1_000.0;
            if t >= end as f64 {
                break;
            }
            let at = floor_u64(t);
            let rate = self.rate_at(at.saturating_sub(lead_in)) * scale;
            if rng.random::<f64>() * peak < rate {
                arrivals.push(at);
            }
        }
        arrivals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(m: f64) -> u64 {
        floor_u64(m * 60_000.0)
    }

    #[test]
    fn bursts_are_five_times_the_base_for_five_minutes_every_half_hour() {
        let burst = &Profile::standard()[1];
        assert_eq!(burst.rate_at(minutes(9.9)), 10.0);
        assert_eq!(burst.rate_at(minutes(10.0)), 50.0);
        assert_eq!(burst.rate_at(minutes(14.9)), 50.0);
        assert_eq!(burst.rate_at(minutes(15.0)), 10.0);
        assert_eq!(burst.rate_at(minutes(40.5)), 50.0);
    }

    #[test]
    fn the_day_is_quiet_at_night_and_busy_in_the_morning() {
        let day = &Profile::standard()[2];
        assert_eq!(day.rate_at(minutes(3.0 * 60.0)), 0.02);
        assert_eq!(day.rate_at(minutes(10.0 * 60.0)), 15.0);
        assert_eq!(day.rate_at(minutes(14.0 * 60.0)), 8.0);
        let ramp = day.rate_at(minutes(8.0 * 60.0));
        assert!(ramp > 7.0 && ramp < 8.0, "{ramp}");
    }

    #[test]
    fn the_prewarm_schedule_opens_its_lead_before_each_burst_and_closes_at_its_end() {
        let burst = &Profile::standard()[1];
        let (lead_in, five_s) = (Duration::from_secs(15 * 60), Duration::from_secs(5));
        // Bursts at :25 and :55 of the clock; 9,250 sessions with a 16-minute lead.
        let schedule = burst.prewarm_schedule(lead_in, 20.0, five_s, 1.0).unwrap();
        assert_eq!(schedule.as_deref(), Some("* *:09-*:30=9250; * *:39-*:60=9250"));
        let half = burst.prewarm_schedule(lead_in, 20.0, five_s, 0.5).unwrap();
        assert_eq!(half.as_deref(), Some("* *:09-*:30=4625; * *:39-*:60=4625"));
        assert_eq!(burst.prewarm_schedule(lead_in, 20.0, five_s, 0.0), Ok(None));
        // Bursts at :00 and :30: the first window crosses the hour.
        let wrapped = burst
            .prewarm_schedule(Duration::from_secs(20 * 60), 80.0, five_s, 1.0)
            .unwrap();
        assert_eq!(
            wrapped.as_deref(),
            Some("* *:29-*:35=250; * *:59-*:60=250; * *:00-*:05=250")
        );
        let steady = &Profile::standard()[0];
        assert_eq!(steady.prewarm_schedule(lead_in, 20.0, five_s, 1.0), Ok(None));
    }

    #[test]
    fn arrivals_follow_the_rate_and_repeat_for_a_seed() {
        let steady = Profile {
            name: "t".into(),
            duration: Duration::from_secs(600),
            shape: Shape::Steady { rate: 10.0 },
            creation_quota: 25,
        };
        let a = steady.arrivals(Duration::ZERO, 1);
        assert_eq!(a, steady.arrivals(Duration::ZERO, 1));
        assert_ne!(a, steady.arrivals(Duration::ZERO, 2));
        assert!((5_700..=6_300).contains(&a.len()), "{}", a.len());
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }
}

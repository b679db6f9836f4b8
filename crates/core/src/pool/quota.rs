//! The session-creation quota (invariant 4 of docs/architecture.md): how every warmup of every concurrent
//! replenish run stays within one sessions-per-second budget, with no shared store.
//!
//! Each replenish execution environment paces its own creations at `budget / max_concurrent_runs`.
//! Lambda runs at most `max_concurrent_runs` environments of replenish at once (its reserved
//! concurrency, which the template sets from the same value) and an environment handles one
//! event at a time, so the sum of all paced creations is what a token bucket of rate `budget`
//! and burst `max_concurrent_runs` admits: over any window of `w` seconds at most
//! `budget * w + max_concurrent_runs` creations. When `max_concurrent_runs` divides `budget`,
//! that is also at most `budget` in any one second. The service's own quota is a token bucket
//! whose burst equals its rate, so with `max_concurrent_runs <= budget <= quota` the paced runs
//! are never throttled; if they are (another user of the account), warmups back off with
//! jitter and the throttles are counted.
//!
//! The pacer lives as long as the execution environment (it is part of the function value), so
//! it spaces the creations of consecutive events too, not only those inside one event.

use crate::clock::{Clock, millis};
use crate::config::Env;
use crate::error::ConfigError;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

pub const BUDGET_PER_SEC: &str = "CREATION_BUDGET_PER_SEC";
pub const MAX_CONCURRENT_RUNS: &str = "MAX_CONCURRENT_RUNS";
/// `CREATION_BUDGET_PER_SEC` when unset: the 25/s account default less room for fresh-session
/// fallbacks and other users.
pub const DEFAULT_BUDGET_PER_SEC: u32 = 20;

/// The account's creation quota share given to this pool, and how many runs may spend it at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreationBudget {
    /// New sessions per second for all replenish runs together.
    pub per_second: NonZeroU32,
    /// replenish's reserved concurrency: the most execution environments that run at once.
    pub max_concurrent_runs: NonZeroU32,
}

impl CreationBudget {
    /// `CREATION_BUDGET_PER_SEC` (20: the 25/s account default less room for fresh-session
    /// fallbacks and other users) and `MAX_CONCURRENT_RUNS` (10).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let non_zero = |key: &'static str, value: u32| {
            NonZeroU32::new(value).ok_or_else(|| ConfigError::Invalid {
                key,
                value: "0".into(),
                reason: "must be at least 1".into(),
            })
        };
        Ok(Self {
            per_second: non_zero(BUDGET_PER_SEC, env.parse_or(BUDGET_PER_SEC, DEFAULT_BUDGET_PER_SEC)?)?,
            max_concurrent_runs: non_zero(MAX_CONCURRENT_RUNS, env.parse_or(MAX_CONCURRENT_RUNS, 10)?)?,
        })
    }

    /// Time between two creations of one run. Rounded up, so the pace never exceeds the share.
    pub fn interval(&self) -> Duration {
        let runs = u64::from(self.max_concurrent_runs.get());
        let per_second = u64::from(self.per_second.get());
        Duration::from_millis((1_000 * runs).div_ceil(per_second))
    }
}

impl CreationBudget {
    /// Time between two top-up events: their runs start staggered at the whole budget's rate,
    /// so idle environments, each with a slot free, do not all create at the same instant.
    pub fn dispatch_spacing(&self) -> Duration {
        Duration::from_millis(1_000u64.div_ceil(u64::from(self.per_second.get())))
    }
}

/// Splits `total` new sessions into `{"count": n}` events for other runs, so that a large
/// top-up is warmed by up to `max_concurrent_runs` environments at once, each at its own share
/// of the budget: together at the whole budget, where one environment alone would take
/// `max_concurrent_runs` times as long. Counts differ by at most one; none exceeds `max_count`.
pub fn spread(total: u32, budget: &CreationBudget, max_count: u32) -> Vec<u32> {
    if total == 0 || max_count == 0 {
        return Vec::new();
    }
    let runs = total
        .div_ceil(max_count)
        .max(budget.max_concurrent_runs.get().min(total));
    let (each, extra) = (total / runs, total % runs);
    (0..runs).map(|i| each + u32::from(i < extra)).collect()
}

/// The pure pacing rule: creation slots `interval` apart, never earlier than asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacer {
    interval_ms: u64,
    next_ms: u64,
}

impl Pacer {
    pub fn new(budget: &CreationBudget) -> Self {
        Self {
            interval_ms: millis(budget.interval()),
            next_ms: 0,
        }
    }

    /// Reserves the earliest slot at or after `now_ms`, unless it would fall after `latest_ms`
    /// (then nothing is reserved, so a run that gives up does not spend the next run's slot).
    pub fn reserve(&mut self, now_ms: u64, latest_ms: u64) -> Option<u64> {
        let slot = self.next_ms.max(now_ms);
        if slot > latest_ms {
            return None;
        }
        self.next_ms = slot.saturating_add(self.interval_ms);
        Some(slot)
    }
}

/// The pacer of one execution environment, shared by the warmups it runs concurrently.
#[derive(Debug)]
pub struct CreationPacer(Mutex<Pacer>);

impl CreationPacer {
    pub fn new(budget: &CreationBudget) -> Self {
        Self(Mutex::new(Pacer::new(budget)))
    }

    /// No pacing (one slot per millisecond): for callers that are not subject to the budget.
    pub fn unlimited() -> Self {
        Self(Mutex::new(Pacer {
            interval_ms: 0,
            next_ms: 0,
        }))
    }

    /// Waits for this creation's slot. `false`: no slot before `latest_ms`, do not create.
    pub async fn wait_turn<C: Clock>(&self, clock: &C, latest_ms: u64) -> bool {
        let now = clock.now_ms();
        // A poisoned lock only means another warmup panicked between two integer writes.
        let slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .reserve(now, latest_ms);
        match slot {
            None => false,
            Some(slot) => {
                if slot > now {
                    tokio::time::sleep(Duration::from_millis(slot - now)).await;
                }
                true
            }
        }
    }
}

/// The new-session quota of an account and region that all pools share, when the operator
/// does not say (AgentCore's default since August 2026: 25 per second, every runtime and
/// endpoint of the account together).
pub const ACCOUNT_QUOTA_PER_SEC: u32 = 25;

/// One deployed pool's share of the account's creation quota.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolShare {
    pub pool: String,
    pub per_second: u32,
}

/// The account's shares once `pool` takes `per_second` (a redeploy replaces the pool's own
/// share): their sum, or why it does not fit in `quota`. Each pool paces itself at its share
/// with no shared store (docs/decisions/0022), so shares that add up to more than the quota
/// throttle every pool of the account, and every other user of it, whenever they top up at once.
pub fn check_account_shares(others: &[PoolShare], pool: &str, per_second: u32, quota: u32) -> Result<u32, String> {
    let rest: u32 = others
        .iter()
        .filter(|share| share.pool != pool)
        .fold(0, |sum, share| sum.saturating_add(share.per_second));
    let total = rest.saturating_add(per_second);
    if total > quota {
        let named: Vec<String> = others
            .iter()
            .filter(|share| share.pool != pool)
            .map(|share| format!("{} {}/s", share.pool, share.per_second))
            .collect();
        return Err(format!(
            "pool {pool} at {per_second}/s with the account's other pools ({}) needs {total}/s, above the account's quota of {quota}/s: lower CreationBudgetPerSec here or elsewhere, or raise the quota first",
            if named.is_empty() {
                "none".to_string()
            } else {
                named.join(", ")
            }
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_second: u32, runs: u32) -> CreationBudget {
        CreationBudget {
            per_second: NonZeroU32::new(per_second).unwrap(),
            max_concurrent_runs: NonZeroU32::new(runs).unwrap(),
        }
    }

    /// Most slots in any half-open window `[t, t + window)`.
    fn max_in_window(slots: &[u64], window: u64) -> usize {
        let mut best = 0;
        let mut start = 0;
        for end in 0..slots.len() {
            while slots[end] - slots[start] >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    #[test]
    fn each_run_gets_its_share_of_the_budget_rounded_down() {
        assert_eq!(budget(20, 4).interval(), Duration::from_millis(200));
        assert_eq!(budget(25, 4).interval(), Duration::from_millis(160));
        // 25/s over 3 runs is 8.33/s each.
        assert_eq!(budget(25, 3).interval(), Duration::from_millis(120));
        assert_eq!(budget(7, 3).interval(), Duration::from_millis(429));
        assert_eq!(budget(20, 40).interval(), Duration::from_secs(2));
        assert_eq!(budget(20, 40).dispatch_spacing(), Duration::from_millis(50));
    }

    #[test]
    fn slots_are_spaced_by_the_interval_and_never_before_now() {
        let mut pacer = Pacer::new(&budget(10, 1));
        assert_eq!(pacer.reserve(1_000, u64::MAX), Some(1_000));
        assert_eq!(pacer.reserve(1_000, u64::MAX), Some(1_100));
        assert_eq!(pacer.reserve(1_050, u64::MAX), Some(1_200));
        // Idle time is not banked: after a pause the next slot is now, not a burst of old ones.
        assert_eq!(pacer.reserve(5_000, u64::MAX), Some(5_000));
        assert_eq!(pacer.reserve(5_000, u64::MAX), Some(5_100));
    }

    #[test]
    fn a_slot_past_the_deadline_is_refused_and_not_reserved() {
        let mut pacer = Pacer::new(&budget(1, 1));
        assert_eq!(pacer.reserve(0, 10), Some(0));
        assert_eq!(pacer.reserve(0, 999), None);
        assert_eq!(pacer.reserve(0, 1_000), Some(1_000));
    }

    #[test]
    fn concurrent_runs_each_at_full_pace_stay_within_the_budget_in_every_second() {
        // Four environments, each asking for a creation every millisecond for ten seconds.
        let b = budget(20, 4);
        let mut all = Vec::new();
        for offset in [0, 7, 130, 199] {
            let mut pacer = Pacer::new(&b);
            for now in (offset..10_000).step_by(1) {
                if let Some(slot) = pacer.reserve(now, 10_000) {
                    all.push(slot);
                }
            }
        }
        all.sort_unstable();
        assert_eq!(max_in_window(&all, 1_000), 20);
        assert!(all.len() >= 4 * 49, "runs were starved: {}", all.len());
    }

    #[test]
    fn when_runs_do_not_divide_the_budget_the_excess_is_at_most_one_per_run() {
        let b = budget(25, 3);
        let mut all = Vec::new();
        for offset in [0, 1, 2] {
            let mut pacer = Pacer::new(&b);
            for now in offset..20_000 {
                if let Some(slot) = pacer.reserve(now, 20_000) {
                    all.push(slot);
                }
            }
        }
        all.sort_unstable();
        for window in [1_000, 5_000, 20_000] {
            let bound = 25 * window / 1_000 + 3;
            assert!(max_in_window(&all, window) as u64 <= bound, "window {window}");
        }
    }

    #[test]
    fn a_top_up_is_spread_over_the_runs_without_exceeding_the_largest_event() {
        assert_eq!(spread(10, &budget(20, 4), 100), vec![3, 3, 2, 2]);
        assert_eq!(spread(3, &budget(20, 4), 100), vec![1, 1, 1]);
        assert_eq!(spread(0, &budget(20, 4), 100), Vec::<u32>::new());
        let big = spread(1_000, &budget(20, 4), 100);
        assert_eq!((big.len(), big.iter().sum::<u32>()), (10, 1_000));
        assert!(big.iter().all(|n| *n <= 100));
    }

    #[test]
    fn a_zero_budget_is_refused_at_init() {
        let env = Env::from_pairs([(BUDGET_PER_SEC, "0")]);
        assert!(matches!(
            CreationBudget::from_env(&env),
            Err(ConfigError::Invalid {
                key: BUDGET_PER_SEC,
                ..
            })
        ));
    }

    fn share(pool: &str, per_second: u32) -> PoolShare {
        PoolShare {
            pool: pool.into(),
            per_second,
        }
    }

    #[test]
    fn shares_that_fit_the_account_quota_are_accepted_and_a_redeploy_replaces_its_own() {
        let others = [share("chat", 10), share("batch", 5)];
        assert_eq!(check_account_shares(&others, "search", 10, 25), Ok(25));
        assert_eq!(
            check_account_shares(&others, "chat", 20, 25),
            Ok(25),
            "chat's old 10/s is replaced"
        );
    }

    #[test]
    fn a_share_that_would_oversubscribe_the_account_is_refused_naming_the_others() {
        let others = [share("chat", 20)];
        let error = check_account_shares(&others, "search", 20, ACCOUNT_QUOTA_PER_SEC).unwrap_err();
        assert!(error.contains("needs 40/s") && error.contains("chat 20/s"), "{error}");
    }
}

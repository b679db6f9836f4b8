//! Time as an injected capability, so expiry and staleness rules stay pure and testable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole milliseconds of `d`, saturating at `u64::MAX` (a duration from configuration may be
/// absurdly long).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, proleptic Gregorian: days to
/// civil date), for readers of reports and audit trails.
pub fn format_utc(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// `future`'s output, or `None` once `limit` has passed. The timer is armed only if the future
/// does not complete on its first poll, so in-memory adapters and the simulation (which polls
/// without a runtime) never need one.
pub async fn within<F: std::future::Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    if let std::task::Poll::Ready(output) = futures::poll!(future.as_mut()) {
        return Some(output);
    }
    tokio::time::timeout(limit, future).await.ok()
}

/// Exponential backoff with "full jitter": each pause is uniform in [0, [`Self::ceiling`]], so
/// callers that were throttled together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// min(cap, base * 2^attempt): the pure half, for callers with their own RNG.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempt.min(20)).min(self.cap)
    }

    pub fn pause(&self, attempt: u32) -> Duration {
        let ceiling_ms = millis(self.ceiling(attempt));
        Duration::from_millis(rand::random_range(0..=ceiling_ms))
    }
}

/// Milliseconds since the Unix epoch: the unit of `createdAt` and `lastPingAt`.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn at(now_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(now_ms)))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(millis(by), Ordering::SeqCst);
    }

    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_future_ready_at_once_needs_no_timer_and_no_runtime() {
        assert_eq!(within(Duration::ZERO, async { 7 }).now_or_never(), Some(Some(7)));
    }

    #[tokio::test]
    async fn a_future_still_pending_at_the_limit_gives_none() {
        let never = futures::future::pending::<()>();
        assert_eq!(within(Duration::from_millis(10), never).await, None);
    }
}

//! `warmpool pool status`: depth of the pool queue, the target in force, and a non-destructive
//! look at the ages of the sessions in it and at what maintenance is due, by the same rules and
//! settings (environment variables) replenish uses.
//!
//! The peek receives with `VisibilityTimeout=0`, so every message it sees is visible again at
//! once and claims are not held up. Two consequences are accepted on purpose: a peek cannot
//! page through a FIFO queue (repeated receives tend to return the same heads of groups), so
//! the sample can be smaller than the depth; and each peek raises the messages'
//! `ApproximateReceiveCount` (harmless here: the pool queue has no redrive policy).

use crate::error::CliError;
use crate::percentile::Spread;
use crate::table::{Table, duration_ms};
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::clock::millis;
use warmpool_core::pool::Freshness;
use warmpool_core::pool::maintenance::{Action, MaintenanceRules};
use warmpool_core::pool::target::Target;
use warmpool_core::ports::{PoolDepth, PoolQueue};
use warmpool_core::session::PooledSession;

/// Receives a peek makes at most, whatever the sample size.
const MAX_ROUNDS: u32 = 20;
/// Consecutive receives that bring nothing new before the peek stops early.
const MAX_IDLE_ROUNDS: u32 = 2;

/// Up to `sample` distinct message bodies, in a bounded number of zero-visibility receives.
pub async fn peek<Q: PoolQueue>(queue: &Q, sample: u32) -> Result<Vec<String>, CliError> {
    let mut seen = HashSet::new();
    let mut bodies = Vec::new();
    let mut idle_rounds = 0;
    for _ in 0..MAX_ROUNDS {
        let remaining = sample.saturating_sub(warmpool_core::num::count_u32(bodies.len()));
        if remaining == 0 || idle_rounds >= MAX_IDLE_ROUNDS {
            break;
        }
        let batch = remaining.min(10) as u8;
        let received = queue.receive(batch, Duration::ZERO, Duration::ZERO).await?;
        let before = bodies.len();
        for message in received {
            if seen.insert(message.message_id) && bodies.len() < sample as usize {
                bodies.push(message.body);
            }
        }
        idle_rounds = if bodies.len() == before { idle_rounds + 1 } else { 0 };
    }
    Ok(bodies)
}

/// Reads the depth every `poll` until at least `at_least` sessions are visible or `wait` has
/// passed, handing each reading to `observe`; returns the last reading. Not reaching the depth
/// is no error: the report that follows says where the pool stands.
pub async fn wait_for_depth<Q: PoolQueue>(
    queue: &Q,
    at_least: u32,
    wait: Duration,
    poll: Duration,
    mut observe: impl FnMut(PoolDepth),
) -> Result<PoolDepth, CliError> {
    let until = Instant::now() + wait;
    loop {
        let depth = queue.depth().await?;
        observe(depth);
        if depth.visible >= u64::from(at_least) || Instant::now() + poll > until {
            return Ok(depth);
        }
        tokio::time::sleep(poll).await;
    }
}

/// Sessions that are stale now, or will be within the horizon, split by which limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitCounts {
    pub idle_timeout: usize,
    pub max_lifetime: usize,
}

impl LimitCounts {
    fn add(&mut self, freshness: Freshness) {
        match freshness {
            Freshness::Fresh => {}
            Freshness::IdleExpired => self.idle_timeout += 1,
            Freshness::LifetimeExpired => self.max_lifetime += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.idle_timeout + self.max_lifetime
    }
}

/// What the peeked sample says about the pool. Ages are in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeekStats {
    pub sampled: usize,
    pub malformed: usize,
    /// now - createdAt
    pub age_ms: Option<Spread>,
    /// now - lastPingAt
    pub since_ping_ms: Option<Spread>,
    /// Already past a limit (less the safety margin): a claim would discard these.
    pub stale: LimitCounts,
    /// Fresh now, but past a limit within `horizon_ms`: the heartbeat or retirement is due.
    pub near_limit: LimitCounts,
    pub horizon_ms: u64,
    /// What the next sweep would do with the sampled sessions (the pool taken as on target).
    pub heartbeat_due: usize,
    pub retire_due: usize,
}

/// Pure: classifies peeked bodies at `now_ms` under the pool's lifecycle and maintenance rules.
pub fn peek_stats(bodies: &[String], now_ms: u64, rules: &MaintenanceRules, horizon: Duration) -> PeekStats {
    let lifecycle = &rules.lifecycle;
    let horizon_ms = millis(horizon);
    let mut ages = Vec::new();
    let mut since_ping = Vec::new();
    let mut stale = LimitCounts::default();
    let mut near_limit = LimitCounts::default();
    let mut malformed = 0;
    let (mut heartbeat_due, mut retire_due) = (0, 0);
    for body in bodies {
        let Ok(session) = PooledSession::parse(body) else {
            malformed += 1;
            continue;
        };
        // A clock ahead of ours gives negative ages: count them as zero rather than wrapping.
        ages.push(now_ms.saturating_sub(session.created_at));
        since_ping.push(now_ms.saturating_sub(session.last_ping_at));
        match lifecycle.freshness(&session, now_ms) {
            Freshness::Fresh => near_limit.add(lifecycle.freshness(&session, now_ms.saturating_add(horizon_ms))),
            stale_now => stale.add(stale_now),
        }
        match rules.decide(&session, now_ms, false) {
            Action::Heartbeat => heartbeat_due += 1,
            Action::Retire => retire_due += 1,
            _ => {}
        }
    }
    PeekStats {
        sampled: bodies.len(),
        malformed,
        age_ms: Spread::of(&ages),
        since_ping_ms: Spread::of(&since_ping),
        stale,
        near_limit,
        horizon_ms,
        heartbeat_due,
        retire_due,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub queue_url: String,
    pub visible: u64,
    pub in_flight: u64,
    pub sample_limit: u32,
    /// As replenish would size it now; for the adaptive mode without this environment's
    /// warmup times, so with `ADAPTIVE_DEFAULT_WARMUP_MS`.
    pub target: Option<Target>,
    pub peek: PeekStats,
}

impl StatusReport {
    pub fn new(queue_url: impl Into<String>, depth: PoolDepth, sample_limit: u32, peek: PeekStats) -> Self {
        Self {
            queue_url: queue_url.into(),
            visible: depth.visible,
            in_flight: depth.in_flight,
            sample_limit,
            target: None,
            peek,
        }
    }

    pub fn with_target(self, target: Target) -> Self {
        Self {
            target: Some(target),
            ..self
        }
    }

    pub fn render(&self) -> String {
        let peek = &self.peek;
        let mut summary = Table::new().values_left();
        summary
            .row(["pool queue", &self.queue_url])
            .row(["visible", &self.visible.to_string()])
            .row(["in flight", &self.in_flight.to_string()])
            .row(["target", &self.target.map_or("-".to_string(), render_target)])
            .row(["sampled", &format!("{} (limit {})", peek.sampled, self.sample_limit)])
            .row(["malformed", &peek.malformed.to_string()]);
        let mut ages = Table::with_header(["session ages", "min", "p50", "max"]);
        for (label, spread) in [("since created", peek.age_ms), ("since last ping", peek.since_ping_ms)] {
            match spread {
                Some(s) => ages.row([
                    label.to_string(),
                    duration_ms(s.min),
                    duration_ms(s.p50),
                    duration_ms(s.max),
                ]),
                None => ages.row([label, "-", "-", "-"]),
            };
        }
        let mut risk = Table::with_header(["stale risk", "idle timeout", "max lifetime"]);
        risk.row([
            "stale now".to_string(),
            peek.stale.idle_timeout.to_string(),
            peek.stale.max_lifetime.to_string(),
        ])
        .row([
            format!("stale within {}", duration_ms(peek.horizon_ms)),
            peek.near_limit.idle_timeout.to_string(),
            peek.near_limit.max_lifetime.to_string(),
        ]);
        let mut due = Table::with_header(["next sweep (sample)", "sessions"]);
        due.row(["heartbeat due".to_string(), peek.heartbeat_due.to_string()])
            .row(["retirement due".to_string(), peek.retire_due.to_string()]);
        format!(
            "{}\n{}\n{}\n{}",
            summary.render(),
            ages.render(),
            risk.render(),
            due.render()
        )
    }
}

fn render_target(target: Target) -> String {
    let mode = serde_json::to_value(target.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match target.claim_rate {
        Some(rate) => format!("{} ({mode}, claims ~{rate:.2}/s)", target.value),
        None => format!("{} ({mode})", target.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::pool::Lifecycle;
    use warmpool_core::pool::target::Mode;
    use warmpool_core::ports::Received;
    use warmpool_core::session::SessionId;

    const NOW: u64 = 1_700_000_000_000;
    const S: u64 = 1_000;

    fn lifecycle() -> MaintenanceRules {
        MaintenanceRules {
            lifecycle: Lifecycle {
                idle_timeout: Duration::from_secs(900),
                max_lifetime: Duration::from_secs(28_800),
                safety_margin: Duration::from_secs(60),
            },
            heartbeat_after: Duration::from_secs(450),
            interval: Duration::from_secs(60),
            retire_spread: Duration::ZERO,
        }
    }

    fn body(created_ago_s: u64, pinged_ago_s: u64) -> String {
        PooledSession::new(SessionId::generate(), NOW - created_ago_s * S, NOW - pinged_ago_s * S).to_body()
    }

    #[test]
    fn ages_are_measured_from_creation_and_from_the_last_ping() {
        let bodies = [body(100, 10), body(300, 30), body(200, 20)];
        let stats = peek_stats(&bodies, NOW, &lifecycle(), Duration::from_secs(120));
        assert_eq!(
            stats.age_ms,
            Some(Spread {
                min: 100 * S,
                p50: 200 * S,
                max: 300 * S
            })
        );
        assert_eq!(
            stats.since_ping_ms,
            Some(Spread {
                min: 10 * S,
                p50: 20 * S,
                max: 30 * S
            })
        );
        assert_eq!((stats.sampled, stats.malformed), (3, 0));
    }

    #[test]
    fn malformed_bodies_are_counted_and_left_out_of_the_ages() {
        let bodies = ["{not json".to_string(), body(50, 5)];
        let stats = peek_stats(&bodies, NOW, &lifecycle(), Duration::from_secs(120));
        assert_eq!((stats.sampled, stats.malformed), (2, 1));
        assert_eq!(stats.age_ms.map(|s| s.max), Some(50 * S));
    }

    #[test]
    fn sessions_past_a_limit_count_as_stale_not_as_near() {
        // Idle deadline less margin is 840 s after the ping; lifetime 28 740 s after creation.
        let bodies = [body(1_000, 850), body(28_750, 1)];
        let stats = peek_stats(&bodies, NOW, &lifecycle(), Duration::from_secs(120));
        assert_eq!(
            stats.stale,
            LimitCounts {
                idle_timeout: 1,
                max_lifetime: 1
            }
        );
        assert_eq!(stats.near_limit, LimitCounts::default());
    }

    #[test]
    fn sessions_that_cross_a_limit_within_the_horizon_are_near_it() {
        let bodies = [body(1_000, 800), body(28_700, 1), body(100, 100)];
        let stats = peek_stats(&bodies, NOW, &lifecycle(), Duration::from_secs(120));
        assert_eq!(stats.stale, LimitCounts::default());
        assert_eq!(
            stats.near_limit,
            LimitCounts {
                idle_timeout: 1,
                max_lifetime: 1
            }
        );
    }

    #[test]
    fn the_sample_shows_what_the_next_sweep_would_ping_and_retire() {
        // Pinged 500 s ago: due (450 s). Created 28 300 s ago and due: retires before its
        // next look. Fresh and young: nothing.
        let bodies = [body(600, 500), body(28_300, 500), body(100, 10)];
        let stats = peek_stats(&bodies, NOW, &lifecycle(), Duration::from_secs(120));
        assert_eq!((stats.heartbeat_due, stats.retire_due), (1, 1));
    }

    #[test]
    fn the_report_shows_the_target_in_force_and_how_it_was_sized() {
        let stats = peek_stats(&[], NOW, &lifecycle(), Duration::from_secs(120));
        let report = StatusReport::new("http://q", PoolDepth::default(), 50, stats).with_target(Target {
            value: 42,
            mode: Mode::Adaptive,
            claim_rate: Some(4.5),
        });
        let text = report.render();
        assert!(text.contains("42 (adaptive, claims ~4.50/s)"), "{text}");
        assert!(text.contains("heartbeat due"), "{text}");
    }

    #[test]
    fn a_session_stamped_in_the_future_has_age_zero() {
        let ahead = PooledSession::new(SessionId::generate(), NOW + 5 * S, NOW + 5 * S).to_body();
        let stats = peek_stats(&[ahead], NOW, &lifecycle(), Duration::from_secs(120));
        assert_eq!(stats.age_ms, Some(Spread { min: 0, p50: 0, max: 0 }));
    }

    #[test]
    fn an_empty_sample_has_no_ages_and_renders_dashes() {
        let stats = peek_stats(&[], NOW, &lifecycle(), Duration::from_secs(120));
        assert_eq!(stats.age_ms, None);
        let report = StatusReport::new("http://q", PoolDepth::default(), 50, stats);
        let text = report.render();
        assert!(text.contains("since created      -    -    -"), "{text}");
    }

    #[test]
    fn the_report_shows_depth_sample_ages_and_stale_risk() {
        let stats = peek_stats(
            &[body(100, 10), body(1_000, 800)],
            NOW,
            &lifecycle(),
            Duration::from_secs(120),
        );
        let report = StatusReport::new(
            "http://q",
            PoolDepth {
                visible: 2,
                in_flight: 1,
            },
            50,
            stats,
        );
        let text = report.render();
        for expected in [
            "visible     2\n",
            "in flight   1\n",
            "2 (limit 50)",
            "100 s",
            "17 min",
            "stale within 2 min",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    /// A queue that, like SQS FIFO under a zero-visibility peek, keeps answering the same heads.
    struct RepeatingQueue {
        messages: Vec<Received>,
        receives: std::sync::atomic::AtomicU32,
    }

    impl PoolQueue for RepeatingQueue {
        async fn receive(
            &self,
            max: u8,
            _: Duration,
            _: Duration,
        ) -> Result<Vec<Received>, warmpool_core::error::QueueError> {
            self.receives.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.messages.iter().take(max as usize).cloned().collect())
        }
        async fn delete(&self, _: &str) -> Result<(), warmpool_core::error::QueueError> {
            panic!("a peek must never delete")
        }
        async fn enqueue(&self, _: &PooledSession) -> Result<(), warmpool_core::error::QueueError> {
            panic!("a peek must never enqueue")
        }
        async fn depth(&self) -> Result<PoolDepth, warmpool_core::error::QueueError> {
            Ok(PoolDepth::default())
        }
    }

    fn repeating(n: usize) -> RepeatingQueue {
        let messages = (0..n)
            .map(|i| Received {
                message_id: format!("m{i}"),
                receipt: format!("r{i}"),
                body: body(10, 1),
            })
            .collect();
        RepeatingQueue {
            messages,
            receives: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_peek_deduplicates_by_message_id_and_stops_when_nothing_new_arrives() {
        let queue = repeating(3);
        let bodies = peek(&queue, 50).await.unwrap();
        assert_eq!(bodies.len(), 3);
        assert_eq!(
            queue.receives.load(std::sync::atomic::Ordering::SeqCst),
            1 + MAX_IDLE_ROUNDS
        );
    }

    #[tokio::test]
    async fn a_peek_takes_no_more_than_the_sample() {
        let queue = repeating(10);
        assert_eq!(peek(&queue, 4).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn waiting_for_depth_ends_once_enough_sessions_are_visible() {
        let pool = std::sync::Arc::new(warmpool_core::fakes::MemoryPool::default());
        let filler = {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    pool.push(&PooledSession::new(SessionId::generate(), NOW, NOW));
                }
            })
        };
        let mut readings = Vec::new();
        let depth = wait_for_depth(&pool, 3, Duration::from_secs(10), Duration::from_millis(5), |d| {
            readings.push(d.visible)
        })
        .await
        .unwrap();
        filler.await.unwrap();
        assert_eq!(depth.visible, 3);
        assert_eq!(readings.first(), Some(&0));
        assert_eq!(readings.last(), Some(&3));
        assert!(readings.windows(2).all(|w| w[0] <= w[1]), "{readings:?}");
    }

    #[tokio::test]
    async fn waiting_for_depth_gives_up_after_the_wait_with_the_last_reading() {
        let pool = warmpool_core::fakes::MemoryPool::default();
        pool.push(&PooledSession::new(SessionId::generate(), NOW, NOW));
        let started = std::time::Instant::now();
        let depth = wait_for_depth(&pool, 5, Duration::from_millis(60), Duration::from_millis(10), |_| {})
            .await
            .unwrap();
        assert_eq!(depth.visible, 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A queue whose attribute reads fail, as SQS's do when unreachable or throttled.
    struct UnreadableDepth;

    impl PoolQueue for UnreadableDepth {
        async fn receive(
            &self,
            _: u8,
            _: Duration,
            _: Duration,
        ) -> Result<Vec<Received>, warmpool_core::error::QueueError> {
            Ok(vec![])
        }
        async fn delete(&self, _: &str) -> Result<(), warmpool_core::error::QueueError> {
            panic!("a wait must never delete")
        }
        async fn enqueue(&self, _: &PooledSession) -> Result<(), warmpool_core::error::QueueError> {
            panic!("a wait must never enqueue")
        }
        async fn depth(&self) -> Result<PoolDepth, warmpool_core::error::QueueError> {
            Err(warmpool_core::error::QueueError::new(
                "GetQueueAttributes",
                warmpool_core::error::QueueErrorKind::Throttled,
                "slow down",
            ))
        }
    }

    #[tokio::test]
    async fn a_failed_depth_read_ends_the_wait_with_the_error_at_once() {
        let started = std::time::Instant::now();
        let waited = wait_for_depth(
            &UnreadableDepth,
            5,
            Duration::from_secs(30),
            Duration::from_millis(10),
            |_| panic!("no reading to show"),
        )
        .await;
        assert!(matches!(waited, Err(CliError::Queue(_))), "{waited:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

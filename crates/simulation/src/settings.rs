//! The settings every policy of one comparison shares: seed, simulated service, the callers'
//! retries, and the project's own environment.

use crate::Conversation;
use agentcore_emulator::lifecycle::LifecycleConfig;
use std::time::Duration;
use warmpool_core::pool::warmup::WarmupPolicy;

#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// The simulated service: the emulator's defaults are the published AgentCore figures.
    pub service: LifecycleConfig,
    /// Traffic at the profile's opening rate before measuring, so every policy starts settled.
    pub lead_in: Duration,
    /// get-session's synchronous invoke, receive and delete, before the caller's own call.
    pub claim_overhead: Duration,
    /// From get-session's `Event` invoke (or the schedule) to replenish starting on it.
    pub trigger_delay: Duration,
    /// replenish's Lambda timeout (its runs stop retrying this long after they start).
    pub run_timeout: Duration,
    pub reference_pool: u32,
    /// How a caller retries a throttled cold start, and how often at most.
    pub caller_retry: WarmupPolicy,
    pub caller_max_attempts: u32,
    /// The project's settings, as environment variables of replenish and get-session; they
    /// take precedence over the modelled deployment's.
    pub project_env: Vec<(String, String)>,
    /// The pre-warm windows' targets as a share of what the bursts need (0 schedules none).
    pub prewarm_scale: f64,
    /// `None`: independent requests. Otherwise the traffic comes as conversations of this shape.
    pub conversation: Option<Conversation>,
    /// With conversations: a later turn reuses its conversation's live session instead of
    /// claiming (get-session's `userId` affinity); off, every turn claims.
    pub affinity: bool,
    /// Where the virtual clock starts (epoch milliseconds): a trace's weekdays and hours then
    /// meet the schedule windows fitted to them. 0 is 1970-01-01 00:00 UTC, a Thursday.
    pub clock_origin_ms: u64,
    /// Sessions warmed at the start by one count event, as `warmpool demo` fills its pool.
    pub initial_fill: u32,
    /// Whether replenish's scheduled round runs (the demo's local stack runs none).
    pub rounds: bool,
}

impl Default for Settings {
    fn default() -> Self {
        // The defaults, but for the adaptive mode, room to grow, and fallbacks replaced.
        let env = [
            ("POOL_TARGET_MODE", "adaptive"),
            ("POOL_TARGET_MAX", "1000"),
            ("REPLACE_FRESH_FALLBACKS", "true"),
        ];
        Self {
            seed: 42,
            // Active sessions are not what this compares: no cap that would bind.
            service: LifecycleConfig {
                max_active_sessions: 10_000_000,
                ..LifecycleConfig::default()
            },
            lead_in: Duration::from_secs(15 * 60),
            claim_overhead: Duration::from_millis(30),
            trigger_delay: Duration::from_millis(100),
            run_timeout: Duration::from_secs(60),
            reference_pool: 100,
            caller_retry: WarmupPolicy::default(),
            caller_max_attempts: 3,
            project_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            prewarm_scale: 1.0,
            conversation: None,
            affinity: false,
            clock_origin_ms: 0,
            initial_fill: 0,
            rounds: true,
        }
    }
}

//! The session lifecycle model of AgentCore Runtime: which invocation lands on a warm microVM
//! and which cold-starts a new one, how long each takes, when a session expires, and when a
//! new microVM is refused (creation rate, active-session quota) or an invocation fails
//! (injected faults).
//!
//! Pure and deterministic: every call takes `now_ms` from the caller's clock (wall time in the
//! HTTP server, a virtual clock in a simulation) and draws randomness from the caller's RNG, so a
//! seeded RNG and the same call sequence reproduce a run exactly. The clock only needs to be
//! monotonic; its origin is the caller's choice.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::{Rng, RngExt};
use serde::Serialize;

use crate::Error;

/// z-score of the 99th percentile of the standard normal distribution.
const Z_P99: f64 = 2.326;

/// A lognormal latency distribution given by its median and 99th percentile, the two figures
/// published for AgentCore.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyProfile {
    pub median: Duration,
    pub p99: Duration,
}

impl LatencyProfile {
    /// Published cold-start figures: a new session's first invocation.
    pub const COLD_START: Self = Self {
        median: Duration::from_millis(2_900),
        p99: Duration::from_millis(4_900),
    };
    /// Published figures for an invocation on an already-warm session.
    pub const WARM: Self = Self {
        median: Duration::from_millis(200),
        p99: Duration::from_millis(450),
    };

    /// Draws one latency. Box–Muller keeps us off `rand_distr` for a single distribution.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let median = self.median.as_secs_f64();
        if median <= 0.0 {
            return Duration::ZERO;
        }
        let sigma = (self.p99.as_secs_f64() / median).ln().max(0.0) / Z_P99;
        // 1 - [0, 1) is (0, 1]: ln(0) would be -inf.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::try_from_secs_f64(median * (sigma * z).exp()).unwrap_or(Duration::ZERO)
    }

    fn validate(&self, field: &'static str) -> Result<(), Error> {
        if self.p99 < self.median {
            return Err(Error::invalid_config(field, "p99 must not be below the median"));
        }
        Ok(())
    }
}

/// How the modelled AgentCore Runtime behaves. Defaults are the published service figures.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    pub cold_start: LatencyProfile,
    pub warm: LatencyProfile,
    /// Multiplies every sampled latency (0.01 for fast tests). Nothing else is scaled: timeouts
    /// and rates stay in real units so a test states them directly.
    pub latency_scale: f64,
    /// A session whose last invocation is this old is gone (`idleRuntimeSessionTimeout`).
    pub idle_timeout: Duration,
    /// A session this old is gone whatever its activity (`maxLifetime`).
    pub max_lifetime: Duration,
    /// New microVMs per second, a token bucket whose burst equals the rate (at least 1).
    /// In any 1 s window up to burst + rate creations can therefore pass.
    pub creation_rate_per_sec: f64,
    /// Cap on sessions active at once; a creation beyond it is refused.
    pub max_active_sessions: usize,
    /// Probability that an invocation fails with an internal error before reaching a microVM.
    pub error_rate: f64,
    /// Probability that an invocation crashes its session's microVM.
    pub crash_rate: f64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            cold_start: LatencyProfile::COLD_START,
            warm: LatencyProfile::WARM,
            latency_scale: 1.0,
            idle_timeout: Duration::from_secs(900),
            max_lifetime: Duration::from_secs(28_800),
            creation_rate_per_sec: 25.0,
            max_active_sessions: 1_000,
            error_rate: 0.0,
            crash_rate: 0.0,
        }
    }
}

impl LifecycleConfig {
    pub fn validate(&self) -> Result<(), Error> {
        self.cold_start.validate("cold_start")?;
        self.warm.validate("warm")?;
        if !(self.latency_scale.is_finite() && self.latency_scale >= 0.0) {
            return Err(Error::invalid_config("latency_scale", "must be a finite number >= 0"));
        }
        if !(self.creation_rate_per_sec.is_finite() && self.creation_rate_per_sec >= 0.0) {
            return Err(Error::invalid_config(
                "creation_rate_per_sec",
                "must be a finite number >= 0",
            ));
        }
        self.faults().validate()
    }

    fn faults(&self) -> Faults {
        Faults {
            error_rate: self.error_rate,
            crash_rate: self.crash_rate,
            throttle_all: false,
        }
    }
}

/// Fault injection that can change while the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    pub error_rate: f64,
    pub crash_rate: f64,
    /// Refuse every new microVM with `Throttled` until cleared; warm sessions still serve.
    pub throttle_all: bool,
}

impl Faults {
    pub fn validate(&self) -> Result<(), Error> {
        check_probability("error_rate", self.error_rate)?;
        check_probability("crash_rate", self.crash_rate)
    }
}

fn check_probability(field: &'static str, p: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::invalid_config(field, "must be a probability in 0..=1"))
    }
}

/// An invocation the model let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// A new microVM was created for this invocation.
    pub cold: bool,
    /// Service-side latency to add before the agent is reached (already scaled).
    pub latency: Duration,
    /// Which microVM of this session ID served it (1 for the first).
    pub generation: u32,
}

/// Why the model refused an operation. Each maps to one AgentCore error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the rate of new session creation was exceeded")]
    Throttled,
    #[error("the quota of {limit} active sessions is reached")]
    QuotaExceeded { limit: usize },
    #[error("injected internal error")]
    InternalError,
    #[error("the session's microVM (generation {generation}) crashed during the invocation")]
    Crashed { generation: u32 },
    #[error("no active session with this ID")]
    SessionNotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionState {
    Active,
    IdleExpired,
    LifetimeExpired,
    Stopped,
    Crashed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub at_ms: u64,
    pub cold: bool,
    pub generation: u32,
}

/// A session ID as seen at some instant. Times are the caller's clock; `created_at_ms` is the
/// current (latest) microVM's creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub created_at_ms: u64,
    pub last_invoked_at_ms: u64,
    /// Invocations admitted for this ID over all its microVMs.
    pub invocation_count: u64,
    /// How many microVMs this ID has had.
    pub generation: u32,
    pub state: SessionState,
    pub history: Vec<InvocationRecord>,
}

/// Counters since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub creations: u64,
    pub cold: u64,
    pub warm: u64,
    pub throttled: u64,
    pub quota_rejected: u64,
    pub errors: u64,
    pub crashes: u64,
    pub stops: u64,
    /// Creations per clock second (`now_ms / 1000`), for checking a creation budget.
    pub creations_per_second: BTreeMap<u64, u32>,
    /// Most creations in any sliding 1 s window, which aligned seconds can understate.
    pub max_creations_in_any_second: u32,
}

/// Why a session's microVM ended before its limits; the agent is told too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Stopped,
    Crashed,
}

impl Ended {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Crashed => "crashed",
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    created_at_ms: u64,
    last_invoked_at_ms: u64,
    invocation_count: u64,
    generation: u32,
    ended: Option<Ended>,
    history: Vec<InvocationRecord>,
}

impl Session {
    fn state(&self, now_ms: u64, idle_ms: u64, lifetime_ms: u64) -> SessionState {
        match self.ended {
            Some(Ended::Stopped) => SessionState::Stopped,
            Some(Ended::Crashed) => SessionState::Crashed,
            None => {
                let idle_at = self.last_invoked_at_ms.saturating_add(idle_ms);
                let lifetime_at = self.created_at_ms.saturating_add(lifetime_ms);
                if now_ms < idle_at && now_ms < lifetime_at {
                    SessionState::Active
                } else if lifetime_at <= idle_at {
                    // Whichever limit struck first is what ended the microVM.
                    SessionState::LifetimeExpired
                } else {
                    SessionState::IdleExpired
                }
            }
        }
    }
}

/// Token bucket for microVM creations.
#[derive(Debug, Clone)]
struct CreationBucket {
    tokens: f64,
    refilled_at_ms: u64,
}

impl CreationBucket {
    /// Tolerates float drift so that, at 25/s, exactly 40 ms buys one token.
    const EPSILON: f64 = 1e-9;

    fn full(rate: f64) -> Self {
        Self {
            tokens: Self::capacity(rate),
            refilled_at_ms: 0,
        }
    }

    /// A burst below one token would never allow a creation at sub-1/s rates.
    fn capacity(rate: f64) -> f64 {
        if rate > 0.0 { rate.max(1.0) } else { 0.0 }
    }

    fn refill(&mut self, now_ms: u64, rate: f64) {
        let elapsed_ms = now_ms.saturating_sub(self.refilled_at_ms);
        self.tokens = (self.tokens + elapsed_ms as f64 * rate / 1000.0).min(Self::capacity(rate));
        self.refilled_at_ms = self.refilled_at_ms.max(now_ms);
    }

    fn has_token(&self) -> bool {
        self.tokens + Self::EPSILON >= 1.0
    }

    fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// The model. Not thread-safe by itself; the server holds it under a mutex.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: LifecycleConfig,
    faults: Faults,
    // Ordered so that `sessions()` is deterministic.
    sessions: BTreeMap<String, Session>,
    // IDs whose microVM may still be alive, so counting active sessions costs O(active)
    // rather than O(every ID ever seen).
    live: HashSet<String>,
    bucket: CreationBucket,
    stats: Stats,
    creation_times_ms: Vec<u64>,
}

impl Model {
    /// The configuration is taken as given; call [`LifecycleConfig::validate`] first to reject
    /// nonsense. Out-of-range probabilities behave as clamped.
    pub fn new(cfg: LifecycleConfig) -> Self {
        Self {
            faults: cfg.faults(),
            bucket: CreationBucket::full(cfg.creation_rate_per_sec),
            sessions: BTreeMap::new(),
            live: HashSet::new(),
            stats: Stats::default(),
            creation_times_ms: Vec::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.cfg
    }

    /// Forgets every session, counter and fault change; the creation bucket is full again.
    pub fn reset(&mut self, now_ms: u64) {
        *self = Self::new(self.cfg.clone());
        self.bucket.refilled_at_ms = now_ms;
    }

    pub fn faults(&self) -> Faults {
        self.faults
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Admits or refuses one invocation of `session_id`. An unknown, expired, stopped or
    /// crashed ID silently gets a new microVM (a cold start), as AgentCore does, so that path
    /// is subject to the creation rate and the active-session quota.
    pub fn invoke<R: Rng + ?Sized>(
        &mut self,
        session_id: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<Admission, Rejection> {
        if chance(rng, self.faults.error_rate) {
            self.stats.errors += 1;
            return Err(Rejection::InternalError);
        }

        let cold = !self.is_active(session_id, now_ms);
        if cold {
            self.admit_creation(now_ms)?;
        }

        let profile = if cold { self.cfg.cold_start } else { self.cfg.warm };
        let latency = profile.sample(rng).mul_f64(self.cfg.latency_scale);

        let session = self.sessions.entry(session_id.to_owned()).or_insert_with(|| Session {
            created_at_ms: now_ms,
            last_invoked_at_ms: now_ms,
            invocation_count: 0,
            generation: 0,
            ended: None,
            history: Vec::new(),
        });
        if cold {
            session.generation += 1;
            session.created_at_ms = now_ms;
            session.ended = None;
            self.live.insert(session_id.to_owned());
        } else {
            self.stats.warm += 1;
        }
        // Idle time counts from admission, not completion: the model does not see how long
        // the agent works.
        session.last_invoked_at_ms = now_ms;
        session.invocation_count += 1;
        session.history.push(InvocationRecord {
            at_ms: now_ms,
            cold,
            generation: session.generation,
        });
        let generation = session.generation;

        if chance(rng, self.faults.crash_rate) {
            self.end(session_id, Ended::Crashed);
            return Err(Rejection::Crashed { generation });
        }
        Ok(Admission {
            cold,
            latency,
            generation,
        })
    }

    /// StopRuntimeSession: ends an active session. An unknown or already ended one is not found.
    pub fn stop(&mut self, session_id: &str, now_ms: u64) -> Result<(), Rejection> {
        if !self.is_active(session_id, now_ms) {
            return Err(Rejection::SessionNotFound);
        }
        self.end(session_id, Ended::Stopped);
        Ok(())
    }

    /// Targeted fault: the session's microVM dies now. Returns whether an active one did.
    pub fn crash(&mut self, session_id: &str, now_ms: u64) -> bool {
        if !self.is_active(session_id, now_ms) {
            return false;
        }
        self.end(session_id, Ended::Crashed);
        true
    }

    fn end(&mut self, session_id: &str, how: Ended) {
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.ended = Some(how);
            match how {
                Ended::Stopped => self.stats.stops += 1,
                Ended::Crashed => self.stats.crashes += 1,
            }
        }
        self.live.remove(session_id);
    }

    pub fn sessions(&self, now_ms: u64) -> Vec<SessionView> {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        self.sessions
            .iter()
            .map(|(id, s)| SessionView {
                session_id: id.clone(),
                created_at_ms: s.created_at_ms,
                last_invoked_at_ms: s.last_invoked_at_ms,
                invocation_count: s.invocation_count,
                generation: s.generation,
                state: s.state(now_ms, idle_ms, lifetime_ms),
                history: s.history.clone(),
            })
            .collect()
    }

    pub fn active_sessions(&self, now_ms: u64) -> usize {
        self.live.iter().filter(|id| self.is_active(id, now_ms)).count()
    }

    /// Drops expired IDs from `live`; sound because the clock is monotonic, so an expired
    /// microVM stays expired.
    fn prune_live(&mut self, now_ms: u64) {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        let sessions = &self.sessions;
        self.live.retain(|id| {
            sessions
                .get(id)
                .is_some_and(|s| s.state(now_ms, idle_ms, lifetime_ms) == SessionState::Active)
        });
    }

    pub fn stats(&self) -> Stats {
        Stats {
            // Every creation is a cold start and every cold start a creation.
            cold: self.stats.creations,
            max_creations_in_any_second: max_in_window(&self.creation_times_ms, 1_000),
            ..self.stats.clone()
        }
    }

    fn is_active(&self, session_id: &str, now_ms: u64) -> bool {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        self.sessions
            .get(session_id)
            .is_some_and(|s| s.state(now_ms, idle_ms, lifetime_ms) == SessionState::Active)
    }

    /// Checks both limits before taking a token, so a refused creation costs nothing.
    fn admit_creation(&mut self, now_ms: u64) -> Result<(), Rejection> {
        let rate = self.cfg.creation_rate_per_sec;
        self.bucket.refill(now_ms, rate);
        if self.faults.throttle_all || !self.bucket.has_token() {
            self.stats.throttled += 1;
            return Err(Rejection::Throttled);
        }
        let limit = self.cfg.max_active_sessions;
        // Pruning can only shrink `live`, so it is needed only when the cap looks reached.
        if self.live.len() >= limit {
            self.prune_live(now_ms);
        }
        if self.live.len() >= limit {
            self.stats.quota_rejected += 1;
            return Err(Rejection::QuotaExceeded { limit });
        }
        self.bucket.take();
        self.stats.creations += 1;
        *self.stats.creations_per_second.entry(now_ms / 1_000).or_default() += 1;
        self.creation_times_ms.push(now_ms);
        Ok(())
    }

    fn limits_ms(&self) -> (u64, u64) {
        (duration_ms(self.cfg.idle_timeout), duration_ms(self.cfg.max_lifetime))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Draws only when the fault is on, so a run without faults consumes the same randomness as
/// one whose config never mentioned them.
fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

/// Most timestamps within any half-open window `[t, t + window_ms)`.
fn max_in_window(times_ms: &[u64], window_ms: u64) -> u32 {
    let mut sorted = times_ms.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window_ms {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    u32::try_from(best).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const ID: &str = "session-0000000000000000000000000001";
    const OTHER: &str = "session-0000000000000000000000000002";

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn cfg() -> LifecycleConfig {
        LifecycleConfig {
            idle_timeout: Duration::from_secs(2),
            max_lifetime: Duration::from_secs(10),
            ..LifecycleConfig::default()
        }
    }

    fn view(model: &Model, id: &str, now_ms: u64) -> SessionView {
        model
            .sessions(now_ms)
            .into_iter()
            .find(|v| v.session_id == id)
            .expect("session is known")
    }

    #[test]
    fn first_invocation_of_an_unknown_id_is_a_cold_start() {
        let mut model = Model::new(cfg());
        let admission = model.invoke(ID, 0, &mut rng()).unwrap();
        assert!(admission.cold);
        assert_eq!(admission.generation, 1);
        assert_eq!(model.stats().creations, 1);
    }

    #[test]
    fn invoking_an_active_session_is_warm_on_the_same_microvm() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        let admission = model.invoke(ID, 1_999, &mut rng).unwrap();
        assert!(!admission.cold);
        assert_eq!(admission.generation, 1);
        let v = view(&model, ID, 1_999);
        assert_eq!(v.invocation_count, 2);
        assert_eq!(v.state, SessionState::Active);
        assert_eq!(v.history.iter().map(|r| r.cold).collect::<Vec<_>>(), [true, false]);
    }

    #[test]
    fn invoking_an_idle_expired_session_cold_starts_a_new_microvm() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        assert_eq!(view(&model, ID, 2_000).state, SessionState::IdleExpired);
        let admission = model.invoke(ID, 2_000, &mut rng).unwrap();
        assert!(admission.cold);
        assert_eq!(admission.generation, 2);
        assert_eq!(view(&model, ID, 2_000).created_at_ms, 2_000);
        assert_eq!(model.stats().creations, 2);
    }

    #[test]
    fn heartbeats_keep_a_session_warm_until_its_max_lifetime_then_it_cold_starts() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        for t in (1_000..10_000).step_by(1_000) {
            assert!(!model.invoke(ID, t, &mut rng).unwrap().cold, "at {t} ms");
        }
        assert_eq!(view(&model, ID, 10_000).state, SessionState::LifetimeExpired);
        let admission = model.invoke(ID, 10_000, &mut rng).unwrap();
        assert!(admission.cold);
        assert_eq!(admission.generation, 2);
    }

    #[test]
    fn state_names_the_limit_that_struck_first() {
        let mut model = Model::new(LifecycleConfig {
            idle_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(6),
            ..LifecycleConfig::default()
        });
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        model.invoke(ID, 4_000, &mut rng).unwrap();
        // Idle would end at 9 s, lifetime ended at 6 s.
        assert_eq!(view(&model, ID, 9_500).state, SessionState::LifetimeExpired);
        model.invoke(OTHER, 0, &mut rng).unwrap();
        assert_eq!(view(&model, OTHER, 5_500).state, SessionState::IdleExpired);
    }

    #[test]
    fn a_stopped_session_is_gone_and_its_id_cold_starts_next_time() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        model.stop(ID, 100).unwrap();
        assert_eq!(view(&model, ID, 100).state, SessionState::Stopped);
        let admission = model.invoke(ID, 200, &mut rng).unwrap();
        assert!(admission.cold);
        assert_eq!(admission.generation, 2);
        assert_eq!(model.stats().stops, 1);
    }

    #[test]
    fn stopping_an_unknown_or_ended_session_is_not_found() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        assert_eq!(model.stop(ID, 0), Err(Rejection::SessionNotFound));
        model.invoke(ID, 0, &mut rng).unwrap();
        model.stop(ID, 1).unwrap();
        assert_eq!(model.stop(ID, 2), Err(Rejection::SessionNotFound));
        model.invoke(OTHER, 0, &mut rng).unwrap();
        assert_eq!(model.stop(OTHER, 2_000), Err(Rejection::SessionNotFound));
        assert_eq!(model.stats().stops, 1);
    }

    #[test]
    fn a_crashed_session_cold_starts_on_its_next_invocation() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        assert!(model.crash(ID, 10));
        assert!(!model.crash(ID, 11), "a dead microVM cannot crash again");
        assert_eq!(view(&model, ID, 20).state, SessionState::Crashed);
        assert!(model.invoke(ID, 30, &mut rng).unwrap().cold);
        assert_eq!(model.stats().crashes, 1);
    }

    #[test]
    fn with_crash_rate_one_the_invocation_fails_and_the_microvm_is_gone() {
        let mut model = Model::new(LifecycleConfig {
            crash_rate: 1.0,
            ..cfg()
        });
        let mut rng = rng();
        assert_eq!(model.invoke(ID, 0, &mut rng), Err(Rejection::Crashed { generation: 1 }));
        assert_eq!(view(&model, ID, 1).state, SessionState::Crashed);
        model.set_faults(Faults {
            crash_rate: 0.0,
            ..model.faults()
        });
        let admission = model.invoke(ID, 2, &mut rng).unwrap();
        assert!(admission.cold);
        assert_eq!(admission.generation, 2);
    }

    #[test]
    fn with_error_rate_one_invocations_fail_without_touching_any_microvm() {
        let mut model = Model::new(LifecycleConfig {
            error_rate: 1.0,
            ..cfg()
        });
        assert_eq!(model.invoke(ID, 0, &mut rng()), Err(Rejection::InternalError));
        assert!(model.sessions(0).is_empty());
        let stats = model.stats();
        assert_eq!((stats.errors, stats.creations), (1, 0));
    }

    #[test]
    fn fault_rates_fail_about_that_share_of_invocations() {
        let mut model = Model::new(LifecycleConfig {
            error_rate: 0.1,
            creation_rate_per_sec: 1e9,
            max_active_sessions: usize::MAX,
            ..cfg()
        });
        let mut rng = rng();
        for i in 0..10_000 {
            let _ = model.invoke(&format!("{ID}-{i}"), 0, &mut rng);
        }
        let errors = model.stats().errors;
        assert!((850..=1_150).contains(&errors), "{errors} errors");
    }

    #[test]
    fn creations_beyond_the_rate_are_throttled_until_tokens_refill() {
        let mut model = Model::new(LifecycleConfig {
            creation_rate_per_sec: 5.0,
            ..cfg()
        });
        let mut rng = rng();
        for i in 0..5 {
            model.invoke(&format!("{ID}-{i}"), 1_000, &mut rng).unwrap();
        }
        assert_eq!(model.invoke(OTHER, 1_000, &mut rng), Err(Rejection::Throttled));
        assert_eq!(model.invoke(OTHER, 1_199, &mut rng), Err(Rejection::Throttled));
        assert!(model.invoke(OTHER, 1_200, &mut rng).unwrap().cold);
        let stats = model.stats();
        assert_eq!((stats.creations, stats.throttled), (6, 2));
    }

    #[test]
    fn warm_invocations_are_not_subject_to_the_creation_rate() {
        let mut model = Model::new(LifecycleConfig {
            creation_rate_per_sec: 1.0,
            ..cfg()
        });
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        assert_eq!(model.invoke(OTHER, 0, &mut rng), Err(Rejection::Throttled));
        for _ in 0..100 {
            assert!(!model.invoke(ID, 1, &mut rng).unwrap().cold);
        }
    }

    #[test]
    fn a_sub_one_per_second_rate_still_allows_one_creation() {
        let mut model = Model::new(LifecycleConfig {
            creation_rate_per_sec: 0.5,
            ..cfg()
        });
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        assert_eq!(model.invoke(OTHER, 1_999, &mut rng), Err(Rejection::Throttled));
        model.invoke(OTHER, 2_000, &mut rng).unwrap();
    }

    #[test]
    fn throttle_all_refuses_new_microvms_until_cleared_but_warm_sessions_serve() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        model.set_faults(Faults {
            throttle_all: true,
            ..model.faults()
        });
        assert_eq!(model.invoke(OTHER, 1, &mut rng), Err(Rejection::Throttled));
        assert!(!model.invoke(ID, 1, &mut rng).unwrap().cold);
        model.set_faults(Faults {
            throttle_all: false,
            ..model.faults()
        });
        assert!(model.invoke(OTHER, 2, &mut rng).unwrap().cold);
    }

    #[test]
    fn creations_beyond_the_active_cap_are_refused_until_a_session_ends() {
        let mut model = Model::new(LifecycleConfig {
            max_active_sessions: 2,
            ..cfg()
        });
        let mut rng = rng();
        model.invoke("a".repeat(33).as_str(), 0, &mut rng).unwrap();
        model.invoke("b".repeat(33).as_str(), 0, &mut rng).unwrap();
        assert_eq!(
            model.invoke(ID, 0, &mut rng),
            Err(Rejection::QuotaExceeded { limit: 2 })
        );
        model.stop("a".repeat(33).as_str(), 1).unwrap();
        model.invoke(ID, 1, &mut rng).unwrap();
        // Idle expiry frees slots too.
        assert_eq!(model.active_sessions(2_000), 1);
        model.invoke(OTHER, 2_000, &mut rng).unwrap();
        assert_eq!(model.stats().quota_rejected, 1);
    }

    #[test]
    fn a_quota_rejection_does_not_spend_a_creation_token() {
        let mut model = Model::new(LifecycleConfig {
            max_active_sessions: 1,
            creation_rate_per_sec: 2.0,
            ..cfg()
        });
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        for _ in 0..5 {
            let _ = model.invoke(OTHER, 0, &mut rng);
        }
        model.stop(ID, 0).unwrap();
        model.invoke(OTHER, 0, &mut rng).unwrap();
    }

    #[test]
    fn stats_count_creations_per_second_and_in_any_sliding_second() {
        let mut model = Model::new(LifecycleConfig {
            creation_rate_per_sec: 10.0,
            ..cfg()
        });
        let mut rng = rng();
        // Five creations late in second 0 and two early in second 1: aligned seconds split
        // them, one sliding second holds all seven.
        let times = [900, 900, 900, 900, 900, 1_100, 1_100];
        for (n, t) in times.into_iter().enumerate() {
            model.invoke(&format!("{ID}-{n}"), t, &mut rng).unwrap();
        }
        let stats = model.stats();
        assert_eq!(stats.creations_per_second, BTreeMap::from([(0, 5), (1, 2)]));
        assert_eq!(stats.max_creations_in_any_second, 7);
    }

    #[test]
    fn latency_distribution_matches_published_median_and_p99() {
        let mut rng = rng();
        for profile in [LatencyProfile::COLD_START, LatencyProfile::WARM] {
            let mut samples: Vec<f64> = (0..50_000).map(|_| profile.sample(&mut rng).as_secs_f64()).collect();
            samples.sort_by(f64::total_cmp);
            let median = samples[samples.len() / 2];
            let p99 = samples[samples.len() * 99 / 100];
            let want_median = profile.median.as_secs_f64();
            let want_p99 = profile.p99.as_secs_f64();
            assert!(
                (median / want_median - 1.0).abs() < 0.03,
                "median {median} vs {want_median}"
            );
            assert!((p99 / want_p99 - 1.0).abs() < 0.05, "p99 {p99} vs {want_p99}");
        }
    }

    #[test]
    fn latency_scale_multiplies_sampled_latencies() {
        let scaled = LifecycleConfig {
            latency_scale: 0.01,
            ..cfg()
        };
        let mut full = Model::new(cfg());
        let mut fast = Model::new(scaled);
        let a = full.invoke(ID, 0, &mut rng()).unwrap().latency;
        let b = fast.invoke(ID, 0, &mut rng()).unwrap().latency;
        assert!(a > Duration::from_secs(1));
        assert!((b.as_secs_f64() - a.as_secs_f64() * 0.01).abs() < 1e-6);
    }

    #[test]
    fn the_same_seed_and_calls_reproduce_the_same_run() {
        let run = || {
            let mut model = Model::new(LifecycleConfig {
                crash_rate: 0.2,
                error_rate: 0.1,
                creation_rate_per_sec: 3.0,
                ..cfg()
            });
            let mut rng = StdRng::seed_from_u64(42);
            (0..200)
                .map(|i| model.invoke(&format!("{ID}-{}", i % 7), i * 150, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn reset_forgets_sessions_counters_and_fault_changes() {
        let mut model = Model::new(cfg());
        let mut rng = rng();
        model.invoke(ID, 0, &mut rng).unwrap();
        model.set_faults(Faults {
            throttle_all: true,
            ..model.faults()
        });
        model.reset(5_000);
        assert!(model.sessions(5_000).is_empty());
        assert_eq!(model.stats(), Stats::default());
        assert!(!model.faults().throttle_all);
        assert!(model.invoke(ID, 5_000, &mut rng).unwrap().cold);
    }

    #[test]
    fn validation_rejects_probabilities_outside_zero_to_one() {
        let bad = LifecycleConfig {
            crash_rate: 1.5,
            ..cfg()
        };
        assert!(bad.validate().is_err());
        assert!(cfg().validate().is_ok());
        assert!(
            Faults {
                error_rate: -0.1,
                crash_rate: 0.0,
                throttle_all: false
            }
            .validate()
            .is_err()
        );
    }
}

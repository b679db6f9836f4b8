//! The lease step of a scheduled run (with a lease table): the orphan sweep
//! ([`warmpool_core::lease::sweep`]) and the sessions in use against the pool target.
//! A lease table that fails is logged and counted; it never fails the pool's own run.

use crate::{FUNCTION, Replenish};
use tokio::time::Instant;
use tracing::warn;
use warmpool_core::clock::Clock;
use warmpool_core::lease::ports::LeaseTable;
use warmpool_core::lease::sweep::{LeaseSweep, SweepReport};
use warmpool_core::metrics::MetricSet;
use warmpool_core::ports::AgentRuntime;

/// Due leases one run settles at most; the rest wait for the next run.
const MAX_DUE_PER_RUN: usize = 200;

/// Sessions in use as a percentage of the pool target: 100 when the pool holds as many warm
/// sessions as are in use. An empty target with sessions in use reads as full.
pub fn utilisation_percent(in_use: u64, target: u32) -> f64 {
    if target == 0 {
        return if in_use == 0 { 0.0 } else { 100.0 };
    }
    in_use as f64 * 100.0 / f64::from(target)
}

impl<A: AgentRuntime, Q, C: Clock, T, V, L: LeaseTable> Replenish<A, Q, C, T, V, L> {
    pub(crate) async fn sweep_leases(&self, deadline: Instant, target: u32) -> Option<SweepReport> {
        let (table, config) = (self.leases.as_ref()?, self.config.leases.as_ref()?);
        let sweep = LeaseSweep {
            table,
            agent: &self.agent,
            settings: &config.settings,
            log_key: &self.config.warmup.log_key,
        };
        let now = self.clock.now_ms();
        let metrics = MetricSet::new(FUNCTION, &self.config.pool_name);
        match sweep.run(now, MAX_DUE_PER_RUN, deadline).await {
            Ok(report) => {
                metrics
                    .count("SessionsInUse", report.in_use as f64)
                    .count("PoolUtilisation", utilisation_percent(report.in_use, target))
                    .count("LeasesExpired", report.expired)
                    .count("LeasesAbandoned", report.abandoned)
                    .count("LeaseStopsFailed", report.stop_failed)
                    .emit(now);
                Some(report)
            }
            Err(error) => {
                warn!(%error, "the lease sweep could not read the lease table; the next run retries");
                metrics.count("LeaseSweepFailures", 1).emit(now);
                None
            }
        }
    }
}

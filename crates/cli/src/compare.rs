//! `warmpool demo compare`: the same agent invocations without the pool (each on a brand-new
//! session ID, so each pays a cold start) and through it (claim from get-session, then invoke
//! on the claimed ID), side by side.
//!
//! End-to-end latency of the pool path includes the claim, since that is what a caller waits
//! for. Warmth comes from the emulator's record of each session's last invocation, so a pooled
//! ID that silently cold-started (stale) counts against the pool.

use crate::claim::GetSessionClient;
use crate::emulator_admin::{LastInvocations, Warmth};
use crate::error::{CliError, bounded};
use crate::percentile::Tail;
use crate::progress::Progress;
use crate::table::{Table, ratio};
use futures::StreamExt;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::aws::AgentCoreRuntime;
use warmpool_core::clock::millis;
use warmpool_core::metrics::nearest_rank;
use warmpool_core::pool::claim::Source;
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::SessionId;

/// The two ways of getting a session that the demo compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Route {
    WithoutPool,
    ThroughPool,
}

impl Route {
    pub fn label(self) -> &'static str {
        match self {
            Self::WithoutPool => "without pool",
            Self::ThroughPool => "through pool",
        }
    }
}

/// One invocation of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub session_id: Option<String>,
    pub source: Option<Source>,
    pub claim_ms: Option<u64>,
    pub agent_ms: Option<u64>,
    pub warmth: Warmth,
    pub error: Option<String>,
}

impl Sample {
    fn failed(error: CliError) -> Self {
        Self {
            session_id: None,
            source: None,
            claim_ms: None,
            agent_ms: None,
            warmth: Warmth::Unknown,
            error: Some(error.to_string()),
        }
    }

    /// What the caller waited for: claim (if any) plus the agent call; `None` if it failed.
    pub fn end_to_end_ms(&self) -> Option<u64> {
        if self.error.is_some() {
            return None;
        }
        Some(self.claim_ms.unwrap_or(0) + self.agent_ms?)
    }
}

/// The figures of one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSummary {
    pub route: Route,
    pub invocations: usize,
    pub errors: usize,
    pub end_to_end_ms: Option<Tail>,
    pub claim_p50_ms: Option<u64>,
    pub agent_p50_ms: Option<u64>,
    pub warm: usize,
    pub cold: usize,
    pub warmth_unknown: usize,
    pub from_pool: usize,
    pub fresh: usize,
}

/// Pure: the summary of a route's samples.
pub fn summarize(route: Route, samples: &[Sample]) -> RouteSummary {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let collect = |f: fn(&Sample) -> Option<u64>| ok.iter().filter_map(|s| f(s)).collect::<Vec<u64>>();
    let count_warmth = |w: Warmth| ok.iter().filter(|s| s.warmth == w).count();
    let count_source = |c: Source| ok.iter().filter(|s| s.source == Some(c)).count();
    RouteSummary {
        route,
        invocations: samples.len(),
        errors: samples.len() - ok.len(),
        end_to_end_ms: Tail::of(&collect(Sample::end_to_end_ms)),
        claim_p50_ms: nearest_rank(&collect(|s| s.claim_ms), 50.0),
        agent_p50_ms: nearest_rank(&collect(|s| s.agent_ms), 50.0),
        warm: count_warmth(Warmth::Warm),
        cold: count_warmth(Warmth::Cold),
        warmth_unknown: count_warmth(Warmth::Unknown),
        from_pool: count_source(Source::Pool),
        fresh: count_source(Source::Fresh),
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v} ms"))
}

/// Pure: the side-by-side table.
pub fn render_comparison(without: &RouteSummary, through: &RouteSummary) -> String {
    let routes = [without, through];
    let mut table = Table::with_header(["", without.route.label(), through.route.label()]);
    let mut row = |label: &str, cell: &dyn Fn(&RouteSummary) -> String| {
        table.row([label.to_string(), cell(routes[0]), cell(routes[1])]);
    };
    row("invocations", &|r| r.invocations.to_string());
    row("errors", &|r| r.errors.to_string());
    row("p50 end-to-end", &|r| ms(r.end_to_end_ms.map(|t| t.p50)));
    row("p95 end-to-end", &|r| ms(r.end_to_end_ms.map(|t| t.p95)));
    row("p99 end-to-end", &|r| ms(r.end_to_end_ms.map(|t| t.p99)));
    row("p50 claim", &|r| ms(r.claim_p50_ms));
    row("p50 agent call", &|r| ms(r.agent_p50_ms));
    row("warm-hit rate", &|r| ratio(r.warm, r.warm + r.cold + r.warmth_unknown));
    row("warmth unknown", &|r| r.warmth_unknown.to_string());
    row("source pool / fresh", &|r| format!("{} / {}", r.from_pool, r.fresh));
    table.render()
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonReport {
    pub without_pool: RouteSummary,
    pub through_pool: RouteSummary,
    pub samples_without_pool: Vec<Sample>,
    pub samples_through_pool: Vec<Sample>,
}

impl ComparisonReport {
    pub fn new(without: Vec<Sample>, through: Vec<Sample>) -> Self {
        Self {
            without_pool: summarize(Route::WithoutPool, &without),
            through_pool: summarize(Route::ThroughPool, &through),
            samples_without_pool: without,
            samples_through_pool: through,
        }
    }

    pub fn render(&self) -> String {
        render_comparison(&self.without_pool, &self.through_pool)
    }

    /// Distinct error messages, for a short explanation under the table.
    pub fn distinct_errors(&self) -> Vec<&str> {
        let mut errors: Vec<&str> = self
            .samples_without_pool
            .iter()
            .chain(&self.samples_through_pool)
            .filter_map(|s| s.error.as_deref())
            .collect();
        errors.sort_unstable();
        errors.dedup();
        errors
    }

    /// Fills in each sample's warmth from the emulator's record.
    pub fn attach_warmth(&mut self, last: &LastInvocations) {
        for sample in self
            .samples_without_pool
            .iter_mut()
            .chain(self.samples_through_pool.iter_mut())
        {
            if let Some(id) = &sample.session_id {
                sample.warmth = last.warmth(id);
            }
        }
        self.without_pool = summarize(Route::WithoutPool, &self.samples_without_pool);
        self.through_pool = summarize(Route::ThroughPool, &self.samples_through_pool);
    }
}

/// Runs the invocations of both routes.
pub struct Comparison<'a> {
    pub claims: &'a GetSessionClient,
    pub agent: &'a AgentCoreRuntime,
    pub payload: &'a [u8],
    pub concurrency: usize,
    pub call_timeout: Duration,
}

impl Comparison<'_> {
    /// The `n` invocations of `route`, counting each finished one on `progress`.
    pub async fn run(&self, route: Route, n: usize, progress: &Progress) -> Vec<Sample> {
        futures::stream::iter(0..n)
            .map(|_| self.one(route))
            .buffer_unordered(self.concurrency.max(1))
            .inspect(|_| progress.inc(1))
            .collect()
            .await
    }

    async fn one(&self, route: Route) -> Sample {
        let claimed = match route {
            Route::WithoutPool => Ok((SessionId::generate(), Source::Fresh, None)),
            Route::ThroughPool => self
                .claims
                .claim()
                .await
                .map(|(claimed, took)| (claimed.session_id, claimed.source, Some(millis(took)))),
        };
        let (session_id, source, claim_ms) = match claimed {
            Ok(claimed) => claimed,
            Err(error) => return Sample::failed(error),
        };
        let started = Instant::now();
        let invoked = bounded(
            "agent invocation",
            self.call_timeout,
            self.agent.invoke(&session_id, self.payload),
        )
        .await;
        let agent_ms = millis(started.elapsed());
        Sample {
            session_id: Some(session_id.to_string()),
            source: Some(source),
            claim_ms,
            agent_ms: Some(agent_ms),
            warmth: Warmth::Unknown,
            error: invoked.err().map(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(source: Source, claim_ms: Option<u64>, agent_ms: u64, warmth: Warmth) -> Sample {
        Sample {
            session_id: Some(SessionId::generate().to_string()),
            source: Some(source),
            claim_ms,
            agent_ms: Some(agent_ms),
            warmth,
            error: None,
        }
    }

    fn failed() -> Sample {
        Sample::failed(CliError::invalid("x", "boom"))
    }

    #[test]
    fn end_to_end_latency_of_the_pool_route_includes_the_claim() {
        assert_eq!(ok(Source::Pool, Some(40), 200, Warmth::Warm).end_to_end_ms(), Some(240));
        assert_eq!(
            ok(Source::Fresh, None, 2_900, Warmth::Cold).end_to_end_ms(),
            Some(2_900)
        );
        assert_eq!(failed().end_to_end_ms(), None);
    }

    #[test]
    fn a_summary_counts_errors_apart_and_keeps_them_out_of_the_percentiles() {
        let samples = vec![
            ok(Source::Pool, Some(10), 100, Warmth::Warm),
            ok(Source::Pool, Some(20), 200, Warmth::Warm),
            ok(Source::Fresh, Some(30), 3_000, Warmth::Cold),
            failed(),
        ];
        let summary = summarize(Route::ThroughPool, &samples);
        assert_eq!((summary.invocations, summary.errors), (4, 1));
        assert_eq!(
            summary.end_to_end_ms,
            Some(Tail {
                p50: 220,
                p95: 3_030,
                p99: 3_030
            })
        );
        assert_eq!(summary.claim_p50_ms, Some(20));
        assert_eq!((summary.warm, summary.cold, summary.warmth_unknown), (2, 1, 0));
        assert_eq!((summary.from_pool, summary.fresh), (2, 1));
    }

    #[test]
    fn a_route_where_everything_failed_has_no_percentiles() {
        let summary = summarize(Route::WithoutPool, &[failed(), failed()]);
        assert_eq!(summary.end_to_end_ms, None);
        assert_eq!(summary.errors, 2);
    }

    #[test]
    fn the_comparison_puts_both_routes_side_by_side() {
        let without = summarize(Route::WithoutPool, &[ok(Source::Fresh, None, 2_900, Warmth::Cold)]);
        let through = summarize(Route::ThroughPool, &[ok(Source::Pool, Some(35), 210, Warmth::Warm)]);
        let text = render_comparison(&without, &through);
        let line = |label: &str| text.lines().find(|l| l.starts_with(label)).unwrap_or("").to_string();
        assert!(
            text.lines()
                .next()
                .unwrap_or("")
                .ends_with("without pool  through pool"),
            "{text}"
        );
        assert!(line("p50 end-to-end").ends_with("2900 ms        245 ms"), "{text}");
        assert!(line("p50 claim").ends_with("-         35 ms"), "{text}");
        assert!(line("warm-hit rate").ends_with("0/1 (0%)    1/1 (100%)"), "{text}");
        assert!(line("source pool / fresh").ends_with("0 / 1         1 / 0"), "{text}");
    }

    #[test]
    fn warmth_from_the_emulator_is_attached_by_session_id() {
        let sample = ok(Source::Pool, Some(10), 100, Warmth::Unknown);
        let id = sample.session_id.clone().unwrap_or_default();
        let mut report = ComparisonReport::new(vec![], vec![sample]);
        let records = serde_json::from_value(serde_json::json!([
            {"sessionId": id, "createdAtMs": 1, "lastInvokedAtMs": 2, "invocationCount": 2, "generation": 1,
             "state": "active", "busy": false, "idleSinceMs": 2,
             "history": [{"atMs": 1, "cold": true, "generation": 1}, {"atMs": 2, "cold": false, "generation": 1}]}
        ]))
        .unwrap();
        report.attach_warmth(&LastInvocations::from_records(records));
        assert_eq!(report.through_pool.warm, 1);
        assert_eq!(report.samples_through_pool[0].warmth, Warmth::Warm);
    }

    #[test]
    fn distinct_errors_are_listed_once() {
        let report = ComparisonReport::new(vec![failed(), failed()], vec![failed()]);
        assert_eq!(report.distinct_errors(), vec!["invalid x: boom"]);
    }
}

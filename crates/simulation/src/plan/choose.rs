//! What each candidate came to, the candidates no other beats on both hit rate and cost (the
//! frontier), and the recommendation: the cheapest candidate that reaches the hit-rate goal
//! without handing out a dead ID; when none does, the one that comes closest, said so.

use super::candidates::Candidate;
use crate::Run;
use serde::Serialize;

/// Hours in a month, as AWS prices a month (365 x 24 / 12).
pub const MONTH_HOURS: f64 = 730.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    #[serde(flatten)]
    pub candidate: Candidate,
    pub warm_hit_rate: f64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub dead_ids_handed_out: u64,
    pub creation_throttles: u64,
    pub idle_session_hours: f64,
    /// The idle pool's memory for a month of this traffic: idle session-hours scaled from the
    /// trace's length to 730 h, x GB per session x the GB-hour price.
    pub cost_per_month_usd: f64,
    pub claims_per_request: f64,
    pub creations: u64,
    pub on_frontier: bool,
}

impl Figures {
    pub fn of(candidate: Candidate, run: &Run, trace_hours: f64, usd_per_session_hour: f64) -> Self {
        let (row, d) = (&run.row, &run.details);
        let month = if trace_hours > 0.0 {
            MONTH_HOURS / trace_hours
        } else {
            0.0
        };
        Self {
            candidate,
            warm_hit_rate: row.warm_hit_rate,
            p50_ms: row.p50_ms,
            p99_ms: row.p99_ms,
            dead_ids_handed_out: row.dead_ids_handed_out,
            creation_throttles: row.creation_throttles,
            idle_session_hours: row.idle_session_hours,
            cost_per_month_usd: row.idle_session_hours * month * usd_per_session_hour,
            claims_per_request: d.claims as f64 / d.requests.max(1) as f64,
            creations: d.creations,
            on_frontier: false,
        }
    }
}

/// Marks the frontier: by cost, each candidate with a higher hit rate than every cheaper one.
pub fn mark_frontier(figures: &mut [Figures]) {
    let mut order: Vec<usize> = (0..figures.len()).collect();
    order.sort_by(|a, b| {
        let (a, b) = (&figures[*a], &figures[*b]);
        a.cost_per_month_usd
            .total_cmp(&b.cost_per_month_usd)
            .then(b.warm_hit_rate.total_cmp(&a.warm_hit_rate))
    });
    let mut best = f64::NEG_INFINITY;
    for i in order {
        if figures[i].warm_hit_rate > best {
            best = figures[i].warm_hit_rate;
            figures[i].on_frontier = true;
        }
    }
}

/// The choice for a goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Choice {
    /// Index into the candidates.
    pub index: usize,
    pub goal_reached: bool,
}

/// The cheapest candidate at or above `goal` that handed out no dead ID; else the highest
/// hit rate (the cheaper of equals). `None` only without candidates.
pub fn recommend(figures: &[Figures], goal: f64) -> Option<Choice> {
    let reaching = figures
        .iter()
        .enumerate()
        .filter(|(_, f)| f.warm_hit_rate >= goal && f.dead_ids_handed_out == 0)
        .min_by(|(_, a), (_, b)| {
            a.cost_per_month_usd
                .total_cmp(&b.cost_per_month_usd)
                .then(b.warm_hit_rate.total_cmp(&a.warm_hit_rate))
        });
    if let Some((index, _)) = reaching {
        return Some(Choice {
            index,
            goal_reached: true,
        });
    }
    figures
        .iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| {
            a.warm_hit_rate
                .total_cmp(&b.warm_hit_rate)
                .then(b.cost_per_month_usd.total_cmp(&a.cost_per_month_usd))
        })
        .map(|(index, _)| Choice {
            index,
            goal_reached: false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::candidates::Sizing;

    fn figures(name: &str, hit: f64, cost: f64, dead: u64) -> Figures {
        Figures {
            candidate: Candidate {
                name: name.into(),
                sizing: Sizing::Static { target: 1 },
                affinity: false,
            },
            warm_hit_rate: hit,
            p50_ms: 0,
            p99_ms: 0,
            dead_ids_handed_out: dead,
            creation_throttles: 0,
            idle_session_hours: 0.0,
            cost_per_month_usd: cost,
            claims_per_request: 1.0,
            creations: 0,
            on_frontier: false,
        }
    }

    #[test]
    fn the_frontier_keeps_what_nothing_cheaper_beats_and_the_goal_picks_the_cheapest_reaching_it() {
        let mut all = vec![
            figures("small", 0.90, 1.0, 0),
            figures("wasteful", 0.95, 9.0, 0),
            figures("medium", 0.991, 3.0, 0),
            figures("dead", 0.999, 2.0, 4),
            figures("large", 0.999, 5.0, 0),
        ];
        mark_frontier(&mut all);
        let frontier: Vec<&str> = all
            .iter()
            .filter(|f| f.on_frontier)
            .map(|f| f.candidate.name.as_str())
            .collect();
        assert_eq!(frontier, ["small", "dead"]);
        assert_eq!(
            recommend(&all, 0.99),
            Some(Choice {
                index: 2,
                goal_reached: true
            })
        );
        assert_eq!(
            recommend(&all, 0.995),
            Some(Choice {
                index: 4,
                goal_reached: true
            })
        );
        assert_eq!(
            recommend(&all, 0.9999),
            Some(Choice {
                index: 3,
                goal_reached: false
            })
        );
        assert_eq!(recommend(&[], 0.99), None);
    }
}

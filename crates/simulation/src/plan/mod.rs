//! `warmpool plan`: the simulation as a sizing tool for a team's own traffic. A trace (or a
//! built-in profile) goes through the bench's own simulation once per candidate
//! configuration; the candidates' figures, the frontier of hit rate against cost, the
//! recommendation for a hit-rate goal and the `--parameter-overrides` that deploys it come out.
//! Drawing the charts is the CLI's (`crates/cli/src/chart.rs`): this module computes only.
//!
//! The parts, by job:
//! - [`trace`]: reading traces strictly, with line numbers ([`time`] for their instants),
//!   and [`builtin`] traces;
//! - [`fit`]: scheduled windows fitted to the trace per 10-minute slot or hour of the week;
//! - [`candidates`]: the configurations tried, as the pool template's parameters;
//! - [`planner`]: every candidate through the simulation;
//! - [`choose`]: figures per candidate, the frontier, the recommendation;
//! - [`overrides`]: the recommendation as the `make deploy-pool` line;
//! - [`demo`]: what `make demo`'s traffic should come to, for the test that checks the planner.

pub mod builtin;
pub mod candidates;
pub mod choose;
pub mod demo;
pub mod fit;
pub mod overrides;
pub mod planner;
pub mod time;
pub mod trace;

pub use candidates::Params;
pub use planner::{Plan, Recommendation, Timeline, plan};
pub use trace::{Trace, TraceError, TraceFormat};

#[cfg(test)]
mod tests;

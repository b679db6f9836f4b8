//! `warmpool plan`: the simulation as a sizing tool for a team's own traffic. A trace (or a
//! built-in profile) goes through the bench's own simulation once per candidate
//! configuration; the candidates' figures, the frontier of hit rate against cost, the
//! recommendation for a hit-rate goal and the `--parameter-overrides` that deploys it come out.
//!
//! The parts, by job:
//! - [`trace`]: reading traces strictly, with line numbers ([`time`] for their instants);
//! - [`fit`]: scheduled windows fitted to the trace per hour of the week;
//! - [`candidates`]: the configurations tried, as the project's environment for each;
//! - [`choose`]: figures per candidate, the frontier, the recommendation;
//! - [`overrides`]: the recommendation as `make deploy-pool` parameters.

pub mod fit;
pub mod time;
pub mod trace;

pub use trace::{Trace, TraceError, TraceFormat};

//! Soaks (`make soak`): long runs under injected faults that count invariant violations.

pub mod audit;
pub mod batches;
pub mod claims;
pub mod prober;

//! Soaks (`make soak`): long runs under injected faults that count invariant violations.

pub mod claims;

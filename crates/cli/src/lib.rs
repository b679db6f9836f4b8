//! The `warmpool` command line: invoke through the pool, pool status, and local stack control.

pub mod relay;

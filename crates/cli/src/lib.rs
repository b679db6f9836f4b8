//! The `warmpool` command line: invoke through the pool, pool status, local stack control and
//! the pool-versus-no-pool demo. `main.rs` only parses and reports; each command lives in a
//! module named for what it does.

pub mod batch;
pub mod batch_setup;
pub mod claim;
pub mod commands;
pub mod compare;
pub mod emulator_admin;
pub mod error;
pub mod event_source;
pub mod invoke;
pub mod percentile;
pub mod pool_status;
pub mod queue_setup;
pub mod relay;
pub mod table;

pub use commands::{Cli, run};
pub use error::CliError;

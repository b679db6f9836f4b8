//! The `warmpool` command line: invoke through the pool, pool status and pre-warm planning,
//! document batches, local stack control and the pool-versus-no-pool demo.
//!
//! `cmd/` holds the commands, one file each with its flags and its `run`; the modules beside
//! it do the work they share or that the tests drive directly (submitting a batch, peeking
//! at the pool, comparing the routes; the local stack itself is `warmpool-local-stack`); `output`,
//! `progress` and `ui` are how every command talks to the terminal.

pub mod batch;
pub mod chart;
pub mod claim;
pub mod cmd;
pub mod compare;
pub mod emulator_admin;
pub mod error;
pub mod output;
pub mod percentile;
pub mod pool_status;
pub mod pools;
pub mod progress;
pub mod table;
pub mod ui;

pub use cmd::Cli;
pub use error::CliError;

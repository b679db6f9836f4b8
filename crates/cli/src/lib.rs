//! The `warmpool` command line: invoke through the pool, pool status and pre-warm planning,
//! document batches, local stack control and the pool-versus-no-pool demo.
//!
//! `cmd/` holds the commands, one file each with its flags and its `run`; the modules beside
//! it do the work they share or that the tests drive directly (submitting a batch, peeking
//! at the pool, setting up local resources, the relay and the event source); `output`,
//! `progress` and `ui` are how every command talks to the terminal.

pub mod batch;
pub mod batch_setup;
pub mod claim;
pub mod cmd;
pub mod compare;
pub mod emulator_admin;
pub mod error;
pub mod event_source;
pub mod output;
pub mod percentile;
pub mod pool_status;
pub mod pools;
pub mod progress;
pub mod queue_setup;
pub mod relay;
pub mod shutdown;
pub mod table;
pub mod ui;

pub use cmd::Cli;
pub use error::CliError;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.verbosity.init_logging();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("warmpool: {}", warmpool_core::process::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.verbosity.init_logging();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("warmpool: {}", cli::error::chain(&error));
            ExitCode::FAILURE
        }
    }
}

//! `csms`: the evproto reference CSMS (see the library docs, `csms::serve`).

use std::process::ExitCode;

use clap::Parser;
use csms::config::{self, Config};

/// The reference CSMS.
#[derive(Debug, Parser)]
#[command(name = "csms", version, about)]
struct Cli {
    #[command(flatten)]
    config: config::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("csms: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("csms: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(csms::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("csms: {e}");
            ExitCode::FAILURE
        }
    }
}

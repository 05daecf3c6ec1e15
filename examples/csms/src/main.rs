//! `csms`: the evproto reference CSMS (see the library docs, `csms::serve`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use csms::config::{self, Config, LogFormat};

/// The reference CSMS.
#[derive(Debug, Parser)]
#[command(name = "csms", version, about)]
struct Cli {
    #[command(flatten)]
    config: config::Args,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Run the whole story on a temporary store and exit: tariff, token and
    /// stations registered through the API, three simulated stations (1.6,
    /// 2.0.1, 2.1) boot, authorize and charge, a smart-charging limit is
    /// put on every session, sessions end, are priced and get CDRs. Exits 0
    /// only if every step succeeded.
    Demo {
        /// Print the summary as one JSON object (steps on stderr otherwise).
        #[arg(long)]
        json: bool,
    },
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
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // colours for a person at a terminal, none in a file or a pipe
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                if cli.command.is_some() {
                    "warn"
                } else {
                    "info"
                }
                .into()
            }),
        );
    match config.log_format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log.json().init(),
    }
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
    if let Some(Cmd::Demo { json }) = cli.command {
        return match runtime.block_on(csms::demo::run(json)) {
            Ok((summary, ok)) => {
                if json {
                    println!("{summary}");
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&summary).unwrap_or_default()
                    );
                }
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("csms demo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(csms::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ csms::ServeError::DataDir(_)) => {
            eprintln!("csms: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("csms: {e}");
            ExitCode::FAILURE
        }
    }
}

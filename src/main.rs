//! The `peapod` command line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = peapod::cli::Cli::parse();
    let level = match cli.verbose {
        // The monitor's log is a file nobody watches live: keep the story.
        _ if matches!(cli.command, peapod::cli::Command::Monitor) => "info,fuse_backend_rs=warn",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    match peapod::cli::dispatch(cli, started) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("peapod: error: {}", failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}

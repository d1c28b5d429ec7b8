//! The `peapod` command line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = peapod::cli::Cli::parse();
    let level = match cli.verbose {
        _ if matches!(
            cli.command,
            peapod::cli::Command::Monitor | peapod::cli::Command::Vmm
        ) =>
        {
            peapod::sandbox::HELPER_LOG_FILTER
        }
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    if matches!(
        cli.command,
        peapod::cli::Command::Ps(_)
            | peapod::cli::Command::Inspect(_)
            | peapod::cli::Command::Image(_)
            | peapod::cli::Command::Doctor(_)
    ) {
        // Commands that only print end quietly when their reader goes
        // (`peapod ps | grep -q x`), as Unix tools do, instead of failing
        // on a closed stdout.
        // SAFETY: setting a signal's disposition to the default has no
        // memory effects; no other thread runs yet.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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

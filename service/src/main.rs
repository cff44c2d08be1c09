//! `tally`: LLM usage reconciliation.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tally_service::cli::Cli::parse();
    match tally_service::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The one place a failure is reported: its whole cause chain.
            let mut stderr = std::io::stderr().lock();
            let _ = std::io::Write::write_fmt(&mut stderr, format_args!("error: {e:#}\n"));
            ExitCode::FAILURE
        }
    }
}

//! Standard output and standard error for the commands: what a script
//! captures (a report, a token) goes to standard output alone; notices for
//! the person at the terminal go to standard error.

use std::io::Write;

use anyhow::{Context, Result};

/// Writes to standard output (a closed pipe is not an error worth a trace).
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

/// Writes a notice to standard error (never captured with the output).
pub fn notice(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

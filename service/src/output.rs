//! Standard output for the commands.

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

//! A progress line on a terminal for long ingests: one line on standard
//! error, rewritten in place at most five times a second, cleared at the
//! end so the counts printed after it stand alone. Off when standard error
//! is not a terminal (pipes, CI logs) or the file is small.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Files from this size up show progress.
pub const MIN_BYTES: u64 = 16 << 20;

/// A progress line.
pub struct Progress<W: Write> {
    out: Option<W>,
    label: String,
    last: Option<Instant>,
    every: Duration,
}

impl Progress<std::io::Stderr> {
    /// Progress for a file of `bytes`, on standard error when it is a
    /// terminal and the file is large.
    pub fn for_file(label: &str, bytes: u64) -> Self {
        let err = std::io::stderr();
        let on = bytes >= MIN_BYTES && err.is_terminal();
        Progress::to(on.then_some(err), label, Duration::from_millis(200))
    }
}

impl<W: Write> Progress<W> {
    /// Progress written to `out` (`None`: silent), at most every `every`.
    pub fn to(out: Option<W>, label: &str, every: Duration) -> Self {
        Self {
            out,
            label: label.to_owned(),
            last: None,
            every,
        }
    }

    /// Says what is happening: `what` and, with a total, how far.
    pub fn show(&mut self, what: &str, done: u64, total: u64) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every && done < total)
        {
            return;
        }
        self.last = Some(now);
        let text = match done.saturating_mul(100).checked_div(total) {
            Some(pct) => format!("{}: {what} {done}/{total} ({pct}%)", self.label),
            None => format!("{}: {what}", self.label),
        };
        // `\r` and clear-to-end-of-line: the line is rewritten in place.
        let _ = write!(out, "\r{text}\x1b[K");
        let _ = out.flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_counts_and_percent_then_clears() {
        let mut buf = Vec::new();
        {
            let mut p = Progress::to(Some(&mut buf), "big.csv", Duration::ZERO);
            p.show("storing rows", 500, 2000);
            p.show("storing rows", 2000, 2000);
            p.finish();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("big.csv: storing rows 500/2000 (25%)"),
            "{text:?}"
        );
        assert!(text.contains("2000/2000 (100%)"), "{text:?}");
        assert!(text.ends_with("\r\x1b[K"), "{text:?}");
    }

    #[test]
    fn is_silent_when_off_and_throttled_when_on() {
        let mut silent: Progress<Vec<u8>> = Progress::to(None, "f", Duration::ZERO);
        silent.show("x", 1, 2);
        let mut buf = Vec::new();
        {
            let mut p = Progress::to(Some(&mut buf), "f", Duration::from_secs(3600));
            p.show("storing", 1, 10);
            p.show("storing", 2, 10);
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("1/10") && !text.contains("2/10"), "{text:?}");
    }
}

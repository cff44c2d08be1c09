//! Text from inputs, made safe to show: on a terminal and in a text log a
//! control character from a model name, a team or an address (ESC, BEL,
//! CR, LF) could rewrite the screen or forge a log line (issue 16).

use std::borrow::Cow;

/// `s` with every control character written as a visible escape (`\n`,
/// `\r`, `\t`, `\u{1b}`); unchanged, and not copied, when it has none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A log writer that escapes control characters inside each line: the
/// text log stays one event per line whatever the values hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapingWriter;

/// What [`EscapingWriter`] makes for each event: its line, escaped, to `W`.
#[derive(Debug)]
pub struct EscapedLine<W>(W);

impl<W: std::io::Write> std::io::Write for EscapedLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // An event arrives whole, ending in its one newline; written with
        // one call, so lines from two threads never interleave.
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, "\n"),
            None => (buf, ""),
        };
        let line = format!("{}{end}", printable(&String::from_utf8_lossy(body)));
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapingWriter {
    type Writer = EscapedLine<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapedLine(std::io::stderr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert!(matches!(printable("gpt-4o é"), Cow::Borrowed(_)));
        assert_eq!(
            printable("team\u{1b}[2J\u{7}\r\nFAKE"),
            "team\\u{1b}[2J\\u{7}\\r\\nFAKE"
        );
    }

    #[test]
    fn a_log_line_stays_one_line_whatever_its_values_hold() {
        use std::io::Write;
        let mut w = EscapedLine(Vec::new());
        w.write_all(b"WARN contact=\"a@x\r\nINFO forged\" \x1b[31m\n")
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out, "WARN contact=\"a@x\\r\\nINFO forged\" \\u{1b}[31m\n");
        assert_eq!(out.lines().count(), 1);
    }
}

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

/// What [`EscapingWriter`] makes for each event.
#[derive(Debug)]
pub struct EscapedLine(std::io::Stderr);

impl std::io::Write for EscapedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // An event arrives whole, ending in its one newline.
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let text = String::from_utf8_lossy(body);
        let mut out = self.0.lock();
        out.write_all(printable(&text).as_bytes())?;
        out.write_all(end)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapingWriter {
    type Writer = EscapedLine;

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
}

//! Splitting large CSV files so both cores parse.
//!
//! A file is cut only at a newline outside quotes: a scan tracks quote
//! parity from the start (an escaped `""` flips it twice), so a quoted
//! newline is never a cut. The same scan counts lines, so rows of a later
//! part keep their real line numbers.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Files smaller than this are parsed whole (the default of
/// `--split-min-bytes`).
pub const MIN_SPLIT_BYTES: u64 = 64 << 20;

/// One part of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Lines before `start` (the part's first row is on line `lines_before + 1`).
    pub lines_before: u64,
}

/// How a file's records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// CSV: a header line, and quoted fields that may hold newlines.
    Csv,
    /// JSON Lines: no header; a raw newline always ends a record (JSON
    /// strings escape theirs), and quotes are backslash-escaped, so quote
    /// parity means nothing.
    Lines,
}

/// The header line (with its newline; empty for JSON Lines) and the parts
/// of a file. A small file, or a CSV file whose header holds a quote, is
/// one part.
pub fn plan(
    path: &Path,
    parts: u64,
    layout: Layout,
    min_bytes: u64,
) -> io::Result<(Vec<u8>, Vec<Part>)> {
    if std::fs::metadata(path)?.len() < min_bytes {
        return plan_inner(path, 1, layout);
    }
    plan_inner(path, parts, layout)
}

fn plan_inner(path: &Path, parts: u64, layout: Layout) -> io::Result<(Vec<u8>, Vec<Part>)> {
    let len = std::fs::metadata(path)?.len();
    let mut rdr = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut header = Vec::new();
    if layout == Layout::Csv {
        rdr.read_until(b'\n', &mut header)?;
    }
    let whole = vec![Part {
        start: 0,
        end: len,
        lines_before: 0,
    }];
    let bad_header = layout == Layout::Csv && (header.contains(&b'"') || !header.ends_with(b"\n"));
    if parts < 2 || bad_header {
        return Ok((header, whole));
    }
    let hlen = u64::try_from(header.len()).unwrap_or(u64::MAX);
    let targets: Vec<u64> = (1..parts)
        .map(|k| hlen + (len - hlen) * k / parts)
        .collect();
    let mut cuts = Vec::new();
    let header_lines = u64::from(!header.is_empty());
    let (mut pos, mut lines, mut in_quotes) = (hlen, header_lines, false);
    let quote = if layout == Layout::Csv { b'"' } else { b'\n' };
    'scan: loop {
        let buf = rdr.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        // Jump from quote to newline with memchr: bytes in between only move
        // the position.
        let mut at = 0;
        while let Some(k) = memchr::memchr2(quote, b'\n', buf.get(at..).unwrap_or_default()) {
            let i = at + k;
            at = i + 1;
            if layout == Layout::Csv && buf.get(i) == Some(&b'"') {
                in_quotes = !in_quotes;
                continue;
            }
            lines += 1;
            let end = pos + u64::try_from(at).unwrap_or(0);
            if !in_quotes && targets.get(cuts.len()).is_some_and(|&t| end >= t) {
                cuts.push((end, lines));
                if cuts.len() == targets.len() {
                    break 'scan;
                }
            }
        }
        pos += u64::try_from(n).unwrap_or(0);
        rdr.consume(n);
    }
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let (mut start, mut before) = (0, 0);
    for (cut, lines_at) in cuts {
        if cut < len {
            out.push(Part {
                start,
                end: cut,
                lines_before: before,
            });
            start = cut;
            before = lines_at;
        }
    }
    out.push(Part {
        start,
        end: len,
        lines_before: before,
    });
    Ok((header, out))
}

/// A reader over one part: the file's header first for later parts, so
/// each part parses as a whole file.
pub fn open_part(path: &Path, header: &[u8], part: &Part) -> io::Result<Box<dyn Read + Send>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(part.start))?;
    let body = BufReader::with_capacity(1 << 20, f.take(part.end - part.start));
    if part.start == 0 {
        Ok(Box::new(body))
    } else {
        Ok(Box::new(io::Cursor::new(header.to_vec()).chain(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_between_records_and_counts_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        let mut text = String::from("a,b\n");
        for i in 0..50_000 {
            // Every 7th record holds a quoted newline and escaped quotes.
            if i % 7 == 0 {
                text.push_str(&format!("{i},\"multi\nline \"\"q\"\"\"\n"));
            } else {
                text.push_str(&format!("{i},plain\n"));
            }
        }
        std::fs::write(&p, &text).unwrap();
        // Force splitting of a small file by planning with a low threshold.
        let (header, parts) = plan_with_min(&p, 4, 0);
        assert_eq!(header, b"a,b\n");
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.first().unwrap().start, 0);
        assert_eq!(
            parts.last().unwrap().end,
            u64::try_from(text.len()).unwrap()
        );
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            let at = usize::try_from(w[1].start).unwrap();
            // A cut follows a record's newline, and the next record starts a number.
            assert_eq!(&text.as_bytes()[at - 1], &b'\n');
            assert!(text.as_bytes()[at].is_ascii_digit());
            let lines_before = text[..at].matches('\n').count();
            assert_eq!(w[1].lines_before, u64::try_from(lines_before).unwrap());
        }
        // The parts read back, header first, to the whole file.
        let mut joined = Vec::new();
        for (k, part) in parts.iter().enumerate() {
            let mut r = open_part(&p, &header, part).unwrap();
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            joined.extend_from_slice(if k == 0 { &buf } else { &buf[header.len()..] });
        }
        assert_eq!(joined, text.as_bytes());
    }

    #[test]
    fn json_lines_cut_at_any_newline_and_count_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        let mut text = String::new();
        for i in 0..30_000 {
            // Escaped quotes would flip CSV quote parity; here they must not matter.
            text.push_str(&format!("{{\"n\":{i},\"s\":\"a \\\"quoted\\\" word\"}}\n"));
        }
        std::fs::write(&p, &text).unwrap();
        let (header, parts) = plan_inner(&p, 3, Layout::Lines).unwrap();
        assert!(header.is_empty());
        assert_eq!(parts.len(), 3);
        for w in parts.windows(2) {
            let at = usize::try_from(w[1].start).unwrap();
            assert_eq!(&text.as_bytes()[at - 1], &b'\n');
            assert_eq!(
                w[1].lines_before,
                u64::try_from(text[..at].matches('\n').count()).unwrap()
            );
        }
    }

    fn plan_with_min(p: &Path, parts: u64, _min: u64) -> (Vec<u8>, Vec<Part>) {
        // `plan` skips files under MIN_SPLIT_BYTES; test the cutting itself.
        plan_inner(p, parts, Layout::Csv).unwrap()
    }
}

//! Splitting large files so both cores parse.
//!
//! A file is cut just after the first newline past each target offset. In
//! a CSV file that newline may sit inside a quoted field; finding out for
//! sure means scanning everything before it (0.45 s of serial work at ten
//! million rows), so the cut is speculative instead: the part before it is
//! parsed from the start of the file, and its reader says whether it ended
//! inside quotes. If it did, the caller parses the file again whole. The
//! same reader counts the lines of each part, so rows of a later part keep
//! their real line numbers.

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
}

/// How a file's records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// CSV: a header line, and quoted fields that may hold newlines.
    Csv,
    /// JSON Lines: no header; a raw newline always ends a record (JSON
    /// strings escape theirs).
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
    let mut file = File::open(path)?;
    let mut header = Vec::new();
    if layout == Layout::Csv {
        BufReader::new(&mut file).read_until(b'\n', &mut header)?;
    }
    let bad_header = layout == Layout::Csv && (header.contains(&b'"') || !header.ends_with(b"\n"));
    if parts < 2 || bad_header {
        return Ok((header, vec![Part { start: 0, end: len }]));
    }
    let hlen = u64::try_from(header.len()).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    let mut start = 0;
    let mut skipped = Vec::new();
    for k in 1..parts {
        let target = hlen + (len - hlen) * k / parts;
        if target <= start {
            continue;
        }
        file.seek(SeekFrom::Start(target))?;
        skipped.clear();
        BufReader::new(&mut file).read_until(b'\n', &mut skipped)?;
        if !skipped.ends_with(b"\n") {
            break;
        }
        let cut = target + u64::try_from(skipped.len()).unwrap_or(u64::MAX);
        if cut >= len {
            break;
        }
        out.push(Part { start, end: cut });
        start = cut;
    }
    out.push(Part { start, end: len });
    Ok((header, out))
}

/// A reader over one part: the file's header first for later parts, so
/// each part parses as a whole file.
pub fn open_part(path: &Path, header: &[u8], part: &Part) -> io::Result<Box<dyn Read + Send>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(part.start))?;
    // No BufReader: the parsers read in megabyte chunks into buffers of
    // their own, and a second buffer copied every byte once more.
    let body = f.take(part.end - part.start);
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
    fn cuts_follow_a_newline_and_parts_read_back_to_the_file() {
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
        let (header, parts) = plan_inner(&p, 4, Layout::Csv).unwrap();
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
            assert_eq!(&text.as_bytes()[at - 1], &b'\n');
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
    fn a_header_with_a_quote_or_a_small_file_is_one_part() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.csv");
        std::fs::write(&p, "\"a\",b\n".to_owned() + &"1,2\n".repeat(1000)).unwrap();
        assert_eq!(plan_inner(&p, 2, Layout::Csv).unwrap().1.len(), 1);
        let p = dir.path().join("s.csv");
        std::fs::write(&p, "a,b\n".to_owned() + &"1,2\n".repeat(1000)).unwrap();
        assert_eq!(plan(&p, 2, Layout::Csv, 1 << 20).unwrap().1.len(), 1);
        assert_eq!(plan(&p, 2, Layout::Csv, 0).unwrap().1.len(), 2);
    }
}

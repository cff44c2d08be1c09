//! A CSV record reader specialised for usage exports: RFC 4180 quoting,
//! records split straight out of a large buffer, fields borrowed from it.
//!
//! The general `csv` crate went through a state machine per byte and copied
//! every field into a record; at ten million rows that was most of the
//! parse. Usage exports are short unquoted fields with an occasional quoted
//! JSON cell, so the common path here is a tight scan for `,` and `\n`, and
//! only fields with doubled quotes are copied (unescaped).
//!
//! Behaviour matches the `csv` crate in flexible mode where the exports rely
//! on it: blank lines are skipped, a quoted field may span lines, text after
//! a closing quote is kept, an unterminated quote runs to the end of input,
//! and a record's line is the line it starts on.

use std::io::Read;

/// Bytes read per refill; a record longer than this grows the buffer.
const CHUNK: usize = 1 << 20;

/// Where one field's text is: the input buffer or the unescape scratch.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
    scratch: bool,
}

/// Reads CSV records one at a time from any reader.
pub(crate) struct Records<R> {
    r: R,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    pos: usize,
    /// End of valid bytes in `buf`.
    len: usize,
    eof: bool,
    /// Line the next record starts on (1-based).
    line: u64,
    spans: Vec<Span>,
    scratch: Vec<u8>,
    /// A quoted field ran to the end of input.
    open_quote: bool,
}

/// One record, borrowed from the reader until the next call.
pub(crate) struct Record<'a> {
    /// Line the record starts on (1-based).
    pub line: u64,
    raw: &'a [u8],
    /// The record's bytes as text, checked once ("" when not UTF-8).
    text: &'a str,
    scratch: &'a str,
    spans: &'a [Span],
    /// Index of the first field that is not valid UTF-8.
    pub bad_utf8: Option<usize>,
}

impl<'a> Record<'a> {
    /// Field `i` as text ("" for a field that is not UTF-8).
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let s = self.spans.get(i)?;
        let src = if s.scratch { self.scratch } else { self.text };
        // Fields end at ASCII delimiters, so they are char boundaries of a
        // valid record; a record that is not UTF-8 reads as empty fields.
        Some(src.get(s.start as usize..s.end as usize).unwrap_or(""))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// The record as it was written, without its line end (for rejects).
    pub fn raw_text(&self) -> String {
        let mut t = self.raw;
        while let [rest @ .., b'\n' | b'\r'] = t {
            t = rest;
        }
        String::from_utf8_lossy(t).into_owned()
    }
}

/// Why a record could not be split at the end of the buffer.
enum Split {
    /// A whole record: bytes consumed, and lines they span.
    Done(usize, u64),
    /// The last record, whose quoted field runs to the end of input.
    Unterminated(usize, u64),
    /// The buffer ends inside the record.
    NeedMore,
}

impl<R: Read> Records<R> {
    /// A reader over `r`.
    pub(crate) fn new(r: R) -> Self {
        Self {
            r,
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            eof: false,
            line: 1,
            spans: Vec::with_capacity(32),
            scratch: Vec::new(),
            open_quote: false,
        }
    }

    /// Physical lines read so far (blank lines included).
    pub(crate) fn lines(&self) -> u64 {
        self.line - 1
    }

    /// Whether the input ended inside a quoted field.
    pub(crate) fn ended_in_quotes(&self) -> bool {
        self.open_quote
    }

    /// The first record as column names: trimmed, a UTF-8 byte order mark
    /// dropped; none for empty input.
    pub(crate) fn header(&mut self) -> std::io::Result<Vec<String>> {
        Ok(match self.next_record()? {
            Some(h) => (0..h.len())
                .map(|i| {
                    h.get(i)
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches('\u{feff}')
                        .to_owned()
                })
                .collect(),
            None => Vec::new(),
        })
    }

    fn refill(&mut self) -> std::io::Result<()> {
        // Keep the unread tail, at the front, and make room for a chunk.
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.buf.len() - self.len < CHUNK / 2 {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        // Fill the buffer: a record that did not fit is split again from its
        // start, so each retry must bring much more of it (no quadratic
        // re-scanning with a reader that returns a few bytes at a time).
        while let Some(space) = self.buf.get_mut(self.len..) {
            if space.is_empty() {
                break;
            }
            match self.r.read(space) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next record, or `None` at the end of input.
    pub(crate) fn next_record(&mut self) -> std::io::Result<Option<Record<'_>>> {
        'record: loop {
            // Blank lines between records are skipped, as the csv crate does.
            loop {
                match self.buf.get(self.pos..self.len) {
                    Some([b'\n', ..]) => {
                        self.pos += 1;
                        self.line += 1;
                    }
                    Some([b'\r', b'\n', ..]) => {
                        self.pos += 2;
                        self.line += 1;
                    }
                    // A CR at the end of the buffer may start a blank CRLF line.
                    Some([b'\r']) if !self.eof => {
                        self.refill()?;
                        continue 'record;
                    }
                    _ => break,
                }
            }
            if self.pos >= self.len {
                if self.eof {
                    return Ok(None);
                }
                self.refill()?;
                continue;
            }
            let split = split_record(
                self.buf.get(self.pos..self.len).unwrap_or_default(),
                self.eof,
                &mut self.spans,
                &mut self.scratch,
            );
            match split {
                Split::NeedMore => {
                    if self.eof {
                        // split_record takes everything at end of input.
                        return Ok(None);
                    }
                    self.refill()?;
                }
                Split::Done(n, lines) | Split::Unterminated(n, lines) => {
                    self.open_quote |= matches!(split, Split::Unterminated(..));
                    let start = self.pos;
                    self.pos += n;
                    let line = self.line;
                    self.line += lines;
                    let buf = self.buf.get(start..start + n).unwrap_or_default();
                    // simdutf8 checks a whole record in a few vector steps;
                    // std's check was a tenth of the parse.
                    let checked = simdutf8::basic::from_utf8(buf)
                        .and_then(|t| Ok((t, simdutf8::basic::from_utf8(&self.scratch)?)));
                    let (text, scratch, bad_utf8) = match checked {
                        Ok((t, s)) => (t, s, None),
                        Err(_) => ("", "", first_bad_field(buf, &self.spans, &self.scratch)),
                    };
                    return Ok(Some(Record {
                        line,
                        raw: buf,
                        text,
                        scratch,
                        spans: &self.spans,
                        bad_utf8,
                    }));
                }
            }
        }
    }
}

fn first_bad_field(buf: &[u8], spans: &[Span], scratch: &[u8]) -> Option<usize> {
    spans.iter().position(|s| {
        let src = if s.scratch { scratch } else { buf };
        src.get(s.start as usize..s.end as usize)
            .is_none_or(|b| std::str::from_utf8(b).is_err())
    })
}

fn to32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Splits one record off the front of `b` into `spans` (offsets into `b`,
/// or into `scratch` for unescaped quoted fields).
fn split_record(b: &[u8], eof: bool, spans: &mut Vec<Span>, scratch: &mut Vec<u8>) -> Split {
    spans.clear();
    scratch.clear();
    let mut i = 0;
    let mut lines = 0u64;
    let mut unterminated = false;
    loop {
        // One field starts at i.
        if b.get(i) == Some(&b'"') {
            // Quoted: up to the closing quote; "" is a quote.
            let mut j = i + 1;
            let mut copied: Option<usize> = None;
            let mut seg = j;
            loop {
                match Some(find2(b, j, b'"', b'\n')).filter(|&k| k < b.len()) {
                    None => {
                        if !eof {
                            return Split::NeedMore;
                        }
                        // Unterminated: the rest of the input is the field.
                        unterminated = true;
                        j = b.len();
                        break;
                    }
                    Some(k) if b.get(k) == Some(&b'\n') => {
                        lines += 1;
                        j = k + 1;
                    }
                    Some(k) => {
                        // A quote: doubled, or the end of the field.
                        match b.get(k + 1) {
                            Some(b'"') => {
                                copied.get_or_insert(scratch.len());
                                scratch.extend_from_slice(b.get(seg..=k).unwrap_or_default());
                                seg = k + 2;
                                j = k + 2;
                            }
                            None if !eof => return Split::NeedMore,
                            _ => {
                                j = k;
                                break;
                            }
                        }
                    }
                }
            }
            let end = j.min(b.len());
            match copied {
                Some(s) => {
                    scratch.extend_from_slice(b.get(seg..end).unwrap_or_default());
                    spans.push(Span {
                        start: to32(s),
                        end: to32(scratch.len()),
                        scratch: true,
                    });
                }
                None => spans.push(Span {
                    start: to32(i + 1),
                    end: to32(end),
                    scratch: false,
                }),
            }
            // Past the closing quote; text before the next separator is
            // kept with the field, as the csv crate does.
            i = (end + 1).min(b.len());
            let tail_start = i;
            i = find2(b, i, b',', b'\n');
            if i > tail_start {
                let tail = b.get(tail_start..i).unwrap_or_default();
                let tail = tail.strip_suffix(b"\r").unwrap_or(tail);
                if !tail.is_empty()
                    && let Some(last) = spans.last_mut()
                {
                    if !last.scratch {
                        let s = scratch.len();
                        scratch.extend_from_slice(
                            b.get(last.start as usize..last.end as usize)
                                .unwrap_or_default(),
                        );
                        last.start = to32(s);
                        last.scratch = true;
                    }
                    scratch.extend_from_slice(tail);
                    last.end = to32(scratch.len());
                }
            }
        } else {
            let start = i;
            i = find2(b, i, b',', b'\n');
            let mut end = i;
            if b.get(i) != Some(&b',') && end > start && b.get(end - 1) == Some(&b'\r') {
                end -= 1;
            }
            spans.push(Span {
                start: to32(start),
                end: to32(end),
                scratch: false,
            });
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(_) => return Split::Done(i + 1, lines + 1),
            None if eof && unterminated => return Split::Unterminated(b.len(), lines + 1),
            None if eof => return Split::Done(b.len(), lines + 1),
            None => return Split::NeedMore,
        }
    }
}

/// Index of the first `x` or `y` in `b` at or after `from`, or `b.len()`.
/// Eight bytes at a time: usage fields are short, so a SIMD search's set-up
/// per call would cost more than it saves.
#[inline]
fn find2(b: &[u8], from: usize, x: u8, y: u8) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let (mx, my) = (LO * u64::from(x), LO * u64::from(y));
    // High bit of each byte of the result set exactly where `w` has a zero
    // byte (no carry crosses bytes: (v & 0x7f) + 0x7f <= 0xfe).
    let zeros = |w: u64| !(((w & LOW7).wrapping_add(LOW7)) | w | LOW7);
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hit = zeros(w ^ mx) | zeros(w ^ my);
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    b.get(i..)
        .and_then(|t| t.iter().position(|&c| c == x || c == y))
        .map_or(b.len(), |k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record as (line, fields), read in chunks of `chunk` bytes.
    fn read_all(text: &str) -> Vec<(u64, Vec<String>)> {
        let mut r = Records::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            let fields = (0..rec.len())
                .map(|i| rec.get(i).unwrap().to_owned())
                .collect();
            out.push((rec.line, fields));
        }
        out
    }

    /// The csv crate's reading of the same text, in flexible mode.
    fn reference(text: &str) -> Vec<(u64, Vec<String>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        r.records()
            .map(|rec| {
                let rec = rec.unwrap();
                (
                    rec.position().unwrap().line(),
                    rec.iter().map(str::to_owned).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn agrees_with_the_csv_crate_on_the_cases_exports_use() {
        for text in [
            "a,b,c\n1,2,3\n",
            "a,b,c\n1,2,3",
            "a,,c\n,,\n",
            "h\n\n\nx\n",
            "q,r\n\"x,y\",\"say \"\"hi\"\"\"\n",
            "q\n\"multi\nline\nfield\",after\nnext\n",
            "j\n\"{\"\"usage_object\"\":{\"\"cached_tokens\"\":7}}\",z\n",
            "t\n\"quoted\"tail,x\n",
            "u\n\"unterminated,x\ny\n",
            "e\n\"\",\"\"\"\"\n",
            "k,é,ü\n1,2,3\n",
            "flex\n1\n1,2,3\n1,2\n",
        ] {
            let fields =
                |v: Vec<(u64, Vec<String>)>| v.into_iter().map(|r| r.1).collect::<Vec<_>>();
            assert_eq!(fields(read_all(text)), fields(reference(text)), "{text:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any text of commas, quotes, newlines and letters (CR aside: the
        /// csv crate ends records at a lone CR) splits into the same fields.
        #[test]
        fn fields_agree_with_the_csv_crate_on_any_text(text in "[ab,\"\né]{0,40}") {
            let fields = |v: Vec<(u64, Vec<String>)>| v.into_iter().map(|r| r.1).collect::<Vec<_>>();
            proptest::prop_assert_eq!(fields(read_all(&text)), fields(reference(&text)));
        }
    }

    #[test]
    fn a_record_is_numbered_by_the_line_it_starts_on() {
        // The csv crate does not count skipped blank lines; `sed -n 4p`
        // (and a person with an editor) finds `x` on line 4.
        let lines: Vec<u64> = read_all("h\n\n\nx\n\"a\nb\",c\nz\n")
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(lines, vec![1, 4, 5, 7]);
    }

    #[test]
    fn find2_finds_the_first_of_two_bytes_at_every_offset() {
        let text = b"abcdefgh,ijklmnopq\nrstuvwxyz0123456789\"";
        for from in 0..=text.len() {
            for (x, y) in [(b',', b'\n'), (b'"', b'\n'), (b'#', b'!')] {
                let want = text
                    .iter()
                    .skip(from)
                    .position(|&c| c == x || c == y)
                    .map_or(text.len(), |k| from + k);
                assert_eq!(find2(text, from, x, y), want, "{from} {x} {y}");
            }
        }
        // Bytes with the high bit set must not look like matches.
        let high = [
            0x80u8,
            0xac,
            0x8a,
            0xff,
            0x2c | 0x80,
            0x0a | 0x80,
            0,
            1,
            b',',
        ];
        assert_eq!(find2(&high, 0, b',', b'\n'), 8);
    }

    #[test]
    fn crlf_line_ends_are_stripped_and_lines_counted() {
        let got = read_all("a,b\r\n1,2\r\n\r\n3,\"x\r\ny\"\r\n");
        assert_eq!(
            got,
            vec![
                (1, vec!["a".to_owned(), "b".to_owned()]),
                (2, vec!["1".to_owned(), "2".to_owned()]),
                (4, vec!["3".to_owned(), "x\r\ny".to_owned()]),
            ]
        );
    }

    #[test]
    fn records_longer_than_a_chunk_and_split_across_reads() {
        // A reader that hands out 7 bytes at a time.
        struct Drip<'a>(&'a [u8]);
        impl Read for Drip<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(7).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let long = "x".repeat(3 * CHUNK);
        let text = format!("a,b\n\"{long}\",\"p\"\"q\"\n1,2\n");
        let mut r = Records::new(Drip(text.as_bytes()));
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            got.push((
                rec.line,
                rec.get(0).unwrap().len(),
                rec.get(1).unwrap().to_owned(),
            ));
        }
        assert_eq!(
            got,
            vec![
                (1, 1, "b".to_owned()),
                (2, long.len(), "p\"q".to_owned()),
                (3, 1, "2".to_owned())
            ]
        );
    }

    #[test]
    fn bad_utf8_names_the_field_and_keeps_the_raw_text() {
        let bytes = b"a,b\nok,\xff\xfe\n";
        let mut r = Records::new(&bytes[..]);
        r.next_record().unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.bad_utf8, Some(1));
        assert!(rec.raw_text().starts_with("ok,"));
    }
}

//! A JSON Lines client row read as a projection: one pass over its bytes
//! that keeps only the members [`super::client::extract`] reads, borrowing
//! their text, and validates the rest without keeping it, instead of
//! building a tree of every member.
//!
//! The pass is a strict JSON scanner that only says yes when the answer
//! cannot differ from the tree's: every value it keeps is a string without
//! escapes, `true`/`false`/`null`, or a canonical unsigned integer, whose
//! text is exactly what the tree renders (`text_of`). Anything else (an
//! escape in a member name or a kept string, a negative, fractional or
//! exponent number where a value is kept, a `\u` escape anywhere, tags,
//! OpenTelemetry attributes, a `usage_format` hint, an object where a value
//! belongs, deep nesting, text that is not one JSON object) is left to the
//! tree reader, so both give the same row or the same reject.

/// The top-level members a client row is read from, in `Projected::top`
/// order.
pub(crate) const TOP: [&str; 19] = [
    "request_id",
    "response_id",
    "ts",
    "ts_end",
    "key",
    "model",
    "response_model",
    "route",
    "team",
    "service",
    "env",
    "status",
    "http_status",
    "stream",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// Where a member of [`TOP`] is kept.
fn slot(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"request_id" => 0,
        b"response_id" => 1,
        b"ts" => 2,
        b"ts_end" => 3,
        b"key" => 4,
        b"model" => 5,
        b"response_model" => 6,
        b"route" => 7,
        b"team" => 8,
        b"service" => 9,
        b"env" => 10,
        b"status" => 11,
        b"http_status" => 12,
        b"stream" => 13,
        b"input_tokens" => 14,
        b"cached_input_tokens" => 15,
        b"cache_write_tokens" => 16,
        b"output_tokens" => 17,
        b"reasoning_tokens" => 18,
        _ => return None,
    })
}

/// A member that sends the row to the tree reader.
fn needs_tree(key: &[u8]) -> bool {
    matches!(key, b"tags" | b"usage_format" | b"attributes") || key.starts_with(b"gen_ai.")
}

/// Members of `usage` read as values (and whose presence `shape_of`
/// asks about), then those read as objects.
const USAGE_LEAVES: [&str; 6] = [
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
];
const USAGE_PARENTS: [&str; 5] = [
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
    "cache_creation",
];
/// Members read inside a parent.
const USAGE_INNER: [&str; 6] = [
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "thinking_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
];

fn index_of(names: &[&str], k: &[u8]) -> Option<usize> {
    names.iter().position(|n| n.as_bytes() == k)
}

/// Nesting the scanner follows before it leaves a row to the tree (whose
/// own limit is 128).
const MAX_DEPTH: usize = 64;

/// A kept value's text: `None` for null (absent and null read alike, as in
/// the tree).
type Text<'a> = Option<&'a str>;

/// The members of `usage` that are ever read.
#[derive(Debug, Default)]
pub(crate) struct Usage<'a> {
    leaves: [Text<'a>; USAGE_LEAVES.len()],
    /// Which leaves and parents are present (even null): bit i for leaf i,
    /// bit 8 + j for parent j.
    present: u16,
    inner: [[Text<'a>; USAGE_INNER.len()]; USAGE_PARENTS.len()],
}

/// The members of one row that matter, in one pass.
#[derive(Debug, Default)]
pub(crate) struct Projected<'a> {
    /// [`TOP`]'s members, present or not (null is absent, as in the tree).
    top: [Text<'a>; TOP.len()],
    /// Whether `usage` is an object (absent and null are not).
    pub(crate) has_usage: bool,
    /// `usage`'s members, when it is (the last of a repeated member
    /// counts, as in the tree).
    usage: Usage<'a>,
}

impl<'a> Projected<'a> {
    /// Reads `text` as one row into a fresh `self`; false when the tree
    /// reader must (a shape or value it does not handle, or text that is
    /// not one JSON object: the tree reader then says why).
    ///
    /// `line` is UTF-8 (the reader checked it): a kept string is checked
    /// again only over its own bytes, a small part of the row.
    pub(crate) fn fill(&mut self, line: &'a [u8]) -> bool {
        let mut s = Scan { b: line, i: 0 };
        s.row(self).is_some() && {
            s.ws();
            s.i == s.b.len()
        }
    }

    /// Top-level member `i` of [`TOP`], with its name.
    pub(crate) fn get_at(&self, i: usize) -> Option<(&'a str, &'static str)> {
        Some(((*self.top.get(i)?)?, TOP.get(i)?))
    }

    /// Whether `usage` has a member `k` (even null), as `shape_of` asks.
    pub(crate) fn usage_has(&self, k: &str) -> bool {
        let u = &self.usage;
        if !self.has_usage {
            return false;
        }
        let k = k.as_bytes();
        let bit = index_of(&USAGE_LEAVES, k).or_else(|| index_of(&USAGE_PARENTS, k).map(|j| 8 + j));
        bit.is_some_and(|b| u.present & (1 << b) != 0)
    }

    /// The value at `path` inside `usage` (one or two names).
    pub(crate) fn usage_at(&self, path: &[&str]) -> Option<&'a str> {
        let u = self.has_usage.then_some(&self.usage)?;
        match path {
            [k] => *u.leaves.get(index_of(&USAGE_LEAVES, k.as_bytes())?)?,
            [k, inner] => *u
                .inner
                .get(index_of(&USAGE_PARENTS, k.as_bytes())?)?
                .get(index_of(&USAGE_INNER, inner.as_bytes())?)?,
            _ => None,
        }
    }
}

/// Bit 7 of each byte of `w` that is `"`, `\\` or below 0x20, exact for
/// the lowest such byte (the usual SWAR zero-byte test: a borrow can mark
/// bytes above the first hit, never below it).
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    zero(w ^ (ONES * u64::from(b'"')))
        | zero(w ^ (ONES * u64::from(b'\\')))
        | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
}

/// The scanner: `None` from any step means "not for the projection".
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips JSON whitespace.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The next non-blank byte, consumed.
    fn next(&mut self) -> Option<u8> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.i.checked_add(rest.len())?;
        (self.b.get(self.i..end)? == rest).then(|| self.i = end)
    }

    /// Moves to the next byte a string ends or escapes at, or a control
    /// byte, eight bytes at a time (most of a row's bytes are in strings).
    fn skip_plain_bytes(&mut self) {
        while let Some(w) = self
            .b
            .get(self.i..self.i + 8)
            .and_then(|c| <[u8; 8]>::try_from(c).ok())
        {
            let m = special(u64::from_le_bytes(w));
            if m != 0 {
                self.i += (m.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    /// After an opening quote: a string's bytes when it has no escape.
    fn plain(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        loop {
            self.skip_plain_bytes();
            match self.peek()? {
                b'"' => {
                    let t = self.b.get(start..self.i)?;
                    self.i += 1;
                    return Some(t);
                }
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
    }

    /// After an opening quote: a string skipped, its escapes checked. A
    /// `\u` escape is left to the tree (it rejects lone surrogates).
    fn skip_str(&mut self) -> Option<()> {
        loop {
            self.skip_plain_bytes();
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1)?;
                    if !matches!(e, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') {
                        return None;
                    }
                    self.i += 2;
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
    }

    /// After the first byte of a number, `first`: skipped, its grammar
    /// checked. Exponents and very long numbers are left to the tree (it
    /// rejects numbers out of `f64`'s range).
    fn skip_number(&mut self, first: u8) -> Option<()> {
        let start = self.i - 1;
        let lead = if first == b'-' {
            let c = self.peek()?;
            self.i += 1;
            c
        } else {
            first
        };
        match lead {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.i - start > 40 {
            return None;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// A kept value: a string without escapes, a literal, or a canonical
    /// unsigned integer that fits `u64`, as its text.
    fn value(&mut self) -> Option<Text<'a>> {
        match self.next()? {
            b'"' => std::str::from_utf8(self.plain()?).ok().map(Some),
            b't' => self.literal(b"rue").map(|()| Some("true")),
            b'f' => self.literal(b"alse").map(|()| Some("false")),
            b'n' => self.literal(b"ull").map(|()| None),
            c @ b'0'..=b'9' => {
                let start = self.i - 1;
                if c != b'0' {
                    self.digits();
                }
                // ASCII digits.
                let t = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
                let canonical = !matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9'))
                    && (t.len() < 20 || (t.len() == 20 && t <= "18446744073709551615"));
                canonical.then_some(Some(t))
            }
            _ => None,
        }
    }

    /// Any value, skipped and checked.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.next()? {
            b'"' => self.skip_str(),
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            c @ (b'-' | b'0'..=b'9') => self.skip_number(c),
            b'{' if depth < MAX_DEPTH => self.members(|s, _| s.skip(depth + 1)),
            b'[' if depth < MAX_DEPTH => {
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    /// After an opening brace: each member's name (without escapes) to
    /// `each`, which reads its value; through the closing brace.
    fn members(&mut self, mut each: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Some(());
        }
        loop {
            if self.next()? != b'"' {
                return None;
            }
            let name = self.plain()?;
            if self.next()? != b':' {
                return None;
            }
            each(self, name)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A row: an object, its kept members into `p`.
    fn row(&mut self, p: &mut Projected<'a>) -> Option<()> {
        if self.next()? != b'{' {
            return None;
        }
        self.members(|s, k| {
            if let Some(i) = slot(k) {
                let v = s.value()?;
                *p.top.get_mut(i)? = v;
                Some(())
            } else if k == b"usage" {
                s.usage(p)
            } else if needs_tree(k) {
                None
            } else {
                s.skip(1)
            }
        })
    }

    /// `usage`: null, or an object (anything else is the tree's to refuse).
    fn usage(&mut self, p: &mut Projected<'a>) -> Option<()> {
        match self.next()? {
            b'n' => {
                self.literal(b"ull")?;
                p.has_usage = false;
                Some(())
            }
            b'{' => {
                p.has_usage = true;
                let u = &mut p.usage;
                *u = Usage::default();
                self.members(|s, k| {
                    if let Some(i) = index_of(&USAGE_LEAVES, k) {
                        *u.leaves.get_mut(i)? = s.value()?;
                        u.present |= 1 << i;
                        Some(())
                    } else if let Some(j) = index_of(&USAGE_PARENTS, k) {
                        u.present |= 1 << (8 + j);
                        let slots = u.inner.get_mut(j)?;
                        *slots = Default::default();
                        s.ws();
                        if s.peek() == Some(b'{') {
                            s.i += 1;
                            s.members(|s, k| match index_of(&USAGE_INNER, k) {
                                Some(i) => {
                                    *slots.get_mut(i)? = s.value()?;
                                    Some(())
                                }
                                None => s.skip(3),
                            })
                        } else {
                            // A parent that is not an object holds nothing.
                            s.skip(2)
                        }
                    } else {
                        s.skip(2)
                    }
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight-byte test finds the first quote, backslash or control
    /// byte wherever it is and whatever comes before or after it.
    #[test]
    fn the_word_test_finds_the_first_special_byte() {
        let is_special = |c: u8| c == b'"' || c == b'\\' || c < 0x20;
        let first = |w: [u8; 8]| {
            let m = special(u64::from_le_bytes(w));
            (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
        };
        for at in 0..8 {
            for c in 0..=255u8 {
                for fill in [b'a', 0xff, 0x80, b'!', b'#', 0x20] {
                    for after in [fill, b'"', 0x00, b'\\'] {
                        let mut w = [fill; 8];
                        w[at] = c;
                        if let Some(next) = w.get_mut(at + 1) {
                            *next = after;
                        }
                        assert_eq!(first(w), w.iter().position(|&b| is_special(b)), "{w:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_top_member_has_its_own_slot() {
        for (i, name) in TOP.iter().enumerate() {
            assert_eq!(slot(name.as_bytes()), Some(i), "{name}");
        }
    }
}

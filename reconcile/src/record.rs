//! The normalised row both sides are parsed into, and a side's container.
//!
//! A row is 64 bytes: strings are interned ([`Sym`]), request ids live in one
//! byte arena per side, token counts are `u32` with a sentinel for "not
//! reported", and the gateway's reported cost is an exact decimal kept as a
//! 64-bit mantissa and a scale.

use rust_decimal::Decimal;

use crate::error::RowError;
use crate::intern::{Interner, Sym};

/// Which side of the reconciliation a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SideKind {
    /// The application's own usage log.
    Client,
    /// The gateway's (or provider's) usage export.
    Gateway,
}

/// Normalised token counts. Every count is "not reported" or a value.
///
/// Semantics are fixed whatever the source: `input` includes cached reads and
/// cache writes, `output` includes reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tokens {
    raw: [u32; 5],
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            raw: [Self::ABSENT; 5],
        }
    }
}

/// Which token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Total input, cached and cache writes included.
    Input = 0,
    /// Input read from the prompt cache.
    CachedInput = 1,
    /// Input written to the prompt cache.
    CacheWrite = 2,
    /// Total output, reasoning included.
    Output = 3,
    /// Reasoning (thinking) output.
    Reasoning = 4,
}

impl TokenKind {
    /// All kinds, in column order.
    pub const ALL: [TokenKind; 5] = [
        TokenKind::Input,
        TokenKind::CachedInput,
        TokenKind::CacheWrite,
        TokenKind::Output,
        TokenKind::Reasoning,
    ];

    /// Column name used in exports.
    pub fn name(self) -> &'static str {
        match self {
            TokenKind::Input => "input_tokens",
            TokenKind::CachedInput => "cached_input_tokens",
            TokenKind::CacheWrite => "cache_write_tokens",
            TokenKind::Output => "output_tokens",
            TokenKind::Reasoning => "reasoning_tokens",
        }
    }
}

impl Tokens {
    const ABSENT: u32 = u32::MAX;

    /// A count, `None` when the source did not report it.
    pub fn get(&self, kind: TokenKind) -> Option<u32> {
        let v = self.raw.get(kind as usize).copied().unwrap_or(Self::ABSENT);
        (v != Self::ABSENT).then_some(v)
    }

    /// A count, zero when not reported.
    pub fn or_zero(&self, kind: TokenKind) -> u64 {
        u64::from(self.get(kind).unwrap_or(0))
    }

    /// Sets a count. Values of `u32::MAX` and above are refused by parsers
    /// before they reach here, so the sentinel cannot be forged.
    pub fn set(&mut self, kind: TokenKind, value: Option<u32>) {
        if let Some(slot) = self.raw.get_mut(kind as usize) {
            *slot = value.unwrap_or(Self::ABSENT);
        }
    }

    /// Whether any usage was reported at all.
    pub fn any(&self) -> bool {
        self.raw.iter().any(|&v| v != Self::ABSENT)
    }

    /// Whether any token was counted: a failed call's row reports zeros,
    /// which is usage reported but nothing billed.
    pub fn any_counted(&self) -> bool {
        self.raw.iter().any(|&v| v != Self::ABSENT && v != 0)
    }
}

/// Packed reference to up to two ids stored back to back in a side's id arena:
/// 40 bits of offset, 12 bits for each length. 0 means "no ids".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdSpan(u64);

/// Longest id kept (bytes). Longer ids are refused as row errors.
pub const MAX_ID_LEN: usize = 4095;

impl IdSpan {
    /// Where the ids start in their arena; `None` when there are none.
    fn offset(self) -> Option<usize> {
        (self.0 != 0).then(|| self.unpack().0)
    }

    /// The same ids after their arena dropped `by` bytes before them.
    fn moved_back(self, by: u64) -> IdSpan {
        if self.0 == 0 {
            self
        } else {
            IdSpan(self.0.saturating_sub(by << 24))
        }
    }

    /// The same ids after their arena moved `by` bytes further.
    pub fn shifted(self, by: u64) -> IdSpan {
        if self.0 == 0 {
            self
        } else {
            IdSpan(self.0 + (by << 24))
        }
    }

    fn unpack(self) -> (usize, usize, usize) {
        let off = usize::try_from(self.0 >> 24).unwrap_or(0);
        let l1 = usize::try_from((self.0 >> 12) & 0xfff).unwrap_or(0);
        let l2 = usize::try_from(self.0 & 0xfff).unwrap_or(0);
        (off, l1, l2)
    }
}

/// Arena holding every id of one side. A `String`, so reading an id back
/// checks two char boundaries instead of re-validating UTF-8 (ids are read
/// several times each during matching).
#[derive(Debug, Default, Clone)]
pub struct IdArena {
    bytes: String,
}

impl IdArena {
    /// Stores a primary id and an optional secondary id (the client's
    /// `response_id`). Returns `None` if an id is too long.
    pub fn push(&mut self, first: &str, second: &str) -> Option<IdSpan> {
        if first.is_empty() && second.is_empty() {
            return Some(IdSpan(0));
        }
        if first.len() > MAX_ID_LEN || second.len() > MAX_ID_LEN {
            return None;
        }
        let off = u64::try_from(self.bytes.len()).ok()?;
        if off >= (1 << 40) {
            return None;
        }
        self.bytes.push_str(first);
        self.bytes.push_str(second);
        let l1 = u64::try_from(first.len()).ok()?;
        let l2 = u64::try_from(second.len()).ok()?;
        Some(IdSpan((off << 24) | (l1 << 12) | l2))
    }

    /// Drops the first `by` bytes, in place; `false` (and nothing
    /// dropped) when `by` is not where an id starts or ends.
    fn drop_front(&mut self, by: usize) -> bool {
        if !self.bytes.is_char_boundary(by) {
            return false;
        }
        self.bytes.drain(..by);
        true
    }

    /// Moves another arena's bytes to the end of this one; returns the
    /// offset its spans must be shifted by.
    pub fn append(&mut self, mut other: IdArena) -> u64 {
        let base = u64::try_from(self.bytes.len()).unwrap_or(0);
        if self.bytes.is_empty() {
            self.bytes = other.bytes;
        } else {
            self.bytes.push_str(&other.bytes);
            other.bytes = String::new();
        }
        base
    }

    /// The two ids of a span ("" when absent).
    pub fn get(&self, span: IdSpan) -> (&str, &str) {
        let (off, l1, l2) = span.unpack();
        // Only whole `&str`s are pushed, so both ranges are on char boundaries.
        (
            self.bytes.get(off..off + l1).unwrap_or_default(),
            self.bytes.get(off + l1..off + l1 + l2).unwrap_or_default(),
        )
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Separates the two halves of a paired symbol.
pub const PAIR_SEP: char = '\u{1e}';

/// Splits a paired symbol's text.
pub fn split_pair(s: &str) -> (&str, &str) {
    s.split_once(PAIR_SEP).unwrap_or((s, ""))
}

/// Ends a route symbol's labels when the row names its key's gateway alias.
pub const ALIAS_SEP: char = '\u{1d}';

/// A route symbol's text as route, owner labels
/// (`team\x1fservice\x1fenv\x1ftags`, "" when none) and the key's gateway
/// alias ("" when none).
pub fn split_route(s: &str) -> (&str, &str, &str) {
    let (route, rest) = split_pair(s);
    let (labels, alias) = rest.split_once(ALIAS_SEP).unwrap_or((rest, ""));
    (route, labels, alias)
}

/// The part of a route symbol that identifies a row's content: the alias
/// a gateway gives the key is a name, not the row, and rows stored before
/// it was read keep their identity.
pub fn route_identity(s: &str) -> &str {
    s.split_once(ALIAS_SEP).map_or(s, |(head, _)| head)
}

/// Row flags.
pub mod flags {
    /// The call was streamed.
    pub const STREAM: u8 = 1;
    /// Whether the row said if it streamed.
    pub const STREAM_KNOWN: u8 = 2;
    /// The gateway served it from its response cache (billed at zero).
    pub const CACHE_HIT: u8 = 4;
    /// The gateway reported a cost.
    pub const HAS_COST: u8 = 8;
    /// The call was cancelled or failed according to the source.
    pub const FAILED: u8 = 16;
}

/// One accepted usage row, of either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Request start, UTC, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Key as the source named it (id, alias, label, hash or fingerprint).
    pub key: Sym,
    /// The models, interned as one string `requested\x1eserved` (see
    /// [`Side::models`]): requested is the client `model` or LiteLLM
    /// `model_group` (the served model when the source does not say);
    /// served is the client `response_model` or gateway `model`, or empty.
    /// One symbol instead of two keeps a row at 64 bytes.
    pub model: Sym,
    /// Route and owner labels, interned as one string
    /// `route\x1eteam\x1fservice\x1fenv\x1ftags` (see [`Side::route_and_labels`]).
    pub route: Sym,
    /// Request ids in the side's arena.
    pub ids: IdSpan,
    /// Normalised token counts.
    pub tokens: Tokens,
    /// Gateway-reported cost in USD: mantissa (see `cost_scale`).
    pub cost_mantissa: i64,
    /// Decimal scale of the reported cost.
    pub cost_scale: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// 1-based line (or element index) in the source file.
    pub line: u32,
}

impl Row {
    /// An empty row at `line`, to be filled by a parser.
    pub fn new(line: u32) -> Self {
        Self {
            ts_ms: 0,
            key: Sym::NONE,
            model: Sym::NONE,
            route: Sym::NONE,
            ids: IdSpan::default(),
            tokens: Tokens::default(),
            cost_mantissa: 0,
            cost_scale: 0,
            flags: 0,
            line,
        }
    }

    /// The gateway-reported cost, if any.
    pub fn reported_cost(&self) -> Option<Decimal> {
        (self.flags & flags::HAS_COST != 0)
            .then(|| Decimal::new(self.cost_mantissa, u32::from(self.cost_scale)))
    }

    /// The gateway-reported cost as exact atto-dollars (rounded half-even to
    /// 10⁻¹⁸ when a float export wrote more places).
    pub fn reported_usd(&self) -> Option<crate::prices::Usd> {
        self.has(flags::HAS_COST)
            .then(|| crate::prices::Usd::from_parts(self.cost_mantissa, self.cost_scale))
    }

    /// Stores a reported cost, rounded half-even to the nano-dollar: money
    /// is read exactly once. Gateways that keep spend as a binary float
    /// (LiteLLM's `spend` is a double) export `0.015677000000000001` for
    /// $0.015677; kept as written, that noise showed as a variance of
    /// `0.000000000000000078` per owner. `false` if it does not fit the
    /// compact form.
    pub fn set_reported_cost(&mut self, cost: Decimal) -> bool {
        let cost = cost
            .round_dp_with_strategy(9, rust_decimal::RoundingStrategy::MidpointNearestEven)
            .normalize();
        let Ok(m) = i64::try_from(cost.mantissa()) else {
            return false;
        };
        let Ok(scale) = u8::try_from(cost.scale()) else {
            return false;
        };
        self.cost_mantissa = m;
        self.cost_scale = scale;
        self.flags |= flags::HAS_COST;
        true
    }

    /// Whether a flag is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A side's rows, stored as chunks so that parts of a file parsed in
/// parallel join without copying (at ten million rows a copy is 800 MB).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    chunks: Vec<Vec<Row>>,
    starts: Vec<usize>,
    len: usize,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Row> {
        // One chunk (a file read whole) and two (a file read in two parts)
        // are the common cases, and matching reads rows by index millions
        // of times: no search for them.
        match self.chunks.as_slice() {
            [only] => only.get(i),
            [a, b] => match i.checked_sub(a.len()) {
                None => a.get(i),
                Some(k) => b.get(k),
            },
            _ => {
                let c = self.starts.partition_point(|&s| s <= i).checked_sub(1)?;
                self.chunks.get(c)?.get(i - self.starts.get(c)?)
            }
        }
    }

    /// Appends a row to the last chunk.
    pub fn push(&mut self, r: Row) {
        if self.chunks.is_empty() {
            self.chunks.push(Vec::new());
            self.starts.push(0);
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(r);
            self.len += 1;
        }
    }

    /// Every row, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Row> {
        self.chunks.iter().flatten()
    }

    /// Every row, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Row> {
        self.chunks.iter_mut().flatten()
    }

    /// Drops the first `n` rows, in place when they are one chunk (a side
    /// pushed row by row), so the rest keep the memory already touched.
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        if let [only] = self.chunks.as_mut_slice() {
            only.drain(..n);
        } else {
            let kept: Vec<Row> = self.iter().skip(n).copied().collect();
            self.chunks = vec![kept];
            self.starts = vec![0];
        }
        self.len -= n;
    }

    /// Takes another container's chunks (no copy).
    pub fn adopt(&mut self, other: Rows) {
        for c in other.chunks.into_iter().filter(|c| !c.is_empty()) {
            self.starts.push(self.len);
            self.len += c.len();
            self.chunks.push(c);
        }
    }
}

impl std::ops::Index<usize> for Rows {
    type Output = Row;

    fn index(&self, i: usize) -> &Row {
        match self.get(i) {
            Some(r) => r,
            None => panic!("row {i} out of {} rows", self.len),
        }
    }
}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a Row;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Vec<Row>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten()
    }
}

/// One input file's place in a side.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileInfo {
    /// File name as the user gave it.
    pub name: String,
    /// Format it was read as.
    pub format: String,
    /// Index of its first row in [`Side::rows`].
    pub first_row: usize,
    /// Rows read (accepted + rejected).
    pub read: u64,
    /// Rows refused.
    pub rejected: u64,
    /// Records that are not usage and were passed over (OpenTelemetry
    /// spans with no `gen_ai.*` attribute); not counted in `read`.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_usage: u64,
    /// Physical lines the reader went through, blank lines and the header
    /// included (a later part of a split file starts after them).
    #[serde(skip)]
    pub lines: u64,
    /// Whether the input ended inside a quoted field: for a part of a
    /// split file, the cut was not between records.
    #[serde(skip)]
    pub open_quote_at_end: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A row already normalised (as the store keeps it), to rebuild a side.
#[derive(Debug, Clone, Default)]
pub struct Normalised<'a> {
    /// Ordinal used for deterministic tie-breaks (and `line` in exports).
    pub line: u32,
    /// Request start, UTC ms.
    pub ts_ms: i64,
    /// Key as the source named it (already a fingerprint if it was raw).
    pub key: &'a str,
    /// Requested model.
    pub model: &'a str,
    /// Served model ("" when not said).
    pub served_model: &'a str,
    /// Route or operation.
    pub route: &'a str,
    /// Team, service, env, tags.
    pub labels: [&'a str; 4],
    /// The gateway's own name for the key ("" when none).
    pub key_alias: &'a str,
    /// Request id ("" when none).
    pub request_id: &'a str,
    /// Response id ("" when none).
    pub response_id: &'a str,
    /// Token counts.
    pub tokens: Tokens,
    /// Reported cost, USD.
    pub reported_cost: Option<Decimal>,
    /// Streamed, when said.
    pub stream: Option<bool>,
    /// Gateway cache hit.
    pub cache_hit: bool,
    /// Failed or cancelled.
    pub failed: bool,
}

/// A row's interned key, models and route (with its labels and alias),
/// from [`Side::intern_names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    key: Sym,
    model: Sym,
    route: Sym,
}

/// Everything parsed from one side's files.
#[derive(Debug, Clone)]
pub struct Side {
    /// Which side.
    pub kind: SideKind,
    /// Accepted rows, in file then line order.
    pub rows: Rows,
    /// Interned strings of the rows.
    pub strings: Interner,
    /// Ids of the rows.
    pub ids: IdArena,
    /// The input files, in order.
    pub files: Vec<FileInfo>,
    /// Refused rows.
    pub rejects: Vec<RowError>,
    /// The source text of each accepted row (raw secrets masked), parallel
    /// to `rows`, kept only when [`Side::keeping_raw`] asked for it: the
    /// store keeps every row's provenance, `tally reconcile` does not need
    /// it and does not pay for it.
    pub raws: Option<Vec<String>>,
    /// Reused buffer for building interned keys without a per-row allocation.
    pub(crate) scratch: String,
    /// The last date a parser read (rows come in time order).
    pub(crate) dates: crate::time::DateMemo,
}

impl Side {
    /// An empty side.
    pub fn new(kind: SideKind) -> Self {
        Self {
            kind,
            rows: Rows::default(),
            strings: Interner::default(),
            ids: IdArena::default(),
            files: Vec::new(),
            rejects: Vec::new(),
            raws: None,
            scratch: String::new(),
            dates: crate::time::DateMemo::default(),
        }
    }

    /// An empty side that keeps each accepted row's source text in
    /// [`Side::raws`].
    pub fn keeping_raw(kind: SideKind) -> Self {
        Self {
            raws: Some(Vec::new()),
            ..Self::new(kind)
        }
    }

    /// The source text of accepted row `i`, when kept.
    pub fn raw(&self, i: usize) -> Option<&str> {
        self.raws.as_ref()?.get(i).map(String::as_str)
    }

    /// Interns a row's models as one `requested\x1eserved` symbol.
    pub fn intern_models(&mut self, requested: &str, served: &str) -> Sym {
        self.scratch.clear();
        self.scratch.push_str(requested);
        self.scratch.push(PAIR_SEP);
        self.scratch.push_str(served);
        self.strings.intern(&self.scratch)
    }

    /// Interns a row's route, owner labels (team, service, env, tags) and
    /// key alias as one `route\x1eteam\x1fservice\x1fenv\x1ftags\x1dalias`
    /// symbol (labels left out when all are empty, the alias when empty).
    pub fn intern_route(&mut self, route: &str, labels: [&str; 4], alias: &str) -> Sym {
        self.scratch.clear();
        self.scratch.push_str(route);
        self.scratch.push(PAIR_SEP);
        if labels.iter().any(|l| !l.is_empty()) {
            for (i, l) in labels.iter().enumerate() {
                if i > 0 {
                    self.scratch.push('\u{1f}');
                }
                self.scratch.push_str(l);
            }
        }
        if !alias.is_empty() {
            self.scratch.push(ALIAS_SEP);
            self.scratch.push_str(alias);
        }
        self.strings.intern(&self.scratch)
    }

    /// Appends a row that was normalised before (read back from the store).
    /// `false` when an id is too long for the arena (the parsers refused
    /// such rows, so a stored row never is).
    pub fn push_normalised(&mut self, n: &Normalised<'_>) -> bool {
        let names = self.intern_names(n);
        self.push_named(n, names)
    }

    /// Past this many distinct strings, [`Side::keep_from`] interns the
    /// kept rows' strings afresh: a side read window after window keeps
    /// its strings between windows, and rows that each carry their own
    /// names (tags unique to a row) must not grow them without bound.
    pub const MAX_KEPT_STRINGS: usize = 1 << 20;

    /// Drops the rows before `first` and numbers the rest from 1, as if
    /// they had been read first: a reader that reads a stream in
    /// overlapping windows keeps the overlap instead of reading it again.
    /// The ids arena keeps only the kept rows' ids, so the side holds no
    /// more than its rows; the interned strings are kept, so names interned
    /// before stay valid, unless there are more than
    /// [`Side::MAX_KEPT_STRINGS`]: then the kept rows' strings are
    /// interned afresh and this returns `true` (names interned before are
    /// no longer valid). Files and rejects are cleared.
    pub fn keep_from(&mut self, first: usize) -> bool {
        self.keep_from_within(first, Self::MAX_KEPT_STRINGS)
    }

    /// [`Side::keep_from`] with its bound on strings given.
    fn keep_from_within(&mut self, first: usize, max_strings: usize) -> bool {
        let first = first.min(self.rows.len());
        self.rows.drop_front(first);
        if let Some(raws) = &mut self.raws {
            raws.drain(..first.min(raws.len()));
        }
        self.files.clear();
        self.rejects.clear();
        // The kept rows' ids are the arena's bytes from the first of them
        // on (ids are pushed in row order): dropped in place, so a window's
        // memory is reused by the next. Were that not where an id starts,
        // the kept ids are copied to a fresh arena instead.
        let cut = self
            .rows
            .iter()
            .filter_map(|r| r.ids.offset())
            .min()
            .unwrap_or(self.ids.bytes.len());
        let old_ids = (!self.ids.drop_front(cut)).then(|| std::mem::take(&mut self.ids));
        let renew = self.strings.len() > max_strings;
        let old_strings = renew.then(|| std::mem::take(&mut self.strings));
        let by = u64::try_from(cut).unwrap_or(0);
        let mut line = 0u32;
        for r in self.rows.iter_mut() {
            r.ids = match &old_ids {
                None => r.ids.moved_back(by),
                Some(old) => {
                    let (a, b) = old.get(r.ids);
                    // Each fitted the arena when first pushed, so it fits again.
                    self.ids.push(a, b).unwrap_or_default()
                }
            };
            if let Some(old) = &old_strings {
                r.key = self.strings.intern(old.get(r.key));
                r.model = self.strings.intern(old.get(r.model));
                r.route = self.strings.intern(old.get(r.route));
            }
            line = line.saturating_add(1);
            r.line = line;
        }
        renew
    }

    /// Interns a normalised row's key, models, route, labels and alias:
    /// what [`Side::push_named`] takes, so a reader that sees the same
    /// names on many rows interns them once.
    pub fn intern_names(&mut self, n: &Normalised<'_>) -> Names {
        Names {
            key: self.strings.intern(n.key),
            model: self.intern_models(n.model, n.served_model),
            route: self.intern_route(n.route, n.labels, n.key_alias),
        }
    }

    /// [`Side::push_normalised`] with the row's names already interned
    /// (by [`Side::intern_names`] on this side); the names in `n` are not
    /// read.
    pub fn push_named(&mut self, n: &Normalised<'_>, names: Names) -> bool {
        let mut r = Row::new(n.line);
        r.ts_ms = n.ts_ms;
        r.key = names.key;
        r.model = names.model;
        r.route = names.route;
        let Some(ids) = self.ids.push(n.request_id, n.response_id) else {
            return false;
        };
        r.ids = ids;
        r.tokens = n.tokens;
        if let Some(c) = n.reported_cost
            && !r.set_reported_cost(c)
        {
            return false;
        }
        if let Some(s) = n.stream {
            r.flags |= flags::STREAM_KNOWN;
            if s {
                r.flags |= flags::STREAM;
            }
        }
        if n.cache_hit {
            r.flags |= flags::CACHE_HIT;
        }
        if n.failed {
            r.flags |= flags::FAILED;
        }
        self.rows.push(r);
        true
    }

    /// A row's requested and served model as the source named them (served
    /// is "" when the source did not say).
    pub fn models(&self, r: &Row) -> (&str, &str) {
        split_pair(self.strings.get(r.model))
    }

    /// A row's route as the source named it, and its owner labels
    /// `team\x1fservice\x1fenv\x1ftags` ("" when none).
    pub fn route_and_labels(&self, r: &Row) -> (&str, &str) {
        let (route, labels, _) = split_route(self.strings.get(r.route));
        (route, labels)
    }

    /// The gateway's own name for a row's key (LiteLLM's key alias), ""
    /// when the source gives none.
    pub fn key_alias(&self, r: &Row) -> &str {
        split_route(self.strings.get(r.route)).2
    }

    /// The file a row index came from.
    pub fn file_of(&self, row: usize) -> &str {
        let i = self.files.partition_point(|f| f.first_row <= row);
        self.files
            .get(i.saturating_sub(1))
            .map_or("", |f| f.name.as_str())
    }

    /// Rows read over all files.
    pub fn read(&self) -> u64 {
        self.files.iter().map(|f| f.read).sum()
    }

    /// Moves every row and reject `by` lines down: a later part of a split
    /// file, parsed alone, numbers its lines from its own start.
    pub fn shift_lines(&mut self, by: u32) {
        for r in self.rows.iter_mut() {
            r.line = r.line.saturating_add(by);
        }
        for e in &mut self.rejects {
            e.line = e.line.saturating_add(u64::from(by));
        }
    }

    /// Appends the rows of a later chunk of the file this side read last
    /// (a large file parsed in parts): line numbers are shifted by
    /// `line_shift`, and the chunk's counts join the file's.
    pub fn append_continuation(&mut self, mut other: Side, line_shift: u32) {
        other.shift_lines(line_shift);
        let parts = std::mem::take(&mut other.files);
        self.append(other);
        if let Some(last) = self.files.last_mut() {
            for f in parts {
                last.read += f.read;
                last.rejected += f.rejected;
            }
        }
    }

    /// Appends another side's rows (used to merge per-file parses run in
    /// parallel). Strings and ids are re-mapped into this side.
    pub fn append(&mut self, mut other: Side) {
        if self.rows.is_empty() && self.strings.is_empty() && self.ids.is_empty() {
            // Nothing to re-map into: take the other side whole.
            let mut files = std::mem::take(&mut self.files);
            files.append(&mut other.files);
            let mut rejects = std::mem::take(&mut self.rejects);
            rejects.append(&mut other.rejects);
            let kind = self.kind;
            *self = Side {
                kind,
                files,
                rejects,
                ..other
            };
            return;
        }
        let remap: Vec<Sym> = other
            .strings
            .iter()
            .map(|(_, s)| self.strings.intern(s))
            .collect();
        let map = |s: Sym| {
            s.index()
                .and_then(|i| remap.get(i).copied())
                .unwrap_or(Sym::NONE)
        };
        let base = self.rows.len();
        for mut f in other.files {
            f.first_row += base;
            self.files.push(f);
        }
        // Re-map in place and take the chunks: no row is copied.
        let id_base = self.ids.append(other.ids);
        for r in other.rows.iter_mut() {
            r.key = map(r.key);
            r.model = map(r.model);
            r.route = map(r.route);
            r.ids = r.ids.shifted(id_base);
        }
        self.rows.adopt(other.rows);
        self.rejects.extend(other.rejects);
        if let (Some(mine), Some(theirs)) = (&mut self.raws, other.raws) {
            mine.extend(theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_normalised_row_reads_back_as_the_parser_built_it() {
        let csv = "ts,key,model,response_model,route,request_id,response_id,team,service,env,tags,input_tokens,output_tokens,stream\n\
                   2026-11-20T10:00:00Z,a,m1,m2,chat,r1,x1,t,s,e,tg,3,4,true\n";
        let mut parsed = Side::new(SideKind::Client);
        crate::parse::client::read_client(csv.as_bytes(), "c.csv", None, &mut parsed).unwrap();
        assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
        let r = parsed.rows[0];
        let (model, served) = parsed.models(&r);
        let (route, labels) = parsed.route_and_labels(&r);
        let l: Vec<&str> = labels.split('\u{1f}').collect();
        let (id1, id2) = parsed.ids.get(r.ids);
        let mut rebuilt = Side::new(SideKind::Client);
        assert!(rebuilt.push_normalised(&Normalised {
            line: r.line,
            ts_ms: r.ts_ms,
            key: parsed.strings.get(r.key),
            model,
            served_model: served,
            route,
            labels: [l[0], l[1], l[2], l[3]],
            key_alias: "ci-bot",
            request_id: id1,
            response_id: id2,
            tokens: r.tokens,
            reported_cost: r.reported_cost(),
            stream: r.has(flags::STREAM_KNOWN).then(|| r.has(flags::STREAM)),
            cache_hit: r.has(flags::CACHE_HIT),
            failed: r.has(flags::FAILED),
        }));
        let b = rebuilt.rows[0];
        assert_eq!(
            (b.ts_ms, b.tokens, b.flags, b.line),
            (r.ts_ms, r.tokens, r.flags, r.line)
        );
        assert_eq!(rebuilt.models(&b), (model, served));
        assert_eq!(rebuilt.route_and_labels(&b), (route, labels));
        assert_eq!(rebuilt.key_alias(&b), "ci-bot");
        assert_eq!(rebuilt.ids.get(b.ids), (id1, id2));
        assert_eq!(rebuilt.strings.get(b.key), "a");
    }

    use super::*;

    /// A row `i` of a side read window after window: its own key, a
    /// shared model, and ids when `i` is even.
    fn windowed_row(key: &str, i: u32) -> Normalised<'_> {
        Normalised {
            line: i + 1,
            ts_ms: i64::from(i) * 1000,
            key,
            model: "m",
            served_model: "",
            route: "chat",
            labels: ["t", "s", "e", ""],
            key_alias: "",
            request_id: if i.is_multiple_of(2) { "req" } else { "" },
            response_id: "",
            tokens: Tokens::default(),
            reported_cost: None,
            stream: None,
            cache_hit: false,
            failed: i == 3,
        }
    }

    #[test]
    fn kept_rows_read_as_if_read_first_and_hold_only_their_own_ids() {
        let keys: Vec<String> = (0..6).map(|i| format!("key-{i}")).collect();
        let mut side = Side::new(SideKind::Gateway);
        for (i, k) in (0u32..).zip(&keys) {
            assert!(side.push_normalised(&windowed_row(k, i)));
        }
        // Each row's time, key, ids and flags, as the side reads them back.
        let read_back = |side: &Side| -> Vec<(i64, String, (String, String), u8)> {
            side.rows
                .iter()
                .map(|r| {
                    let (a, b) = side.ids.get(r.ids);
                    (
                        r.ts_ms,
                        side.strings.get(r.key).to_owned(),
                        (a.to_owned(), b.to_owned()),
                        r.flags,
                    )
                })
                .collect()
        };
        let before = read_back(&side);
        let model = side.intern_names(&windowed_row("key-5", 5));

        for (bound, renewed) in [(usize::MAX, false), (0, true)] {
            let mut kept = side.clone();
            assert_eq!(kept.keep_from_within(2, bound), renewed);
            assert_eq!(kept.rows.len(), 4);
            assert_eq!(read_back(&kept), before[2..]);
            assert_eq!(
                kept.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
                [1, 2, 3, 4]
            );
            // Only the kept rows' ids are held: "req" twice.
            assert_eq!(kept.ids.bytes.len(), 6);
            // Kept strings leave names interned before valid; renewed ones
            // hold only what the kept rows name.
            if renewed {
                assert_eq!(kept.strings.len(), 4 + 2);
            } else {
                let last = kept.rows[3];
                assert_eq!(
                    (last.key, last.model, last.route),
                    (model.key, model.model, model.route)
                );
            }
        }
    }

    #[test]
    fn row_stays_compact() {
        // Memory budget: 10M rows per side must fit well under 1 GB.
        assert!(
            std::mem::size_of::<Row>() <= 64,
            "{}",
            std::mem::size_of::<Row>()
        );
    }

    #[test]
    fn appending_parts_equals_one_parse() {
        let csv = "ts,key,model,route,request_id,input_tokens,output_tokens\n\
                   2026-11-20T10:00:00Z,a,m1,chat,r1,1,1\n\
                   2026-11-20T10:00:01Z,b,m2,chat,r2,2,2\n\
                   2026-11-20T10:00:02Z,a,m2,chat,r3,x,3\n\
                   2026-11-20T10:00:03Z,c,m1,chat,r4,4,4\n";
        let parse = |text: &str| {
            let mut s = Side::new(SideKind::Client);
            crate::parse::client::read_client(text.as_bytes(), "c.csv", None, &mut s).unwrap();
            s
        };
        let whole = parse(csv);
        let lines: Vec<&str> = csv.lines().collect();
        let first = parse(&(lines[..3].join("\n") + "\n"));
        let second = parse(&(format!("{}\n{}\n", lines[0], lines[3..].join("\n"))));
        let mut merged = Side::new(SideKind::Client);
        merged.append(first);
        // The second part starts on physical line 4; parsed alone it says 2.
        merged.append_continuation(second, 2);
        assert_eq!(merged.rows.len(), whole.rows.len());
        for (a, b) in merged.rows.iter().zip(&whole.rows) {
            assert_eq!(a.line, b.line);
            assert_eq!(merged.strings.get(a.key), whole.strings.get(b.key));
            assert_eq!(merged.ids.get(a.ids), whole.ids.get(b.ids));
        }
        assert_eq!(merged.rejects, whole.rejects);
        assert_eq!(merged.files.len(), 1);
        assert_eq!((merged.files[0].read, merged.files[0].rejected), (4, 1));
    }

    #[test]
    fn rows_are_found_by_index_in_any_number_of_chunks() {
        let chunk = |from: u32, n: u32| {
            let mut r = Rows::default();
            for line in from..from + n {
                r.push(Row::new(line));
            }
            r
        };
        for sizes in [vec![5], vec![3, 4], vec![2, 1, 6], vec![1, 1, 1, 1]] {
            let mut rows = Rows::default();
            let mut next = 0;
            for &n in &sizes {
                rows.adopt(chunk(next, n));
                next += n;
            }
            assert_eq!(rows.len(), usize::try_from(next).unwrap());
            for i in 0..next {
                assert_eq!(
                    rows.get(usize::try_from(i).unwrap()).map(|r| r.line),
                    Some(i),
                    "{sizes:?}"
                );
            }
            assert!(rows.get(usize::try_from(next).unwrap()).is_none());
        }
    }

    #[test]
    fn ids_round_trip() {
        let mut a = IdArena::default();
        let s1 = a.push("chatcmpl-1", "req_9").unwrap();
        let s2 = a.push("", "").unwrap();
        let s3 = a.push("x", "").unwrap();
        assert_eq!(a.get(s1), ("chatcmpl-1", "req_9"));
        assert_eq!(a.get(s2), ("", ""));
        assert_eq!(a.get(s3), ("x", ""));
        assert!(a.push(&"y".repeat(MAX_ID_LEN + 1), "").is_none());
    }

    #[test]
    fn reported_cost_is_exact_to_the_nano_dollar_and_float_noise_goes() {
        let mut r = Row::new(1);
        assert!(r.reported_cost().is_none());
        let dec = |s: &str| s.parse::<Decimal>().unwrap();
        assert!(r.set_reported_cost(dec("0.000123456")));
        assert_eq!(r.reported_cost(), Some(dec("0.000123456")));
        // LiteLLM's doubles, as psql prints them: the noise is gone.
        for (float, money) in [
            ("0.015677000000000001", "0.015677"),
            ("0.0017849999999999999", "0.001785"),
            ("0.00012345678901", "0.000123457"),
            // Half-even at the nano-dollar.
            ("0.0000000025", "0.000000002"),
            ("0.0000000035", "0.000000004"),
        ] {
            assert!(r.set_reported_cost(dec(float)));
            assert_eq!(r.reported_cost(), Some(dec(money)), "{float}");
        }
    }

    #[test]
    fn tokens_absent_vs_zero() {
        let mut t = Tokens::default();
        assert!(!t.any());
        t.set(TokenKind::Input, Some(0));
        assert_eq!(t.get(TokenKind::Input), Some(0));
        assert_eq!(t.get(TokenKind::Output), None);
    }
}

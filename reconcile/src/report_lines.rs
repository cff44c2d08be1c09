//! Row-level export lines: matches, missing usage, unattributed traffic,
//! discrepancies and rejects. Each line is [`Serialize`] (for `report.json`)
//! and [`Tabular`] (for CSV), where cells say whether their text came from an
//! input file, so the CSV writer can neutralise spreadsheet formulas in
//! exactly those cells without mangling numbers such as `-0.5`.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::matching::Pass;
use crate::record::{Row, SideKind, TokenKind, flags};
use crate::report::{Class, Reconciliation};

/// Receives the cells of one record, in header order.
pub trait RecordSink {
    /// Text that came from an input (ids, names, models): it may start with
    /// `=`, `+`, `-`, `@` and must be neutralised for spreadsheets.
    fn text(&mut self, s: &str);
    /// Text Tally produced itself (numbers, times, class names).
    fn plain(&mut self, s: &str);
    /// A number Tally formatted (ASCII digits, `-` and `.` only): needs
    /// neither neutralising nor quoting.
    fn number(&mut self, digits: &[u8]) {
        self.plain(std::str::from_utf8(digits).unwrap_or_default());
    }
}

/// A line that can be written as a CSV record.
pub trait Tabular {
    /// Column names.
    fn headers() -> &'static [&'static str];
    /// Writes the cells, in header order.
    fn write(&self, out: &mut dyn RecordSink);
}

impl<T: Tabular> Tabular for &T {
    fn headers() -> &'static [&'static str] {
        T::headers()
    }

    fn write(&self, out: &mut dyn RecordSink) {
        (**self).write(out);
    }
}

/// Writes an integer without allocating.
fn int(out: &mut dyn RecordSink, v: i128) {
    let mut buf = [0u8; 64];
    let i = write_signed(v < 0, v.unsigned_abs(), 0, &mut buf);
    out.number(buf.get(i..).unwrap_or_default());
}

/// Writes ±`wide` × 10^-`scale` at the end of `buf`, normalised. In u64
/// when it fits: u128 division is a library call, and matches.csv has
/// three integers and two amounts on each of ten million lines.
/// Returns where the text starts.
fn write_signed(neg: bool, wide: u128, scale: u32, buf: &mut [u8; 64]) -> usize {
    let mut i = match u64::try_from(wide) {
        Ok(small) if scale <= 19 => write_u64(small, scale, buf),
        Ok(small) => write_digits(small, scale, buf),
        Err(_) => write_digits(wide, scale, buf),
    };
    if neg {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'-';
        }
    }
    i
}

fn opt_int(out: &mut dyn RecordSink, v: Option<impl Into<i128>>) {
    match v {
        Some(v) => int(out, v.into()),
        None => out.plain(""),
    }
}

/// A timestamp (UTC ms) that serialises as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ts(pub i64);

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(24);
        crate::time::write_ms(self.0, &mut s);
        f.write_str(&s)
    }
}

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An exact amount (USD) as mantissa × 10^-scale; prints like a normalised
/// `Decimal` (`0.0061`, `12.5`, `0`) without going through one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    mantissa: i128,
    scale: u32,
}

impl Amount {
    /// From Tally's exact price.
    pub fn usd(u: crate::prices::Usd) -> Self {
        Self {
            mantissa: u.0,
            scale: crate::prices::USD_SCALE,
        }
    }

    /// From a row's reported cost.
    pub fn reported(r: &Row) -> Option<Self> {
        r.has(flags::HAS_COST).then(|| Self {
            mantissa: i128::from(r.cost_mantissa),
            scale: u32::from(r.cost_scale),
        })
    }

    /// As a decimal (for arithmetic in reports).
    pub fn to_decimal(self) -> Decimal {
        Decimal::try_from_i128_with_scale(self.mantissa, self.scale.min(28))
            .map(|d| d.normalize())
            .unwrap_or_default()
    }

    /// The digits at the end of `buf`; returns where they start.
    fn write_to(self, buf: &mut [u8; 64]) -> usize {
        write_signed(
            self.mantissa < 0,
            self.mantissa.unsigned_abs(),
            self.scale,
            buf,
        )
    }
}

/// Two ASCII digits for each of 00..=99.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `n` as at least `min` digits (zero-padded) ending before `i`;
/// returns where they start. Two digits a step: the division chain is the
/// cost of formatting ten million lines of numbers.
fn put_u64(mut n: u64, min: u32, buf: &mut [u8; 64], mut i: usize) -> usize {
    let mut put = |i: &mut usize, pair: u64, width: usize| {
        let p = usize::try_from(pair * 2).unwrap_or(0) + 2 - width;
        *i -= width;
        if let (Some(dst), Some(src)) = (buf.get_mut(*i..*i + width), PAIRS.get(p..p + width)) {
            dst.copy_from_slice(src);
        }
    };
    let start = i;
    while n >= 100 {
        put(&mut i, n % 100, 2);
        n /= 100;
    }
    if n >= 10 {
        put(&mut i, n, 2);
    } else if n > 0 || i == start {
        put(&mut i, n, 1);
    }
    while start - i < usize::try_from(min).unwrap_or(0) {
        put(&mut i, 0, 1);
    }
    i
}

/// [`write_digits`] for a `u64` and a scale of at most 19 (every cost and
/// count Tally writes): the same text, two digits a step.
fn write_u64(n: u64, scale: u32, buf: &mut [u8; 64]) -> usize {
    let (n, scale) = strip_zeros(n, scale);
    let end = buf.len();
    if scale == 0 {
        return put_u64(n, 0, buf, end);
    }
    // All digits (at least one before the point), then the integer part
    // moved one place left for the point: no division by a power of ten
    // that is not a constant.
    let Ok(frac) = usize::try_from(scale) else {
        return write_digits(n, scale, buf);
    };
    let start = put_u64(n, scale + 1, buf, end);
    let point = end - frac;
    if start == 0 {
        return write_digits(n, scale, buf);
    }
    buf.copy_within(start..point, start - 1);
    if let Some(b) = buf.get_mut(point - 1) {
        *b = b'.';
    }
    start - 1
}

/// Drops trailing fractional zeros: `n` × 10^-`scale` normalised (zero has
/// scale 0).
fn strip_zeros<T>(mut n: T, mut scale: u32) -> (T, u32)
where
    T: Copy + PartialEq + From<u32> + std::ops::Rem<Output = T> + std::ops::Div<Output = T>,
{
    let (zero, ten) = (T::from(0), T::from(10));
    // Atto-dollar amounts end in a dozen zeros: drop them eight and four
    // at a time first.
    for (stride, pow) in [(8, 100_000_000), (4, 10_000)] {
        let p = T::from(pow);
        while scale >= stride && n % p == zero && n != zero {
            n = n / p;
            scale -= stride;
        }
    }
    while scale > 0 && n % ten == zero && n != zero {
        n = n / ten;
        scale -= 1;
    }
    if n == zero {
        scale = 0;
    }
    (n, scale)
}

/// Writes `n` × 10^-`scale`, normalised (no trailing fractional zeros), at
/// the end of `buf`; returns where it starts.
fn write_digits<T>(n: T, scale: u32, buf: &mut [u8; 64]) -> usize
where
    T: Copy
        + PartialEq
        + From<u32>
        + std::ops::Rem<Output = T>
        + std::ops::Div<Output = T>
        + TryInto<u8>,
{
    let (zero, ten) = (T::from(0), T::from(10));
    let (mut n, scale) = strip_zeros(n, scale);
    let mut i = buf.len();
    let mut digits = 0u32;
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (n % ten).try_into().unwrap_or(0);
        }
        n = n / ten;
        digits += 1;
        if digits == scale {
            i -= 1;
            if let Some(b) = buf.get_mut(i) {
                *b = b'.';
            }
            if n == zero {
                i -= 1;
                if let Some(b) = buf.get_mut(i) {
                    *b = b'0';
                }
                break;
            }
        }
        if n == zero && digits >= scale {
            break;
        }
    }
    i
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 64];
        let i = self.write_to(&mut buf);
        f.write_str(std::str::from_utf8(buf.get(i..).unwrap_or_default()).unwrap_or_default())
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn amount(out: &mut dyn RecordSink, a: Option<Amount>) {
    match a {
        Some(a) => {
            let mut buf = [0u8; 64];
            let i = a.write_to(&mut buf);
            out.number(buf.get(i..).unwrap_or_default());
        }
        None => out.plain(""),
    }
}

/// Token counts of one row, `None` where not reported.
/// Token counts of one row, `None` where not reported.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TokenCounts {
    /// Total input.
    pub input: Option<u32>,
    /// Cached input.
    pub cached_input: Option<u32>,
    /// Cache writes.
    pub cache_write: Option<u32>,
    /// Total output.
    pub output: Option<u32>,
    pub reasoning: Option<u32>,
}

impl TokenCounts {
    fn of(r: &Row) -> Self {
        let g = |k| r.tokens.get(k);
        Self {
            input: g(TokenKind::Input),
            cached_input: g(TokenKind::CachedInput),
            cache_write: g(TokenKind::CacheWrite),
            output: g(TokenKind::Output),
            reasoning: g(TokenKind::Reasoning),
        }
    }

    fn write(&self, out: &mut dyn RecordSink) {
        for v in [
            self.input,
            self.cached_input,
            self.cache_write,
            self.output,
            self.reasoning,
        ] {
            opt_int(out, v);
        }
    }
}

/// Where a row came from.
#[derive(Debug, Clone, Serialize)]
pub struct Source<'a> {
    pub file: &'a str,
    /// Line (or record) number.
    pub line: u32,
}

/// A matched pair (any pair class) in full: its matches.csv line plus both
/// rows' times, models, ids and tokens.
#[derive(Debug, Clone, Serialize)]
pub struct MatchLine<'a> {
    /// The pair as matches.csv has it.
    #[serde(flatten)]
    pub pair: PairLine<'a>,
    /// Client request start.
    pub client_ts: Ts,
    /// Gateway request start.
    pub gateway_ts: Ts,
    pub owner: &'a str,
    /// Route family.
    pub route: &'static str,
    /// Model the client asked for.
    pub requested_model: &'a str,
    /// Model the gateway says served.
    pub served_model: &'a str,
    /// Client request id.
    pub client_request_id: &'a str,
    /// Client response id.
    pub client_response_id: &'a str,
    /// Client tokens.
    pub client_tokens: TokenCounts,
    /// Gateway tokens.
    pub gateway_tokens: TokenCounts,
}

const TOKEN_COLS: [&str; 5] = [
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// One line of matches.csv: a pair, lean on purpose. At ten million pairs
/// every column costs about 100 MB; the pair's full detail is in the two
/// input files at the given lines, and pairs that disagree are spelled out
/// in discrepancies.csv.
#[derive(Debug, Clone, Serialize)]
pub struct PairLine<'a> {
    /// Pair class.
    pub class: Class,
    /// Pass that made the pair.
    pub pass: Pass,
    /// Gateway time − client time − learned offset, ms (the match residual).
    pub residual_ms: i64,
    /// Client row.
    pub client: Source<'a>,
    /// Gateway row.
    pub gateway: Source<'a>,
    /// Key name.
    pub key: &'a str,
    /// Gateway id.
    pub gateway_id: &'a str,
    /// Tally's price of the gateway row.
    pub computed_cost: Option<Amount>,
    /// Gateway-reported cost.
    pub reported_cost: Option<Amount>,
}

impl Tabular for PairLine<'_> {
    fn headers() -> &'static [&'static str] {
        &[
            "class",
            "pass",
            "residual_ms",
            "client_file",
            "client_line",
            "gateway_file",
            "gateway_line",
            "key",
            "gateway_id",
            "computed_cost",
            "reported_cost",
        ]
    }

    fn write(&self, out: &mut dyn RecordSink) {
        out.plain(self.class.name());
        out.plain(self.pass.name());
        int(out, self.residual_ms.into());
        out.text(self.client.file);
        int(out, self.client.line.into());
        out.text(self.gateway.file);
        int(out, self.gateway.line.into());
        out.text(self.key);
        out.text(self.gateway_id);
        amount(out, self.computed_cost);
        amount(out, self.reported_cost);
    }
}

/// A row of one side only (missing usage, unattributed, duplicate).
#[derive(Debug, Clone, Serialize)]
pub struct RowLine<'a> {
    /// Class of the row.
    pub class: Class,
    /// client or gateway.
    pub side: SideKind,
    pub source: Source<'a>,
    /// Request start.
    pub ts: Ts,
    /// Key name.
    pub key: &'a str,
    /// Whether the key is registered.
    pub key_registered: bool,
    pub owner: &'a str,
    /// Route family.
    pub route: &'static str,
    /// Model as the source named it (served model for gateway rows).
    pub model: &'a str,
    /// Primary id.
    pub id: &'a str,
    /// Secondary id (client response id).
    pub id2: &'a str,
    /// Whether it streamed (`None`: not said).
    pub stream: Option<bool>,
    pub tokens: TokenCounts,
    /// Tally's price (`None`: unpriced).
    pub computed_cost: Option<Amount>,
    /// Gateway-reported cost (gateway rows).
    pub reported_cost: Option<Amount>,
}

impl Tabular for RowLine<'_> {
    fn headers() -> &'static [&'static str] {
        &[
            "class",
            "side",
            "file",
            "line",
            "ts",
            "key",
            "key_registered",
            "owner",
            "route",
            "model",
            "id",
            "id2",
            "stream",
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "computed_cost",
            "reported_cost",
        ]
    }

    fn write(&self, out: &mut dyn RecordSink) {
        out.plain(self.class.name());
        out.plain(match self.side {
            SideKind::Client => "client",
            SideKind::Gateway => "gateway",
        });
        out.text(self.source.file);
        int(out, self.source.line.into());
        out.plain(&self.ts.to_string());
        out.text(self.key);
        out.plain(if self.key_registered { "true" } else { "false" });
        out.text(self.owner);
        out.plain(self.route);
        out.text(self.model);
        out.text(self.id);
        out.text(self.id2);
        out.plain(match self.stream {
            Some(true) => "true",
            Some(false) => "false",
            None => "",
        });
        self.tokens.write(out);
        amount(out, self.computed_cost);
        amount(out, self.reported_cost);
    }
}

/// One discrepancy: a pair that disagrees, a duplicate, or an unpriced row.
#[derive(Debug, Clone, Serialize)]
pub struct DiscrepancyLine<'a> {
    /// `token_mismatch`, `model_mismatch`, `cost_variance`, `duplicate`, `unpriced`.
    pub kind: &'static str,
    /// What differs, in words.
    pub detail: String,
    /// Client row, if any.
    pub client: Option<Source<'a>>,
    /// Gateway row, if any.
    pub gateway: Option<Source<'a>>,
    /// Request start.
    pub ts: Ts,
    /// Key name.
    pub key: &'a str,
    pub owner: &'a str,
    pub model: &'a str,
    /// Tally's price of the gateway row (or client row when alone).
    pub computed_cost: Option<Amount>,
    /// Gateway-reported cost.
    pub reported_cost: Option<Amount>,
}

impl Tabular for DiscrepancyLine<'_> {
    fn headers() -> &'static [&'static str] {
        &[
            "kind",
            "detail",
            "client_file",
            "client_line",
            "gateway_file",
            "gateway_line",
            "ts",
            "key",
            "owner",
            "model",
            "computed_cost",
            "reported_cost",
        ]
    }

    fn write(&self, out: &mut dyn RecordSink) {
        out.plain(self.kind);
        out.text(&self.detail);
        for src in [&self.client, &self.gateway] {
            match src {
                Some(s) => {
                    out.text(s.file);
                    int(out, s.line.into());
                }
                None => {
                    out.plain("");
                    out.plain("");
                }
            }
        }
        out.plain(&self.ts.to_string());
        out.text(self.key);
        out.text(self.owner);
        out.text(self.model);
        amount(out, self.computed_cost);
        amount(out, self.reported_cost);
    }
}

impl Tabular for crate::error::RowError {
    fn headers() -> &'static [&'static str] {
        &["file", "line", "field", "reason", "raw"]
    }

    fn write(&self, out: &mut dyn RecordSink) {
        out.text(&self.file);
        int(out, self.line.into());
        out.text(&self.field);
        out.text(&self.reason);
        out.text(&self.raw);
    }
}

impl Tabular for crate::report::OwnerCost {
    fn headers() -> &'static [&'static str] {
        &[
            "owner",
            "team",
            "service",
            "env",
            "billed_rows",
            "computed_cost",
            "reported_cost",
            "variance",
            "unpriced_rows",
            "unpriced_reported",
            "missing_usage_rows",
            "missing_usage_cost",
            "unattributed_rows",
            "unattributed_reported",
        ]
    }

    fn write(&self, out: &mut dyn RecordSink) {
        out.text(&self.owner);
        out.text(&self.team);
        out.text(&self.service);
        out.text(&self.env);
        int(out, self.billed_rows.into());
        out.plain(&self.computed_cost.to_string());
        out.plain(&self.reported_cost.to_string());
        out.plain(&self.variance.to_string());
        int(out, self.unpriced_rows.into());
        out.plain(&self.unpriced_reported.to_string());
        int(out, self.missing_usage_rows.into());
        out.plain(&self.missing_usage_cost.to_string());
        int(out, self.unattributed_rows.into());
        out.plain(&self.unattributed_reported.to_string());
    }
}

impl<'a> Reconciliation<'a> {
    fn src(&self, side: SideKind, i: usize) -> Source<'a> {
        let (s, rows) = match side {
            SideKind::Client => (self.client, &self.client.rows),
            SideKind::Gateway => (self.gateway, &self.gateway.rows),
        };
        Source {
            file: s.file_of(i),
            line: rows.get(i).map_or(0, |r| r.line),
        }
    }

    /// Every pair in full (both rows' times, models, ids and tokens), in
    /// client row order.
    pub fn matches(&self) -> impl Iterator<Item = MatchLine<'_>> {
        self.matches_in(0..self.client.rows.len())
    }

    /// Every line of matches.csv, in client row order.
    pub fn pairs(&self) -> impl Iterator<Item = PairLine<'_>> {
        self.pairs_in(0..self.client.rows.len())
    }

    /// The pairs of a range of client rows, in full (discrepancies read them).
    fn matches_in(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = MatchLine<'_>> {
        range.filter_map(move |i| {
            let (j, pair) = self.pair_at(i)?;
            let (c, g) = (self.client.rows.get(i)?, self.gateway.rows.get(j)?);
            let (crid, cresp) = self.client.ids.get(c.ids);
            Some(MatchLine {
                pair,
                client_ts: Ts(c.ts_ms),
                gateway_ts: Ts(g.ts_ms),
                owner: self.client_owner_name(i),
                route: self.route_name(SideKind::Client, i),
                requested_model: self.client.models(c).0,
                served_model: self.gateway_model_text(g),
                client_request_id: crid,
                client_response_id: cresp,
                client_tokens: TokenCounts::of(c),
                gateway_tokens: TokenCounts::of(g),
            })
        })
    }

    /// The lines of matches.csv for a range of client rows, in client row
    /// order (exports format ranges in parallel).
    pub fn pairs_in(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = PairLine<'_>> {
        range.filter_map(move |i| self.pair_at(i).map(|(_, pair)| pair))
    }

    /// Client row `i`'s partner and matches.csv line, when it has one.
    fn pair_at(&self, i: usize) -> Option<(usize, PairLine<'_>)> {
        let j = self.client_partner(i)?;
        let (c, g) = (self.client.rows.get(i)?, self.gateway.rows.get(j)?);
        let pair = PairLine {
            class: self.client_class.get(i).copied().unwrap_or(Class::Matched),
            pass: self
                .matching
                .client_pass
                .get(i)
                .copied()
                .unwrap_or(Pass::Unmatched),
            residual_ms: g.ts_ms - c.ts_ms - self.offset_of_client(i),
            client: self.src(SideKind::Client, i),
            gateway: self.src(SideKind::Gateway, j),
            key: self.client_key_name(i),
            gateway_id: self.gateway.ids.get(g.ids).0,
            computed_cost: self.gateway_cost(j).map(Amount::usd),
            reported_cost: Amount::reported(g),
        };
        Some((j, pair))
    }

    fn gateway_model_text(&self, g: &'a Row) -> &'a str {
        match self.gateway.models(g) {
            (requested, "") => requested,
            (_, served) => served,
        }
    }

    fn client_line(&self, i: usize) -> Option<RowLine<'_>> {
        let r = self.client.rows.get(i)?;
        let (a, b) = self.client.ids.get(r.ids);
        Some(RowLine {
            class: self
                .client_class
                .get(i)
                .copied()
                .unwrap_or(Class::MissingUsage),
            side: SideKind::Client,
            source: self.src(SideKind::Client, i),
            ts: Ts(r.ts_ms),
            key: self.client_key_name(i),
            key_registered: self.client_key_registered(i),
            owner: self.client_owner_name(i),
            route: self.route_name(SideKind::Client, i),
            model: self.client.models(r).0,
            id: a,
            id2: b,
            stream: r.has(flags::STREAM_KNOWN).then(|| r.has(flags::STREAM)),
            tokens: TokenCounts::of(r),
            computed_cost: self.client_cost(i).map(Amount::usd),
            reported_cost: None,
        })
    }

    fn gateway_line(&self, j: usize) -> Option<RowLine<'_>> {
        let r = self.gateway.rows.get(j)?;
        Some(RowLine {
            class: self
                .gateway_class
                .get(j)
                .copied()
                .unwrap_or(Class::Unattributed),
            side: SideKind::Gateway,
            source: self.src(SideKind::Gateway, j),
            ts: Ts(r.ts_ms),
            key: self.gateway_key_name(j),
            key_registered: self.gateway_key_registered(j),
            owner: self.gateway_owner_name(j),
            route: self.route_name(SideKind::Gateway, j),
            model: self.gateway_model_text(r),
            id: self.gateway.ids.get(r.ids).0,
            id2: "",
            stream: r.has(flags::STREAM_KNOWN).then(|| r.has(flags::STREAM)),
            tokens: TokenCounts::of(r),
            computed_cost: self.gateway_cost(j).map(Amount::usd),
            reported_cost: Amount::reported(r),
        })
    }

    /// Client rows with no gateway row.
    pub fn missing_usage(&self) -> impl Iterator<Item = RowLine<'_>> {
        (0..self.client.rows.len())
            .filter(move |&i| self.client_class.get(i) == Some(&Class::MissingUsage))
            .filter_map(move |i| self.client_line(i))
    }

    /// Gateway rows with no client row.
    pub fn unattributed(&self) -> impl Iterator<Item = RowLine<'_>> {
        (0..self.gateway.rows.len())
            .filter(move |&j| self.gateway_class.get(j) == Some(&Class::Unattributed))
            .filter_map(move |j| self.gateway_line(j))
    }

    /// Failed calls on one side only that billed nothing (client error
    /// lines the gateway never logged, gateway failure rows no client line
    /// names): neither missing usage nor unattributed money.
    pub fn failed_unbilled(&self) -> impl Iterator<Item = RowLine<'_>> {
        self.both_sides(Class::FailedUnbilled)
    }

    /// Duplicate rows of both sides.
    pub fn duplicates(&self) -> impl Iterator<Item = RowLine<'_>> {
        self.both_sides(Class::Duplicate)
    }

    /// The rows of a class, client side first.
    fn both_sides(&self, class: Class) -> impl Iterator<Item = RowLine<'_>> {
        let c = (0..self.client.rows.len())
            .filter(move |&i| self.client_class.get(i) == Some(&class))
            .filter_map(move |i| self.client_line(i));
        let g = (0..self.gateway.rows.len())
            .filter(move |&j| self.gateway_class.get(j) == Some(&class))
            .filter_map(move |j| self.gateway_line(j));
        c.chain(g)
    }

    /// Pairs that disagree, duplicates, and unpriced rows.
    pub fn discrepancies(&self) -> impl Iterator<Item = DiscrepancyLine<'_>> {
        self.disagreeing_pairs_in(0..self.client.rows.len())
            .chain(self.discrepancies_after_pairs())
    }

    /// The disagreeing pairs of client rows `range`: the first part of
    /// [`Reconciliation::discrepancies`], in pieces that can be formatted
    /// on several cores (on a bad day every pair disagrees).
    pub fn disagreeing_pairs_in(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = DiscrepancyLine<'_>> {
        // Filter on the class before building lines: most pairs agree.
        let disagreeing = range.filter(move |&i| {
            self.client_class
                .get(i)
                .is_some_and(|c| c.is_pair() && !matches!(c, Class::Matched | Class::FailedPair))
        });
        disagreeing
            .flat_map(move |i| self.matches_in(i..i + 1))
            .map(move |m| {
                let detail = match m.pair.class {
                    Class::ModelMismatch => {
                        format!("requested {}, served {}", m.requested_model, m.served_model)
                    }
                    Class::TokenMismatch => token_detail(&m),
                    Class::BilledFailure => {
                        "the application saw this call fail; the gateway billed it".to_owned()
                    }
                    Class::CostVariance => {
                        let v = m
                            .pair
                            .reported_cost
                            .map(Amount::to_decimal)
                            .unwrap_or_default()
                            - m.pair
                                .computed_cost
                                .map(Amount::to_decimal)
                                .unwrap_or_default();
                        format!(
                            "gateway reported {} vs price {} (variance {})",
                            fmt_opt(m.pair.reported_cost),
                            fmt_opt(m.pair.computed_cost),
                            v
                        )
                    }
                    _ => String::new(),
                };
                DiscrepancyLine {
                    kind: m.pair.class.name(),
                    detail,
                    ts: m.client_ts,
                    key: m.pair.key,
                    owner: m.owner,
                    model: m.served_model,
                    computed_cost: m.pair.computed_cost,
                    reported_cost: m.pair.reported_cost,
                    client: Some(m.pair.client),
                    gateway: Some(m.pair.gateway),
                }
            })
    }

    /// Duplicates and unpriced rows: the rest of
    /// [`Reconciliation::discrepancies`] after the pairs.
    pub fn discrepancies_after_pairs(&self) -> impl Iterator<Item = DiscrepancyLine<'_>> {
        let dups = self.duplicates().map(|d| DiscrepancyLine {
            kind: "duplicate",
            detail: format!(
                "{} id `{}` seen again on the {} side",
                if d.side == SideKind::Gateway {
                    "billed"
                } else {
                    "logged"
                },
                d.id,
                match d.side {
                    SideKind::Client => "client",
                    SideKind::Gateway => "gateway",
                }
            ),
            client: (d.side == SideKind::Client).then(|| d.source.clone()),
            gateway: (d.side == SideKind::Gateway).then(|| d.source.clone()),
            ts: d.ts,
            key: d.key,
            owner: d.owner,
            model: d.model,
            computed_cost: d.computed_cost,
            reported_cost: d.reported_cost,
        });
        let unpriced = (0..self.gateway.rows.len())
            .filter(move |&j| {
                self.gateway_class.get(j) != Some(&Class::Duplicate)
                    && self.gateway_cost(j).is_none()
            })
            .filter_map(move |j| self.gateway_line(j))
            .map(|d| DiscrepancyLine {
                kind: "unpriced",
                detail: format!("no price for model `{}` at {}", d.model, d.ts),
                client: None,
                gateway: Some(d.source.clone()),
                ts: d.ts,
                key: d.key,
                owner: d.owner,
                model: d.model,
                computed_cost: None,
                reported_cost: d.reported_cost,
            });
        dups.chain(unpriced)
    }

    fn client_key_registered(&self, i: usize) -> bool {
        self.key_info(self.client_key(i))
            .is_some_and(|k| k.registered)
    }

    fn gateway_key_registered(&self, j: usize) -> bool {
        self.key_info(self.gateway_key(j))
            .is_some_and(|k| k.registered)
    }
}

fn fmt_opt(d: Option<Amount>) -> String {
    d.map_or_else(|| "(unpriced)".to_owned(), |d| d.to_string())
}

fn token_detail(m: &MatchLine<'_>) -> String {
    let c = &m.client_tokens;
    let g = &m.gateway_tokens;
    if *c == TokenCounts::default() {
        return format!(
            "client logged no usage; gateway billed {} in / {} out",
            g.input.unwrap_or(0),
            g.output.unwrap_or(0)
        );
    }
    let pairs = [
        (TOKEN_COLS[0], c.input, g.input),
        (TOKEN_COLS[1], c.cached_input, g.cached_input),
        (TOKEN_COLS[2], c.cache_write, g.cache_write),
        (TOKEN_COLS[3], c.output, g.output),
        (TOKEN_COLS[4], c.reasoning, g.reasoning),
    ];
    pairs
        .iter()
        .filter_map(|(name, a, b)| match (a, b) {
            (Some(a), Some(b)) if a != b => Some(format!("{name}: client {a}, gateway {b}")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Cells(Vec<String>);

    impl RecordSink for Cells {
        fn text(&mut self, s: &str) {
            self.0.push(s.to_owned());
        }
        fn plain(&mut self, s: &str) {
            self.0.push(s.to_owned());
        }
    }

    #[test]
    fn integers_print_like_display_on_both_sides_of_u64() {
        let wide = i128::from(u64::MAX);
        for v in [
            0i128,
            7,
            -1,
            1_234_567,
            -2_000,
            wide,
            wide + 1,
            -wide - 1,
            i128::MAX,
            i128::MIN + 1,
        ] {
            let mut c = Cells(Vec::new());
            int(&mut c, v);
            assert_eq!(c.0, vec![v.to_string()]);
        }
    }

    proptest::proptest! {
        /// Every amount prints as its normalised `Decimal` does, on the
        /// two-digit path and the general one alike.
        #[test]
        fn any_amount_prints_like_its_normalised_decimal(
            m in proptest::prelude::any::<i64>(),
            wide in proptest::prelude::any::<i128>(),
            scale in 0u32..=28,
        ) {
            for m in [i128::from(m), wide >> 32, i128::from(m % 1000)] {
                let a = Amount { mantissa: m, scale };
                let d = Decimal::try_from_i128_with_scale(m, scale).unwrap().normalize();
                proptest::prop_assert_eq!(a.to_string(), d.to_string());
            }
        }
    }

    #[test]
    fn amounts_print_like_normalised_decimals() {
        for (m, scale) in [
            (0i128, 18u32),
            (6_100_000_000_000_000, 18),
            (125, 1),
            (-5, 3),
            (12_345_678_901_234_567, 21),
            (7, 0),
            (100, 2),
            (-1_000, 18),
            // Beyond u64: the u128 path.
            (123_456_789_012_345_678_901_234, 18),
            (-40_000_000_000_000_000_000, 18),
            (18_446_744_073_709_551_616, 0),
        ] {
            let a = Amount { mantissa: m, scale };
            let d = Decimal::try_from_i128_with_scale(m, scale)
                .unwrap()
                .normalize();
            assert_eq!(a.to_string(), d.to_string(), "{m}e-{scale}");
        }
    }

    #[test]
    fn every_line_writes_as_many_cells_as_headers() {
        let src = Source { file: "f", line: 1 };
        let m = PairLine {
            class: Class::Matched,
            pass: Pass::Id,
            residual_ms: -3,
            client: src.clone(),
            gateway: src.clone(),
            key: "k",
            gateway_id: "",
            computed_cost: None,
            reported_cost: None,
        };
        let mut c = Cells::default();
        m.write(&mut c);
        assert_eq!(c.0.len(), PairLine::headers().len());
        let r = RowLine {
            class: Class::MissingUsage,
            side: SideKind::Client,
            source: src.clone(),
            ts: Ts(0),
            key: "k",
            key_registered: true,
            owner: "o",
            route: "chat",
            model: "m",
            id: "",
            id2: "",
            stream: None,
            tokens: TokenCounts::default(),
            computed_cost: None,
            reported_cost: None,
        };
        let mut c = Cells::default();
        r.write(&mut c);
        assert_eq!(c.0.len(), RowLine::headers().len());
        let d = DiscrepancyLine {
            kind: "duplicate",
            detail: String::new(),
            client: None,
            gateway: Some(src),
            ts: Ts(0),
            key: "k",
            owner: "o",
            model: "m",
            computed_cost: None,
            reported_cost: None,
        };
        let mut c = Cells::default();
        d.write(&mut c);
        assert_eq!(c.0.len(), DiscrepancyLine::headers().len());
        let mut c = Cells::default();
        crate::report::OwnerCost::default().write(&mut c);
        assert_eq!(c.0.len(), crate::report::OwnerCost::headers().len());
        let e = crate::error::RowError {
            file: String::new(),
            line: 1,
            field: String::new(),
            reason: String::new(),
            raw: String::new(),
        };
        let mut c = Cells::default();
        e.write(&mut c);
        assert_eq!(c.0.len(), crate::error::RowError::headers().len());
    }
}

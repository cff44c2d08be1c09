//! Parsers: `impl Read` in, rows and row errors out.
//!
//! Every source is first *extracted* into [`Extracted`] (strings as the
//! source wrote them, with the source's field names for error messages), then
//! one function, [`build_row`], validates and normalises it. The client log
//! has its own extractor ([`client`]); every gateway export goes through the
//! mapping engine ([`mapping`]), the built-in LiteLLM and OpenRouter parsers
//! included, which are embedded mapping profiles.

pub mod client;
pub mod hint;
pub mod mapping;
mod pick;
mod project;
mod records;

use std::borrow::Cow;
use std::io::Read;

use rust_decimal::Decimal;

use crate::error::{Error, RowError};
use crate::keys::{key_token, mask_secrets};
use crate::record::{Row, Side, TokenKind, flags};
use crate::time::{DateMemo, TsFormat, Zone};

/// How much of a file is read to recognise its format.
const HEAD_BYTES: usize = 64 * 1024;

/// A value as the source wrote it, with the name of the field it came from.
#[derive(Debug, Clone)]
pub struct Val<'a> {
    /// The text.
    pub v: Cow<'a, str>,
    /// The source's field name (for error messages).
    pub name: Cow<'a, str>,
}

impl<'a> Val<'a> {
    /// A value with a static field name.
    pub fn new(v: impl Into<Cow<'a, str>>, name: &'static str) -> Self {
        Self {
            v: v.into(),
            name: Cow::Borrowed(name),
        }
    }
}

/// Fields extracted from one source row, before validation.
#[derive(Debug, Default, Clone)]
pub struct Extracted<'a> {
    /// Primary id (gateway id; client `request_id`).
    pub id: Option<Val<'a>>,
    /// Secondary id (client `response_id`).
    pub id2: Option<Val<'a>>,
    /// Request start.
    pub ts: Option<Val<'a>>,
    /// Request end.
    pub ts_end: Option<Val<'a>>,
    /// Duration in ms (when the source gives a duration, not an end time).
    pub duration_ms: Option<Val<'a>>,
    /// Key id, alias, label, hash or raw secret.
    pub key: Option<Val<'a>>,
    /// Requested model.
    pub model: Option<Val<'a>>,
    /// Served model.
    pub served_model: Option<Val<'a>>,
    /// Model variant (OpenRouter `variant`), appended as `:variant`.
    pub variant: Option<Val<'a>>,
    /// Route or operation.
    pub route: Option<Val<'a>>,
    /// Owner team.
    pub team: Option<Val<'a>>,
    /// Owner service.
    pub service: Option<Val<'a>>,
    /// Owner environment.
    pub env: Option<Val<'a>>,
    /// Free-form tags.
    pub tags: Option<Val<'a>>,
    /// Token counts in [`TokenKind`] order, in the source's semantics.
    pub tokens: [Option<Val<'a>>; 5],
    /// Whether this row's input count excludes cached reads (Anthropic).
    pub input_excludes_cached: bool,
    /// Whether this row's input count excludes cache writes (Anthropic).
    pub input_excludes_cache_write: bool,
    /// Whether this row's output count excludes reasoning.
    pub output_excludes_reasoning: bool,
    /// Reported cost, in the source's unit.
    pub cost: Option<Val<'a>>,
    /// Status: an HTTP code or a word (`success`, `error`, ...).
    pub status: Option<Val<'a>>,
    /// HTTP status code.
    pub http_status: Option<Val<'a>>,
    /// Whether the call streamed.
    pub stream: Option<Val<'a>>,
    /// Whether the gateway answered from its cache.
    pub cache_hit: Option<Val<'a>>,
    /// Whether the call was cancelled.
    pub cancelled: Option<Val<'a>>,
    /// Error text or type (failure when present).
    pub error: Option<Val<'a>>,
    /// Whether the call succeeded.
    pub succeeded: Option<Val<'a>>,
    /// The gateway's own name for the key (LiteLLM's key alias,
    /// OpenRouter's key name): shown to whoever chases the key.
    pub key_alias: Option<Val<'a>>,
}

/// Field ids: positions in [`mapping::FIELDS`], then the client's second id.
pub mod field {
    /// Primary id (gateway id; client `request_id`).
    pub const ID: usize = 0;
    /// Request start.
    pub const TIMESTAMP: usize = 1;
    /// Request end.
    pub const END_TIMESTAMP: usize = 2;
    /// Duration in ms.
    pub const DURATION_MS: usize = 3;
    pub const KEY: usize = 4;
    /// Requested model.
    pub const MODEL: usize = 5;
    /// Served model.
    pub const SERVED_MODEL: usize = 6;
    /// Model variant.
    pub const VARIANT: usize = 7;
    /// Route or operation.
    pub const ROUTE: usize = 8;
    /// Owner team.
    pub const TEAM: usize = 9;
    /// Owner service.
    pub const SERVICE: usize = 10;
    /// Owner environment.
    pub const ENV: usize = 11;
    /// Free-form tags.
    pub const TAGS: usize = 12;
    /// Token counts, in [`crate::record::TokenKind`] order from here.
    pub const TOKENS: usize = 13;
    /// Reported cost.
    pub const COST: usize = 18;
    /// Status word or code.
    pub const STATUS: usize = 19;
    /// HTTP status code.
    pub const HTTP_STATUS: usize = 20;
    /// Whether the call streamed.
    pub const STREAM: usize = 21;
    /// Whether the gateway answered from its cache.
    pub const CACHE_HIT: usize = 22;
    /// Whether the call was cancelled.
    pub const CANCELLED: usize = 23;
    /// Secondary id (client `response_id`).
    pub const ID2: usize = 24;
    /// Error text or type: present and not blank means the call failed.
    pub const ERROR: usize = 25;
    /// Whether the call succeeded (Portkey `is_success`, Cloudflare
    /// `success`): false means it failed.
    pub const SUCCEEDED: usize = 26;
    /// The gateway's own name for the key (alias or label).
    pub const KEY_ALIAS: usize = 27;
    /// Number of field ids.
    pub const COUNT: usize = 28;
}

/// One field's text, trimmed and not blank, with the name the source gave it.
#[derive(Debug, Clone, Copy)]
pub struct Got<'s> {
    /// The text.
    pub v: &'s str,
    /// The source's field name (for error messages).
    pub name: &'s str,
}

impl<'s> Got<'s> {
    /// `v` trimmed, if anything is left.
    #[inline]
    pub fn of(v: &'s str, name: &'s str) -> Option<Self> {
        let v = v.trim_ascii();
        (!v.is_empty()).then_some(Self { v, name })
    }
}

/// A row's fields, as [`build_row`] reads them. Sources answer straight from
/// their own storage (a CSV record, a JSON object), so no row is copied into
/// an intermediate struct first.
pub trait Fields {
    /// Field `f` (a [`field`] id), or `None` when absent or blank.
    fn get(&self, f: usize) -> Option<Got<'_>>;
    /// The name field `f` goes by in this source, if it has one (to report
    /// it missing).
    fn name_of(&self, f: usize) -> Option<&str>;
    /// Token semantics of the row: input excludes cache reads, input
    /// excludes cache writes, output excludes reasoning.
    fn excludes(&self) -> (bool, bool, bool) {
        (false, false, false)
    }
}

impl Extracted<'_> {
    fn slot(&self, f: usize) -> Option<&Val<'_>> {
        match f {
            field::ID => self.id.as_ref(),
            field::TIMESTAMP => self.ts.as_ref(),
            field::END_TIMESTAMP => self.ts_end.as_ref(),
            field::DURATION_MS => self.duration_ms.as_ref(),
            field::KEY => self.key.as_ref(),
            field::MODEL => self.model.as_ref(),
            field::SERVED_MODEL => self.served_model.as_ref(),
            field::VARIANT => self.variant.as_ref(),
            field::ROUTE => self.route.as_ref(),
            field::TEAM => self.team.as_ref(),
            field::SERVICE => self.service.as_ref(),
            field::ENV => self.env.as_ref(),
            field::TAGS => self.tags.as_ref(),
            field::COST => self.cost.as_ref(),
            field::STATUS => self.status.as_ref(),
            field::HTTP_STATUS => self.http_status.as_ref(),
            field::STREAM => self.stream.as_ref(),
            field::CACHE_HIT => self.cache_hit.as_ref(),
            field::CANCELLED => self.cancelled.as_ref(),
            field::ID2 => self.id2.as_ref(),
            field::ERROR => self.error.as_ref(),
            field::SUCCEEDED => self.succeeded.as_ref(),
            field::KEY_ALIAS => self.key_alias.as_ref(),
            t => self.tokens.get(t.wrapping_sub(field::TOKENS))?.as_ref(),
        }
    }
}

impl Fields for Extracted<'_> {
    fn get(&self, f: usize) -> Option<Got<'_>> {
        self.slot(f).and_then(|v| Got::of(&v.v, &v.name))
    }

    fn name_of(&self, f: usize) -> Option<&str> {
        self.slot(f).map(|v| &*v.name)
    }

    fn excludes(&self) -> (bool, bool, bool) {
        (
            self.input_excludes_cached,
            self.input_excludes_cache_write,
            self.output_excludes_reasoning,
        )
    }
}

/// Unit of a reported cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostUnit {
    /// US dollars.
    Usd,
    /// US cents (Portkey, Anthropic cost report).
    Cents,
    /// Millionths of a dollar.
    MicroUsd,
    /// Billionths of a dollar (Helicone's ClickHouse `cost`).
    NanoUsd,
}

impl CostUnit {
    fn scale(self) -> u32 {
        match self {
            CostUnit::Usd => 0,
            CostUnit::Cents => 2,
            CostUnit::MicroUsd => 6,
            CostUnit::NanoUsd => 9,
        }
    }
}

/// Source-wide rules for turning extracted text into a row.
#[derive(Debug, Clone)]
pub struct Semantics {
    /// Timestamp format.
    pub ts_format: TsFormat,
    /// Zone of naive timestamps; `None` refuses them.
    pub zone: Option<Zone>,
    /// Unit of `cost`.
    pub cost_unit: CostUnit,
    /// Route for rows whose source has none; `None` makes route required.
    pub default_route: Option<String>,
    /// Strip LiteLLM's `_cache_hit<time>` suffix from ids (and flag the hit).
    pub strip_cache_hit_suffix: bool,
    /// A row with no key names its owner's key: the registry's key for its
    /// service and environment (`key_from = "owner"`).
    pub key_from_owner: bool,
}

impl Default for Semantics {
    fn default() -> Self {
        Self {
            ts_format: TsFormat::Iso,
            zone: None,
            cost_unit: CostUnit::Usd,
            default_route: None,
            strip_cache_hit_suffix: false,
            key_from_owner: false,
        }
    }
}

type Fault = (String, String);

fn fault(v: &Got<'_>, reason: impl Into<String>) -> Fault {
    (v.name.to_owned(), reason.into())
}

fn missing(name: &str) -> Fault {
    (name.to_owned(), "missing".to_owned())
}

/// Parses a token count: a non-negative integer (`12`, `12.0`).
fn parse_count(v: &Got<'_>) -> Result<u32, Fault> {
    let t = v.v;
    // Up to nine plain digits (every count in practice): no overflow check
    // needed, no general parser.
    if !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(t.bytes().fold(0u32, |n, b| n * 10 + u32::from(b - b'0')));
    }
    parse_count_general(v)
}

/// Any other count: `12.0`, signs, spaces, out of range.
fn parse_count_general(v: &Got<'_>) -> Result<u32, Fault> {
    let t = v.v;
    if let Ok(n) = t.parse::<u64>() {
        return u32::try_from(n)
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| fault(v, format!("token count {n} is out of range")));
    }
    match t.parse::<Decimal>() {
        Ok(d) if d.is_sign_negative() => Err(fault(v, format!("negative token count `{t}`"))),
        Ok(d) if d.fract().is_zero() => u32::try_from(d)
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| fault(v, format!("token count `{t}` is out of range"))),
        Ok(_) => Err(fault(v, format!("token count `{t}` is not a whole number"))),
        Err(_) => Err(fault(v, format!("token count `{t}` is not a number"))),
    }
}

/// Parses a decimal, accepting the scientific notation floats export as.
pub fn parse_decimal(t: &str) -> Option<Decimal> {
    let t = t.trim_ascii();
    if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).ok()
    } else {
        t.parse().ok()
    }
}

/// Stores a cost written as plain digits with an optional fraction
/// (`0.0005463`, what exports write), scaled by `unit_scale` decimal places,
/// as [`Row::set_reported_cost`] would store the parsed decimal; `false` for
/// anything else (signs, exponents, very long numbers), which goes the
/// general way.
fn plain_cost(t: &str, unit_scale: u32, row: &mut Row) -> bool {
    let b = t.as_bytes();
    // One pass: digits, at most one point with digits on both sides, at
    // most 18 digits (so the mantissa fits an i64).
    if b.len() > 19 || b.first() == Some(&b'.') || b.last() == Some(&b'.') {
        return false;
    }
    let (mut m, mut digits, mut frac): (i64, u32, Option<u32>) = (0, 0, None);
    for &c in b {
        if c == b'.' {
            if frac.is_some() {
                return false;
            }
            frac = Some(0);
            continue;
        }
        let d = c.wrapping_sub(b'0');
        if d > 9 || digits == 18 {
            return false;
        }
        m = m * 10 + i64::from(d);
        digits += 1;
        if let Some(f) = frac.as_mut() {
            *f += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    let mut scale = frac.unwrap_or(0) + unit_scale;
    if scale > 28 {
        return false;
    }
    while scale > 0 && m % 10 == 0 {
        m /= 10;
        scale -= 1;
    }
    // More than nano-dollars: a binary float's noise, rounded on the
    // decimal path (`Row::set_reported_cost`).
    if scale > 9 {
        return false;
    }
    let Ok(scale) = u8::try_from(scale) else {
        return false;
    };
    row.cost_mantissa = m;
    row.cost_scale = scale;
    row.flags |= flags::HAS_COST;
    true
}

/// Words read as true or false (`hit`/`miss`: Portkey's `cache_status`).
const TRUE_WORDS: [&str; 7] = ["true", "t", "1", "yes", "y", "hit", "semantic hit"];
const FALSE_WORDS: [&str; 10] = [
    "false", "f", "0", "no", "n", "", "none", "null", "miss", "disabled",
];

/// Words of a failed call in a `status` column.
const FAILED_WORDS: [&str; 8] = [
    "failure",
    "failed",
    "error",
    "cancelled",
    "canceled",
    "timeout",
    "false",
    "0",
];

/// Case-insensitive membership without lowercasing into a new string
/// (this runs on every row of LiteLLM exports).
fn is_one_of(word: &str, words: &[&str]) -> bool {
    words.iter().any(|w| w.eq_ignore_ascii_case(word))
}

fn parse_bool(v: &Got<'_>) -> Result<bool, Fault> {
    let w = v.v;
    // The words nearly every export writes, before the lists.
    if w.eq_ignore_ascii_case("false") {
        return Ok(false);
    }
    if w.eq_ignore_ascii_case("true") || is_one_of(w, &TRUE_WORDS) {
        Ok(true)
    } else if is_one_of(w, &FALSE_WORDS) || w.eq_ignore_ascii_case("refreshed") {
        Ok(false)
    } else {
        Err(fault(v, format!("`{w}` is not true or false")))
    }
}

fn parse_ts(v: &Got<'_>, sem: &Semantics, memo: &mut DateMemo) -> Result<i64, Fault> {
    let ms = match (&sem.ts_format, sem.zone) {
        (TsFormat::Iso, zone) => crate::time::parse_iso_with(v.v, zone, memo),
        (f, zone) => f.parse_value(v.v, zone.unwrap_or(Zone::Utc)),
    }
    .map_err(|e| fault(v, format!("`{}`: {e}", v.v)))?;
    // Times are compared and subtracted (clock skew, tolerances): kept to
    // 1970..=9999 so no difference of two can overflow (an epoch of
    // i64::MIN once did, found by the fuzzer).
    if !(0..=MAX_TS_MS).contains(&ms) {
        return Err(fault(v, format!("`{}` is not between 1970 and 9999", v.v)));
    }
    Ok(ms)
}

/// 9999-12-31T23:59:59.999Z.
const MAX_TS_MS: i64 = 253_402_300_799_999;

/// LiteLLM appends `_cache_hit<unix time>` to the ids of cache hits.
fn strip_cache_hit(id: &str) -> Option<&str> {
    // A byte search first: almost no id has the suffix, and building a
    // substring searcher for every row showed in profiles.
    if !id.contains('_') {
        return None;
    }
    let i = id.rfind("_cache_hit")?;
    let tail = id.get(i + "_cache_hit".len()..)?;
    tail.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.')
        .then(|| id.get(..i))
        .flatten()
}

/// Validates and normalises one row's fields into `side`.
pub fn build_row(
    ex: &impl Fields,
    sem: &Semantics,
    side: &mut Side,
    line: u32,
) -> Result<Row, Fault> {
    use field as f;
    let missing_as = |i: usize, default: &str| missing(ex.name_of(i).unwrap_or(default));
    let mut row = Row::new(line);
    let ts = ex
        .get(f::TIMESTAMP)
        .ok_or_else(|| missing_as(f::TIMESTAMP, "ts"))?;
    row.ts_ms = parse_ts(&ts, sem, &mut side.dates)?;
    if let Some(end) = ex.get(f::END_TIMESTAMP) {
        let end_ms = parse_ts(&end, sem, &mut side.dates)?;
        if end_ms < row.ts_ms {
            return Err(fault(&end, "ends before it starts"));
        }
    } else if let Some(d) = ex.get(f::DURATION_MS) {
        // Validated (a bad value is a bad row), not kept: no report uses it.
        parse_decimal(d.v)
            .filter(|n| !n.is_sign_negative())
            .ok_or_else(|| {
                fault(
                    &d,
                    format!("duration `{}` is not a non-negative number", d.v),
                )
            })?;
    }
    row.key = match ex.get(f::KEY) {
        Some(key) => side.strings.intern(&key_token(key.v)),
        // A source that names no key (OpenTelemetry spans): the owner's,
        // which the registry resolves.
        None if sem.key_from_owner => {
            let service = ex
                .get(f::SERVICE)
                .ok_or_else(|| missing_as(f::KEY, "key"))?;
            let env = ex.get(f::ENV).map_or("", |e| e.v);
            side.strings
                .intern(&crate::keys::owner_key_token(service.v, env))
        }
        None => return Err(missing_as(f::KEY, "key")),
    };
    let served = ex.get(f::SERVED_MODEL);
    let requested = ex.get(f::MODEL);
    let variant = ex
        .get(f::VARIANT)
        .map(|v| v.v)
        .filter(|v| !v.eq_ignore_ascii_case("standard"));
    let (requested, served) = match (requested, served) {
        (None, None) => return Err(missing_as(f::MODEL, "model")),
        (r, s) => (r.or(s).map_or("", |v| v.v), s.map_or("", |v| v.v)),
    };
    let served = if served.is_empty() {
        Cow::Borrowed("")
    } else {
        with_variant(served, variant)
    };
    row.model = side.intern_models(&masked(&with_variant(requested, variant)), &masked(&served));
    let failed = call_failed(ex)?;
    if failed {
        row.flags |= flags::FAILED;
    }
    let route = match (ex.get(f::ROUTE), &sem.default_route) {
        (Some(r), _) => r.v,
        (None, Some(d)) => d.as_str(),
        // A failed call is a row without a route: LiteLLM writes one for
        // every failure, `call_type` empty (issue 17: rejected, they made
        // the client's error lines read as missing usage).
        (None, None) if failed => "",
        (None, None) => return Err(missing_as(f::ROUTE, "route")),
    };
    // Tokens: parse, then convert to Tally's semantics (input includes cache
    // reads and writes, output includes reasoning).
    let mut counts = [None; 5];
    for (i, slot) in counts.iter_mut().enumerate() {
        if let Some(v) = ex.get(f::TOKENS + i) {
            *slot = Some(parse_count(&v)?);
        }
    }
    let [input, cached, write, output, reasoning] = counts;
    // A sum past what a count holds is a bad row, never a count dropped.
    let add = |a: Option<u32>, b: Option<u32>, what: &str| match (a, b) {
        (Some(a), Some(b)) => a
            .checked_add(b)
            .filter(|n| *n < u32::MAX)
            .map(Some)
            .ok_or_else(|| (what.to_owned(), format!("{a} + {b} tokens is out of range"))),
        (a, _) => Ok(a),
    };
    let (excl_cached, excl_write, excl_reasoning) = ex.excludes();
    let input = if excl_cached {
        add(input, cached, "input_tokens")?
    } else {
        input
    };
    let input = if excl_write {
        add(input, write, "input_tokens")?
    } else {
        input
    };
    let output = if excl_reasoning {
        add(output, reasoning, "output_tokens")?
    } else {
        output
    };
    if let (Some(i), Some(c)) = (input, cached.map(|c| c.saturating_add(write.unwrap_or(0))))
        && c > i
    {
        let name = ex.name_of(f::TOKENS + 1).unwrap_or("cached_tokens");
        return Err((
            name.to_owned(),
            format!("cached and cache-write tokens ({c}) exceed input tokens ({i})"),
        ));
    }
    for (kind, v) in TokenKind::ALL
        .into_iter()
        .zip([input, cached, write, output, reasoning])
    {
        row.tokens.set(kind, v);
    }
    if let Some(c) = ex.get(f::COST)
        && !plain_cost(c.v, sem.cost_unit.scale(), &mut row)
    {
        let d = parse_decimal(c.v)
            .ok_or_else(|| fault(&c, format!("cost `{}` is not a number", c.v)))?;
        if d.is_sign_negative() {
            return Err(fault(&c, format!("negative cost `{}`", c.v)));
        }
        let mut usd = d;
        usd.set_scale(d.scale() + sem.cost_unit.scale())
            .map_err(|_| fault(&c, "cost has too many decimal places"))?;
        if !row.set_reported_cost(usd) {
            return Err(fault(&c, format!("cost `{}` is out of range", c.v)));
        }
    }
    if let Some(s) = ex.get(f::STREAM) {
        row.flags |= flags::STREAM_KNOWN;
        if parse_bool(&s)? {
            row.flags |= flags::STREAM;
        }
    }
    if let Some(c) = ex.get(f::CACHE_HIT)
        && parse_bool(&c)?
    {
        row.flags |= flags::CACHE_HIT;
    }
    let mut id = ex.get(f::ID).map_or("", |v| v.v);
    if sem.strip_cache_hit_suffix
        && let Some(stripped) = strip_cache_hit(id)
    {
        id = stripped;
        row.flags |= flags::CACHE_HIT;
    }
    let id2 = ex.get(f::ID2).map_or("", |v| v.v);
    let id2 = if id2 == id { "" } else { id2 };
    let (id, id2) = (masked(id), masked(id2));
    row.ids = side.ids.push(&id, &id2).ok_or_else(|| {
        (
            "request_id".to_owned(),
            "id longer than 4095 bytes".to_owned(),
        )
    })?;
    let labels =
        [f::TEAM, f::SERVICE, f::ENV, f::TAGS].map(|i| masked(ex.get(i).map_or("", |v| v.v)));
    let alias = masked(ex.get(f::KEY_ALIAS).map_or("", |v| v.v));
    row.route = side.intern_route(
        &masked(route),
        labels.each_ref().map(|l| l.as_ref()),
        &alias,
    );
    Ok(row)
}

/// A field with any raw secret in it masked (`sk-…` and its last 4): a
/// key pasted into a team, a tag, an id or a model name is never stored
/// or reported (only the key field is fingerprinted).
fn masked(s: &str) -> Cow<'_, str> {
    // Every field of every row passes here: most are shorter than any
    // secret, and the rest take one scan (`keys::may_hold_secret`).
    if crate::keys::may_hold_secret(s) {
        Cow::Owned(mask_secrets(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether a row says its call failed: an HTTP status of 400 or more or a
/// failure word such as LiteLLM's `failure` (`http_status`, else `status`),
/// an `error` that is not `null`/`none`/`false`, `succeeded` false
/// (Portkey's `is_success`), or `cancelled` true (OpenRouter). A value that
/// is not a boolean where one is due is a fault of the row.
fn call_failed(ex: &impl Fields) -> Result<bool, Fault> {
    let by_status = ex
        .get(field::HTTP_STATUS)
        .or_else(|| ex.get(field::STATUS))
        .is_some_and(|s| match s.v.parse::<u16>() {
            Ok(code) => code >= 400,
            // `success` on nearly every LiteLLM row: settled in one compare.
            Err(_) => !s.v.eq_ignore_ascii_case("success") && is_one_of(s.v, &FAILED_WORDS),
        });
    let by_error = ex.get(field::ERROR).is_some_and(|e| !is_no_error(e.v));
    let not_succeeded = match ex.get(field::SUCCEEDED) {
        Some(s) => !parse_bool(&s)?,
        None => false,
    };
    let cancelled = match ex.get(field::CANCELLED) {
        Some(c) => parse_bool(&c)?,
        None => false,
    };
    Ok(by_status || by_error || not_succeeded || cancelled)
}

/// Whether an error field's value says there was none (loggers write
/// `null`, `None` or `false` rather than leave it out).
fn is_no_error(v: &str) -> bool {
    is_one_of(v, &["null", "none", "false", "0", "{}", "[]"])
}

/// OpenRouter moves the `:variant` the client sent into its own column.
fn with_variant<'x>(model: &'x str, variant: Option<&str>) -> Cow<'x, str> {
    match variant {
        Some(var) if !model.contains(':') => Cow::Owned(format!("{model}:{var}")),
        _ => Cow::Borrowed(model),
    }
}

/// Accumulates one file's rows and rejects into a side.
pub(crate) struct FileSink<'s> {
    side: &'s mut Side,
    file: String,
    first_row: usize,
    read: u64,
    rejected: u64,
    lines: u64,
    open_quote_at_end: bool,
    not_usage: u64,
}

impl<'s> FileSink<'s> {
    pub(crate) fn new(side: &'s mut Side, file: &str) -> Self {
        let first_row = side.rows.len();
        Self {
            side,
            file: file.to_owned(),
            first_row,
            read: 0,
            rejected: 0,
            lines: 0,
            open_quote_at_end: false,
            not_usage: 0,
        }
    }

    /// Validates and keeps a row, or keeps the reject.
    pub(crate) fn row(
        &mut self,
        ex: &impl Fields,
        sem: &Semantics,
        line: u64,
        raw: impl FnOnce() -> String,
    ) {
        self.read += 1;
        let l32 = u32::try_from(line).unwrap_or(u32::MAX);
        match build_row(ex, sem, self.side, l32) {
            Ok(r) => {
                self.side.rows.push(r);
                if let Some(raws) = &mut self.side.raws {
                    raws.push(mask_secrets(&raw()));
                }
            }
            Err((field, reason)) => self.push_reject(line, &field, &reason, raw()),
        }
    }

    /// Keeps a CSV record that is not UTF-8 as a reject naming its column;
    /// says whether it was one.
    pub(crate) fn rejected_if_not_utf8(
        &mut self,
        rec: &records::Record<'_>,
        header: &[String],
    ) -> bool {
        let Some(bad) = rec.bad_utf8 else {
            return false;
        };
        let name = header.get(bad).map_or("(row)", String::as_str);
        self.reject(rec.line, name, "not valid UTF-8", rec.raw_text());
        true
    }

    /// Keeps a row that could not even be extracted.
    pub(crate) fn reject(&mut self, line: u64, field: &str, reason: &str, raw: String) {
        self.read += 1;
        self.push_reject(line, field, reason, raw);
    }

    fn push_reject(&mut self, line: u64, field: &str, reason: &str, raw: String) {
        self.rejected += 1;
        self.side.rejects.push(RowError {
            file: self.file.clone(),
            line,
            field: field.to_owned(),
            reason: mask_secrets(reason),
            raw: mask_secrets(&raw),
        });
    }

    /// How far the reader went: physical lines, and whether the input ended
    /// inside a quoted field.
    pub(crate) fn extent(&mut self, lines: u64, open_quote_at_end: bool) {
        self.lines = lines;
        self.open_quote_at_end = open_quote_at_end;
    }

    /// Records passed over as not usage (see [`crate::record::FileInfo::not_usage`]).
    pub(crate) fn not_usage(&mut self, n: u64) {
        self.not_usage += n;
    }

    /// Records the file in the side.
    pub(crate) fn finish(self, format: &str) {
        self.side.files.push(crate::record::FileInfo {
            name: self.file,
            format: format.to_owned(),
            first_row: self.first_row,
            read: self.read,
            rejected: self.rejected,
            not_usage: self.not_usage,
            lines: self.lines,
            open_quote_at_end: self.open_quote_at_end,
        });
    }
}

/// Each reject of a side as (line, field), for tests.
#[cfg(test)]
pub(crate) fn reject_fields(side: &Side) -> Vec<(u64, &str)> {
    side.rejects
        .iter()
        .map(|r| (r.line, r.field.as_str()))
        .collect()
}

/// Reads the head of a stream for format detection and gives back a reader
/// that still yields the whole stream.
pub fn peek(mut r: impl Read, file: &str) -> Result<(Vec<u8>, impl Read), Error> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut r)
        .take(u64::try_from(HEAD_BYTES).unwrap_or(65_536))
        .read_to_end(&mut head)
        .map_err(|e| Error::Read {
            file: file.to_owned(),
            detail: e.to_string(),
        })?;
    Ok((head.clone(), std::io::Cursor::new(head).chain(r)))
}

/// JSON Lines, one object at a time. A line that is not UTF-8, not JSON or
/// not an object is kept in `sink` as a reject on its line, like any bad
/// row, rather than failing the whole file.
pub(crate) struct JsonLines<R> {
    rdr: std::io::BufReader<R>,
    buf: Vec<u8>,
    line: u64,
}

impl<R: Read> JsonLines<R> {
    pub(crate) fn new(r: R) -> Self {
        Self {
            rdr: std::io::BufReader::with_capacity(1 << 20, r),
            buf: Vec::new(),
            line: 0,
        }
    }

    /// The next line with text on it, as UTF-8 ([`JsonLines::current`]):
    /// its number. A line that is not UTF-8 is kept in `sink` as a reject.
    pub(crate) fn next_line(&mut self, sink: &mut FileSink<'_>) -> std::io::Result<Option<u64>> {
        loop {
            self.buf.clear();
            if std::io::BufRead::read_until(&mut self.rdr, b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            let bytes = self.buf.trim_ascii();
            if bytes.is_empty() {
                continue;
            }
            if simdutf8::basic::from_utf8(bytes).is_err() {
                sink.reject(self.line, "(row)", "not valid UTF-8", self.text());
                continue;
            }
            return Ok(Some(self.line));
        }
    }

    /// The line [`JsonLines::next_line`] returned, trimmed, as bytes
    /// (already checked to be UTF-8).
    pub(crate) fn current_bytes(&self) -> &[u8] {
        self.buf.trim_ascii()
    }

    /// The line [`JsonLines::next_line`] returned, trimmed.
    pub(crate) fn current(&self) -> &str {
        simdutf8::basic::from_utf8(self.buf.trim_ascii()).unwrap_or_default()
    }

    /// `text` (the current line, number `line`) parsed as a tree; `None`
    /// after keeping it in `sink` as a reject when it is not a JSON object.
    pub(crate) fn object(
        &self,
        text: &str,
        line: u64,
        sink: &mut FileSink<'_>,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(obj)) => Some(obj),
            Ok(_) => {
                sink.reject(line, "(row)", "not a JSON object", self.text());
                None
            }
            Err(e) => {
                sink.reject(line, "(row)", &format!("invalid JSON: {e}"), self.text());
                None
            }
        }
    }

    /// The next object: its line number and the parsed object; rows that
    /// are not UTF-8 or not a JSON object are kept in `sink` as rejects.
    pub(crate) fn next_object(
        &mut self,
        sink: &mut FileSink<'_>,
    ) -> std::io::Result<Option<(u64, serde_json::Value)>> {
        while let Some(line) = self.next_line(sink)? {
            if let Some(obj) = self.object(self.current(), line, sink) {
                return Ok(Some((line, serde_json::Value::Object(obj))));
            }
        }
        Ok(None)
    }

    /// Physical lines read so far.
    pub(crate) fn lines(&self) -> u64 {
        self.line
    }

    /// The current line's text, trimmed (lossy if it is not UTF-8), for a
    /// reject.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(self.buf.trim_ascii()).into_owned()
    }
}

/// First non-blank byte of a head (after a UTF-8 BOM).
pub(crate) fn first_byte(head: &[u8]) -> Option<u8> {
    let h = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    h.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// The CSV header of a head, trimmed, if it looks like one.
pub(crate) fn csv_header(head: &[u8]) -> Vec<String> {
    let h = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(h);
    rdr.records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(|s| s.trim_ascii().to_owned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SideKind;

    #[test]
    fn cache_hit_suffix() {
        assert_eq!(
            strip_cache_hit("chatcmpl-abc_cache_hit1732000000.123"),
            Some("chatcmpl-abc")
        );
        assert_eq!(strip_cache_hit("chatcmpl-abc"), None);
        assert_eq!(strip_cache_hit("x_cache_hitme"), None);
    }

    proptest::proptest! {
        /// The short path for plain digits answers as the general one.
        #[test]
        fn plain_counts_read_as_the_general_path_reads_them(t in "[0-9]{1,12}|[0-9. +-]{1,6}") {
            let v = Got { v: &t, name: "t" };
            proptest::prop_assert_eq!(parse_count(&v), parse_count_general(&v));
        }
    }

    #[test]
    fn counts() {
        let v = |s: &'static str| Got { v: s, name: "t" };
        assert_eq!(parse_count(&v("12")).unwrap(), 12);
        assert_eq!(parse_count(&v("12.0")).unwrap(), 12);
        assert!(parse_count(&v("-1")).unwrap_err().1.contains("negative"));
        assert!(parse_count(&v("1.5")).unwrap_err().1.contains("whole"));
        assert!(
            parse_count(&v("ten"))
                .unwrap_err()
                .1
                .contains("not a number")
        );
        assert!(
            parse_count(&v("99999999999"))
                .unwrap_err()
                .1
                .contains("range")
        );
    }

    #[test]
    fn anthropic_semantics_add_cache_to_input() {
        let mut side = Side::new(SideKind::Client);
        let ex = Extracted {
            ts: Some(Val::new("2026-11-20T10:00:00Z", "ts")),
            key: Some(Val::new("k", "key")),
            model: Some(Val::new("claude-sonnet-4", "model")),
            route: Some(Val::new("/v1/messages", "route")),
            tokens: [
                Some(Val::new("100", "usage.input_tokens")),
                Some(Val::new("1000", "usage.cache_read_input_tokens")),
                Some(Val::new("50", "usage.cache_creation_input_tokens")),
                Some(Val::new("20", "usage.output_tokens")),
                None,
            ],
            input_excludes_cached: true,
            input_excludes_cache_write: true,
            ..Default::default()
        };
        let row = build_row(&ex, &Semantics::default(), &mut side, 1).unwrap();
        assert_eq!(row.tokens.get(TokenKind::Input), Some(1150));
        assert_eq!(row.tokens.get(TokenKind::CachedInput), Some(1000));
    }

    proptest::proptest! {
        /// The plain-digits cost path stores exactly what the decimal path
        /// stores, for every unit; anything it declines goes that way.
        #[test]
        fn plain_costs_store_what_the_decimal_path_stores(
            t in "[0-9]{0,20}(\\.[0-9]{0,12})?|[0-9.]{0,8}",
            unit in proptest::sample::select(vec![0u32, 2, 6, 9]),
        ) {
            let mut fast = Row::new(1);
            if plain_cost(&t, unit, &mut fast) {
                let mut d = parse_decimal(&t).unwrap();
                d.set_scale(d.scale() + unit).unwrap();
                let mut slow = Row::new(1);
                proptest::prop_assert!(slow.set_reported_cost(d));
                proptest::prop_assert_eq!(
                    (fast.cost_mantissa, fast.cost_scale, fast.flags),
                    (slow.cost_mantissa, slow.cost_scale, slow.flags)
                );
            } else {
                proptest::prop_assert_eq!(fast.flags, 0);
            }
        }
    }

    #[test]
    fn cost_units_are_exact() {
        let mut side = Side::new(SideKind::Gateway);
        let mut ex = Extracted {
            ts: Some(Val::new("2026-11-20T10:00:00Z", "created_at")),
            key: Some(Val::new("k", "key")),
            model: Some(Val::new("m", "model")),
            route: Some(Val::new("chat", "route")),
            cost: Some(Val::new("12.5", "cost")),
            ..Default::default()
        };
        let sem = Semantics {
            cost_unit: CostUnit::Cents,
            ..Semantics::default()
        };
        let row = build_row(&ex, &sem, &mut side, 1).unwrap();
        assert_eq!(
            row.reported_cost().unwrap(),
            "0.125".parse::<Decimal>().unwrap()
        );
        ex.cost = Some(Val::new("1.2345e-05", "spend"));
        let row = build_row(&ex, &Semantics::default(), &mut side, 2).unwrap();
        assert_eq!(
            row.reported_cost().unwrap(),
            "0.000012345".parse::<Decimal>().unwrap()
        );
    }
}

//! The dated price catalog and exact row costing.
//!
//! Prices are per million tokens with at most nine decimal places, kept as
//! integer nano-dollars per million. A row's cost is then an exact integer in
//! atto-dollars (10⁻¹⁸ USD): `tokens × nano-per-million` is in units of
//! 10⁻¹⁵ USD, scaled by 1000. Integer arithmetic keeps pricing exact and fast
//! enough for ten million rows; values become `Decimal` at presentation.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::Error;
use crate::record::{TokenKind, Tokens};

/// An exact amount of US dollars in atto-dollars (10⁻¹⁸ USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub i128);

/// Decimal places of [`Usd`].
pub const USD_SCALE: u32 = 18;

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(0);

    /// Exact conversion from a decimal; `None` beyond 18 places or range.
    pub fn from_decimal(d: Decimal) -> Option<Usd> {
        let d = d.normalize();
        let m = d.mantissa();
        let scale = d.scale();
        if scale > USD_SCALE {
            return None;
        }
        m.checked_mul(10i128.checked_pow(USD_SCALE - scale)?)
            .map(Usd)
    }

    /// A reported cost given as mantissa and scale, rounded half-even to
    /// 10⁻¹⁸ when the text had more places (float noise in float exports).
    pub fn from_parts(mantissa: i64, scale: u8) -> Usd {
        let m = i128::from(mantissa);
        let s = u32::from(scale);
        if s <= USD_SCALE {
            Usd(m * 10i128.pow(USD_SCALE - s))
        } else {
            let d = Decimal::new(mantissa, s).round_dp(USD_SCALE);
            Usd::from_decimal(d).unwrap_or(Usd(0))
        }
    }

    /// Exact decimal value (`Decimal` holds 28 digits: up to 7.9e10 USD at
    /// this scale, saturating beyond, which no single report reaches).
    pub fn to_decimal(self) -> Decimal {
        let clamped = self.0.clamp(-(1i128 << 95), 1i128 << 95);
        Decimal::try_from_i128_with_scale(clamped, USD_SCALE)
            .map(|d| d.normalize())
            .unwrap_or_default()
    }

    /// Saturating sum.
    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// Saturating difference.
    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }

    /// Absolute value.
    pub fn abs(self) -> Usd {
        Usd(self.0.saturating_abs())
    }
}

/// One catalog entry: a model pattern, when it applies from, and its prices.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// Family name or a glob with `*` (`claude-*`).
    pub model: String,
    /// First millisecond (UTC) at which the price applies.
    pub effective_from_ms: i64,
    /// Nano-dollars per million input tokens (uncached).
    pub input: i128,
    /// Nano-dollars per million cached input tokens.
    pub cached_input: i128,
    /// Nano-dollars per million cache-write tokens.
    pub cache_write: i128,
    /// Nano-dollars per million output tokens.
    pub output: i128,
    /// Nano-dollars per million reasoning tokens, when priced apart from output.
    pub reasoning: Option<i128>,
}

impl Price {
    /// Exact cost of a row's tokens. Cached reads and cache writes are part of
    /// `input`; reasoning is part of `output` and billed as output unless the
    /// entry prices it separately.
    pub fn cost(&self, t: &Tokens) -> Usd {
        let n = |k| i128::from(t.or_zero(k));
        let input = n(TokenKind::Input);
        let cached = n(TokenKind::CachedInput);
        let write = n(TokenKind::CacheWrite);
        let uncached = (input - cached - write).max(0);
        let output = n(TokenKind::Output);
        let (plain_out, reasoning_part) = match self.reasoning {
            Some(rp) => {
                let r = n(TokenKind::Reasoning).min(output);
                (output - r, r * rp)
            }
            None => (output, 0),
        };
        let femto = uncached * self.input
            + cached * self.cached_input
            + write * self.cache_write
            + plain_out * self.output
            + reasoning_part;
        // nano-per-million × tokens = 10⁻¹⁵ USD; atto = ×1000.
        Usd(femto.saturating_mul(1000))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Text(String),
    Float(f64),
    Int(i64),
}

impl Num {
    fn text(&self) -> String {
        match self {
            // toml gives floats as f64; the shortest round-trip text is the
            // literal the user wrote (`2.5`, `0.15`), parsed exactly below.
            Num::Float(f) => f.to_string(),
            Num::Int(i) => i.to_string(),
            Num::Text(s) => s.trim().to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    model: String,
    effective_from: toml::Value,
    input: Num,
    #[serde(default)]
    cached_input: Option<Num>,
    #[serde(default)]
    cache_write: Option<Num>,
    output: Num,
    #[serde(default)]
    reasoning: Option<Num>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default = "usd")]
    currency: String,
    #[serde(default)]
    price: Vec<RawPrice>,
}

fn usd() -> String {
    "USD".to_owned()
}

/// The price catalog.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    /// Currency (USD: gateways report USD).
    pub currency: String,
    /// Entries in file order.
    pub entries: Vec<Price>,
}

fn nano_per_million(v: &Num, file: &str, what: &str) -> Result<i128, Error> {
    let text = v.text();
    let d: Decimal = text
        .parse()
        .map_err(|_| Error::invalid(file, format!("{what}: `{text}` is not a decimal number")))?;
    if d.is_sign_negative() {
        return Err(Error::invalid(
            file,
            format!("{what}: `{text}` is negative"),
        ));
    }
    let d = d.normalize();
    if d.scale() > 9 {
        return Err(Error::invalid(
            file,
            format!("{what}: `{text}` has more than 9 decimal places per million tokens"),
        ));
    }
    // Bounded, so that a row's cost (five token counts of at most 2^32
    // times a price, in femto-dollars) can never overflow `i128`.
    if d > MAX_PER_MILLION {
        return Err(Error::invalid(
            file,
            format!(
                "{what}: `{text}` is over the largest price, ${MAX_PER_MILLION} per million tokens"
            ),
        ));
    }
    d.checked_mul(Decimal::from(1_000_000_000u64))
        .and_then(|n| i128::try_from(n).ok())
        .ok_or_else(|| Error::invalid(file, format!("{what}: `{text}` is out of range")))
}

/// The largest price per million tokens a catalog may state: a billion
/// dollars, far above any real model and low enough that costing stays
/// exact integer arithmetic with no possible overflow.
pub const MAX_PER_MILLION: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

fn effective_ms(v: &toml::Value, file: &str, what: &str) -> Result<i64, Error> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            return Err(Error::invalid(
                file,
                format!("{what}: effective_from `{other}` is not a date"),
            ));
        }
    };
    crate::time::parse_date_or_iso(&text)
        .map_err(|e| Error::invalid(file, format!("{what}: effective_from {e}")))
}

impl PriceBook {
    /// Parses the TOML catalog.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, Error> {
        let raw: RawCatalog =
            toml::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        if !raw.currency.eq_ignore_ascii_case("USD") {
            return Err(Error::invalid(
                file,
                format!(
                    "currency `{}`: only USD is supported (gateways report USD)",
                    raw.currency
                ),
            ));
        }
        let mut entries = Vec::with_capacity(raw.price.len());
        let mut seen = HashMap::new();
        for (i, p) in raw.price.iter().enumerate() {
            let what = format!("price #{} (`{}`)", i + 1, p.model);
            let model = p.model.trim().to_ascii_lowercase();
            if model.is_empty() {
                return Err(Error::invalid(file, format!("{what}: `model` is empty")));
            }
            let input = nano_per_million(&p.input, file, &format!("{what} input"))?;
            let opt = |v: &Option<Num>, name: &str| -> Result<Option<i128>, Error> {
                v.as_ref()
                    .map(|v| nano_per_million(v, file, &format!("{what} {name}")))
                    .transpose()
            };
            let price = Price {
                effective_from_ms: effective_ms(&p.effective_from, file, &what)?,
                input,
                cached_input: opt(&p.cached_input, "cached_input")?.unwrap_or(input),
                cache_write: opt(&p.cache_write, "cache_write")?.unwrap_or(input),
                output: nano_per_million(&p.output, file, &format!("{what} output"))?,
                reasoning: opt(&p.reasoning, "reasoning")?,
                model,
            };
            if let Some(prev) = seen.insert((price.model.clone(), price.effective_from_ms), i) {
                return Err(Error::invalid(
                    file,
                    format!(
                        "{what}: same model and effective_from as price #{}",
                        prev + 1
                    ),
                ));
            }
            entries.push(price);
        }
        Ok(Self {
            currency: "USD".to_owned(),
            entries,
        })
    }

    /// Reads LiteLLM's `model_prices_and_context_window.json` (USD per
    /// token, as JSON numbers) as catalog entries effective from
    /// `effective_from_ms` (the file carries no dates). Provider-prefixed
    /// names are kept as they are (`azure/gpt-4o` costs other than
    /// `gpt-4o`, and a row served as `azure/gpt-4o` is priced by its exact
    /// name first); only entries priced per token for input and output are
    /// taken, and the second value counts the entries left out.
    pub fn from_litellm_json(
        text: &str,
        file: &str,
        effective_from_ms: i64,
    ) -> Result<(Self, usize), Error> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::invalid(file, "not a JSON object of models"))?;
        let per_million = |m: &serde_json::Map<String, serde_json::Value>,
                           name: &str,
                           what: &str|
         -> Result<Option<i128>, Error> {
            let Some(n) = m.get(name) else {
                return Ok(None);
            };
            let Some(f) = n.as_f64() else {
                return Err(Error::invalid(
                    file,
                    format!("{what}: `{name}` is not a number"),
                ));
            };
            // The shortest round-trip text of the float is the literal the
            // file wrote (2.5e-06 -> 0.0000025), then exact decimal maths.
            let per_token = Num::Float(f);
            let d: Decimal = per_token
                .text()
                .parse()
                .map_err(|_| Error::invalid(file, format!("{what}: `{name}` is not a number")))?;
            let per_m = d
                .checked_mul(Decimal::from(1_000_000u32))
                .ok_or_else(|| Error::invalid(file, format!("{what}: `{name}` is out of range")))?;
            let per_m = Num::Text(per_m.normalize().to_string());
            nano_per_million(&per_m, file, &format!("{what} {name}")).map(Some)
        };
        let mut entries = Vec::new();
        let mut skipped = 0usize;
        let mut names: Vec<&String> = obj.keys().collect();
        names.sort();
        for name in names {
            let Some(m) = obj.get(name).and_then(|v| v.as_object()) else {
                skipped += 1;
                continue;
            };
            if name == "sample_spec" {
                skipped += 1;
                continue;
            }
            let what = format!("model `{name}`");
            let (Some(input), Some(output)) = (
                per_million(m, "input_cost_per_token", &what)?,
                per_million(m, "output_cost_per_token", &what)?,
            ) else {
                skipped += 1;
                continue;
            };
            entries.push(Price {
                model: name.trim().to_ascii_lowercase(),
                effective_from_ms,
                input,
                cached_input: per_million(m, "cache_read_input_token_cost", &what)?
                    .unwrap_or(input),
                cache_write: per_million(m, "cache_creation_input_token_cost", &what)?
                    .unwrap_or(input),
                output,
                reasoning: per_million(m, "output_cost_per_reasoning_token", &what)?,
            });
        }
        Ok((
            Self {
                currency: "USD".to_owned(),
                entries,
            },
            skipped,
        ))
    }

    /// Whether an entry names `model` itself (not through a glob).
    pub fn prices_exactly(&self, model: &str) -> bool {
        self.entries.iter().any(|p| p.model == model)
    }

    /// The entries that apply to a family, as a schedule sorted by
    /// `effective_from`. An exact name beats a glob; among globs the longest
    /// pattern wins.
    pub fn schedule(&self, family: &str) -> Vec<Price> {
        let exact: Vec<&Price> = self.entries.iter().filter(|p| p.model == family).collect();
        let chosen = if exact.is_empty() {
            let best_len = self
                .entries
                .iter()
                .filter(|p| p.model.contains('*') && glob(&p.model, family))
                .map(|p| p.model.len())
                .max();
            match best_len {
                Some(len) => self
                    .entries
                    .iter()
                    .filter(|p| {
                        p.model.len() == len && p.model.contains('*') && glob(&p.model, family)
                    })
                    .collect(),
                None => Vec::new(),
            }
        } else {
            exact
        };
        let mut out: Vec<Price> = chosen.into_iter().cloned().collect();
        out.sort_by_key(|p| p.effective_from_ms);
        out
    }
}

/// Price in force at `ts_ms` in a schedule from [`PriceBook::schedule`].
pub fn price_at(schedule: &[Price], ts_ms: i64) -> Option<&Price> {
    let i = schedule.partition_point(|p| p.effective_from_ms <= ts_ms);
    i.checked_sub(1).and_then(|i| schedule.get(i))
}

/// Whether `s` matches `pattern`, where `*` matches any run of characters
/// (the catalog's and the contracts' model patterns).
pub fn glob_matches(pattern: &str, s: &str) -> bool {
    glob(pattern, s)
}

/// `*` matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return pattern == s;
    }
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let Some(mut rest) = s.get(first.len()..s.len() - last.len()) else {
        return false;
    };
    for mid in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
        match rest.find(mid).and_then(|i| rest.get(i + mid.len()..)) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn litellm_prices_are_exact_per_million_and_skip_what_they_cannot_price() {
        let json = r#"{
            "sample_spec": {"input_cost_per_token": 0},
            "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                       "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai"},
            "azure/gpt-4o": {"input_cost_per_token": 5e-06, "output_cost_per_token": 1.5e-05},
            "dall-e-3": {"output_cost_per_image": 0.04}
        }"#;
        let (book, skipped) = PriceBook::from_litellm_json(json, "p.json", 7).unwrap();
        assert_eq!(skipped, 2);
        assert_eq!(book.entries.len(), 2);
        assert_eq!(book.entries[0].model, "azure/gpt-4o");
        assert_eq!(book.entries[0].input, 5_000_000_000);
        let p = &book.entries[1];
        assert_eq!(p.model, "gpt-4o");
        assert_eq!(p.effective_from_ms, 7);
        assert_eq!(p.input, 2_500_000_000);
        assert_eq!(p.cached_input, 1_250_000_000);
        assert_eq!(p.cache_write, 2_500_000_000);
        assert_eq!(p.output, 10_000_000_000);
        let bad = r#"{"m": {"input_cost_per_token": "x", "output_cost_per_token": 1}}"#;
        let e = PriceBook::from_litellm_json(bad, "p.json", 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.json") && e.contains("input_cost_per_token"),
            "{e}"
        );
    }

    use super::*;

    const CATALOG: &str = r#"
currency = "USD"
[[price]]
model = "gpt-4o"
effective_from = "2026-01-01"
input = 2.5
cached_input = "1.25"
output = 10
[[price]]
model = "gpt-4o"
effective_from = "2026-11-20T12:00:00Z"
input = "2.00"
output = "8.00"
[[price]]
model = "claude-*"
effective_from = 2026-01-01
input = 3
cache_write = 3.75
cached_input = 0.3
output = 15
[[price]]
model = "o3"
effective_from = "2026-01-01"
input = 2
output = 8
reasoning = 4
"#;

    fn tokens(input: u32, cached: u32, write: u32, output: u32, reasoning: u32) -> Tokens {
        let mut t = Tokens::default();
        t.set(TokenKind::Input, Some(input));
        t.set(TokenKind::CachedInput, Some(cached));
        t.set(TokenKind::CacheWrite, Some(write));
        t.set(TokenKind::Output, Some(output));
        t.set(TokenKind::Reasoning, Some(reasoning));
        t
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn exact_costs_with_cache_and_price_change() {
        let book = PriceBook::from_toml(CATALOG, "prices.toml").unwrap();
        let s = book.schedule("gpt-4o");
        let morning = crate::time::parse_iso("2026-11-20T11:59:59.999Z", None).unwrap();
        let noon = crate::time::parse_iso("2026-11-20T12:00:00Z", None).unwrap();
        let t = tokens(1000, 400, 0, 500, 0);
        // 600 × 2.5 + 400 × 1.25 + 500 × 10 per million = 0.007
        assert_eq!(
            price_at(&s, morning).unwrap().cost(&t).to_decimal(),
            dec("0.007")
        );
        // After the change: cached defaults to the input price. 1000×2 + 500×8 = 0.006
        assert_eq!(
            price_at(&s, noon).unwrap().cost(&t).to_decimal(),
            dec("0.006")
        );
        // Before the first price: unpriced.
        assert!(price_at(&s, 0).is_none());
    }

    #[test]
    fn glob_and_reasoning() {
        let book = PriceBook::from_toml(CATALOG, "prices.toml").unwrap();
        let c = book.schedule("claude-sonnet-4");
        let t = tokens(10_000, 2_000, 1_000, 100, 0);
        // 7000×3 + 2000×0.3 + 1000×3.75 + 100×15 per million
        assert_eq!(
            price_at(&c, i64::MAX).unwrap().cost(&t).to_decimal(),
            dec("0.02685")
        );
        let o3 = book.schedule("o3");
        let t = tokens(0, 0, 0, 1000, 600);
        // 400 × 8 + 600 × 4 per million
        assert_eq!(
            price_at(&o3, i64::MAX).unwrap().cost(&t).to_decimal(),
            dec("0.0056")
        );
        assert!(book.schedule("mistral-large").is_empty());
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_entry_named() {
        for (text, needle) in [
            (
                "[[price]]\nmodel='x'\neffective_from='2026-01-01'\ninput='abc'\noutput=1\n",
                "price #1",
            ),
            (
                "[[price]]\nmodel='x'\neffective_from='soon'\ninput=1\noutput=1\n",
                "effective_from",
            ),
            (
                "[[price]]\nmodel='x'\neffective_from='2026-01-01'\ninput=-1\noutput=1\n",
                "negative",
            ),
            ("currency='EUR'\n", "only USD"),
            // Once a panic ("Multiplication overflowed"), issue 16.
            (
                "[[price]]\nmodel='x'\neffective_from='2026-01-01'\ninput='99999999999999999999'\noutput=1\n",
                "largest price",
            ),
            (
                "[[price]]\nmodel='x'\neffective_from='2026-01-01'\ninput=9223372036854775807\noutput=1\n",
                "largest price",
            ),
            (
                "[[price]]\nmodel='x'\neffective_from='2026-01-01'\ninput=1\noutput=1\ntypo=1\n",
                "typo",
            ),
        ] {
            let err = PriceBook::from_toml(text, "p.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_largest_price_on_the_largest_counts_costs_without_overflow() {
        let top = "1000000000";
        let text = format!(
            "[[price]]\nmodel='x'\neffective_from='2026-01-01'\ninput='{top}'\noutput='{top}'\ncached_input='{top}'\ncache_write='{top}'\nreasoning='{top}'\n"
        );
        let book = PriceBook::from_toml(&text, "p.toml").unwrap();
        let p = &book.entries[0];
        // u32::MAX itself means "not reported".
        let top = u32::MAX - 1;
        let max = tokens(top, top, top, top, top);
        // input: cached + write exceed it, so uncached is 0; output: all
        // reasoning. 3 × (2^32 - 2) tokens at $1e9 per million.
        let want = i128::from(top) * 3 * 1000 * 10i128.pow(USD_SCALE);
        assert_eq!(p.cost(&max), Usd(want));
    }

    #[test]
    fn usd_round_trip() {
        let d = dec("0.000012345678901234567");
        let u = Usd::from_parts(12_345_678_901_234_567, 21);
        assert_eq!(u.to_decimal(), d.round_dp(18));
        assert_eq!(
            Usd::from_decimal(dec("1.5")).unwrap().to_decimal(),
            dec("1.5")
        );
    }

    #[test]
    fn globs() {
        assert!(glob("claude-*", "claude-3"));
        assert!(glob("*-mini", "gpt-4o-mini"));
        assert!(glob("gpt-*-mini", "gpt-4o-mini"));
        assert!(!glob("gpt-*-mini", "gpt-4o"));
    }
}

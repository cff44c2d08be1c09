//! Row-level export lines: matches, missing usage, unattributed traffic,
//! discrepancies and rejects. Each line is [`Serialize`] (for `report.json`)
//! and [`Tabular`] (for CSV), where cells say whether their text came from an
//! input file, so the CSV writer can neutralise spreadsheet formulas in
//! exactly those cells without mangling numbers such as `-0.5`.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::matching::Pass;
use crate::record::{Row, SideKind, TokenKind, flags};
use crate::report::{Class, Reconciliation};
use crate::time::format_ms;

/// One CSV cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    /// Text that came from an input (ids, names, models): may start with
    /// `=`, `+`, `-`, `@` and must be neutralised for spreadsheets.
    Text(Cow<'a, str>),
    /// Text Tally produced itself (numbers, times, class names).
    Plain(Cow<'a, str>),
}

/// A line that can be written as a CSV record.
pub trait Tabular {
    /// Column names.
    fn headers() -> &'static [&'static str];
    /// Cells, in header order.
    fn cells(&self) -> Vec<Cell<'_>>;
}

fn t(s: &str) -> Cell<'_> {
    Cell::Text(Cow::Borrowed(s))
}

fn p<'a>(s: impl Into<Cow<'a, str>>) -> Cell<'a> {
    Cell::Plain(s.into())
}

fn num<T: ToString>(v: Option<T>) -> Cell<'static> {
    Cell::Plain(Cow::Owned(v.map(|v| v.to_string()).unwrap_or_default()))
}

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
    /// Reasoning.
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

    fn cells(&self) -> [Cell<'static>; 5] {
        [
            num(self.input),
            num(self.cached_input),
            num(self.cache_write),
            num(self.output),
            num(self.reasoning),
        ]
    }
}

/// Where a row came from.
#[derive(Debug, Clone, Serialize)]
pub struct Source<'a> {
    /// File.
    pub file: &'a str,
    /// Line (or record) number.
    pub line: u32,
}

/// A matched pair (any pair class).
#[derive(Debug, Clone, Serialize)]
pub struct MatchLine<'a> {
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
    /// Client request start.
    pub client_ts: String,
    /// Gateway request start.
    pub gateway_ts: String,
    /// Key name.
    pub key: &'a str,
    /// Owner.
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
    /// Gateway id.
    pub gateway_id: &'a str,
    /// Client tokens.
    pub client_tokens: TokenCounts,
    /// Gateway tokens.
    pub gateway_tokens: TokenCounts,
    /// Tally's price of the gateway row.
    pub computed_cost: Option<Decimal>,
    /// Gateway-reported cost.
    pub reported_cost: Option<Decimal>,
}

const TOKEN_COLS: [&str; 5] = [
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
];

impl Tabular for MatchLine<'_> {
    fn headers() -> &'static [&'static str] {
        &[
            "class",
            "pass",
            "residual_ms",
            "client_file",
            "client_line",
            "gateway_file",
            "gateway_line",
            "client_ts",
            "gateway_ts",
            "key",
            "owner",
            "route",
            "requested_model",
            "served_model",
            "client_request_id",
            "client_response_id",
            "gateway_id",
            "client_input_tokens",
            "client_cached_input_tokens",
            "client_cache_write_tokens",
            "client_output_tokens",
            "client_reasoning_tokens",
            "gateway_input_tokens",
            "gateway_cached_input_tokens",
            "gateway_cache_write_tokens",
            "gateway_output_tokens",
            "gateway_reasoning_tokens",
            "computed_cost",
            "reported_cost",
        ]
    }

    fn cells(&self) -> Vec<Cell<'_>> {
        let mut v = vec![
            p(self.class.name()),
            p(self.pass.name()),
            p(self.residual_ms.to_string()),
            t(self.client.file),
            p(self.client.line.to_string()),
            t(self.gateway.file),
            p(self.gateway.line.to_string()),
            p(self.client_ts.as_str()),
            p(self.gateway_ts.as_str()),
            t(self.key),
            t(self.owner),
            p(self.route),
            t(self.requested_model),
            t(self.served_model),
            t(self.client_request_id),
            t(self.client_response_id),
            t(self.gateway_id),
        ];
        v.extend(self.client_tokens.cells());
        v.extend(self.gateway_tokens.cells());
        v.push(num(self.computed_cost));
        v.push(num(self.reported_cost));
        v
    }
}

/// A row of one side only (missing usage, unattributed, duplicate).
#[derive(Debug, Clone, Serialize)]
pub struct RowLine<'a> {
    /// Class of the row.
    pub class: Class,
    /// client or gateway.
    pub side: SideKind,
    /// Source.
    pub source: Source<'a>,
    /// Request start.
    pub ts: String,
    /// Key name.
    pub key: &'a str,
    /// Whether the key is registered.
    pub key_registered: bool,
    /// Owner.
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
    /// Tokens.
    pub tokens: TokenCounts,
    /// Tally's price (`None`: unpriced).
    pub computed_cost: Option<Decimal>,
    /// Gateway-reported cost (gateway rows).
    pub reported_cost: Option<Decimal>,
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

    fn cells(&self) -> Vec<Cell<'_>> {
        let side = match self.side {
            SideKind::Client => "client",
            SideKind::Gateway => "gateway",
        };
        let mut v = vec![
            p(self.class.name()),
            p(side),
            t(self.source.file),
            p(self.source.line.to_string()),
            p(self.ts.as_str()),
            t(self.key),
            p(if self.key_registered { "true" } else { "false" }),
            t(self.owner),
            p(self.route),
            t(self.model),
            t(self.id),
            t(self.id2),
            num(self.stream),
        ];
        v.extend(self.tokens.cells());
        v.push(num(self.computed_cost));
        v.push(num(self.reported_cost));
        v
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
    pub ts: String,
    /// Key name.
    pub key: &'a str,
    /// Owner.
    pub owner: &'a str,
    /// Model.
    pub model: &'a str,
    /// Tally's price of the gateway row (or client row when alone).
    pub computed_cost: Option<Decimal>,
    /// Gateway-reported cost.
    pub reported_cost: Option<Decimal>,
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

    fn cells(&self) -> Vec<Cell<'_>> {
        let src = |s: &Option<Source<'_>>| -> (String, String) {
            s.as_ref().map_or((String::new(), String::new()), |s| {
                (s.file.to_owned(), s.line.to_string())
            })
        };
        let (cf, cl) = src(&self.client);
        let (gf, gl) = src(&self.gateway);
        vec![
            p(self.kind),
            Cell::Text(Cow::Borrowed(self.detail.as_str())),
            Cell::Text(Cow::Owned(cf)),
            p(cl),
            Cell::Text(Cow::Owned(gf)),
            p(gl),
            p(self.ts.as_str()),
            t(self.key),
            t(self.owner),
            t(self.model),
            num(self.computed_cost),
            num(self.reported_cost),
        ]
    }
}

impl Tabular for crate::error::RowError {
    fn headers() -> &'static [&'static str] {
        &["file", "line", "field", "reason", "raw"]
    }

    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            t(&self.file),
            p(self.line.to_string()),
            t(&self.field),
            t(&self.reason),
            t(&self.raw),
        ]
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

    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            t(&self.owner),
            t(&self.team),
            t(&self.service),
            t(&self.env),
            p(self.billed_rows.to_string()),
            p(self.computed_cost.to_string()),
            p(self.reported_cost.to_string()),
            p(self.variance.to_string()),
            p(self.unpriced_rows.to_string()),
            p(self.unpriced_reported.to_string()),
            p(self.missing_usage_rows.to_string()),
            p(self.missing_usage_cost.to_string()),
            p(self.unattributed_rows.to_string()),
            p(self.unattributed_reported.to_string()),
        ]
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

    /// Every pair, in client row order.
    pub fn matches(&self) -> impl Iterator<Item = MatchLine<'_>> {
        (0..self.client.rows.len()).filter_map(move |i| {
            let j = self.client_partner(i)?;
            let (c, g) = (self.client.rows.get(i)?, self.gateway.rows.get(j)?);
            let (crid, cresp) = self.client.ids.get(c.ids);
            Some(MatchLine {
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
                client_ts: format_ms(c.ts_ms),
                gateway_ts: format_ms(g.ts_ms),
                key: self.client_key_name(i),
                owner: self.client_owner_name(i),
                route: self.route_name(SideKind::Client, i),
                requested_model: self.client.strings.get(c.model),
                served_model: self.gateway_model_text(g),
                client_request_id: crid,
                client_response_id: cresp,
                gateway_id: self.gateway.ids.get(g.ids).0,
                client_tokens: TokenCounts::of(c),
                gateway_tokens: TokenCounts::of(g),
                computed_cost: self.gateway_cost(j).map(|u| u.to_decimal()),
                reported_cost: g.reported_cost(),
            })
        })
    }

    fn gateway_model_text(&self, g: &'a Row) -> &'a str {
        if g.served_model.is_some() {
            self.gateway.strings.get(g.served_model)
        } else {
            self.gateway.strings.get(g.model)
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
            ts: format_ms(r.ts_ms),
            key: self.client_key_name(i),
            key_registered: self.client_key_registered(i),
            owner: self.client_owner_name(i),
            route: self.route_name(SideKind::Client, i),
            model: self.client.strings.get(r.model),
            id: a,
            id2: b,
            stream: r.has(flags::STREAM_KNOWN).then(|| r.has(flags::STREAM)),
            tokens: TokenCounts::of(r),
            computed_cost: self.client_cost(i).map(|u| u.to_decimal()),
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
            ts: format_ms(r.ts_ms),
            key: self.gateway_key_name(j),
            key_registered: self.gateway_key_registered(j),
            owner: self.gateway_owner_name(j),
            route: self.route_name(SideKind::Gateway, j),
            model: self.gateway_model_text(r),
            id: self.gateway.ids.get(r.ids).0,
            id2: "",
            stream: r.has(flags::STREAM_KNOWN).then(|| r.has(flags::STREAM)),
            tokens: TokenCounts::of(r),
            computed_cost: self.gateway_cost(j).map(|u| u.to_decimal()),
            reported_cost: r.reported_cost(),
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

    /// Duplicate rows of both sides.
    pub fn duplicates(&self) -> impl Iterator<Item = RowLine<'_>> {
        let c = (0..self.client.rows.len())
            .filter(move |&i| self.client_class.get(i) == Some(&Class::Duplicate))
            .filter_map(move |i| self.client_line(i));
        let g = (0..self.gateway.rows.len())
            .filter(move |&j| self.gateway_class.get(j) == Some(&Class::Duplicate))
            .filter_map(move |j| self.gateway_line(j));
        c.chain(g)
    }

    /// Pairs that disagree, duplicates, and unpriced rows.
    pub fn discrepancies(&self) -> impl Iterator<Item = DiscrepancyLine<'_>> {
        let pairs = self
            .matches()
            .filter(|m| m.class != Class::Matched)
            .map(move |m| {
                let detail = match m.class {
                    Class::ModelMismatch => {
                        format!("requested {}, served {}", m.requested_model, m.served_model)
                    }
                    Class::TokenMismatch => token_detail(&m),
                    Class::CostVariance => {
                        let v = m.reported_cost.unwrap_or_default()
                            - m.computed_cost.unwrap_or_default();
                        format!(
                            "gateway reported {} vs price {} (variance {})",
                            fmt_opt(m.reported_cost),
                            fmt_opt(m.computed_cost),
                            v
                        )
                    }
                    _ => String::new(),
                };
                DiscrepancyLine {
                    kind: m.class.name(),
                    detail,
                    ts: m.client_ts.clone(),
                    key: m.key,
                    owner: m.owner,
                    model: m.served_model,
                    computed_cost: m.computed_cost,
                    reported_cost: m.reported_cost,
                    client: Some(m.client),
                    gateway: Some(m.gateway),
                }
            });
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
            ts: d.ts.clone(),
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
                ts: d.ts.clone(),
                key: d.key,
                owner: d.owner,
                model: d.model,
                computed_cost: None,
                reported_cost: d.reported_cost,
            });
        pairs.chain(dups).chain(unpriced)
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

fn fmt_opt(d: Option<Decimal>) -> String {
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

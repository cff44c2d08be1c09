//! Normalise, match, classify, price and aggregate: the whole reconciliation.
//!
//! Every accepted row ends in exactly one [`Class`]; rejected rows are counted
//! per file. Costs are exact ([`Usd`]) and become decimals only in the
//! summary and the export lines.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::intern::{Interner, Sym};
use crate::keys::{KeyRegistry, Owner, Resolved, display_unknown};
use crate::matching::{self, BlockRow, MatchView, Matching, NONE, Offset, Pass};
use crate::models::AliasTable;
use crate::prices::{Price, PriceBook, USD_SCALE, Usd, price_at};
use crate::record::{Side, SideKind, TokenKind, Tokens, flags, split_pair, split_route};
use crate::routes::RouteFamily;
use crate::time::format_ms;

/// Version of the `report.json` schema (bumped on incompatible changes).
pub const SCHEMA_VERSION: u32 = 2;

/// Where each accepted row ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Paired, and the pair agrees.
    Matched,
    /// Paired, but token counts differ (or the client logged no usage).
    TokenMismatch,
    /// Paired, but another model served the call (fallback).
    ModelMismatch,
    /// Paired, but the gateway's reported cost differs from Tally's price.
    CostVariance,
    /// Client row with no gateway row.
    MissingUsage,
    /// Gateway row with no client row.
    Unattributed,
    /// Same id again on the same side (retry billed twice, double logging).
    Duplicate,
    /// Paired, the call failed, and nothing was billed: the two sides agree.
    FailedPair,
    /// A failed call on one side only that billed nothing (a client error
    /// line the gateway never logged, a gateway failure row with no client
    /// line): no money is missing or unattributed.
    FailedUnbilled,
    /// Paired, the client saw the call fail, yet the gateway billed it.
    BilledFailure,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 10] = [
        Class::Matched,
        Class::TokenMismatch,
        Class::ModelMismatch,
        Class::CostVariance,
        Class::MissingUsage,
        Class::Unattributed,
        Class::Duplicate,
        Class::FailedPair,
        Class::FailedUnbilled,
        Class::BilledFailure,
    ];

    /// snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::TokenMismatch => "token_mismatch",
            Class::ModelMismatch => "model_mismatch",
            Class::CostVariance => "cost_variance",
            Class::MissingUsage => "missing_usage",
            Class::Unattributed => "unattributed",
            Class::Duplicate => "duplicate",
            Class::FailedPair => "failed_pair",
            Class::FailedUnbilled => "failed_unbilled",
            Class::BilledFailure => "billed_failure",
        }
    }

    /// The class a [`Class::name`] names (as the store keeps it).
    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the class is a pair.
    pub fn is_pair(self) -> bool {
        matches!(
            self,
            Class::Matched
                | Class::TokenMismatch
                | Class::ModelMismatch
                | Class::CostVariance
                | Class::FailedPair
                | Class::BilledFailure
        )
    }
}

/// Reconciliation settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Matching parameters.
    pub matching: matching::Params,
    /// Relative cost tolerance (0.01 = 1 %).
    pub cost_tolerance_relative: Decimal,
    /// Absolute cost tolerance in USD.
    pub cost_tolerance_absolute: Decimal,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            matching: matching::Params::default(),
            cost_tolerance_relative: Decimal::new(1, 2),
            cost_tolerance_absolute: Decimal::new(1, 6),
        }
    }
}

/// A canonical key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// How reports name it: the registry id, or a fingerprint or label.
    pub name: String,
    /// Whether it is in the key registry.
    pub registered: bool,
    /// Registry owner (empty when unregistered).
    pub owner: Owner,
    /// Registry contact.
    pub contact: Option<String>,
    /// The registry owner's id in the owner table ([`NONE`] when none).
    #[serde(skip)]
    owner_id: u32,
}

#[derive(Debug, Default)]
struct SideNorm {
    key: Vec<u32>,
    model: Vec<u32>,
    served: Vec<u32>,
    /// The name each requested model is priced under (exact first).
    model_priced: Vec<u32>,
    /// The same for the served model.
    served_priced: Vec<u32>,
    /// The [`PriceRule`] code that gave `model_priced` and `served_priced`.
    model_rule: Vec<u8>,
    served_rule: Vec<u8>,
    route: Vec<u8>,
    /// Per model symbol, the route family a row with no route takes.
    model_route: Vec<u8>,
    owner: Vec<u32>,
}

/// Route code of a row that names no route (a LiteLLM failure row): the
/// family is the one its model implies (see [`route_of_model`]).
const ROUTE_FROM_MODEL: u8 = 0xfe;

/// The route family a failed call with no route most likely took: an
/// embedding model's is embeddings, any other model's chat. LiteLLM writes
/// failure rows with `call_type` empty; with no family they could never
/// pair by time with the client's error line for the same call.
fn route_of_model(model: &str) -> u8 {
    let f = if model.to_ascii_lowercase().contains("embed") {
        RouteFamily::Embeddings
    } else {
        RouteFamily::Chat
    };
    route_code(f)
}

fn route_code(f: RouteFamily) -> u8 {
    RouteFamily::ALL
        .iter()
        .position(|x| *x == f)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(u8::MAX)
}

fn get_u32(v: &[u32], s: Sym) -> u32 {
    s.index().and_then(|i| v.get(i)).copied().unwrap_or(NONE)
}

/// Row `i`'s served model in `served` (an id per model symbol), else the
/// one it asked for in `asked`.
fn served_else_asked(side: &Side, i: usize, served: &[u32], asked: &[u32]) -> u32 {
    side.rows
        .get(i)
        .map_or(NONE, |r| served_else_asked_of(r.model, served, asked).0)
}

/// The same for a model symbol, and whether the served model gave it.
fn served_else_asked_of(model: Sym, served: &[u32], asked: &[u32]) -> (u32, bool) {
    match get_u32(served, model) {
        NONE => (get_u32(asked, model), false),
        s => (s, true),
    }
}

/// A side seen through the canonical tables.
pub struct View<'a> {
    side: &'a Side,
    norm: &'a SideNorm,
}

impl View<'_> {
    fn row(&self, i: usize) -> Option<&crate::record::Row> {
        self.side.rows.get(i)
    }

    // One reading of each field from a row, for the per-field accessors and
    // the one-fetch `block_row` alike.
    fn key_of(&self, r: &crate::record::Row) -> u32 {
        get_u32(&self.norm.key, r.key)
    }

    fn model_of(&self, r: &crate::record::Row) -> u32 {
        get_u32(&self.norm.model, r.model)
    }

    fn route_of(&self, r: &crate::record::Row) -> u8 {
        let code = r
            .route
            .index()
            .and_then(|s| self.norm.route.get(s))
            .copied()
            .unwrap_or(u8::MAX);
        if code == ROUTE_FROM_MODEL {
            return r
                .model
                .index()
                .and_then(|s| self.norm.model_route.get(s))
                .copied()
                .unwrap_or(u8::MAX);
        }
        code
    }

    /// Input and output tokens, when both are known. An embeddings call
    /// has no output: its usage says nothing of it (OpenAI's
    /// `{prompt_tokens, total_tokens}`), which is zero, not unknown; read
    /// as unknown, same-key embeddings close in time lost the token check
    /// that tells them apart and were paired crosswise.
    fn core_tokens_of(&self, r: &crate::record::Row) -> Option<(u32, u32)> {
        let t = r.tokens;
        let output = t
            .get(TokenKind::Output)
            .or_else(|| (self.route_of(r) == route_code(RouteFamily::Embeddings)).then_some(0));
        t.get(TokenKind::Input).zip(output)
    }
}

impl MatchView for View<'_> {
    fn len(&self) -> usize {
        self.side.rows.len()
    }
    fn ts(&self, i: usize) -> i64 {
        self.row(i).map_or(0, |r| r.ts_ms)
    }
    fn key(&self, i: usize) -> u32 {
        self.row(i).map_or(NONE, |r| self.key_of(r))
    }
    fn model(&self, i: usize) -> u32 {
        self.row(i).map_or(NONE, |r| self.model_of(r))
    }
    fn route(&self, i: usize) -> u8 {
        self.row(i).map_or(u8::MAX, |r| self.route_of(r))
    }
    fn core_tokens(&self, i: usize) -> Option<(u32, u32)> {
        self.core_tokens_of(self.row(i)?)
    }
    fn ids(&self, i: usize) -> (&str, &str) {
        self.row(i).map_or(("", ""), |r| self.side.ids.get(r.ids))
    }
    fn block_row(&self, i: usize) -> BlockRow<'_> {
        let Some(r) = self.row(i) else {
            return BlockRow {
                ts: 0,
                key: NONE,
                model: NONE,
                route: u8::MAX,
                core_tokens: None,
                ids: ("", ""),
            };
        };
        BlockRow {
            ts: r.ts_ms,
            key: self.key_of(r),
            model: self.model_of(r),
            route: self.route_of(r),
            core_tokens: self.core_tokens_of(r),
            ids: self.side.ids.get(r.ids),
        }
    }
}

/// One row's verdict, as the store keeps it per run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict<'a> {
    /// Where the row ends.
    pub class: Class,
    /// Index of its partner on the other side, for pairs.
    pub partner: Option<usize>,
    /// Canonical key name.
    pub key: &'a str,
    /// Whether the registry knows the key.
    pub registered: bool,
    /// Owner, `None` when neither the row nor its key's registry entry says.
    pub owner: Option<&'a Owner>,
    /// Model family priced (served for gateway rows), "" when unknown.
    pub family: &'a str,
    /// Tally's price, `None` when unpriced.
    pub computed: Option<Usd>,
    /// Gateway-reported cost.
    pub reported: Option<Usd>,
}

/// Label for rows of keys that no registry knows and no client labelled.
pub const UNKNOWN_OWNER: &str = "(unregistered key)";

/// The reconciliation of a client side against a gateway side.
pub struct Reconciliation<'a> {
    /// Client rows.
    pub client: &'a Side,
    /// Gateway rows.
    pub gateway: &'a Side,
    /// Canonical keys.
    pub keys: Vec<KeyInfo>,
    /// Canonical model families.
    pub models: Interner,
    /// Owners, by id.
    pub owners: Vec<Owner>,
    owner_names: Vec<String>,
    cn: SideNorm,
    gn: SideNorm,
    schedules: Vec<Vec<Price>>,
    /// Per model family: whether the catalog prices it (a real model, not
    /// a deployment alias).
    family_priced: Vec<bool>,
    /// Per model family: when its first price begins.
    family_first_price: Vec<Option<i64>>,
    /// The names models are priced under, by id.
    priced_names: Interner,
    /// Pairs and passes.
    pub matching: Matching,
    /// Class of each client row.
    pub client_class: Vec<Class>,
    /// Class of each gateway row.
    pub gateway_class: Vec<Class>,
    /// Tally's price of each gateway row in atto-dollars ([`UNPRICED`], or
    /// [`NOT_CACHED`] for a price beyond $9.2), worked out once: classify,
    /// the summary and the exports each need it, and pricing a row three
    /// times was a tenth of the time after parsing. 80 MB at ten million
    /// rows, taken after matching has freed its sort entries.
    gateway_costs: Vec<i64>,
    settings: EngineSettings,
}

/// [`Reconciliation::gateway_costs`]: the catalog has no price.
const UNPRICED: i64 = i64::MIN;
/// [`Reconciliation::gateway_costs`]: too large for the cache; price again.
const NOT_CACHED: i64 = i64::MIN + 1;

struct Tables {
    keys: Vec<KeyInfo>,
    key_index: HashMap<String, u32>,
    models: Interner,
    /// Names models are priced under: the exact model when the catalog
    /// prices it, else its family (see [`AliasTable::priced_name`]).
    priced: Interner,
    owners: Vec<Owner>,
    owner_index: HashMap<Owner, u32>,
}

impl Tables {
    fn owner_id(&mut self, o: Owner) -> u32 {
        if let Some(&i) = self.owner_index.get(&o) {
            return i;
        }
        let i = u32::try_from(self.owners.len()).unwrap_or(NONE);
        self.owners.push(o.clone());
        self.owner_index.insert(o, i);
        i
    }

    fn key_id(&mut self, token: &str, reg: &KeyRegistry) -> u32 {
        let (canonical, info) = match reg.resolve(token) {
            Resolved::Known(i) => {
                let e = reg.entries.get(i);
                let id = e.map_or_else(String::new, |e| e.id.clone());
                (
                    format!("reg:{id}"),
                    KeyInfo {
                        name: id,
                        registered: true,
                        owner: e.map(crate::keys::KeyEntry::owner).unwrap_or_default(),
                        contact: e.and_then(|e| e.contact.clone()),
                        owner_id: NONE,
                    },
                )
            }
            Resolved::Unknown { canonical, last4 } => {
                let name = display_unknown(&canonical, last4.as_deref());
                (
                    format!("unk:{canonical}"),
                    KeyInfo {
                        name,
                        registered: false,
                        owner: Owner::default(),
                        contact: None,
                        owner_id: NONE,
                    },
                )
            }
        };
        if let Some(&i) = self.key_index.get(&canonical) {
            // A fingerprint seen later may carry the last 4 an earlier hash lacked.
            if let Some(k) = usize::try_from(i).ok().and_then(|i| self.keys.get_mut(i))
                && !k.registered
                && info.name.len() > k.name.len()
            {
                k.name = info.name;
            }
            return i;
        }
        let i = u32::try_from(self.keys.len()).unwrap_or(NONE);
        let mut info = info;
        // The registry owner joins the owner table now: a key whose owner no
        // client row labels (gateway-only traffic) must still be attributed.
        if info.registered && !info.owner.is_empty() {
            info.owner_id = self.owner_id(info.owner.clone());
        }
        self.keys.push(info);
        self.key_index.insert(canonical, i);
        i
    }
}

fn normalise(
    side: &Side,
    t: &mut Tables,
    reg: &KeyRegistry,
    aliases: &AliasTable,
    prices: &PriceBook,
) -> SideNorm {
    let n = side.strings.len();
    let mut norm = SideNorm {
        key: vec![NONE; n],
        model: vec![NONE; n],
        served: vec![NONE; n],
        model_priced: vec![NONE; n],
        served_priced: vec![NONE; n],
        model_rule: vec![0; n],
        served_rule: vec![0; n],
        route: vec![u8::MAX; n],
        model_route: vec![u8::MAX; n],
        owner: vec![NONE; n],
    };
    let mut used = vec![0u8; n];
    for r in &side.rows {
        for (sym, bit) in [(r.key, 1u8), (r.model, 2), (r.route, 4)] {
            if let Some(u) = sym.index().and_then(|i| used.get_mut(i)) {
                *u |= bit;
            }
        }
    }
    for (sym, s) in side.strings.iter() {
        let Some(i) = sym.index() else { continue };
        let u = used.get(i).copied().unwrap_or(0);
        if u & 1 != 0
            && let Some(slot) = norm.key.get_mut(i)
        {
            *slot = t.key_id(s, reg);
        }
        if u & 2 != 0 {
            // `requested\x1eserved`: each side of the pair gets its family.
            // Families compare models; prices look up the exact model
            // first (`claude-3-5-sonnet-20241022` may cost other than its
            // family), so each side also gets the name it is priced under.
            let (requested, served) = split_pair(s);
            if let Some(slot) = norm.model_route.get_mut(i) {
                *slot = route_of_model(requested);
            }
            let priced = |m: &str| aliases.priced_by(m, |name| prices.prices_exactly(name));
            let fam = t.models.intern(&aliases.family(requested));
            let (name, rule) = priced(requested);
            let at = t.priced.intern(&name);
            if let Some(slot) = norm.model.get_mut(i) {
                *slot = fam.0;
            }
            if let Some(slot) = norm.model_priced.get_mut(i) {
                *slot = at.0;
            }
            if let Some(slot) = norm.model_rule.get_mut(i) {
                *slot = rule.into();
            }
            if !served.is_empty() {
                let fam = t.models.intern(&aliases.family(served));
                let (name, rule) = priced(served);
                let at = t.priced.intern(&name);
                if let Some(slot) = norm.served.get_mut(i) {
                    *slot = fam.0;
                }
                if let Some(slot) = norm.served_priced.get_mut(i) {
                    *slot = at.0;
                }
                if let Some(slot) = norm.served_rule.get_mut(i) {
                    *slot = rule.into();
                }
            }
        }
        if u & 4 != 0 {
            // `route\x1eteam\x1fservice\x1fenv\x1ftags\x1dalias`.
            let (route, labels, _) = split_route(s);
            let code = if route.trim().is_empty() {
                ROUTE_FROM_MODEL
            } else {
                route_code(RouteFamily::classify(route))
            };
            if let Some(slot) = norm.route.get_mut(i) {
                *slot = code;
            }
            let mut parts = labels.split('\u{1f}');
            let mut next = || parts.next().unwrap_or("").to_owned();
            let o = Owner {
                team: next(),
                service: next(),
                env: next(),
            };
            if !o.is_empty()
                && let Some(slot) = norm.owner.get_mut(i)
            {
                *slot = t.owner_id(o);
            }
        }
    }
    norm
}

/// Totals over the whole reconciliation (USD).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Tally's price of everything the gateway billed (matched, unattributed
    /// and duplicate gateway rows), priced rows only.
    pub billed_computed: Decimal,
    /// What the gateway reported for the same rows.
    pub billed_reported: Decimal,
    /// Reported minus computed, over the rows Tally could price.
    pub variance: Decimal,
    /// Reported cost of the gateway rows Tally could not price.
    pub unpriced_reported: Decimal,
    /// Tally's price of client rows with no gateway row (not billed, or
    /// billed where Tally cannot see).
    pub missing_usage_computed: Decimal,
    /// Tally's price of gateway rows with no client row.
    pub unattributed_computed: Decimal,
    /// Reported cost of gateway rows with no client row.
    pub unattributed_reported: Decimal,
    /// Reported cost of duplicate gateway rows (billed twice).
    pub duplicate_reported: Decimal,
    /// Gateway rows that could not be priced (no catalog entry for their
    /// model at their time). Never priced at zero.
    pub unpriced_gateway_rows: u64,
    /// Client rows that could not be priced.
    pub unpriced_client_rows: u64,
}

/// Counts for one side. `read = accepted + duplicates + rejected`, where
/// `accepted` counts the rows that reached a non-duplicate class.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SideCounts {
    /// Rows read.
    pub read: u64,
    /// Rows accepted (excluding duplicates).
    pub accepted: u64,
    /// Duplicate rows.
    pub duplicates: u64,
    /// Rejected rows.
    pub rejected: u64,
}

/// One input file's counts.
#[derive(Debug, Clone, Serialize)]
pub struct InputCounts {
    /// client or gateway.
    pub side: SideKind,
    /// File name.
    pub file: String,
    /// Format it was read as.
    pub format: String,
    #[serde(flatten)]
    pub counts: SideCounts,
}

/// Rows of one class, per side.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCount {
    /// The class.
    pub class: Class,
    /// Client rows in it.
    pub client_rows: u64,
    /// Gateway rows in it.
    pub gateway_rows: u64,
}

/// Cost attributed to one owner.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OwnerCost {
    /// `team/service/env`.
    pub owner: String,
    pub team: String,
    pub service: String,
    pub env: String,
    /// Gateway rows billed to the owner.
    pub billed_rows: u64,
    /// Tally's price of them.
    pub computed_cost: Decimal,
    /// What the gateway reported for them.
    pub reported_cost: Decimal,
    /// Reported minus computed, over the rows Tally could price.
    pub variance: Decimal,
    /// Billed rows Tally could not price.
    pub unpriced_rows: u64,
    /// Reported cost of those.
    pub unpriced_reported: Decimal,
    /// Client rows with no gateway row.
    pub missing_usage_rows: u64,
    /// Tally's price of those.
    pub missing_usage_cost: Decimal,
    /// Gateway rows of the owner's keys with no client row.
    pub unattributed_rows: u64,
    /// Reported cost of those.
    pub unattributed_reported: Decimal,
}

/// Unattributed traffic of one key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyCost {
    /// Key name (registry id or fingerprint; never a secret).
    pub key: String,
    /// Whether the key is registered (unregistered: possibly leaked).
    pub registered: bool,
    /// Registry owner, `team/service/env`.
    pub owner: String,
    /// Registry contact.
    pub contact: String,
    pub rows: u64,
    /// Tally's price.
    pub computed_cost: Decimal,
    /// Reported cost.
    pub reported_cost: Decimal,
    /// First row, RFC 3339.
    pub first_seen: String,
    /// Last row, RFC 3339.
    pub last_seen: String,
}

/// A model family the catalog has no price for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unpriced {
    /// Family.
    pub model: String,
    /// Client rows.
    pub client_rows: u64,
    /// Gateway rows.
    pub gateway_rows: u64,
    /// When the catalog has a price for it, but only from later than these
    /// rows: from when (RFC 3339). A LiteLLM price map imported without
    /// `--effective-from` applies from the day it was imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priced_only_from: Option<String>,
}

/// Gateway rows priced by a rule other than the model's exact name.
#[derive(Debug, Clone, Serialize)]
pub struct PriceFallback {
    /// The model as the gateway named it (served, else requested).
    pub model: String,
    /// The catalog name its price was taken from.
    pub priced_as: String,
    /// The lookup step that found it.
    pub rule: crate::models::PriceRule,
    /// Gateway rows.
    pub gateway_rows: u64,
}

/// An offset with its key named.
#[derive(Debug, Clone, Serialize)]
pub struct OffsetLine {
    /// Key name, or `(global)`.
    pub key: String,
    /// Gateway minus client, ms.
    pub offset_ms: i64,
    /// Median absolute deviation, ms.
    pub mad_ms: i64,
    /// Id pairs learned from.
    pub pairs: usize,
}

/// Pairs made by each pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassCounts {
    /// By request id.
    pub id: u64,
    /// By key, model, route, tokens and time.
    pub strict: u64,
    /// By key, model, route and time.
    pub loose: u64,
}

/// The summary: everything except the row lists.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Schema version of report.json.
    pub schema_version: u32,
    /// When the report was made (RFC 3339; injected, not read from a clock).
    pub generated_at: String,
    /// Currency of every amount.
    pub currency: String,
    /// Earliest and latest accepted row, RFC 3339.
    pub period: [String; 2],
    /// Settings used.
    pub parameters: Parameters,
    /// Per input file.
    pub inputs: Vec<InputCounts>,
    /// Client totals.
    pub client: SideCounts,
    /// Gateway totals.
    pub gateway: SideCounts,
    /// Rows per class.
    pub classes: Vec<ClassCount>,
    /// Pairs per pass.
    pub passes: PassCounts,
    /// Learned offsets: global first, then per key.
    pub offsets: Vec<OffsetLine>,
    pub totals: Totals,
    /// Per owner.
    pub costs_by_owner: Vec<OwnerCost>,
    /// Unattributed traffic per key, costliest first.
    pub unattributed_by_key: Vec<KeyCost>,
    /// Failed calls that billed nothing on keys in no registry, most first:
    /// someone probing with a leaked key.
    pub failed_on_unregistered_keys: Vec<KeyCost>,
    /// Models without a price.
    pub unpriced_models: Vec<Unpriced>,
    /// Gateway models priced other than by their exact name, most rows
    /// first: the exact name, then without its variant, without its
    /// provider prefix, its family, an alias (see the README).
    pub price_fallbacks: Vec<PriceFallback>,
}

/// Settings as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Matching tolerance, ms.
    pub tolerance_ms: i64,
    /// Id pairs a key needs for its own offset.
    pub min_key_pairs: usize,
    /// Relative cost tolerance.
    pub cost_tolerance_relative: Decimal,
    /// Absolute cost tolerance, USD.
    pub cost_tolerance_absolute: Decimal,
}

fn side_index(s: SideKind) -> usize {
    match s {
        SideKind::Client => 0,
        SideKind::Gateway => 1,
    }
}

fn class_index(c: Class) -> usize {
    Class::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

/// A key's rows of one kind being summed: the line, its costs and the
/// first and last time seen.
struct KeyAcc {
    line: KeyCost,
    computed: Usd,
    reported: Usd,
    first: i64,
    last: i64,
}

impl KeyAcc {
    fn add(&mut self, ts: i64, computed: Usd, reported: Usd) {
        self.line.rows += 1;
        self.computed = self.computed.saturating_add(computed);
        self.reported = self.reported.saturating_add(reported);
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
    }

    fn done(self) -> KeyCost {
        let mut k = self.line;
        k.computed_cost = self.computed.to_decimal();
        k.reported_cost = self.reported.to_decimal();
        k.first_seen = format_ms(self.first);
        k.last_seen = format_ms(self.last);
        k
    }
}

/// A failed call that counted no token (an error line, a refusal) costs
/// nothing at any price: it is never "unpriced", whatever its model.
fn failed_without_usage(r: &crate::record::Row) -> bool {
    r.has(flags::FAILED) && !r.tokens.any_counted()
}

/// Row counts per side and class.
/// One owner's sums over the gateway's rows (and its missing client rows).
#[derive(Default)]
struct OwnerAcc {
    billed: u64,
    computed: Usd,
    reported: Usd,
    unpriced: u64,
    unpriced_reported: Usd,
    missing: u64,
    missing_cost: Usd,
    unattributed: u64,
    unattributed_reported: Usd,
}

impl OwnerAcc {
    fn add(&mut self, o: &OwnerAcc) {
        self.billed += o.billed;
        self.computed = self.computed.saturating_add(o.computed);
        self.reported = self.reported.saturating_add(o.reported);
        self.unpriced += o.unpriced;
        self.unpriced_reported = self.unpriced_reported.saturating_add(o.unpriced_reported);
        self.missing += o.missing;
        self.missing_cost = self.missing_cost.saturating_add(o.missing_cost);
        self.unattributed += o.unattributed;
        self.unattributed_reported = self
            .unattributed_reported
            .saturating_add(o.unattributed_reported);
    }
}

/// What the sweep over the client's rows gathers.
#[derive(Default)]
struct ClientSweep {
    counts: [u64; Class::ALL.len()],
    passes: PassCounts,
    tmin: i64,
    tmax: i64,
    unpriced_rows: u64,
    unpriced: BTreeMap<u32, u64>,
    missing: Usd,
    /// Missing rows and their cost, by owner slot.
    missing_by_owner: Vec<(u64, Usd)>,
}

/// What the sweep over the gateway's rows gathers.
#[derive(Default)]
struct GatewaySweep {
    counts: ClassCounts,
    tmin: i64,
    tmax: i64,
    /// By owner slot (see `Reconciliation::owner_slot`).
    by_owner_id: Vec<OwnerAcc>,
    /// Unattributed rows by key.
    by_key: BTreeMap<u32, KeyAcc>,
    /// Failed calls that billed nothing, on keys no registry knows.
    probing: BTreeMap<u32, KeyAcc>,
    /// Rows priced by a fallback rule, by (model symbol, rule).
    fallbacks: BTreeMap<(u32, u8), u64>,
    /// Rows without a price, by model family.
    unpriced: BTreeMap<u32, Unpriced>,
    unpriced_rows: u64,
    billed_computed: Usd,
    billed_reported: Usd,
    unpriced_reported: Usd,
    unattributed_computed: Usd,
    unattributed_reported: Usd,
    duplicate_reported: Usd,
}

impl GatewaySweep {
    /// The run's money totals, with the client sweep's.
    fn totals(&self, client: &ClientSweep) -> Totals {
        Totals {
            billed_computed: self.billed_computed.to_decimal(),
            billed_reported: self.billed_reported.to_decimal(),
            variance: self
                .billed_reported
                .saturating_sub(self.unpriced_reported)
                .saturating_sub(self.billed_computed)
                .to_decimal(),
            unpriced_reported: self.unpriced_reported.to_decimal(),
            unpriced_gateway_rows: self.unpriced_rows,
            unpriced_client_rows: client.unpriced_rows,
            missing_usage_computed: client.missing.to_decimal(),
            unattributed_computed: self.unattributed_computed.to_decimal(),
            unattributed_reported: self.unattributed_reported.to_decimal(),
            duplicate_reported: self.duplicate_reported.to_decimal(),
        }
    }
}

/// Read, accepted, duplicate and rejected rows of one side.
fn side_counts(side: &Side, classes: &[Class]) -> SideCounts {
    let dups =
        u64::try_from(classes.iter().filter(|c| **c == Class::Duplicate).count()).unwrap_or(0);
    let rejected = u64::try_from(side.rejects.len()).unwrap_or(0);
    let rows = u64::try_from(side.rows.len()).unwrap_or(0);
    SideCounts {
        read: side.read(),
        accepted: rows - dups,
        duplicates: dups,
        rejected,
    }
}

/// Keys with unattributed traffic, costliest first (the larger of
/// reported and computed), then by name.
fn ranked_by_cost(by_key: BTreeMap<u32, KeyAcc>) -> Vec<KeyCost> {
    let mut keys: Vec<KeyCost> = by_key.into_values().map(KeyAcc::done).collect();
    keys.sort_by(|a, b| {
        b.reported_cost
            .max(b.computed_cost)
            .cmp(&a.reported_cost.max(a.computed_cost))
            .then_with(|| a.key.cmp(&b.key))
    });
    keys
}

/// Keys, most rows first, then by name.
fn ranked_by_rows(by_key: BTreeMap<u32, KeyAcc>) -> Vec<KeyCost> {
    let mut keys: Vec<KeyCost> = by_key.into_values().map(KeyAcc::done).collect();
    keys.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.key.cmp(&b.key)));
    keys
}

type ClassCounts = [[u64; Class::ALL.len()]; 2];

fn bump(counts: &mut ClassCounts, s: SideKind, c: Class) {
    if let Some(n) = counts
        .get_mut(side_index(s))
        .and_then(|a| a.get_mut(class_index(c)))
    {
        *n += 1;
    }
}

/// Reconciles two parsed sides.
pub fn reconcile<'a>(
    client: &'a Side,
    gateway: &'a Side,
    registry: &KeyRegistry,
    aliases: &AliasTable,
    prices: &PriceBook,
    settings: EngineSettings,
) -> Reconciliation<'a> {
    let mut t = Tables {
        keys: Vec::new(),
        key_index: HashMap::new(),
        models: Interner::default(),
        priced: Interner::default(),
        owners: Vec::new(),
        owner_index: HashMap::new(),
    };
    // Registered keys first, in registry order, so ids are stable.
    for e in &registry.entries {
        t.key_id(&e.id, registry);
    }
    let cn = normalise(client, &mut t, registry, aliases, prices);
    let gn = normalise(gateway, &mut t, registry, aliases, prices);
    let schedules = t
        .priced
        .iter()
        .map(|(_, name)| prices.schedule(name))
        .collect();
    let family_first_price: Vec<Option<i64>> = t
        .models
        .iter()
        .map(|(_, fam)| prices.schedule(fam).first().map(|p| p.effective_from_ms))
        .collect();
    // A family is a real model (not a deployment alias) when the catalog
    // prices it, or prices a snapshot of it: `claude-3-5-sonnet` is a model
    // when only `claude-3-5-sonnet-20241022` has a price.
    let catalog_families: std::collections::HashSet<String> = prices
        .entries
        .iter()
        .map(|p| aliases.family(&p.model))
        .collect();
    let family_priced = t
        .models
        .iter()
        .zip(&family_first_price)
        .map(|((_, fam), first)| first.is_some() || catalog_families.contains(fam))
        .collect();
    let matching = {
        let cv = View {
            side: client,
            norm: &cn,
        };
        let gv = View {
            side: gateway,
            norm: &gn,
        };
        matching::match_rows(&cv, &gv, settings.matching)
    };
    let owner_names = t.owners.iter().map(Owner::display).collect();
    let mut rec = Reconciliation {
        client,
        gateway,
        keys: t.keys,
        models: t.models,
        owners: t.owners,
        owner_names,
        cn,
        gn,
        schedules,
        family_priced,
        family_first_price,
        priced_names: t.priced,
        matching,
        client_class: Vec::new(),
        gateway_class: Vec::new(),
        gateway_costs: Vec::new(),
        settings,
    };
    rec.gateway_costs = rec.price_gateway_rows();
    rec.classify();
    rec
}

/// Tolerance check: |reported − computed| within max(absolute, relative × computed).
///
/// In integers (atto-dollars times powers of ten): this runs for every
/// pair several times, and the same check in `Decimal` was a few percent of
/// a whole run. Exact either way; `Decimal` only when a product overflows.
fn within(reported: Usd, computed: Usd, s: &EngineSettings) -> bool {
    let diff = reported.saturating_sub(computed).abs().0;
    let (rel, abs) = (s.cost_tolerance_relative, s.cost_tolerance_absolute);
    // diff <= |computed| * rel.mantissa / 10^rel.scale
    let by_rel = 10i128
        .checked_pow(rel.scale())
        .and_then(|p| diff.checked_mul(p))
        .zip(
            computed
                .0
                .checked_abs()
                .and_then(|c| c.checked_mul(rel.mantissa())),
        )
        .map(|(l, r)| l <= r);
    // diff (10^-18 USD) <= abs.mantissa / 10^abs.scale
    let by_abs = if abs.scale() <= USD_SCALE {
        10i128
            .checked_pow(USD_SCALE - abs.scale())
            .and_then(|p| abs.mantissa().checked_mul(p))
            .map(|t| diff <= t)
    } else {
        10i128
            .checked_pow(abs.scale() - USD_SCALE)
            .and_then(|p| diff.checked_mul(p))
            .map(|l| l <= abs.mantissa())
    };
    match (by_rel, by_abs) {
        (Some(r), Some(a)) => r || a,
        _ => within_decimal(reported, computed, s),
    }
}

/// [`within`] in `Decimal`, for amounts whose integer products overflow.
fn within_decimal(reported: Usd, computed: Usd, s: &EngineSettings) -> bool {
    let diff = reported.saturating_sub(computed).abs().to_decimal();
    let rel = computed.to_decimal().abs() * s.cost_tolerance_relative;
    diff <= rel.max(s.cost_tolerance_absolute)
}

impl<'a> Reconciliation<'a> {
    fn classify(&mut self) {
        let n = self.client.rows.len();
        let mut gc = vec![Class::Unattributed; self.gateway.rows.len()];
        for (j, c) in gc.iter_mut().enumerate() {
            if self.matching.gateway_pass.get(j) == Some(&Pass::Duplicate) {
                *c = Class::Duplicate;
            } else if self.gateway_failed_unbilled(j) {
                // Stays so only when unpaired: a pair's class replaces it.
                *c = Class::FailedUnbilled;
            }
        }
        // Classifying a pair prices it and compares both rows: split the
        // client rows in halves across two threads (read-only), then apply.
        let cc = crate::par::map_halves(n, |i| self.client_class_of(i));
        for (i, &class) in cc.iter().enumerate() {
            if class.is_pair()
                && let Some(c) = gc.get_mut(self.partner_of_client(i))
            {
                *c = class;
            }
        }
        self.client_class = cc;
        self.gateway_class = gc;
    }

    /// Class of one client row.
    fn client_class_of(&self, i: usize) -> Class {
        match self.matching.client_pass.get(i) {
            Some(Pass::Duplicate) => Class::Duplicate,
            Some(Pass::Unmatched) | None => {
                // An error line with no usage and no gateway row: the call
                // failed before anything was billed.
                if self.client.rows.get(i).is_some_and(failed_without_usage) {
                    Class::FailedUnbilled
                } else {
                    Class::MissingUsage
                }
            }
            Some(_) => self.pair_class(i, self.partner_of_client(i)),
        }
    }

    /// Whether a gateway row records a failed call that billed nothing: no
    /// cost reported (or zero) and no token counted.
    fn gateway_failed_unbilled(&self, j: usize) -> bool {
        self.gateway.rows.get(j).is_some_and(|r| {
            failed_without_usage(r) && r.reported_usd().is_none_or(|c| c == Usd::ZERO)
        })
    }

    /// Whether a gateway row billed anything: a cost above zero or a
    /// counted token.
    fn gateway_billed(&self, j: usize) -> bool {
        self.gateway.rows.get(j).is_some_and(|r| {
            r.tokens.any_counted() || r.reported_usd().is_some_and(|c| c > Usd::ZERO)
        })
    }

    fn partner_of_client(&self, i: usize) -> usize {
        self.matching
            .client_partner
            .get(i)
            .and_then(|&p| usize::try_from(p).ok())
            .unwrap_or(usize::MAX)
    }

    /// The gateway partner of a client row.
    pub fn client_partner(&self, i: usize) -> Option<usize> {
        let p = self.matching.client_partner.get(i).copied()?;
        (p != NONE).then(|| usize::try_from(p).ok()).flatten()
    }

    fn pair_class(&self, i: usize, j: usize) -> Class {
        let client_failed = self
            .client
            .rows
            .get(i)
            .is_some_and(|r| r.has(flags::FAILED));
        if client_failed {
            // The app saw the call fail: either nothing was billed (the
            // sides agree) or the gateway billed a failure.
            return if self.gateway_billed(j) {
                Class::BilledFailure
            } else {
                Class::FailedPair
            };
        }
        let client_empty = self
            .client
            .rows
            .get(i)
            .is_none_or(|r| !r.tokens.any_counted());
        if client_empty && self.gateway_failed_unbilled(j) {
            return Class::FailedPair;
        }
        if self.model_differs(i, j) {
            Class::ModelMismatch
        } else if self.tokens_differ(i, j) {
            Class::TokenMismatch
        } else if self.cost_variance(j).is_some() {
            Class::CostVariance
        } else {
            Class::Matched
        }
    }

    fn client_view(&self) -> View<'_> {
        View {
            side: self.client,
            norm: &self.cn,
        }
    }

    fn gateway_view(&self) -> View<'_> {
        View {
            side: self.gateway,
            norm: &self.gn,
        }
    }

    /// Family the client asked for.
    fn client_family(&self, i: usize) -> u32 {
        self.client_view().model(i)
    }

    /// Family that served a gateway row (its served model when given).
    fn gateway_served_family(&self, j: usize) -> u32 {
        served_else_asked(self.gateway, j, &self.gn.served, &self.gn.model)
    }

    fn client_priced_family(&self, i: usize) -> u32 {
        served_else_asked(self.client, i, &self.cn.served, &self.cn.model)
    }

    /// Whether a pair's models differ (a fallback, a swap). When the client
    /// logged what served it, that must be what the gateway served, and
    /// what it asked for may differ only by a deployment alias both sides
    /// used (`gpt-4o-mini-mock` serving `gpt-4o-mini`), not by a model the
    /// catalog prices as a model of its own (`gpt-4o` answered by
    /// `claude-sonnet-4`). Otherwise what it asked for must be what served.
    fn model_differs(&self, i: usize, j: usize) -> bool {
        let served = self.gateway_served_family(j);
        let asked = self.client_family(i);
        let seen = self
            .client
            .rows
            .get(i)
            .map_or(NONE, |r| get_u32(&self.cn.served, r.model));
        if seen == NONE {
            return asked != served;
        }
        if seen != served {
            return true;
        }
        let a_model = usize::try_from(asked)
            .ok()
            .and_then(|f| self.family_priced.get(f))
            .copied()
            .unwrap_or(false);
        asked != served && a_model
    }

    /// Whether a pair's tokens differ: a count both sides report differs, or
    /// the client logged no usage while the gateway billed some. Runs for
    /// every pair, so it allocates nothing.
    fn tokens_differ(&self, i: usize, j: usize) -> bool {
        let (Some(c), Some(g)) = (self.client.rows.get(i), self.gateway.rows.get(j)) else {
            return false;
        };
        if !c.tokens.any() {
            // The client logged no usage: a mismatch only if the gateway
            // counted tokens (a failed call's zeros are not usage).
            return g.tokens.any_counted();
        }
        TokenKind::ALL
            .into_iter()
            .any(|k| matches!((c.tokens.get(k), g.tokens.get(k)), (Some(a), Some(b)) if a != b))
    }

    /// The name a gateway row is priced under (served model first).
    fn gateway_priced(&self, j: usize) -> u32 {
        served_else_asked(
            self.gateway,
            j,
            &self.gn.served_priced,
            &self.gn.model_priced,
        )
    }

    /// The name a client row is priced under (what it saw served first).
    fn client_priced(&self, i: usize) -> u32 {
        served_else_asked(
            self.client,
            i,
            &self.cn.served_priced,
            &self.cn.model_priced,
        )
    }

    /// `priced` is an id of the names models are priced under. Tokens
    /// reported as all zeros (a failed call) cost exactly nothing at any
    /// price, so such a row is never "unpriced", whatever its model.
    fn price(&self, priced: u32, ts: i64, tokens: &Tokens) -> Option<Usd> {
        let cost = usize::try_from(priced)
            .ok()
            .and_then(|f| self.schedules.get(f))
            .and_then(|sched| price_at(sched, ts))
            .map(|p| p.cost(tokens));
        // Checked only when unpriced: a priced row's zeros cost zero anyway.
        if cost.is_none() && tokens.any() && !tokens.any_counted() {
            return Some(Usd::ZERO);
        }
        cost
    }

    /// Tally's price of a gateway row: zero for gateway cache hits, `None`
    /// when the catalog has no price for its model at its time.
    pub fn gateway_cost(&self, j: usize) -> Option<Usd> {
        match self.gateway_costs.get(j).copied() {
            Some(UNPRICED) => None,
            Some(NOT_CACHED) | None => self.price_gateway_row(j),
            Some(atto) => Some(Usd(i128::from(atto))),
        }
    }

    /// [`Reconciliation::gateway_costs`] for every gateway row, on two cores.
    fn price_gateway_rows(&self) -> Vec<i64> {
        let n = self.gateway.rows.len();
        let cache = |j: usize| match self.price_gateway_row(j) {
            None => UNPRICED,
            Some(Usd(atto)) => i64::try_from(atto)
                .ok()
                .filter(|&a| a > NOT_CACHED)
                .unwrap_or(NOT_CACHED),
        };
        crate::par::map_halves(n, cache)
    }

    fn price_gateway_row(&self, j: usize) -> Option<Usd> {
        let r = self.gateway.rows.get(j)?;
        if r.has(flags::CACHE_HIT) || failed_without_usage(r) {
            return Some(Usd::ZERO);
        }
        self.price(self.gateway_priced(j), r.ts_ms, &r.tokens)
    }

    /// Tally's price of a client row.
    pub fn client_cost(&self, i: usize) -> Option<Usd> {
        let r = self.client.rows.get(i)?;
        if failed_without_usage(r) {
            return Some(Usd::ZERO);
        }
        self.price(self.client_priced(i), r.ts_ms, &r.tokens)
    }

    /// Reported minus computed, when beyond tolerance.
    pub fn cost_variance(&self, j: usize) -> Option<Usd> {
        let reported = self.gateway.rows.get(j)?.reported_usd()?;
        let computed = self.gateway_cost(j)?;
        (!within(reported, computed, &self.settings)).then(|| reported.saturating_sub(computed))
    }

    /// Owner id of a client row: its labels, else its key's registry owner.
    fn client_owner(&self, i: usize) -> Option<u32> {
        let r = self.client.rows.get(i)?;
        let o = get_u32(&self.cn.owner, r.route);
        (o != NONE).then_some(o)
    }

    /// Owner id of a client row: its labels', else its key's ([`NONE`]
    /// for no owner).
    fn client_owner_id(&self, i: usize) -> u32 {
        self.client_owner(i)
            .or_else(|| self.key_info(self.client_view().key(i)).map(|k| k.owner_id))
            .unwrap_or(NONE)
    }

    /// The client partner of a gateway row.
    pub fn gateway_partner(&self, j: usize) -> Option<usize> {
        let p = self.matching.gateway_partner.get(j).copied()?;
        (p != NONE).then(|| usize::try_from(p).ok()).flatten()
    }

    /// Owner id of a gateway row: its client partner's, else its key's.
    fn gateway_owner_id(&self, j: usize) -> u32 {
        match self.gateway_partner(j) {
            Some(i) => self.client_owner_id(i),
            None => self
                .key_info(self.gateway_view().key(j))
                .map_or(NONE, |k| k.owner_id),
        }
    }

    /// Owner name of a client row.
    pub fn client_owner_name(&self, i: usize) -> &str {
        self.owner_name(self.client_owner_id(i))
    }

    /// Owner name of a gateway row: its client partner's, else its key's.
    pub fn gateway_owner_name(&self, j: usize) -> &str {
        self.owner_name(self.gateway_owner_id(j))
    }

    fn owner_name(&self, o: u32) -> &str {
        usize::try_from(o)
            .ok()
            .and_then(|o| self.owner_names.get(o))
            .map_or(UNKNOWN_OWNER, String::as_str)
    }

    pub(crate) fn client_key(&self, i: usize) -> u32 {
        self.client_view().key(i)
    }

    pub(crate) fn gateway_key(&self, j: usize) -> u32 {
        self.gateway_view().key(j)
    }

    pub(crate) fn key_info(&self, k: u32) -> Option<&KeyInfo> {
        usize::try_from(k).ok().and_then(|k| self.keys.get(k))
    }

    fn key_owner_name(&self, k: u32) -> &str {
        self.key_info(k)
            .map_or(UNKNOWN_OWNER, |info| self.owner_name(info.owner_id))
    }

    /// Name of a client row's key.
    pub fn client_key_name(&self, i: usize) -> &str {
        self.key_info(self.client_view().key(i))
            .map_or("", |k| k.name.as_str())
    }

    /// Name of a gateway row's key.
    pub fn gateway_key_name(&self, j: usize) -> &str {
        self.key_info(self.gateway_view().key(j))
            .map_or("", |k| k.name.as_str())
    }

    /// A gateway row priced other than by its model's exact name: its
    /// model symbol and the rule's code.
    fn gateway_fallback(&self, j: usize) -> Option<(u32, u8)> {
        let r = self.gateway.rows.get(j)?;
        // Only rows a catalog price priced: a failure's or a cache hit's
        // zero is no rule's doing.
        let has_price = usize::try_from(self.gateway_priced(j))
            .ok()
            .and_then(|p| self.schedules.get(p))
            .is_some_and(|s| !s.is_empty());
        if !has_price || r.has(flags::CACHE_HIT) || failed_without_usage(r) {
            return None;
        }
        let i = r.model.index()?;
        let (_, served) =
            served_else_asked_of(r.model, &self.gn.served_priced, &self.gn.model_priced);
        let rule = if served {
            self.gn.served_rule.get(i)
        } else {
            self.gn.model_rule.get(i)
        }
        .copied()?;
        (rule != u8::from(crate::models::PriceRule::Exact)).then_some((r.model.0, rule))
    }

    /// The catalog name a gateway model symbol is priced under.
    fn gateway_priced_name_of(&self, sym: Sym) -> &str {
        let (p, _) = served_else_asked_of(sym, &self.gn.served_priced, &self.gn.model_priced);
        self.priced_names.get(Sym(p))
    }

    /// An empty per-key line for key id `k`.
    fn key_cost(&self, k: u32) -> KeyAcc {
        let info = self.key_info(k);
        KeyAcc {
            line: KeyCost {
                key: info.map_or_else(String::new, |i| i.name.clone()),
                registered: info.is_some_and(|i| i.registered),
                owner: self.key_owner_name(k).to_owned(),
                contact: info.and_then(|i| i.contact.clone()).unwrap_or_default(),
                ..KeyCost::default()
            },
            computed: Usd::ZERO,
            reported: Usd::ZERO,
            first: i64::MAX,
            last: i64::MIN,
        }
    }

    /// Family name.
    pub fn family_name(&self, f: u32) -> &str {
        self.models.get(Sym(f))
    }

    /// Route family of a row.
    pub fn route_name(&self, side: SideKind, i: usize) -> &'static str {
        let code = match side {
            SideKind::Client => self.client_view().route(i),
            SideKind::Gateway => self.gateway_view().route(i),
        };
        RouteFamily::ALL
            .get(usize::from(code))
            .map_or("other", |r| r.name())
    }

    /// Everything the store keeps about one row's verdict.
    pub fn verdict(&self, side: SideKind, i: usize) -> Option<Verdict<'_>> {
        let (class, partner, key, owner, family, computed, reported) = match side {
            SideKind::Client => {
                self.client.rows.get(i)?;
                (
                    *self.client_class.get(i)?,
                    self.client_partner(i),
                    self.client_key(i),
                    self.client_owner_id(i),
                    self.client_priced_family(i),
                    self.client_cost(i),
                    None,
                )
            }
            SideKind::Gateway => {
                let r = self.gateway.rows.get(i)?;
                (
                    *self.gateway_class.get(i)?,
                    self.gateway_partner(i),
                    self.gateway_key(i),
                    self.gateway_owner_id(i),
                    self.gateway_served_family(i),
                    self.gateway_cost(i),
                    r.reported_usd(),
                )
            }
        };
        let info = self.key_info(key);
        let owner = usize::try_from(owner).ok().and_then(|o| self.owners.get(o));
        Some(Verdict {
            class,
            partner,
            key: info.map_or("", |k| k.name.as_str()),
            registered: info.is_some_and(|k| k.registered),
            owner,
            family: if family == NONE {
                ""
            } else {
                self.family_name(family)
            },
            computed,
            reported,
        })
    }

    /// The offset applied to a key's client rows.
    pub fn offset_of_client(&self, i: usize) -> i64 {
        self.matching.offset_for(self.client_view().key(i))
    }

    /// The learned clock offsets: global first, then per key by name.
    pub fn offsets(&self) -> Vec<OffsetLine> {
        let mut offsets = vec![self.offset_line(&self.matching.global_offset)];
        let mut per_key: Vec<OffsetLine> = self
            .matching
            .key_offsets
            .iter()
            .map(|o| self.offset_line(o))
            .collect();
        per_key.sort_by(|a, b| a.key.cmp(&b.key));
        offsets.extend(per_key);
        offsets
    }

    /// Builds the summary. `now_ms` is when the report is made.
    ///
    /// One sweep over each side's rows (the client's on a second core),
    /// then the lists built from what the sweeps gathered.
    pub fn summary(&self, now_ms: i64) -> Summary {
        let (client, mut gateway) = crate::par::join(
            self.client.rows.len() + self.gateway.rows.len(),
            || self.sweep_client(),
            || self.sweep_gateway(),
        );
        let (tmin, tmax) = (gateway.tmin.min(client.tmin), gateway.tmax.max(client.tmax));
        let mut class_counts = gateway.counts;
        if let Some(c) = class_counts.get_mut(side_index(SideKind::Client)) {
            *c = client.counts;
        }
        for (f, n) in &client.unpriced {
            gateway.unpriced.entry(*f).or_default().client_rows += n;
        }
        for (acc, (n, cost)) in gateway.by_owner_id.iter_mut().zip(&client.missing_by_owner) {
            acc.missing += n;
            acc.missing_cost = acc.missing_cost.saturating_add(*cost);
        }
        let totals = gateway.totals(&client);
        let count = |s: SideKind, c: Class| {
            class_counts
                .get(side_index(s))
                .and_then(|a| a.get(class_index(c)))
                .copied()
                .unwrap_or(0)
        };
        Summary {
            schema_version: SCHEMA_VERSION,
            generated_at: format_ms(now_ms),
            currency: "USD".to_owned(),
            period: if tmin <= tmax {
                [format_ms(tmin), format_ms(tmax)]
            } else {
                [String::new(), String::new()]
            },
            parameters: Parameters {
                tolerance_ms: self.settings.matching.tolerance_ms,
                min_key_pairs: self.settings.matching.min_key_pairs,
                cost_tolerance_relative: self.settings.cost_tolerance_relative,
                cost_tolerance_absolute: self.settings.cost_tolerance_absolute,
            },
            inputs: self.input_counts(),
            client: side_counts(self.client, &self.client_class),
            gateway: side_counts(self.gateway, &self.gateway_class),
            classes: Class::ALL
                .iter()
                .map(|&c| ClassCount {
                    class: c,
                    client_rows: count(SideKind::Client, c),
                    gateway_rows: count(SideKind::Gateway, c),
                })
                .collect(),
            passes: client.passes,
            offsets: self.offsets(),
            totals,
            costs_by_owner: self.costs_by_owner(&gateway.by_owner_id),
            unattributed_by_key: ranked_by_cost(gateway.by_key),
            failed_on_unregistered_keys: ranked_by_rows(gateway.probing),
            price_fallbacks: self.price_fallbacks(gateway.fallbacks),
            unpriced_models: self.unpriced_models(gateway.unpriced, tmax),
        }
    }

    /// The owner slot of an owner id: the id itself, or the last slot for
    /// rows with no owner (ids index `owner_names`; a hashed name would
    /// cost more per row).
    fn owner_slot(&self, id: u32) -> usize {
        let no_owner = self.owner_names.len();
        usize::try_from(id).map_or(no_owner, |o| o.min(no_owner))
    }

    /// The client rows' sweep: they only add to their own counts.
    fn sweep_client(&self) -> ClientSweep {
        let mut p = ClientSweep {
            tmin: i64::MAX,
            tmax: i64::MIN,
            missing_by_owner: vec![(0, Usd::ZERO); self.owner_names.len() + 1],
            ..ClientSweep::default()
        };
        for (i, r) in self.client.rows.iter().enumerate() {
            p.tmin = p.tmin.min(r.ts_ms);
            p.tmax = p.tmax.max(r.ts_ms);
            let class = self
                .client_class
                .get(i)
                .copied()
                .unwrap_or(Class::MissingUsage);
            if let Some(n) = p.counts.get_mut(class_index(class)) {
                *n += 1;
            }
            match self.matching.client_pass.get(i) {
                Some(Pass::Id) => p.passes.id += 1,
                Some(Pass::Strict) => p.passes.strict += 1,
                Some(Pass::Loose) => p.passes.loose += 1,
                _ => {}
            }
            let cost = self.client_cost(i);
            if cost.is_none() {
                p.unpriced_rows += 1;
                *p.unpriced.entry(self.client_priced_family(i)).or_default() += 1;
            }
            if class == Class::MissingUsage {
                let slot = self.owner_slot(self.client_owner_id(i));
                if let Some(e) = p.missing_by_owner.get_mut(slot) {
                    e.0 += 1;
                    e.1 = e.1.saturating_add(cost.unwrap_or_default());
                }
                p.missing = p.missing.saturating_add(cost.unwrap_or_default());
            }
        }
        p
    }

    /// The gateway rows' sweep: what was billed, by owner, key and model.
    fn sweep_gateway(&self) -> GatewaySweep {
        let mut g = GatewaySweep {
            tmin: i64::MAX,
            tmax: i64::MIN,
            by_owner_id: std::iter::repeat_with(OwnerAcc::default)
                .take(self.owner_names.len() + 1)
                .collect(),
            ..GatewaySweep::default()
        };
        for (j, r) in self.gateway.rows.iter().enumerate() {
            g.tmin = g.tmin.min(r.ts_ms);
            g.tmax = g.tmax.max(r.ts_ms);
            let class = self
                .gateway_class
                .get(j)
                .copied()
                .unwrap_or(Class::Unattributed);
            bump(&mut g.counts, SideKind::Gateway, class);
            let reported = r.reported_usd().unwrap_or_default();
            let computed = self.gateway_cost(j);
            let Some(acc) = g
                .by_owner_id
                .get_mut(self.owner_slot(self.gateway_owner_id(j)))
            else {
                continue;
            };
            acc.billed += 1;
            acc.reported = acc.reported.saturating_add(reported);
            g.billed_reported = g.billed_reported.saturating_add(reported);
            match computed {
                Some(c) => {
                    acc.computed = acc.computed.saturating_add(c);
                    g.billed_computed = g.billed_computed.saturating_add(c);
                    if let Some(k) = self.gateway_fallback(j) {
                        *g.fallbacks.entry(k).or_default() += 1;
                    }
                }
                None => {
                    acc.unpriced += 1;
                    acc.unpriced_reported = acc.unpriced_reported.saturating_add(reported);
                    g.unpriced_reported = g.unpriced_reported.saturating_add(reported);
                    g.unpriced_rows += 1;
                    let f = self.gateway_served_family(j);
                    g.unpriced.entry(f).or_default().gateway_rows += 1;
                }
            }
            match class {
                Class::Unattributed => {
                    acc.unattributed += 1;
                    acc.unattributed_reported = acc.unattributed_reported.saturating_add(reported);
                    g.unattributed_reported = g.unattributed_reported.saturating_add(reported);
                    g.unattributed_computed = g
                        .unattributed_computed
                        .saturating_add(computed.unwrap_or_default());
                    let k = self.gateway_view().key(j);
                    let e = g.by_key.entry(k).or_insert_with(|| self.key_cost(k));
                    e.add(r.ts_ms, computed.unwrap_or_default(), reported);
                }
                Class::FailedUnbilled => {
                    let k = self.gateway_view().key(j);
                    if !self.key_info(k).is_some_and(|i| i.registered) {
                        let e = g.probing.entry(k).or_insert_with(|| self.key_cost(k));
                        e.add(r.ts_ms, Usd::ZERO, Usd::ZERO);
                    }
                }
                Class::Duplicate => {
                    g.duplicate_reported = g.duplicate_reported.saturating_add(reported);
                }
                _ => {}
            }
        }
        g
    }

    /// Read, accepted, duplicate and rejected rows of each input file.
    fn input_counts(&self) -> Vec<InputCounts> {
        let mut inputs = Vec::new();
        for (side, classes) in [
            (self.client, &self.client_class),
            (self.gateway, &self.gateway_class),
        ] {
            for (fi, f) in side.files.iter().enumerate() {
                let end = side
                    .files
                    .get(fi + 1)
                    .map_or(side.rows.len(), |n| n.first_row);
                let rows = u64::try_from(end.saturating_sub(f.first_row)).unwrap_or(0);
                let dups = classes
                    .get(f.first_row..end)
                    .map_or(0, |s| s.iter().filter(|c| **c == Class::Duplicate).count());
                let dups = u64::try_from(dups).unwrap_or(0);
                inputs.push(InputCounts {
                    side: side.kind,
                    file: f.name.clone(),
                    format: f.format.clone(),
                    counts: SideCounts {
                        read: f.read,
                        accepted: rows - dups,
                        duplicates: dups,
                        rejected: f.rejected,
                    },
                });
            }
        }
        inputs
    }

    /// Cost per owner, costliest first. Owner ids are merged by name: two
    /// ids may carry one name.
    fn costs_by_owner(&self, by_owner_id: &[OwnerAcc]) -> Vec<OwnerCost> {
        let mut by_owner: crate::intern::FxHashMap<&str, OwnerAcc> = Default::default();
        for (o, acc) in by_owner_id.iter().enumerate() {
            if acc.billed > 0 || acc.missing > 0 {
                let name = self.owner_name(u32::try_from(o).unwrap_or(NONE));
                by_owner.entry(name).or_default().add(acc);
            }
        }
        let owner_parts: HashMap<&str, &Owner> = self
            .owner_names
            .iter()
            .map(String::as_str)
            .zip(self.owners.iter())
            .collect();
        let mut costs: Vec<OwnerCost> = by_owner
            .into_iter()
            .map(|(name, a)| {
                let parts = owner_parts.get(name).copied().cloned().unwrap_or_default();
                OwnerCost {
                    team: parts.team,
                    service: parts.service,
                    env: parts.env,
                    billed_rows: a.billed,
                    computed_cost: a.computed.to_decimal(),
                    reported_cost: a.reported.to_decimal(),
                    variance: a
                        .reported
                        .saturating_sub(a.unpriced_reported)
                        .saturating_sub(a.computed)
                        .to_decimal(),
                    unpriced_rows: a.unpriced,
                    unpriced_reported: a.unpriced_reported.to_decimal(),
                    missing_usage_rows: a.missing,
                    missing_usage_cost: a.missing_cost.to_decimal(),
                    unattributed_rows: a.unattributed,
                    unattributed_reported: a.unattributed_reported.to_decimal(),
                    owner: name.to_owned(),
                }
            })
            .collect();
        costs.sort_by(|a, b| {
            b.computed_cost
                .cmp(&a.computed_cost)
                .then_with(|| a.owner.cmp(&b.owner))
        });
        costs
    }

    /// Models with rows and no price, by name (family ids follow input
    /// order; reports must not), each with the first date a price covers
    /// when that is after every row.
    fn unpriced_models(&self, unpriced: BTreeMap<u32, Unpriced>, tmax: i64) -> Vec<Unpriced> {
        let mut models: Vec<Unpriced> = unpriced
            .into_iter()
            .map(|(f, mut u)| {
                u.model = self.family_name(f).to_owned();
                u.priced_only_from = usize::try_from(f)
                    .ok()
                    .and_then(|f| self.family_first_price.get(f).copied().flatten())
                    .filter(|&first_ms| first_ms > tmax)
                    .map(format_ms);
                u
            })
            .collect();
        models.sort_by(|a, b| a.model.cmp(&b.model));
        models
    }

    /// Rows priced by a fallback rule, one line per model name (a name
    /// appears under several symbols: one per requested-and-served pair),
    /// most rows first.
    fn price_fallbacks(&self, fallbacks: BTreeMap<(u32, u8), u64>) -> Vec<PriceFallback> {
        let mut merged: BTreeMap<(String, String, crate::models::PriceRule), u64> = BTreeMap::new();
        for ((sym, rule), rows) in fallbacks {
            let (requested, served) = split_pair(self.gateway.strings.get(Sym(sym)));
            let model = if served.is_empty() { requested } else { served };
            let Ok(rule) = crate::models::PriceRule::try_from(rule) else {
                continue;
            };
            let priced = self.gateway_priced_name_of(Sym(sym)).to_owned();
            *merged.entry((model.to_owned(), priced, rule)).or_default() += rows;
        }
        let mut lines: Vec<PriceFallback> = merged
            .into_iter()
            .map(|((model, priced_as, rule), gateway_rows)| PriceFallback {
                model,
                priced_as,
                rule,
                gateway_rows,
            })
            .collect();
        lines.sort_by(|a, b| {
            b.gateway_rows
                .cmp(&a.gateway_rows)
                .then_with(|| a.model.cmp(&b.model))
        });
        lines
    }

    fn offset_line(&self, o: &Offset) -> OffsetLine {
        OffsetLine {
            key: o
                .key
                .and_then(|k| self.key_info(k))
                .map_or_else(|| "(global)".to_owned(), |k| k.name.clone()),
            offset_ms: o.offset_ms,
            mad_ms: o.mad_ms,
            pairs: o.pairs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LiteLLM SpendLogs CSV, read by the built-in profile.
    /// A catalog of `(model, effective_from, input, output)` entries, USD
    /// per million tokens.
    fn catalog(entries: &[(&str, &str, &str, &str)]) -> PriceBook {
        let text: String = entries
            .iter()
            .map(|(m, from, i, o)| {
                format!(
                    "[[price]]\nmodel = \"{m}\"\neffective_from = \"{from}\"\ninput = \"{i}\"\noutput = \"{o}\"\n"
                )
            })
            .collect();
        PriceBook::from_toml(&text, "p.toml").unwrap()
    }

    /// Reconciles with no registry and no aliases.
    fn plain<'a>(
        c: &'a Side,
        g: &'a Side,
        prices: &PriceBook,
        settings: EngineSettings,
    ) -> Reconciliation<'a> {
        reconcile(
            c,
            g,
            &KeyRegistry::default(),
            &AliasTable::default(),
            prices,
            settings,
        )
    }

    fn litellm_side(csv: &str) -> Side {
        let mut g = Side::new(SideKind::Gateway);
        let profiles = crate::parse::mapping::Profile::builtins().unwrap();
        let litellm = profiles.iter().find(|p| p.name == "litellm").unwrap();
        crate::parse::mapping::read_mapped(csv.as_bytes(), "g.csv", litellm, &mut g).unwrap();
        g
    }

    #[test]
    fn the_report_says_which_rule_priced_each_fallback_model() {
        // Exact snapshot first, then without the provider prefix, then the
        // family; a model whose only price starts after its rows says so.
        let gateway = "request_id,api_key,spend,startTime,model,model_group,call_type,prompt_tokens,completion_tokens\n\
                       a,k1,0.0,2026-11-20 10:00:00,claude-3-5-sonnet-20241022,claude-3-5-sonnet,acompletion,10,10\n\
                       b,k1,0.0,2026-11-20 10:00:01,openai/gpt-4o,gpt-4o,acompletion,10,10\n\
                       c,k1,0.0,2026-11-20 10:00:02,gpt-4o-2024-11-20,gpt-4o,acompletion,10,10\n\
                       d,k1,0.0,2026-11-20 10:00:03,gpt-4o-2024-11-20,gpt-4o,acompletion,10,10\n\
                       e,k1,0.0,2026-11-20 10:00:04,o3-mini,o3-mini,acompletion,10,10\n";
        let g = litellm_side(gateway);
        let c = Side::new(SideKind::Client);
        let prices = catalog(&[
            ("claude-3-5-sonnet-20241022", "2026-01-01", "1", "1"),
            ("gpt-4o", "2026-01-01", "1", "1"),
            ("o3-mini", "2026-12-04", "1", "1"),
        ]);
        let rec = plain(&c, &g, &prices, EngineSettings::default());
        let s = rec.summary(0);
        let got: Vec<_> = s
            .price_fallbacks
            .iter()
            .map(|f| {
                (
                    f.model.as_str(),
                    f.priced_as.as_str(),
                    f.rule.name(),
                    f.gateway_rows,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("gpt-4o-2024-11-20", "gpt-4o", "family", 2),
                ("openai/gpt-4o", "gpt-4o", "without_prefix", 1),
            ]
        );
        let o3 = s
            .unpriced_models
            .iter()
            .find(|u| u.model == "o3-mini")
            .unwrap();
        assert_eq!(
            o3.priced_only_from.as_deref(),
            Some("2026-12-04T00:00:00.000Z")
        );
        assert_eq!(s.unpriced_models.len(), 1);
    }

    #[test]
    fn a_gateway_row_priced_beyond_the_cost_cache_is_still_exact() {
        // The per-row cost cache holds up to about $9.22 in atto-dollars;
        // this row costs $120.000002 and must be priced in full, not capped.
        let gateway = "request_id,api_key,spend,startTime,model,call_type,prompt_tokens,completion_tokens\n\
                       big,k1,120.000002,2026-11-20 10:00:00,o1-pro,acompletion,1,2000000\n\
                       small,k1,0.000062,2026-11-20 10:00:01,o1-pro,acompletion,1,1\n";
        let g = litellm_side(gateway);
        let c = Side::new(SideKind::Client);
        let prices = PriceBook::from_toml(
            "currency = \"USD\"\n[[price]]\nmodel = \"o1-pro\"\neffective_from = \"2026-01-01T00:00:00Z\"\ninput = \"2\"\ncached_input = \"1\"\noutput = \"60\"\n",
            "p.toml",
        )
        .unwrap();
        let rec = plain(&c, &g, &prices, EngineSettings::default());
        let atto = |usd: &str| Usd::from_decimal(usd.parse().unwrap()).unwrap();
        assert_eq!(rec.gateway_cost(0), Some(atto("120.000002")));
        assert_eq!(rec.gateway_cost(1), Some(atto("0.000062")));
        let s = rec.summary(0);
        assert_eq!(s.totals.billed_computed.to_string(), "120.000064");
        assert_eq!(s.totals.variance.to_string(), "0");
    }

    #[test]
    fn a_snapshot_with_its_own_price_is_priced_by_it_and_is_no_fallback() {
        // Issue 17: the catalog was looked up by family only, so the price
        // of `claude-3-5-sonnet-20241022` was never used and snapshots of
        // one family (gpt-4o-2024-05-13 at $5/$15, the family at $2.50/$10)
        // were priced alike.
        let gateway = "request_id,api_key,spend,startTime,model,model_group,call_type,prompt_tokens,completion_tokens\n\
                       a,k1,0.02,2026-11-20 10:00:00,openai/gpt-4o-2024-05-13,gpt-4o,acompletion,1000000,1000000\n\
                       b,k1,0.02,2026-11-20 10:00:01,gpt-4o-2024-08-06,gpt-4o,acompletion,1000000,1000000\n\
                       c,k1,0.02,2026-11-20 10:00:02,anthropic/claude-3-5-sonnet-20241022,claude,acompletion,1000000,1000000\n";
        let client = "ts,key,model,route,request_id,input_tokens,output_tokens\n\
                      2026-11-20T10:00:00Z,k1,gpt-4o,chat,a,1000000,1000000\n";
        let g = litellm_side(gateway);
        let mut c = Side::new(SideKind::Client);
        crate::parse::client::read_client(client.as_bytes(), "c.csv", None, &mut c).unwrap();
        let prices = catalog(&[
            ("gpt-4o", "2026-01-01", "2.5", "10"),
            ("gpt-4o-2024-05-13", "2026-01-01", "5", "15"),
            ("claude-3-5-sonnet-20241022", "2026-01-01", "3", "15"),
        ]);
        let rec = plain(&c, &g, &prices, EngineSettings::default());
        let usd = |s: &str| Some(Usd::from_decimal(s.parse().unwrap()).unwrap());
        assert_eq!(rec.gateway_cost(0), usd("20"), "the snapshot's own price");
        assert_eq!(
            rec.gateway_cost(1),
            usd("12.5"),
            "no price of its own: the family's"
        );
        assert_eq!(
            rec.gateway_cost(2),
            usd("18"),
            "exact, without the provider prefix"
        );
        // The client saw nothing served: priced as it asked (the family).
        assert_eq!(rec.client_cost(0), usd("12.5"));
        // Asking for gpt-4o and being served a gpt-4o snapshot is no fallback.
        let v = rec.verdict(SideKind::Gateway, 0).unwrap();
        assert_ne!(v.class, Class::ModelMismatch);
    }

    #[test]
    fn embeddings_without_an_output_count_pair_by_their_input_tokens() {
        // Issue 21: the OpenAI SDK's embeddings usage is `{prompt_tokens,
        // total_tokens}`. Read as "output unknown", two embeddings on one
        // key 50 ms apart lost the token check and paired with whichever
        // gateway row was nearer in time: crosswise here, both "token
        // mismatches". Zero output pairs them by their inputs.
        let gateway = "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status\n\
                       g-1,aembedding,k1,0.00003146,1573,1573,0,2026-11-20 10:00:01.049,2026-11-20 10:00:01.849,text-embedding-3-small,text-embedding-3-small,{},False,success\n\
                       g-2,aembedding,k1,0.00001506,753,753,0,2026-11-20 10:00:01.062,2026-11-20 10:00:01.862,text-embedding-3-small,text-embedding-3-small,{},False,success\n";
        let client = "{\"ts\":\"2026-11-20T10:00:00.811Z\",\"key\":\"k1\",\"model\":\"text-embedding-3-small\",\"route\":\"/v1/embeddings\",\"usage\":{\"prompt_tokens\":753,\"total_tokens\":753}}\n\
                      {\"ts\":\"2026-11-20T10:00:00.861Z\",\"key\":\"k1\",\"model\":\"text-embedding-3-small\",\"route\":\"/v1/embeddings\",\"usage\":{\"prompt_tokens\":1573,\"total_tokens\":1573}}\n";
        let g = litellm_side(gateway);
        let mut c = Side::new(SideKind::Client);
        crate::parse::client::read_client(client.as_bytes(), "c.jsonl", None, &mut c).unwrap();
        assert!(c.rejects.is_empty() && g.rejects.is_empty());
        let rec = plain(&c, &g, &PriceBook::default(), EngineSettings::default());
        assert_eq!(rec.client_partner(0), Some(1));
        assert_eq!(rec.client_partner(1), Some(0));
        for i in 0..2 {
            assert_eq!(
                rec.verdict(SideKind::Client, i).unwrap().class,
                Class::Matched
            );
        }
    }

    #[test]
    fn litellm_failure_rows_are_kept_and_pair_with_the_clients_error_lines() {
        // Issue 17: LiteLLM writes a row for every failed call with
        // `call_type` empty, spend and tokens 0, `model_group` '' and
        // `status` failure. They were rejected, and the client's error lines
        // for the same calls became false "missing usage".
        let gateway = "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status\n\
                       chatcmpl-1,acompletion,k1,0.0001,20,10,10,2026-11-20 10:00:00.100,2026-11-20 10:00:01,gpt-4o-mini,gpt-4o-mini,{},False,success\n\
                       call-2,,k1,0.0,0,0,0,2026-11-20 10:00:05.100,2026-11-20 10:00:05.200,gpt-4o-mini-mock,,{},False,failure\n\
                       call-3,,k1,0.0,0,0,0,2026-11-20 10:00:09.100,2026-11-20 10:00:09.200,no-such-model,,{},False,failure\n\
                       call-4,,k1,0.0,0,0,0,2026-11-20 10:00:20.300,2026-11-20 10:00:20.400,text-embedding-3-small,,{},False,failure\n\
                       chatcmpl-5,acompletion,k1,0.0002,40,20,20,2026-11-20 10:00:30.100,2026-11-20 10:00:31,gpt-4o-mini,gpt-4o-mini,{},False,success\n\
                       call-6,,k9,0.0,0,0,0,2026-11-20 10:00:40.100,2026-11-20 10:00:40.200,gpt-4o,,{},False,failure\n";
        let client = "{\"ts\":\"2026-11-20T10:00:00Z\",\"key\":\"k1\",\"model\":\"gpt-4o-mini\",\"route\":\"chat\",\"request_id\":\"chatcmpl-1\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10}}\n\
                      {\"ts\":\"2026-11-20T10:00:05Z\",\"key\":\"k1\",\"model\":\"gpt-4o-mini-mock\",\"route\":\"chat\",\"request_id\":\"call-2\",\"http_status\":429}\n\
                      {\"ts\":\"2026-11-20T10:00:15Z\",\"key\":\"k1\",\"model\":\"gpt-4o\",\"route\":\"chat\",\"http_status\":503}\n\
                      {\"ts\":\"2026-11-20T10:00:20Z\",\"key\":\"k1\",\"model\":\"text-embedding-3-small\",\"route\":\"embeddings\",\"status\":\"error\"}\n\
                      {\"ts\":\"2026-11-20T10:00:30Z\",\"key\":\"k1\",\"model\":\"gpt-4o-mini\",\"route\":\"chat\",\"request_id\":\"chatcmpl-5\",\"status\":\"error\"}\n";
        let g = litellm_side(gateway);
        assert!(g.rejects.is_empty(), "{:?}", g.rejects);
        assert_eq!(g.rows.len(), 6);
        let mut c = Side::new(SideKind::Client);
        crate::parse::client::read_client(client.as_bytes(), "c.jsonl", None, &mut c).unwrap();
        assert!(c.rejects.is_empty(), "{:?}", c.rejects);
        let rec = plain(&c, &g, &PriceBook::default(), EngineSettings::default());
        let class = |side, i| rec.verdict(side, i).unwrap().class;
        assert_eq!(class(SideKind::Client, 0), Class::Matched);
        // The failed call both sides saw is a failed pair: not missing, and
        // its zero tokens are no token mismatch.
        assert_eq!(class(SideKind::Client, 1), Class::FailedPair);
        assert_eq!(class(SideKind::Gateway, 1), Class::FailedPair);
        // A failure only the gateway logged, billing nothing, is reported
        // as such, not as unattributed money.
        assert_eq!(class(SideKind::Gateway, 2), Class::FailedUnbilled);
        // An error line the gateway never logged is no missing usage.
        assert_eq!(class(SideKind::Client, 2), Class::FailedUnbilled);
        // A failure row names no route: it pairs by time through the route
        // its model implies (an embedding model: embeddings).
        assert_eq!(class(SideKind::Client, 3), Class::FailedPair);
        assert_eq!(rec.client_partner(3), Some(3));
        // The app saw an error, the gateway billed the call.
        assert_eq!(class(SideKind::Client, 4), Class::BilledFailure);
        assert_eq!(class(SideKind::Gateway, 4), Class::BilledFailure);
        // Probing with a key in no registry: failed, billed nothing, and
        // still counted per key in the summary.
        assert_eq!(class(SideKind::Gateway, 5), Class::FailedUnbilled);
        let s = rec.summary(0);
        let count = |side: &str, class: &str| {
            s.classes
                .iter()
                .find(|c| c.class.name() == class)
                .map_or(0, |c| {
                    if side == "client" {
                        c.client_rows
                    } else {
                        c.gateway_rows
                    }
                })
        };
        assert_eq!(count("client", "missing_usage"), 0);
        assert_eq!(count("gateway", "unattributed"), 0);
        assert_eq!(count("gateway", "failed_unbilled"), 2);
        assert_eq!(count("client", "billed_failure"), 1);
        let probing: Vec<_> = s
            .failed_on_unregistered_keys
            .iter()
            .map(|k| (k.key.as_str(), k.rows))
            .collect();
        assert_eq!(probing, [("k1", 1), ("k9", 1)]);
    }

    #[test]
    fn a_deployment_alias_both_sides_agree_on_is_no_model_mismatch() {
        // Issue 17: the client asked for `gpt-4o-mini-mock` and its response
        // said `gpt-4o-mini-2024-07-18`; LiteLLM's `model_group` was the
        // alias and its `model` `gpt-4o-mini`. Nothing fell back, yet every
        // such pair read as a model mismatch. A real fallback still does.
        let gateway = "request_id,api_key,spend,startTime,model,model_group,call_type,prompt_tokens,completion_tokens\n\
                       a,k1,0.0,2026-11-20 10:00:00,gpt-4o-mini,gpt-4o-mini-mock,acompletion,10,10\n\
                       b,k1,0.0,2026-11-20 10:00:01,anthropic/claude-sonnet-4-20250514,gpt-4o,acompletion,10,10\n\
                       c,k1,0.0,2026-11-20 10:00:02,anthropic/claude-sonnet-4-20250514,gpt-4o,acompletion,10,10\n\
                       d,k1,0.0,2026-11-20 10:00:03,gpt-4o-mini,gpt-4o-mini-mock,acompletion,10,10\n";
        let client = "{\"ts\":\"2026-11-20T10:00:00Z\",\"key\":\"k1\",\"model\":\"gpt-4o-mini-mock\",\"response_model\":\"gpt-4o-mini-2024-07-18\",\"route\":\"chat\",\"request_id\":\"a\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10}}\n\
                      {\"ts\":\"2026-11-20T10:00:01Z\",\"key\":\"k1\",\"model\":\"gpt-4o\",\"response_model\":\"claude-sonnet-4-20250514\",\"route\":\"chat\",\"request_id\":\"b\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10}}\n\
                      {\"ts\":\"2026-11-20T10:00:02Z\",\"key\":\"k1\",\"model\":\"gpt-4o\",\"route\":\"chat\",\"request_id\":\"c\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10}}\n\
                      {\"ts\":\"2026-11-20T10:00:03Z\",\"key\":\"k1\",\"model\":\"gpt-4o-mini-mock\",\"response_model\":\"gpt-4o\",\"route\":\"chat\",\"request_id\":\"d\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10}}\n";
        let g = litellm_side(gateway);
        let mut c = Side::new(SideKind::Client);
        crate::parse::client::read_client(client.as_bytes(), "c.jsonl", None, &mut c).unwrap();
        let prices = catalog(&[
            ("gpt-4o", "2026-01-01", "1", "1"),
            ("gpt-4o-mini", "2026-01-01", "1", "1"),
            ("claude-sonnet-4", "2026-01-01", "1", "1"),
        ]);
        let settings = EngineSettings {
            cost_tolerance_absolute: rust_decimal::Decimal::ONE,
            ..EngineSettings::default()
        };
        let rec = plain(&c, &g, &prices, settings);
        let class = |i| rec.verdict(SideKind::Client, i).unwrap().class;
        assert_eq!(class(0), Class::Matched, "the alias both sides used");
        assert_eq!(
            class(1),
            Class::ModelMismatch,
            "asked gpt-4o, claude served, both saw it"
        );
        assert_eq!(
            class(2),
            Class::ModelMismatch,
            "the fallback the client did not log"
        );
        assert_eq!(
            class(3),
            Class::ModelMismatch,
            "the client saw another model than was billed"
        );
    }

    #[test]
    fn a_views_one_fetch_block_row_equals_its_field_accessors() {
        let d = crate::synth::dataset(&crate::synth::Spec {
            rows: 3_000,
            ..Default::default()
        })
        .unwrap();
        let rec = reconcile(
            &d.client,
            &d.gateway,
            &d.keys,
            &AliasTable::default(),
            &d.prices,
            EngineSettings::default(),
        );
        for v in [rec.client_view(), rec.gateway_view()] {
            assert!(v.len() > 2_000);
            for i in 0..v.len() + 1 {
                let r = v.block_row(i);
                assert_eq!(
                    (r.ts, r.key, r.model, r.route, r.core_tokens, r.ids),
                    (
                        v.ts(i),
                        v.key(i),
                        v.model(i),
                        v.route(i),
                        v.core_tokens(i),
                        v.ids(i)
                    ),
                    "row {i}"
                );
            }
        }
    }

    proptest::proptest! {
        /// The integer tolerance check agrees with the exact `Decimal` one,
        /// around and on the boundary, for the tolerances users set.
        #[test]
        fn integer_tolerance_check_equals_the_decimal_one(
            computed in 0i128..10_000_000_000_000_000,
            delta in -200_000_000_000_000i128..200_000_000_000_000,
            rel in proptest::sample::select(vec!["0", "0.01", "0.005", "0.1234", "1", "0.0000000000000000000000001"]),
            abs in proptest::sample::select(vec!["0", "0.000001", "0.00000000000000000005", "0.5"]),
        ) {
            let s = EngineSettings {
                cost_tolerance_relative: rel.parse().unwrap(),
                cost_tolerance_absolute: abs.parse().unwrap(),
                ..EngineSettings::default()
            };
            let (c, r) = (Usd(computed), Usd(computed + delta));
            proptest::prop_assert_eq!(within(r, c, &s), within_decimal(r, c, &s));
            // Exactly on each boundary (and one atto-dollar past it).
            let round = Usd(computed - computed % 10_000);
            for edge in [round.0 / 100, round.0 / 100 + 1, round.0 / 200, 1_000_000_000_000, 1_000_000_000_001] {
                let up = Usd(round.0 + edge);
                proptest::prop_assert_eq!(within(up, round, &s), within_decimal(up, round, &s));
            }
        }
    }
}

//! FOCUS 1.2 rows of a billing period, and a checker of the specification's
//! column rules.
//!
//! FOCUS (the FinOps Open Cost and Usage Specification, version 1.2) is
//! the shape cost-allocation tools import. Tally writes one row per UTC day,
//! owner, key, model and verdict, with the gateway's bill as `BilledCost`
//! and Tally's catalog price as `ListCost`; its own figures ride in `x_`
//! columns. Column rules are those of the specification's v1.2 tag
//! (`specification/columns/*.md` and `specification/attributes/*.md`).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::report_lines::{RecordSink, Tabular};
use crate::time::{DAY_MS, format_ms};

/// One charge: the sums of a group of billed gateway rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The UTC day of the rows (its midnight, ms).
    pub day_ms: i64,
    /// Owner: team ("" when none).
    pub team: String,
    /// Owner: service.
    pub service: String,
    /// Owner: environment.
    pub env: String,
    /// The key's canonical name or fingerprint.
    pub key: String,
    /// Model family.
    pub model: String,
    /// Tally's verdict on the rows (`matched`, `unattributed`, ...).
    pub verdict: String,
    /// Requests.
    pub requests: i64,
    /// Input plus output tokens.
    pub tokens: i64,
    /// What the gateway billed, USD.
    pub billed: Decimal,
    /// Tally's catalog price of the priced rows, USD.
    pub computed: Decimal,
    /// Rows without a catalog price: their list cost is what they were
    /// billed, never zero.
    pub unpriced_rows: i64,
    /// What the unpriced rows were billed, USD.
    pub unpriced_billed: Decimal,
    /// The run the figures come from.
    pub run_id: Option<i64>,
    /// A correction to a closed billing period (ChargeClass `Correction`).
    pub correction: bool,
}

/// The grain a charge is identified by: UTC day, team, service, env, key,
/// model, verdict.
pub type Grain = (i64, String, String, String, String, String, String);

impl Charge {
    /// Its grain.
    pub fn grain(&self) -> Grain {
        (
            self.day_ms,
            self.team.clone(),
            self.service.clone(),
            self.env.clone(),
            self.key.clone(),
            self.model.clone(),
            self.verdict.clone(),
        )
    }

    /// A charge of the same grain with nothing in it.
    pub fn empty_like(&self) -> Charge {
        Charge {
            requests: 0,
            tokens: 0,
            billed: Decimal::ZERO,
            computed: Decimal::ZERO,
            unpriced_rows: 0,
            unpriced_billed: Decimal::ZERO,
            run_id: None,
            ..self.clone()
        }
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) another charge's figures.
    pub fn add(&mut self, o: &Charge, sign: i64) {
        let d = Decimal::from(sign);
        self.requests += sign * o.requests;
        self.tokens += sign * o.tokens;
        self.billed += d * o.billed;
        self.computed += d * o.computed;
        self.unpriced_rows += sign * o.unpriced_rows;
        self.unpriced_billed += d * o.unpriced_billed;
        self.run_id = self.run_id.max(o.run_id);
    }

    /// List cost: the catalog price of the priced rows plus what the
    /// unpriced ones were billed.
    pub fn list(&self) -> Decimal {
        self.computed + self.unpriced_billed
    }

    /// Whether every amount and count is zero (no correction to write).
    pub fn is_zero(&self) -> bool {
        self.requests == 0
            && self.tokens == 0
            && self.billed.is_zero()
            && self.computed.is_zero()
            && self.unpriced_rows == 0
            && self.unpriced_billed.is_zero()
    }
}

/// Corrections to a closed period: what the charges are now, less what was
/// frozen for each grain (closed rows and earlier corrections alike). A
/// grain frozen but gone now is corrected to zero; equal grains give none.
pub fn corrections(now: &[Charge], frozen: &[Charge]) -> Vec<Charge> {
    let mut diff: BTreeMap<Grain, Charge> = BTreeMap::new();
    for (side, sign) in [(now, 1), (frozen, -1)] {
        for c in side {
            diff.entry(c.grain())
                .or_insert_with(|| c.empty_like())
                .add(c, sign);
        }
    }
    diff.into_values()
        .filter(|c| !c.is_zero())
        .map(|mut c| {
            c.correction = true;
            c
        })
        .collect()
}

/// Who bills: the columns every row of an export shares (the service's
/// `[focus]` settings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Account {
    /// `BillingAccountId`: the account the gateway bills.
    pub billing_account_id: String,
    /// `BillingAccountName`, when known.
    pub billing_account_name: Option<String>,
    /// `ProviderName`: who makes the models available (the gateway or the
    /// provider). `None` (or blank): the model's publisher.
    pub provider_name: Option<String>,
    /// `InvoiceIssuerName`. `None` (or blank): the provider.
    pub invoice_issuer_name: Option<String>,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            billing_account_id: "default".to_owned(),
            billing_account_name: None,
            provider_name: None,
            invoice_issuer_name: None,
        }
    }
}

/// A setting's text, unless it is unset or blank.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Who publishes a model, from its family name: the vendor a cost tool
/// groups spend by. Names it does not know go under `Other`.
pub fn publisher_of(model: &str) -> &'static str {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    const BY_PREFIX: [(&str, &str); 16] = [
        ("gpt", "OpenAI"),
        ("o1", "OpenAI"),
        ("o3", "OpenAI"),
        ("o4", "OpenAI"),
        ("text-embedding", "OpenAI"),
        ("dall-e", "OpenAI"),
        ("whisper", "OpenAI"),
        ("claude", "Anthropic"),
        ("gemini", "Google"),
        ("gemma", "Google"),
        ("llama", "Meta"),
        ("mistral", "Mistral AI"),
        ("mixtral", "Mistral AI"),
        ("command", "Cohere"),
        ("deepseek", "DeepSeek"),
        ("grok", "xAI"),
    ];
    BY_PREFIX
        .iter()
        .find(|(p, _)| m.starts_with(p))
        .map_or("Other", |(_, v)| v)
}

/// FOCUS 1.2 columns Tally writes: the 21 mandatory ones, the conditional
/// and recommended ones that apply to metered LLM usage, alphabetically;
/// then Tally's own (`x_`).
pub const HEADERS: [&str; 39] = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "Tags",
    "x_ModelFamily",
    "x_ReportedCost",
    "x_TallyComputedCost",
    "x_TallyRequests",
    "x_TallyRunId",
    "x_TallyUnpricedRows",
    "x_TallyVerdict",
    "x_TallyOwner",
    "x_TallyContract",
];

/// One FOCUS row: a charge in its billing period.
#[derive(Debug, Clone)]
pub struct FocusRow<'a> {
    /// The charge.
    pub charge: &'a Charge,
    /// Billing period `[start, end)`, UTC ms.
    pub period: (i64, i64),
    /// Who bills.
    pub account: &'a Account,
    /// The contract in force for the charge's model on its day, and the
    /// charge's contracted cost under it (tiers applied by the caller's
    /// [`crate::contracts::Meter`]); `None`: the list cost.
    pub contract: Option<(&'a str, Decimal)>,
}

/// Decimal text in FOCUS's numeric format: no exponent, no `+`, no
/// trailing zeros.
fn amount(d: Decimal) -> String {
    d.normalize().to_string()
}

/// `YYYY-MM-DDTHH:mm:ssZ`, as the specification's date/time format asks.
fn datetime(ms: i64) -> String {
    let s = format_ms(ms);
    // `2026-11-20T00:00:00.000Z` -> `2026-11-20T00:00:00Z`.
    match s.get(..19) {
        Some(head) => format!("{head}Z"),
        None => s,
    }
}

impl Tabular for FocusRow<'_> {
    fn headers() -> &'static [&'static str] {
        &HEADERS
    }

    fn write(&self, out: &mut dyn RecordSink) {
        let c = self.charge;
        let a = self.account;
        let publisher = publisher_of(&c.model);
        let provider = set(&a.provider_name).unwrap_or(publisher);
        let issuer = set(&a.invoice_issuer_name).unwrap_or(provider);
        let account_name = set(&a.billing_account_name).unwrap_or("");
        let owner: Vec<&str> = [c.team.as_str(), c.service.as_str(), c.env.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let owner = owner.join("/");
        let mut tags = serde_json::Map::new();
        for (k, v) in [("team", &c.team), ("service", &c.service), ("env", &c.env)] {
            if !v.is_empty() {
                tags.insert(k.to_owned(), serde_json::Value::String(v.clone()));
            }
        }
        let list = amount(c.list());
        // A share off list has more places than money keeps: rounded to
        // the nano-dollar (half to even), as every stored amount is.
        let contracted = amount(self.contract.map_or_else(
            || c.list(),
            |(_, k)| {
                k.round_dp_with_strategy(9, rust_decimal::RoundingStrategy::MidpointNearestEven)
            },
        ));
        let billed = amount(c.billed);
        // A correction's quantities may be null; Tally keeps them (the
        // difference in tokens) so the correction explains itself.
        out.plain(&billed);
        out.text(&a.billing_account_id);
        out.text(account_name);
        out.plain("USD");
        out.plain(&datetime(self.period.1));
        out.plain(&datetime(self.period.0));
        out.plain("Usage");
        out.plain(if c.correction { "Correction" } else { "" });
        out.text(&format!(
            "{} request{} to {} on key {}{}",
            c.requests,
            if c.requests == 1 { "" } else { "s" },
            c.model,
            c.key,
            if c.correction {
                " (late rows for a closed period)"
            } else {
                ""
            }
        ));
        out.plain("Usage-Based");
        out.plain(&datetime(c.day_ms + DAY_MS));
        out.plain(&datetime(c.day_ms));
        out.plain(&c.tokens.to_string());
        out.plain("Tokens");
        out.plain(&contracted);
        out.plain(&billed);
        out.text(issuer);
        out.plain(&list);
        out.plain("Standard");
        out.plain(&c.tokens.to_string());
        out.plain("Tokens");
        out.text(provider);
        out.text(publisher);
        out.text(&c.key);
        out.text(&c.key);
        out.plain("API Key");
        out.plain("AI and Machine Learning");
        out.text(&format!("{publisher} API"));
        out.plain("Generative AI");
        // No tags is null, not an empty object.
        if tags.is_empty() {
            out.plain("");
        } else {
            out.text(&serde_json::Value::Object(tags).to_string());
        }
        out.text(&c.model);
        out.plain(&billed);
        out.plain(&amount(c.computed));
        out.plain(&c.requests.to_string());
        out.plain(&c.run_id.map(|r| r.to_string()).unwrap_or_default());
        out.plain(&c.unpriced_rows.to_string());
        out.plain(&c.verdict);
        out.text(&owner);
        out.text(self.contract.map_or("", |(name, _)| name));
    }
}

/// How a column of an export is typed (for Parquet and other typed sinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Text.
    Text,
    /// A decimal amount or quantity (at most 9 decimal places here).
    Decimal,
    /// A whole number.
    Integer,
    /// A UTC time, `YYYY-MM-DDTHH:mm:ssZ`.
    DateTime,
}

/// The type of column `name` of [`HEADERS`]: FOCUS's own for its columns,
/// Tally's for the `x_` ones.
pub fn column_type(name: &str) -> ColumnType {
    match name {
        "x_ReportedCost" | "x_TallyComputedCost" => ColumnType::Decimal,
        "x_TallyRequests" | "x_TallyRunId" | "x_TallyUnpricedRows" => ColumnType::Integer,
        _ => match RULES.iter().find(|r| r.name == name).map(|r| r.kind) {
            Some(Kind::Decimal) => ColumnType::Decimal,
            Some(Kind::DateTime) => ColumnType::DateTime,
            _ => ColumnType::Text,
        },
    }
}

/// A FOCUS column's type and rules, as the specification gives them.
struct Rule {
    name: &'static str,
    mandatory: bool,
    nullable: bool,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Decimal,
    DateTime,
    Currency,
    Json,
    Allowed(&'static [&'static str]),
}

/// Every FOCUS 1.2 column, its feature level (mandatory or not), whether
/// it allows nulls, and its value format.
const RULES: [Rule; 57] = {
    use Kind::*;
    const fn r(name: &'static str, mandatory: bool, nullable: bool, kind: Kind) -> Rule {
        Rule {
            name,
            mandatory,
            nullable,
            kind,
        }
    }
    [
        r("AvailabilityZone", false, true, Text),
        r("BilledCost", true, false, Decimal),
        r("BillingAccountId", true, false, Text),
        r("BillingAccountName", true, true, Text),
        r("BillingAccountType", false, false, Text),
        r("BillingCurrency", true, false, Currency),
        r("BillingPeriodEnd", true, false, DateTime),
        r("BillingPeriodStart", true, false, DateTime),
        r("CapacityReservationId", false, true, Text),
        r(
            "CapacityReservationStatus",
            false,
            true,
            Allowed(&["Used", "Unused"]),
        ),
        r(
            "ChargeCategory",
            true,
            false,
            Allowed(&["Usage", "Purchase", "Tax", "Credit", "Adjustment"]),
        ),
        r("ChargeClass", true, true, Allowed(&["Correction"])),
        r("ChargeDescription", true, true, Text),
        r(
            "ChargeFrequency",
            false,
            false,
            Allowed(&["One-Time", "Recurring", "Usage-Based"]),
        ),
        r("ChargePeriodEnd", true, false, DateTime),
        r("ChargePeriodStart", true, false, DateTime),
        r(
            "CommitmentDiscountCategory",
            false,
            true,
            Allowed(&["Spend", "Usage"]),
        ),
        r("CommitmentDiscountId", false, true, Text),
        r("CommitmentDiscountName", false, true, Text),
        r("CommitmentDiscountQuantity", false, true, Decimal),
        r(
            "CommitmentDiscountStatus",
            false,
            true,
            Allowed(&["Used", "Unused"]),
        ),
        r("CommitmentDiscountType", false, true, Text),
        r("CommitmentDiscountUnit", false, true, Text),
        r("ConsumedQuantity", false, true, Decimal),
        r("ConsumedUnit", false, true, Text),
        r("ContractedCost", true, false, Decimal),
        r("ContractedUnitPrice", false, true, Decimal),
        r("EffectiveCost", true, false, Decimal),
        r("InvoiceId", false, true, Text),
        r("InvoiceIssuerName", true, false, Text),
        r("ListCost", true, false, Decimal),
        r("ListUnitPrice", false, true, Decimal),
        r(
            "PricingCategory",
            false,
            true,
            Allowed(&["Standard", "Dynamic", "Committed", "Other"]),
        ),
        r("PricingCurrency", false, true, Currency),
        r("PricingCurrencyContractedUnitPrice", false, true, Decimal),
        r("PricingCurrencyEffectiveCost", false, true, Decimal),
        r("PricingCurrencyListUnitPrice", false, true, Decimal),
        r("PricingQuantity", true, true, Decimal),
        r("PricingUnit", true, true, Text),
        r("ProviderName", true, false, Text),
        r("PublisherName", true, false, Text),
        r("RegionId", false, true, Text),
        r("RegionName", false, true, Text),
        r("ResourceId", false, true, Text),
        r("ResourceName", false, true, Text),
        r("ResourceType", false, true, Text),
        r(
            "ServiceCategory",
            true,
            false,
            Allowed(&[
                "AI and Machine Learning",
                "Analytics",
                "Business Applications",
                "Compute",
                "Databases",
                "Developer Tools",
                "Multicloud",
                "Identity",
                "Integration",
                "Internet of Things",
                "Management and Governance",
                "Media",
                "Migration",
                "Mobile",
                "Networking",
                "Security",
                "Storage",
                "Web",
                "Other",
            ]),
        ),
        r("ServiceName", true, false, Text),
        r("ServiceSubcategory", false, false, Text),
        r("SkuId", false, true, Text),
        r("SkuMeter", false, true, Text),
        r("SkuPriceDetails", false, true, Json),
        r("SkuPriceId", false, true, Text),
        r("SubAccountId", false, true, Text),
        r("SubAccountName", false, true, Text),
        r("SubAccountType", false, true, Text),
        r("Tags", false, true, Json),
    ]
};

/// The subcategories FOCUS 1.2 allows under "AI and Machine Learning".
const AI_SUBCATEGORIES: [&str; 6] = [
    "AI Platforms",
    "Bots",
    "Generative AI",
    "Machine Learning",
    "Natural Language Processing",
    "Other (AI and Machine Learning)",
];

/// Checks a FOCUS 1.2 CSV against the specification's column rules: the
/// header (every mandatory column, custom columns prefixed `x_` and after
/// the FOCUS ones, no unknown FOCUS-looking column), and each row (nulls
/// where the column allows none, decimals, `YYYY-MM-DDTHH:mm:ssZ` times,
/// ISO 4217 currencies, allowed values, key-value JSON, the charge and
/// billing periods in order, and the conditional rules for usage rows).
/// Returns one message per broken rule, naming the line and column.
pub fn check_csv(csv_text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let mut rdr = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    let headers: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(str::to_owned).collect(),
        Err(e) => return vec![format!("header: {e}")],
    };
    let rule = |name: &str| RULES.iter().find(|r| r.name == name);
    for r in RULES.iter().filter(|r| r.mandatory) {
        if !headers.iter().any(|h| h == r.name) {
            bad.push(format!("header: mandatory column {} is missing", r.name));
        }
    }
    let mut seen_custom = false;
    for (i, h) in headers.iter().enumerate() {
        if headers.iter().take(i).any(|p| p == h) {
            bad.push(format!("header: column {h} appears twice"));
        }
        if h.starts_with("x_") {
            seen_custom = true;
        } else if rule(h).is_none() {
            bad.push(format!(
                "header: {h} is no FOCUS 1.2 column and lacks the x_ prefix"
            ));
        } else if seen_custom {
            bad.push(format!(
                "header: FOCUS column {h} comes after custom columns"
            ));
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    for (n, record) in rdr.records().enumerate() {
        let line = n + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let get = |name: &str| col(name).and_then(|i| record.get(i)).unwrap_or("");
        for (i, h) in headers.iter().enumerate() {
            let Some(r) = rule(h) else { continue };
            let v = record.get(i).unwrap_or("");
            if v.is_empty() {
                if !r.nullable {
                    bad.push(format!("line {line}: {h} is null"));
                }
                continue;
            }
            let ok = match r.kind {
                Kind::Text => !v.trim().is_empty(),
                Kind::Decimal => is_numeric(v),
                Kind::DateTime => is_datetime(v),
                Kind::Currency => v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase()),
                Kind::Json => is_key_value(v),
                Kind::Allowed(values) => values.contains(&v),
            };
            if !ok {
                bad.push(format!("line {line}: {h} `{v}` breaks its value format"));
            }
        }
        if get("ServiceCategory") == "AI and Machine Learning"
            && !get("ServiceSubcategory").is_empty()
            && !AI_SUBCATEGORIES.contains(&get("ServiceSubcategory"))
        {
            bad.push(format!(
                "line {line}: ServiceSubcategory `{}` is not one of AI and Machine Learning's",
                get("ServiceSubcategory")
            ));
        }
        for (start, end) in [
            ("ChargePeriodStart", "ChargePeriodEnd"),
            ("BillingPeriodStart", "BillingPeriodEnd"),
        ] {
            if get(start) >= get(end) {
                bad.push(format!("line {line}: {start} is not before {end}"));
            }
        }
        let correction = get("ChargeClass") == "Correction";
        // A regular charge lies in its billing period; a correction is for
        // an earlier one.
        if !correction
            && (get("ChargePeriodStart") < get("BillingPeriodStart")
                || get("ChargePeriodEnd") > get("BillingPeriodEnd"))
        {
            bad.push(format!(
                "line {line}: the charge period is outside the billing period"
            ));
        }
        if correction && get("ChargePeriodStart") >= get("BillingPeriodStart") {
            bad.push(format!(
                "line {line}: a correction is for a period before its billing period"
            ));
        }
        let usage = get("ChargeCategory") == "Usage";
        for name in ["ConsumedQuantity", "PricingQuantity", "PricingCategory"] {
            if usage && !correction && col(name).is_some() && get(name).is_empty() {
                bad.push(format!(
                    "line {line}: {name} is null on a usage charge that is no correction"
                ));
            }
        }
        for (qty, unit) in [
            ("ConsumedQuantity", "ConsumedUnit"),
            ("PricingQuantity", "PricingUnit"),
        ] {
            if get(qty).is_empty() != get(unit).is_empty() {
                bad.push(format!(
                    "line {line}: {qty} and {unit} are not null together"
                ));
            }
        }
    }
    bad
}

/// FOCUS's numeric format: an integer, a decimal or `mEn`, a `-` only for
/// negatives, no other characters.
fn is_numeric(v: &str) -> bool {
    let (mantissa, exponent) = match v.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (v, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let m = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let m_ok = match m.split_once('.') {
        Some((a, b)) => digits(a) && digits(b),
        None => digits(m),
    };
    let e_ok = exponent.is_none_or(|e| digits(e.strip_prefix('-').unwrap_or(e)));
    m_ok && e_ok
}

/// `YYYY-MM-DDTHH:mm:ssZ`, a real UTC time.
fn is_datetime(v: &str) -> bool {
    v.len() == 20
        && v.ends_with('Z')
        && chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%SZ").is_ok()
}

/// A JSON object whose values are strings, numbers, booleans or null.
fn is_key_value(v: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::Object(m)) => m.values().all(|x| {
            !matches!(
                x,
                serde_json::Value::Object(_) | serde_json::Value::Array(_)
            )
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(billed: &str, computed: &str) -> Charge {
        Charge {
            day_ms: 1_795_132_800_000,
            team: "support".to_owned(),
            service: "support-bot".to_owned(),
            env: "prod".to_owned(),
            key: "key_support_prod".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            verdict: "matched".to_owned(),
            requests: 3,
            tokens: 1200,
            billed: billed.parse().unwrap(),
            computed: computed.parse().unwrap(),
            unpriced_rows: 0,
            unpriced_billed: Decimal::ZERO,
            run_id: Some(1),
            correction: false,
        }
    }

    struct Cells(Vec<String>);

    impl RecordSink for Cells {
        fn text(&mut self, s: &str) {
            self.0.push(s.to_owned());
        }
        fn plain(&mut self, s: &str) {
            self.0.push(s.to_owned());
        }
    }

    fn csv_of(rows: &[FocusRow<'_>]) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(HEADERS).unwrap();
        for r in rows {
            let mut c = Cells(Vec::new());
            r.write(&mut c);
            assert_eq!(c.0.len(), HEADERS.len());
            w.write_record(&c.0).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    const NOV: (i64, i64) = (1_793_491_200_000, 1_796_083_200_000);

    #[test]
    fn a_charge_is_a_valid_focus_row_and_the_checker_catches_each_broken_rule() {
        let a = Account::default();
        let c = charge("0.0012", "0.001");
        let good = csv_of(&[FocusRow {
            charge: &c,
            period: NOV,
            account: &a,
            contract: None,
        }]);
        assert_eq!(check_csv(&good), Vec::<String>::new(), "{good}");
        // Billing period end and start, then (later) the charge's day.
        assert!(good.contains(",USD,2026-12-01T00:00:00Z,2026-11-01T00:00:00Z,Usage,,"));
        assert!(
            good.contains(",Usage-Based,2026-11-21T00:00:00Z,2026-11-20T00:00:00Z,1200,Tokens,")
        );
        // Each edit breaks exactly the rule it names.
        for (from, to, rule) in [
            ("USD", "usd", "BillingCurrency"),
            ("Usage-Based", "Sometimes", "ChargeFrequency"),
            ("AI and Machine Learning", "AI", "ServiceCategory"),
            (
                "2026-11-20T00:00:00Z",
                "2026-11-20 00:00:00",
                "ChargePeriodStart",
            ),
            ("0.0012", "$0.0012", "BilledCost"),
            ("Generative AI", "Chatbots", "ServiceSubcategory"),
            ("OpenAI,OpenAI", ",OpenAI", "ProviderName"),
        ] {
            let broken = good.replacen(from, to, 1);
            let got = check_csv(&broken);
            assert!(
                got.iter().any(|m| m.contains(rule)),
                "{from} -> {to}: {got:?}"
            );
        }
        let no_mandatory = good.replacen("InvoiceIssuerName", "x_InvoiceIssuerName", 1);
        assert!(
            check_csv(&no_mandatory)
                .iter()
                .any(|m| m.contains("InvoiceIssuerName is missing"))
        );
        let unprefixed = good.replacen("x_TallyVerdict", "TallyVerdict", 1);
        assert!(
            check_csv(&unprefixed)
                .iter()
                .any(|m| m.contains("lacks the x_ prefix"))
        );
    }

    #[test]
    fn corrections_are_what_changed_per_grain_and_nothing_when_nothing_did() {
        let frozen = vec![charge("0.0012", "0.001")];
        assert!(corrections(&frozen, &frozen).is_empty());
        // Two late requests on the same grain, one on a new model.
        let mut more = charge("0.0020", "0.0018");
        more.requests = 5;
        more.tokens = 2000;
        let mut other = charge("0.5", "0.4");
        other.model = "claude-sonnet-4".to_owned();
        let got = corrections(&[more, other.clone()], &frozen);
        assert_eq!(got.len(), 2);
        let same = got.iter().find(|c| c.model == "gpt-4o-mini").unwrap();
        assert_eq!(same.requests, 2);
        assert_eq!(same.billed, "0.0008".parse::<Decimal>().unwrap());
        assert!(got.iter().all(|c| c.correction));
        // A correction row is valid FOCUS in the next billing period.
        let a = Account::default();
        let dec = (NOV.1, NOV.1 + 31 * DAY_MS);
        let rows: Vec<FocusRow<'_>> = got
            .iter()
            .map(|c| FocusRow {
                charge: c,
                period: dec,
                account: &a,
                contract: None,
            })
            .collect();
        let text = csv_of(&rows);
        assert_eq!(check_csv(&text), Vec::<String>::new(), "{text}");
        assert!(text.contains(",Correction,"));
        // In its own period it would not be.
        let own: Vec<FocusRow<'_>> = got
            .iter()
            .map(|c| FocusRow {
                charge: c,
                period: NOV,
                account: &a,
                contract: None,
            })
            .collect();
        assert!(!check_csv(&csv_of(&own)).is_empty());
    }

    #[test]
    fn publishers_by_model_family() {
        assert_eq!(publisher_of("gpt-4o-mini"), "OpenAI");
        assert_eq!(publisher_of("anthropic/claude-sonnet-4"), "Anthropic");
        assert_eq!(publisher_of("text-embedding-3-small"), "OpenAI");
        assert_eq!(publisher_of("my-finetune"), "Other");
    }
}

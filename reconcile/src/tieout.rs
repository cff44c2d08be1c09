//! Tie-out: the providers' own usage and cost reports against the gateway's
//! rows, bucket by bucket.
//!
//! A gateway logs what passed through it; the provider invoices what it
//! served. Gateways under load drop log rows, so the third leg of a month's
//! books is the provider's report: OpenAI's Usage and Costs APIs,
//! Anthropic's Admin usage and cost reports, OpenRouter's activity. None of
//! them carries a request id, so the check is by sums: the gateway's rows
//! are put in the report's own buckets (UTC) and compared per provider,
//! bucket and model family.
//!
//! Field names are the providers' published ones (see
//! `shared/reference/formats.md` sections 1c, 3a, 3b, 4a and 4b): token
//! semantics are normalised here (OpenAI's `input_tokens` includes cached
//! and cache-write tokens; Anthropic's `uncached_input_tokens` excludes
//! both, so its input is uncached + cache reads + 5 min + 1 h writes), and
//! costs read exactly from the JSON text (OpenAI's float USD, Anthropic's
//! cents as a decimal string, OpenRouter's float USD).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::models::AliasTable;

/// Who served and invoiced the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenAI's API.
    OpenAi,
    /// Anthropic's API.
    Anthropic,
    /// OpenRouter.
    OpenRouter,
}

impl Provider {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::OpenRouter => "openrouter",
        }
    }

    /// The provider a gateway row was billed by: OpenRouter's own export,
    /// else the served model's provider prefix (LiteLLM's `openai/gpt-4o`),
    /// else the model family's publisher.
    pub fn of_row(source: &str, served: &str, family: &str) -> Option<Provider> {
        if source.starts_with("openrouter") {
            return Some(Provider::OpenRouter);
        }
        match served.split_once('/').map(|(p, _)| p.to_ascii_lowercase()) {
            Some(p) if p == "openai" => return Some(Provider::OpenAi),
            Some(p) if p == "anthropic" => return Some(Provider::Anthropic),
            Some(p) if p == "openrouter" => return Some(Provider::OpenRouter),
            Some(_) => return None,
            None => {}
        }
        match crate::focus::publisher_of(family) {
            "OpenAI" => Some(Provider::OpenAi),
            "Anthropic" => Some(Provider::Anthropic),
            _ => None,
        }
    }
}

/// Sums of one provider, bucket and model family, from either side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sums {
    /// Requests (`None`: the report does not count them).
    pub requests: Option<u64>,
    /// Input tokens, cached and cache writes included.
    pub input_tokens: u64,
    /// Of which read from the prompt cache.
    pub cached_tokens: u64,
    /// Of which written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
    /// Cost, USD (`None`: not reported).
    pub cost: Option<Decimal>,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.requests = match (self.requests, o.requests) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.input_tokens += o.input_tokens;
        self.cached_tokens += o.cached_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.output_tokens += o.output_tokens;
        self.cost = match (self.cost, o.cost) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
        };
    }
}

/// One result of a provider report, in its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// Who reports it.
    pub provider: Provider,
    /// The bucket, `[start, end)` UTC ms.
    pub bucket: (i64, i64),
    /// The model as the provider names it (a dated snapshot).
    pub model: String,
    /// The provider's key and project (OpenAI `api_key_id` and
    /// `project_id`, Anthropic `api_key_id` and `workspace_id`, OpenRouter
    /// `api_key_hash`), when the report is grouped by them.
    pub accounts: Vec<String>,
    /// What it counted or charged.
    pub sums: Sums,
}

/// A report file read: its results, and whether its pages say more follow.
#[derive(Debug, Clone, Default)]
pub struct ReportPage {
    /// What kind of report it is (`openai_usage`, `anthropic_cost`, ...).
    pub kind: &'static str,
    /// Its results.
    pub results: Vec<Reported>,
    /// The cursor of a page still to fetch, when the page says `has_more`.
    pub next_page: Option<String>,
}

fn num(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => n.to_string().parse::<Decimal>().ok().or_else(|| {
            // Exponent form (`1e-05`): Decimal reads it as scientific.
            Decimal::from_scientific(&n.to_string()).ok()
        }),
        Value::String(s) => s.trim().parse::<Decimal>().ok(),
        _ => None,
    }
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn secs(v: &Value) -> Option<i64> {
    v.as_i64().map(|s| s * 1000)
}

fn rfc3339(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_millis())
}

/// The key and project ids a result names (null unless grouped by them).
fn accounts_of(r: &Value) -> Vec<String> {
    ["api_key_id", "project_id", "workspace_id", "api_key_hash"]
        .iter()
        .filter_map(|k| r.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Which provider keys or projects go with which gateway keys: a tie-out
/// with a map compares each group apart (a provider project against the
/// gateway deployments that use it) instead of the whole provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountMap {
    groups: Vec<(Provider, String, Vec<String>, Vec<String>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    provider: Provider,
    #[serde(default)]
    provider_ids: Vec<String>,
    #[serde(default)]
    gateway_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    #[serde(default)]
    group: Vec<RawGroup>,
}

impl AccountMap {
    /// Reads `[[group]] name, provider, provider_ids, gateway_keys`.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, Error> {
        let raw: RawMap =
            toml::from_str(text).map_err(|e| Error::invalid(file, e.message().to_owned()))?;
        let mut groups = Vec::new();
        for g in raw.group {
            if g.name.trim().is_empty() || g.provider_ids.is_empty() || g.gateway_keys.is_empty() {
                return Err(Error::invalid(
                    file,
                    format!(
                        "group `{}`: needs a name, provider_ids and gateway_keys",
                        g.name
                    ),
                ));
            }
            groups.push((g.provider, g.name, g.provider_ids, g.gateway_keys));
        }
        Ok(Self { groups })
    }

    fn of_report(&self, provider: Provider, accounts: &[String]) -> String {
        self.groups
            .iter()
            .find(|(p, _, ids, _)| *p == provider && accounts.iter().any(|a| ids.contains(a)))
            .map_or_else(String::new, |g| g.1.clone())
    }

    fn of_row(&self, provider: Provider, key: &str) -> String {
        self.groups
            .iter()
            .find(|(p, _, _, keys)| *p == provider && keys.iter().any(|k| k == key))
            .map_or_else(String::new, |g| g.1.clone())
    }
}

/// Reads one page of a provider report (the JSON body an API returned),
/// recognising it by its shape. `name` names the file in errors.
pub fn read_page(text: &str, name: &str) -> Result<ReportPage, Error> {
    let bad = |m: String| Error::invalid(name, m);
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `data` array: not a provider report page".to_owned()))?;
    let next_page = (v.get("has_more").and_then(Value::as_bool) == Some(true)).then(|| {
        v.get("next_page")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    });
    // OpenRouter's activity: flat items, one per UTC day and endpoint.
    if data
        .first()
        .is_some_and(|d| d.get("date").is_some() && d.get("usage").is_some())
    {
        let mut results = Vec::new();
        for (i, d) in data.iter().enumerate() {
            let day = d
                .get("date")
                .and_then(Value::as_str)
                .and_then(|s| chrono::NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
                .ok_or_else(|| bad(format!("data[{i}].date is not YYYY-MM-DD")))?;
            let model = d
                .get("model_permaslug")
                .or_else(|| d.get("model"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            results.push(Reported {
                provider: Provider::OpenRouter,
                bucket: (day, day + crate::time::DAY_MS),
                model,
                accounts: accounts_of(d),
                sums: Sums {
                    requests: Some(count(&d["requests"])),
                    input_tokens: count(&d["prompt_tokens"]),
                    output_tokens: count(&d["completion_tokens"]),
                    cost: Some(
                        num(&d["usage"])
                            .ok_or_else(|| bad(format!("data[{i}].usage is not a number")))?,
                    ),
                    ..Sums::default()
                },
            });
        }
        return Ok(ReportPage {
            kind: "openrouter_activity",
            results,
            next_page,
        });
    }
    let mut kind = "";
    let mut results = Vec::new();
    for (i, b) in data.iter().enumerate() {
        // OpenAI buckets: unix seconds; Anthropic's: RFC 3339.
        let bucket = match (b.get("start_time"), b.get("starting_at")) {
            (Some(s), _) => (secs(s), b.get("end_time").and_then(secs)),
            (None, Some(s)) => (rfc3339(s), b.get("ending_at").and_then(rfc3339)),
            _ => (None, None),
        };
        let (Some(start), Some(end)) = bucket else {
            return Err(bad(format!("data[{i}] has no bucket start and end")));
        };
        let Some(rs) = b.get("results").and_then(Value::as_array) else {
            return Err(bad(format!("data[{i}] has no `results`")));
        };
        for (j, r) in rs.iter().enumerate() {
            let at = || format!("data[{i}].results[{j}]");
            let model = r
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let (k, provider, sums, model) = if r.get("num_model_requests").is_some() {
                (
                    "openai_usage",
                    Provider::OpenAi,
                    Sums {
                        requests: Some(count(&r["num_model_requests"])),
                        input_tokens: count(&r["input_tokens"]),
                        cached_tokens: count(&r["input_cached_tokens"]),
                        cache_write_tokens: count(&r["input_cache_write_tokens"]),
                        output_tokens: count(&r["output_tokens"]),
                        cost: None,
                    },
                    model,
                )
            } else if r.get("uncached_input_tokens").is_some() {
                let cache = &r["cache_creation"];
                let writes = count(&cache["ephemeral_5m_input_tokens"])
                    + count(&cache["ephemeral_1h_input_tokens"]);
                let cached = count(&r["cache_read_input_tokens"]);
                (
                    "anthropic_usage",
                    Provider::Anthropic,
                    Sums {
                        requests: None,
                        input_tokens: count(&r["uncached_input_tokens"]) + cached + writes,
                        cached_tokens: cached,
                        cache_write_tokens: writes,
                        output_tokens: count(&r["output_tokens"]),
                        cost: None,
                    },
                    model,
                )
            } else if let Some(amount) = r.get("amount") {
                match amount {
                    // OpenAI: `{value: float, currency: "usd"}`; the model is
                    // the line item's head (`gpt-4o-2024-08-06, input`).
                    Value::Object(a) => {
                        let value = a
                            .get("value")
                            .and_then(num)
                            .ok_or_else(|| bad(format!("{}.amount.value is not a number", at())))?;
                        let item = r.get("line_item").and_then(Value::as_str).unwrap_or("");
                        let head = item.split(',').next().unwrap_or("").trim();
                        let model = head.rsplit(" | ").next().unwrap_or(head).to_owned();
                        (
                            "openai_costs",
                            Provider::OpenAi,
                            Sums {
                                cost: Some(value),
                                ..Sums::default()
                            },
                            model,
                        )
                    }
                    // Anthropic: cents as a decimal string.
                    _ => {
                        let cents = num(amount)
                            .ok_or_else(|| bad(format!("{}.amount is not a number", at())))?;
                        (
                            "anthropic_cost",
                            Provider::Anthropic,
                            Sums {
                                cost: Some(cents / Decimal::ONE_HUNDRED),
                                ..Sums::default()
                            },
                            model,
                        )
                    }
                }
            } else {
                return Err(bad(format!(
                    "{}: neither usage nor cost fields of a known provider report",
                    at()
                )));
            };
            kind = k;
            results.push(Reported {
                provider,
                bucket: (start, end),
                model,
                accounts: accounts_of(r),
                sums,
            });
        }
    }
    Ok(ReportPage {
        kind: if kind.is_empty() { "empty" } else { kind },
        results,
        next_page,
    })
}

/// A gateway row for the tie-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRow {
    /// Who billed it.
    pub provider: Provider,
    /// Its key as the gateway names it (for an [`AccountMap`]).
    pub key: String,
    /// Request start, UTC ms.
    pub ts_ms: i64,
    /// The model (any spelling: it is folded to its family).
    pub model: String,
    /// Its counts and the gateway-reported cost.
    pub sums: Sums,
}

/// How a bucket's two sides compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Same requests, tokens and cost (within the tolerance).
    Agrees,
    /// The provider served more than the gateway logged.
    GatewayUnderReports,
    /// The gateway logged more than the provider served.
    GatewayOverReports,
    /// Same usage, a different cost.
    PricedDifferently,
}

impl Verdict {
    /// Its name in reports (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Agrees => "agrees",
            Verdict::GatewayUnderReports => "gateway_under_reports",
            Verdict::GatewayOverReports => "gateway_over_reports",
            Verdict::PricedDifferently => "priced_differently",
        }
    }
}

/// One provider, bucket and model family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketLine {
    /// The provider.
    pub provider: Provider,
    /// Bucket start, UTC ms.
    pub start_ms: i64,
    /// Bucket end, UTC ms.
    pub end_ms: i64,
    /// Model family.
    pub model: String,
    /// The [`AccountMap`] group ("" without a map, or outside every group).
    pub group: String,
    /// What the provider reports.
    pub provider_sums: Sums,
    /// What the gateway logged.
    pub gateway_sums: Sums,
    /// The comparison.
    pub verdict: Verdict,
    /// Provider cost less the gateway's, USD, when the provider reports
    /// cost (the money the gap is worth).
    pub gap: Option<Decimal>,
}

/// The tie-out of a set of reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TieOut {
    /// Every bucket line, by provider, time and model.
    pub lines: Vec<BucketLine>,
    /// Gap per provider, USD.
    pub gap_by_provider: BTreeMap<String, Decimal>,
    /// Gap per model family, USD.
    pub gap_by_model: BTreeMap<String, Decimal>,
    /// Gap per UTC day (`YYYY-MM-DD`), USD.
    pub gap_by_day: BTreeMap<String, Decimal>,
    /// Gateway rows of a reported provider outside every report bucket.
    pub rows_outside: u64,
}

/// Compares the reports' results with the gateway's rows: every gateway row
/// of a provider that reported goes into the report bucket containing it;
/// each (provider, bucket, family) gets a verdict. `tolerance` is the cost
/// difference (USD) below which costs agree.
pub fn tie_out(
    reported: &[Reported],
    rows: impl IntoIterator<Item = GatewayRow>,
    aliases: &AliasTable,
    map: &AccountMap,
    tolerance: Decimal,
) -> TieOut {
    type Key = (Provider, i64, i64, String, String);
    let mut sides: BTreeMap<Key, (Sums, Sums)> = BTreeMap::new();
    let mut buckets: BTreeMap<Provider, Vec<(i64, i64)>> = BTreeMap::new();
    let mut costed: BTreeMap<Provider, bool> = BTreeMap::new();
    let mut counted: BTreeMap<Provider, bool> = BTreeMap::new();
    let mut metered: BTreeMap<Provider, bool> = BTreeMap::new();
    for r in reported {
        *metered.entry(r.provider).or_default() |=
            r.sums.requests.is_some() || r.sums.input_tokens + r.sums.output_tokens > 0;
        let key = (
            r.provider,
            r.bucket.0,
            r.bucket.1,
            map.of_report(r.provider, &r.accounts),
            aliases.family(&r.model),
        );
        sides.entry(key).or_default().0.add(&r.sums);
        buckets.entry(r.provider).or_default().push(r.bucket);
        *costed.entry(r.provider).or_default() |= r.sums.cost.is_some();
        *counted.entry(r.provider).or_default() |= r.sums.requests.is_some();
    }
    for b in buckets.values_mut() {
        b.sort_unstable();
        b.dedup();
    }
    let mut rows_outside = 0;
    for row in rows {
        let Some(bs) = buckets.get(&row.provider) else {
            continue;
        };
        let i = bs.partition_point(|b| b.0 <= row.ts_ms);
        let Some(&(start, end)) = i.checked_sub(1).and_then(|i| bs.get(i)) else {
            rows_outside += 1;
            continue;
        };
        if row.ts_ms >= end {
            rows_outside += 1;
            continue;
        }
        let key = (
            row.provider,
            start,
            end,
            map.of_row(row.provider, &row.key),
            aliases.family(&row.model),
        );
        sides.entry(key).or_default().1.add(&row.sums);
    }
    let mut t = TieOut {
        lines: Vec::new(),
        gap_by_provider: BTreeMap::new(),
        gap_by_model: BTreeMap::new(),
        gap_by_day: BTreeMap::new(),
        rows_outside,
    };
    for ((provider, start_ms, end_ms, group, model), (p, mut g)) in sides {
        // Compare only what the provider's reports count.
        let has_cost = costed.get(&provider).copied().unwrap_or(false);
        let has_requests = counted.get(&provider).copied().unwrap_or(false);
        if !has_cost {
            g.cost = None;
        }
        let p_req = if has_requests {
            p.requests.or(Some(0))
        } else {
            None
        };
        if !has_requests {
            g.requests = None;
        }
        let p_cost = has_cost.then(|| p.cost.unwrap_or_default());
        let g_cost = has_cost.then(|| g.cost.unwrap_or_default());
        let cmp = |a: u64, b: u64| a.cmp(&b);
        let usage = [
            p_req.zip(g.requests).map(|(a, b)| cmp(a, b)),
            Some(cmp(p.input_tokens, g.input_tokens)),
            Some(cmp(p.output_tokens, g.output_tokens)),
        ];
        // Reports with cost only (no usage report of that provider): the
        // cost decides.
        let usage_known = metered.get(&provider).copied().unwrap_or(false);
        let cost_cmp = p_cost
            .zip(g_cost)
            .map(|(a, b)| (a - b, (a - b).abs() > tolerance));
        use std::cmp::Ordering::*;
        let verdict = if usage_known || !has_cost {
            if usage.contains(&Some(Greater)) {
                Verdict::GatewayUnderReports
            } else if usage.contains(&Some(Less)) {
                Verdict::GatewayOverReports
            } else if cost_cmp.is_some_and(|(_, off)| off) {
                Verdict::PricedDifferently
            } else {
                Verdict::Agrees
            }
        } else {
            match cost_cmp {
                Some((d, true)) if g.input_tokens + g.output_tokens == 0 => {
                    if d > Decimal::ZERO {
                        Verdict::GatewayUnderReports
                    } else {
                        Verdict::GatewayOverReports
                    }
                }
                Some((_, true)) => Verdict::PricedDifferently,
                _ => Verdict::Agrees,
            }
        };
        let gap = cost_cmp.map(|(d, _)| d.normalize());
        if verdict != Verdict::Agrees
            && let Some(d) = gap
        {
            let day = crate::time::format_ms(start_ms)
                .get(..10)
                .unwrap_or_default()
                .to_owned();
            *t.gap_by_provider
                .entry(provider.name().to_owned())
                .or_default() += d;
            *t.gap_by_model.entry(model.clone()).or_default() += d;
            *t.gap_by_day.entry(day).or_default() += d;
        }
        t.lines.push(BucketLine {
            provider,
            start_ms,
            end_ms,
            model,
            group,
            provider_sums: Sums {
                requests: p_req,
                cost: p_cost,
                ..p
            },
            gateway_sums: g,
            verdict,
            gap,
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = crate::time::DAY_MS;
    const NOV20: i64 = 1_795_132_800_000;

    #[test]
    fn verdict_names_are_their_serialized_names() {
        for v in [
            Verdict::Agrees,
            Verdict::GatewayUnderReports,
            Verdict::GatewayOverReports,
            Verdict::PricedDifferently,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name());
        }
    }

    #[test]
    fn each_providers_documented_page_reads_with_its_token_semantics() {
        let openai = r#"{"object":"page","data":[{"object":"bucket","start_time":1795132800,"end_time":1795219200,
            "results":[{"object":"organization.usage.completions.result","input_tokens":1000,"input_cached_tokens":400,
            "output_tokens":50,"num_model_requests":3,"project_id":null,"user_id":null,"api_key_id":null,
            "model":"gpt-4o-mini-2024-07-18","batch":null}]}],"has_more":true,"next_page":"page_AAAA"}"#;
        let p = read_page(openai, "u.json").unwrap();
        assert_eq!(p.kind, "openai_usage");
        assert_eq!(p.next_page.as_deref(), Some("page_AAAA"));
        assert_eq!(p.results[0].sums.input_tokens, 1000);
        assert_eq!(p.results[0].bucket, (NOV20, NOV20 + DAY));
        let anthropic = r#"{"data":[{"starting_at":"2026-11-20T00:00:00Z","ending_at":"2026-11-21T00:00:00Z",
            "results":[{"uncached_input_tokens":100,"cache_read_input_tokens":300,
            "cache_creation":{"ephemeral_5m_input_tokens":20,"ephemeral_1h_input_tokens":5},
            "output_tokens":40,"server_tool_use":{"web_search_requests":0},"api_key_id":"apikey_01","workspace_id":null,
            "model":"claude-sonnet-4-20250514","service_tier":"standard","context_window":"0-200k"}]}],
            "has_more":false,"next_page":null}"#;
        let p = read_page(anthropic, "a.json").unwrap();
        assert_eq!(p.kind, "anthropic_usage");
        // Anthropic's input excludes cache reads and writes: added back.
        assert_eq!(p.results[0].sums.input_tokens, 425);
        assert_eq!(p.results[0].sums.cache_write_tokens, 25);
        assert_eq!(p.next_page, None);
        let cost = r#"{"data":[{"starting_at":"2026-11-20T00:00:00Z","ending_at":"2026-11-21T00:00:00Z",
            "results":[{"currency":"USD","amount":"123.45","workspace_id":null,"description":"x","cost_type":"tokens",
            "context_window":"0-200k","model":"claude-sonnet-4-20250514","service_tier":"standard","token_type":"output_tokens"}]}],
            "has_more":false,"next_page":null}"#;
        let p = read_page(cost, "c.json").unwrap();
        assert_eq!(p.results[0].sums.cost, Some("1.2345".parse().unwrap()));
        let costs = r#"{"object":"page","data":[{"object":"bucket","start_time":1795132800,"end_time":1795219200,
            "results":[{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},
            "line_item":"gpt-4o-2024-08-06, input","project_id":"proj_1","organization_id":"org-1"}]}],"has_more":false,"next_page":null}"#;
        let p = read_page(costs, "k.json").unwrap();
        assert_eq!(p.kind, "openai_costs");
        assert_eq!(p.results[0].model, "gpt-4o-2024-08-06");
        assert_eq!(p.results[0].sums.cost, Some("0.06".parse().unwrap()));
        let or = r#"{"data":[{"date":"2026-11-20","model":"openai/gpt-4.1","model_permaslug":"openai/gpt-4.1-2025-04-14",
            "endpoint_id":"e1","provider_name":"OpenAI","usage":0.015,"byok_usage_inference":0,"requests":2,
            "prompt_tokens":100,"completion_tokens":20,"reasoning_tokens":0}]}"#;
        let p = read_page(or, "o.json").unwrap();
        assert_eq!(p.kind, "openrouter_activity");
        assert_eq!(p.results[0].sums.requests, Some(2));
        assert!(read_page("{\"data\":[{\"x\":1}]}", "bad.json").is_err());
    }

    fn row(ts: i64, model: &str, inp: u64, out: u64, cost: &str) -> GatewayRow {
        GatewayRow {
            provider: Provider::OpenAi,
            key: "k".to_owned(),
            ts_ms: ts,
            model: model.to_owned(),
            sums: Sums {
                requests: Some(1),
                input_tokens: inp,
                output_tokens: out,
                cost: Some(cost.parse().unwrap()),
                ..Sums::default()
            },
        }
    }

    #[test]
    fn a_missing_row_and_a_price_difference_are_found_in_their_buckets_and_nothing_else() {
        let usage = |model: &str, req: u64, inp: u64, out: u64| Reported {
            provider: Provider::OpenAi,
            bucket: (NOV20, NOV20 + DAY),
            model: model.to_owned(),
            accounts: Vec::new(),
            sums: Sums {
                requests: Some(req),
                input_tokens: inp,
                output_tokens: out,
                ..Sums::default()
            },
        };
        let cost = |model: &str, usd: &str| Reported {
            provider: Provider::OpenAi,
            bucket: (NOV20, NOV20 + DAY),
            model: model.to_owned(),
            accounts: Vec::new(),
            sums: Sums {
                cost: Some(usd.parse().unwrap()),
                ..Sums::default()
            },
        };
        let reported = vec![
            usage("gpt-4o-mini-2024-07-18", 3, 300, 30),
            cost("gpt-4o-mini-2024-07-18", "0.3"),
            usage("gpt-4o-2024-08-06", 2, 200, 20),
            cost("gpt-4o-2024-08-06", "0.25"),
        ];
        let rows = vec![
            // gpt-4o-mini: one of three rows never logged.
            row(NOV20 + 1000, "gpt-4o-mini", 100, 10, "0.1"),
            row(NOV20 + 2000, "openai/gpt-4o-mini", 100, 10, "0.1"),
            // gpt-4o: both logged, billed 0.20 where OpenAI charged 0.25.
            row(NOV20 + 3000, "gpt-4o", 100, 10, "0.1"),
            row(NOV20 + 4000, "gpt-4o", 100, 10, "0.1"),
            // Outside the report's buckets.
            row(NOV20 + DAY + 1, "gpt-4o", 1, 1, "0.1"),
        ];
        let t = tie_out(
            &reported,
            rows.clone(),
            &AliasTable::default(),
            &AccountMap::default(),
            Decimal::new(1, 6),
        );
        assert_eq!(t.rows_outside, 1);
        let by: BTreeMap<&str, &BucketLine> =
            t.lines.iter().map(|l| (l.model.as_str(), l)).collect();
        assert_eq!(by["gpt-4o-mini"].verdict, Verdict::GatewayUnderReports);
        assert_eq!(by["gpt-4o-mini"].gap, Some("0.1".parse().unwrap()));
        assert_eq!(by["gpt-4o"].verdict, Verdict::PricedDifferently);
        assert_eq!(by["gpt-4o"].gap, Some("0.05".parse().unwrap()));
        assert_eq!(t.gap_by_provider["openai"], "0.15".parse().unwrap());
        assert_eq!(t.lines.len(), 2);

        // Two projects on the provider's side, two gateway keys on ours:
        // mapped, the mini gap belongs to the project whose key lost a row.
        let mut split = reported.clone();
        for r in &mut split {
            r.accounts = vec!["proj_a".to_owned()];
        }
        let map = AccountMap::from_toml(
            "[[group]]\nname = \"support\"\nprovider = \"openai\"\nprovider_ids = [\"proj_a\"]\ngateway_keys = [\"k\"]\n",
            "map.toml",
        )
        .unwrap();
        let mut rows = rows;
        // A key of another team on the same project, outside the map.
        let mut other = row(NOV20 + 5000, "gpt-4o-mini", 100, 10, "0.1");
        other.key = "other".to_owned();
        rows.push(other);
        let t = tie_out(
            &split,
            rows,
            &AliasTable::default(),
            &map,
            Decimal::new(1, 6),
        );
        let by: BTreeMap<(&str, &str), &BucketLine> = t
            .lines
            .iter()
            .map(|l| ((l.group.as_str(), l.model.as_str()), l))
            .collect();
        assert_eq!(
            by[&("support", "gpt-4o-mini")].verdict,
            Verdict::GatewayUnderReports
        );
        assert_eq!(
            by[&("support", "gpt-4o")].verdict,
            Verdict::PricedDifferently
        );
        // Unmapped traffic is its own group: billed by nobody it reported.
        assert_eq!(
            by[&("", "gpt-4o-mini")].verdict,
            Verdict::GatewayOverReports
        );
        assert!(
            AccountMap::from_toml("[[group]]\nname = \"x\"\nprovider = \"openai\"\n", "m.toml")
                .is_err()
        );
    }
}

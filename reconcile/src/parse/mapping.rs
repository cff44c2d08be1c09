//! Gateway exports through mapping profiles.
//!
//! A profile (TOML) names the columns or JSON paths of each field, the
//! timestamp format and zone, the cost unit and the token semantics. The
//! built-in sources (LiteLLM, OpenRouter, Portkey, Helicone, Cloudflare AI
//! Gateway, a Flatkey-style router) are profiles embedded from `profiles/`;
//! users write their own the same way (see the README).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

use super::pick::{Found, Picker};
use super::records::{Record, Records};
use super::{
    CostUnit, Extracted, Fields, FileSink, Got, JsonLines, Semantics, Val, csv_header, field,
    first_byte,
};
use crate::error::Error;
use crate::record::Side;
use crate::time::{TsFormat, Zone};

/// Profiles shipped with Tally, in detection order.
pub const BUILTIN: [(&str, &str); 7] = [
    ("litellm", include_str!("../../../profiles/litellm.toml")),
    (
        "litellm-json",
        include_str!("../../../profiles/litellm-json.toml"),
    ),
    (
        "openrouter",
        include_str!("../../../profiles/openrouter.toml"),
    ),
    ("portkey", include_str!("../../../profiles/portkey.toml")),
    ("helicone", include_str!("../../../profiles/helicone.toml")),
    (
        "cloudflare",
        include_str!("../../../profiles/cloudflare.toml"),
    ),
    ("flatkey", include_str!("../../../profiles/flatkey.toml")),
];

/// Client-log profiles shipped with Tally, in detection order (Tally's own
/// format is read by [`super::client`] and needs no profile).
pub const BUILTIN_CLIENT: [(&str, &str); 3] = [
    ("otlp", include_str!("../../../profiles/client/otlp.toml")),
    (
        "langfuse",
        include_str!("../../../profiles/client/langfuse.toml"),
    ),
    (
        "langfuse-export",
        include_str!("../../../profiles/client/langfuse-export.toml"),
    ),
];

/// Fields a profile can map, in [`Extracted`] terms (index = [`field`] id).
pub const FIELDS: [&str; 28] = [
    "id",
    "timestamp",
    "end_timestamp",
    "duration_ms",
    "key",
    "model",
    "served_model",
    "variant",
    "route",
    "team",
    "service",
    "env",
    "tags",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "status",
    "http_status",
    "stream",
    "cache_hit",
    "cancelled",
    "id2",
    "error",
    "succeeded",
    "key_alias",
];

/// Encoding of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// One JSON document holding an array of objects.
    Json,
    /// OpenTelemetry traces as OTLP JSON, one `ExportTraceServiceRequest`
    /// per line (the collector's file exporter): each span with a `gen_ai.*`
    /// attribute is a row, read as `{resource, scope, span}` with attribute
    /// lists turned into maps.
    Otlp,
}

/// Which side of the reconciliation a profile reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileSide {
    /// A gateway's usage export.
    #[default]
    Gateway,
    /// The application's own log.
    Client,
}

/// Where a row's key comes from when the source names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyFrom {
    /// The registry key owned by the row's service and environment
    /// (OpenTelemetry spans name those, never the key).
    Owner,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimestamp {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    zone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCost {
    #[serde(default)]
    unit: Option<CostUnit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    #[serde(default = "yes")]
    input_includes_cached: bool,
    #[serde(default = "yes")]
    input_includes_cache_write: bool,
    #[serde(default = "yes")]
    output_includes_reasoning: bool,
}

fn yes() -> bool {
    true
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            input_includes_cached: true,
            input_includes_cache_write: true,
            output_includes_reasoning: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    format: Encoding,
    #[serde(default)]
    side: ProfileSide,
    #[serde(default)]
    key_from: Option<KeyFrom>,
    #[serde(default)]
    records: String,
    #[serde(default)]
    detect: Vec<String>,
    #[serde(default)]
    default_route: Option<String>,
    #[serde(default)]
    quirks: Vec<String>,
    fields: HashMap<String, OneOrMany>,
    #[serde(default)]
    timestamp: RawTimestamp,
    #[serde(default)]
    cost: RawCost,
    #[serde(default)]
    tokens: RawTokens,
}

/// A validated mapping profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Short name (`--source NAME`).
    pub name: String,
    /// What export it reads.
    pub description: String,
    /// Encoding.
    pub format: Encoding,
    /// For `json`: dotted path of the array of records ("" = the document).
    pub records: Vec<String>,
    /// Column or key names whose presence identifies the export.
    pub detect: Vec<String>,
    /// Which side it reads.
    pub side: ProfileSide,
    /// Where a row's key comes from when no key field has one.
    pub key_from: Option<KeyFrom>,
    /// Per field (in [`FIELDS`] order): alternative dotted paths, first non-empty wins.
    paths: Vec<Vec<Vec<String>>>,
    sem: Semantics,
    excludes: (bool, bool, bool),
}

fn split_path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_owned).collect()
}

impl Profile {
    /// Parses and validates a profile.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, Error> {
        let raw: RawProfile =
            toml::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        let mut paths = vec![Vec::new(); FIELDS.len()];
        for (name, spec) in &raw.fields {
            let i = FIELDS.iter().position(|f| f == name).ok_or_else(|| {
                Error::invalid(
                    file,
                    format!(
                        "[fields]: unknown field `{name}` (known: {})",
                        FIELDS.join(", ")
                    ),
                )
            })?;
            let list = match spec {
                OneOrMany::One(s) => vec![s.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            if list.iter().any(|s| s.trim().is_empty()) {
                return Err(Error::invalid(
                    file,
                    format!("[fields]: `{name}` names an empty column"),
                ));
            }
            if let Some(slot) = paths.get_mut(i) {
                *slot = list.iter().map(|s| split_path(s.trim())).collect();
            }
        }
        let has = |f: &str| {
            FIELDS
                .iter()
                .position(|x| *x == f)
                .and_then(|i| paths.get(i))
                .is_some_and(|p| !p.is_empty())
        };
        if !has("timestamp") {
            return Err(Error::invalid(file, "[fields]: `timestamp` is required"));
        }
        if !has("key") && raw.key_from.is_none() {
            return Err(Error::invalid(
                file,
                "[fields]: map `key` (a key, hash, alias, label or last 4) or set \
                 key_from = \"owner\" to find it in the registry by service and env",
            ));
        }
        if raw.key_from == Some(KeyFrom::Owner) && !(has("service") && has("env")) {
            return Err(Error::invalid(
                file,
                "[fields]: key_from = \"owner\" needs `service` and `env` mapped",
            ));
        }
        if !has("model") && !has("served_model") {
            return Err(Error::invalid(
                file,
                "[fields]: `model` or `served_model` is required",
            ));
        }
        if !has("route") && raw.default_route.is_none() {
            return Err(Error::invalid(
                file,
                "[fields]: map `route` or set `default_route`",
            ));
        }
        let ts_format = match &raw.timestamp.format {
            Some(f) => TsFormat::parse(f)
                .map_err(|e| Error::invalid(file, format!("[timestamp] format: {e}")))?,
            None => TsFormat::Iso,
        };
        let zone = match &raw.timestamp.zone {
            Some(z) => Some(
                Zone::parse(z)
                    .map_err(|e| Error::invalid(file, format!("[timestamp] zone: {e}")))?,
            ),
            None => None,
        };
        let mut strip = false;
        for q in &raw.quirks {
            match q.as_str() {
                "litellm_cache_hit_suffix" => strip = true,
                other => {
                    return Err(Error::invalid(
                        file,
                        format!("unknown quirk `{other}` (known: litellm_cache_hit_suffix)"),
                    ));
                }
            }
        }
        if raw.format != Encoding::Json && !raw.records.is_empty() {
            return Err(Error::invalid(
                file,
                "`records` applies to format = \"json\" only",
            ));
        }
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            format: raw.format,
            records: if raw.records.is_empty() {
                Vec::new()
            } else {
                split_path(&raw.records)
            },
            detect: raw.detect,
            side: raw.side,
            key_from: raw.key_from,
            paths,
            sem: Semantics {
                ts_format,
                zone,
                cost_unit: raw.cost.unit.unwrap_or(CostUnit::Usd),
                default_route: raw.default_route,
                strip_cache_hit_suffix: strip,
                key_from_owner: raw.key_from == Some(KeyFrom::Owner),
            },
            excludes: (
                !raw.tokens.input_includes_cached,
                !raw.tokens.input_includes_cache_write,
                !raw.tokens.output_includes_reasoning,
            ),
        })
    }

    /// The built-in gateway profiles.
    pub fn builtins() -> Result<Vec<Profile>, Error> {
        Self::all_of(&BUILTIN)
    }

    /// The built-in client-log profiles.
    pub fn client_builtins() -> Result<Vec<Profile>, Error> {
        Self::all_of(&BUILTIN_CLIENT)
    }

    fn all_of(list: &[(&str, &str)]) -> Result<Vec<Profile>, Error> {
        list.iter()
            .map(|(name, text)| Profile::from_toml(text, &format!("built-in profile {name}")))
            .collect()
    }

    /// Whether a file's head looks like this export.
    pub fn matches(&self, head: &[u8]) -> bool {
        if self.detect.is_empty() {
            return false;
        }
        match (self.format, first_byte(head)) {
            (Encoding::Csv, Some(b)) if b != b'{' && b != b'[' => {
                let h = csv_header(head);
                self.detect.iter().all(|d| h.iter().any(|c| c == d))
            }
            (Encoding::Jsonl | Encoding::Otlp, Some(b'{'))
            | (Encoding::Json, Some(b'{' | b'[')) => {
                // JSON Lines and JSON documents: every detect key appears as
                // a key in the head. A JSON array needs `records` empty, an
                // object needs it set.
                let array = first_byte(head) == Some(b'[');
                if self.format == Encoding::Json && array != self.records.is_empty() {
                    return false;
                }
                if matches!(self.format, Encoding::Jsonl | Encoding::Otlp)
                    && first_line_is_partial_json(head)
                {
                    return false;
                }
                let text = String::from_utf8_lossy(head);
                self.detect
                    .iter()
                    .all(|d| text.contains(&format!("\"{d}\"")))
            }
            _ => false,
        }
    }

    fn field_paths(&self, name: &str) -> &[Vec<String>] {
        FIELDS
            .iter()
            .position(|f| *f == name)
            .and_then(|i| self.paths.get(i))
            .map_or(&[], Vec::as_slice)
    }
}

/// A JSON Lines file has a whole object on its first line; a pretty-printed
/// JSON document does not.
fn first_line_is_partial_json(head: &[u8]) -> bool {
    let line = head
        .split(|&b| b == b'\n')
        .find(|l| l.iter().any(|b| !b.is_ascii_whitespace()));
    line.is_none_or(|l| serde_json::from_slice::<Value>(l).is_err())
}

/// The names of some profiles, for messages.
pub fn names(profiles: &[Profile]) -> String {
    profiles
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds the profile for a file: by name when given, else by detection.
pub fn choose<'p>(profiles: &'p [Profile], head: &[u8], file: &str) -> Result<&'p Profile, Error> {
    profiles.iter().find(|p| p.matches(head)).ok_or_else(|| {
        let seen = match first_byte(head) {
            Some(b'{' | b'[') => "a JSON document with no known keys".to_owned(),
            Some(_) => format!("CSV header `{}`", csv_header(head).join(",")),
            None => "an empty file".to_owned(),
        };
        Error::UnknownFormat {
            file: file.to_owned(),
            detail: format!("{seen}; known sources: {}", names(profiles)),
        }
    })
}

/// Reads a file with a profile into `side` (a gateway export, or a client
/// log described by a client profile).
pub fn read_mapped(
    r: impl Read,
    file: &str,
    profile: &Profile,
    side: &mut Side,
) -> Result<(), Error> {
    match profile.format {
        Encoding::Csv => read_csv(r, file, profile, side),
        Encoding::Jsonl => read_jsonl(r, file, profile, side),
        Encoding::Json => read_json(r, file, profile, side),
        Encoding::Otlp => read_otlp(r, file, profile, side),
    }
}

fn read_err(file: &str, e: impl std::fmt::Display) -> Error {
    Error::Read {
        file: file.to_owned(),
        detail: e.to_string(),
    }
}

pub(super) fn text_of(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// Walks a dotted path. A key containing dots is tried whole when the
/// segments find nothing; a string holding JSON (LiteLLM `metadata` in CSV, Cloudflare `metadata`) is parsed
/// when the path goes on into it.
pub(super) fn walk<'v>(v: &'v Value, path: &[String]) -> Option<Cow<'v, str>> {
    let Some((first, rest)) = path.split_first() else {
        return text_of(v);
    };
    match v {
        Value::Object(m) => {
            // The next segment first; a key that itself contains dots (OTel
            // attribute names) only when that finds nothing, so the common
            // case builds no joined string.
            if let Some(found) = m.get(first).and_then(|x| walk(x, rest)) {
                return Some(found);
            }
            // Only an object with a dotted key can hold the joined path.
            if rest.is_empty() || !m.keys().any(|k| k.contains('.')) {
                return None;
            }
            m.get(&path.join(".")).and_then(text_of)
        }
        Value::String(s) => {
            let inner: Value = serde_json::from_str(s).ok()?;
            walk(&inner, path).map(|c| Cow::Owned(c.into_owned()))
        }
        Value::Array(items) => {
            let i: usize = first.parse().ok()?;
            walk(items.get(i)?, rest)
        }
        _ => None,
    }
}

fn extract_with<'a>(
    profile: &Profile,
    mut get: impl FnMut(usize) -> Option<Val<'a>>,
) -> Extracted<'a> {
    let (ec, ew, er) = profile.excludes;
    Extracted {
        id: get(field::ID),
        id2: get(field::ID2),
        ts: get(field::TIMESTAMP),
        ts_end: get(field::END_TIMESTAMP),
        duration_ms: get(field::DURATION_MS),
        key: get(field::KEY),
        model: get(field::MODEL),
        served_model: get(field::SERVED_MODEL),
        variant: get(field::VARIANT),
        route: get(field::ROUTE),
        team: get(field::TEAM),
        service: get(field::SERVICE),
        env: get(field::ENV),
        tags: get(field::TAGS),
        tokens: [
            get(field::TOKENS),
            get(field::TOKENS + 1),
            get(field::TOKENS + 2),
            get(field::TOKENS + 3),
            get(field::TOKENS + 4),
        ],
        input_excludes_cached: ec,
        input_excludes_cache_write: ew,
        output_excludes_reasoning: er,
        cost: get(field::COST),
        status: get(field::STATUS),
        http_status: get(field::HTTP_STATUS),
        stream: get(field::STREAM),
        cache_hit: get(field::CACHE_HIT),
        cancelled: get(field::CANCELLED),
        error: get(field::ERROR),
        succeeded: get(field::SUCCEEDED),
        key_alias: get(field::KEY_ALIAS),
    }
}

fn json_getter<'a>(profile: &'a Profile, obj: &'a Value) -> impl FnMut(usize) -> Option<Val<'a>> {
    move |field: usize| {
        profile.paths.get(field)?.iter().find_map(|p| {
            walk(obj, p)
                .filter(|v| !v.trim_ascii().is_empty())
                .map(|v| Val {
                    v,
                    name: Cow::Owned(p.join(".")),
                })
        })
    }
}

fn read_jsonl(r: impl Read, file: &str, profile: &Profile, side: &mut Side) -> Result<(), Error> {
    let mut sink = FileSink::new(side, file);
    let mut lines = JsonLines::new(r);
    while let Some((line, v)) = lines
        .next_object(&mut sink)
        .map_err(|e| read_err(file, e))?
    {
        let ex = extract_with(profile, json_getter(profile, &v));
        sink.row(&ex, &profile.sem, line, || lines.text());
    }
    sink.extent(lines.lines(), false);
    sink.finish(&profile.name);
    Ok(())
}

/// An OTLP `AnyValue` as plain JSON: `{"stringValue": "x"}` is `"x"`,
/// `{"intValue": "7"}` is `"7"` (int64 is a string in OTLP JSON), lists
/// and key-value lists recursively.
fn otlp_value(v: &Value) -> Value {
    let Some(m) = v.as_object() else {
        return v.clone();
    };
    if let Some(list) = m
        .get("arrayValue")
        .and_then(|a| a.get("values"))
        .and_then(Value::as_array)
    {
        return Value::Array(list.iter().map(otlp_value).collect());
    }
    if let Some(kv) = m.get("kvlistValue").and_then(|a| a.get("values")) {
        return Value::Object(otlp_attributes(kv));
    }
    [
        "stringValue",
        "intValue",
        "doubleValue",
        "boolValue",
        "bytesValue",
    ]
    .iter()
    .find_map(|k| m.get(*k).cloned())
    .unwrap_or(Value::Null)
}

/// OTLP attributes (`[{"key": k, "value": AnyValue}]`) as a map.
fn otlp_attributes(list: &Value) -> serde_json::Map<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let k = kv.get("key")?.as_str()?;
            Some((
                k.to_owned(),
                kv.get("value").map_or(Value::Null, otlp_value),
            ))
        })
        .collect()
}

/// A span's status as a word: OTLP JSON writes the code as a number
/// (`2`) or its enum name (`STATUS_CODE_ERROR`).
fn otlp_status(status: Option<&Value>) -> Value {
    let code = status.and_then(|s| s.get("code"));
    let word = match code {
        Some(Value::Number(n)) if n.as_u64() == Some(2) => "error",
        Some(Value::Number(n)) if n.as_u64() == Some(1) => "ok",
        Some(Value::String(s)) if s.ends_with("ERROR") => "error",
        Some(Value::String(s)) if s.ends_with("OK") => "ok",
        _ => "unset",
    };
    Value::String(word.to_owned())
}

/// The usage spans of one OTLP line, each as `{resource, scope, span}`
/// with its attribute lists as maps. Spans with no `gen_ai.*` attribute (an
/// HTTP server span, a database call) are not usage: the count of them is
/// returned beside.
fn otlp_spans(doc: &Value) -> (Vec<Value>, u64) {
    let mut out = Vec::new();
    let mut other = 0u64;
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    for rs in list(doc.get("resourceSpans")) {
        let resource = rs
            .get("resource")
            .and_then(|r| r.get("attributes"))
            .map(otlp_attributes)
            .unwrap_or_default();
        for ss in list(rs.get("scopeSpans")) {
            let scope = ss.get("scope").cloned().unwrap_or(Value::Null);
            for span in list(ss.get("spans")) {
                let attributes = span
                    .get("attributes")
                    .map(otlp_attributes)
                    .unwrap_or_default();
                if !attributes.keys().any(|k| k.starts_with("gen_ai.")) {
                    other += 1;
                    continue;
                }
                let mut flat = span.as_object().cloned().unwrap_or_default();
                flat.insert("attributes".to_owned(), Value::Object(attributes));
                flat.insert("status".to_owned(), otlp_status(span.get("status")));
                if let Some(msg) = span
                    .get("status")
                    .and_then(|s| s.get("message"))
                    .filter(|m| m.as_str().is_some_and(|m| !m.is_empty()))
                {
                    flat.insert("status_message".to_owned(), msg.clone());
                }
                let mut row = serde_json::Map::new();
                row.insert("resource".to_owned(), Value::Object(resource.clone()));
                row.insert("scope".to_owned(), scope.clone());
                row.insert("span".to_owned(), Value::Object(flat));
                out.push(Value::Object(row));
            }
        }
    }
    (out, other)
}

fn read_otlp(r: impl Read, file: &str, profile: &Profile, side: &mut Side) -> Result<(), Error> {
    let mut sink = FileSink::new(side, file);
    let mut lines = JsonLines::new(r);
    let mut not_usage = 0u64;
    while let Some((line, v)) = lines
        .next_object(&mut sink)
        .map_err(|e| read_err(file, e))?
    {
        let (spans, other) = otlp_spans(&v);
        not_usage += other;
        if spans.is_empty() && other == 0 {
            sink.reject(
                line,
                "resourceSpans",
                "no spans: not an OTLP trace export line",
                lines.text(),
            );
            continue;
        }
        for span in &spans {
            let ex = extract_with(profile, json_getter(profile, span));
            sink.row(&ex, &profile.sem, line, || span.to_string());
        }
    }
    sink.extent(lines.lines(), false);
    sink.not_usage(not_usage);
    sink.finish(&profile.name);
    Ok(())
}

fn read_json(
    mut r: impl Read,
    file: &str,
    profile: &Profile,
    side: &mut Side,
) -> Result<(), Error> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).map_err(|e| read_err(file, e))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(file, format!("invalid JSON: {e}")))?;
    let mut cur = &doc;
    for seg in &profile.records {
        cur = cur.get(seg).ok_or_else(|| {
            Error::invalid(
                file,
                format!(
                    "no `{}` in the document (profile {})",
                    profile.records.join("."),
                    profile.name
                ),
            )
        })?;
    }
    let items = cur.as_array().ok_or_else(|| {
        Error::invalid(
            file,
            format!("expected an array of records (profile {})", profile.name),
        )
    })?;
    let mut sink = FileSink::new(side, file);
    for (i, item) in items.iter().enumerate() {
        let n = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        if item.is_object() {
            let ex = extract_with(profile, json_getter(profile, item));
            sink.row(&ex, &profile.sem, n, || item.to_string());
        } else {
            sink.reject(n, "(row)", "record is not a JSON object", item.to_string());
        }
    }
    sink.finish(&profile.name);
    Ok(())
}

/// A field's alternatives resolved against a CSV header.
struct CsvPath {
    col: usize,
    rest: Vec<String>,
    name: String,
    /// For a path into a JSON cell: its id in that column's [`Picker`].
    pick: usize,
}

/// The JSON cells of a CSV file: per column read into, the paths wanted
/// from it and what the current row's cell gave.
#[derive(Default)]
struct JsonCells {
    cols: Vec<usize>,
    pickers: Vec<Picker>,
    found: Vec<Found>,
    /// Whether the current row's cell in that column was read.
    live: Vec<bool>,
}

impl JsonCells {
    /// Registers every JSON path of `resolved`.
    fn new(resolved: &mut [Vec<CsvPath>]) -> Self {
        let mut cells = Self::default();
        for p in resolved.iter_mut().flatten() {
            if p.rest.is_empty() {
                continue;
            }
            let k = match cells.cols.iter().position(|&c| c == p.col) {
                Some(k) => k,
                None => {
                    cells.cols.push(p.col);
                    cells.pickers.push(Picker::default());
                    cells.found.push(Found::default());
                    cells.live.push(false);
                    cells.cols.len() - 1
                }
            };
            if let Some(picker) = cells.pickers.get_mut(k) {
                p.pick = picker.add(&p.rest);
            }
        }
        cells
    }

    /// Reads the row's JSON cells; says whether any gave a value.
    fn read(&mut self, rec: &Record<'_>) -> bool {
        let mut any = false;
        for (((col, picker), found), live) in self
            .cols
            .iter()
            .zip(&self.pickers)
            .zip(&mut self.found)
            .zip(&mut self.live)
        {
            let cell = rec.get(*col).unwrap_or("").trim_ascii();
            // Most LiteLLM rows carry `{}`: nothing to look up.
            *live = cell.len() > 2 && (cell.starts_with('{') || cell.starts_with('['));
            if *live {
                picker.pick(cell, found);
                any |= !found.is_empty();
            }
        }
        any
    }

    /// The current row's value of a JSON path.
    fn get(&self, p: &CsvPath) -> Option<&str> {
        let k = self.cols.iter().position(|&c| c == p.col)?;
        if !self.live.get(k).copied().unwrap_or(false) {
            return None;
        }
        self.found.get(k)?.get(p.pick)
    }
}

/// The first non-blank value of a field's alternatives, and which one gave it.
fn resolve<'v>(
    rec: &Record<'v>,
    cells: &'v JsonCells,
    alts: &[CsvPath],
) -> Option<(&'v str, usize)> {
    alts.iter().enumerate().find_map(|(k, p)| {
        let v = if p.rest.is_empty() {
            rec.get(p.col)?
        } else {
            cells.get(p)?
        };
        (!v.trim_ascii().is_empty()).then_some((v, k))
    })
}

/// Values of the fields that have a JSON path, resolved for one row, kept in
/// buffers reused from row to row.
#[derive(Default)]
struct ViaJson {
    text: String,
    /// Per field: (start, end) in `text` and the alternative that gave it.
    vals: Vec<Option<(usize, usize, usize)>>,
}

impl ViaJson {
    fn fill(
        &mut self,
        fields: &[usize],
        resolved: &[Vec<CsvPath>],
        rec: &Record<'_>,
        cells: &JsonCells,
    ) {
        self.text.clear();
        self.vals.clear();
        self.vals.resize(resolved.len(), None);
        for &f in fields {
            let found = resolved.get(f).and_then(|alts| resolve(rec, cells, alts));
            if let (Some((v, k)), Some(slot)) = (found, self.vals.get_mut(f)) {
                let start = self.text.len();
                self.text.push_str(v);
                *slot = Some((start, self.text.len(), k));
            }
        }
    }
}

/// How a field is read from a CSV record, decided once per file.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// No column.
    Absent,
    /// One plain column (nearly every field of every export).
    Column(usize),
    /// Several plain columns, first non-blank wins.
    Columns,
    /// Some alternative reads into a JSON cell.
    Json,
}

fn plan_of(alts: &[CsvPath]) -> Plan {
    match alts {
        [] => Plan::Absent,
        [p] if p.rest.is_empty() => Plan::Column(p.col),
        _ if alts.iter().any(|p| !p.rest.is_empty()) => Plan::Json,
        _ => Plan::Columns,
    }
}

/// One CSV record as [`Fields`]: plain columns are read in place; fields
/// with a JSON path come from [`ViaJson`] on rows that carry a JSON cell.
struct CsvRow<'r> {
    rec: &'r Record<'r>,
    paths: &'r [Vec<CsvPath>],
    plans: &'r [Plan],
    via_json: Option<&'r ViaJson>,
    excludes: (bool, bool, bool),
}

impl Fields for CsvRow<'_> {
    #[inline(always)]
    fn get(&self, f: usize) -> Option<Got<'_>> {
        let alts = || self.paths.get(f).map_or(&[][..], Vec::as_slice);
        match *self.plans.get(f)? {
            Plan::Absent => None,
            Plan::Column(col) => Got::of(self.rec.get(col)?, &alts().first()?.name),
            Plan::Json if self.via_json.is_some() => {
                let j = self.via_json?;
                let &(start, end, k) = j.vals.get(f)?.as_ref()?;
                Got::of(j.text.get(start..end)?, &alts().get(k)?.name)
            }
            Plan::Json | Plan::Columns => alts()
                .iter()
                .filter(|p| p.rest.is_empty())
                .find_map(|p| Got::of(self.rec.get(p.col)?, &p.name)),
        }
    }

    fn name_of(&self, f: usize) -> Option<&str> {
        Some(&self.paths.get(f)?.first()?.name)
    }

    fn excludes(&self) -> (bool, bool, bool) {
        self.excludes
    }
}

fn read_csv(r: impl Read, file: &str, profile: &Profile, side: &mut Side) -> Result<(), Error> {
    let mut rdr = Records::new(r);
    let header = rdr.header().map_err(|e| read_err(file, e))?;
    // Resolve every path once: the whole dotted name as a column, else its
    // first segment as a column holding JSON.
    let resolve = |p: &Vec<String>| -> Option<CsvPath> {
        let whole = p.join(".");
        if let Some(col) = header.iter().position(|h| *h == whole) {
            return Some(CsvPath {
                col,
                rest: Vec::new(),
                name: whole,
                pick: 0,
            });
        }
        let (first, rest) = p.split_first()?;
        let col = header.iter().position(|h| h == first)?;
        Some(CsvPath {
            col,
            rest: rest.to_vec(),
            name: whole,
            pick: 0,
        })
    };
    let mut resolved: Vec<Vec<CsvPath>> = FIELDS
        .iter()
        .map(|f| profile.field_paths(f).iter().filter_map(resolve).collect())
        .collect();
    for req in ["timestamp", "key"] {
        let i = FIELDS.iter().position(|f| *f == req).unwrap_or(0);
        if req == "key" && profile.key_from.is_some() {
            continue;
        }
        if resolved.get(i).is_none_or(Vec::is_empty) {
            return Err(Error::invalid(
                file,
                format!(
                    "CSV header has no column for `{req}` (profile {} expects {})",
                    profile.name,
                    profile
                        .field_paths(req)
                        .iter()
                        .map(|p| p.join("."))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
    }
    let mut sink = FileSink::new(side, file);
    let mut cells = JsonCells::new(&mut resolved);
    let plans: Vec<Plan> = resolved.iter().map(|alts| plan_of(alts)).collect();
    let json_fields: Vec<usize> = (0..plans.len())
        .filter(|&f| matches!(plans.get(f), Some(Plan::Json)))
        .collect();
    let mut via_json = ViaJson::default();
    while let Some(rec) = rdr.next_record().map_err(|e| read_err(file, e))? {
        if sink.rejected_if_not_utf8(&rec, &header) {
            continue;
        }
        let line = rec.line;
        let any_json = cells.read(&rec);
        if any_json {
            via_json.fill(&json_fields, &resolved, &rec, &cells);
        }
        let row = CsvRow {
            rec: &rec,
            paths: &resolved,
            plans: &plans,
            via_json: any_json.then_some(&via_json),
            excludes: profile.excludes,
        };
        sink.row(&row, &profile.sem, line, || rec.raw_text());
    }
    sink.extent(rdr.lines(), rdr.ended_in_quotes());
    sink.finish(&profile.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{SideKind, TokenKind, flags};

    fn client_profile(head: &[u8]) -> Profile {
        Profile::client_builtins()
            .unwrap()
            .into_iter()
            .find(|p| p.matches(head))
            .expect("a built-in client profile detects the sample")
    }

    #[test]
    fn otlp_spans_are_client_rows_keyed_by_their_owner() {
        // The collector's file exporter: one ExportTraceServiceRequest per
        // line; an HTTP server span beside the GenAI ones is not usage.
        let text = include_str!("../../../fixtures/client/samples/otel_spans.jsonl");
        let p = client_profile(text.as_bytes());
        assert_eq!((p.name.as_str(), p.side), ("otlp", ProfileSide::Client));
        let mut side = Side::new(crate::record::SideKind::Client);
        read_mapped(text.as_bytes(), "spans.jsonl", &p, &mut side).unwrap();
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        assert_eq!(side.rows.len(), 3);
        let f = &side.files[0];
        assert_eq!((f.read, f.rejected, f.not_usage), (3, 0, 1));
        let r = &side.rows[0];
        assert_eq!(
            r.ts_ms,
            crate::time::parse_iso("2026-11-20T02:00:00Z", None).unwrap()
        );
        assert_eq!(side.strings.get(r.key), "owner:search-api/prod");
        assert_eq!(side.models(r), ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"));
        assert_eq!(side.ids.get(r.ids), ("a1b2c3d4e5f60718", "chatcmpl-otel-1"));
        use crate::record::{TokenKind, flags};
        assert_eq!(
            TokenKind::ALL.map(|k| r.tokens.get(k)),
            [Some(1200), Some(1024), None, Some(300), None]
        );
        assert!(!r.has(flags::FAILED));
        // Status ERROR (as its enum name) with error.type: a failed call.
        assert!(side.rows[1].has(flags::FAILED));
        assert_eq!(side.strings.get(side.rows[2].key), "owner:support-bot/prod");
        // The registry gives the one key of that service and environment.
        let reg = crate::keys::KeyRegistry::from_toml(
            "[[key]]\nid = \"search-prod\"\nservice = \"search-api\"\nenv = \"prod\"\n\
             [[key]]\nid = \"bot-a\"\nservice = \"support-bot\"\nenv = \"prod\"\n\
             [[key]]\nid = \"bot-b\"\nservice = \"support-bot\"\nenv = \"prod\"\n",
            "k.toml",
        )
        .unwrap();
        use crate::keys::Resolved;
        assert_eq!(reg.resolve("owner:search-api/prod"), Resolved::Known(0));
        // Two keys for one owner: never guessed.
        assert!(matches!(
            reg.resolve("owner:support-bot/prod"),
            Resolved::Unknown { .. }
        ));
    }

    #[test]
    fn langfuse_observations_add_back_what_langfuse_splits_off() {
        // The public API's JSON and the blob storage export's JSON Lines
        // read the same.
        for (text, name) in [
            (
                include_str!("../../../fixtures/client/samples/langfuse_observations.json"),
                "langfuse",
            ),
            (
                include_str!("../../../fixtures/client/samples/langfuse_export.jsonl"),
                "langfuse-export",
            ),
        ] {
            langfuse_sample(text, name);
        }
    }

    fn langfuse_sample(text: &str, name: &str) {
        let p = client_profile(text.as_bytes());
        assert_eq!(p.name, name);
        let mut side = Side::new(crate::record::SideKind::Client);
        read_mapped(text.as_bytes(), "obs", &p, &mut side).unwrap();
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        assert_eq!(side.rows.len(), 2);
        use crate::record::{TokenKind, flags};
        let r = &side.rows[0];
        // usageDetails.input 176 excludes the 1024 cached; output 250
        // excludes 50 reasoning: the SDK's 1200 and 300 again.
        assert_eq!(
            TokenKind::ALL.map(|k| r.tokens.get(k)),
            [Some(1200), Some(1024), None, Some(300), Some(50)]
        );
        assert_eq!(side.strings.get(r.key), "search-api-prod");
        assert_eq!(side.ids.get(r.ids), ("obs-1", "chatcmpl-lf-1"));
        assert_eq!(side.route_and_labels(r).0, "GENERATION");
        assert_eq!(
            crate::routes::RouteFamily::classify("GENERATION"),
            crate::routes::RouteFamily::Chat
        );
        // level ERROR: failed; no key in its metadata: by owner.
        assert!(side.rows[1].has(flags::FAILED));
        assert_eq!(side.strings.get(side.rows[1].key), "owner:search-api/prod");
    }

    #[test]
    fn every_sources_failed_calls_are_rows_marked_failed() {
        use crate::record::flags;
        let failed =
            |side: &Side| -> Vec<bool> { side.rows.iter().map(|r| r.has(flags::FAILED)).collect() };
        // Portkey: `is_success` 0/1, the status code beside it.
        let portkey = concat!(
            r#"{"id":"a","trace_id":"t1","created_at":"2026-11-20T10:00:00Z","ai_model":"gpt-4o","req_units":10,"res_units":5,"cost":0.01,"is_success":1,"response_status_code":200,"request_url":"/v1/chat/completions","metadata":{"key_id":"k"}}"#,
            "\n",
            r#"{"id":"b","trace_id":"t2","created_at":"2026-11-20T10:00:01Z","ai_model":"gpt-4o","req_units":0,"res_units":0,"cost":0,"is_success":0,"response_status_code":200,"request_url":"/v1/chat/completions","metadata":{"key_id":"k"}}"#,
            "\n"
        );
        let mut side = Side::new(crate::record::SideKind::Gateway);
        read_mapped(
            portkey.as_bytes(),
            "p.jsonl",
            &builtin("portkey"),
            &mut side,
        )
        .unwrap();
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        assert_eq!(failed(&side), [false, true]);
        // OpenRouter: `cancelled`.
        let or = "generation_id,created_at,cost_total,tokens_prompt,tokens_completion,tokens_reasoning,tokens_cached,model_permaslug,variant,api_key_name,cancelled,streamed\n\
                  gen-1,2026-11-20 10:00:00.000,0.001,10,5,0,0,openai/gpt-4o,,k,false,true\n\
                  gen-2,2026-11-20 10:00:01.000,0,0,0,0,0,openai/gpt-4o,,k,true,true\n";
        let mut side = Side::new(crate::record::SideKind::Gateway);
        read_mapped(or.as_bytes(), "or.csv", &builtin("openrouter"), &mut side).unwrap();
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        assert_eq!(failed(&side), [false, true]);
        // Helicone: the response status.
        let helicone = concat!(
            r#"{"request_id":"r1","request_created_at":"2026-11-20T10:00:00Z","request_model":"gpt-4o","request_path":"/v1/chat/completions","prompt_tokens":10,"completion_tokens":5,"response_status":200,"request_properties":{"Key-Id":"k"}}"#,
            "\n",
            r#"{"request_id":"r2","request_created_at":"2026-11-20T10:00:01Z","request_model":"gpt-4o","request_path":"/v1/chat/completions","response_status":500,"request_properties":{"Key-Id":"k"}}"#,
            "\n"
        );
        let mut side = Side::new(crate::record::SideKind::Gateway);
        read_mapped(
            helicone.as_bytes(),
            "h.jsonl",
            &builtin("helicone"),
            &mut side,
        )
        .unwrap();
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        assert_eq!(failed(&side), [false, true]);
    }

    fn builtin(name: &str) -> Profile {
        Profile::builtins()
            .unwrap()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap()
    }

    #[test]
    fn field_ids_name_the_profile_fields_they_stand_for() {
        use super::super::field as f;
        for (id, name) in [
            (f::ID, "id"),
            (f::TIMESTAMP, "timestamp"),
            (f::END_TIMESTAMP, "end_timestamp"),
            (f::DURATION_MS, "duration_ms"),
            (f::KEY, "key"),
            (f::MODEL, "model"),
            (f::SERVED_MODEL, "served_model"),
            (f::VARIANT, "variant"),
            (f::ROUTE, "route"),
            (f::TEAM, "team"),
            (f::SERVICE, "service"),
            (f::ENV, "env"),
            (f::TAGS, "tags"),
            (f::TOKENS, "input_tokens"),
            (f::TOKENS + 1, "cached_tokens"),
            (f::TOKENS + 2, "cache_write_tokens"),
            (f::TOKENS + 3, "output_tokens"),
            (f::TOKENS + 4, "reasoning_tokens"),
            (f::COST, "cost"),
            (f::STATUS, "status"),
            (f::HTTP_STATUS, "http_status"),
            (f::STREAM, "stream"),
            (f::CACHE_HIT, "cache_hit"),
            (f::CANCELLED, "cancelled"),
            (f::ID2, "id2"),
            (f::ERROR, "error"),
            (f::SUCCEEDED, "succeeded"),
            (f::KEY_ALIAS, "key_alias"),
        ] {
            assert_eq!(FIELDS[id], name);
        }
        assert_eq!(f::COUNT, FIELDS.len());
    }

    #[test]
    fn builtins_parse_and_detect_their_own_headers() {
        let all = Profile::builtins().unwrap();
        assert_eq!(all.len(), BUILTIN.len());
        let litellm = b"request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata\n";
        assert_eq!(choose(&all, litellm, "x").unwrap().name, "litellm");
        let or = b"generation_id,created_at,cost_total,tokens_prompt,tokens_completion,tokens_reasoning,tokens_cached,model_permaslug,variant,api_key_name\n";
        assert_eq!(choose(&all, or, "x").unwrap().name, "openrouter");
        let json = br#"[{"request_id":"chatcmpl-1","spend":0.1,"startTime":"2026-11-20T10:00:00Z","api_key":"abc"}]"#;
        assert_eq!(choose(&all, json, "x").unwrap().name, "litellm-json");
        let err = choose(&all, b"a,b,c\n1,2,3\n", "mystery.csv")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mystery.csv") && err.contains("a,b,c"),
            "{err}"
        );
    }

    #[test]
    fn litellm_csv_row() {
        let csv = concat!(
            "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status\n",
            "chatcmpl-1_cache_hit1763600000.5,acompletion,",
            "aa",
            "bb",
            "cc",
            "dd",
            "aa",
            "bb",
            "cc",
            "dd",
            "aa",
            "bb",
            "cc",
            "dd",
            "aa",
            "bb",
            "cc",
            "dd",
            "aa",
            "bb",
            "cc",
            "dd",
            "aa",
            "bb",
            "cc",
            "dd",
            "aa",
            "bb",
            "cc",
            "dd",
            "aa",
            "bb",
            "cc",
            "dd",
            ",1.2e-05,120,100,20,2026-11-20 10:00:00.250,2026-11-20 10:00:01.750,azure/gpt-4o-eu,gpt-4o,",
            "\"{\"\"usage_object\"\":{\"\"prompt_tokens_details\"\":{\"\"cached_tokens\"\":64}}}\",True,success\n",
        );
        let mut side = Side::new(SideKind::Gateway);
        read_mapped(csv.as_bytes(), "spend.csv", &builtin("litellm"), &mut side).unwrap();
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        let r = side.rows[0];
        assert_eq!(side.ids.get(r.ids).0, "chatcmpl-1");
        assert!(r.has(flags::CACHE_HIT));
        assert_eq!(r.tokens.get(TokenKind::CachedInput), Some(64));
        assert_eq!(side.models(&r), ("gpt-4o", "azure/gpt-4o-eu"));
        assert_eq!(r.reported_cost().unwrap().to_string(), "0.000012");
    }

    #[test]
    fn the_gateways_name_for_a_key_is_kept_beside_the_key_and_is_no_owner() {
        // LiteLLM writes the key's alias in its metadata; a call refused at
        // auth time has none (docs: formats.md 2a).
        let csv = concat!(
            "request_id,call_type,api_key,spend,prompt_tokens,completion_tokens,startTime,model_group,metadata\n",
            "a,acompletion,k1,0.1,10,1,2026-11-20 10:00:00,gpt-4o,",
            "\"{\"\"user_api_key_alias\"\":\"\"temp-load-test\"\"}\"\n",
            "b,acompletion,k1,0.1,10,1,2026-11-20 10:00:01,gpt-4o,{}\n",
        );
        let mut side = Side::new(SideKind::Gateway);
        read_mapped(csv.as_bytes(), "spend.csv", &builtin("litellm"), &mut side).unwrap();
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        let (a, b) = (side.rows[0], side.rows[1]);
        assert_eq!(side.key_alias(&a), "temp-load-test");
        assert_eq!(side.key_alias(&b), "");
        // Neither a route nor an owner label.
        assert_eq!(side.route_and_labels(&a), ("acompletion", ""));
        // The alias names the key, not the row: the row's identity is the
        // one it had before aliases were read.
        let keys = crate::identity::Ordinals::default().keys(&side);
        assert!(keys[0].starts_with("id:"), "{keys:?}");
        let mut bare = Side::new(SideKind::Gateway);
        let csv_bare = csv.replace("user_api_key_alias", "other");
        read_mapped(
            csv_bare.as_bytes(),
            "spend.csv",
            &builtin("litellm"),
            &mut bare,
        )
        .unwrap();
        assert_eq!(
            crate::record::route_identity(side.strings.get(a.route)),
            bare.strings.get(bare.rows[0].route)
        );
    }

    #[test]
    fn rejects_name_the_exports_own_column_or_json_path() {
        let csv = concat!(
            "request_id,call_type,api_key,spend,prompt_tokens,completion_tokens,startTime,model_group,metadata\n",
            "a,acompletion,,0.1,10,1,2026-11-20 10:00:00,gpt-4o,{}\n",
            "b,acompletion,k1,0.1,10,1, ,gpt-4o,{}\n",
            "c,acompletion,k1,0.1,10,1,2026-11-20 10:00:00,gpt-4o,",
            "\"{\"\"usage_object\"\":{\"\"cache_read_input_tokens\"\":\"\"x\"\"}}\"\n",
            "d,acompletion,k1,0.1,10,1,2026-11-20 10:00:00,gpt-4o,",
            "\"{\"\"usage_object\"\":{\"\"cache_read_input_tokens\"\":4}}\"\n",
        );
        let mut side = Side::new(SideKind::Gateway);
        read_mapped(csv.as_bytes(), "spend.csv", &builtin("litellm"), &mut side).unwrap();
        let got = super::super::reject_fields(&side);
        assert_eq!(
            got,
            vec![
                (2, "api_key"),
                (3, "startTime"),
                (4, "metadata.usage_object.cache_read_input_tokens"),
            ]
        );
        // The one good row took its cached count from the third alternative.
        assert_eq!(side.rows[0].tokens.get(TokenKind::CachedInput), Some(4));
    }

    #[test]
    fn openrouter_variant_and_naive_time() {
        let csv = "generation_id,created_at,cost_total,tokens_prompt,tokens_completion,tokens_reasoning,tokens_cached,model_permaslug,variant,api_key_name,streamed,cancelled\n\
                   gen-1,2026-11-20 10:00:00.040,0.001,10,5,0,0,openai/gpt-oss-120b,free,Support bot,true,false\n";
        let mut side = Side::new(SideKind::Gateway);
        read_mapped(csv.as_bytes(), "or.csv", &builtin("openrouter"), &mut side).unwrap();
        let r = side.rows[0];
        assert_eq!(side.models(&r).0, "openai/gpt-oss-120b:free");
        assert_eq!(
            r.ts_ms,
            crate::time::parse_iso("2026-11-20T10:00:00.040Z", None).unwrap()
        );
        assert!(r.has(flags::STREAM));
        assert_eq!(side.route_and_labels(&r).0, "chat");
    }

    #[test]
    fn user_mapping_with_units_zone_and_nested_json() {
        let profile = Profile::from_toml(
            r#"
name = "acme"
format = "json"
records = "data.rows"
default_route = "chat"
[fields]
id = "rid"
timestamp = "when"
key = ["meta.key", "owner"]
model = "m"
input_tokens = "in"
output_tokens = "out"
cost = "c"
[timestamp]
format = "%d/%m/%Y %H:%M:%S"
zone = "America/New_York"
[cost]
unit = "cents"
[tokens]
input_includes_cached = false
"#,
            "acme.toml",
        )
        .unwrap();
        let doc = r#"{"data":{"rows":[
            {"rid":"a","when":"20/11/2026 05:00:00","meta":"{\"key\":\"k1\"}","m":"gpt-4o","in":10,"out":2,"c":"1.5"},
            {"rid":"b","when":"20/11/2026 05:00:00","owner":"k2","m":"gpt-4o","in":-1,"out":2}
        ]}}"#;
        let mut side = Side::new(SideKind::Gateway);
        read_mapped(doc.as_bytes(), "acme.json", &profile, &mut side).unwrap();
        assert_eq!(side.rows.len(), 1);
        let r = side.rows[0];
        assert_eq!(side.strings.get(r.key), "k1");
        assert_eq!(
            r.ts_ms,
            crate::time::parse_iso("2026-11-20T10:00:00Z", None).unwrap()
        );
        assert_eq!(r.reported_cost().unwrap().to_string(), "0.015");
        assert_eq!(
            (side.rejects[0].line, side.rejects[0].field.as_str()),
            (2, "in")
        );
    }

    #[test]
    fn token_sums_past_a_count_are_rejects_not_dropped_counts() {
        let profile = Profile::from_toml(
            "name = \"x\"\nformat = \"jsonl\"\ndefault_route = \"chat\"\n[fields]\n\
             timestamp = \"t\"\nkey = \"k\"\nmodel = \"m\"\ninput_tokens = \"in\"\n\
             cached_tokens = \"c\"\noutput_tokens = \"out\"\n[tokens]\ninput_includes_cached = false\n",
            "x.toml",
        )
        .unwrap();
        let doc = "{\"t\":\"2026-11-20T10:00:00Z\",\"k\":\"a\",\"m\":\"m\",\"in\":4294967000,\"c\":1000,\"out\":1}\n\
                   {\"t\":\"2026-11-20T10:00:00Z\",\"k\":\"a\",\"m\":\"m\",\"in\":10,\"c\":5,\"out\":1}\n";
        let mut side = Side::new(SideKind::Gateway);
        read_mapped(doc.as_bytes(), "x.jsonl", &profile, &mut side).unwrap();
        assert_eq!(side.rows.len(), 1);
        assert_eq!(
            side.rows[0].tokens.get(crate::record::TokenKind::Input),
            Some(15)
        );
        assert_eq!(side.rejects.len(), 1);
        assert!(
            side.rejects[0].reason.contains("out of range"),
            "{}",
            side.rejects[0].reason
        );
    }

    #[test]
    fn dotted_keys_are_found_whole_when_segments_find_nothing() {
        let v: Value = serde_json::from_str(
            r#"{"attributes": {"gen_ai.usage.input_tokens": 5, "gen_ai": {"system": "openai"}}}"#,
        )
        .unwrap();
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            walk(&v, &path("attributes.gen_ai.usage.input_tokens")).as_deref(),
            Some("5")
        );
        assert_eq!(
            walk(&v, &path("attributes.gen_ai.system")).as_deref(),
            Some("openai")
        );
        assert_eq!(
            walk(&v, &path("attributes.gen_ai.usage.output_tokens")),
            None
        );
    }

    #[test]
    fn bad_profiles_are_refused() {
        for (text, needle) in [
            (
                "name='x'\nformat='csv'\n[fields]\nkey='k'\nmodel='m'\nroute='r'\n",
                "`timestamp` is required",
            ),
            (
                "name='x'\nformat='csv'\n[fields]\ntimestamp='t'\nkey='k'\nmodel='m'\nroute='r'\nprice='p'\n",
                "unknown field `price`",
            ),
            ("name='x'\nformat='xml'\n[fields]\n", "format"),
            (
                "name='x'\nformat='csv'\n[fields]\ntimestamp='t'\nkey='k'\nmodel='m'\n",
                "default_route",
            ),
            (
                "name='x'\nformat='csv'\n[fields]\ntimestamp='t'\nkey='k'\nmodel='m'\nroute='r'\n[timestamp]\nzone='Mars/Base'\n",
                "Mars/Base",
            ),
        ] {
            let err = Profile::from_toml(text, "p.toml").unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}

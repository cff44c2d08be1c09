//! The client-side usage log: Tally's own format, as JSON Lines or CSV.
//!
//! Usage is accepted in the shapes SDKs return it, unchanged: OpenAI Chat
//! Completions, OpenAI Responses, Anthropic Messages and OpenTelemetry GenAI
//! attributes. See `schema/client-usage.schema.json` and the README.

use std::borrow::Cow;
use std::io::Read;

use serde_json::{Map, Value};

use super::project::Projected;

use super::records::{Record, Records};
use super::{
    Extracted, Fields, FileSink, Got, JsonLines, Semantics, Val, csv_header, field, first_byte,
    peek,
};
use crate::error::Error;
use crate::record::Side;

/// Encoding of a client log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header naming Tally's columns.
    Csv,
}

impl ClientFormat {
    /// Name shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            ClientFormat::Jsonl => "tally-jsonl",
            ClientFormat::Csv => "tally-csv",
        }
    }
}

/// CSV columns of the client log, in the documented order.
pub const CSV_COLUMNS: [&str; 20] = [
    "ts",
    "ts_end",
    "key",
    "model",
    "response_model",
    "route",
    "request_id",
    "response_id",
    "team",
    "service",
    "env",
    "tags",
    "status",
    "http_status",
    "stream",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// The field each of [`CSV_COLUMNS`] fills.
const CSV_FIELDS: [usize; 20] = [
    field::TIMESTAMP,
    field::END_TIMESTAMP,
    field::KEY,
    field::MODEL,
    field::SERVED_MODEL,
    field::ROUTE,
    field::ID,
    field::ID2,
    field::TEAM,
    field::SERVICE,
    field::ENV,
    field::TAGS,
    field::STATUS,
    field::HTTP_STATUS,
    field::STREAM,
    field::TOKENS,
    field::TOKENS + 1,
    field::TOKENS + 2,
    field::TOKENS + 3,
    field::TOKENS + 4,
];

const REQUIRED: [&str; 4] = ["ts", "key", "model", "route"];

/// Reads a client log into `side`. The format is detected when not given.
pub fn read_client(
    r: impl Read,
    file: &str,
    format: Option<ClientFormat>,
    side: &mut Side,
) -> Result<ClientFormat, Error> {
    let (head, r) = peek(r, file)?;
    let format = match format {
        Some(f) => f,
        None => detect_or_refuse(&head, file)?,
    };
    match format {
        ClientFormat::Jsonl => read_jsonl(r, file, side)?,
        ClientFormat::Csv => read_csv(r, file, side)?,
    }
    Ok(format)
}

/// Recognises a client log from its first bytes, or says why not.
pub fn detect_or_refuse(head: &[u8], file: &str) -> Result<ClientFormat, Error> {
    detect(head).ok_or_else(|| Error::UnknownFormat {
        file: file.to_owned(),
        detail: "neither JSON Lines nor a CSV header with ts,key,model,route".to_owned(),
    })
}

/// Recognises a client log from its first bytes.
pub fn detect(head: &[u8]) -> Option<ClientFormat> {
    match first_byte(head)? {
        b'{' => Some(ClientFormat::Jsonl),
        _ => {
            let h = csv_header(head);
            REQUIRED
                .iter()
                .all(|c| h.iter().any(|x| x == c))
                .then_some(ClientFormat::Csv)
        }
    }
}

fn read_err(file: &str, e: impl std::fmt::Display) -> Error {
    Error::Read {
        file: file.to_owned(),
        detail: e.to_string(),
    }
}

fn read_jsonl(r: impl Read, file: &str, side: &mut Side) -> Result<(), Error> {
    read_jsonl_with(r, file, side, true)
}

/// [`read_jsonl`]; without `projection` every row goes through the tree
/// (what the projection is tested against).
fn read_jsonl_with(
    r: impl Read,
    file: &str,
    side: &mut Side,
    projection: bool,
) -> Result<(), Error> {
    let sem = Semantics::default();
    let mut sink = FileSink::new(side, file);
    let mut lines = JsonLines::new(r);
    while let Some(line) = lines.next_line(&mut sink).map_err(|e| read_err(file, e))? {
        // Most rows: one pass that keeps only the members a row is made
        // of. Any other shape, and any text that is not one JSON object,
        // goes through the tree, which says what is wrong with it.
        let mut p = Projected::default();
        let extracted = if projection && p.fill(lines.current_bytes()) {
            let mut ex = Extracted::default();
            extract_projected(&p, &mut ex).map(|()| sink.row(&ex, &sem, line, || lines.text()))
        } else {
            match lines.object(lines.current(), line, &mut sink) {
                Some(obj) => extract(&obj).map(|ex| sink.row(&ex, &sem, line, || lines.text())),
                None => Ok(()),
            }
        };
        if let Err((field, reason)) = extracted {
            sink.reject(line, &field, &reason, lines.text());
        }
    }
    sink.extent(lines.lines(), false);
    sink.finish(ClientFormat::Jsonl.name());
    Ok(())
}

fn text_of(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

fn member<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Option<Val<'a>> {
    obj.get(name).and_then(text_of).map(|v| Val {
        v,
        name: Cow::Borrowed(name),
    })
}

fn tags_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Array(items) => Some(Cow::Owned(
            items
                .iter()
                .filter_map(text_of)
                .collect::<Vec<_>>()
                .join(","),
        )),
        Value::Object(m) => {
            let mut kv: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", text_of(v).unwrap_or_default()))
                .collect();
            kv.sort();
            Some(Cow::Owned(kv.join(",")))
        }
        other => text_of(other),
    }
}

/// Which SDK shape a `usage` object has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
}

/// What [`usage_into`] asks of a `usage` object: the tree's, or a
/// projected row's.
trait UsageObject<'a> {
    /// Whether it has member `k` (even null).
    fn has(&self, k: &str) -> bool;
    /// The value at `path`, rendered as `text_of` renders it.
    fn at(&self, path: &[&str]) -> Option<Cow<'a, str>>;
}

impl<'a> UsageObject<'a> for &'a Map<String, Value> {
    fn has(&self, k: &str) -> bool {
        self.contains_key(k)
    }

    fn at(&self, path: &[&str]) -> Option<Cow<'a, str>> {
        let (last, parents) = path.split_last()?;
        let mut cur: &'a Map<String, Value> = self;
        for p in parents {
            cur = cur.get(*p)?.as_object()?;
        }
        text_of(cur.get(*last)?)
    }
}

impl<'a> UsageObject<'a> for &'a Projected<'_> {
    fn has(&self, k: &str) -> bool {
        self.usage_has(k)
    }

    fn at(&self, path: &[&str]) -> Option<Cow<'a, str>> {
        self.usage_at(path).map(Cow::Borrowed)
    }
}

fn shape_of<'a>(
    usage: &impl UsageObject<'a>,
    hint: Option<&str>,
) -> Result<Shape, (String, String)> {
    match hint {
        Some("openai_chat" | "chat_completions") => return Ok(Shape::OpenAiChat),
        Some("openai_responses" | "responses") => return Ok(Shape::OpenAiResponses),
        Some("anthropic") => return Ok(Shape::Anthropic),
        Some(other) => {
            return Err((
                "usage_format".to_owned(),
                format!(
                    "unknown usage_format `{other}` (openai_chat, openai_responses, anthropic)"
                ),
            ));
        }
        None => {}
    }
    let has = |k: &str| usage.has(k);
    Ok(if has("prompt_tokens") || has("completion_tokens") {
        Shape::OpenAiChat
    } else if has("cache_read_input_tokens")
        || has("cache_creation_input_tokens")
        || has("cache_creation")
    {
        Shape::Anthropic
    } else {
        // Bare {input_tokens, output_tokens}: Responses and Anthropic agree
        // when no cache field is present.
        Shape::OpenAiResponses
    })
}

fn usage_into<'a>(
    ex: &mut Extracted<'a>,
    usage: impl UsageObject<'a>,
    hint: Option<&str>,
) -> Result<(), (String, String)> {
    // Each path with its name for errors, spelled out: no name is built
    // per row.
    let u = |path: &[&str], name: &'static str| {
        usage.at(path).map(|v| Val {
            v,
            name: Cow::Borrowed(name),
        })
    };
    match shape_of(&usage, hint)? {
        Shape::OpenAiChat => {
            ex.tokens = [
                u(&["prompt_tokens"], "usage.prompt_tokens"),
                u(
                    &["prompt_tokens_details", "cached_tokens"],
                    "usage.prompt_tokens_details.cached_tokens",
                ),
                u(
                    &["prompt_tokens_details", "cache_write_tokens"],
                    "usage.prompt_tokens_details.cache_write_tokens",
                ),
                u(&["completion_tokens"], "usage.completion_tokens"),
                u(
                    &["completion_tokens_details", "reasoning_tokens"],
                    "usage.completion_tokens_details.reasoning_tokens",
                ),
            ];
        }
        Shape::OpenAiResponses => {
            ex.tokens = [
                u(&["input_tokens"], "usage.input_tokens"),
                u(
                    &["input_tokens_details", "cached_tokens"],
                    "usage.input_tokens_details.cached_tokens",
                ),
                u(
                    &["input_tokens_details", "cache_write_tokens"],
                    "usage.input_tokens_details.cache_write_tokens",
                ),
                u(&["output_tokens"], "usage.output_tokens"),
                u(
                    &["output_tokens_details", "reasoning_tokens"],
                    "usage.output_tokens_details.reasoning_tokens",
                ),
            ];
        }
        Shape::Anthropic => {
            // `input_tokens` excludes cache reads and writes; the 5m/1h split
            // is summed when the total is absent.
            let write = u(
                &["cache_creation_input_tokens"],
                "usage.cache_creation_input_tokens",
            )
            .or_else(|| {
                let a = u(
                    &["cache_creation", "ephemeral_5m_input_tokens"],
                    "usage.cache_creation.ephemeral_5m_input_tokens",
                );
                let b = u(
                    &["cache_creation", "ephemeral_1h_input_tokens"],
                    "usage.cache_creation.ephemeral_1h_input_tokens",
                );
                match (a, b) {
                    (None, None) => None,
                    (a, b) => {
                        let n = |v: Option<Val<'_>>| {
                            v.and_then(|v| v.v.trim().parse::<u64>().ok()).unwrap_or(0)
                        };
                        Some(Val {
                            v: Cow::Owned((n(a) + n(b)).to_string()),
                            name: Cow::Borrowed("usage.cache_creation"),
                        })
                    }
                }
            });
            ex.tokens = [
                u(&["input_tokens"], "usage.input_tokens"),
                u(
                    &["cache_read_input_tokens"],
                    "usage.cache_read_input_tokens",
                ),
                write,
                u(&["output_tokens"], "usage.output_tokens"),
                u(
                    &["output_tokens_details", "thinking_tokens"],
                    "usage.output_tokens_details.thinking_tokens",
                ),
            ];
            ex.input_excludes_cached = true;
            ex.input_excludes_cache_write = true;
        }
    }
    Ok(())
}

/// OpenTelemetry GenAI attributes, from `attributes` or the top level.
fn otel<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Option<Val<'a>> {
    obj.get("attributes")
        .and_then(Value::as_object)
        .and_then(|a| a.get(name))
        .or_else(|| obj.get(name))
        .and_then(text_of)
        .map(|v| Val {
            v,
            name: Cow::Borrowed(name),
        })
}

/// Extracts one JSON Lines row.
pub fn extract(obj: &Map<String, Value>) -> Result<Extracted<'_>, (String, String)> {
    let mut ex = Extracted {
        id: member(obj, "request_id"),
        id2: member(obj, "response_id").or_else(|| otel(obj, "gen_ai.response.id")),
        ts: member(obj, "ts"),
        ts_end: member(obj, "ts_end"),
        key: member(obj, "key"),
        model: member(obj, "model").or_else(|| otel(obj, "gen_ai.request.model")),
        served_model: member(obj, "response_model").or_else(|| otel(obj, "gen_ai.response.model")),
        route: member(obj, "route").or_else(|| otel(obj, "gen_ai.operation.name")),
        team: member(obj, "team"),
        service: member(obj, "service"),
        env: member(obj, "env"),
        tags: obj
            .get("tags")
            .and_then(tags_text)
            .map(|v| Val::new(v, "tags")),
        status: member(obj, "status"),
        http_status: member(obj, "http_status"),
        stream: member(obj, "stream").or_else(|| otel(obj, "gen_ai.request.stream")),
        ..Extracted::default()
    };
    let hint = obj.get("usage_format").and_then(Value::as_str);
    match obj.get("usage") {
        Some(Value::Object(usage)) => usage_into(&mut ex, usage, hint)?,
        Some(Value::Null) | None => {
            let otel_input = otel(obj, "gen_ai.usage.input_tokens")
                .or_else(|| otel(obj, "gen_ai.usage.prompt_tokens"));
            if otel_input.is_some() || otel(obj, "gen_ai.usage.output_tokens").is_some() {
                // OTel: input includes cache reads and writes, output includes reasoning.
                ex.tokens = [
                    otel_input,
                    otel(obj, "gen_ai.usage.cache_read.input_tokens"),
                    otel(obj, "gen_ai.usage.cache_creation.input_tokens"),
                    otel(obj, "gen_ai.usage.output_tokens")
                        .or_else(|| otel(obj, "gen_ai.usage.completion_tokens")),
                    otel(obj, "gen_ai.usage.reasoning.output_tokens"),
                ];
            } else {
                // Tally's flat columns, as in the CSV form.
                ex.tokens = [
                    member(obj, "input_tokens"),
                    member(obj, "cached_input_tokens"),
                    member(obj, "cache_write_tokens"),
                    member(obj, "output_tokens"),
                    member(obj, "reasoning_tokens"),
                ];
            }
        }
        Some(_) => return Err(("usage".to_owned(), "is not an object".to_owned())),
    }
    Ok(ex)
}

/// Extracts one JSON Lines row read as a projection: what [`extract`]
/// makes of the same row (the projection declines every member that would
/// make them differ: tags, OpenTelemetry attributes, `usage_format`).
/// Fills a fresh `ex` (no copy of it is made: it is a kilobyte).
fn extract_projected<'a>(
    p: &'a Projected<'_>,
    ex: &mut Extracted<'a>,
) -> Result<(), (String, String)> {
    // By place in `TOP`, whose order this follows (a unit test holds it).
    let m = |i: usize| {
        p.get_at(i).map(|(v, name)| Val {
            v: Cow::Borrowed(v),
            name: Cow::Borrowed(name),
        })
    };
    ex.id = m(0);
    ex.id2 = m(1);
    ex.ts = m(2);
    ex.ts_end = m(3);
    ex.key = m(4);
    ex.model = m(5);
    ex.served_model = m(6);
    ex.route = m(7);
    ex.team = m(8);
    ex.service = m(9);
    ex.env = m(10);
    ex.status = m(11);
    ex.http_status = m(12);
    ex.stream = m(13);
    if p.has_usage {
        usage_into(ex, p, None)?;
    } else {
        ex.tokens = [m(14), m(15), m(16), m(17), m(18)];
    }
    Ok(())
}

/// One client CSV record as [`Fields`], read in place.
struct CsvRow<'r> {
    rec: &'r Record<'r>,
    cols: &'r [Option<(usize, &'r str)>; field::COUNT],
}

impl Fields for CsvRow<'_> {
    #[inline(always)]
    fn get(&self, f: usize) -> Option<Got<'_>> {
        let (col, name) = (*self.cols.get(f)?)?;
        Got::of(self.rec.get(col)?, name)
    }

    fn name_of(&self, f: usize) -> Option<&str> {
        self.cols.get(f).copied().flatten().map(|(_, name)| name)
    }
}

fn read_csv(r: impl Read, file: &str, side: &mut Side) -> Result<(), Error> {
    let mut rdr = Records::new(r);
    let header = rdr.header().map_err(|e| read_err(file, e))?;
    let idx: Vec<Option<usize>> = CSV_COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h == c))
        .collect();
    for (c, i) in CSV_COLUMNS.iter().zip(&idx) {
        if REQUIRED.contains(c) && i.is_none() {
            return Err(Error::invalid(
                file,
                format!("client CSV header has no `{c}` column"),
            ));
        }
    }
    // Per field: the column it is read from, and that column's name.
    let mut cols: [Option<(usize, &str)>; field::COUNT] = [None; field::COUNT];
    for ((name, &f), i) in CSV_COLUMNS.iter().zip(&CSV_FIELDS).zip(&idx) {
        if let (Some(slot), Some(col)) = (cols.get_mut(f), i) {
            *slot = Some((*col, *name));
        }
    }
    let sem = Semantics::default();
    let mut sink = FileSink::new(side, file);
    while let Some(rec) = rdr.next_record().map_err(|e| read_err(file, e))? {
        if sink.rejected_if_not_utf8(&rec, &header) {
            continue;
        }
        let row = CsvRow {
            rec: &rec,
            cols: &cols,
        };
        sink.row(&row, &sem, rec.line, || rec.raw_text());
    }
    sink.extent(rdr.lines(), rdr.ended_in_quotes());
    sink.finish(ClientFormat::Csv.name());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{SideKind, TokenKind};

    fn parse(text: &str) -> Side {
        let mut side = Side::new(SideKind::Client);
        read_client(text.as_bytes(), "client.jsonl", None, &mut side).unwrap();
        side
    }

    fn tokens(side: &Side, i: usize) -> [Option<u32>; 5] {
        TokenKind::ALL.map(|k| side.rows[i].tokens.get(k))
    }

    #[test]
    fn every_sdk_shape_normalises_to_one_set() {
        let side = parse(concat!(
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"gpt-4o","route":"/v1/chat/completions","usage":{"prompt_tokens":1000,"completion_tokens":200,"total_tokens":1200,"prompt_tokens_details":{"cached_tokens":400},"completion_tokens_details":{"reasoning_tokens":50}}}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"gpt-4o","route":"responses","usage":{"input_tokens":1000,"input_tokens_details":{"cached_tokens":400},"output_tokens":200,"output_tokens_details":{"reasoning_tokens":50},"total_tokens":1200}}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"claude-sonnet-4","route":"/v1/messages","usage":{"input_tokens":600,"cache_read_input_tokens":400,"cache_creation_input_tokens":0,"output_tokens":200}}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","route":"chat","attributes":{"gen_ai.request.model":"gpt-4o","gen_ai.usage.input_tokens":1000,"gen_ai.usage.cache_read.input_tokens":400,"gen_ai.usage.output_tokens":200,"gen_ai.usage.reasoning.output_tokens":50,"gen_ai.response.id":"chatcmpl-9"}}"#,
            "\n",
        ));
        assert!(side.rejects.is_empty(), "{:?}", side.rejects);
        let want = [Some(1000), Some(400), None, Some(200), Some(50)];
        assert_eq!(tokens(&side, 0), want);
        assert_eq!(tokens(&side, 1), want);
        assert_eq!(
            tokens(&side, 2),
            [Some(1000), Some(400), Some(0), Some(200), None]
        );
        assert_eq!(tokens(&side, 3), want);
        assert_eq!(side.ids.get(side.rows[3].ids), ("", "chatcmpl-9"));
    }

    /// The projection reads a row exactly as the tree does, on every
    /// shape the client reader knows (the fixtures' SDK shapes, OTel,
    /// tags), on generated rows, and on odd values and broken lines.
    #[test]
    fn the_projection_reads_every_row_as_the_tree_does() {
        // The engine reads no files: the fixture is compiled in.
        let mut texts = vec![include_str!("../../../fixtures/client/app.jsonl").to_owned()];
        let mut generated = Vec::new();
        crate::synth::generate(
            &crate::synth::Spec {
                rows: 3000,
                client_jsonl: true,
                ..crate::synth::Spec::default()
            },
            &mut generated,
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
        texts.push(String::from_utf8(generated).unwrap());
        // SDK-shaped rows take the projection, not the tree.
        assert!(
            texts[1]
                .lines()
                .all(|l| Projected::default().fill(l.as_bytes()))
        );
        texts.push(
            [
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":1.5e3,"completion_tokens":-2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":{"nested":1},"usage":{"prompt_tokens":1}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":{"x":1},"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"prompt_tokens_details":{"audio_tokens":1}}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4},"output_tokens":1}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":"lots"}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":null,"input_tokens":"7","output_tokens":true}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"ké","model":"m"q","tags":["a","b"],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","attributes":{"gen_ai.request.model":"m","gen_ai.usage.input_tokens":3},"key":"k"}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage_format":"anthropic","usage":{"input_tokens":1,"output_tokens":1}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":1}} trailing"#,
                r#"[1,2]"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","extra":{"deep":[{"a":1}]},"usage":{"prompt_tokens":3,"completion_tokens":4,"completion_tokens_details":{"reasoning_tokens":null}}}"#,
                r#"{"ts":1795132800000,"key":"k","model":"m","stream":"yes","usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
                // Values whose text the tree renders its own way, escapes,
                // numbers at the edges of u64 and f64, whitespace.
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k\"q","model":"m","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m\u00e9","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":-0,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":18446744073709551615,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":18446744073709551616,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":99999999999999999999,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":007,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","temperature":0.7,"seed":-12,"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","big":1e400,"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","big":-1.5E+2,"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","prompt":"say \"hi\"\n\t","lone":"\ud800","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#" { "ts" : "2026-11-20T10:00:00Z" ,	"key":"k" , "model":"m","usage" : { "prompt_tokens" : 4 , "completion_tokens":2 } }	"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":1,"completion_tokens":2},"usage":null,"output_tokens":9,"input_tokens":3}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens_details":7,"prompt_tokens":5,"completion_tokens_details":[1,{"a":[]}],"completion_tokens":1}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":1,"completion_tokens":2,}}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":1,"completion_tokens":2}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","x":tru,"y":nul}"#,
                r#"{"t\u0073":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                r#"{}"#,
                r#""#,
                r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","usage":{"prompt_tokens":1.0,"completion_tokens":2e0}}"#,
            ]
            .join("\n"),
        );
        let read = |text: &str, projection: bool| {
            let mut side = Side::new(SideKind::Client);
            read_jsonl_with(text.as_bytes(), "c.jsonl", &mut side, projection).unwrap();
            format!("{side:?}")
        };
        for text in &texts {
            assert_eq!(read(text, true), read(text, false));
        }
        // Generated rows broken one byte at a time (dropped, doubled or
        // replaced by a byte JSON cares about): wherever the projection
        // takes a broken line, it reads it as the tree does.
        const BYTES: &[u8] = b"\"\\{}[],:-+.0159eEnut \t\r/";
        let lines: Vec<&str> = texts[1].lines().take(300).collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            usize::try_from(state >> 33).unwrap() % n
        };
        let mut broken = Vec::new();
        let mut taken = 0;
        for round in 0..20 {
            for line in &lines {
                let mut b = line.as_bytes().to_vec();
                let at = rand(b.len());
                match round % 3 {
                    0 => {
                        b.remove(at);
                    }
                    1 => b.insert(at, b[at]),
                    _ => b[at] = BYTES[rand(BYTES.len())],
                }
                let Ok(line) = String::from_utf8(b) else {
                    continue;
                };
                taken += usize::from(Projected::default().fill(line.as_bytes()));
                broken.push(line);
            }
        }
        let text = broken.join("\n");
        assert_eq!(read(&text, true), read(&text, false));
        // Most breaks land in values the projection reads or skips.
        assert!(taken > broken.len() / 4, "{taken} of {}", broken.len());
    }

    #[test]
    fn anthropic_split_cache_creation() {
        let side = parse(
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"claude","route":"messages","usage":{"input_tokens":10,"cache_read_input_tokens":null,"cache_creation":{"ephemeral_5m_input_tokens":5,"ephemeral_1h_input_tokens":7},"output_tokens":3}}"#,
        );
        assert_eq!(tokens(&side, 0), [Some(22), None, Some(12), Some(3), None]);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_reject_not_a_failed_file() {
        let mut bytes =
            br#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","route":"chat"}"#.to_vec();
        bytes.extend_from_slice(b"\n{\"ts\":\"2026-11-20T10:00:01Z\",\"key\":\"k\xff\xfe\"}\n");
        bytes.extend_from_slice(
            br#"{"ts":"2026-11-20T10:00:02Z","key":"k","model":"m","route":"chat"}"#,
        );
        for csv in [false, true] {
            let mut side = Side::new(crate::record::SideKind::Client);
            if csv {
                let text = b"ts,key,model,route\n2026-11-20T10:00:00Z,k,m,chat\n2026-11-20T10:00:01Z,k\xff,m,chat\n2026-11-20T10:00:02Z,k,m,chat\n";
                read_client(&text[..], "c.csv", Some(ClientFormat::Csv), &mut side).unwrap();
            } else {
                read_client(&bytes[..], "c.jsonl", Some(ClientFormat::Jsonl), &mut side).unwrap();
            }
            assert_eq!(side.rows.len(), 2, "csv {csv}");
            let r = &side.rejects[0];
            assert_eq!(
                (r.line, r.reason.as_str()),
                (if csv { 3 } else { 2 }, "not valid UTF-8")
            );
            assert_eq!(r.field, if csv { "key" } else { "(row)" });
            assert!(r.raw.contains("10:00:01"));
        }
    }

    #[test]
    fn bad_rows_name_line_and_field_and_are_kept() {
        let text = concat!(
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","route":"chat"}"#,
            "\n",
            "\n",
            r#"{"ts":"yesterday","key":"k","model":"m","route":"chat"}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","route":"chat","usage":{"prompt_tokens":-5}}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:00Z","model":"m","route":"chat"}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:00Z","key":"sk-live-0123456789abcdefghijQRST","route":"chat"}"#,
            "\n",
            "{not json\n",
        );
        let side = parse(text);
        assert_eq!(side.rows.len(), 1);
        let got = super::super::reject_fields(&side);
        assert_eq!(
            got,
            [
                (3, "ts"),
                (4, "usage.prompt_tokens"),
                (5, "key"),
                (6, "model"),
                (7, "(row)")
            ]
        );
        assert!(side.rejects[1].reason.contains("negative"));
        // The raw key never reaches the rejects.
        assert!(!side.rejects[3].raw.contains("0123456789abcdefghij"));
        assert_eq!(side.read(), 6);
    }

    #[test]
    fn csv_form_and_missing_column() {
        // CRLF line ends, as Python's csv module writes them.
        let csv = "ts,key,model,route,request_id,team,input_tokens,output_tokens\r\n2026-11-20T10:00:00+01:00,k,gpt-4o,chat,r1,search,10,5\r\n2026-11-20T10:00:00Z,k,gpt-4o,chat,r2,search,x,5\r\n";
        let mut side = Side::new(SideKind::Client);
        assert_eq!(
            read_client(csv.as_bytes(), "c.csv", None, &mut side).unwrap(),
            ClientFormat::Csv
        );
        assert_eq!(side.rows.len(), 1);
        assert_eq!(
            side.rows[0].ts_ms,
            crate::time::parse_iso("2026-11-20T09:00:00Z", None).unwrap()
        );
        assert_eq!(
            (side.rejects[0].line, side.rejects[0].field.as_str()),
            (3, "input_tokens")
        );
        let bad = "ts,key,model\n";
        let err =
            read_client(bad.as_bytes(), "c.csv", Some(ClientFormat::Csv), &mut side).unwrap_err();
        assert!(err.to_string().contains("`route`"), "{err}");
    }
}

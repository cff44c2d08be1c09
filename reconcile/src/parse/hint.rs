//! A file none of whose rows could be read: what it has, what Tally reads,
//! and how to describe it.
//!
//! A log in another shape is refused row by row; a command that then went
//! on would report every request as missing. Instead the command fails,
//! showing the first rejects and, for JSON rows, which of the row's own
//! field names look like the fields Tally could not find.

use serde_json::Value;

use crate::error::RowError;
use crate::record::{FileInfo, Side, SideKind};

/// Field names other logs commonly use for each of Tally's client fields.
const SYNONYMS: [(&str, &[&str]); 8] = [
    (
        "ts",
        &[
            "timestamp",
            "time",
            "start_time",
            "starttime",
            "started_at",
            "created_at",
            "createdat",
            "request_time",
            "start",
            "date",
        ],
    ),
    (
        "ts_end",
        &["end_time", "endtime", "finished_at", "completed_at", "end"],
    ),
    (
        "key",
        &[
            "api_key",
            "api_key_alias",
            "key_alias",
            "key_name",
            "api_key_name",
            "virtual_key",
            "api_key_last4",
            "key_last4",
            "api_key_hash",
        ],
    ),
    (
        "model",
        &[
            "requested_model",
            "model_name",
            "model_group",
            "request_model",
        ],
    ),
    (
        "response_model",
        &["served_model", "model_used", "response_model_name"],
    ),
    (
        "route",
        &["endpoint", "path", "call_type", "operation", "api", "url"],
    ),
    (
        "request_id",
        &[
            "call_id",
            "litellm_call_id",
            "x-litellm-call-id",
            "trace_id",
            "id",
        ],
    ),
    (
        "usage",
        &[
            "tokens",
            "prompt_tokens",
            "token_usage",
            "usage_details",
            "usagedetails",
        ],
    ),
];

/// The dotted names of a JSON row's fields, three levels deep.
fn field_names(v: &Value, prefix: &str, depth: u8, out: &mut Vec<String>) {
    let Value::Object(m) = v else { return };
    for (k, child) in m {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if depth > 0 {
            field_names(child, &name, depth - 1, out);
        }
        out.push(name);
    }
}

/// Pairs of (a field the row has, the Tally field it looks like).
fn look_alikes(raw: &str) -> Vec<(String, &'static str)> {
    let Ok(v) = serde_json::from_str::<Value>(raw) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    field_names(&v, "", 2, &mut names);
    names.sort();
    let mut out = Vec::new();
    for (tally, synonyms) in SYNONYMS {
        if names.iter().any(|n| n == tally) {
            continue;
        }
        for n in &names {
            let last = n.rsplit('.').next().unwrap_or(n).to_ascii_lowercase();
            if synonyms.contains(&last.as_str()) {
                out.push((n.clone(), tally));
                break;
            }
        }
    }
    out
}

/// Files of `side` that had rows and accepted none.
pub fn all_rejected(side: &Side) -> impl Iterator<Item = &FileInfo> {
    side.files
        .iter()
        .filter(|f| f.read > 0 && f.rejected == f.read)
}

/// Why `file` of `side` is refused: its first rejects, the look-alike
/// fields of its first row, and the flags that describe it.
pub fn explain(side: &Side, file: &FileInfo, client_sources: &str) -> String {
    let first: Vec<RowError> = side
        .rejects
        .iter()
        .filter(|r| r.file == file.name)
        .take(3)
        .cloned()
        .collect();
    explain_counts(
        side.kind,
        &file.name,
        (file.read, file.rejected),
        &first,
        client_sources,
    )
}

/// [`explain`] from counts and the first rejects, for a file read in parts.
pub fn explain_counts(
    kind: SideKind,
    file: &str,
    (read, rejected): (u64, u64),
    first: &[RowError],
    client_sources: &str,
) -> String {
    let mut out =
        format!("every row of `{file}` was rejected ({rejected} of {read}); first rejects:\n");
    for r in first.iter().take(3) {
        out.push_str(&format!("  {r}\n"));
    }
    let alike = first
        .first()
        .map(|r| look_alikes(&r.raw))
        .unwrap_or_default();
    if !alike.is_empty() {
        let list: Vec<String> = alike
            .iter()
            .map(|(have, want)| format!("`{have}` (Tally reads `{want}`)"))
            .collect();
        out.push_str(&format!(
            "the rows have fields Tally does not read as such: {}\n",
            list.join(", ")
        ));
    }
    match kind {
        SideKind::Client => out.push_str(&format!(
            "hint: write the log in Tally's format, or describe it with a mapping file \
             (side = \"client\", see the README's \"Client mapping files\") and pass \
             --client-source FILE; built-in client sources: {client_sources}; \
             --client-format jsonl|csv forces Tally's own format"
        )),
        SideKind::Gateway => out.push_str(
            "hint: name the export's source with --source NAME (see `tally sources`) or \
             describe it with a mapping file and pass --source FILE",
        ),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::client::read_client;

    #[test]
    fn a_log_in_its_own_shape_is_explained_with_its_own_field_names() {
        let text = concat!(
            r#"{"timestamp":"2026-11-20T10:00:00Z","api_key_alias":"search-prod","requested_model":"gpt-4o","endpoint":"/v1/chat/completions","usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
            "\n",
            r#"{"timestamp":"2026-11-20T10:00:01Z","api_key_alias":"search-prod","requested_model":"gpt-4o","endpoint":"/v1/chat/completions"}"#,
            "\n"
        );
        let mut side = Side::new(SideKind::Client);
        read_client(text.as_bytes(), "app.jsonl", None, &mut side).unwrap();
        let files: Vec<_> = all_rejected(&side).collect();
        assert_eq!(files.len(), 1);
        let msg = explain(&side, files[0], "otlp, langfuse");
        assert!(
            msg.contains("every row of `app.jsonl` was rejected (2 of 2)"),
            "{msg}"
        );
        assert!(msg.contains("app.jsonl:1: field `ts`"), "{msg}");
        for want in [
            "`timestamp` (Tally reads `ts`)",
            "`api_key_alias` (Tally reads `key`)",
            "`requested_model` (Tally reads `model`)",
            "`endpoint` (Tally reads `route`)",
        ] {
            assert!(msg.contains(want), "{want} in {msg}");
        }
        assert!(msg.contains("--client-source"), "{msg}");
    }

    #[test]
    fn a_file_with_one_good_row_is_not_refused() {
        let text = concat!(
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","route":"chat"}"#,
            "\n",
            r#"{"timestamp":"2026-11-20T10:00:01Z","key":"k","model":"m","route":"chat"}"#,
            "\n"
        );
        let mut side = Side::new(SideKind::Client);
        read_client(text.as_bytes(), "app.jsonl", None, &mut side).unwrap();
        assert_eq!(all_rejected(&side).count(), 0);
    }
}

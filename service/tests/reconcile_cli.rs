//! Black-box tests of `tally reconcile`: the real binary on the fixture day.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

#[expect(dead_code, reason = "the store helpers of the shared test support")]
mod common;

use std::path::{Path, PathBuf};

use common::{FIXTURE_ARGS, root, succeed, tally};
use serde_json::Value;

struct Run {
    dir: tempfile::TempDir,
    stdout: String,
    report: Value,
}

impl Run {
    fn csv(&self, name: &str) -> Vec<csv::StringRecord> {
        let mut r = csv::Reader::from_path(self.dir.path().join(name)).unwrap();
        r.records().map(Result::unwrap).collect()
    }

    fn header(&self, name: &str) -> csv::StringRecord {
        csv::Reader::from_path(self.dir.path().join(name))
            .unwrap()
            .headers()
            .unwrap()
            .clone()
    }

    fn col(&self, name: &str, column: &str) -> Vec<String> {
        let i = self.header(name).iter().position(|h| h == column).unwrap();
        self.csv(name).iter().map(|r| r[i].to_owned()).collect()
    }
}

/// Runs the fixture day with extra flags into a fresh output directory.
fn run_fixtures_with(extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = succeed(
        tally()
            .args(FIXTURE_ARGS)
            .args(extra)
            .arg("--out")
            .arg(dir.path()),
        "fixture run",
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        dir,
        report,
    }
}

fn run_fixtures() -> Run {
    run_fixtures_with(&[])
}

fn class_counts(report: &Value) -> Vec<(String, u64, u64)> {
    report["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_owned(),
                c["client_rows"].as_u64().unwrap(),
                c["gateway_rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn fixture_day_finds_exactly_the_planted_faults() {
    let run = run_fixtures();
    let r = &run.report;
    let want: Vec<(String, u64, u64)> = [
        ("matched", 105, 105),
        ("token_mismatch", 3, 3),
        ("model_mismatch", 1, 1),
        ("cost_variance", 1, 1),
        ("missing_usage", 2, 0),
        ("unattributed", 0, 3),
        ("duplicate", 1, 1),
        ("failed_pair", 0, 0),
        ("failed_unbilled", 0, 0),
        ("billed_failure", 0, 0),
    ]
    .iter()
    .map(|(c, a, b)| ((*c).to_owned(), *a, *b))
    .collect();
    assert_eq!(class_counts(r), want);
    // read = accepted + duplicates + rejected, per side and per file.
    for side in ["client", "gateway"] {
        let s = &r[side];
        assert_eq!(
            s["read"],
            s["accepted"].as_u64().unwrap()
                + s["duplicates"].as_u64().unwrap()
                + s["rejected"].as_u64().unwrap()
        );
    }
    assert_eq!(
        (r["client"]["read"].as_u64(), r["gateway"]["read"].as_u64()),
        (Some(116), Some(115))
    );
    for f in r["inputs"].as_array().unwrap() {
        assert_eq!(
            f["read"],
            f["accepted"].as_u64().unwrap()
                + f["duplicates"].as_u64().unwrap()
                + f["rejected"].as_u64().unwrap()
        );
    }

    let mut missing = run.col("missing_usage.csv", "id2");
    missing.sort();
    assert_eq!(missing, ["chatcmpl-sup007", "chatcmpl-sup019"]);

    let unattributed = run.col("unattributed.csv", "id");
    assert_eq!(unattributed.len(), 3);
    assert!(
        unattributed
            .iter()
            .all(|id| id.starts_with("chatcmpl-leak"))
    );
    assert!(
        run.col("unattributed.csv", "key_registered")
            .iter()
            .all(|v| v == "false")
    );
    let by_key = r["unattributed_by_key"].as_array().unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0]["rows"], 3);
    assert_eq!(by_key[0]["registered"], false);
    // The whole fingerprint in every export, to search the gateway with;
    // screens shorten it (issue 19).
    let fp = "sha256:4b4e721860d5567581168884f58aed4aef8855dbc586d9b85bffa30a17640f11";
    assert_eq!(by_key[0]["key"], fp);
    assert!(run.col("unattributed.csv", "key").iter().all(|k| k == fp));
    let html = std::fs::read_to_string(run.dir.path().join("report.html")).unwrap();
    assert!(
        html.contains(&format!("<code title=\"{fp}\">sha256:4b4e721860d5…</code>")),
        "report.html shows it shortened, whole on hover"
    );
    assert!(
        run.stdout.contains("sha256:4b4e721860d5… ") && !run.stdout.contains(fp),
        "{}",
        run.stdout
    );

    let kinds = run.col("discrepancies.csv", "kind");
    let details = run.col("discrepancies.csv", "detail");
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(
        (
            count("model_mismatch"),
            count("token_mismatch"),
            count("cost_variance"),
            count("duplicate"),
            count("unpriced")
        ),
        (1, 3, 1, 2, 3)
    );
    let detail_of = |k: &str| {
        kinds
            .iter()
            .zip(&details)
            .filter(|(x, _)| *x == k)
            .map(|(_, d)| d.clone())
            .collect::<Vec<_>>()
    };
    assert!(detail_of("model_mismatch")[0].contains("claude-sonnet-4"));
    let tm = detail_of("token_mismatch").join(" | ");
    assert!(tm.contains("client logged no usage"), "{tm}");
    assert!(tm.contains("input_tokens: client"), "{tm}");
    assert!(tm.contains("output_tokens: client"), "{tm}");
    let dups = detail_of("duplicate").join(" | ");
    assert!(
        dups.contains("chatcmpl-sup023") && dups.contains("6f1c2a10-0000-4000-8000-000000000009"),
        "{dups}"
    );

    // The search host's clock runs 2.5 s behind the gateway: learned per key.
    let search = r["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "key_search_prod")
        .unwrap();
    let off = search["offset_ms"].as_i64().unwrap();
    assert!((2400..=2600).contains(&off), "{off}");
    // The ten search rows without ids were matched by tokens and time anyway.
    assert_eq!(
        r["passes"]["strict"].as_u64().unwrap() + r["passes"]["loose"].as_u64().unwrap(),
        35
    );

    let unpriced = r["unpriced_models"].as_array().unwrap();
    assert_eq!(unpriced.len(), 1);
    assert_eq!(
        (
            unpriced[0]["model"].as_str(),
            unpriced[0]["gateway_rows"].as_u64()
        ),
        (Some("mistral-large"), Some(3))
    );
    // Variance covers priced rows only: exactly the mispriced cache row.
    let variance: rust_decimal::Decimal =
        r["totals"]["variance"].as_str().unwrap().parse().unwrap();
    let cv = run.csv("discrepancies.csv");
    let cv_row = cv.iter().find(|x| &x[0] == "cost_variance").unwrap();
    let (computed, reported): (rust_decimal::Decimal, rust_decimal::Decimal) =
        (cv_row[10].parse().unwrap(), cv_row[11].parse().unwrap());
    assert_eq!(variance, reported - computed);

    let rejects: Vec<(String, String, String)> = run
        .csv("rejects.csv")
        .iter()
        .map(|x| (x[0].to_owned(), x[1].to_owned(), x[2].to_owned()))
        .collect();
    let gw_bad_line =
        std::fs::read_to_string(root().join("fixtures/gateway/litellm_spendlogs.csv"))
            .unwrap()
            .lines()
            .position(|l| l.starts_with("chatcmpl-bad"))
            .unwrap()
            + 1;
    assert_eq!(
        rejects,
        [
            (
                "fixtures/client/app.jsonl".to_owned(),
                "6".to_owned(),
                "ts".to_owned()
            ),
            (
                "fixtures/client/app.jsonl".to_owned(),
                "41".to_owned(),
                "usage.input_tokens".to_owned()
            ),
            (
                "fixtures/client/app.jsonl".to_owned(),
                "71".to_owned(),
                "key".to_owned()
            ),
            (
                "fixtures/gateway/litellm_spendlogs.csv".to_owned(),
                gw_bad_line.to_string(),
                "completion_tokens".to_owned()
            ),
        ]
    );
    assert!(
        run.stdout
            .contains("read 116 = accepted 112 + duplicates 1 + rejected 3"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("NOT IN REGISTRY"));
}

/// The LiteLLM fixture's rows by line: (model_group, startTime, prompt,
/// cached, completion), read straight from the file, not through Tally.
fn litellm_fixture_rows() -> std::collections::HashMap<u64, (String, String, i64, i64, i64)> {
    // The fixture has CRLF line ends, on which the csv crate misnumbers
    // lines (BurntSushi/rust-csv#395).
    let text = std::fs::read_to_string(root().join("fixtures/gateway/litellm_spendlogs.csv"))
        .unwrap()
        .replace("\r\n", "\n");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h = r.headers().unwrap().clone();
    let i = |c: &str| h.iter().position(|x| x == c).unwrap();
    r.records()
        .map(Result::unwrap)
        .map(|rec| {
            let n = |c: &str| rec[i(c)].parse::<i64>().unwrap_or(0);
            let meta: Value = serde_json::from_str(&rec[i("metadata")]).unwrap_or(Value::Null);
            let cached = meta["usage_object"]["prompt_tokens_details"]["cached_tokens"]
                .as_i64()
                .unwrap_or(0);
            let line = rec.position().unwrap().line();
            let row = (
                rec[i("model_group")].to_owned(),
                rec[i("startTime")].to_owned(),
                n("prompt_tokens"),
                cached,
                n("completion_tokens"),
            );
            (line, row)
        })
        .collect()
}

#[test]
fn a_price_change_mid_day_prices_each_row_by_its_own_time() {
    let run = run_fixtures();
    let h = run.header("matches.csv");
    let i = |c: &str| h.iter().position(|x| x == c).unwrap();
    let gateway = litellm_fixture_rows();
    let mut before = 0;
    let mut after = 0;
    for r in run.csv("matches.csv") {
        if &r[i("class")] != "matched" || !r[i("gateway_file")].ends_with("litellm_spendlogs.csv") {
            continue;
        }
        let line: u64 = r[i("gateway_line")].parse().unwrap();
        let (model, start, input, cached, output) = &gateway[&line];
        if model != "gpt-4o" {
            continue;
        }
        let noon = start.as_str() >= "2026-11-20 12:00:00";
        // USD per million: 2.50/1.25/10 before noon, 2.00/1.00/8 after.
        let (pi, pc, po) = if noon {
            (200, 100, 800)
        } else {
            (250, 125, 1000)
        };
        let want = rust_decimal::Decimal::new((input - cached) * pi + cached * pc + output * po, 8);
        let got: rust_decimal::Decimal = r[i("computed_cost")].parse().unwrap();
        assert_eq!(got, want.normalize(), "{:?}", r);
        if noon { after += 1 } else { before += 1 }
    }
    assert!(before > 3 && after > 3, "{before} {after}");
}

#[test]
fn raw_keys_never_reach_any_output() {
    let run = run_fixtures();
    let secrets: Vec<String> = std::fs::read_to_string(root().join("fixtures/client/app.jsonl"))
        .unwrap()
        .split('"')
        .filter(|s| s.starts_with("sk-proj-"))
        .map(str::to_owned)
        .collect();
    assert!(!secrets.is_empty(), "the fixture logs raw keys on purpose");
    for entry in std::fs::read_dir(run.dir.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for s in &secrets {
            assert!(!text.contains(s.as_str()));
            // Nor a long prefix of one.
            assert!(!text.contains(&s[..20]));
        }
    }
    assert!(!secrets.iter().any(|s| run.stdout.contains(&s[..20])));
}

/// Every report file but matches.csv.
const OTHER_REPORT_FILES: [&str; 7] = [
    "missing_usage.csv",
    "unattributed.csv",
    "failed_calls.csv",
    "discrepancies.csv",
    "costs_by_owner.csv",
    "rejects.csv",
    "report.json",
];

/// Asserts that two report directories hold the same bytes in these files.
fn assert_same_files(a: &Path, b: &Path, names: &[&str]) {
    for name in names {
        let x = std::fs::read_to_string(a.join(name)).unwrap();
        let y = std::fs::read_to_string(b.join(name)).unwrap();
        assert_eq!(x, y, "{name} differs");
    }
}

/// Runs `tally reconcile` on one client log and one gateway export into
/// `out`, and asserts it succeeded.
fn reconcile_ok(extra: &[&str], client: &Path, gateway: &Path, out: &Path) {
    succeed(
        tally()
            .arg("reconcile")
            .args(extra)
            .arg("--client")
            .arg(client)
            .arg("--gateway")
            .arg(gateway)
            .arg("--out")
            .arg(out),
        "reconcile",
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn exports_are_safe_in_spreadsheets_and_pages_escape_everything() {
    let dir = tempfile::tempdir().unwrap();
    let client = write(
        dir.path(),
        "c.jsonl",
        concat!(
            r#"{"ts":"2026-11-20T10:00:00Z","key":"=HYPERLINK(\"http://x\")","model":"+cmd|' /C calc'!A0","route":"chat","team":"<script>alert(1)</script>","service":"@SUM(1)","env":"-2+3","request_id":"r1","usage":{"prompt_tokens":10,"completion_tokens":5}}"#,
            "\n"
        ),
    );
    let gateway = write(
        dir.path(),
        "g.csv",
        "request_id,api_key,spend,startTime,model,call_type,prompt_tokens,completion_tokens\nother,k,0.1,2026-11-20 10:00:00,m,acompletion,1,1\n",
    );
    let out = dir.path().join("out");
    reconcile_ok(&[], &client, &gateway, &out);
    let missing = std::fs::read_to_string(out.join("missing_usage.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(missing.as_bytes());
    let rec = rdr.records().next().unwrap().unwrap();
    let h = rdr.headers().unwrap().clone();
    let get = |c: &str| rec[h.iter().position(|x| x == c).unwrap()].to_owned();
    assert_eq!(get("key"), "'=HYPERLINK(\"http://x\")");
    assert_eq!(get("model"), "'+cmd|' /C calc'!A0");
    assert!(
        get("owner").starts_with("<script>"),
        "owner cell is not a formula: {}",
        get("owner")
    );
    // No cell of any export starts with a formula character.
    for name in [
        "missing_usage.csv",
        "unattributed.csv",
        "discrepancies.csv",
        "costs_by_owner.csv",
        "matches.csv",
    ] {
        let mut r = csv::Reader::from_path(out.join(name)).unwrap();
        for rec in r.records() {
            for cell in rec.unwrap().iter() {
                let numeric = cell.parse::<f64>().is_ok();
                assert!(
                    numeric || !cell.starts_with(['=', '+', '-', '@']),
                    "{name}: {cell}"
                );
            }
        }
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
}

#[test]
fn bad_inputs_stop_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let good_client = write(
        dir.path(),
        "c.jsonl",
        r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"m","route":"chat"}"#,
    );
    let mystery = write(dir.path(), "mystery.csv", "a,b,c\n1,2,3\n");
    let bad_map = write(
        dir.path(),
        "map.toml",
        "name = 'x'\nformat = 'csv'\n[fields]\nkey = 'k'\n",
    );
    // Each case: client log, gateway export, extra flags, what the message must say.
    let (client, gateway) = (
        good_client.display().to_string(),
        mystery.display().to_string(),
    );
    let map = bad_map.display().to_string();
    let cases: Vec<(&str, &str, Vec<&str>, &str)> = vec![
        ("nope.jsonl", &gateway, vec![], "nope.jsonl"),
        (
            &client,
            &gateway,
            vec![],
            "mystery.csv: unrecognised format",
        ),
        (
            &client,
            &gateway,
            vec!["--source", &map],
            "`timestamp` is required",
        ),
        (
            &client,
            &gateway,
            vec!["--source", "nosuch"],
            "unknown --source `nosuch`",
        ),
        (&client, &gateway, vec!["--tolerance", "2"], "--tolerance"),
    ];
    for (c, g, extra, needle) in cases {
        let args: Vec<&str> = [vec!["reconcile", "--client", c, "--gateway", g], extra].concat();
        let out = tally().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn strict_makes_any_reject_fatal() {
    let out = tally().args(FIXTURE_ARGS).arg("--strict").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4 rejected row(s)")
            && err.contains("fixtures/client/app.jsonl:6: field `ts`"),
        "{err}"
    );
}

#[test]
fn json_format_prints_the_summary() {
    let out = succeed(
        tally().args(FIXTURE_ARGS).args(["--format", "json"]),
        "json summary",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["generated_at"], "2026-11-21T06:00:00.000Z");
    assert_eq!(v["currency"], "USD");
}

#[test]
fn every_builtin_mapping_profile_reads_its_sample() {
    // One sample export per shipped profile, each detected from its shape.
    for (file, source, rows) in [
        ("fixtures/gateway/samples/portkey.jsonl", "portkey", 2),
        ("fixtures/gateway/samples/helicone.jsonl", "helicone", 2),
        ("fixtures/gateway/samples/cloudflare.json", "cloudflare", 2),
        ("fixtures/gateway/samples/flatkey.csv", "flatkey", 2),
        (
            "fixtures/gateway/samples/litellm_spend_logs.json",
            "litellm-json",
            2,
        ),
    ] {
        let out = succeed(
            tally().args([
                "reconcile",
                "--client",
                "fixtures/gateway/samples/client.jsonl",
                "--gateway",
                file,
                "--keys",
                "fixtures/keys.toml",
                "--prices",
                "fixtures/prices.toml",
                "--format",
                "json",
            ]),
            file,
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let input = &v["inputs"][1];
        assert_eq!(input["format"], source, "{file}");
        assert_eq!(input["read"], rows, "{file}");
        assert_eq!(input["rejected"], 0, "{file}");
        // Each sample holds one request the client also logged, and one it did not.
        let classes = class_counts(&v);
        let matched: u64 = classes
            .iter()
            .filter(|c| {
                [
                    "matched",
                    "token_mismatch",
                    "model_mismatch",
                    "cost_variance",
                ]
                .contains(&c.0.as_str())
            })
            .map(|c| c.2)
            .sum();
        assert_eq!(matched, 1, "{file}: {classes:?}");
    }
}

#[test]
fn parsing_files_in_parts_changes_nothing() {
    // Force every file (CSV and JSON Lines, with rejects on both sides of
    // the cut) to be split, and compare every output with a whole-file run.
    let whole = run_fixtures();
    let parts = run_fixtures_with(&["--split-min-bytes", "1"]);
    assert_same_files(whole.dir.path(), parts.dir.path(), &["matches.csv"]);
    assert_same_files(whole.dir.path(), parts.dir.path(), &OTHER_REPORT_FILES);
}

#[test]
fn no_matches_skips_only_the_per_pair_file() {
    let whole = run_fixtures();
    let skipped = run_fixtures_with(&["--no-matches"]);
    assert!(!skipped.dir.path().join("matches.csv").exists());
    assert_same_files(whole.dir.path(), skipped.dir.path(), &OTHER_REPORT_FILES);
    // Without --out there is nothing to skip: a usage error, not a silent no-op.
    let out = tally()
        .args(FIXTURE_ARGS)
        .arg("--no-matches")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn gateway_only_traffic_on_a_registered_key_goes_to_its_owner() {
    // No client row names the key's owner: the registry alone must.
    let dir = tempfile::tempdir().unwrap();
    let client = write(
        dir.path(),
        "c.jsonl",
        r#"{"ts":"2026-11-20T10:00:00Z","key":"other","model":"gpt-4o","route":"chat","request_id":"x"}"#,
    );
    let gateway = write(
        dir.path(),
        "g.csv",
        "request_id,api_key,spend,startTime,model,call_type,prompt_tokens,completion_tokens\nrogue-1,support-bot-prod,0.1,2026-11-20 11:00:00,gpt-4o,acompletion,10,10\n",
    );
    let out = dir.path().join("out");
    reconcile_ok(&["--keys", "fixtures/keys.toml"], &client, &gateway, &out);
    let mut r = csv::Reader::from_path(out.join("unattributed.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let rec = r.records().next().unwrap().unwrap();
    let get = |c: &str| rec[h.iter().position(|x| x == c).unwrap()].to_owned();
    assert_eq!(get("key"), "key_support_prod");
    assert_eq!(get("key_registered"), "true");
    assert_eq!(get("owner"), "support/support-bot/prod");
}

#[test]
fn a_cut_inside_a_quoted_field_is_read_again_whole() {
    // Pretty-printed metadata: most newlines of the file sit inside quotes,
    // so the speculative cut half way lands in one, and the file must be
    // parsed again whole, with the same rows, lines and rejects.
    let dir = tempfile::tempdir().unwrap();
    let mut g = String::from(
        "request_id,call_type,api_key,spend,prompt_tokens,completion_tokens,startTime,model,metadata\n",
    );
    let mut c = String::new();
    for i in 0..300 {
        let meta = format!(
            "\"{{\n  \"\"usage_object\"\": {{\n    \"\"prompt_tokens_details\"\": {{\n      \"\"cached_tokens\"\": {}\n    }}\n  }}\n}}\"",
            i % 5
        );
        let tokens = if i == 150 { "x" } else { "10" };
        g.push_str(&format!(
            "r{i},acompletion,key_support_prod,0.001,{tokens},5,2026-11-20 10:{:02}:{:02},gpt-4o,{meta}\n",
            i / 60,
            i % 60
        ));
        if i % 3 != 0 {
            c.push_str(&format!(
                "{{\"ts\":\"2026-11-20T10:{:02}:{:02}Z\",\"key\":\"key_support_prod\",\"model\":\"gpt-4o\",\"route\":\"chat\",\"request_id\":\"r{i}\",\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":5}}}}\n",
                i / 60,
                i % 60
            ));
        }
    }
    // The cut the planner tries: the first newline past half the body.
    let hlen = g.find('\n').unwrap() + 1;
    let target = hlen + (g.len() - hlen) / 2;
    let cut = target + g[target..].find('\n').unwrap();
    assert_eq!(
        g[..cut].matches('"').count() % 2,
        1,
        "the cut must fall in quotes"
    );
    let client = write(dir.path(), "c.jsonl", &c);
    let gateway = write(dir.path(), "g.csv", &g);
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    let args = [
        "--keys",
        "fixtures/keys.toml",
        "--now",
        "2026-11-22T00:00:00Z",
    ];
    reconcile_ok(&args, &client, &gateway, &whole);
    reconcile_ok(
        &[&args[..], &["--split-min-bytes", "1"]].concat(),
        &client,
        &gateway,
        &parts,
    );
    assert_same_files(&whole, &parts, &["matches.csv"]);
    assert_same_files(&whole, &parts, &OTHER_REPORT_FILES);
    let rejects = std::fs::read_to_string(whole.join("rejects.csv")).unwrap();
    assert!(
        rejects.contains(&format!("g.csv,{},", 2 + 150 * 7)),
        "{rejects}"
    );
}

/// Issue 16: ESC, BEL, CR and LF in names were printed raw by the summary
/// (a model name could clear the screen or forge lines); and a multibyte
/// model name panicked every run.
#[test]
fn names_from_inputs_cannot_drive_the_terminal_or_panic_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let client = write(
        dir.path(),
        "c.jsonl",
        concat!(
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"gé-4o-mini-a","route":"chat","team":"t\u001b[2J\u0007","request_id":"r1","usage":{"prompt_tokens":10,"completion_tokens":5}}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:01Z","key":"k","model":"m\r\nFAKE LINE","route":"chat","team":"t","request_id":"r2","usage":{"prompt_tokens":10,"completion_tokens":5}}"#,
            "\n"
        ),
    );
    let gateway = write(
        dir.path(),
        "g.csv",
        "request_id,api_key,spend,startTime,model,call_type,prompt_tokens,completion_tokens\nr1,k,0.1,2026-11-20 10:00:00,gé-4o-mini-a,acompletion,10,5\n",
    );
    let out = succeed(
        tally()
            .arg("reconcile")
            .arg("--client")
            .arg(&client)
            .arg("--gateway")
            .arg(&gateway)
            .arg("--now=2026-11-21T06:00:00Z"),
        "reconcile",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'),
        "{text:?}"
    );
    assert!(!text.lines().any(|l| l.starts_with("FAKE LINE")), "{text}");
    assert!(
        text.contains("gé-4o-mini-a") || text.contains("gé-4o-mini"),
        "{text}"
    );
}

/// Issue 17 (money read exactly once): LiteLLM keeps `spend` as a double,
/// and psql exports `0.015677000000000001` for $0.015677. Read as written,
/// the report showed a variance of float noise; rounded to the nano-dollar
/// when read, a row priced at exactly that amount has none.
#[test]
fn float_noise_in_reported_costs_is_no_variance() {
    let dir = tempfile::tempdir().unwrap();
    let client = write(
        dir.path(),
        "c.jsonl",
        concat!(
            r#"{"ts":"2026-11-20T10:00:00Z","key":"k","model":"gpt-4o","route":"chat","request_id":"r1","usage":{"prompt_tokens":1000,"completion_tokens":1000}}"#,
            "\n",
            r#"{"ts":"2026-11-20T10:00:05Z","key":"k","model":"gpt-4o","route":"chat","request_id":"r2","usage":{"prompt_tokens":1000,"completion_tokens":1000}}"#,
            "\n"
        ),
    );
    let gateway = write(
        dir.path(),
        "g.csv",
        "request_id,api_key,spend,startTime,model,call_type,prompt_tokens,completion_tokens\n\
         r1,k,0.015677000000000001,2026-11-20 10:00:00,gpt-4o,acompletion,1000,1000\n\
         r2,k,0.015677000000000002,2026-11-20 10:00:05,gpt-4o,acompletion,1000,1000\n",
    );
    let prices = write(
        dir.path(),
        "p.toml",
        "[[price]]\nmodel = \"gpt-4o\"\neffective_from = \"2026-01-01\"\ninput = \"5\"\noutput = \"10.677\"\n",
    );
    let out = succeed(
        tally()
            .arg("reconcile")
            .arg("--client")
            .arg(&client)
            .arg("--gateway")
            .arg(&gateway)
            .arg("--prices")
            .arg(&prices)
            .args(["--now=2026-11-21T06:00:00Z", "--format", "json"]),
        "reconcile",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dec = |x: &Value| {
        x.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert_eq!(
        dec(&v["totals"]["variance"]),
        rust_decimal::Decimal::ZERO,
        "{}",
        v["totals"]
    );
    assert_eq!(dec(&v["totals"]["billed_reported"]).to_string(), "0.031354");
}

/// `fixtures/faults.txt` is the oracle: every finding of the report (each
/// one-sided row, each disagreeing pair, duplicate and unpriced row, each
/// reject) is one of its lines, and every line is found. A new false alarm
/// or a lost fault fails here, whichever file it shows in.
#[test]
fn the_fixture_days_findings_are_exactly_its_fault_list() {
    use std::collections::{BTreeMap, BTreeSet};
    let run = run_fixtures();
    let faults = std::fs::read_to_string(root().join("fixtures/faults.txt")).unwrap();
    let is_id = |t: &str| {
        ["chatcmpl-", "resp_", "msg_", "gen-"]
            .iter()
            .any(|p| t.starts_with(p))
            || (t.len() == 36 && t.matches('-').count() == 4)
    };
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for line in faults.lines().filter(|l| !l.trim().is_empty()) {
        let (class, rest) = line.split_once(':').unwrap();
        if class == "rejected" {
            // `client/app.jsonl lines 6 (ts), 41 (...); gateway/x.csv line 2 (...)`
            for part in rest.split(';') {
                let mut words = part.split_whitespace();
                let file = words.next().unwrap();
                for w in words.skip(1) {
                    if let Ok(n) = w.trim_end_matches(',').parse::<u64>() {
                        want.insert(("rejected".into(), format!("fixtures/{file}:{n}")));
                    }
                }
            }
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let ident = words
            .iter()
            .find(|w| is_id(w))
            .map(|w| (*w).to_owned())
            .or_else(|| {
                let at = words.iter().position(|w| *w == "at")?;
                words.get(at + 1).map(|w| (*w).to_owned())
            })
            .unwrap_or_else(|| panic!("no id or time in `{line}`"));
        want.insert((class.to_owned(), ident));
    }
    let rows = |name: &str| -> Vec<BTreeMap<String, String>> {
        let h = run.header(name);
        run.csv(name)
            .iter()
            .map(|r| {
                h.iter()
                    .map(str::to_owned)
                    .zip(r.iter().map(str::to_owned))
                    .collect()
            })
            .collect()
    };
    // Gateway rows' ids by file and line, from the pairs.
    let gateway_id: BTreeMap<(String, String), String> = rows("matches.csv")
        .into_iter()
        .map(|r| {
            (
                (r["gateway_file"].clone(), r["gateway_line"].clone()),
                r["gateway_id"].clone(),
            )
        })
        .collect();
    let mut got: BTreeSet<(String, String)> = BTreeSet::new();
    for r in rows("missing_usage.csv") {
        let id = if r["id2"].is_empty() {
            &r["id"]
        } else {
            &r["id2"]
        };
        got.insert(("missing_usage".into(), id.clone()));
    }
    for r in rows("unattributed.csv") {
        got.insert(("unattributed".into(), r["id"].clone()));
    }
    for r in rows("discrepancies.csv") {
        let kind = r["kind"].clone();
        let ident = if kind == "duplicate" {
            r["detail"].split('`').nth(1).unwrap().to_owned()
        } else {
            // A fault names its row by the gateway's id, or by its time
            // when the client logged none.
            let id = gateway_id
                .get(&(r["gateway_file"].clone(), r["gateway_line"].clone()))
                .cloned()
                .unwrap_or_default();
            if want.contains(&(kind.clone(), id.clone())) {
                id
            } else {
                r["ts"].clone()
            }
        };
        got.insert((kind, ident));
    }
    for r in rows("rejects.csv") {
        got.insert(("rejected".into(), format!("{}:{}", r["file"], r["line"])));
    }
    let missed: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "faults not found: {missed:?}\nfindings not in faults.txt: {extra:?}"
    );
}

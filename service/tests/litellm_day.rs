//! The real-shaped LiteLLM day (`fixtures/litellm_day`, written by its
//! `make.py` from what a LiteLLM 1.80 proxy and its application really
//! write): the app's own log read through a mapping file, the registry from
//! the proxy's key and team tables, prices from LiteLLM's price map. Every
//! injected fault must be found, nothing else, every true pair made and
//! none wrong, and the cost per owner must be the gateway's to the
//! nano-dollar.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

#[expect(dead_code, reason = "the store helpers of the shared test support")]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{succeed, tally};
use rust_decimal::Decimal;

const DAY: &str = "fixtures/litellm_day";

fn records(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            h.iter()
                .zip(rec.iter())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn run(out: &Path) -> std::process::Output {
    let f = |name: &str| format!("{DAY}/{name}");
    succeed(
        tally()
            .args(["reconcile", "--client", &f("app.jsonl")])
            .args(["--client-source", &f("app-mapping.toml")])
            .args(["--gateway", &f("spendlogs.csv")])
            .args(["--keys", &f("verification_tokens.csv")])
            .args(["--teams", &f("teams.csv")])
            .args(["--prices", &f("model_prices.json")])
            .args(["--prices-effective-from", "2026-11-01"])
            .args(["--now", "2026-11-21T00:00:00Z", "--out"])
            .arg(out),
        "reconcile the LiteLLM day",
    )
}

#[test]
fn a_real_litellm_day_is_reconciled_exactly() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path());
    let truth = records(&common::root().join(DAY).join("truth.csv"));
    let line = |r: &BTreeMap<String, String>, k: &str| r[k].parse::<u64>().ok();

    // Every row read, none rejected.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    for side in ["client", "gateway"] {
        assert_eq!(report[side]["rejected"], 0, "{side}: {}", report[side]);
    }
    assert!(records(&dir.path().join("rejects.csv")).is_empty());

    // Pairs: 100 % of the true pairs, each with its class, and no other.
    let want_pairs: BTreeSet<(u64, u64, String)> = truth
        .iter()
        .filter_map(|r| {
            Some((
                line(r, "client_line")?,
                line(r, "gateway_line")?,
                r["class"].clone(),
            ))
        })
        .collect();
    let got_pairs: BTreeSet<(u64, u64, String)> = records(&dir.path().join("matches.csv"))
        .iter()
        .map(|r| {
            (
                line(r, "client_line").unwrap(),
                line(r, "gateway_line").unwrap(),
                r["class"].clone(),
            )
        })
        .collect();
    let missed: Vec<_> = want_pairs.difference(&got_pairs).collect();
    let wrong: Vec<_> = got_pairs.difference(&want_pairs).collect();
    assert!(
        missed.is_empty() && wrong.is_empty(),
        "missed {missed:?}, wrong {wrong:?}"
    );
    assert!(want_pairs.len() > 170, "{}", want_pairs.len());

    // One-sided rows: exactly the injected ones, in the right list.
    let one_sided = |file: &str, side: &str| -> BTreeSet<u64> {
        records(&dir.path().join(file))
            .iter()
            .filter(|r| r["side"] == side)
            .map(|r| line(r, "line").unwrap())
            .collect()
    };
    // Rows of one side only have no partner line in the truth.
    let only = |class: &str, side: &str| -> BTreeSet<u64> {
        let other = if side == "client" {
            "gateway"
        } else {
            "client"
        };
        truth
            .iter()
            .filter(|r| r["class"] == class && r[&format!("{other}_line")].is_empty())
            .filter_map(|r| line(r, &format!("{side}_line")))
            .collect()
    };
    assert_eq!(
        one_sided("missing_usage.csv", "client"),
        only("missing_usage", "client")
    );
    assert_eq!(
        one_sided("unattributed.csv", "gateway"),
        only("unattributed", "gateway")
    );
    assert_eq!(
        one_sided("failed_calls.csv", "client"),
        only("failed_unbilled", "client")
    );
    assert_eq!(
        one_sided("failed_calls.csv", "gateway"),
        only("failed_unbilled", "gateway")
    );
    assert_eq!(only("missing_usage", "client").len(), 8);
    assert_eq!(only("unattributed", "gateway").len(), 9);

    // The probing key is named, by count, though it billed nothing.
    let probing = report["failed_on_unregistered_keys"].as_array().unwrap();
    assert_eq!(probing.len(), 1);
    assert_eq!(probing[0]["rows"], 4);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let key = probing[0]["key"].as_str().unwrap();
    assert!(
        html.contains("Failed calls on keys in no registry") && html.contains(key),
        "the page names the probing key"
    );

    // Nothing priced by a guess: every gateway model by its exact name, no
    // unpriced row (failures cost nothing, at any price).
    assert_eq!(report["price_fallbacks"].as_array().unwrap().len(), 0);
    assert_eq!(report["unpriced_models"].as_array().unwrap().len(), 0);

    // Cost per owner: the gateway's spend, summed independently, to the
    // nano-dollar; and Tally's own price agrees within the tolerance.
    let want: BTreeMap<String, Decimal> =
        records(&common::root().join(DAY).join("expected_costs.csv"))
            .iter()
            .map(|r| (r["owner"].clone(), r["reported_cost"].parse().unwrap()))
            .collect();
    let got: BTreeMap<String, Decimal> = records(&dir.path().join("costs_by_owner.csv"))
        .iter()
        .map(|r| (r["owner"].clone(), r["reported_cost"].parse().unwrap()))
        .collect();
    assert_eq!(got, want);
    for r in records(&dir.path().join("costs_by_owner.csv")) {
        let v: Decimal = r["variance"].parse().unwrap();
        assert!(v.abs() < Decimal::new(1, 6), "{r:?}");
    }
}

#[test]
fn the_same_log_without_its_mapping_fails_and_says_what_it_has() {
    // Read as Tally's own format, every line is refused: the command fails
    // (it must not report every call as missing) and names the look-alikes.
    let out = tally()
        .args(["reconcile", "--client", &format!("{DAY}/app.jsonl")])
        .args(["--gateway", &format!("{DAY}/spendlogs.csv")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "every row of `fixtures/litellm_day/app.jsonl` was rejected (189 of 189)",
        "`start_time` (Tally reads `ts`)",
        "`api_key_alias` (Tally reads `key`)",
        "`requested_model` (Tally reads `model`)",
        "`endpoint` (Tally reads `route`)",
        "--client-source",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
}

#[test]
fn ingest_refuses_an_unreadable_log_whole_then_takes_it_with_its_mapping() {
    // Refused whole: nothing stored, so the same bytes are not "already
    // ingested" when they come back with their mapping.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("t.db");
    let log = format!("{DAY}/app.jsonl");
    let out = tally()
        .args(["ingest", "client", &log, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was rejected (189 of 189)"), "{err}");
    let out = succeed(
        tally()
            .args(["ingest", "client", &log])
            .args([
                "--client-source",
                &format!("{DAY}/app-mapping.toml"),
                "--db",
            ])
            .arg(&db),
        "ingest with the mapping",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("189 read = 189 new + 0 duplicate + 0 rejected (support-app-log;"),
        "{text}"
    );
}

#[test]
fn otlp_spans_are_detected_and_reconciled_by_their_owners_key() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys.toml");
    std::fs::write(
        &keys,
        "[[key]]\nid = \"search-prod\"\nsha256 = [\"a740b5da0cf24cfb7244ce173656de06ca6149289e496954b8f177b877af2491\"]\nservice = \"search-api\"\nenv = \"prod\"\n",
    )
    .unwrap();
    let gateway = tmp.path().join("spend.csv");
    std::fs::write(
        &gateway,
        "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status\n\
         chatcmpl-otel-1,acompletion,a740b5da0cf24cfb7244ce173656de06ca6149289e496954b8f177b877af2491,0.0003,1500,1200,300,2026-11-20 02:00:00.12,2026-11-20 02:00:01.1,gpt-4o-mini,gpt-4o-mini,{},False,success\n",
    )
    .unwrap();
    let out = succeed(
        tally()
            .args([
                "reconcile",
                "--client",
                "fixtures/client/samples/otel_spans.jsonl",
            ])
            .arg("--gateway")
            .arg(&gateway)
            .arg("--keys")
            .arg(&keys)
            .args(["--format", "json"]),
        "reconcile OTLP spans",
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["inputs"][0]["format"], "otlp");
    let class = |name: &str| {
        s["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"] == name)
            .unwrap()["client_rows"]
            .as_u64()
            .unwrap()
    };
    // The chat span pairs with the gateway row of its owner's key; the
    // 429 span is a failure the gateway never logged.
    assert_eq!(class("matched"), 1);
    assert_eq!(class("failed_unbilled"), 1);
}

//! Month-end as finance runs it, through the `tally` binary on both
//! backends: the fixture month exported as FOCUS 1.2 (checked against the
//! specification's column rules), closed, late rows for it ingested and
//! reconciled, and the closed month's bytes unchanged while the next month
//! carries the difference as correction rows.
#![expect(clippy::unwrap_used, reason = "tests: a failure is a failed test")]

mod common;
#[path = "common/fixture_day.rs"]
mod fixture_day;

use std::collections::HashMap;
use std::path::Path;

use common::{FIXTURE_ARGS, Store, run_fixture_day, stores, succeed, tally};
use fixture_day::{fixture, ingest, load_fixture_day};
use rust_decimal::Decimal;
use tally_reconcile::focus::check_csv;

/// `tally focus --period P`: the CSV (stdout) and the notice (stderr).
fn focus(s: &Store, period: &str) -> (String, String) {
    let out = succeed(
        tally().args(["focus", "--period", period, "--db", &s.url]),
        &format!("focus {period} on {}", s.backend),
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The records of a CSV as header -> value maps.
fn records(csv_text: &str) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let h: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            h.iter()
                .cloned()
                .zip(rec.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn sum(rows: &[HashMap<String, String>], col: &str) -> Decimal {
    rows.iter()
        .map(|r| r[col].parse::<Decimal>().unwrap())
        .sum::<Decimal>()
        .normalize()
}

/// What the gateway billed in the fixture files, summed straight from
/// them: LiteLLM's `spend` and OpenRouter's `cost_total`, rejected rows
/// (a token count that is no number) left out as Tally leaves them out.
fn billed_in_fixture_files() -> Decimal {
    let mut total = Decimal::ZERO;
    for (file, col) in [
        ("gateway/litellm_spendlogs.csv", "spend"),
        ("gateway/openrouter.csv", "cost_total"),
    ] {
        let text = std::fs::read_to_string(fixture(file)).unwrap();
        for r in records(&text) {
            let numeric = |c: &str| {
                r.get(c)
                    .is_none_or(|v| v.is_empty() || v.parse::<u64>().is_ok())
            };
            if !numeric("prompt_tokens") || !numeric("completion_tokens") {
                continue;
            }
            total += r[col].parse::<Decimal>().unwrap();
        }
    }
    total.normalize()
}

/// `tally reconcile` on the fixture files: its JSON totals.
fn reconciled_totals() -> serde_json::Value {
    let out = succeed(
        tally().args(FIXTURE_ARGS).args(["--format", "json"]),
        "reconcile",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["totals"].clone()
}

/// Two LiteLLM rows for the fixture day on support's key that the
/// gateway's export only had later: $0.05 each.
fn late_rows(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("late.csv");
    let key = "38421a3dd6372becf0707bb0ec1d1be405b690420957d45c1dc25a971cae0e63";
    let mut text = "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status,user,team_id,end_user,request_tags\n".to_owned();
    for i in 0..2 {
        text.push_str(&format!(
            "chatcmpl-late{i},acompletion,{key},0.05,6000,5000,1000,2026-11-20 23:0{i}:00.000,2026-11-20 23:0{i}:01.000,openai/gpt-4o,gpt-4o,{{}},False,success,,,,[]\n"
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_closed_month_keeps_its_bytes_and_late_rows_become_next_months_corrections() {
    let dir = tempfile::tempdir().unwrap();
    let late = late_rows(dir.path());
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        succeed(&mut run_fixture_day(&s.url), "run");

        // The open month: valid FOCUS 1.2, and its BilledCost is what the
        // gateway's files say, to the nano-dollar.
        let (nov, note) = focus(&s, "2026-11");
        assert_eq!(check_csv(&nov), Vec::<String>::new(), "{b}:\n{nov}");
        let rows = records(&nov);
        assert!(rows.len() > 5, "{b}: {nov}");
        assert_eq!(sum(&rows, "BilledCost"), billed_in_fixture_files(), "{b}");
        // And the same money as `tally reconcile` on the files: billed as
        // reported; listed at Tally's prices, unpriced rows as billed.
        let totals = &reconciled_totals();
        let dec = |k: &str| totals[k].as_str().unwrap().parse::<Decimal>().unwrap();
        assert_eq!(sum(&rows, "BilledCost"), dec("billed_reported"), "{b}");
        assert_eq!(
            sum(&rows, "ListCost"),
            (dec("billed_computed") + dec("unpriced_reported")).normalize(),
            "{b}"
        );
        assert!(rows.iter().all(|r| r["ChargeClass"].is_empty()), "{b}");
        assert!(note.contains("open: live figures"), "{b}: {note}");

        // Closed: the same bytes, now final.
        let out = succeed(
            tally().args(["close", "--period", "2026-11", "--db", &s.url]),
            "close",
        );
        let said = String::from_utf8(out.stdout).unwrap();
        let hash = said
            .lines()
            .find_map(|l| l.strip_prefix("sha256 "))
            .unwrap_or_else(|| panic!("{b}: {said}"))
            .to_owned();
        let (frozen, note) = focus(&s, "2026-11");
        assert_eq!(frozen, nov, "{b}: the close froze the export it showed");
        assert!(
            note.contains(&hash) && note.contains("final"),
            "{b}: {note}"
        );
        // Closing twice is refused, with what to do.
        let again = tally()
            .args(["close", "--period", "2026-11", "--db", &s.url])
            .output()
            .unwrap();
        assert!(!again.status.success(), "{b}");
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("reopen it first"),
            "{b}"
        );

        // Late rows for November arrive and are reconciled: finance hears
        // of it once, however many runs see them.
        ingest(&s, "gateway", &[&late]);
        for _ in 0..2 {
            succeed(
                run_fixture_day(&s.url).env("TALLY_ALERTS_FINANCE_CONTACT", "finance@example.com"),
                "run again",
            );
        }
        let alerts = succeed(
            tally().args(["alerts", "list", "--format", "json", "--db", &s.url]),
            "alerts list",
        );
        let alerts: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
        let corrections: Vec<&serde_json::Value> = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "period_correction")
            .collect();
        assert_eq!(corrections.len(), 1, "{b}: {alerts:#}");
        assert_eq!(
            corrections[0]["title"],
            "Closed 2026-11 changed: 2 requests arrived late, 0.1 USD billed; corrections go into 2026-12",
            "{b}"
        );
        let (still, _) = focus(&s, "2026-11");
        assert_eq!(still, nov, "{b}: a closed month never changes");

        // December carries them as corrections, valid FOCUS in its period.
        let (dec, note) = focus(&s, "2026-12");
        assert_eq!(check_csv(&dec), Vec::<String>::new(), "{b}:\n{dec}");
        let corrections: Vec<_> = records(&dec)
            .into_iter()
            .filter(|r| r["ChargeClass"] == "Correction")
            .collect();
        assert!(!corrections.is_empty(), "{b}: {dec}");
        assert_eq!(sum(&corrections, "BilledCost"), Decimal::new(10, 2), "{b}");
        assert!(
            corrections
                .iter()
                .all(|r| r["ChargePeriodStart"] == "2026-11-20T00:00:00Z"
                    && r["BillingPeriodStart"] == "2026-12-01T00:00:00Z"),
            "{b}: {dec}"
        );
        assert!(note.contains("correction(s)"), "{b}: {note}");

        // Reopening needs a reason, is kept, and the month is live again:
        // the late rows are in it and December corrects nothing.
        let no_reason = tally()
            .args(["close", "--period", "2026-11", "--reopen", "--db", &s.url])
            .output()
            .unwrap();
        assert!(!no_reason.status.success(), "{b}");
        succeed(
            tally().args([
                "close",
                "--period",
                "2026-11",
                "--reopen",
                "--reason",
                "late LiteLLM export",
                "--db",
                &s.url,
            ]),
            "reopen",
        );
        let (live, _) = focus(&s, "2026-11");
        assert_eq!(
            sum(&records(&live), "BilledCost"),
            billed_in_fixture_files() + Decimal::new(10, 2),
            "{b}"
        );
        let (dec, _) = focus(&s, "2026-12");
        assert!(!dec.contains("Correction"), "{b}: {dec}");
        let list = succeed(tally().args(["close", "--db", &s.url]), "list closes");
        let list = String::from_utf8(list.stdout).unwrap();
        assert!(
            list.contains("reopened")
                && list.contains("late LiteLLM export")
                && list.contains(&hash),
            "{b}: {list}"
        );
    }
}

#[test]
fn a_month_with_rows_no_run_judged_cannot_close() {
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        let out = tally()
            .args(["close", "--period", "2026-11", "--db", &s.url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{b}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("never reconciled")
                && err.contains("tally run --from 2026-11-20 --to 2026-11-21"),
            "{b}: {err}"
        );
        // And a month not over yet cannot either.
        let out = tally()
            .args(["close", "--period", "2099-01", "--db", &s.url])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not over"),
            "{b}"
        );
    }
}

/// The fixture catalog as it stands at `as_of`: each model's entry in force
/// then, applying from the start of the year.
fn catalog_as_of(as_of: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixture("prices.toml")).unwrap();
    let v: toml::Table = toml::from_str(&text).unwrap();
    let mut latest: std::collections::BTreeMap<String, toml::Table> = Default::default();
    for p in v["price"].as_array().unwrap() {
        let p = p.as_table().unwrap();
        let from = p["effective_from"].as_str().unwrap();
        if from > as_of {
            continue;
        }
        let model = p["model"].as_str().unwrap().to_owned();
        let newer = latest
            .get(&model)
            .is_none_or(|q| q["effective_from"].as_str().unwrap() < from);
        if newer {
            latest.insert(model, p.clone());
        }
    }
    let mut out = String::from("currency = \"USD\"\n");
    for mut p in latest.into_values() {
        p.insert(
            "effective_from".to_owned(),
            toml::Value::String("2026-01-01T00:00:00Z".to_owned()),
        );
        out.push_str("\n[[price]]\n");
        out.push_str(&toml::to_string(&p).unwrap());
    }
    let path = dir.join("as_of.toml");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn a_repriced_month_equals_reconciling_its_files_at_the_later_prices() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture catalog cuts gpt-4o's price at noon on the fixture day:
    // every gpt-4o row before it costs less as of December.
    let later = catalog_as_of("2026-12-01T00:00:00Z", dir.path());
    let mut args: Vec<String> = FIXTURE_ARGS.iter().map(|s| (*s).to_owned()).collect();
    let at = args.iter().position(|a| a == "--prices").unwrap();
    args[at + 1] = later.display().to_string();
    let out = succeed(tally().args(&args).args(["--format", "json"]), "reconcile");
    let independent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let owner_of = |o: &serde_json::Value| {
        let parts: Vec<&str> = ["team", "service", "env"]
            .iter()
            .map(|k| o[*k].as_str().unwrap())
            .filter(|s| !s.is_empty())
            .collect();
        if parts.is_empty() {
            "(none)".to_owned()
        } else {
            parts.join("/")
        }
    };
    let dec = |v: &serde_json::Value| v.as_str().unwrap().parse::<Decimal>().unwrap().normalize();
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        succeed(&mut run_fixture_day(&s.url), "run");
        let out = succeed(
            tally().args([
                "reprice",
                "--period",
                "2026-11",
                "--as-of",
                "2026-12-01",
                "--format",
                "json",
                "--db",
                &s.url,
            ]),
            "reprice",
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Per owner and in total, to the nano-dollar.
        for o in independent["costs_by_owner"].as_array().unwrap() {
            let name = owner_of(o);
            let line = r["by_owner"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["group"] == name.as_str())
                .unwrap_or_else(|| panic!("{b}: no {name} in {r:#}"));
            assert_eq!(dec(&line["as_of"]), dec(&o["computed_cost"]), "{b}: {name}");
            assert_eq!(line["rows"], o["billed_rows"], "{b}: {name}");
        }
        assert_eq!(
            dec(&r["total"]["as_of"]),
            dec(&independent["totals"]["billed_computed"]),
            "{b}"
        );
        // The change is all gpt-4o's, and it is a saving.
        let models = r["by_model"].as_array().unwrap();
        assert_eq!(models[0]["group"], "gpt-4o", "{b}: {r:#}");
        assert!(dec(&models[0]["diff"]) < Decimal::ZERO, "{b}");
        assert!(
            models.iter().skip(1).all(|m| dec(&m["diff"]).is_zero()),
            "{b}: {r:#}"
        );
        assert_eq!(dec(&r["total"]["diff"]), dec(&models[0]["diff"]), "{b}");
    }
}

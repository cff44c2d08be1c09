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

/// Rows of a Parquet FOCUS file, and its BilledCost summed from the typed
/// column (DECIMAL(18,9) in 64-bit integers).
fn parquet_rows_and_billed(path: &Path) -> (usize, Decimal) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut n = 0;
    let mut billed = Decimal::ZERO;
    for row in r.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        n += 1;
        for (name, field) in row.get_column_iter() {
            if name == "BilledCost"
                && let Field::Decimal(d) = field
            {
                let bytes: [u8; 8] = d.data().try_into().unwrap();
                billed += Decimal::new(i64::from_be_bytes(bytes), 9);
            }
        }
    }
    (n, billed.normalize())
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
        // Parquet of the closed month: the same rows and money, typed.
        let pq = tempfile::NamedTempFile::new().unwrap();
        succeed(
            tally()
                .args([
                    "focus", "--period", "2026-11", "--format", "parquet", "--db", &s.url, "--out",
                ])
                .arg(pq.path()),
            "focus parquet",
        );
        let (n, billed) = parquet_rows_and_billed(pq.path());
        assert_eq!(n, rows.len(), "{b}");
        assert_eq!(billed, sum(&rows, "BilledCost"), "{b}");
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
        // Under the contract in force at the date (15 % off gpt-* models),
        // gpt rows cost 85 % of list and the rest list.
        succeed(
            tally()
                .args(["contracts", "import", "--db", &s.url])
                .arg(fixture("contracts.toml")),
            "contracts import",
        );
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
            "reprice with contracts",
        );
        let rc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for m in rc["by_model"].as_array().unwrap() {
            let share = if m["group"].as_str().unwrap().starts_with("gpt-") {
                Decimal::new(85, 2)
            } else {
                Decimal::ONE
            };
            assert_eq!(
                dec(&m["contracted"]),
                (dec(&m["as_of"]) * share).normalize(),
                "{b}: {m}"
            );
        }
        // FOCUS: ContractedCost is list less the contract (to the
        // nano-dollar), named beside it; Parquet takes it as it is.
        let pq = tempfile::NamedTempFile::new().unwrap();
        succeed(
            tally()
                .args([
                    "focus", "--period", "2026-11", "--format", "parquet", "--db", &s.url, "--out",
                ])
                .arg(pq.path()),
            "focus parquet with contracts",
        );
        let (nov, _) = focus(&s, "2026-11");
        assert_eq!(check_csv(&nov), Vec::<String>::new(), "{b}");
        for r in records(&nov) {
            let list: Decimal = r["ListCost"].parse().unwrap();
            let contracted: Decimal = r["ContractedCost"].parse().unwrap();
            if r["x_ModelFamily"].starts_with("gpt-") {
                assert_eq!(r["x_TallyContract"], "OpenAI enterprise 2026", "{b}");
                assert_eq!(
                    contracted,
                    (list * Decimal::new(85, 2)).round_dp_with_strategy(
                        9,
                        rust_decimal::RoundingStrategy::MidpointNearestEven
                    ),
                    "{b}"
                );
            } else {
                assert_eq!(
                    (contracted, r["x_TallyContract"].as_str()),
                    (list, ""),
                    "{b}"
                );
            }
        }
        // A committed-spend tier: past $0.10 of gpt list spend in the
        // month, 50 % off instead. Over the month the contracted total is
        // 85 % of the first $0.10 and half of the rest, whatever the order.
        let tiered = std::fs::read_to_string(fixture("contracts.toml")).unwrap()
            + "\n[[contract.tier]]\nfrom_spend = \"0.10\"\ndiscount = \"50%\"\n";
        let tiered_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tiered_file.path(), tiered).unwrap();
        succeed(
            tally()
                .args(["contracts", "import", "--db", &s.url])
                .arg(tiered_file.path()),
            "contracts import (tiered)",
        );
        let (nov, _) = focus(&s, "2026-11");
        assert_eq!(check_csv(&nov), Vec::<String>::new(), "{b}");
        let gpt: Vec<_> = records(&nov)
            .into_iter()
            .filter(|r| r["x_ModelFamily"].starts_with("gpt-"))
            .collect();
        let list = sum(&gpt, "ListCost");
        let limit = Decimal::new(10, 2);
        let want = list
            - Decimal::new(15, 2) * list.min(limit)
            - Decimal::new(5, 1) * (list - limit).max(Decimal::ZERO);
        assert!(list > limit, "{b}: the fixture crosses the tier");
        assert_eq!(sum(&gpt, "ContractedCost"), want.normalize(), "{b}");
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

// The provider tie-out as finance runs it: two days of traffic through a
// LiteLLM proxy (OpenAI and Anthropic models) and OpenRouter, the
// providers' own report pages built from that traffic in their documented
// shapes (OpenAI Usage API in two pages and Costs API, Anthropic usage and
// cost reports with cache reads and 5 min / 1 h cache writes, OpenRouter
// activity), and a gateway export with gaps injected: rows the providers
// served that the gateway never logged, and a model the gateway billed
// below the provider's charge. Every gap must show in its bucket with its
// amount, and nothing else.
mod tie_out {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::common::{stores, succeed, tally};
    use super::fixture_day::ingest;
    use rust_decimal::Decimal;

    const DAY1: i64 = 1_795_132_800; // 2026-11-20T00:00:00Z, unix seconds
    const DAY: i64 = 86_400;

    /// One call as the provider served it.
    #[derive(Clone)]
    struct Call {
        provider: &'static str,
        day: i64,
        at_s: i64,
        /// The provider's dated model name.
        snapshot: &'static str,
        uncached: u64,
        cache_read: u64,
        cache_5m: u64,
        cache_1h: u64,
        output: u64,
        /// What the provider charged, USD.
        cost: Decimal,
        /// What the gateway logged as billed (`None`: the gateway lost the row).
        gateway_cost: Option<Decimal>,
    }

    impl Call {
        fn input(&self) -> u64 {
            self.uncached + self.cache_read + self.cache_5m + self.cache_1h
        }
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// Two days of traffic with the gaps the test injects.
    fn traffic() -> Vec<Call> {
        let mut calls = Vec::new();
        let mut n = 0;
        let mut add = |provider,
                       day,
                       snapshot,
                       uncached,
                       cache_read,
                       cache_5m,
                       cache_1h,
                       output,
                       cost: &str| {
            n += 1;
            calls.push(Call {
                provider,
                day,
                at_s: DAY1 + day * DAY + 3600 + n * 60,
                snapshot,
                uncached,
                cache_read,
                cache_5m,
                cache_1h,
                output,
                cost: d(cost),
                gateway_cost: Some(d(cost)),
            });
        };
        for day in 0..2 {
            for _ in 0..4 {
                add(
                    "openai",
                    day,
                    "gpt-4o-mini-2024-07-18",
                    900,
                    100,
                    0,
                    0,
                    50,
                    "0.000180",
                );
                add(
                    "openai",
                    day,
                    "gpt-4o-2024-08-06",
                    1500,
                    500,
                    0,
                    0,
                    200,
                    "0.007125",
                );
                add(
                    "anthropic",
                    day,
                    "claude-sonnet-4-20250514",
                    300,
                    1200,
                    200,
                    50,
                    400,
                    "0.008310",
                );
                add(
                    "openrouter",
                    day,
                    "openai/gpt-4.1-2025-04-14",
                    700,
                    0,
                    0,
                    0,
                    90,
                    "0.002120",
                );
            }
        }
        // Gap 1: two gpt-4o-mini calls on day 1 the gateway never logged.
        for c in calls
            .iter_mut()
            .filter(|c| c.day == 0 && c.snapshot.starts_with("gpt-4o-mini"))
            .take(2)
        {
            c.gateway_cost = None;
        }
        // Gap 2: one Anthropic call on day 2 lost too.
        if let Some(c) = calls
            .iter_mut()
            .find(|c| c.day == 1 && c.provider == "anthropic")
        {
            c.gateway_cost = None;
        }
        // Gap 3: on day 2 the gateway billed gpt-4o below OpenAI's charge.
        for c in calls
            .iter_mut()
            .filter(|c| c.day == 1 && c.snapshot.starts_with("gpt-4o-2024"))
        {
            c.gateway_cost = Some(d("0.006000"));
        }
        // Gap 4: one OpenRouter call on day 2 missing from its export.
        if let Some(c) = calls
            .iter_mut()
            .find(|c| c.day == 1 && c.provider == "openrouter")
        {
            c.gateway_cost = None;
        }
        calls
    }

    fn naive(s: i64) -> String {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string()
    }

    /// The LiteLLM SpendLogs export and the OpenRouter generation export of
    /// what the gateways logged.
    fn gateway_exports(calls: &[Call], dir: &Path) -> (PathBuf, PathBuf) {
        let mut litellm = String::from(
            "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status,user,team_id,end_user,request_tags\n",
        );
        let mut openrouter = String::from(
            "generation_id,created_at,cost_total,tokens_prompt,tokens_completion,tokens_reasoning,tokens_cached,model_permaslug,provider_name,variant,cancelled,streamed,api_key_name\n",
        );
        for (i, c) in calls.iter().enumerate() {
            let Some(cost) = c.gateway_cost else { continue };
            let t = naive(c.at_s);
            if c.provider == "openrouter" {
                openrouter.push_str(&format!(
                    "gen-{}-{i:04},{t},{cost},{},{},0,0,{},OpenAI,standard,false,false,research\n",
                    c.at_s,
                    c.input(),
                    c.output,
                    c.snapshot
                ));
                continue;
            }
            let meta = format!(
                "\"{{\"\"usage_object\"\":{{\"\"prompt_tokens_details\"\":{{\"\"cached_tokens\"\":{}}},\"\"cache_creation_input_tokens\"\":{}}}}}\"",
                c.cache_read,
                c.cache_5m + c.cache_1h
            );
            let family = c.snapshot.rsplit_once('-').map_or(c.snapshot, |(a, _)| a);
            let family = if c.provider == "openai" {
                c.snapshot.get(..c.snapshot.len() - 11).unwrap_or(family)
            } else {
                family
            };
            litellm.push_str(&format!(
            "chatcmpl-{i:04},acompletion,{key},{cost},{},{},{},{t},{t},{}/{},{family},{meta},False,success,,,,[]\n",
            c.input() + c.output,
            c.input(),
            c.output,
            c.provider,
            c.snapshot,
            key = "38421a3dd6372becf0707bb0ec1d1be405b690420957d45c1dc25a971cae0e63",
        ));
        }
        let (a, b) = (dir.join("spendlogs.csv"), dir.join("openrouter.csv"));
        std::fs::write(&a, litellm).unwrap();
        std::fs::write(&b, openrouter).unwrap();
        (a, b)
    }

    /// Sums of the calls per (provider, day, snapshot).
    fn grouped(calls: &[Call], provider: &str) -> BTreeMap<(i64, &'static str), Vec<Call>> {
        let mut m: BTreeMap<(i64, &'static str), Vec<Call>> = BTreeMap::new();
        for c in calls.iter().filter(|c| c.provider == provider) {
            m.entry((c.day, c.snapshot)).or_default().push(c.clone());
        }
        m
    }

    /// The providers' report pages, in their documented shapes.
    fn provider_reports(calls: &[Call], dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut write = |name: &str, v: serde_json::Value| {
            let p = dir.join(name);
            std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
            files.push(p);
        };
        let sum = |cs: &[Call], f: fn(&Call) -> u64| cs.iter().map(f).sum::<u64>();
        let cost = |cs: &[Call]| cs.iter().map(|c| c.cost).sum::<Decimal>();
        // The providers send amounts as JSON floats.
        let number = |x: Decimal| {
            serde_json::Value::Number(
                serde_json::Number::from_f64(x.to_string().parse::<f64>().unwrap()).unwrap(),
            )
        };
        // OpenAI Usage API, 1d buckets grouped by model, one bucket a page.
        let openai = grouped(calls, "openai");
        for day in 0..2i64 {
            let results: Vec<serde_json::Value> = openai
                .iter()
                .filter(|((dd, _), _)| *dd == day)
                .map(|((_, model), cs)| {
                    serde_json::json!({
                        "object": "organization.usage.completions.result",
                        "input_tokens": sum(cs, Call::input),
                        "input_cached_tokens": sum(cs, |c| c.cache_read),
                        "output_tokens": sum(cs, |c| c.output),
                        "num_model_requests": cs.len(),
                        "project_id": null, "user_id": null, "api_key_id": null,
                        "model": model, "batch": null, "service_tier": null
                    })
                })
                .collect();
            write(
                &format!("openai_usage_{day}.json"),
                serde_json::json!({
                    "object": "page",
                    "data": [{"object": "bucket", "start_time": DAY1 + day * DAY, "end_time": DAY1 + (day + 1) * DAY, "results": results}],
                    "has_more": day == 0,
                    "next_page": if day == 0 { serde_json::json!("page_AAAAAGdGxdEiJdKOAAAAAGcqsYA=") } else { serde_json::Value::Null },
                }),
            );
        }
        // OpenAI Costs API: daily, line items per model and token kind (the
        // split is the provider's; the sum is what it charged).
        let buckets: Vec<serde_json::Value> = (0..2i64)
        .map(|day| {
            let results: Vec<serde_json::Value> = openai
                .iter()
                .filter(|((dd, _), _)| *dd == day)
                .flat_map(|((_, model), cs)| {
                    let total = cost(cs);
                    let input = (total * d("0.4")).round_dp(9);
                    [("input", input), ("output", total - input)].map(|(kind, v)| {
                        serde_json::json!({
                            "object": "organization.costs.result",
                            "amount": {"value": number(v), "currency": "usd"},
                            "line_item": format!("{model}, {kind}"),
                            "project_id": "proj_abc", "organization_id": "org-abc"
                        })
                    })
                })
                .collect();
            serde_json::json!({"object": "bucket", "start_time": DAY1 + day * DAY, "end_time": DAY1 + (day + 1) * DAY, "results": results})
        })
        .collect();
        write(
            "openai_costs.json",
            serde_json::json!({"object": "page", "data": buckets, "has_more": false, "next_page": null}),
        );
        // Anthropic usage and cost reports (RFC 3339 buckets, cents strings).
        let anthropic = grouped(calls, "anthropic");
        let day_iso = |day: i64| {
            chrono::DateTime::from_timestamp(DAY1 + day * DAY, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        let (mut usage, mut costs) = (Vec::new(), Vec::new());
        for day in 0..2i64 {
            let mut u = Vec::new();
            let mut c = Vec::new();
            for ((_, model), cs) in anthropic.iter().filter(|((dd, _), _)| *dd == day) {
                u.push(serde_json::json!({
                "uncached_input_tokens": sum(cs, |c| c.uncached),
                "cache_read_input_tokens": sum(cs, |c| c.cache_read),
                "cache_creation": {"ephemeral_5m_input_tokens": sum(cs, |c| c.cache_5m), "ephemeral_1h_input_tokens": sum(cs, |c| c.cache_1h)},
                "output_tokens": sum(cs, |c| c.output),
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": null, "workspace_id": null, "model": model,
                "service_tier": "standard", "context_window": "0-200k"
            }));
                let cents = cost(cs) * Decimal::ONE_HUNDRED;
                let out = (cents * d("0.7")).round_dp(7);
                for (token_type, v) in [
                    ("output_tokens", out),
                    ("uncached_input_tokens", cents - out),
                ] {
                    c.push(serde_json::json!({
                    "currency": "USD", "amount": v.normalize().to_string(), "workspace_id": null,
                    "description": format!("Claude Sonnet 4 Usage - {token_type}"), "cost_type": "tokens",
                    "context_window": "0-200k", "model": model, "service_tier": "standard", "token_type": token_type
                }));
                }
            }
            usage.push(serde_json::json!({"starting_at": day_iso(day), "ending_at": day_iso(day + 1), "results": u}));
            costs.push(serde_json::json!({"starting_at": day_iso(day), "ending_at": day_iso(day + 1), "results": c}));
        }
        write(
            "anthropic_usage.json",
            serde_json::json!({"data": usage, "has_more": false, "next_page": null}),
        );
        write(
            "anthropic_cost.json",
            serde_json::json!({"data": costs, "has_more": false, "next_page": null}),
        );
        // OpenRouter activity: one item per UTC day and endpoint.
        let items: Vec<serde_json::Value> = grouped(calls, "openrouter")
        .iter()
        .map(|((day, model), cs)| {
            let date = day_iso(*day);
            serde_json::json!({
                "date": date.get(..10).unwrap(), "model": "openai/gpt-4.1", "model_permaslug": model,
                "endpoint_id": "ep-1", "provider_name": "OpenAI", "usage": number(cost(cs)),
                "byok_usage_inference": 0, "requests": cs.len(),
                "prompt_tokens": sum(cs, Call::input), "completion_tokens": sum(cs, |c| c.output),
                "reasoning_tokens": 0
            })
        })
        .collect();
        write(
            "openrouter_activity.json",
            serde_json::json!({"data": items}),
        );
        files
    }

    #[test]
    fn every_injected_gap_shows_in_its_bucket_with_its_amount_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let calls = traffic();
        let (litellm, openrouter) = gateway_exports(&calls, dir.path());
        let reports = provider_reports(&calls, dir.path());
        // The gaps, computed from the traffic: (provider, day, family) -> USD.
        let mut want: BTreeMap<(String, String, String), (String, Decimal)> = BTreeMap::new();
        for c in &calls {
            let gap = c.cost - c.gateway_cost.unwrap_or_default();
            if gap.is_zero() {
                continue;
            }
            let verdict = if c.gateway_cost.is_none() {
                "gateway_under_reports"
            } else {
                "priced_differently"
            };
            let family = c.snapshot.rsplit('/').next().unwrap();
            let family = family
                .get(..family.len() - 11)
                .map_or(family, |f| f.trim_end_matches('-'));
            let family = if family.starts_with("claude") {
                "claude-sonnet-4"
            } else {
                family
            };
            let day = if c.day == 0 {
                "2026-11-20"
            } else {
                "2026-11-21"
            };
            let e = want
                .entry((c.provider.to_owned(), day.to_owned(), family.to_owned()))
                .or_insert((verdict.to_owned(), Decimal::ZERO));
            e.1 += gap;
        }
        assert_eq!(want.len(), 4, "{want:?}");
        for s in stores() {
            let b = s.backend;
            ingest(&s, "gateway", &[&litellm, &openrouter]);
            succeed(
                tally().args([
                    "run",
                    "--from",
                    "2026-11-20",
                    "--to",
                    "2026-11-22",
                    "--db",
                    &s.url,
                ]),
                "run",
            );
            let tieout = || {
                let mut cmd = tally();
                cmd.args([
                    "tieout",
                    "--from",
                    "2026-11-20",
                    "--to",
                    "2026-11-22",
                    "--format",
                    "json",
                    "--db",
                    &s.url,
                    "--report",
                ])
                .args(&reports)
                .env("TALLY_ALERTS_FINANCE_CONTACT", "finance@example.com")
                .env("TALLY_ALERTS_TIEOUT_MIN_GAP", "0.003");
                succeed(&mut cmd, "tieout")
            };
            let out = tieout();
            // Finance hears of the providers whose gap reaches $0.003 (OpenAI
            // $0.00486, Anthropic $0.00831; not OpenRouter's $0.00212), once.
            tieout();
            let alerts = succeed(
                tally().args(["alerts", "list", "--format", "json", "--db", &s.url]),
                "alerts",
            );
            let alerts: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
            let mut gaps: Vec<String> = alerts
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["kind"] == "tieout_gap")
                .map(|a| a["title"].as_str().unwrap().to_owned())
                .collect();
            gaps.sort();
            assert_eq!(
                gaps,
                [
                    "anthropic billed more than the gateway logged: 0.00831 USD over 2026-11-20..2026-11-22",
                    "openai billed more than the gateway logged: 0.00486 USD over 2026-11-20..2026-11-22",
                ],
                "{b}"
            );
            let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut got: BTreeMap<(String, String, String), (String, Decimal)> = BTreeMap::new();
            for l in t["lines"].as_array().unwrap() {
                if l["verdict"] == "agrees" {
                    continue;
                }
                let day = chrono::DateTime::from_timestamp_millis(l["start_ms"].as_i64().unwrap())
                    .unwrap()
                    .format("%Y-%m-%d")
                    .to_string();
                got.insert(
                    (
                        l["provider"].as_str().unwrap().to_owned(),
                        day,
                        l["model"].as_str().unwrap().to_owned(),
                    ),
                    (
                        l["verdict"].as_str().unwrap().to_owned(),
                        l["gap"].as_str().unwrap().parse::<Decimal>().unwrap(),
                    ),
                );
            }
            let want: BTreeMap<_, _> = want
                .iter()
                .map(|(k, (v, g))| (k.clone(), (v.clone(), g.normalize())))
                .collect();
            let got: BTreeMap<_, _> = got
                .into_iter()
                .map(|(k, (v, g))| (k, (v, g.normalize())))
                .collect();
            assert_eq!(got, want, "{b}: {t:#}");
            // The tie-out is kept: the month-end page shows its buckets, the
            // ones that disagree first.
            let mut conn = tally_service::db::open(&s.url, false).unwrap();
            let kept = tally_service::app::tieout::latest(
                &mut conn,
                (1_795_132_800_000, 1_795_132_800_000 + 2 * 86_400_000),
            )
            .unwrap()
            .unwrap();
            assert!(!kept.clean, "{b}");
            assert!(kept.incomplete.is_empty(), "{b}");
            assert_eq!(kept.lines.len(), 8, "{b}");
            assert!(kept.lines[..4].iter().all(|l| l.verdict != "agrees"), "{b}");
            assert!(kept.lines[4..].iter().all(|l| l.verdict == "agrees"), "{b}");
            // Every provider's buckets are there, agreeing where nothing was injected.
            let lines = t["lines"].as_array().unwrap();
            assert_eq!(lines.len(), 8, "{b}: 4 families x 2 days: {t:#}");
            assert!(
                lines
                    .iter()
                    .any(|l| l["verdict"] == "agrees" && l["provider"] == "anthropic"),
                "{b}"
            );
            // The first OpenAI usage page says more follow; the second closes
            // the set, so the report is whole.
            assert_eq!(t["incomplete"], serde_json::json!([]), "{b}");
            // Without the second page: the figures are short, and it says so.
            let mut cmd = tally();
            cmd.args([
                "tieout",
                "--from",
                "2026-11-20",
                "--to",
                "2026-11-22",
                "--strict",
                "--db",
                &s.url,
                "--report",
            ])
            .args(
                reports
                    .iter()
                    .filter(|p| !p.ends_with("openai_usage_1.json")),
            );
            let out = cmd.output().unwrap();
            assert!(!out.status.success(), "{b}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("says more pages follow"),
                "{b}"
            );
        }
    }
}

#[test]
fn costs_by_tag_follow_each_billed_row_to_its_client_rows_tags() {
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        succeed(&mut run_fixture_day(&s.url), "run");
        let report = |by: &str| {
            let out = succeed(
                tally().args([
                    "report",
                    "costs",
                    "--from",
                    "2026-11-01",
                    "--to",
                    "2026-12-01",
                    "--group-by",
                    by,
                    "--format",
                    "csv",
                    "--db",
                    &s.url,
                ]),
                "report",
            );
            records(&String::from_utf8(out.stdout).unwrap())
        };
        let tags = report("tag");
        let owners = report("owner");
        // Each fixture client row has at most one tag: the tag lines
        // partition the billed rows and their money.
        for col in ["billed_rows", "computed_cost", "reported_cost"] {
            assert_eq!(sum(&tags, col), sum(&owners, col), "{b}: {col}");
        }
        let tier1 = tags.iter().find(|r| r["group"] == "tier:1").unwrap();
        // 30 client rows are tagged tier:1 (support-bot's); 2 of them are
        // missing on the gateway, so 28 billed rows carry the tag.
        assert_eq!(tier1["billed_rows"], "28", "{b}");
        assert!(tags.iter().any(|r| r["group"] == "(no tag)"), "{b}");
    }
}

/// LiteLLM rows on support's key on 2026-10-15, $0.05 each.
fn october_rows(dir: &Path, name: &str, ids: std::ops::Range<u32>) -> std::path::PathBuf {
    let p = dir.join(name);
    let key = "38421a3dd6372becf0707bb0ec1d1be405b690420957d45c1dc25a971cae0e63";
    let mut text = "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status,user,team_id,end_user,request_tags\n".to_owned();
    for i in ids {
        text.push_str(&format!(
            "chatcmpl-oct{i},acompletion,{key},0.05,6000,5000,1000,2026-10-15 10:{i:02}:00.000,2026-10-15 10:{i:02}:01.000,openai/gpt-4o,gpt-4o,{{}},False,success,,,,[]\n"
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_close_lists_the_corrections_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let october = october_rows(dir.path(), "oct.csv", 0..2);
    let late = october_rows(dir.path(), "oct-late.csv", 2..3);
    let run = |s: &Store, from: &str, to: &str| {
        succeed(
            tally().args(["run", "--from", from, "--to", to, "--db", &s.url]),
            "run",
        );
    };
    let close = |s: &Store, period: &str| {
        let out = succeed(
            tally().args(["close", "--period", period, "--db", &s.url]),
            "close",
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        ingest(&s, "gateway", &[&october]);
        run(&s, "2026-10-15", "2026-10-16");
        succeed(&mut run_fixture_day(&s.url), "run");
        let oct = close(&s, "2026-10");
        assert!(oct.contains("0 correction(s)"), "{b}: {oct}");
        // A late October row, reconciled after October closed.
        ingest(&s, "gateway", &[&late]);
        run(&s, "2026-10-15", "2026-10-16");
        let nov = close(&s, "2026-11");
        assert!(nov.contains("and 1 correction(s)"), "{b}: {nov}");
        assert!(
            nov.contains("correction 2026-10-15 support/support-bot/prod key_support_prod gpt-4o (unattributed): 1 request(s), 0.05 USD"),
            "{b}: {nov}"
        );
        // And the November export carries it, as FOCUS.
        let (csv, _) = focus(&s, "2026-11");
        assert_eq!(check_csv(&csv), Vec::<String>::new(), "{b}");
        let corrections: Vec<_> = records(&csv)
            .into_iter()
            .filter(|r| r["ChargeClass"] == "Correction")
            .collect();
        assert_eq!(corrections.len(), 1, "{b}");
        assert_eq!(
            corrections[0]["ChargePeriodStart"], "2026-10-15T00:00:00Z",
            "{b}"
        );
    }
}

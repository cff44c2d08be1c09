//! The store on both backends: migrations, repository functions, and
//! `tally ingest` as a user runs it. Every test runs on SQLite and, in a
//! `postgres` build, on a fresh database of a real PostgreSQL cluster.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]

mod common;
#[path = "common/fixture_day.rs"]
mod fixture_day;

use std::path::Path;

use common::{FIXTURE_ARGS, Store, root, run_fixture_day, stores, succeed, tally};
use fixture_day::{fixture, import, ingest, load_fixture_day};
use tally_reconcile::SideKind;
use tally_reconcile::report::Class;
use tally_reconcile::time::DAY_MS;
use tally_schema::rows::{StoredNames, UsageNames};
use tally_service::db::{self, repo};

/// The dedup keys of a store's gateway rows, sorted: what identifies its
/// contents across ingests.
fn gateway_keys(store: &Store) -> Vec<String> {
    let mut c = db::connect(&store.url).unwrap();
    repo::dedup_keys(&mut c, "gateway").unwrap()
}

/// Writes a CSV made of the header and lines `from..to` (1-based data
/// lines) of a fixture.
fn slice_csv(dir: &Path, name: &str, src: &Path, from: usize, to: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines = text.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for l in lines.skip(from - 1).take(to - from + 1) {
        out.push_str(l);
        out.push('\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn migrations_run_once_and_no_migrate_refuses_a_stale_store() {
    for s in stores() {
        let e = db::open(&s.url, true).err().unwrap().to_string();
        assert!(e.contains("pending migration"), "{}: {e}", s.backend);
        let mut c = db::connect(&s.url).unwrap();
        let versions = std::fs::read_dir(root().join("migrations/sqlite"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().join("up.sql").exists())
            .count();
        assert_eq!(
            db::pending(&mut c).unwrap().len(),
            versions,
            "{}",
            s.backend
        );
        assert_eq!(
            db::migrate(&mut c).unwrap().len(),
            versions,
            "{}",
            s.backend
        );
        assert!(db::migrate(&mut c).unwrap().is_empty(), "{}", s.backend);
        assert!(db::pending(&mut c).unwrap().is_empty(), "{}", s.backend);
        db::open(&s.url, true).unwrap();
        let out = succeed(
            tally().args(["db", "migrate", "--db", &s.url]),
            "db migrate",
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    }
}

#[test]
fn the_same_file_twice_adds_nothing_and_counts_add_up() {
    let gw = fixture("gateway/litellm_spendlogs.csv");
    for s in stores() {
        let first = ingest(&s, "gateway", &[&gw]);
        // The fixture: 103 rows, one with a non-numeric token count; the
        // retry billed twice is two rows (same id, ordinals 0 and 1).
        assert!(
            first.contains("103 read = 102 new + 0 duplicate + 1 rejected"),
            "{}: {first}",
            s.backend
        );
        let again = ingest(&s, "gateway", &[&gw]);
        assert!(
            again.contains("0 new") && again.contains("already ingested as batch 1"),
            "{}: {again}",
            s.backend
        );
        let mut c = db::connect(&s.url).unwrap();
        assert_eq!(repo::count_usage(&mut c, SideKind::Gateway).unwrap(), 102);
        let batches = repo::batches(&mut c).unwrap();
        assert_eq!(batches.len(), 1, "{}", s.backend);
        let b = &batches[0];
        assert_eq!(b.rows_read, b.rows_new + b.rows_duplicate + b.rows_rejected);
        assert_eq!(b.source, "litellm");
        let by_hash = repo::batch_by_hash(&mut c, SideKind::Gateway, &b.sha256).unwrap();
        assert_eq!(by_hash.as_ref(), Some(b));
        assert!(
            repo::batch_by_hash(&mut c, SideKind::Client, &b.sha256)
                .unwrap()
                .is_none()
        );
        let rejects = repo::rejects_listed(&mut c, b.id, usize::MAX).unwrap();
        assert_eq!(rejects.len(), 1);
        assert_eq!(
            (rejects[0].line, rejects[0].field.as_str()),
            (2, "completion_tokens")
        );
        assert!(
            rejects[0].raw.starts_with("chatcmpl-bad,"),
            "{}",
            rejects[0].raw
        );
        let keys = repo::dedup_keys(&mut c, "gateway").unwrap();
        assert!(keys.contains(&"id:2026-11-20:chatcmpl-sup023#0".to_owned()));
        assert!(keys.contains(&"id:2026-11-20:chatcmpl-sup023#1".to_owned()));
    }
}

#[test]
fn overlapping_exports_add_only_their_new_rows_in_any_order() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("gateway/litellm_spendlogs.csv");
    // Rows 1-70 and 40-103: 31 rows in both.
    let a = slice_csv(tmp.path(), "a.csv", &src, 1, 70);
    let b = slice_csv(tmp.path(), "b.csv", &src, 40, 103);
    for s in stores() {
        let whole = stores().remove(0);
        ingest(&whole, "gateway", &[&src]);
        let expected = gateway_keys(&whole);

        let out = ingest(&s, "gateway", &[&b, &a]);
        // b: 64 rows, none stored yet; a: 70 rows, 31 of them already are
        // (the fixture's one bad row sits in a, line 2).
        assert!(
            out.contains("64 read = 64 new + 0 duplicate + 0 rejected"),
            "{out}"
        );
        assert!(
            out.contains("70 read = 38 new + 31 duplicate + 1 rejected"),
            "{out}"
        );
        assert_eq!(gateway_keys(&s), expected, "{}", s.backend);
    }
}

#[test]
fn raw_keys_are_fingerprinted_and_masked_in_the_stored_text() {
    let app = fixture("client/app.jsonl");
    let secret = "sk-proj-SupportBotProd0000000000000000000000000Ab12";
    assert!(std::fs::read_to_string(&app).unwrap().contains(secret));
    for s in stores() {
        let out = ingest(&s, "client", &[&app]);
        assert!(
            out.contains("90 read = 87 new + 0 duplicate + 3 rejected"),
            "{out}"
        );
        let dump = dump_text(&s.url);
        assert!(!dump.contains(secret), "{}: raw key stored", s.backend);
        assert!(dump.contains("fp:"), "{}: no fingerprint stored", s.backend);
    }
}

/// Every text value of the usage rows and rejects, concatenated.
fn dump_text(url: &str) -> String {
    use diesel::prelude::*;
    use tally_schema::schema::{rejects, usage_rows};
    let mut c = db::connect(url).unwrap();
    let rows: Vec<(String, String, String, String)> = usage_rows::table
        .select((
            usage_rows::key_name,
            usage_rows::raw,
            usage_rows::dedup_key,
            usage_rows::tags,
        ))
        .load(&mut c)
        .unwrap();
    let rej: Vec<(String, String)> = rejects::table
        .select((rejects::reason, rejects::raw))
        .load(&mut c)
        .unwrap();
    let mut out = String::new();
    for (a, b, d, e) in rows {
        out.push_str(&format!("{a}\n{b}\n{d}\n{e}\n"));
    }
    for (a, b) in rej {
        out.push_str(&format!("{a}\n{b}\n"));
    }
    out
}

#[test]
fn a_cost_too_large_to_store_is_a_reject_not_a_rounding() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("gateway/litellm_spendlogs.csv");
    let text = std::fs::read_to_string(&src).unwrap();
    let mut lines: Vec<String> = text.lines().take(4).map(str::to_owned).collect();
    // Row 3 (line 4) bills ten billion dollars: beyond i64 nano-dollars.
    lines[3] = lines[3].replacen(",0.0", ",10000000000.0", 1);
    let p = tmp.path().join("big.csv");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    for s in stores() {
        let out = ingest(&s, "gateway", &[&p]);
        assert!(
            out.contains("3 read = 1 new + 0 duplicate + 2 rejected"),
            "{}: {out}",
            s.backend
        );
        let mut c = db::connect(&s.url).unwrap();
        let rejects = repo::rejects_listed(&mut c, 1, usize::MAX).unwrap();
        let big = rejects.iter().find(|r| r.line == 4).unwrap();
        assert_eq!(big.field, "cost");
        assert!(big.reason.contains("does not fit"), "{}", big.reason);
    }
}

/// Imports the fixture reference data and ingests the fixture day.
fn run_day(s: &Store, from: &str, to: &str) -> String {
    let out = succeed(
        tally().args([
            "run",
            "--from",
            from,
            "--to",
            to,
            "--timings",
            "--db",
            &s.url,
        ]),
        &format!("run on {}", s.backend),
    );
    // --timings says where the time went, on stderr, apart from the counts.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timing run: load ") && err.contains(", then alerts and quotas "),
        "{}: {err}",
        s.backend
    );
    String::from_utf8(out.stdout).unwrap()
}

fn report(s: &Store, args: &[&str]) -> String {
    let out = succeed(
        tally().args(["report"]).args(args).args([
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-21",
            "--db",
            &s.url,
        ]),
        &format!("report {args:?} on {}", s.backend),
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_stored_run_classifies_the_fixture_day_exactly_as_tally_reconcile() {
    // The one-shot engine on the same files is the reference.
    let out = succeed(
        tally().args(FIXTURE_ARGS).args(["--format", "json"]),
        "reconcile",
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<(String, i64, i64)> = summary["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_owned(),
                c["client_rows"].as_i64().unwrap(),
                c["gateway_rows"].as_i64().unwrap(),
            )
        })
        .collect();
    for s in stores() {
        load_fixture_day(&s);
        run_day(&s, "2026-11-20", "2026-11-21");
        let mut c = db::connect(&s.url).unwrap();
        let run = &repo::runs(&mut c).unwrap()[0];
        let mut got: Vec<(String, i64, i64)> = repo::run_counts(&mut c, run.id)
            .unwrap()
            .into_iter()
            .map(|k| (k.class.to_string(), k.client_rows, k.gateway_rows))
            .collect();
        got.retain(|(_, a, b)| a + b > 0);
        let mut want = expected.clone();
        want.retain(|(_, a, b)| a + b > 0);
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}", s.backend);
        assert_eq!(
            (run.client_rows, run.gateway_rows),
            (113, 114),
            "{}",
            s.backend
        );

        // Costs by owner equal the one-shot report's, to the last digit.
        let costs = report(&s, &["costs", "--format", "json"]);
        let costs: serde_json::Value = serde_json::from_str(&costs).unwrap();
        let dec = |v: &serde_json::Value| {
            v.as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        };
        let owners = summary["costs_by_owner"].as_array().unwrap();
        assert_eq!(
            costs.as_array().unwrap().len(),
            owners.len(),
            "{}",
            s.backend
        );
        for o in owners {
            let line = costs
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["group"] == o["owner"])
                .unwrap_or_else(|| panic!("{}: no line for {}", s.backend, o["owner"]));
            for (mine, theirs) in [
                ("computed_cost", "computed_cost"),
                ("reported_cost", "reported_cost"),
                ("variance", "variance"),
                ("missing_cost", "missing_usage_cost"),
            ] {
                assert_eq!(
                    dec(&line[mine]),
                    dec(&o[theirs]),
                    "{} {} {mine}",
                    s.backend,
                    o["owner"]
                );
            }
            assert_eq!(line["billed_rows"], o["billed_rows"]);
            assert_eq!(line["unattributed_rows"], o["unattributed_rows"]);
        }
        // By team, the leaked key's rows (no team) form their own group.
        let by_team = report(&s, &["costs", "--group-by", "team", "--format", "json"]);
        let by_team: serde_json::Value = serde_json::from_str(&by_team).unwrap();
        let none = by_team
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["group"] == "(none)")
            .unwrap_or_else(|| panic!("{}: {by_team}", s.backend));
        assert_eq!(none["unattributed_rows"], 3, "{}", s.backend);
        // The leaked key: three unattributed rows, flagged.
        let un = report(&s, &["unattributed", "--format", "csv"]);
        let lines: Vec<&str> = un.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{}: {un}", s.backend);
        assert!(lines.iter().all(|l| l.contains("NOT IN REGISTRY")), "{un}");
        let missing = report(&s, &["missing", "--format", "csv"]);
        assert_eq!(missing.lines().count(), 3, "{}: {missing}", s.backend);
        // Unpriced rows are listed, never priced at zero.
        let disc = report(&s, &["discrepancies", "--format", "json"]);
        let disc: serde_json::Value = serde_json::from_str(&disc).unwrap();
        let unpriced = disc
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["computed_cost"].is_null() && l["side"] == "gateway")
            .count();
        assert_eq!(unpriced, 3, "{}", s.backend);
    }
}

#[test]
fn late_rows_change_verdicts_in_a_new_run_and_the_old_run_stays_as_history() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("gateway/litellm_spendlogs.csv");
    // The first export lacks the last 20 rows; they arrive late.
    let early = slice_csv(tmp.path(), "early.csv", &src, 1, 83);
    for s in stores() {
        import(&s, "keys", &fixture("keys.toml"));
        import(&s, "prices", &fixture("prices.toml"));
        ingest(&s, "client", &[&fixture("client/app.jsonl")]);
        ingest(&s, "gateway", &[&early]);
        run_day(&s, "2026-11-20", "2026-11-21");
        let missing_before = report(&s, &["missing", "--format", "csv"]).lines().count() - 1;
        ingest(&s, "gateway", &[&src]);
        let out = run_day(&s, "2026-11-20", "2026-11-21");
        assert!(out.contains("Supersedes run(s) 1"), "{}: {out}", s.backend);
        let missing_after = report(&s, &["missing", "--format", "csv"]).lines().count() - 1;
        assert!(
            missing_after < missing_before,
            "{}: {missing_before} -> {missing_after}",
            s.backend
        );
        let mut c = db::connect(&s.url).unwrap();
        let runs = repo::runs(&mut c).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[0].status.as_str(), runs[1].status.as_str()),
            ("current", "superseded")
        );
        assert_eq!(runs[1].superseded_by, Some(runs[0].id));
        // The old run's counts are still there, as they were.
        let old: i64 = repo::run_counts(&mut c, runs[1].id)
            .unwrap()
            .iter()
            .filter(|k| *k.class == Class::MissingUsage)
            .map(|k| k.client_rows)
            .sum();
        assert_eq!(old, i64::try_from(missing_before).unwrap());
    }
}

#[test]
fn a_partner_just_across_the_window_edge_is_matched_not_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let client = tmp.path().join("c.csv");
    let gateway = tmp.path().join("g.csv");
    // The client logs 23:59:59.900 on the 20th; the gateway stamps the same
    // call 00:00:00.400 on the 21st. A formula-like model name checks the
    // CSV export too.
    std::fs::write(
        &client,
        "ts,key,model,route,input_tokens,output_tokens\n\
         2026-11-20T23:59:59.900Z,k1,=cmd,/v1/chat/completions,10,5\n\
         2026-11-20T12:00:00Z,k1,=cmd,/v1/chat/completions,7,7\n",
    )
    .unwrap();
    std::fs::write(
        &gateway,
        "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status\n\
         r1,acompletion,k1,0.001,15,10,5,2026-11-21 00:00:00.400,2026-11-21 00:00:01.000,=cmd,=cmd,{},False,success\n",
    )
    .unwrap();
    for s in stores() {
        ingest(&s, "client", &[&client]);
        ingest(&s, "gateway", &[&gateway]);
        run_day(&s, "2026-11-20", "2026-11-21");
        let missing = report(&s, &["missing", "--format", "csv"]);
        let rows: Vec<&str> = missing.lines().skip(1).collect();
        // Only the noon row is missing; the one at the edge found its partner.
        assert_eq!(rows.len(), 1, "{}: {missing}", s.backend);
        assert!(rows[0].starts_with("2026-11-20T12:00:00.000Z"), "{missing}");
        assert!(
            rows[0].contains(",'=cmd,"),
            "formula not neutralised: {missing}"
        );
    }
}

/// LiteLLM's price map with one model, in `dir`.
fn litellm_price_map(dir: &Path) -> std::path::PathBuf {
    let json = dir.join("model_prices_and_context_window.json");
    std::fs::write(
        &json,
        r#"{"gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}}"#,
    )
    .unwrap();
    json
}

#[test]
fn a_price_map_imported_without_a_date_says_from_when_it_counts() {
    // LiteLLM's map has no dates: without --effective-from its prices
    // count from today, and the message says so and how to date them.
    let tmp = tempfile::tempdir().unwrap();
    let json = litellm_price_map(tmp.path());
    let db = tmp.path().join("t.db");
    let out = succeed(
        tally()
            .args(["prices", "import", "--db"])
            .arg(&db)
            .arg(&json),
        "prices import",
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.contains("1 price(s)")
            && out.contains("(today: the file has no dates; rows before it stay unpriced")
            && out.contains("--effective-from YYYY-MM-DD"),
        "{out}"
    );
}

#[test]
fn imports_add_or_replace_and_litellm_prices_need_no_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("model_prices_and_context_window.json");
    std::fs::write(
        &json,
        r#"{"sample_spec": {}, "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
            "azure/gpt-4o": {"input_cost_per_token": 5e-06, "output_cost_per_token": 1.5e-05}}"#,
    )
    .unwrap();
    let owners = tmp.path().join("owners.csv");
    std::fs::write(
        &owners,
        "team,service,env,contact\nsupport,support-bot,prod,oncall@example.com\n",
    )
    .unwrap();
    for s in stores() {
        for _ in 0..2 {
            import(&s, "keys", &fixture("keys.toml"));
        }
        import(&s, "owners", &owners);
        let out = succeed(
            tally()
                .args([
                    "prices",
                    "import",
                    "--effective-from",
                    "2026-11-01",
                    "--db",
                    &s.url,
                ])
                .arg(&json),
            "prices import",
        );
        let out = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.contains("2 price(s)")
                && out.contains("effective from 2026-11-01")
                && out.contains("1 entries"),
            "{out}"
        );
        let mut c = db::connect(&s.url).unwrap();
        assert_eq!(repo::keys(&mut c).unwrap().len(), 5, "{}", s.backend);
        let owners = repo::owners(&mut c).unwrap();
        let support = owners.iter().find(|o| o.team == "support").unwrap();
        assert_eq!(support.contact.as_deref(), Some("oncall@example.com"));
        let prices = repo::prices(&mut c).unwrap();
        assert_eq!(prices.len(), 2);
        let gpt4o = prices.iter().find(|p| p.model == "gpt-4o").unwrap();
        assert_eq!(
            (gpt4o.input_nanos, gpt4o.output_nanos),
            (2_500_000_000, 10_000_000_000)
        );
        assert_eq!(gpt4o.effective_from.to_string(), "2026-11-01 00:00:00");
        // Azure's own price is kept under its prefixed name.
        let azure = prices.iter().find(|p| p.model == "azure/gpt-4o").unwrap();
        assert_eq!(azure.input_nanos, 5_000_000_000);
        // Keys re-imported keep their owner's contact.
        let keys = repo::keys(&mut c).unwrap();
        let k = keys
            .iter()
            .find(|k| k.key_id == "key_support_prod")
            .unwrap();
        assert_eq!(k.owner_id, Some(support.id));
    }
}

/// A seeded synthetic day of `rows` client rows (client.csv, gateway.csv).
fn generated(rows: u32, seed: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    succeed(
        tally()
            .args([
                "generate",
                "--rows",
                &rows.to_string(),
                "--seed",
                &seed.to_string(),
                "--out",
            ])
            .arg(dir.path()),
        "generate",
    );
    dir
}

/// xorshift64*: reproducible "random" kill points (the seed is printed
/// on failure through the assertion messages).
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn ingest_killed_at_random_points_leaves_whole_batches_or_none() {
    let data = generated(20_000, 11);
    let file = data.path().join("gateway.csv");
    for s in stores() {
        let reference = stores().remove(0);
        ingest(&reference, "gateway", &[&file]);
        let expected = gateway_keys(&reference);
        let mut seed = 0x5eed_u64 + u64::from(s.backend == "postgres");
        // Migrations first, so every kill lands in the ingest itself.
        db::open(&s.url, false).unwrap();
        let mut kills = 0;
        for attempt in 0..8 {
            let delay = next(&mut seed) % 1500;
            let mut child = tally()
                .args(["ingest", "gateway", "--db", &s.url])
                .arg(&file)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(delay));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            child.wait().unwrap();
            let mut c = db::connect(&s.url).unwrap();
            let n = repo::count_usage(&mut c, SideKind::Gateway).unwrap();
            let full = i64::try_from(expected.len()).unwrap();
            assert!(
                n == 0 || n == full,
                "{}: attempt {attempt} killed after {delay} ms left {n} of {full} rows",
                s.backend
            );
            let batches = repo::batches(&mut c).unwrap();
            assert!(batches.len() <= 1, "{}: {batches:?}", s.backend);
            assert!(
                batches.iter().all(|b| b.rows_new == full),
                "{}: {batches:?}",
                s.backend
            );
        }
        assert!(kills > 0, "{}: no attempt was killed part-way", s.backend);
        ingest(&s, "gateway", &[&file]);
        assert_eq!(gateway_keys(&s), expected, "{}", s.backend);
    }
}

#[test]
fn two_ingests_at_once_on_one_sqlite_file_both_succeed_without_doubling() {
    let data = generated(20_000, 12);
    let (client, gateway) = (
        data.path().join("client.csv"),
        data.path().join("gateway.csv"),
    );
    let s = stores().remove(0);
    assert_eq!(s.backend, "sqlite");
    db::open(&s.url, false).unwrap();
    let spawn = |side: &str, file: &Path| {
        tally()
            .args(["ingest", side, "--db", &s.url])
            .arg(file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Two files at once, then the same file twice at once.
    let a = spawn("client", &client);
    let b = spawn("gateway", &gateway);
    let c = spawn("gateway", &gateway);
    for (what, child) in [("client", a), ("gateway", b), ("gateway again", c)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut conn = db::connect(&s.url).unwrap();
    assert_eq!(
        repo::count_usage(&mut conn, SideKind::Client).unwrap(),
        20_000
    );
    let gw = repo::count_usage(&mut conn, SideKind::Gateway).unwrap();
    let text = std::fs::read_to_string(&gateway).unwrap();
    assert_eq!(gw, i64::try_from(text.lines().count() - 1).unwrap());
    assert_eq!(repo::batches(&mut conn).unwrap().len(), 2);
}

#[test]
fn sqlite_connections_use_wal_a_busy_timeout_and_foreign_keys() {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct Mode {
        #[diesel(sql_type = Text)]
        journal_mode: String,
    }
    #[derive(QueryableByName)]
    struct Timeout {
        #[diesel(sql_type = BigInt)]
        timeout: i64,
    }
    #[derive(QueryableByName)]
    struct Fk {
        #[diesel(sql_type = BigInt)]
        foreign_keys: i64,
    }
    let s = stores().remove(0);
    let mut c = db::open(&s.url, false).unwrap();
    let mode: Vec<Mode> = diesel::sql_query("PRAGMA journal_mode")
        .load(&mut c)
        .unwrap();
    assert_eq!(mode[0].journal_mode, "wal");
    let t: Vec<Timeout> = diesel::sql_query("PRAGMA busy_timeout")
        .load(&mut c)
        .unwrap();
    assert_eq!(t[0].timeout, 60_000);
    let fk: Vec<Fk> = diesel::sql_query("PRAGMA foreign_keys")
        .load(&mut c)
        .unwrap();
    assert_eq!(fk[0].foreign_keys, 1);
}

#[test]
fn a_run_in_many_slices_gives_the_verdicts_of_one_pass() {
    let data = generated(20_000, 13);
    for s in stores() {
        import(&s, "keys", &data.path().join("keys.toml"));
        import(&s, "prices", &data.path().join("prices.toml"));
        ingest(&s, "client", &[&data.path().join("client.csv")]);
        ingest(&s, "gateway", &[&data.path().join("gateway.csv")]);
        let run = |slice: &str| {
            succeed(
                tally().args([
                    "run",
                    "--from",
                    "2026-11-19",
                    "--to",
                    "2026-11-22",
                    "--slice-rows",
                    slice,
                    "--db",
                    &s.url,
                ]),
                "run",
            );
            let mut c = db::connect(&s.url).unwrap();
            let id = repo::runs(&mut c).unwrap()[0].id;
            let counts: Vec<(String, i64, i64)> = repo::run_counts(&mut c, id)
                .unwrap()
                .into_iter()
                .map(|k| (k.class.to_string(), k.client_rows, k.gateway_rows))
                .collect();
            let missing = report(&s, &["missing", "--format", "csv"]);
            (counts, missing)
        };
        let one = run("100000000");
        let many = run("2500");
        assert_eq!(one, many, "{}", s.backend);
        // Not trivially equal: the generator's faults are there.
        assert!(one.1.lines().count() > 100, "{}", s.backend);
    }
}

#[test]
fn the_same_export_three_times_or_in_overlapping_parts_gives_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("gateway/litellm_spendlogs.csv");
    let a = slice_csv(tmp.path(), "a.csv", &src, 1, 60);
    let b = slice_csv(tmp.path(), "b.csv", &src, 30, 103);
    let reports = |s: &Store| {
        run_day(s, "2026-11-20", "2026-11-21");
        ["costs", "missing", "unattributed", "discrepancies"]
            .map(|k| report(s, &[k, "--format", "csv"]))
    };
    for s in stores() {
        let once = stores().remove(0);
        load_fixture_day(&once);
        let expected = reports(&once);

        load_fixture_day(&s);
        let gateway = fixture("gateway/litellm_spendlogs.csv");
        ingest(&s, "gateway", &[&gateway, &gateway]);
        ingest(&s, "gateway", &[&b, &a]);
        assert_eq!(reports(&s), expected, "{}", s.backend);
        assert_eq!(gateway_keys(&s), gateway_keys(&once), "{}", s.backend);
    }
}

#[test]
fn tokens_are_stored_hashed_unique_while_live_and_revocable() {
    use tally_service::app::tokens::{self, Role};
    let t0 = chrono::DateTime::from_timestamp(1_763_700_000, 0)
        .unwrap()
        .naive_utc();
    for s in stores() {
        let mut c = db::open(&s.url, false).unwrap();
        let tok = tokens::create(&mut c, "ci", Role::Ingest, t0).unwrap();
        let who = tokens::authenticate(&mut c, &tok).unwrap().unwrap();
        assert_eq!(
            (who.name.as_str(), who.role),
            ("ci", Role::Ingest),
            "{}",
            s.backend
        );
        // Only the hash is stored.
        let rows = repo::tokens(&mut c).unwrap();
        assert_eq!(rows.len(), 1);
        assert_ne!(rows[0].token_sha256, tok);
        assert_eq!(rows[0].token_sha256, tokens::hash(&tok));
        let e = tokens::create(&mut c, "ci", Role::Admin, t0).unwrap_err();
        assert!(e.to_string().contains("`ci`"), "{}: {e}", s.backend);
        assert!(
            tokens::authenticate(&mut c, "tally_nope")
                .unwrap()
                .is_none()
        );
        assert!(tokens::revoke(&mut c, "ci", t0).unwrap());
        assert!(!tokens::revoke(&mut c, "ci", t0).unwrap());
        assert!(tokens::authenticate(&mut c, &tok).unwrap().is_none());
        // The name is free again; the revoked token stays listed.
        tokens::create(&mut c, "ci", Role::Admin, t0).unwrap();
        let list = tokens::list(&mut c).unwrap();
        assert_eq!(list.len(), 2, "{}", s.backend);
        assert!(list[0].revoked_at.is_some() && list[1].revoked_at.is_none());
    }
}

#[test]
fn reference_entries_update_and_delete_on_both_backends() {
    use tally_schema::rows::NewOwner;
    for s in stores() {
        import(&s, "keys", &fixture("keys.toml"));
        import(&s, "prices", &fixture("prices.toml"));
        import(&s, "aliases", &fixture("aliases.toml"));
        let mut c = db::open(&s.url, false).unwrap();
        let owners = repo::owners(&mut c).unwrap();
        let (a, b) = (&owners[0], &owners[1]);
        let keys_of = |c: &mut db::AnyConnection, id: i64| {
            repo::keys(c)
                .unwrap()
                .into_iter()
                .filter(|k| k.owner_id == Some(id))
                .count()
        };
        assert!(keys_of(&mut c, a.id) > 0, "{}", s.backend);
        // Renaming onto another owner is a conflict; setting a contact is not.
        let clash = NewOwner {
            team: &b.team,
            service: &b.service,
            env: &b.env,
            contact: None,
        };
        let e = repo::update_owner(&mut c, a.id, &clash).unwrap_err();
        assert!(matches!(e, db::DbError::Conflict(_)), "{}: {e}", s.backend);
        let mine = NewOwner {
            team: &a.team,
            service: &a.service,
            env: &a.env,
            contact: Some("team@example.com"),
        };
        assert!(repo::update_owner(&mut c, a.id, &mine).unwrap());
        assert!(!repo::update_owner(&mut c, -1, &mine).unwrap());
        // Deleting an owner leaves its keys, unowned.
        let keys_before = repo::keys(&mut c).unwrap().len();
        assert!(repo::delete_owner(&mut c, a.id).unwrap());
        assert!(!repo::delete_owner(&mut c, a.id).unwrap());
        assert_eq!(repo::keys(&mut c).unwrap().len(), keys_before);
        assert_eq!(keys_of(&mut c, a.id), 0);
        let key = repo::keys(&mut c).unwrap()[0].key_id.clone();
        assert!(repo::delete_key(&mut c, &key).unwrap());
        assert!(!repo::delete_key(&mut c, &key).unwrap());
        let alias = repo::aliases(&mut c).unwrap()[0].alias.clone();
        assert!(repo::delete_alias(&mut c, &alias).unwrap());
        assert!(
            repo::aliases(&mut c)
                .unwrap()
                .iter()
                .all(|a| a.alias != alias)
        );
        assert!(!repo::delete_alias(&mut c, &alias).unwrap());
        let price = repo::prices(&mut c).unwrap()[0].id;
        assert!(repo::delete_price(&mut c, price).unwrap());
        assert!(!repo::delete_price(&mut c, price).unwrap());
        assert!(repo::run(&mut c, 1).unwrap().is_none());
    }
}

#[test]
fn sessions_are_stored_hashed_expire_and_end_with_their_token() {
    use tally_service::app::tokens::{self, Role, SignIn};
    let t0 = chrono::DateTime::from_timestamp(1_763_700_000, 0)
        .unwrap()
        .naive_utc();
    let readers = [Role::Admin, Role::Finance, Role::Platform];
    for s in stores() {
        let mut c = db::open(&s.url, false).unwrap();
        let tok = tokens::create(&mut c, "fin", Role::Finance, t0).unwrap();
        let push = tokens::create(&mut c, "ci", Role::Ingest, t0).unwrap();
        let SignIn::Signed(who, session) = tokens::sign_in(&mut c, &tok, &readers, t0).unwrap()
        else {
            panic!("{}: a live finance token signs in", s.backend);
        };
        assert_eq!((who.name.as_str(), who.role), ("fin", Role::Finance));
        let (p, csrf) = tokens::session(&mut c, &session.id, t0).unwrap().unwrap();
        assert_eq!(
            (p.name.as_str(), csrf.as_str()),
            ("fin", session.csrf.as_str())
        );
        // The store is looked up by the id's hash: the raw id is not a key.
        assert!(
            repo::live_session(&mut c, &session.id, t0)
                .unwrap()
                .is_none()
        );
        // Expired after SESSION_HOURS.
        let later = t0 + chrono::Duration::hours(tokens::SESSION_HOURS);
        assert!(
            tokens::session(&mut c, &session.id, later)
                .unwrap()
                .is_none()
        );
        // Roles that may not read pages, and dead tokens, get no session.
        assert!(matches!(
            tokens::sign_in(&mut c, &push, &readers, t0).unwrap(),
            SignIn::RoleRefused(Role::Ingest)
        ));
        assert!(matches!(
            tokens::sign_in(&mut c, "tally_nope", &readers, t0).unwrap(),
            SignIn::NotLive
        ));
        // Signing out ends a session; revoking the token ends the others.
        let SignIn::Signed(_, other) = tokens::sign_in(&mut c, &tok, &readers, t0).unwrap() else {
            panic!("{}: second sign-in", s.backend);
        };
        tokens::sign_out(&mut c, &session.id, t0).unwrap();
        assert!(tokens::session(&mut c, &session.id, t0).unwrap().is_none());
        assert!(tokens::session(&mut c, &other.id, t0).unwrap().is_some());
        assert!(tokens::revoke(&mut c, "fin", t0).unwrap());
        assert!(
            tokens::session(&mut c, &other.id, t0).unwrap().is_none(),
            "{}",
            s.backend
        );
    }
}

#[test]
fn a_runs_own_verdicts_are_listed_by_class_in_time_order() {
    for s in stores() {
        load_fixture_day(&s);
        run_day(&s, "2026-11-20", "2026-11-21");
        let mut c = db::open(&s.url, false).unwrap();
        let run = repo::runs(&mut c).unwrap()[0].id;
        let mut seen = Vec::new();
        let classes = [Class::MissingUsage, Class::Unattributed];
        repo::each_verdict_of_run(&mut c, run, &classes, |j| {
            seen.push((j.ts_ms, *j.side, *j.verdict.class));
        })
        .unwrap();
        let count = |class: Class| seen.iter().filter(|(_, _, c)| *c == class).count();
        // The fixture day: 2 client rows missing, 3 gateway rows unattributed.
        assert_eq!(
            (count(Class::MissingUsage), count(Class::Unattributed)),
            (2, 3),
            "{}",
            s.backend
        );
        assert!(
            seen.windows(2).all(|w| w[0].0 <= w[1].0),
            "{}: time order",
            s.backend
        );
        assert!(
            seen.iter()
                .all(|(_, side, class)| (*class == Class::MissingUsage)
                    == (*side == SideKind::Client))
        );
        let mut none = 0;
        repo::each_verdict_of_run(&mut c, run + 100, &[Class::MissingUsage], |_| none += 1)
            .unwrap();
        assert_eq!(none, 0);
    }
}

/// The day's data-quality checks, on both backends: the fixture day has
/// one streamed client call logged without usage (`chatcmpl-sup014`,
/// paired with its gateway row) and no gateway row billed at zero.
#[test]
fn a_run_finds_the_streamed_calls_its_client_logged_without_usage() {
    let sup014 = chrono::DateTime::parse_from_rfc3339("2026-11-20T13:22:00.003Z")
        .unwrap()
        .timestamp_millis();
    let midnight = sup014 - sup014.rem_euclid(DAY_MS);
    let day = (midnight, midnight + DAY_MS);
    for s in stores() {
        load_fixture_day(&s);
        run_day(&s, "2026-11-20", "2026-11-21");
        let mut c = db::open(&s.url, false).unwrap();
        let run = repo::runs(&mut c).unwrap()[0].id;
        assert_eq!(
            repo::streamed_without_usage(&mut c, run, day).unwrap(),
            vec![sup014],
            "{}",
            s.backend
        );
        // Only the rows that run paired count, and only inside the window.
        assert!(
            repo::streamed_without_usage(&mut c, run + 1, day)
                .unwrap()
                .is_empty()
        );
        assert!(
            repo::streamed_without_usage(&mut c, run, (day.0, sup014))
                .unwrap()
                .is_empty()
        );
        assert!(
            repo::billed_at_zero_cost(&mut c, day).unwrap().is_empty(),
            "{}",
            s.backend
        );
    }
}

/// Issue 21: after a 10M-row day's run on PostgreSQL, the run's alerts
/// read its 49,095 unattributed rows in 3.0 s or 151.2 s instead of
/// 0.25 s. The planner's statistics had seen only earlier runs (all among
/// the most common values of `run_id`), so it expected one attribution
/// for the new run and joined them without probing. A stored run
/// now brings them up to date before anything reads it.
#[test]
fn the_planner_knows_a_new_runs_attributions_when_its_alerts_read_it() {
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    for s in stores() {
        load_fixture_day(&s);
        run_day(&s, "2026-11-20", "2026-11-21");
        let mut c = db::open(&s.url, false).unwrap();
        // SQLite's planner keeps no statistics unless told: nothing to do.
        repo::refresh_run_statistics(&mut c).unwrap();
        if s.backend != "postgres" {
            continue;
        }
        // The statistics autovacuum leaves after the first run (taken
        // here, so the test does not wait on it): one run, every value common.
        diesel::sql_query("ANALYZE run_attributions")
            .execute(&mut c)
            .unwrap();
        diesel::sql_query(
            "CREATE FUNCTION plan_rows(q text) RETURNS bigint LANGUAGE plpgsql AS $$ \
             DECLARE p json; BEGIN EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO p; \
             RETURN (p -> 0 -> 'Plan' ->> 'Plan Rows')::bigint; END $$",
        )
        .execute(&mut c)
        .unwrap();
        run_day(&s, "2026-11-20", "2026-11-21");
        let second = repo::runs(&mut c)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .max()
            .unwrap();
        let count = |sql: String, c: &mut db::AnyConnection| {
            diesel::sql_query(sql).load::<Count>(c).unwrap()[0].n
        };
        let actual = count(
            format!("SELECT count(*) AS n FROM run_attributions WHERE run_id = {second}"),
            &mut c,
        );
        let expected = count(
            format!(
                "SELECT plan_rows('SELECT * FROM run_attributions WHERE run_id = {second}') AS n"
            ),
            &mut c,
        );
        assert!(actual > 2, "the fixture day has {actual} attributions");
        assert_eq!(
            expected, actual,
            "the planner's estimate of run {second}'s attributions"
        );
    }
}

#[test]
fn costs_from_run_rollups_equal_costs_from_every_verdict() {
    use diesel::RunQueryDsl;
    for s in stores() {
        load_fixture_day(&s);
        run_day(&s, "2026-11-20", "2026-11-21");
        // On midnight: the runs' rollups answer. Off it (same rows,
        // none before the 20th): every verdict is read.
        for by in ["owner", "team", "service", "env", "key", "model", "day"] {
            let rolled = report(&s, &["costs", "--group-by", by, "--format", "json"]);
            let out = succeed(
                tally().args([
                    "report",
                    "costs",
                    "--group-by",
                    by,
                    "--format",
                    "json",
                    "--from",
                    "2026-11-19T23:59:59Z",
                    "--to",
                    "2026-11-21",
                    "--db",
                    &s.url,
                ]),
                "report off midnight",
            );
            let scanned = String::from_utf8(out.stdout).unwrap();
            assert_eq!(rolled, scanned, "{} by {by}", s.backend);
        }
        // The migration's backfill (for runs stored before rollups) sums
        // the verdicts exactly as a run does.
        let mut c = db::open(&s.url, false).unwrap();
        let run = repo::runs(&mut c).unwrap()[0].id;
        let rows = |c: &mut db::AnyConnection| {
            let mut v = Vec::new();
            repo::each_rollup(c, &[run], None, (0, i64::MAX), |r| v.push(r)).unwrap();
            v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            v
        };
        let written = rows(&mut c);
        assert!(written.len() > 10, "{}", s.backend);
        // One owner's rollups (an owner's page) are exactly that owner's
        // share of them all.
        let owner = (&written[0].team, &written[0].service, &written[0].env);
        let mut mine = Vec::new();
        let filter = Some((owner.0.as_str(), owner.1.as_str(), owner.2.as_str()));
        repo::each_rollup(&mut c, &[run], filter, (0, i64::MAX), |r| {
            mine.push(format!("{r:?}"))
        })
        .unwrap();
        mine.sort();
        let expected: Vec<String> = written
            .iter()
            .filter(|r| (&r.team, &r.service, &r.env) == owner)
            .map(|r| format!("{r:?}"))
            .collect();
        assert!(
            !mine.is_empty() && mine.len() < written.len(),
            "{}",
            s.backend
        );
        assert_eq!(mine, expected, "{}", s.backend);
        let up = std::fs::read_to_string(root().join(format!(
            "migrations/{}/2026-11-22-235000_rollup_tokens/up.sql",
            if s.backend == "sqlite" {
                "sqlite"
            } else {
                "postgres"
            }
        )))
        .unwrap();
        let start = up.find("INSERT INTO run_rollups").unwrap();
        let mut backfill = up[start..start + up[start..].find(';').unwrap()].replace(
            "FROM verdicts v JOIN usage_rows u",
            "FROM verdicts v JOIN run_attributions a \
             ON a.run_id = v.run_id AND a.id = v.attribution_id JOIN usage_rows u",
        );
        // Since migration 2026-12-06-000700 a verdict's key, owner and model
        // family are its run's attribution: the same sums, read through it.
        for column in [
            "key_name",
            "registered",
            "team",
            "service",
            "env",
            "model_family",
        ] {
            backfill = backfill.replace(&format!("v.{column}"), &format!("a.{column}"));
        }
        let wipe = "DELETE FROM run_rollups";
        diesel::sql_query(wipe).execute(&mut c).unwrap();
        assert!(rows(&mut c).is_empty());
        diesel::sql_query(&backfill).execute(&mut c).unwrap();
        assert_eq!(rows(&mut c), written, "{}", s.backend);
    }
}

/// Issue 16: a panic inside a request's transaction once left its pooled
/// connection inside that transaction. The next five pushes were answered
/// 201 on it and lost at restart, and every other writer waited on its
/// lock. Now the request fails, the connection is closed (rolled back),
/// and every acknowledged push is in the store after a restart.
#[test]
fn a_panic_mid_request_loses_no_acknowledged_push() {
    use diesel::connection::Connection;
    use tally_service::http::{ApiError, State};
    for store in stores() {
        let line = |i: usize| {
            format!(
                "{{\"ts\":\"2026-11-20T10:00:0{i}Z\",\"key\":\"k\",\"model\":\"gpt-4o\",\"route\":\"chat\",\"request_id\":\"r{i}\",\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1}}}}\n"
            )
        };
        db::open(&store.url, false).unwrap();
        // One connection, so the one the panic leaves is the one reused.
        let pool = db::pool(&store.url, 1).unwrap();
        let state = State {
            pool: pool.clone(),
            settings: tally_service::settings::Settings::default(),
            clock: || Ok(1_764_000_000_000),
            metrics: Default::default(),
            evaluations: Default::default(),
            memo: Default::default(),
            uploads: tally_service::http::Uploads::new(2),
            sign_ins: Default::default(),
        };
        actix_web::rt::System::new().block_on(async {
            // A use case that panics inside its transaction, after a write.
            let failed = state
                .db(|c| -> Result<(), ApiError> {
                    c.transaction(|c| -> Result<(), diesel::result::Error> {
                        repo::upsert_owner(
                            c,
                            &tally_schema::rows::NewOwner {
                                team: "t",
                                service: "s",
                                env: "e",
                                contact: None,
                            },
                        )
                        .unwrap();
                        panic!("injected failure mid-run");
                    })
                    .unwrap();
                    Ok(())
                })
                .await;
            assert!(failed.is_err(), "{}: the panic is an error", store.backend);
            // The store takes a write at once, and the pushes are kept.
            state
                .db(|c| db::probe_write(c).map_err(ApiError::unavailable))
                .await
                .unwrap_or_else(|e| panic!("{}: not writable: {e}", store.backend));
            let dir = tempfile::tempdir().unwrap();
            for i in 0..5 {
                let path = dir.path().join(format!("push{i}.jsonl"));
                std::fs::write(&path, line(i)).unwrap();
                let now = chrono::DateTime::from_timestamp_millis(1_764_000_000_000)
                    .unwrap()
                    .naive_utc();
                let o = state
                    .db(move |c| {
                        let plan = tally_service::app::reconcile::ReadPlan {
                            client_format: None,
                            profiles: &[],
                            named: false,
                            client_profiles: &[],
                            client_named: false,
                            min_split_bytes: u64::MAX,
                            keep_raw: true,
                        };
                        tally_service::app::ingest::ingest_file(
                            c,
                            tally_reconcile::SideKind::Client,
                            &path,
                            &format!("push {i}"),
                            plan,
                            now,
                            &mut |_| {},
                        )
                        .map_err(ApiError::internal)
                    })
                    .await
                    .unwrap();
                assert_eq!(o.new, 1, "{}: push {i} acknowledged", store.backend);
            }
        });
        drop(state);
        drop(pool);
        // "Restart": a new connection finds every acknowledged row, and
        // nothing of the failed request.
        let mut c = db::connect(&store.url).unwrap();
        assert_eq!(
            repo::count_usage(&mut c, SideKind::Client).unwrap(),
            5,
            "{}",
            store.backend
        );
        assert!(
            repo::owners(&mut c).unwrap().is_empty(),
            "{}",
            store.backend
        );
    }
}

/// Issue 16: a file is stored part by part (memory bounded by a part, not
/// the file), and the batch is the one a whole-file read made: every row
/// counted, rejects on their real lines, ordinals across parts, and a CSV
/// record with a newline inside quotes straddling a cut still read right.
#[test]
fn a_file_larger_than_a_part_is_stored_whole_and_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("big.jsonl");
    let csv = dir.path().join("big.csv");
    let rows = 45_000;
    let mut j = String::new();
    let mut c = String::from("ts,key,model,route,request_id,input_tokens,output_tokens,team\n");
    let pad = "x".repeat(150);
    for i in 0..rows {
        if i % 10_000 == 7 {
            j.push_str("{\"ts\":\"not a time\"}\n");
            c.push_str("not a time,k,m,chat,,1,1,t\n");
            continue;
        }
        // Every id appears twice, far apart: ordinals count across parts.
        let id = i % (rows / 2);
        j.push_str(&format!(
            "{{\"ts\":\"2026-11-20T10:00:00Z\",\"key\":\"k\",\"model\":\"gpt-4o\",\"route\":\"chat\",\"request_id\":\"r{id}\",\"team\":\"{pad}\",\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1}}}}\n"
        ));
        c.push_str(&format!(
            "2026-11-20T10:00:00Z,k,gpt-4o,chat,r{id},1,1,\"{pad}\nsecond line\"\n"
        ));
    }
    std::fs::write(&jsonl, &j).unwrap();
    std::fs::write(&csv, &c).unwrap();
    assert!(j.len() > 2 * usize::try_from(tally_service::app::ingest::PART_BYTES).unwrap());
    for store in stores() {
        // The CSV holds the same ids as the JSON Lines file: all duplicates.
        for (path, lines_per_row, new) in [(&jsonl, 1, rows - 5), (&csv, 2, 0)] {
            let out = succeed(
                tally()
                    .args(["ingest", "client", "--db", &store.url])
                    .arg(path),
                "ingest",
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&format!(
                    "{rows} read = {new} new + {} duplicate + 5 rejected",
                    rows - 5 - new
                )),
                "{}: {text}",
                store.backend
            );
            let mut conn = db::connect(&store.url).unwrap();
            let b = repo::batches(&mut conn).unwrap().pop().unwrap();
            let lines: Vec<i64> = repo::rejects_listed(&mut conn, b.id, 100)
                .unwrap()
                .iter()
                .map(|r| r.line)
                .collect();
            // Line 1 of the CSV is its header and each good row two lines
            // (the bad ones, one); a JSON Lines row is one line.
            let want: Vec<i64> = (0..5)
                .map(|k| {
                    let i = k * 10_000 + 7;
                    if lines_per_row == 1 {
                        i + 1
                    } else {
                        2 + 2 * i - k
                    }
                })
                .collect();
            assert_eq!(lines, want, "{} {}", store.backend, path.display());
        }
        let keys = repo::dedup_keys(&mut db::connect(&store.url).unwrap(), "client").unwrap();
        // Each id is stored under ordinals #0 and #1.
        assert_eq!(keys.len(), rows - 5, "{}", store.backend);
        assert!(keys.contains(&"id:2026-11-20:r0#1".to_owned()));
    }
}

/// Issue 16: the SQLite store was created world-readable (usage, contacts,
/// token hashes); it is its owner's alone, and so are SQLite's own files.
#[cfg(unix)]
#[test]
fn a_new_sqlite_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tally.db");
    succeed(
        tally()
            .args(["ingest", "client", "--db"])
            .arg(&db)
            .arg(root().join("fixtures/client/batch.csv")),
        "ingest",
    );
    for name in ["tally.db", "tally.db-wal", "tally.db-shm"] {
        let p = dir.path().join(name);
        if p.exists() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
}

/// Issue 17 (item 7): the registry comes from the gateway's own key and
/// team tables, as `psql \copy` writes them; the gateway's rows (named by
/// the key's hash) are then attributed to their owner.
#[test]
fn keys_import_reads_litellms_key_and_team_tables() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("LiteLLM_VerificationToken.csv");
    std::fs::write(
        &keys,
        "token,key_name,key_alias,team_id,metadata,spend\n\
         38421a3dd6372becf0707bb0ec1d1be405b690420957d45c1dc25a971cae0e63,sk-...Ab12,support-bot-prod,0b5c-team,\"{\"\"service\"\": \"\"support-bot\"\", \"\"env\"\": \"\"prod\"\", \"\"contact\"\": \"\"oncall@example.com\"\"}\",1.5\n",
    )
    .unwrap();
    let teams = dir.path().join("LiteLLM_TeamTable.csv");
    std::fs::write(&teams, "team_id,team_alias,spend\n0b5c-team,support,1.5\n").unwrap();
    for s in stores() {
        let out = succeed(
            tally()
                .args(["keys", "import", "--db", &s.url])
                .arg(&keys)
                .arg("--teams")
                .arg(&teams),
            "keys import",
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 key(s)"));
        let mut c = db::connect(&s.url).unwrap();
        let reg = tally_service::app::reference::registry_of(&mut c).unwrap();
        let e = &reg.entries[0];
        assert_eq!(
            (
                e.id.as_str(),
                e.team.as_str(),
                e.service.as_str(),
                e.env.as_str()
            ),
            ("support-bot-prod", "support", "support-bot", "prod"),
            "{}",
            s.backend
        );
        assert_eq!(e.contact.as_deref(), Some("oncall@example.com"));
        assert!(matches!(
            reg.resolve("38421a3dd6372becf0707bb0ec1d1be405b690420957d45c1dc25a971cae0e63"),
            tally_reconcile::keys::Resolved::Known(0)
        ));
    }
}

/// Lists are read a page at a time from the store (issue 18): a registry
/// imported from a gateway can hold thousands of keys, and runs pile up a
/// day at a time. On both backends the pages cut the ordered list and
/// say its length.
#[test]
fn keys_and_runs_are_read_a_page_at_a_time() {
    use tally_service::app::page::Page;
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys.toml");
    let text: String = (0..250)
        .map(|i| format!("[[key]]\nid = \"k-{i:03}\"\nteam = \"t\"\n"))
        .collect();
    std::fs::write(&keys, text).unwrap();
    for s in stores() {
        import(&s, "keys", &keys);
        let mut c = db::connect(&s.url).unwrap();
        let page = Page::new(Some(3), Some(100)).unwrap();
        let (p, _) = tally_service::app::registry::keys_page(&mut c, page).unwrap();
        let ids: Vec<&str> = p.items.iter().map(|k| k.key_id.as_str()).collect();
        assert_eq!((ids.len(), p.total), (50, 250), "{}", s.backend);
        assert_eq!((ids[0], ids[49]), ("k-200", "k-249"), "{}", s.backend);
        load_fixture_day(&s);
        for _ in 0..3 {
            succeed(&mut common::run_fixture_day(&s.url), "run");
        }
        let runs =
            tally_service::app::run::list(&mut c, Page::new(Some(1), Some(2)).unwrap()).unwrap();
        let got: Vec<i64> = runs.items.iter().map(|r| r.id).collect();
        assert_eq!((got, runs.total), (vec![3, 2], 3), "{}", s.backend);
        assert!(Page::new(Some(0), None).is_err());
    }
}

#[test]
fn a_created_token_is_alone_on_standard_output() {
    // `TOKEN=$(tally token create ...)`, as the README shows, captures the
    // token and nothing else; the notice is on standard error.
    for s in stores() {
        let out = succeed(
            tally().args([
                "token", "create", "--name", "ci", "--role", "ingest", "--db", &s.url,
            ]),
            "token create",
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let token = stdout.strip_suffix('\n').unwrap_or(&stdout);
        assert!(
            token.starts_with("tally_") && !token.contains(char::is_whitespace),
            "{}: stdout is not just the token: {stdout:?}",
            s.backend
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("shown this once"), "{stderr}");
        let mut c = db::open(&s.url, false).unwrap();
        assert!(
            tally_service::app::tokens::authenticate(&mut c, token)
                .unwrap()
                .is_some(),
            "{}: the captured text is a live token",
            s.backend
        );
    }
}

#[test]
fn one_file_that_cannot_be_stored_stops_neither_the_others_nor_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.txt");
    std::fs::write(
        &bad,
        "these are meeting notes, not a usage log\nsecond line\n",
    )
    .unwrap();
    let good = fixture("client/app.jsonl");
    let also_good = fixture("client/batch.csv");
    for s in stores() {
        let out = tally()
            .args(["ingest", "client", "--db", &s.url])
            .arg(&good)
            .arg(&bad)
            .arg(&also_good)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        // Both good files are stored and said so, before and after the bad.
        for f in [&good, &also_good] {
            let name = f.display().to_string();
            assert!(
                stdout
                    .lines()
                    .any(|l| l.contains(&name) && l.contains("read")),
                "{}: no line for {name}:\n{stdout}",
                s.backend
            );
        }
        assert!(!stdout.contains("notes.txt"), "{stdout}");
        assert!(
            stderr.contains("notes.txt: not stored")
                && stderr.contains("1 of 3 file(s) not stored"),
            "{stderr}"
        );
        // The hint names flags `ingest client` has.
        assert!(!stderr.contains("--source NAME"), "{stderr}");
        let mut c = db::open(&s.url, false).unwrap();
        let batches = repo::batches(&mut c).unwrap();
        assert_eq!(batches.len(), 2, "{}: two batches stored", s.backend);
    }
}

/// `tally report costs` over the fixture day with extra flags: (exit code,
/// stdout, stderr).
fn report_costs(s: &Store, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = tally()
        .args([
            "report",
            "costs",
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-21",
        ])
        .args(extra)
        .args(["--db", &s.url])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_report_over_rows_no_run_covers_says_so_and_fails_under_strict() {
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        // Ingested, never run: finance must not read an empty table as $0.
        let (code, out, err) = report_costs(&s, &["--format", "json"]);
        assert_eq!(code, Some(0), "{b}: {err}");
        assert_eq!(out.trim(), "[]", "{b}: stdout stays machine-readable");
        assert!(
            err.contains("stored row(s) in this window were never reconciled")
                && err.contains("`tally run --from 2026-11-20 --to 2026-11-21`"),
            "{b}: {err}"
        );
        let (code, _, _) = report_costs(&s, &["--strict"]);
        assert_eq!(code, Some(1), "{b}: --strict refuses an incomplete report");
        // Run: complete, no warning, --strict passes.
        run_day(&s, "2026-11-20", "2026-11-21");
        let (code, out, err) = report_costs(&s, &["--strict"]);
        assert_eq!(code, Some(0), "{b}: {err}");
        assert!(!err.contains("warning"), "{b}: {err}");
        assert!(out.contains("support"), "{b}: {out}");
        // Every line adds up: reported = computed + variance + what the
        // unpriced rows were billed (issue 19: a page that did not add up
        // was read as an unexplained gap).
        let (_, json, _) = report_costs(&s, &["--format", "json"]);
        let lines: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let dec = |v: &serde_json::Value| {
            v.as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        };
        let mut unpriced_seen = false;
        for l in &lines {
            assert_eq!(
                dec(&l["reported_cost"]),
                dec(&l["computed_cost"]) + dec(&l["variance"]) + dec(&l["unpriced_reported"]),
                "{b}: {l}"
            );
            unpriced_seen |= dec(&l["unpriced_reported"]) > rust_decimal::Decimal::ZERO;
        }
        assert!(
            unpriced_seen,
            "{b}: the fixture day has unpriced billed rows"
        );
        // Rows stored after the run that covers them: said, with the run.
        let dir = tempfile::tempdir().unwrap();
        let late = dir.path().join("late.jsonl");
        std::fs::write(
            &late,
            "{\"ts\":\"2026-11-20T23:59:00Z\",\"request_id\":\"late-1\",\"key\":\"key_support_prod\",\
             \"model\":\"gpt-4o-mini\",\"route\":\"chat\",\"input_tokens\":10,\"output_tokens\":2}\n",
        )
        .unwrap();
        ingest(&s, "client", &[&late]);
        let (code, _, err) = report_costs(&s, &["--strict"]);
        assert_eq!(code, Some(1), "{b}: {err}");
        assert!(
            err.contains("1 row(s) arrived after the run that covers them"),
            "{b}: {err}"
        );
    }
}

#[test]
fn a_dated_price_import_warns_when_stored_rows_are_older() {
    let tmp = tempfile::tempdir().unwrap();
    let json = litellm_price_map(tmp.path());
    for s in stores() {
        load_fixture_day(&s);
        let out = succeed(
            tally()
                .args([
                    "prices",
                    "import",
                    "--effective-from",
                    "2026-11-21",
                    "--db",
                    &s.url,
                ])
                .arg(&json),
            "prices import",
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("stored row(s) are older than 2026-11-21")
                && err.contains("--effective-from"),
            "{}: {err}",
            s.backend
        );
        // On or before the rows' first day: nothing to warn of.
        let out = succeed(
            tally()
                .args([
                    "prices",
                    "import",
                    "--effective-from",
                    "2026-11-01",
                    "--db",
                    &s.url,
                ])
                .arg(&json),
            "prices import",
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.contains("warning"), "{}: {err}", s.backend);
    }
}

#[test]
fn an_id_used_again_on_another_day_is_stored_not_dropped_as_a_duplicate() {
    // An app whose request ids restart every day (a counter, a date-less
    // trace id): the second day's rows were once "duplicates" and lost.
    let dir = tempfile::tempdir().unwrap();
    let line = |day: &str, tokens: u32| {
        format!(
            "{{\"ts\":\"{day}T09:00:00Z\",\"request_id\":\"req-1\",\"key\":\"key_support_prod\",\
             \"model\":\"gpt-4o-mini\",\"route\":\"chat\",\"input_tokens\":{tokens},\"output_tokens\":1}}\n"
        )
    };
    let monday = dir.path().join("monday.jsonl");
    let tuesday = dir.path().join("tuesday.jsonl");
    let both = dir.path().join("both.jsonl");
    std::fs::write(&monday, line("2026-11-20", 10)).unwrap();
    std::fs::write(&tuesday, line("2026-11-21", 20)).unwrap();
    std::fs::write(&both, line("2026-11-20", 10) + &line("2026-11-21", 20)).unwrap();
    for s in stores() {
        let b = s.backend;
        let out = ingest(&s, "client", &[&monday]);
        assert!(out.contains("1 read = 1 new + 0 duplicate"), "{b}: {out}");
        assert!(!out.contains("another UTC day"), "{b}: {out}");
        let out = ingest(&s, "client", &[&tuesday]);
        assert!(out.contains("1 read = 1 new + 0 duplicate"), "{b}: {out}");
        // Kept, and said: the user sees that ids repeat across days.
        assert!(
            out.contains("1 row(s) use a request id also seen on another UTC day"),
            "{b}: {out}"
        );
        // Both days again in one export: a true duplicate is still refused.
        let out = ingest(&s, "client", &[&both]);
        assert!(out.contains("2 read = 0 new + 2 duplicate"), "{b}: {out}");
        let mut c = db::open(&s.url, false).unwrap();
        assert_eq!(
            repo::count_usage(&mut c, SideKind::Client).unwrap(),
            2,
            "{b}"
        );
    }
    // One export holding both days, into an empty store: counted too.
    for s in stores() {
        let out = ingest(&s, "client", &[&both]);
        assert!(
            out.contains("2 read = 2 new + 0 duplicate"),
            "{}: {out}",
            s.backend
        );
        assert!(
            out.contains("2 row(s) use a request id also seen on another UTC day"),
            "{}: {out}",
            s.backend
        );
    }
}

#[test]
fn the_migration_dates_stored_id_keys_exactly_as_ingest_does() {
    // A store written before ids were scoped by day: its keys lack the
    // day. The migration's SQL (both backends) must give each key the day
    // ingest gives it today, or an export ingested again would double.
    use diesel::prelude::*;
    use tally_schema::schema::usage_rows;
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        let mut c = db::connect(&s.url).unwrap();
        let keys = |c: &mut tally_service::db::AnyConnection| -> Vec<(i64, String)> {
            usage_rows::table
                .select((usage_rows::id, usage_rows::dedup_key))
                .order(usage_rows::id)
                .load(c)
                .unwrap()
        };
        let today = keys(&mut c);
        assert!(
            today.iter().any(|(_, k)| k.starts_with("id:2026-11-20:")),
            "{b}: {today:?}"
        );
        let dir = if b == "sqlite" { "sqlite" } else { "postgres" };
        let sql = |which: &str| {
            std::fs::read_to_string(root().join(format!(
                "migrations/{dir}/2026-12-05-000000_dedup_by_day/{which}.sql"
            )))
            .unwrap()
        };
        diesel::sql_query(sql("down")).execute(&mut c).unwrap();
        let before = keys(&mut c);
        assert!(
            before.iter().all(|(_, k)| !k.starts_with("id:2026-")),
            "{b}: the old keys have no day"
        );
        diesel::sql_query(sql("up")).execute(&mut c).unwrap();
        assert_eq!(
            keys(&mut c),
            today,
            "{b}: the migration's days are ingest's"
        );
    }
}

#[test]
fn names_with_quotes_escapes_and_non_ascii_come_back_from_the_store_as_written() {
    // A run reads a row's key, models, route and labels on SQLite as one
    // JSON array built by the database (`json_array`), on PostgreSQL as
    // columns: text that JSON must escape has to come back unchanged on
    // both, or a run would charge the wrong key and owner.
    let tmp = tempfile::tempdir().unwrap();
    let client = tmp.path().join("odd.csv");
    std::fs::write(
        &client,
        "ts,key,model,route,request_id,team,service,env,input_tokens,output_tokens\n\
         2026-11-20T13:00:00.000Z,\"key \"\"q\"\" \\\\ \u{1f}x\",gpt-4o,/v1/chat/completions,r-1,\
         \u{e9}quipe \u{2603},\"svc, \\n\",pr\u{f6}d,10,5\n",
    )
    .unwrap();
    for s in stores() {
        let out = ingest(&s, "client", &[&client]);
        assert!(out.contains("1 read = 1 new"), "{}: {out}", s.backend);
        let mut c = db::connect(&s.url).unwrap();
        let mut seen = Vec::new();
        repo::each_usage_in(&mut c, "client", (0, i64::MAX), |r| {
            seen.push(match r.names {
                StoredNames::Json(text) => serde_json::from_str::<UsageNames>(&text).unwrap(),
                StoredNames::Columns(n) => n,
            });
            Ok::<_, db::DbError>(())
        })
        .unwrap();
        let names = match seen.as_slice() {
            [n] => n.clone(),
            other => panic!("{}: {other:?}", s.backend),
        };
        assert_eq!(names.key_name, "key \"q\" \\\\ \u{1f}x", "{}", s.backend);
        assert_eq!(names.model, "gpt-4o", "{}", s.backend);
        assert_eq!(names.route, "/v1/chat/completions", "{}", s.backend);
        assert_eq!(
            (
                names.team.as_str(),
                names.service.as_str(),
                names.env.as_str()
            ),
            ("\u{e9}quipe \u{2603}", "svc, \\n", "pr\u{f6}d"),
            "{}",
            s.backend
        );
        succeed(&mut run_fixture_day(&s.url), "run");
        let mut keys = Vec::new();
        repo::each_current_verdict(&mut c, None, (0, i64::MAX), |j| {
            keys.push((j.verdict.key_name, j.verdict.class.0));
        })
        .unwrap();
        assert_eq!(
            keys,
            [("key \"q\" \\\\ \u{1f}x".to_owned(), Class::MissingUsage)],
            "{}",
            s.backend
        );
    }
}

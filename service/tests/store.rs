//! The store on both backends: migrations, repository functions, and
//! `tally ingest` as a user runs it. Every test runs on SQLite and, in a
//! `postgres` build, on a fresh database of a real PostgreSQL cluster.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]

mod common;

use std::path::Path;

use common::{Store, root, stores, succeed, tally};
use tally_service::db::{self, repo};

fn ingest(store: &Store, side: &str, files: &[&Path]) -> String {
    let out = succeed(
        tally()
            .args(["ingest", side, "--db", &store.url])
            .args(files),
        &format!("ingest {side} on {}", store.backend),
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fixture(rel: &str) -> std::path::PathBuf {
    root().join("fixtures").join(rel)
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
        assert_eq!(db::pending(&mut c).unwrap().len(), 1, "{}", s.backend);
        assert_eq!(db::migrate(&mut c).unwrap().len(), 1, "{}", s.backend);
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
        assert_eq!(repo::count_usage(&mut c, "gateway").unwrap(), 102);
        let batches = repo::batches(&mut c).unwrap();
        assert_eq!(batches.len(), 1, "{}", s.backend);
        let b = &batches[0];
        assert_eq!(b.rows_read, b.rows_new + b.rows_duplicate + b.rows_rejected);
        assert_eq!(b.source, "litellm");
        let by_hash = repo::batch_by_hash(&mut c, "gateway", &b.sha256).unwrap();
        assert_eq!(by_hash.as_ref(), Some(b));
        assert!(
            repo::batch_by_hash(&mut c, "client", &b.sha256)
                .unwrap()
                .is_none()
        );
        let rejects = repo::rejects_of(&mut c, b.id).unwrap();
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
        assert!(keys.contains(&"id:chatcmpl-sup023#0".to_owned()));
        assert!(keys.contains(&"id:chatcmpl-sup023#1".to_owned()));
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
        let mut wc = db::connect(&whole.url).unwrap();
        let expected = repo::dedup_keys(&mut wc, "gateway").unwrap();

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
        let mut c = db::connect(&s.url).unwrap();
        assert_eq!(
            repo::dedup_keys(&mut c, "gateway").unwrap(),
            expected,
            "{}",
            s.backend
        );
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
        let rejects = repo::rejects_of(&mut c, 1).unwrap();
        let big = rejects.iter().find(|r| r.line == 4).unwrap();
        assert_eq!(big.field, "cost");
        assert!(big.reason.contains("does not fit"), "{}", big.reason);
    }
}

//! The fixture day loaded into a store through the CLI, as a user would:
//! keys, prices and aliases imported, both sides ingested.
#![expect(
    clippy::unwrap_used,
    reason = "test support: a failure is a failed test"
)]

use std::path::Path;

use crate::common::{Store, root, succeed, tally};

/// `tally ingest SIDE FILES` into a store, which must succeed; its output.
pub fn ingest(store: &Store, side: &str, files: &[&Path]) -> String {
    let out = succeed(
        tally()
            .args(["ingest", side, "--db", &store.url])
            .args(files),
        &format!("ingest {side} on {}", store.backend),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `tally WHAT import FILE` into a store, which must succeed; its output.
pub fn import(store: &Store, what: &str, file: &Path) -> String {
    let out = succeed(
        tally().args([what, "import", "--db", &store.url]).arg(file),
        &format!("{what} import on {}", store.backend),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fixture file.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    root().join("fixtures").join(rel)
}

/// Imports the fixture registry, prices and aliases and ingests the fixture day.
pub fn load_fixture_day(s: &Store) {
    for (what, file) in [
        ("keys", "keys.toml"),
        ("prices", "prices.toml"),
        ("aliases", "aliases.toml"),
    ] {
        import(s, what, &fixture(file));
    }
    ingest(
        s,
        "client",
        &[&fixture("client/app.jsonl"), &fixture("client/batch.csv")],
    );
    ingest(
        s,
        "gateway",
        &[
            &fixture("gateway/litellm_spendlogs.csv"),
            &fixture("gateway/openrouter.csv"),
        ],
    );
}

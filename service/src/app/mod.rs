//! Use cases: each one orchestrates I/O around the pure engine.

pub mod alerts;
pub mod dashboard;
pub mod error;
pub mod follow_up;
pub mod generate;
pub mod ingest;
pub mod memo;
pub mod names;
pub mod page;
pub mod periods;
pub mod quotas;
pub mod reconcile;
pub mod reference;
pub mod registry;
pub mod report;
pub mod reprice;
pub mod run;
pub mod split;
pub mod sums;
pub mod tieout;
pub mod tokens;

/// The message a panic carried, for the one line that reports it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// The fixture day in a fresh SQLite store, loaded through the use cases
/// themselves, for the use cases' own tests.
#[cfg(all(test, feature = "sqlite"))]
#[expect(
    clippy::expect_used,
    reason = "test support: a fixture that cannot load is a failed test"
)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    use crate::db::AnyConnection;

    /// A file of `fixtures/`.
    pub fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(rel)
    }

    /// A store in `dir` holding the fixture day's reference data and rows.
    pub fn fixture_store(dir: &Path) -> AnyConnection {
        let url = format!("sqlite://{}", dir.join("tally.db").display());
        let mut c = crate::db::open(&url, false).expect("a fresh SQLite store");
        super::reference::import_keys(&mut c, &fixture("keys.toml"), None).expect("keys");
        let now = chrono::DateTime::from_timestamp(1_795_200_000, 0)
            .expect("a time")
            .naive_utc();
        super::reference::import_prices(&mut c, &fixture("prices.toml"), 0, now).expect("prices");
        super::reference::import_aliases(&mut c, &fixture("aliases.toml")).expect("aliases");
        for (kind, files) in [
            (
                tally_reconcile::SideKind::Client,
                ["client/app.jsonl", "client/batch.csv"],
            ),
            (
                tally_reconcile::SideKind::Gateway,
                ["gateway/litellm_spendlogs.csv", "gateway/openrouter.csv"],
            ),
        ] {
            for f in files {
                ingest(&mut c, kind, &fixture(f), f, now);
            }
        }
        c
    }

    /// Ingests `file` (named `name`) as `kind` with the built-in
    /// profiles, as `tally ingest` does, at `now`.
    pub fn ingest(
        c: &mut AnyConnection,
        kind: tally_reconcile::SideKind,
        file: &Path,
        name: &str,
        now: chrono::NaiveDateTime,
    ) {
        let builtins = tally_reconcile::parse::mapping::Profile::builtins().expect("profiles");
        let plan = super::reconcile::ReadPlan {
            client_format: None,
            profiles: &builtins,
            named: false,
            client_profiles: &[],
            client_named: false,
            min_split_bytes: u64::MAX,
            keep_raw: true,
        };
        super::ingest::ingest_file(c, kind, file, name, plan, now, &mut |_| {}).expect("ingest");
    }

    /// 2026-11-20, UTC, in ms.
    pub const DAY: (i64, i64) = (1_795_132_800_000, 1_795_219_200_000);
}

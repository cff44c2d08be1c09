//! The layers of `service/` run one way (issue 18): `main` -> `cli` | `http`
//! -> `app` (use cases) -> `db` | `mail` | the engine. This test reads the
//! sources and fails on an import against the grain, so the direction is
//! kept by `cargo test`, not by review.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap_or_else(|e| panic!("{e}")).path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Lines of the files under `dir` (or the file `dir`) that name any of
/// `banned`, outside comments.
fn offenders(dir: &str, banned: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let files = if root.is_dir() {
        sources(&root)
    } else {
        vec![root]
    };
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for b in banned {
                if code.contains(b) {
                    out.push(format!("{}:{}: `{b}`: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn use_cases_import_no_front_end_and_touch_no_terminal() {
    let bad = offenders(
        "app",
        &[
            "crate::cli",
            "crate::http",
            "crate::output",
            "actix",
            "clap::",
            "std::io::stdout",
            "std::io::stderr",
            "println!",
            "eprintln!",
            "IsTerminal",
            // Geometry is the pages' (http/views): use cases return figures.
            "_px",
            "chart::",
        ],
    );
    assert!(bad.is_empty(), "app/ reaches outward:\n{}", bad.join("\n"));
}

#[test]
fn settings_and_the_store_import_no_use_case() {
    for dir in ["settings.rs", "db", "mail.rs", "clock.rs", "output.rs"] {
        let bad = offenders(dir, &["crate::app", "crate::cli", "crate::http"]);
        assert!(bad.is_empty(), "{dir} reaches up:\n{}", bad.join("\n"));
    }
}

#[test]
fn use_cases_never_read_the_wall_clock() {
    let bad = offenders(
        "app",
        &[
            "SystemTime",
            "Utc::now",
            "Local::now",
            "clock::now_ms",
            "clock::utc_now",
        ],
    );
    assert!(
        bad.is_empty(),
        "app/ reads the clock instead of being given it:\n{}",
        bad.join("\n")
    );
}

/// The error policy: typed errors below the drivers (`main`, `cli/`,
/// `http/`, `jobs.rs`), which alone may hold an `anyhow::Error`.
#[test]
fn nothing_below_the_drivers_returns_anyhow() {
    for dir in [
        "app",
        "db",
        "mail.rs",
        "settings.rs",
        "export.rs",
        "clock.rs",
        "files.rs",
        "text.rs",
    ] {
        let bad = offenders(dir, &["anyhow"]);
        assert!(bad.is_empty(), "{dir} uses anyhow:\n{}", bad.join("\n"));
    }
}

#[test]
fn the_server_reaches_the_store_only_through_use_cases() {
    let bad = offenders("http", &["repo::", "crate::cli"]);
    assert!(
        bad.is_empty(),
        "http/ around the use cases:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_engine_reaches_nothing_outward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reconcile/src");
    let mut bad = Vec::new();
    for f in sources(&root) {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for b in [
            "tally_service",
            "tally_schema",
            "diesel",
            "actix",
            "tokio",
            "std::fs::",
            "SystemTime",
        ] {
            if text
                .lines()
                .any(|l| l.split("//").next().unwrap_or("").contains(b))
            {
                bad.push(format!("{}: `{b}`", f.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the engine reaches outward:\n{}",
        bad.join("\n")
    );
}

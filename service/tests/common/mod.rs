//! Shared test support: the `tally` binary, and a private PostgreSQL
//! cluster for the store tests.
//!
//! The cluster is real (Debian's `postgresql` package): `initdb` into a
//! temporary folder, `postgres` listening on 127.0.0.1 at a free port, one
//! cluster per test binary and one fresh database per test. It is never
//! skipped: without PostgreSQL's programs a `postgres`-feature test fails
//! and says what to install.
#![expect(
    clippy::unwrap_used,
    reason = "test support: a failure is a failed test"
)]

use std::path::PathBuf;
use std::process::Command;
#[cfg(feature = "postgres")]
use std::{
    path::Path,
    process::Stdio,
    sync::OnceLock,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// The repository root (fixtures live there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `tally` binary, run from the repository root.
pub fn tally() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tally"));
    c.current_dir(root());
    c.env_remove("TALLY_DATABASE_URL");
    c
}

/// `tally run` over the fixture day (2026-11-20, UTC) on the store `db`.
pub fn run_fixture_day(db: &str) -> Command {
    let mut c = tally();
    c.args([
        "run",
        "--from",
        "2026-11-20",
        "--to",
        "2026-11-21",
        "--db",
        db,
    ]);
    c
}

/// Runs a command that must succeed; on failure the panic shows its stderr.
pub fn succeed(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tally reconcile` on the fixture day, with a fixed report time.
pub const FIXTURE_ARGS: [&str; 14] = [
    "reconcile",
    "--client",
    "fixtures/client/app.jsonl",
    "fixtures/client/batch.csv",
    "--gateway",
    "fixtures/gateway/litellm_spendlogs.csv",
    "fixtures/gateway/openrouter.csv",
    "--keys",
    "fixtures/keys.toml",
    "--prices",
    "fixtures/prices.toml",
    "--aliases",
    "fixtures/aliases.toml",
    "--now=2026-11-21T06:00:00Z",
];

/// A fresh store for one test: a SQLite file in a temporary folder, or a
/// new database in the shared PostgreSQL cluster.
pub struct Store {
    /// Its URL, as `--db` takes it.
    pub url: String,
    /// Which backend, for messages.
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
}

/// One fresh store on every backend this build has.
pub fn stores() -> Vec<Store> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tally.db").display());
    let v = vec![Store {
        url,
        backend: "sqlite",
        _dir: Some(dir),
    }];
    #[cfg(feature = "postgres")]
    let v = {
        let mut v = v;
        v.push(Store {
            url: cluster().new_database(),
            backend: "postgres",
            _dir: None,
        });
        v
    };
    v
}

/// The test binary's PostgreSQL cluster.
#[cfg(feature = "postgres")]
pub struct Cluster {
    port: u16,
    /// The watchdog shell; never waited for: it outlives the tests on
    /// purpose, to stop the server after them.
    _watchdog: std::process::Child,
    next: AtomicU32,
}

/// Starts the cluster on first use.
#[cfg(feature = "postgres")]
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

#[cfg(feature = "postgres")]
fn pg_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("TALLY_PG_BIN") {
        return Path::new(&dir).join(name);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's `{name}` not found under /usr/lib/postgresql/*/bin: \
             install Debian's `postgresql` package (or set TALLY_PG_BIN)"
        )
    })
}

#[cfg(feature = "postgres")]
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root).
#[cfg(feature = "postgres")]
fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

#[cfg(feature = "postgres")]
impl Cluster {
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!("tally-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the cluster folder");
        }
        let data = dir.join("data");
        let out = as_pg_user(&pg_bin("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A watchdog shell owns the server: when this test process is gone
        // (checked through /proc: as another user, `kill -0` cannot see it)
        // (statics are never dropped), it stops the server and removes the
        // cluster, so no test run leaves a PostgreSQL behind.
        let script = format!(
            "{postgres} -D {data} -p {port} -h 127.0.0.1 -k {dir} -F \
               -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
               >{dir}/server.log 2>&1 &\n\
             pg=$!\n\
             while [ -d /proc/{me} ] && kill -0 $pg 2>/dev/null; do sleep 0.2; done\n\
             kill -INT $pg 2>/dev/null; wait $pg\n\
             rm -rf {dir}\n",
            postgres = pg_bin("postgres").display(),
            data = data.display(),
            dir = dir.display(),
            me = std::process::id(),
        );
        let mut sh = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let watchdog = sh
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let c = Cluster {
            port,
            _watchdog: watchdog,
            next: AtomicU32::new(0),
        };
        c.wait_ready(&dir);
        c
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn wait_ready(&self, dir: &Path) {
        use diesel::Connection;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match diesel::PgConnection::establish(&self.admin_url()) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "PostgreSQL did not start: {e}\n{}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A new, empty database; its URL.
    pub fn new_database(&self) -> String {
        use diesel::{Connection, RunQueryDsl};
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let mut c = diesel::PgConnection::establish(&self.admin_url()).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

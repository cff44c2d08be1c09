//! The store: one diesel connection type over SQLite and PostgreSQL.
//!
//! Every difference between the two backends lives in this module: which
//! connection a URL opens, SQLite's per-connection pragmas, the embedded
//! migrations of each, and the repository functions whose SQL differs
//! (written once and compiled for each backend by `on_backend!`).

pub mod repo;

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("build with at least one store backend: feature `sqlite` or `postgres`");

pub use conn::AnyConnection;

// Private: the derive generates helper types (the multi-backend, its bind
// collector, ...) that are not part of the store's API.
mod conn {
    /// A connection to either backend.
    #[derive(diesel::MultiConnection)]
    pub enum AnyConnection {
        /// PostgreSQL, for production.
        #[cfg(feature = "postgres")]
        Postgresql(diesel::PgConnection),
        /// The embedded default: a SQLite file.
        #[cfg(feature = "sqlite")]
        Sqlite(diesel::SqliteConnection),
    }
}

/// Runs the same code on whichever backend a connection is, with `$c` bound
/// to the concrete connection: for SQL diesel's multi-connection cannot
/// express (batch inserts, `ON CONFLICT`), the Vaultwarden pattern.
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            #[cfg(feature = "postgres")]
            $crate::db::AnyConnection::Postgresql($c) => $body,
            #[cfg(feature = "sqlite")]
            $crate::db::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_backend;

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// What the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database URL names no backend this build has.
    #[error("database URL `{url}`: {reason}")]
    Url {
        /// The URL, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot open the database `{url}`: {source}")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// Diesel's error.
        source: diesel::ConnectionError,
    },
    /// A query failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// The change would break a uniqueness rule (a name in use).
    #[error("{0}")]
    Conflict(String),
    /// No connection could be had from the pool.
    #[error("store connection pool: {0}")]
    Pool(String),
    /// Running migrations failed.
    #[error("migrations: {0}")]
    Migration(String),
}

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`, or a bare path.
    Sqlite,
    /// `postgres://...` or `postgresql://...`.
    Postgres,
}

/// The URL with any password replaced by `***`, for messages and logs:
/// in the user-info (a password may itself hold `@`, so the host starts
/// after the last one), in a `password=` query parameter, and in a libpq
/// `key=value` string.
pub fn redact(url: &str) -> String {
    // The host starts after the last `@`: a password may hold `@`, `/` or
    // `?` itself. (An `@` later in the URL only hides more than needed.)
    let url = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((cred, host)) => format!("{scheme}://{}@{host}", hide_password(cred)),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    redact_params(&url)
}

fn hide_password(cred: &str) -> String {
    match cred.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => cred.to_owned(),
    }
}

/// `password=...` (a query parameter or a libpq key/value pair) hidden.
fn redact_params(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        let (before, at) = rest
            .split_at_checked(i + "password=".len())
            .unwrap_or((rest, ""));
        out.push_str(before);
        out.push_str("***");
        let end = at.find(['&', ' ', ';']).unwrap_or(at.len());
        rest = at.get(end..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Picks the backend from the URL scheme (never by trying each in turn:
/// SQLite would accept any string as a file name).
pub fn backend_of(url: &str) -> Result<(Backend, &str), DbError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok((Backend::Sqlite, path));
    }
    if url.contains("://") {
        return Err(DbError::Url {
            url: redact(url),
            reason: "unknown scheme: use sqlite://PATH or postgres://...".to_owned(),
        });
    }
    // A libpq `host=... password=...` string is not a file name: taken as
    // one, it once made a SQLite file named after the password.
    if url.contains('=') && url.contains(' ') {
        return Err(DbError::Url {
            url: redact(url),
            reason: "this looks like a libpq key=value string: write it as a URL, \
                     postgres://USER:PASSWORD@HOST:PORT/DB"
                .to_owned(),
        });
    }
    Ok((Backend::Sqlite, url))
}

/// `n` more connections to the store at `url`, to read on beside one that
/// writes (a run reads its rows on them), or none where another connection
/// would open another store: an in-memory SQLite database.
pub fn readers(url: &str, n: usize) -> Result<Vec<AnyConnection>, DbError> {
    let (backend, target) = backend_of(url)?;
    if backend == Backend::Sqlite && (target == ":memory:" || target.contains("mode=memory")) {
        return Ok(Vec::new());
    }
    (0..n).map(|_| connect(url)).collect()
}

/// Idle connections [`spare_readers`] leaves in the pool for other
/// requests.
const LEFT_FOR_OTHERS: u32 = 2;

/// Up to `want` connections from the pool to read on beside one that
/// writes (see [`readers`]), taken only while more than two stay idle
/// for other requests, and never waited for: a run goes on with
/// fewer rather than hold anyone up.
pub fn spare_readers(pool: &Pool, want: usize) -> Vec<diesel::r2d2::PooledConnection<Manager>> {
    let mut taken = Vec::new();
    while taken.len() < want && pool.state().idle_connections > LEFT_FOR_OTHERS {
        match pool.try_get() {
            Some(c) => taken.push(c),
            None => break,
        }
    }
    taken
}

/// Opens a connection for `url`. SQLite connections get their pragmas:
/// foreign keys on, WAL (readers never block the writer), and a busy
/// timeout long enough for another process's ingest batch to commit.
pub fn connect(url: &str) -> Result<AnyConnection, DbError> {
    let (backend, target) = backend_of(url)?;
    let connect_err = |source| DbError::Connect {
        url: redact(url),
        source,
    };
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            // A new store is made readable by its owner only (its WAL and
            // shared-memory files take the same mode).
            if target != ":memory:" && !target.starts_with("file:") {
                crate::files::touch_private(std::path::Path::new(target)).map_err(|e| {
                    DbError::Url {
                        url: redact(url),
                        reason: format!("cannot create the store file: {e}"),
                    }
                })?;
            }
            let mut c = diesel::SqliteConnection::establish(target).map_err(connect_err)?;
            // batch_execute runs every statement (a prepared query would
            // run only the first). The busy timeout comes first: switching
            // to WAL itself waits on another process's lock. A page
            // cache of 16 MiB a connection (SQLite's default is 2 MiB) keeps
            // a month's rollups and an owner's verdicts in memory between
            // views (issue 21). Not a memory map: that turns a disk's read
            // error into SIGBUS, which kills the process, instead of an
            // error a request can return.
            use diesel::connection::SimpleConnection;
            c.batch_execute(
                "PRAGMA busy_timeout = 60000; PRAGMA foreign_keys = ON; \
                 PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA cache_size = -16384;",
            )?;
            Ok(AnyConnection::Sqlite(c))
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => Ok(AnyConnection::Postgresql(
            diesel::PgConnection::establish(target).map_err(connect_err)?,
        )),
        #[cfg_attr(
            all(feature = "sqlite", feature = "postgres"),
            expect(unreachable_patterns, reason = "both backends are built")
        )]
        other => Err(DbError::Url {
            url: redact(url),
            reason: format!("this build of tally has no {other:?} support (cargo feature)"),
        }),
    }
}

/// Runs pending migrations; returns the versions applied.
pub fn migrate(conn: &mut AnyConnection) -> Result<Vec<String>, DbError> {
    let done = match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.iter().map(ToString::to_string).collect()),
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.iter().map(ToString::to_string).collect()),
    };
    done.map_err(|e| DbError::Migration(e.to_string()))
}

/// Names of the migrations not yet applied.
pub fn pending(conn: &mut AnyConnection) -> Result<Vec<String>, DbError> {
    let p = match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => c
            .pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.name().to_string()).collect()),
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => c
            .pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.name().to_string()).collect()),
    };
    p.map_err(|e| DbError::Migration(e.to_string()))
}

/// A SQLite store's claim by one server, held while the server runs: a
/// second `tally serve` on the same file is refused at start, because two
/// servers on one SQLite file starve each other's writers (measured in
/// issue 16: 37 pushes in 45 s against 917 for one server, a p99 of 61 s,
/// and "database is locked" failures). Replicas belong on PostgreSQL.
#[derive(Debug)]
pub struct ServerClaim {
    _file: Option<std::fs::File>,
}

/// Claims the store at `url` for this server: for SQLite, an exclusive
/// lock on `<file>.serve.lock` (released when the process ends, however
/// it ends); for PostgreSQL, nothing (replicas share it safely).
pub fn claim_for_server(url: &str) -> Result<ServerClaim, DbError> {
    let (backend, target) = backend_of(url)?;
    if backend != Backend::Sqlite {
        return Ok(ServerClaim { _file: None });
    }
    let path = format!("{target}.serve.lock");
    let refuse = |reason: String| DbError::Url {
        url: redact(url),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| refuse(format!("cannot open its lock file `{path}`: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(ServerClaim { _file: Some(file) }),
        Err(std::fs::TryLockError::WouldBlock) => Err(refuse(
            "another `tally serve` is already using this SQLite store. A SQLite store serves \
             one server; run replicas on PostgreSQL (database.url = \"postgres://...\")"
                .to_owned(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(refuse(format!("cannot lock `{path}`: {e}"))),
    }
}

/// Opens the store and, unless `no_migrate`, brings its schema up to date.
/// With `no_migrate`, a store with pending migrations is refused rather
/// than used with the wrong shape.
pub fn open(url: &str, no_migrate: bool) -> Result<AnyConnection, DbError> {
    let mut conn = connect(url)?;
    if no_migrate {
        let p = pending(&mut conn)?;
        if !p.is_empty() {
            return Err(DbError::Migration(format!(
                "{} pending migration(s) ({}); run `tally db migrate`",
                p.len(),
                p.join(", ")
            )));
        }
    } else {
        migrate(&mut conn)?;
    }
    Ok(conn)
}

/// A pool of store connections for the server: each made by [`connect`],
/// so SQLite's pragmas hold on every one.
pub type Pool = diesel::r2d2::Pool<Manager>;

/// Makes pooled connections from a URL (diesel's own `ConnectionManager`
/// would pick the backend by trying each, which SQLite always accepts).
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
}

impl diesel::r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = DbError;

    fn connect(&self) -> Result<AnyConnection, DbError> {
        connect(&self.url)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), DbError> {
        use diesel::connection::SimpleConnection;
        Ok(conn.batch_execute("SELECT 1")?)
    }

    /// A connection coming back inside a transaction (a panic or an early
    /// return part-way through one) is closed, which rolls it back, never
    /// pooled: handed to the next request, its writes would be acknowledged
    /// and then lost, and on SQLite its write lock would stall every other
    /// writer (issue 16).
    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        let broken = diesel::r2d2::R2D2Connection::is_broken(conn);
        if broken {
            tracing::warn!(
                "a store connection came back inside a transaction: closed, rolled back"
            );
        }
        broken
    }
}

/// Whether the store can take a write now, waiting at most two seconds for
/// the write lock: SQLite takes it (`BEGIN IMMEDIATE`), PostgreSQL takes a
/// writer's lock on the batches table (refused on a read-only replica);
/// either way rolled back at once. `/readyz` answers with it.
pub fn probe_write(conn: &mut AnyConnection) -> Result<(), DbError> {
    use diesel::connection::SimpleConnection;
    match conn {
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => {
            c.batch_execute("PRAGMA busy_timeout = 2000")?;
            let probe = c.batch_execute("BEGIN IMMEDIATE; ROLLBACK;");
            c.batch_execute("PRAGMA busy_timeout = 60000")?;
            probe?;
        }
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => {
            let probe = c.batch_execute(
                "BEGIN; SET LOCAL lock_timeout = '2s'; \
                 LOCK TABLE ingest_batches IN ROW EXCLUSIVE MODE; ROLLBACK;",
            );
            if probe.is_err() {
                let _ = c.batch_execute("ROLLBACK");
            }
            probe?;
        }
    }
    Ok(())
}

/// A pool of `size` connections to `url`; the first is made now, so a
/// store that cannot be reached fails here, at start.
pub fn pool(url: &str, size: u32) -> Result<Pool, DbError> {
    diesel::r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(std::time::Duration::from_secs(30))
        .build(Manager {
            url: url.to_owned(),
        })
        .map_err(|e| DbError::Pool(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_backend_and_hide_passwords() {
        assert_eq!(backend_of("tally.db").unwrap().0, Backend::Sqlite);
        assert_eq!(
            backend_of("sqlite:///tmp/x.db").unwrap(),
            (Backend::Sqlite, "/tmp/x.db")
        );
        assert_eq!(
            backend_of("postgres://u:p@h/db").unwrap().0,
            Backend::Postgres
        );
        let e = backend_of("mysql://u:secret@h/db").unwrap_err().to_string();
        assert!(e.contains("unknown scheme") && !e.contains("secret"), "{e}");
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        // Issue 16: each of these printed the password, or part of it.
        for (url, shown) in [
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:a/b?c@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?user=u&password=hunter2&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "postgresql://h/db?PASSWORD=hunter2",
                "postgresql://h/db?PASSWORD=***",
            ),
            (
                "host=h dbname=d password=hunter2 user=u",
                "host=h dbname=d password=*** user=u",
            ),
            (
                "smtp://u:hunter2@mail:587?tls=required",
                "smtp://u:***@mail:587?tls=required",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        let e = backend_of("host=h dbname=d password=hunter2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("libpq") && !e.contains("hunter2"), "{e}");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_run_takes_spare_readers_only_while_two_stay_idle_for_others() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tally.db").display());
        let pool = pool(&url, 5).unwrap();
        let first = spare_readers(&pool, 2);
        assert_eq!(first.len(), 2);
        // 3 idle: one more may go, and then 2 stay.
        let second = spare_readers(&pool, 2);
        assert_eq!(second.len(), 1);
        assert!(spare_readers(&pool, 2).is_empty());
        assert_eq!(pool.state().idle_connections, 2);
        drop(first);
        assert_eq!(spare_readers(&pool, 1).len(), 1);
        // A small pool lends none: the run reads on its own connection.
        let small = super::pool(&url, 2).unwrap();
        assert!(spare_readers(&small, 2).is_empty());
    }
}

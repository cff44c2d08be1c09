//! `tally serve`: the HTTP API as a long-running actix-web service.
//!
//! Handlers are thin: extract, call one use case on a pooled connection
//! off the async threads ([`State::db`]), return a view. Access control,
//! the request log and the route table live in [`routes`]; errors become
//! HTTP in [`error`] only.

pub mod api;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod views;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::db::{AnyConnection, Pool};
use crate::settings::Settings;
pub use error::ApiError;

/// What every request can reach.
pub struct State {
    /// The store.
    pub pool: Pool,
    /// The configuration it started with.
    pub settings: Settings,
    /// The clock: UTC milliseconds now (injected, so tests can fix it).
    pub clock: crate::clock::Clock,
    /// This process's HTTP figures.
    pub metrics: metrics::Metrics,
    /// Quota evaluations after ingests, coalesced.
    pub evaluations: std::sync::Arc<Coalesce>,
    /// Uploads under way, per token.
    pub uploads: std::sync::Arc<Uploads>,
    /// Failed sign-ins, per client address.
    pub sign_ins: SignInThrottle,
    /// Sums of rollups, kept by the runs they came from.
    pub memo: std::sync::Arc<crate::app::memo::Memo>,
}

/// Failed sign-ins per client address: after [`SignInThrottle::MAX`] in
/// [`SignInThrottle::WINDOW_MS`], that address is refused (429) until the
/// oldest failure leaves the window, so tokens cannot be guessed at speed.
/// (Behind a proxy every client shares its address: a lock-out there is
/// everyone's, which errs on the safe side.)
#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Vec<i64>>>,
}

impl SignInThrottle {
    /// Failures allowed in the window.
    pub const MAX: usize = 10;
    /// The window, milliseconds.
    pub const WINDOW_MS: i64 = 5 * 60 * 1000;

    /// Seconds until `ip` may try again, when it is locked out now.
    pub fn locked_for(&self, ip: std::net::IpAddr, now_ms: i64) -> Option<i64> {
        let mut m = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = m.get_mut(&ip)?;
        f.retain(|t| now_ms - t < Self::WINDOW_MS);
        let oldest = *f.first()?;
        (f.len() >= Self::MAX).then(|| ((oldest + Self::WINDOW_MS - now_ms) / 1000).max(1))
    }

    /// Counts a failure of `ip`; how many it has in the window.
    pub fn failed(&self, ip: std::net::IpAddr, now_ms: i64) -> usize {
        let mut m = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded whatever the traffic: stale addresses go first.
        if m.len() > 10_000 {
            m.retain(|_, f| f.last().is_some_and(|t| now_ms - t < Self::WINDOW_MS));
        }
        let f = m.entry(ip).or_default();
        f.retain(|t| now_ms - t < Self::WINDOW_MS);
        f.push(now_ms);
        f.len()
    }

    /// Forgets `ip`'s failures (it signed in).
    pub fn succeeded(&self, ip: std::net::IpAddr) {
        let mut m = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.remove(&ip);
    }
}

/// Uploads under way per token, bounded (`server.uploads_per_token`): a
/// client with stalled or slow bodies holds at most this many slots.
#[derive(Debug, Default)]
pub struct Uploads {
    limit: usize,
    under_way: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One upload's slot, given back when dropped (the answer is sent, or the
/// client went away).
#[derive(Debug)]
pub struct UploadSlot {
    uploads: std::sync::Arc<Uploads>,
    who: String,
}

impl Uploads {
    /// At most `limit` uploads per token.
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            limit,
            under_way: std::sync::Mutex::default(),
        })
    }

    /// A slot for `who`, or `None` when it has `limit` under way.
    pub fn enter(self: &std::sync::Arc<Self>, who: &str) -> Option<UploadSlot> {
        let mut m = self
            .under_way
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(who.to_owned()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(UploadSlot {
            uploads: self.clone(),
            who: who.to_owned(),
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut m = self
            .uploads
            .under_way
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.who);
            }
        }
    }
}

/// Coalesces work asked for while it runs: a burst of pushes evaluates
/// quotas once or twice, not once per push.
#[derive(Debug, Default)]
pub struct Coalesce {
    running: std::sync::atomic::AtomicBool,
    again: std::sync::atomic::AtomicBool,
}

impl Coalesce {
    /// Runs `f` now unless it is running, in which case the running one
    /// runs it once more when done.
    pub fn run(&self, mut f: impl FnMut()) {
        use std::sync::atomic::Ordering::SeqCst;
        self.again.store(true, SeqCst);
        loop {
            if self
                .running
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_err()
            {
                // The runner sees `again` before it lets go.
                return;
            }
            while self.again.swap(false, SeqCst) {
                f();
            }
            self.running.store(false, SeqCst);
            // Asked for between the last check and letting go?
            if !self.again.load(SeqCst) {
                return;
            }
        }
    }
}

impl State {
    /// Runs `f` on a pooled connection on actix's blocking threads: diesel
    /// is synchronous, and a connection is never held across an `.await`.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool
                .get()
                .map_err(|e| ApiError::unavailable(anyhow::anyhow!("{e}")))?;
            // A panic is a bug, but it must not cost more than this request:
            // the connection it leaves is dropped here, and one left inside
            // a transaction is closed by the pool (`Manager::has_broken`),
            // rolling the request's writes back.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn))).unwrap_or_else(
                |p| {
                    Err(ApiError::internal(anyhow::anyhow!(
                        "the request failed unexpectedly ({}); nothing it wrote was kept",
                        crate::app::panic_message(p.as_ref())
                    )))
                },
            )
        })
        .await?
    }

    /// Now, UTC, as the store keeps times.
    pub fn now(&self) -> Result<chrono::NaiveDateTime, ApiError> {
        Ok(self.utc_now()?.naive_utc())
    }

    /// Reconciles a window and raises what it finds, as every run does
    /// (`schedule::run_and_alert`), off the async threads.
    pub async fn run_window(
        &self,
        window: (i64, i64),
        engine: tally_reconcile::report::EngineSettings,
    ) -> Result<crate::app::run::RunOutcome, ApiError> {
        let clock = self.clock;
        let config = self.settings.clone();
        let pool = self.pool.clone();
        self.db(move |c| {
            let slice = crate::app::run::DEFAULT_SLICE_ROWS;
            // Readers only if idle now, leaving some for others: a run
            // never waits for one, so it never holds up other requests.
            let mut spare = crate::db::spare_readers(&pool, crate::app::run::READERS);
            let mut readers: Vec<_> = spare.iter_mut().map(|c| &mut **c).collect();
            // The store out of reach is 503, a bad window 422, the rest 500.
            Ok(crate::app::follow_up::run_and_alert(
                c,
                &mut readers,
                &config,
                window,
                slice,
                engine,
                clock,
            )
            .map(|(o, _)| o)?)
        })
        .await
    }

    /// Now, UTC, with its zone (what quota periods are computed from).
    pub fn utc_now(&self) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        let ms = (self.clock)().map_err(ApiError::internal)?;
        chrono::DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("clock out of range")))
    }
}

/// A server bound to its port, not yet running.
pub struct Bound {
    /// The port it listens on (useful with port 0).
    pub port: u16,
    /// The server; await it to run until stopped.
    pub server: Server,
    /// The store's pool (the scheduler shares it).
    pub pool: Pool,
    /// This server's claim on a SQLite store, held while it runs.
    pub claim: crate::db::ServerClaim,
}

/// Opens the store (running pending migrations unless `no_migrate`),
/// binds the listener and builds the server.
pub fn build(settings: Settings, no_migrate: bool) -> anyhow::Result<Bound> {
    pages::check()?;
    let url = settings.database.url.expose().to_owned();
    let claim = crate::db::claim_for_server(&url).context("opening the store")?;
    // Migrations on one connection before the pool opens the rest.
    crate::db::open(&url, no_migrate).context("opening the store")?;
    let pool = crate::db::pool(&url, settings.database.pool_size)?;
    let addr = settings.server.listen;
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let port = listener.local_addr()?.port();
    let workers = settings.server.workers;
    let shutdown = settings.server.shutdown_timeout_s;
    let header_timeout = Duration::from_secs(settings.server.header_timeout_s);
    let uploads = Uploads::new(settings.server.uploads_per_token);
    let state = web::Data::new(State {
        uploads,
        sign_ins: SignInThrottle::default(),
        pool: pool.clone(),
        settings,
        clock: crate::clock::now_ms,
        metrics: metrics::Metrics::default(),
        evaluations: std::sync::Arc::default(),
        memo: std::sync::Arc::default(),
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes::configure)
    })
    .listen(listener)?
    // actix stops accepting on SIGTERM/SIGINT and gives in-flight requests
    // this long; an ingest batch is one transaction either way.
    .shutdown_timeout(shutdown)
    // A client gets this long for its request's headers; a body's pace is
    // watched by the upload handlers (`server.body_idle_timeout_s`).
    .client_request_timeout(header_timeout);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(Bound {
        port,
        server: server.run(),
        pool,
        claim,
    })
}

/// Starts logging as configured: one line per event on standard error.
pub fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log.level)
        .map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
    // No colours: the writer escapes every control character a value may
    // carry (a forged log line), and ANSI colours are control characters.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(crate::text::EscapingWriter);
    let done = match settings.log.format {
        crate::settings::LogFormat::Json => builder.json().try_init(),
        crate::settings::LogFormat::Text => builder.try_init(),
    };
    done.map_err(|e| anyhow::anyhow!("logging: {e}"))
}

/// Runs `tally serve` until SIGTERM or SIGINT.
pub fn serve(settings: Settings, no_migrate: bool, no_scheduler: bool) -> anyhow::Result<()> {
    init_logging(&settings)?;
    let addr = settings.server.listen;
    let db = crate::db::redact(settings.database.url.expose());
    actix_web::rt::System::new().block_on(async move {
        let ip = settings.server.listen.ip();
        let jobs = settings.clone();
        let bound = build(settings, no_migrate)?;
        let scheduler = if no_scheduler {
            tracing::info!("scheduler off (--no-scheduler): this replica only serves HTTP");
            None
        } else {
            Some(crate::jobs::Scheduler::start(
                bound.pool.clone(),
                jobs,
                crate::clock::now_ms,
            )?)
        };
        tracing::info!(listen = %addr, port = bound.port, store = %db, "tally serve started");
        // On standard output for scripts (and tests) that bind port 0.
        crate::output::print(&format!(
            "tally serve: listening on http://{ip}:{}\n",
            bound.port
        ))?;
        let served = bound.server.await.context("server");
        // Jobs finish what they are doing (a run is one transaction).
        if let Some(s) = scheduler {
            s.stop();
        }
        served?;
        tracing::info!("tally serve stopped");
        Ok::<(), anyhow::Error>(())
    })
}

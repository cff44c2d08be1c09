//! `tally run --from T --to T`: the engine over the stored rows of a
//! window, its verdicts kept.
//!
//! Rows up to a margin outside the window are loaded too, so a row whose
//! partner sits a second across the boundary is matched, not reported
//! missing; only rows inside the window get a verdict from this run (the
//! neighbouring window's run judges the others). A new run supersedes,
//! in the same transaction that stores it, every current run whose window
//! lies within its own; older runs stay readable as history.

use std::collections::HashMap;

use tally_reconcile::intern::FxHashMap;
use tally_reconcile::record::{FileInfo, Names, TokenKind};
use tally_reconcile::report::{Class, EngineSettings, reconcile};
use tally_reconcile::time::{DAY_MS, format_ms};
use tally_reconcile::{Side, SideKind};
use tally_schema::convert::{atto_to_nanos, naive_from_ms, normalised, side_name};
use tally_schema::enums::EnumCol;
use tally_schema::rows::{
    AttributionRow, NewRun, NewVerdict, RollupRow, RunCount, RunRow, StoredNames, UsageNames,
    UsageRow,
};

use crate::app::error::AppError;
use crate::app::reference;
use crate::db::{AnyConnection, repo};

/// How far outside the window partners are looked for, beyond the
/// matching tolerance: learned clock offsets of a few minutes are common
/// (a host with a drifting clock), hours are not.
pub const MARGIN_BEYOND_TOLERANCE_MS: i64 = 15 * 60 * 1000;

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The stored run.
    pub run: RunRow,
    /// Its rows per class.
    pub counts: Vec<RunCount>,
    /// Runs it superseded.
    pub superseded: Vec<i64>,
    /// Where the time went.
    pub timings: Timings,
}

/// A side's rows in a run, read slice by slice: a slice's rows, its
/// margins included, and where reading stopped. Consecutive slices
/// overlap by two margins (the end of one slice's window is the start of
/// the next's margin), so the overlap is kept rather than read again: at
/// 10M rows a day, a quarter of an hour either side of each of 20 slices
/// was half as many rows again.
struct Reading {
    side: Side,
    /// The store id of each row of `side`.
    ids: Vec<i64>,
    seen: SeenNames,
    /// Rows before this time have been read.
    read_to: i64,
}

impl Reading {
    fn new(kind: SideKind) -> Self {
        Self {
            side: Side::new(kind),
            ids: Vec::new(),
            seen: SeenNames::default(),
            read_to: i64::MIN,
        }
    }

    /// Makes the side hold the stored rows of `[lo, hi)`, in (time, id)
    /// order: the rows before `lo` dropped, those up to `hi` not yet read
    /// read as a stream. `lo` and `hi` only move forward.
    fn advance(&mut self, conn: &mut AnyConnection, (lo, hi): (i64, i64)) -> Result<(), AppError> {
        let first = self.side.rows.iter().take_while(|r| r.ts_ms < lo).count();
        if self.side.keep_from(first) {
            // Names interned before are gone with the strings renewed.
            self.seen = SeenNames::default();
        }
        self.ids.drain(..first.min(self.ids.len()));
        let from = self.read_to.max(lo);
        if from < hi {
            let Self {
                side, ids, seen, ..
            } = self;
            repo::each_usage_in(
                conn,
                side_name(side.kind),
                (from, hi),
                |r| -> Result<(), AppError> {
                    // The row's place in (time, id) order is its ordinal: ties
                    // between equally good partners break the same way on every
                    // run.
                    let line = u32::try_from(ids.len() + 1).map_err(|_| {
                        AppError::Invalid("more than 4 billion rows in one run".to_owned())
                    })?;
                    let pushed = match &r.names {
                        StoredNames::Json(text) => {
                            let (parsed, names) = seen.get(side, text, &r, line)?;
                            side.push_named(&normalised(&r, parsed, line)?, names)
                        }
                        StoredNames::Columns(n) => side.push_normalised(&normalised(&r, n, line)?),
                    };
                    if !pushed {
                        return Err(AppError::Internal(format!(
                            "stored usage row {} cannot be read back (id too long)",
                            r.id
                        )));
                    }
                    ids.push(r.id);
                    Ok(())
                },
            )?;
            self.read_to = hi;
        }
        self.side.files.push(FileInfo {
            name: "store".to_owned(),
            format: "store".to_owned(),
            first_row: 0,
            read: u64::try_from(self.ids.len()).unwrap_or(u64::MAX),
            rejected: 0,
            not_usage: 0,
            lines: 0,
            open_quote_at_end: false,
        });
        Ok(())
    }
}

/// The distinct names (key, models, route, labels, alias) a side's rows
/// came with, each parsed and interned once: a day holds millions of rows
/// but a few hundred of these.
#[derive(Default)]
struct SeenNames {
    /// Each array's place in `parsed`.
    by_text: FxHashMap<String, usize>,
    parsed: Vec<(UsageNames, Names)>,
}

impl SeenNames {
    /// So rows that each carry their own tags cannot grow this beyond a
    /// bound: past it, it starts again (only a cache).
    const MAX: usize = 65_536;

    /// The names `text` (row `r`'s JSON array), parsed, and interned on
    /// `side`: one hash lookup for a row whose names were seen before.
    fn get(
        &mut self,
        side: &mut Side,
        text: &str,
        r: &UsageRow,
        line: u32,
    ) -> Result<(&UsageNames, Names), AppError> {
        let i = match self.by_text.get(text) {
            Some(&i) => i,
            None => {
                if self.parsed.len() >= Self::MAX {
                    self.by_text.clear();
                    self.parsed.clear();
                }
                let parsed: UsageNames = serde_json::from_str(text).map_err(|e| {
                    AppError::Internal(format!("stored usage row {}: its names: {e}", r.id))
                })?;
                let names = side.intern_names(&normalised(r, &parsed, line)?);
                self.parsed.push((parsed, names));
                let i = self.parsed.len() - 1;
                self.by_text.insert(text.to_owned(), i);
                i
            }
        };
        self.parsed
            .get(i)
            .map(|(p, n)| (p, *n))
            .ok_or_else(|| AppError::Internal("names just kept are gone".to_owned()))
    }
}

/// The most readers a run uses beside its own connection: one per side.
pub const READERS: usize = 2;

/// Default rows per side in one slice of a run: memory stays bounded by a
/// slice's rows (plus its margins) whatever the window. Slices are cut by
/// row count, not by time, so a quiet period is one slice and its clock
/// offsets are learned from all its id pairs, while a busy day is cut
/// into slices that each have pairs in plenty.
pub const DEFAULT_SLICE_ROWS: i64 = 500_000;

/// One slice's learned offsets, kept with the run.
#[derive(Debug, serde::Serialize)]
struct SliceOffsets {
    from: String,
    offsets: Vec<tally_reconcile::report::OffsetLine>,
}

/// What a run has found in the slices judged so far.
#[derive(Debug, Default)]
struct SoFar {
    /// Rows per class: (client, gateway).
    counts: HashMap<Class, (i64, i64)>,
    attributions: Attributions,
    offsets: Vec<SliceOffsets>,
    time: Timings,
}

/// Reconciles the rows of `[from_ms, to_ms)` (loading `margin` more on each
/// side for partners) and returns the verdicts of the rows inside.
fn judge_slice(
    conn: &mut AnyConnection,
    reader: Option<&mut AnyConnection>,
    refs: &reference::Reference,
    (from_ms, to_ms, margin): (i64, i64, i64),
    settings: &EngineSettings,
    slices: &mut Slices,
    so_far: &mut SoFar,
) -> Result<(), AppError> {
    let Slices {
        client,
        gateway,
        verdicts,
        meta,
    } = slices;
    verdicts.clear();
    meta.clear();
    let SoFar {
        counts,
        attributions,
        offsets,
        time,
    } = so_far;
    let (lo, hi) = (from_ms.saturating_sub(margin), to_ms.saturating_add(margin));
    let t0 = std::time::Instant::now();
    match reader {
        // The gateway side through the second connection while this one
        // reads the client side: reading rows back is most of a run's
        // time, and it is per-row decoding that two cores halve.
        Some(reader) => std::thread::scope(|s| {
            let g = s.spawn(|| gateway.advance(reader, (lo, hi)));
            let c = client.advance(conn, (lo, hi));
            let g = g.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            c.and(g)
        })?,
        None => {
            client.advance(conn, (lo, hi))?;
            gateway.advance(conn, (lo, hi))?;
        }
    }
    let (client, client_ids, gateway, gateway_ids) =
        (&client.side, &client.ids, &gateway.side, &gateway.ids);
    time.load += t0.elapsed();
    let t0 = std::time::Instant::now();
    if client_ids.is_empty() && gateway_ids.is_empty() {
        return Ok(());
    }
    let rec = reconcile(
        client,
        gateway,
        &refs.registry,
        &refs.aliases,
        &refs.prices,
        settings.clone(),
    );
    // What differs, in words, by (side, ordinal).
    let mut details: HashMap<(SideKind, u32), String> = HashMap::new();
    for d in rec.discrepancies() {
        if let Some(s) = d.client {
            details.insert((SideKind::Client, s.line), d.detail.clone());
        }
        if let Some(s) = d.gateway {
            details.insert((SideKind::Gateway, s.line), d.detail.clone());
        }
    }
    let inside = |ts: i64| ts >= from_ms && ts < to_ms;
    // This slice's attributions by borrowed text, so only a slice's first
    // sight of one is looked up (and copied) in the run's.
    let mut local = FxHashMap::default();
    for (kind, side, ids, partner_ids) in [
        (SideKind::Client, client, client_ids, gateway_ids),
        (SideKind::Gateway, gateway, gateway_ids, client_ids),
    ] {
        for (i, row) in side.rows.iter().enumerate() {
            if !inside(row.ts_ms) {
                continue;
            }
            let v = rec
                .verdict(kind, i)
                .ok_or_else(|| AppError::Internal(format!("no verdict for {kind:?} row {i}")))?;
            let c = counts.entry(v.class).or_default();
            match kind {
                SideKind::Client => c.0 += 1,
                SideKind::Gateway => c.1 += 1,
            }
            let attribution_id = attributions.id(
                &mut local,
                (
                    v.key,
                    v.registered,
                    v.owner.map_or("", |o| o.team.as_str()),
                    v.owner.map_or("", |o| o.service.as_str()),
                    v.owner.map_or("", |o| o.env.as_str()),
                    v.family,
                ),
            );
            let nanos = |u: Option<tally_reconcile::prices::Usd>| -> Result<Option<i64>, AppError> {
                u.map(|u| {
                    atto_to_nanos(u.0).ok_or_else(|| {
                        AppError::Internal("a cost does not fit the store".to_owned())
                    })
                })
                .transpose()
            };
            verdicts.push(NewVerdict {
                run_id: 0,
                usage_row_id: ids
                    .get(i)
                    .copied()
                    .ok_or_else(|| AppError::Internal("a row without a store id".to_owned()))?,
                class: EnumCol(v.class),
                partner_row_id: v.partner.and_then(|p| partner_ids.get(p).copied()),
                attribution_id,
                computed_cost_nanos: nanos(v.computed)?,
                reported_cost_nanos: nanos(v.reported)?,
                detail: details.remove(&(kind, row.line)).unwrap_or_default(),
            });
            meta.push((
                row.ts_ms.div_euclid(DAY_MS) * DAY_MS,
                kind == SideKind::Gateway,
                i64::try_from(
                    row.tokens.or_zero(TokenKind::Input) + row.tokens.or_zero(TokenKind::Output),
                )
                .unwrap_or(i64::MAX),
            ));
        }
    }
    offsets.push(SliceOffsets {
        from: format_ms(from_ms),
        offsets: rec.offsets(),
    });
    time.engine += t0.elapsed();
    Ok(())
}

/// Where a run hands a slice's verdicts: written on the connection given
/// (the one the client's rows are read on, when it is the run's own), or
/// passed to a thread that writes them.
type WriteSlice<'a> =
    dyn FnMut(&mut AnyConnection, &mut Vec<NewVerdict>) -> Result<(), AppError> + 'a;

/// What a run carries from one slice to the next: each side's rows (the
/// next slice's margin is read already) and the verdict buffers, whose
/// memory a slice reuses rather than have the kernel zero fresh pages for
/// hundreds of MB of verdicts every slice.
struct Slices {
    client: Reading,
    gateway: Reading,
    /// The slice's verdicts.
    verdicts: Vec<NewVerdict>,
    /// Each verdict's day, side and tokens, for the rollups.
    meta: Vec<DaySide>,
}

/// A verdict's UTC day (ms), whether its row is the gateway's, and its
/// tokens (input plus output).
type DaySide = (i64, bool, i64);

/// Whom a verdict is charged to, as text: key, registered, team, service,
/// env, model family.
type Attribution<S> = (S, bool, S, S, S, S);

/// A run's attributions, numbered from 1 in the order first seen: what its
/// verdicts point at instead of repeating the text on every row.
#[derive(Debug, Default)]
struct Attributions {
    ids: HashMap<Attribution<String>, i64>,
}

impl Attributions {
    /// The number of `a`, through the slice's own map of borrowed text
    /// (`local`), which lives no longer than the engine's output it borrows.
    fn id<'a>(
        &mut self,
        local: &mut FxHashMap<Attribution<&'a str>, i64>,
        a: Attribution<&'a str>,
    ) -> i64 {
        if let Some(&id) = local.get(&a) {
            return id;
        }
        let (key, registered, team, service, env, family) = a;
        let next = i64::try_from(self.ids.len())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        let id = *self
            .ids
            .entry((
                key.to_owned(),
                registered,
                team.to_owned(),
                service.to_owned(),
                env.to_owned(),
                family.to_owned(),
            ))
            .or_insert(next);
        local.insert(a, id);
        id
    }

    /// The rows to store, in number order (row `n - 1` is number `n`).
    fn into_rows(self) -> Vec<AttributionRow> {
        let mut rows: Vec<AttributionRow> = self
            .ids
            .into_iter()
            .map(
                |((key_name, registered, team, service, env, model_family), id)| AttributionRow {
                    run_id: 0,
                    id,
                    key_name,
                    registered,
                    team,
                    service,
                    env,
                    model_family,
                },
            )
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }
}

/// Sums of one rollup group.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    rows: i64,
    unpriced: i64,
    computed: i128,
    reported: i128,
    variance: i128,
    tokens: i128,
}

impl Sums {
    fn add(&mut self, v: &NewVerdict, tokens: i64) {
        self.rows += 1;
        self.tokens += i128::from(tokens);
        match v.computed_cost_nanos {
            Some(c) => {
                self.computed += i128::from(c);
                if let Some(r) = v.reported_cost_nanos {
                    self.variance += i128::from(r) - i128::from(c);
                }
            }
            None => self.unpriced += 1,
        }
        self.reported += i128::from(v.reported_cost_nanos.unwrap_or(0));
    }
}

/// A rollup group: day, side, class and attribution (the dimensions
/// reports group by).
type GroupKey = (i64, bool, Class, i64);

/// A run's sums per day and dimensions, built slice by slice.
#[derive(Debug, Default)]
struct Rollups {
    groups: HashMap<GroupKey, Sums>,
}

impl Rollups {
    fn add_slice(&mut self, verdicts: &[NewVerdict], meta: &[DaySide]) {
        for (v, (day, gateway, tokens)) in verdicts.iter().zip(meta) {
            let key = (*day, *gateway, *v.class, v.attribution_id);
            self.groups.entry(key).or_default().add(v, *tokens);
        }
    }

    /// The rollup rows, each attribution's text written out again (the
    /// rollups are what month pages read, without joins).
    fn rows(
        self,
        run_id: i64,
        attributions: &[AttributionRow],
    ) -> Result<Vec<RollupRow>, AppError> {
        let fit = |n: i128| {
            i64::try_from(n)
                .map_err(|_| AppError::Internal("a rollup sum does not fit the store".to_owned()))
        };
        self.groups
            .into_iter()
            .map(|((day_ms, gateway, class, attribution), s)| {
                let a = usize::try_from(attribution - 1)
                    .ok()
                    .and_then(|i| attributions.get(i))
                    .ok_or_else(|| {
                        AppError::Internal("a verdict without its attribution".to_owned())
                    })?;
                Ok(RollupRow {
                    run_id,
                    day_ms,
                    side: EnumCol(if gateway {
                        SideKind::Gateway
                    } else {
                        SideKind::Client
                    }),
                    class: EnumCol(class),
                    key_name: a.key_name.clone(),
                    registered: a.registered,
                    team: a.team.clone(),
                    service: a.service.clone(),
                    env: a.env.clone(),
                    model_family: a.model_family.clone(),
                    row_count: s.rows,
                    unpriced_rows: s.unpriced,
                    computed_nanos: fit(s.computed)?,
                    reported_nanos: fit(s.reported)?,
                    variance_nanos: fit(s.variance)?,
                    tokens: fit(s.tokens)?,
                })
            })
            .collect()
    }
}

/// Where a run's time went (`--timings`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    /// Reading rows back from the store.
    pub load: std::time::Duration,
    /// Rebuilding sides, matching, classifying, pricing.
    pub engine: std::time::Duration,
    /// Writing verdicts.
    pub write: std::time::Duration,
    /// Committing the run.
    pub commit: std::time::Duration,
    /// Writing verdicts on their own thread while the next slice was
    /// read (a run with two readers): `write` is then only the time the
    /// reading side waited for it.
    pub written_beside: Option<std::time::Duration>,
    /// The run's alerts and the quotas, after the commit (when they ran).
    pub follow_up: Option<std::time::Duration>,
}

/// Runs the engine over `[from_ms, to_ms)`, slice by slice, and stores the
/// run, its verdicts and counts in one transaction.
///
/// `readers` are other connections to the same store (at most
/// [`READERS`] are used), to read on beside `conn`, which writes:
/// - none (an in-memory store, a pool with none to spare): `conn` reads
///   the sides one after the other and writes each slice's verdicts;
/// - one: it reads the gateway's rows while `conn` reads the client's;
/// - two: they read the client's and the gateway's rows of a slice while
///   `conn` writes the verdicts of the slice before.
///
/// Readers see what `conn` sees: on SQLite `conn` holds the store's one
/// write lock from the run's first insert, so nothing can commit in
/// between (and a run changes no usage row); on PostgreSQL each statement
/// reads what is committed when it starts, on any connection. The
/// verdicts are the same whichever way the run is read and written.
///
/// `now` reads the wall clock (the run's start and end times); the engine
/// never reads a clock.
pub fn run(
    conn: &mut AnyConnection,
    readers: &mut [&mut AnyConnection],
    (from_ms, to_ms): (i64, i64),
    slice_rows: i64,
    settings: EngineSettings,
    now: crate::clock::Clock,
) -> Result<RunOutcome, AppError> {
    if from_ms >= to_ms {
        return Err(AppError::Invalid("--from must be before --to".to_owned()));
    }
    if slice_rows <= 0 {
        return Err(AppError::Invalid(
            "--slice-rows must be positive".to_owned(),
        ));
    }
    let clock = || now().map_err(AppError::from);
    let started = clock()?;
    let tolerance_ms = settings.matching.tolerance_ms;
    let margin = tolerance_ms.saturating_add(MARGIN_BEYOND_TOLERANCE_MS);
    let refs = reference::load(conn)?;
    let run = repo::in_transaction(conn, |conn| -> Result<_, AppError> {
        let id = repo::begin_run(
            conn,
            &NewRun {
                window_from: naive_from_ms(from_ms)?,
                window_to: naive_from_ms(to_ms)?,
                started_at: naive_from_ms(started)?,
                finished_at: naive_from_ms(started)?,
                status: "current",
                tolerance_ms,
                margin_ms: margin,
                client_rows: 0,
                gateway_rows: 0,
                global_offset_ms: 0,
                key_offsets: "[]",
            },
        )?;
        let mut so_far = SoFar::default();
        let mut rollups = Rollups::default();
        let mut slices = Slices {
            client: Reading::new(SideKind::Client),
            gateway: Reading::new(SideKind::Gateway),
            verdicts: Vec::new(),
            meta: Vec::new(),
        };
        // Judges the window slice by slice, reading the client's rows on
        // the first connection it is given and the gateway's on the second
        // (or the first), and handing each slice's verdicts to `write`.
        let mut judge_all = |client_conn: &mut AnyConnection,
                             mut gateway_conn: Option<&mut AnyConnection>,
                             write: &mut WriteSlice<'_>|
         -> Result<(), AppError> {
            let mut t = from_ms;
            while t < to_ms {
                // The slice ends at the side whose `slice_rows`-th row comes
                // first; rows sharing one millisecond stay in one slice.
                let mut end = to_ms;
                for side in [SideKind::Client, SideKind::Gateway] {
                    if let Some(ts) =
                        repo::nth_ts(client_conn, side_name(side), (t, to_ms), slice_rows)?
                    {
                        end = end.min(ts.max(t.saturating_add(1)));
                    }
                }
                judge_slice(
                    client_conn,
                    gateway_conn.as_deref_mut(),
                    &refs,
                    (t, end, margin),
                    &settings,
                    &mut slices,
                    &mut so_far,
                )?;
                let t0 = std::time::Instant::now();
                rollups.add_slice(&slices.verdicts, &slices.meta);
                write(client_conn, &mut slices.verdicts)?;
                so_far.time.write += t0.elapsed();
                t = end;
            }
            Ok(())
        };
        let beside = match readers {
            // Two readers: the sides are read on them while `conn` writes
            // the slice before. Writing was a third of a run's time, on one
            // thread, with the other core idle.
            [client_conn, gateway_conn, ..] => Some(std::thread::scope(|s| {
                let conn = &mut *conn;
                // A rendezvous: the writer holds one slice's verdicts, the
                // reading side the next one's, never more.
                let (to_writer, slices_in) = std::sync::mpsc::sync_channel::<Vec<NewVerdict>>(0);
                let (spent, spent_back) = std::sync::mpsc::channel::<Vec<NewVerdict>>();
                let writer = s.spawn(move || -> Result<std::time::Duration, AppError> {
                    let mut busy = std::time::Duration::ZERO;
                    for mut verdicts in slices_in {
                        let t0 = std::time::Instant::now();
                        repo::insert_verdicts(conn, id, &mut verdicts)?;
                        busy += t0.elapsed();
                        verdicts.clear();
                        // Its memory back for a later slice; the reading
                        // side may have stopped already.
                        let _ = spent.send(verdicts);
                    }
                    Ok(busy)
                });
                let judged = judge_all(client_conn, Some(&mut **gateway_conn), &mut |_, v| {
                    to_writer
                        .send(std::mem::take(v))
                        .map_err(|_| AppError::Internal("the verdict writer stopped".to_owned()))?;
                    // Taken, the writer is done with the slice before, whose
                    // buffer is back: two buffers, whatever the window.
                    if let Ok(spent) = spent_back.try_recv() {
                        *v = spent;
                    }
                    Ok(())
                });
                // No more slices: the writer ends. Waiting for it to write
                // the last slice is waiting on the write like any other.
                drop(to_writer);
                let t0 = std::time::Instant::now();
                let written = writer
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                let last = t0.elapsed();
                // The writer's error first: it is why a send failed.
                let busy = written?;
                judged.map(|()| (busy, last))
            })?),
            // One reader or none: `conn` reads the rest and writes in turn.
            _ => {
                let gateway_conn = readers.first_mut().map(|g| &mut **g);
                judge_all(conn, gateway_conn, &mut |c, v| {
                    Ok(repo::insert_verdicts(c, id, v)?)
                })?;
                None
            }
        };
        let SoFar {
            counts,
            attributions,
            offsets,
            mut time,
        } = so_far;
        if let Some((busy, last)) = beside {
            time.written_beside = Some(busy);
            time.write += last;
        }
        let t0 = std::time::Instant::now();
        let attributions = attributions.into_rows();
        repo::insert_rollups(conn, &rollups.rows(id, &attributions)?)?;
        repo::insert_attributions(conn, id, attributions)?;
        time.write += t0.elapsed();
        let counts: Vec<RunCount> = Class::ALL
            .iter()
            .map(|c| {
                let (client_rows, gateway_rows) = counts.get(c).copied().unwrap_or_default();
                RunCount {
                    run_id: id,
                    class: EnumCol(*c),
                    client_rows,
                    gateway_rows,
                }
            })
            .collect();
        // The run's global offset: that of the slice with the most id pairs.
        let global = offsets
            .iter()
            .filter_map(|s| s.offsets.first())
            .max_by_key(|o| o.pairs)
            .map_or(0, |o| o.offset_ms);
        let key_offsets =
            serde_json::to_string(&offsets).map_err(|e| AppError::Internal(e.to_string()))?;
        let total = |f: fn(&RunCount) -> i64| counts.iter().map(f).sum::<i64>();
        let (run, superseded) = repo::finish_run(
            conn,
            id,
            &repo::RunTotals {
                counts: &counts,
                client_rows: total(|c| c.client_rows),
                gateway_rows: total(|c| c.gateway_rows),
                global_offset_ms: global,
                key_offsets: &key_offsets,
                finished_at: naive_from_ms(clock()?)?,
            },
        )?;
        Ok((run, counts, superseded, time, std::time::Instant::now()))
    })?;
    let (run, counts, superseded, mut timings, commit_start) = run;
    timings.commit = commit_start.elapsed();
    Ok(RunOutcome {
        run,
        counts,
        superseded,
        timings,
    })
}

// ---- Views ---------------------------------------------------------------

/// Times in views: RFC 3339, UTC, millisecond precision.
pub fn utc(t: chrono::NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Rows of one class in a run.
#[derive(Debug, serde::Serialize)]
pub struct ClassCount {
    pub class: String,
    /// Client rows.
    pub client_rows: i64,
    /// Gateway rows.
    pub gateway_rows: i64,
}

/// A run, as the API and the pages show it.
#[derive(Debug, serde::Serialize)]
pub struct RunView {
    pub id: i64,
    /// Window start, inclusive.
    pub from: String,
    /// Window end, exclusive.
    pub to: String,
    pub started_at: String,
    pub finished_at: String,
    /// `current` or `superseded`.
    pub status: String,
    /// The run that replaced it.
    pub superseded_by: Option<i64>,
    /// Matching tolerance, ms.
    pub tolerance_ms: i64,
    /// Client rows in the window.
    pub client_rows: i64,
    /// Gateway rows in the window.
    pub gateway_rows: i64,
    /// Learned clock offset, gateway minus client, ms.
    pub global_offset_ms: i64,
    /// Rows per class (only when one run is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Vec<ClassCount>>,
}

/// A stored run (and its counts, when asked) as a view.
pub fn view(r: RunRow, counts: Option<Vec<RunCount>>) -> RunView {
    // In the report's class order, however they were read.
    let counts = counts.map(|mut cs| {
        cs.sort_by_key(|c| *c.class);
        cs
    });
    RunView {
        id: r.id,
        from: utc(r.window_from),
        to: utc(r.window_to),
        started_at: utc(r.started_at),
        finished_at: utc(r.finished_at),
        status: r.status,
        superseded_by: r.superseded_by,
        tolerance_ms: r.tolerance_ms,
        client_rows: r.client_rows,
        gateway_rows: r.gateway_rows,
        global_offset_ms: r.global_offset_ms,
        counts: counts.map(|cs| {
            cs.into_iter()
                .map(|c| ClassCount {
                    class: c.class.to_string(),
                    client_rows: c.client_rows,
                    gateway_rows: c.gateway_rows,
                })
                .collect()
        }),
    }
}

/// A page of runs, newest first (read page by page from the store: runs
/// accumulate, a day's worth for every reconciled window).
pub fn list(
    c: &mut AnyConnection,
    page: crate::app::page::Page,
) -> Result<crate::app::page::Paged<RunRow>, crate::app::error::AppError> {
    let (offset, limit) = page.offset_limit();
    let (items, total) = repo::runs_page(c, offset, limit)?;
    Ok(crate::app::page::Paged {
        items,
        page,
        total: usize::try_from(total).unwrap_or(0),
    })
}

/// Run `id` and its counts per side and class.
pub fn get(
    c: &mut AnyConnection,
    id: i64,
) -> Result<(RunRow, Vec<tally_schema::rows::RunCount>), crate::app::error::AppError> {
    let run = repo::run(c, id)?
        .ok_or_else(|| crate::app::error::AppError::NotFound(format!("no run {id}")))?;
    Ok((run, repo::run_counts(c, id)?))
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::app::testing::{DAY, fixture_store};
    use tally_schema::rows::VerdictRow;

    fn counts(o: &RunOutcome) -> Vec<(String, i64, i64)> {
        o.counts
            .iter()
            .filter(|c| c.client_rows + c.gateway_rows > 0)
            .map(|c| (c.class.to_string(), c.client_rows, c.gateway_rows))
            .collect()
    }

    #[test]
    fn a_run_judges_the_stored_day_and_the_next_supersedes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = fixture_store(dir.path());
        let clock = || Ok(DAY.1 + 3_600_000);
        let first = run(
            &mut c,
            &mut [],
            DAY,
            DEFAULT_SLICE_ROWS,
            EngineSettings::default(),
            clock,
        )
        .unwrap();
        // The fixture day's planted faults, as `tally reconcile` finds them.
        assert_eq!(
            counts(&first),
            [
                ("matched".to_owned(), 105, 105),
                ("token_mismatch".to_owned(), 3, 3),
                ("model_mismatch".to_owned(), 1, 1),
                ("cost_variance".to_owned(), 1, 1),
                ("missing_usage".to_owned(), 2, 0),
                ("unattributed".to_owned(), 0, 3),
                ("duplicate".to_owned(), 1, 1),
            ]
        );
        // The same day again: the same verdicts, and the new run
        // supersedes the old one, which stays as history.
        let again = run(
            &mut c,
            &mut [],
            DAY,
            DEFAULT_SLICE_ROWS,
            EngineSettings::default(),
            clock,
        )
        .unwrap();
        assert_eq!(counts(&again), counts(&first));
        assert_eq!(again.superseded, [first.run.id]);
        // A window the wrong way round is the caller's mistake.
        let e = run(
            &mut c,
            &mut [],
            (DAY.1, DAY.0),
            10,
            EngineSettings::default(),
            clock,
        )
        .unwrap_err();
        assert!(matches!(e, AppError::Invalid(_)), "{e}");
    }

    /// Everything a run stored, its own id left out: each verdict with its
    /// attribution (read back through the join), and its rollups.
    fn stored(
        c: &mut AnyConnection,
        o: &RunOutcome,
    ) -> Result<(Vec<VerdictRow>, Vec<RollupRow>), crate::db::DbError> {
        let mut verdicts = Vec::new();
        repo::each_current_verdict(c, None, DAY, |j| {
            if j.verdict.run_id == o.run.id {
                verdicts.push(VerdictRow {
                    run_id: 0,
                    ..j.verdict
                });
            }
        })?;
        let mut rollups = Vec::new();
        repo::each_rollup(c, &[o.run.id], None, DAY, |r| {
            rollups.push(RollupRow { run_id: 0, ..r });
        })?;
        rollups.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        Ok((verdicts, rollups))
    }

    #[test]
    fn a_write_failing_beside_the_reading_stores_nothing_and_frees_the_store() {
        use diesel::connection::SimpleConnection;
        let (_dir, mut c, mut spare) = store_with_readers();
        // Verdicts past the 80th fail as a full disk would: a slice after
        // the first, written on the writer's thread.
        raw_sqlite(&mut c)
            .batch_execute(
                "CREATE TRIGGER fail_later BEFORE INSERT ON verdicts \
                 WHEN (SELECT count(*) FROM verdicts) >= 80 \
                 BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
            )
            .unwrap();
        let e = in_slices_of_40(&mut c, spare.iter_mut().collect()).unwrap_err();
        assert!(e.to_string().contains("disk is full"), "{e}");
        // Nothing of the run is kept, and the connection is out of its
        // transaction: the next run (the failure gone) stores the day.
        assert!(repo::runs(&mut c).unwrap().is_empty());
        raw_sqlite(&mut c)
            .batch_execute("DROP TRIGGER fail_later")
            .unwrap();
        let o = in_slices_of_40(&mut c, spare.iter_mut().collect()).unwrap();
        assert_eq!(repo::runs(&mut c).unwrap().len(), 1);
        assert!(o.run.client_rows > 80);
    }

    /// The fixture store in a file, and two more connections to it.
    #[expect(
        clippy::unwrap_used,
        reason = "test support: a store that cannot open is a failed test"
    )]
    fn store_with_readers() -> (tempfile::TempDir, AnyConnection, Vec<AnyConnection>) {
        let dir = tempfile::tempdir().unwrap();
        let c = fixture_store(dir.path());
        let url = format!("sqlite://{}", dir.path().join("tally.db").display());
        let spare = crate::db::readers(&url, 2).unwrap();
        assert_eq!(spare.len(), 2, "a file store has readers");
        (dir, c, spare)
    }

    /// The fixture day in slices of 40 rows (several reads on each
    /// connection, several slices written while the next is read).
    fn in_slices_of_40(
        c: &mut AnyConnection,
        mut readers: Vec<&mut AnyConnection>,
    ) -> Result<RunOutcome, AppError> {
        let clock = || Ok(DAY.1 + 3_600_000);
        run(c, &mut readers, DAY, 40, EngineSettings::default(), clock)
    }

    fn raw_sqlite(c: &mut AnyConnection) -> &mut diesel::SqliteConnection {
        match c {
            AnyConnection::Sqlite(raw) => raw,
            #[cfg_attr(
                not(feature = "postgres"),
                expect(unreachable_patterns, reason = "built with SQLite alone")
            )]
            _ => unreachable!("the fixture store is SQLite"),
        }
    }

    #[test]
    fn reading_and_writing_on_several_connections_stores_the_same_run() {
        let (_dir, mut c, mut spare) = store_with_readers();
        // Slices of 40 rows: several reads on each connection, and several
        // slices written while the next is read.
        let alone = in_slices_of_40(&mut c, Vec::new()).unwrap();
        assert!(alone.timings.written_beside.is_none());
        let alone_stored = stored(&mut c, &alone).unwrap();
        let mut previous = alone.run.id;
        for n in [1, 2] {
            let beside = in_slices_of_40(&mut c, spare.iter_mut().take(n).collect()).unwrap();
            assert_eq!(beside.timings.written_beside.is_some(), n == 2);
            assert_eq!(beside.superseded, [previous], "{n} readers");
            previous = beside.run.id;
            assert_eq!(counts(&beside), counts(&alone), "{n} readers");
            let beside_stored = stored(&mut c, &beside).unwrap();
            // Every row of the day has its verdict, with whom it is charged to.
            assert_eq!(
                beside_stored.0.len(),
                usize::try_from(beside.run.client_rows + beside.run.gateway_rows).unwrap()
            );
            assert!(beside_stored.0.iter().any(|v| !v.team.is_empty()));
            assert_eq!(beside_stored, alone_stored, "{n} readers");
        }
        // An in-memory store has no second reader: another connection would
        // open another, empty, store.
        assert!(
            crate::db::readers("sqlite://:memory:", 2)
                .unwrap()
                .is_empty()
        );
    }
}

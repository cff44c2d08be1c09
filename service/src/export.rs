//! Writing reports: CSV (safe to open in a spreadsheet), JSON, HTML and the
//! terminal table. Rounding happens here and only here.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use tally_reconcile::error::RowError;
use tally_reconcile::keys::abbreviated;
use tally_reconcile::report::{Reconciliation, Summary};
use tally_reconcile::report_lines::{Amount, DiscrepancyLine, RecordSink, RowLine, Tabular};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed (the disk is full, the directory is not writable).
    #[error("{what}: {error}")]
    Io {
        /// What was being written.
        what: String,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// A CSV record could not be written.
    #[error("{0}")]
    Csv(#[from] csv::Error),
    /// report.json could not be written.
    #[error("report.json: {0}")]
    Json(#[from] serde_json::Error),
    /// report.html could not be rendered.
    #[error("report.html: {0:#}")]
    Template(#[from] minijinja::Error),
    /// A writer thread died.
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// A file's writing failed; says which.
    #[error("writing {file}: {error}")]
    File {
        /// The file.
        file: String,
        /// What went wrong.
        error: Box<ExportError>,
    },
}

impl From<std::io::Error> for ExportError {
    fn from(error: std::io::Error) -> Self {
        ExportError::Io {
            what: "writing".to_owned(),
            error,
        }
    }
}

type Result<T, E = ExportError> = std::result::Result<T, E>;

/// The HTML report template.
const REPORT_TEMPLATE: &str = include_str!("../../templates/report.html");

/// Rows listed in report.html per table; the CSVs hold them all.
const HTML_ROWS: usize = 500;

/// Neutralises text a spreadsheet would run as a formula (OWASP CSV
/// injection): text starting with a tab, carriage return or newline, or
/// whose first other character is `=`, `+`, `-` or `@` (spreadsheets trim
/// leading blanks before they look: ` =1+1`), gets a leading apostrophe.
pub fn csv_safe(s: &str) -> Cow<'_, str> {
    let first = s.bytes().next();
    let first_visible = s
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    match (first, first_visible) {
        (Some(b'\t' | b'\r' | b'\n'), _) | (_, Some(b'=' | b'+' | b'-' | b'@')) => {
            Cow::Owned(format!("'{s}"))
        }
        _ => Cow::Borrowed(s),
    }
}

/// A CSV record being written: input text is neutralised, Tally's own is not.
struct CsvSink<'w, W: Write> {
    wtr: &'w mut csv::Writer<W>,
    err: Option<csv::Error>,
}

impl<W: Write> RecordSink for CsvSink<'_, W> {
    fn text(&mut self, s: &str) {
        if let Err(e) = self.wtr.write_field(csv_safe(s).as_bytes()) {
            self.err.get_or_insert(e);
        }
    }

    fn plain(&mut self, s: &str) {
        if let Err(e) = self.wtr.write_field(s.as_bytes()) {
            self.err.get_or_insert(e);
        }
    }
}

/// Writes each line as one record. Returns the number of rows.
fn write_records<W: Write, T: Tabular>(
    wtr: &mut csv::Writer<W>,
    lines: impl IntoIterator<Item = T>,
) -> Result<u64> {
    let mut n = 0;
    for line in lines {
        let mut sink = CsvSink {
            wtr: &mut *wtr,
            err: None,
        };
        line.write(&mut sink);
        if let Some(e) = sink.err {
            return Err(e.into());
        }
        wtr.write_record(None::<&[u8]>)?;
        n += 1;
    }
    Ok(n)
}

/// Writes lines as CSV with a header. Returns the number of rows.
pub fn write_csv<T: Tabular>(w: impl Write, lines: impl IntoIterator<Item = T>) -> Result<u64> {
    let mut wtr = csv::WriterBuilder::new()
        .buffer_capacity(1 << 16)
        .from_writer(w);
    wtr.write_record(T::headers())?;
    let n = write_records(&mut wtr, lines)?;
    wtr.flush()?;
    Ok(n)
}

/// Writes matches.csv, formatting batches of pairs on every core and
/// writing them in order: the same bytes as one thread, a fraction of the
/// time at ten million pairs.
pub fn write_matches(w: impl Write, rec: &Reconciliation<'_>) -> Result<u64> {
    write_matches_batched(w, rec, 1 << 16)
}

fn write_matches_batched(mut w: impl Write, rec: &Reconciliation<'_>, batch: usize) -> Result<u64> {
    write_header::<tally_reconcile::report_lines::PairLine<'_>>(&mut w)?;
    let cores = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, 8);
    let written = write_batched(
        &mut w,
        (rec.client.rows.len(), batch, cores),
        |r| {
            let (bytes, lines) = format_lines(rec.pairs_in(r));
            (bytes, lines, ())
        },
        |()| {},
    )?;
    w.flush()?;
    Ok(written)
}

/// A CSV header line, as the csv crate writes it.
fn write_header<T: Tabular>(w: &mut impl Write) -> Result<()> {
    let mut header = csv::Writer::from_writer(Vec::new());
    header.write_record(T::headers())?;
    w.write_all(&header.into_inner().map_err(|e| e.into_error())?)?;
    Ok(())
}

/// Writes discrepancies.csv, the disagreeing pairs formatted in batches a
/// step ahead of the writer (on a bad day every pair disagrees), sampling
/// every line for report.json on the way.
fn write_discrepancies<'r>(
    mut w: impl Write,
    rec: &'r Reconciliation<'_>,
    batch: usize,
) -> Result<(u64, Sampler<DiscrepancyLine<'r>>)> {
    write_header::<DiscrepancyLine<'_>>(&mut w)?;
    let n = rec.client.rows.len();
    let mut sampler = Sampler::new(JSON_ROWS);
    // One formatter, a batch ahead of the writer: matches.csv is being
    // formatted on every core meanwhile, and more batches in flight cost
    // memory (1,996 MiB at 10M with two) for little time.
    let mut written = write_batched(
        &mut w,
        (n, batch, 1),
        |r| {
            let first = r.start;
            sampled_lines(rec.disagreeing_pairs_in(r), first)
        },
        |s| sampler.merge(s),
    )?;
    let (bytes, count, s) = sampled_lines(rec.discrepancies_after_pairs(), n);
    w.write_all(&bytes)?;
    written += count;
    sampler.merge(s);
    w.flush()?;
    Ok((written, sampler))
}

/// Discrepancy lines as CSV records, and a sampler of them; `first` is the
/// first line's place in the whole list (a client row has at most one
/// pair, so its index orders the lines).
fn sampled_lines<'r>(
    lines: impl Iterator<Item = DiscrepancyLine<'r>>,
    first: usize,
) -> (Vec<u8>, u64, Sampler<DiscrepancyLine<'r>>) {
    let mut s = Sampler::new(JSON_ROWS);
    let (bytes, count) = format_lines(lines.enumerate().map(|(k, l)| {
        let seq = u64::try_from(first + k).unwrap_or(u64::MAX);
        s.offer_at(&l, at_stake(&l), seq, l.computed_cost, l.reported_cost);
        l
    }));
    (bytes, count, s)
}

/// Formats `0..n` in batches of `batch`, `workers` at a time (each while
/// the batch before is written), writing them in order: the same bytes as
/// one thread. `gather` gets what each batch's `format` kept beside its
/// bytes, in order.
fn write_batched<S: Send>(
    w: &mut impl Write,
    (n, batch, workers): (usize, usize, usize),
    format: impl Fn(std::ops::Range<usize>) -> (Vec<u8>, u64, S) + Sync,
    mut gather: impl FnMut(S),
) -> Result<u64> {
    let format = &format;
    let mut written = 0;
    // Double-buffered: batch k+1 is formatted while batch k is written, so
    // neither the formatters nor the (kernel-bound) writer wait on the other.
    std::thread::scope(|s| -> Result<()> {
        let spawn_batch = |start: usize| {
            (0..workers)
                .map(|k| (start + k * batch).min(n)..(start + (k + 1) * batch).min(n))
                .filter(|r| !r.is_empty())
                .map(|r| s.spawn(move || format(r)))
                .collect::<Vec<_>>()
        };
        let mut start = 0;
        let mut in_flight = spawn_batch(start);
        while !in_flight.is_empty() {
            start += workers * batch;
            let next = spawn_batch(start);
            for h in in_flight {
                let (bytes, lines, kept) =
                    h.join().map_err(|_| ExportError::Panicked("a formatter"))?;
                w.write_all(&bytes)?;
                written += lines;
                gather(kept);
            }
            in_flight = next;
        }
        Ok(())
    })?;
    Ok(written)
}

/// A record written straight into a byte buffer, quoted exactly as the csv
/// crate quotes (only fields holding a comma, quote, CR or LF), for the one
/// file with millions of lines.
struct BufSink<'b> {
    out: &'b mut Vec<u8>,
    first: bool,
}

impl BufSink<'_> {
    /// The comma before every cell but the first.
    fn separate(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn field(&mut self, s: &str) {
        self.separate();
        // A fold, not `any`: without the early exit the check vectorises, and
        // it runs on every cell of every pair.
        let special = s.bytes().fold(false, |acc, b| {
            acc | matches!(b, b',' | b'"' | b'\n' | b'\r')
        });
        if special {
            self.out.push(b'"');
            for (i, part) in s.split('"').enumerate() {
                if i > 0 {
                    self.out.extend_from_slice(b"\"\"");
                }
                self.out.extend_from_slice(part.as_bytes());
            }
            self.out.push(b'"');
        } else {
            self.out.extend_from_slice(s.as_bytes());
        }
    }
}

impl RecordSink for BufSink<'_> {
    fn text(&mut self, s: &str) {
        self.field(&csv_safe(s));
    }

    fn plain(&mut self, s: &str) {
        self.field(s);
    }

    fn number(&mut self, digits: &[u8]) {
        self.separate();
        self.out.extend_from_slice(digits);
    }
}

/// Lines as CSV records (no header) in memory, and how many. For lines of
/// two or more cells (the csv crate also quotes a lone empty cell).
fn format_lines<T: Tabular>(lines: impl Iterator<Item = T>) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(1 << 22);
    let mut n = 0;
    for line in lines {
        line.write(&mut BufSink {
            out: &mut out,
            first: true,
        });
        out.push(b'\n');
        n += 1;
    }
    (out, n)
}

fn create(dir: &Path, name: &str) -> Result<BufWriter<File>> {
    let p = dir.join(name);
    let f = File::create(&p).map_err(|error| ExportError::Io {
        what: format!("cannot create {}", p.display()),
        error,
    })?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

fn rejects<'r>(rec: &'r Reconciliation<'_>) -> impl Iterator<Item = &'r RowError> {
    rec.client.rejects.iter().chain(&rec.gateway.rejects)
}

/// report.json: the summary, and each row list's figures with its costliest
/// rows (the CSVs hold every row).
#[derive(Serialize)]
struct FullReport<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    missing_usage: Listed<RowLine<'a>>,
    unattributed: Listed<RowLine<'a>>,
    /// Failed calls on one side only that billed nothing.
    failed_unbilled: Listed<RowLine<'a>>,
    discrepancies: Listed<DiscrepancyLine<'a>>,
    rejects: Listed<&'a RowError>,
}

/// Rows report.json keeps per list, costliest first; the CSVs hold them all.
/// Enough to chase by hand, and a bound: report.json stays a few megabytes
/// however many rows disagree.
const JSON_ROWS: usize = 1000;

/// A row list as report.json and report.html hold it: the figures of every
/// row, and the `listed` costliest (ties in file order). The CSV named by
/// `file` has them all.
#[derive(Debug, Serialize)]
struct Listed<T> {
    /// Rows in the list (and in `file`).
    rows: u64,
    /// Sum of Tally's price over the priced rows (absent for rejects).
    #[serde(skip_serializing_if = "Option::is_none")]
    computed_cost: Option<Decimal>,
    /// Sum of the gateway's reported cost, where it reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_cost: Option<Decimal>,
    /// Rows Tally could not price (left out of `computed_cost`, never as zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    unpriced_rows: Option<u64>,
    /// What `items` are ordered by.
    ranked_by: &'static str,
    /// The CSV with every row.
    file: &'static str,
    /// How many rows `items` holds.
    listed: usize,
    items: Vec<T>,
}

/// One candidate of a [`Sampler`]: a higher rank wins, then the earlier row.
struct Ranked<T> {
    rank: Decimal,
    seq: u64,
    item: T,
}

impl<T> Ranked<T> {
    fn key(&self) -> (Decimal, std::cmp::Reverse<u64>) {
        (self.rank, std::cmp::Reverse(self.seq))
    }
}

impl<T> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl<T> Eq for Ranked<T> {}
impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Keeps the figures of a stream of rows and its `cap` highest-ranked rows,
/// in memory bounded by `cap` whatever the stream's length.
struct Sampler<T> {
    cap: usize,
    /// Min-heap: the weakest kept row is on top, to be pushed out.
    kept: std::collections::BinaryHeap<std::cmp::Reverse<Ranked<T>>>,
    rows: u64,
    computed: Decimal,
    reported: Decimal,
    unpriced: u64,
}

impl<T: Clone> Sampler<T> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            kept: std::collections::BinaryHeap::with_capacity(cap + 1),
            rows: 0,
            computed: Decimal::ZERO,
            reported: Decimal::ZERO,
            unpriced: 0,
        }
    }

    /// Counts a row with its two costs; keeps a copy only if it ranks among
    /// the `cap` highest so far.
    fn offer(
        &mut self,
        item: &T,
        rank: Decimal,
        computed: Option<Amount>,
        reported: Option<Amount>,
    ) {
        self.offer_at(item, rank, self.rows, computed, reported);
    }

    /// [`Sampler::offer`] with the row's place in the whole list, for
    /// samplers of parts that are merged.
    fn offer_at(
        &mut self,
        item: &T,
        rank: Decimal,
        seq: u64,
        computed: Option<Amount>,
        reported: Option<Amount>,
    ) {
        self.rows += 1;
        match computed {
            Some(c) => self.computed += c.to_decimal(),
            None => self.unpriced += 1,
        }
        if let Some(r) = reported {
            self.reported += r.to_decimal();
        }
        self.keep(rank, seq, || item.clone());
    }

    /// Keeps a row if it ranks among the `cap` highest so far.
    fn keep(&mut self, rank: Decimal, seq: u64, item: impl FnOnce() -> T) {
        if self.cap == 0 {
            return;
        }
        if self.kept.len() == self.cap {
            let beats = self.kept.peek().is_some_and(|std::cmp::Reverse(weakest)| {
                (rank, std::cmp::Reverse(seq)) > weakest.key()
            });
            if !beats {
                return;
            }
            self.kept.pop();
        }
        self.kept.push(std::cmp::Reverse(Ranked {
            rank,
            seq,
            item: item(),
        }));
    }

    /// Adds another part's figures and rows.
    fn merge(&mut self, other: Self) {
        self.rows += other.rows;
        self.computed += other.computed;
        self.reported += other.reported;
        self.unpriced += other.unpriced;
        for std::cmp::Reverse(r) in other.kept {
            self.keep(r.rank, r.seq, || r.item);
        }
    }

    /// The list; `priced` says whether its rows carry costs at all.
    fn done(self, priced: bool, ranked_by: &'static str, file: &'static str) -> Listed<T> {
        // `into_sorted_vec` of `Reverse` is the strongest first.
        let items: Vec<T> = self
            .kept
            .into_sorted_vec()
            .into_iter()
            .map(|std::cmp::Reverse(r)| r.item)
            .collect();
        Listed {
            rows: self.rows,
            computed_cost: priced.then_some(self.computed),
            reported_cost: priced.then_some(self.reported),
            unpriced_rows: priced.then_some(self.unpriced),
            ranked_by,
            file,
            listed: items.len(),
            items,
        }
    }
}

/// The larger of two costs, for ranking (zero when neither is known).
fn larger(a: Option<Amount>, b: Option<Amount>) -> Decimal {
    let d = |x: Option<Amount>| x.map_or(Decimal::ZERO, Amount::to_decimal);
    d(a).max(d(b))
}

/// Money at stake in a discrepancy: the gap when both costs are known,
/// else whichever is.
fn at_stake(l: &DiscrepancyLine<'_>) -> Decimal {
    match (l.computed_cost, l.reported_cost) {
        (Some(c), Some(r)) => (r.to_decimal() - c.to_decimal()).abs(),
        (c, r) => larger(c, r),
    }
}

/// Writes `dir/name` with `f`; a failure names the file.
fn csv_file(
    dir: &Path,
    name: &str,
    f: &mut dyn FnMut(BufWriter<File>) -> Result<u64>,
) -> Result<u64> {
    f(create(dir, name)?).map_err(|e| ExportError::File {
        file: name.to_owned(),
        error: Box::new(e),
    })
}

/// A side-only row list to its CSV, sampled on the way.
fn sampled_rows<'r>(
    dir: &Path,
    name: &'static str,
    lines: impl Iterator<Item = RowLine<'r>>,
    rank: fn(&RowLine<'_>) -> Decimal,
    ranked_by: &'static str,
) -> Result<Listed<RowLine<'r>>> {
    let mut sampler = Sampler::new(JSON_ROWS);
    let mut lines = Some(lines);
    csv_file(dir, name, &mut |w| {
        let lines = lines.take().into_iter().flatten();
        write_csv(
            w,
            lines.inspect(|l| sampler.offer(l, rank(l), l.computed_cost, l.reported_cost)),
        )
    })?;
    Ok(sampler.done(true, ranked_by, name))
}

/// Writes every report file into `dir`. The summary is made by
/// `make_summary` while matches.csv (which does not need it) is already
/// being written; it is returned for the terminal.
///
/// Each row list streams from the reconciliation to its CSV; report.json
/// and report.html get its figures and costliest rows only, so memory and
/// their size stay flat however many rows disagree.
pub fn write_all(
    dir: &Path,
    rec: &Reconciliation<'_>,
    with_matches: bool,
    make_summary: impl FnOnce() -> Summary,
) -> Result<Summary> {
    std::fs::create_dir_all(dir).map_err(|error| ExportError::Io {
        what: format!("cannot create {}", dir.display()),
        error,
    })?;
    let csv =
        |name: &str, f: &mut dyn FnMut(BufWriter<File>) -> Result<u64>| csv_file(dir, name, f);
    // matches.csv is by far the largest file: write it while the summary
    // and the rest are being assembled.
    std::thread::scope(|s| -> Result<Summary> {
        let big =
            with_matches.then(|| s.spawn(|| csv("matches.csv", &mut |w| write_matches(w, rec))));
        let summary = make_summary();
        let summary = &summary;
        let missing_usage = sampled_rows(
            dir,
            "missing_usage.csv",
            rec.missing_usage(),
            |l| l.computed_cost.map_or(Decimal::ZERO, Amount::to_decimal),
            "computed_cost",
        )?;
        let unattributed = sampled_rows(
            dir,
            "unattributed.csv",
            rec.unattributed(),
            |l| larger(l.computed_cost, l.reported_cost),
            "larger of computed_cost and reported_cost",
        )?;
        let failed_unbilled = sampled_rows(
            dir,
            "failed_calls.csv",
            rec.failed_unbilled(),
            |_| Decimal::ZERO,
            "file order",
        )?;
        let mut sampler = Sampler::new(JSON_ROWS);
        csv("discrepancies.csv", &mut |w| {
            let (n, s) = write_discrepancies(w, rec, 1 << 14)?;
            sampler = s;
            Ok(n)
        })?;
        let discrepancies = sampler.done(
            true,
            "money at stake: |reported_cost - computed_cost|, or the one known",
            "discrepancies.csv",
        );
        csv("costs_by_owner.csv", &mut |w| {
            write_csv(w, summary.costs_by_owner.iter())
        })?;
        let mut sampler = Sampler::new(JSON_ROWS);
        csv("rejects.csv", &mut |w| {
            write_csv(
                w,
                rejects(rec).inspect(|r| sampler.offer(r, Decimal::ZERO, None, None)),
            )
        })?;
        let rejects = sampler.done(false, "file order", "rejects.csv");
        let full = FullReport {
            summary,
            missing_usage,
            unattributed,
            failed_unbilled,
            discrepancies,
            rejects,
        };
        let mut w = create(dir, "report.json")?;
        serde_json::to_writer_pretty(&mut w, &full)?;
        w.write_all(b"\n")?;
        w.flush()?;
        let html = render_html(&full)?;
        let mut w = create(dir, "report.html")?;
        w.write_all(html.as_bytes())
            .map_err(|error| ExportError::Io {
                what: "writing report.html".to_owned(),
                error,
            })?;
        w.flush()?;
        if let Some(big) = big {
            big.join()
                .map_err(|_| ExportError::Panicked("the matches.csv writer"))??;
        }
        Ok(summary.clone())
    })
}

/// Collects a line's cells as text, for the table format.
struct Cells(Vec<String>);

impl RecordSink for Cells {
    fn text(&mut self, s: &str) {
        // A terminal, not a spreadsheet: no neutralising, but no control
        // characters either.
        self.0.push(s.chars().filter(|c| !c.is_control()).collect());
    }

    fn plain(&mut self, s: &str) {
        self.0.push(s.to_owned());
    }
}

/// Aligned columns, money rounded for people.
pub fn text_table<T: Tabular>(lines: &[T]) -> String {
    let headers = T::headers();
    let is_money = |h: &str| h.ends_with("_cost") || h.ends_with("_reported") || h == "variance";
    let mut rows: Vec<Vec<String>> = vec![headers.iter().map(|h| (*h).to_owned()).collect()];
    for l in lines {
        let mut c = Cells(Vec::new());
        l.write(&mut c);
        let cells =
            c.0.into_iter()
                .zip(headers)
                .map(|(s, h)| match s.parse::<Decimal>() {
                    Ok(d) if is_money(h) => money(d),
                    _ => s,
                })
                .collect();
        rows.push(cells);
    }
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Lines as CSV text, safe to open in a spreadsheet.
pub fn csv_string<T: Tabular>(lines: &[T]) -> Result<String> {
    let mut buf = Vec::new();
    write_csv(&mut buf, lines.iter())?;
    String::from_utf8(buf).map_err(|e| ExportError::Io {
        what: "CSV".to_owned(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Rounds an amount for people: 4 decimal places, half away from zero.
pub fn money(d: Decimal) -> String {
    let r = d.round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero);
    let s = format!("{r:.4}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}${grouped}.{frac}")
}

/// A key's name for a screen (`sha256:4b4e721860d5…`); the page keeps the
/// whole name in a `title`, the exports in full.
pub fn short_key(v: &str) -> String {
    abbreviated(v).into_owned()
}

fn money_filter(v: minijinja::Value) -> String {
    let text = v.to_string();
    text.parse::<Decimal>().map(money).unwrap_or(text)
}

/// One finding to chase: what, how much, where to look.
#[derive(Debug, Serialize)]
struct Chase {
    what: String,
    amount: Decimal,
    look: &'static str,
}

/// What to chase first, costliest first: traffic no app logged (per key),
/// rows missing on the gateway, billed rows without a price, and the
/// unexplained variance. What report.html opens with.
fn chase_list(s: &Summary) -> Vec<Chase> {
    let t = &s.totals;
    let mut out: Vec<Chase> = s
        .unattributed_by_key
        .iter()
        .take(5)
        .map(|k| Chase {
            what: format!(
                "{} rows billed on {} with no client row{}",
                k.rows,
                abbreviated(&k.key),
                if k.registered {
                    String::new()
                } else {
                    " (in no registry: possibly leaked)".to_owned()
                }
            ),
            amount: k.reported_cost.max(k.computed_cost),
            look: "unattributed.csv",
        })
        .collect();
    let missing: u64 = s.costs_by_owner.iter().map(|o| o.missing_usage_rows).sum();
    out.push(Chase {
        what: format!("{missing} client rows the gateway never billed (at Tally's prices)"),
        amount: t.missing_usage_computed,
        look: "missing_usage.csv",
    });
    out.push(Chase {
        what: format!(
            "{} billed rows without a price (as the gateway billed them)",
            t.unpriced_gateway_rows
        ),
        amount: t.unpriced_reported,
        look: "discrepancies.csv",
    });
    out.push(Chase {
        what: "priced rows the gateway billed differently from Tally's prices".to_owned(),
        amount: t.variance.abs(),
        look: "discrepancies.csv",
    });
    out.retain(|c| c.amount > Decimal::ZERO);
    out.sort_by_key(|c| std::cmp::Reverse(c.amount));
    out
}

fn render_html(full: &FullReport<'_>) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_filter("usd", money_filter);
    env.add_filter("short_key", short_key);
    env.add_template("report.html", REPORT_TEMPLATE)?;
    let tmpl = env.get_template("report.html")?;
    fn take<T>(l: &Listed<T>) -> &[T] {
        l.items.get(..HTML_ROWS).unwrap_or(&l.items)
    }
    let ctx = minijinja::context! {
        chase => chase_list(full.summary),
        s => full.summary,
        missing => take(&full.missing_usage),
        missing_total => full.missing_usage.rows,
        unattributed => take(&full.unattributed),
        unattributed_total => full.unattributed.rows,
        discrepancies => take(&full.discrepancies),
        discrepancies_total => full.discrepancies.rows,
        rejects => take(&full.rejects),
        rejects_total => full.rejects.rows,
        limit => HTML_ROWS,
    };
    Ok(tmpl.render(ctx)?)
}

fn pad(s: &str, w: usize) -> String {
    format!("{s:<w$}")
}

fn rpad(s: &str, w: usize) -> String {
    format!("{s:>w$}")
}

/// The summary for a terminal.
pub fn render_table(s: &Summary) -> String {
    let mut o = Lines::default();
    o.line(format!(
        "Tally reconciliation  {} .. {}  (generated {})",
        s.period[0], s.period[1], s.generated_at
    ));
    o.blank();
    inputs_table(&mut o, s);
    o.blank();
    classes_table(&mut o, s);
    o.blank();
    offsets_table(&mut o, s);
    o.blank();
    totals_table(&mut o, s);
    o.blank();
    owners_table(&mut o, s);
    o.section(
        "Unattributed traffic by key",
        s.unattributed_by_key.iter().take(15).map(|k| {
            let reg = if k.registered {
                k.owner.clone()
            } else {
                "NOT IN REGISTRY (possibly leaked)".to_owned()
            };
            format!(
                "  {}{} rows  {} reported  {}  {} .. {}",
                pad(&abbreviated(&k.key), 28),
                rpad(&k.rows.to_string(), 6),
                money(k.reported_cost),
                reg,
                k.first_seen,
                k.last_seen
            )
        }),
    );
    o.section(
        "Failed calls on keys in no registry (probing with a leaked key?)",
        s.failed_on_unregistered_keys.iter().take(15).map(|k| {
            format!(
                "  {}{} failed calls  {} .. {}",
                pad(&abbreviated(&k.key), 28),
                rpad(&k.rows.to_string(), 6),
                k.first_seen,
                k.last_seen
            )
        }),
    );
    o.section(
        "Unpriced models (add them to the price catalog)",
        s.unpriced_models.iter().map(|u| {
            let later = u
                .priced_only_from
                .as_deref()
                .map_or_else(String::new, |from| {
                    format!("  (the catalog prices it only from {from})")
                });
            format!(
                "  {}{} gateway rows, {} client rows{later}",
                pad(&u.model, 30),
                u.gateway_rows,
                u.client_rows
            )
        }),
    );
    o.section(
        "Priced by a fallback rule (no price for the exact model name)",
        s.price_fallbacks.iter().take(15).map(|f| {
            format!(
                "  {}as {} ({}): {} gateway rows",
                pad(&f.model, 36),
                f.priced_as,
                f.rule.name(),
                f.gateway_rows
            )
        }),
    );
    o.0
}

/// The terminal summary being written. Names come from inputs: a control
/// character in one is escaped, so the summary cannot move the cursor or
/// clear the screen.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, t: impl AsRef<str>) {
        self.0.push_str(&crate::text::printable(t.as_ref()));
        self.0.push('\n');
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }

    /// A titled list after a blank line, when it has anything.
    fn section(&mut self, title: &str, rows: impl Iterator<Item = String>) {
        let mut rows = rows.peekable();
        if rows.peek().is_none() {
            return;
        }
        self.blank();
        self.line(title);
        for r in rows {
            self.line(r);
        }
    }
}

/// Each input file's counts, then each side's.
fn inputs_table(o: &mut Lines, s: &Summary) {
    o.line("Inputs");
    for f in &s.inputs {
        let side = match f.side {
            tally_reconcile::SideKind::Client => "client ",
            tally_reconcile::SideKind::Gateway => "gateway",
        };
        o.line(format!(
            "  {side}  {}  [{}]  read {} = accepted {} + duplicates {} + rejected {}",
            f.file,
            f.format,
            f.counts.read,
            f.counts.accepted,
            f.counts.duplicates,
            f.counts.rejected
        ));
    }
    for (name, c) in [("client ", &s.client), ("gateway", &s.gateway)] {
        o.line(format!(
            "  {name}  total: read {} = accepted {} + duplicates {} + rejected {}",
            c.read, c.accepted, c.duplicates, c.rejected
        ));
    }
}

/// Rows per class and side, and pairs per matching pass.
fn classes_table(o: &mut Lines, s: &Summary) {
    o.line(format!(
        "{}{}{}",
        pad("Rows per class", 24),
        rpad("client", 12),
        rpad("gateway", 12)
    ));
    for c in &s.classes {
        o.line(format!(
            "  {}{}{}",
            pad(c.class.name(), 22),
            rpad(&c.client_rows.to_string(), 12),
            rpad(&c.gateway_rows.to_string(), 12)
        ));
    }
    o.line(format!(
        "  pairs by pass: id {}, strict {}, loose {}",
        s.passes.id, s.passes.strict, s.passes.loose
    ));
}

/// The learned clock offsets: global, then the first ten keys.
fn offsets_table(o: &mut Lines, s: &Summary) {
    if let Some(g) = s.offsets.first() {
        o.line(format!(
            "Clock offset (gateway - client): {:+} ms global (MAD {} ms, {} id pairs)",
            g.offset_ms, g.mad_ms, g.pairs
        ));
    }
    for k in s.offsets.iter().skip(1).take(10) {
        o.line(format!(
            "  {}{:+} ms (MAD {} ms, {} pairs)",
            pad(&abbreviated(&k.key), 24),
            k.offset_ms,
            k.mad_ms,
            k.pairs
        ));
    }
    if s.offsets.len() > 11 {
        o.line(format!(
            "  ... {} more keys in report.json",
            s.offsets.len() - 11
        ));
    }
}

/// The money totals.
fn totals_table(o: &mut Lines, s: &Summary) {
    let t = &s.totals;
    o.line(format!("Cost ({}, rounded to 4 places)", s.currency));
    o.line(format!(
        "  billed: computed {}  gateway {}  variance {}",
        money(t.billed_computed),
        money(t.billed_reported),
        money(t.variance)
    ));
    o.line(format!(
        "  missing usage rows (client only): {} by price",
        money(t.missing_usage_computed)
    ));
    o.line(format!(
        "  unattributed (gateway only): {} reported, {} by price",
        money(t.unattributed_reported),
        money(t.unattributed_computed)
    ));
    o.line(format!(
        "  duplicate gateway rows: {} reported",
        money(t.duplicate_reported)
    ));
    o.line(format!(
        "  unpriced rows: {} gateway ({} reported, left out of the variance), {} client; never priced at zero",
        t.unpriced_gateway_rows,
        money(t.unpriced_reported),
        t.unpriced_client_rows
    ));
}

/// Cost per owner.
fn owners_table(o: &mut Lines, s: &Summary) {
    o.line(format!(
        "{}{}{}{}{}{}{}",
        pad("Cost per owner", 34),
        rpad("rows", 8),
        rpad("computed", 14),
        rpad("gateway", 14),
        rpad("variance", 14),
        rpad("missing", 9),
        rpad("unattr.", 9)
    ));
    for c in &s.costs_by_owner {
        o.line(format!(
            "  {}{}{}{}{}{}{}",
            pad(&c.owner, 32),
            rpad(&c.billed_rows.to_string(), 8),
            rpad(&money(c.computed_cost), 14),
            rpad(&money(c.reported_cost), 14),
            rpad(&money(c.variance), 14),
            rpad(&c.missing_usage_rows.to_string(), 9),
            rpad(&c.unattributed_rows.to_string(), 9)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_but_plain_text_is_not() {
        assert_eq!(csv_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_safe("+1"), "'+1");
        assert_eq!(csv_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_safe("gpt-4o"), "gpt-4o");
        // Issue 16: blanks before the formula once hid it.
        assert_eq!(csv_safe(" =1+1"), "' =1+1");
        assert_eq!(csv_safe("\n=1+1"), "'\n=1+1");
        assert_eq!(csv_safe("\n"), "'\n");
        assert_eq!(csv_safe("a =1"), "a =1");
    }

    /// A generated dataset through the engine with default settings.
    fn reconciled(d: &tally_reconcile::synth::Dataset) -> Reconciliation<'_> {
        tally_reconcile::report::reconcile(
            &d.client,
            &d.gateway,
            &d.keys,
            &tally_reconcile::models::AliasTable::default(),
            &d.prices,
            tally_reconcile::report::EngineSettings::default(),
        )
    }

    /// The day every pair disagrees: report.json keeps each list's figures
    /// and its costliest rows, the CSV every row, and the two agree.
    #[test]
    fn report_json_holds_the_costliest_rows_and_the_csv_all_of_them() {
        let spec = tally_reconcile::synth::Spec {
            rows: 6000,
            seed: 3,
            keys: 9,
            gateway_markup_pct: 10,
            ..Default::default()
        };
        let d = tally_reconcile::synth::dataset(&spec).unwrap();
        let rec = reconciled(&d);
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &rec, false, || rec.summary(0)).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        let mut csv = csv::Reader::from_path(dir.path().join("discrepancies.csv")).unwrap();
        let dec = |s: &str| s.parse::<Decimal>().ok();
        let rows: Vec<(Option<Decimal>, Option<Decimal>)> = csv
            .records()
            .map(|r| {
                let r = r.unwrap();
                (dec(&r[10]), dec(&r[11]))
            })
            .collect();
        // Formatted in batches on every core, the same bytes as one thread.
        let mut plain = Vec::new();
        write_csv(&mut plain, rec.discrepancies()).unwrap();
        let mut batched = Vec::new();
        let (n, _) = write_discrepancies(&mut batched, &rec, 7).unwrap();
        assert_eq!(
            String::from_utf8(batched).unwrap(),
            String::from_utf8(plain.clone()).unwrap()
        );
        assert_eq!(
            std::fs::read(dir.path().join("discrepancies.csv")).unwrap(),
            plain
        );
        assert_eq!(n as usize, rows.len());
        let list = &json["discrepancies"];
        // Every pair but the few embeddings too cheap to differ.
        assert!(rows.len() > 5000, "{}", rows.len());
        assert_eq!(list["rows"], rows.len());
        assert_eq!(list["listed"], JSON_ROWS);
        assert_eq!(list["items"].as_array().unwrap().len(), JSON_ROWS);
        type Costs = (Option<Decimal>, Option<Decimal>);
        let sum = |f: fn(&Costs) -> Option<Decimal>| rows.iter().filter_map(f).sum::<Decimal>();
        assert_eq!(
            dec(list["computed_cost"].as_str().unwrap()),
            Some(sum(|r| r.0))
        );
        assert_eq!(
            dec(list["reported_cost"].as_str().unwrap()),
            Some(sum(|r| r.1))
        );
        // The listed rows are the costliest, costliest first.
        let stake = |c: Option<Decimal>, r: Option<Decimal>| match (c, r) {
            (Some(c), Some(r)) => (r - c).abs(),
            (c, r) => c.unwrap_or_default().max(r.unwrap_or_default()),
        };
        let mut all: Vec<Decimal> = rows.iter().map(|&(c, r)| stake(c, r)).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        let listed: Vec<Decimal> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let d = |k: &str| i[k].as_str().and_then(dec);
                stake(d("computed_cost"), d("reported_cost"))
            })
            .collect();
        assert_eq!(listed, all[..JSON_ROWS]);
        // Short lists are listed whole, with their totals.
        let missing = &json["missing_usage"];
        let n = csv::Reader::from_path(dir.path().join("missing_usage.csv"))
            .unwrap()
            .records()
            .count();
        assert!(n > 0 && n < JSON_ROWS, "{n}");
        assert_eq!(
            (missing["rows"].as_u64(), missing["listed"].as_u64()),
            (Some(n as u64), Some(n as u64))
        );
        assert_eq!(json["rejects"]["rows"], 0);
        assert!(json["rejects"].get("computed_cost").is_none());
    }

    #[test]
    fn batched_parallel_matches_equal_a_plain_write() {
        let spec = tally_reconcile::synth::Spec {
            rows: 3000,
            seed: 5,
            keys: 7,
            ..Default::default()
        };
        let d = tally_reconcile::synth::dataset(&spec).unwrap();
        let rec = reconciled(&d);
        let mut plain = Vec::new();
        let n = write_csv(&mut plain, rec.pairs()).unwrap();
        // Batches of 7 pairs: hundreds of batches, several in flight at once.
        let mut batched = Vec::new();
        assert_eq!(write_matches_batched(&mut batched, &rec, 7).unwrap(), n);
        assert!(n > 2900);
        assert_eq!(
            String::from_utf8(batched).unwrap(),
            String::from_utf8(plain).unwrap()
        );
    }

    #[test]
    fn the_fast_record_writer_quotes_like_the_csv_crate() {
        struct Cells(Vec<&'static str>);
        impl Tabular for Cells {
            fn headers() -> &'static [&'static str] {
                &[]
            }
            fn write(&self, out: &mut dyn RecordSink) {
                for (i, c) in self.0.iter().enumerate() {
                    match i % 3 {
                        0 => out.text(c),
                        1 => out.plain(c),
                        _ if c
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.') =>
                        {
                            out.number(c.as_bytes())
                        }
                        _ => out.plain(c),
                    }
                }
            }
        }
        let cells = Cells(vec![
            "plain",
            "-0.5",
            "=HYPERLINK(\"x\")",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            "",
            "@sum",
            "é,ü",
            "+1",
            "",
            "-12.5",
            "7",
            "0.000001",
        ]);
        let (fast, n) = format_lines(std::iter::once(&cells));
        assert_eq!(n, 1);
        let mut wtr = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        write_records(&mut wtr, std::iter::once(&cells)).unwrap();
        let reference = wtr.into_inner().unwrap();
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(reference).unwrap()
        );
    }

    #[test]
    fn money_rounds_half_away_from_zero_with_grouping() {
        assert_eq!(money("1234567.00005".parse().unwrap()), "$1,234,567.0001");
        assert_eq!(money("-0.00015".parse().unwrap()), "-$0.0002");
        assert_eq!(money(Decimal::ZERO), "$0.0000");
    }
}

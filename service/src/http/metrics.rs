//! `/metrics` in Prometheus' text format (version 0.0.4).
//!
//! HTTP figures are counted by this process (requests by route and status,
//! latency histograms by route). Ingest and run figures are read from the
//! store at scrape time, so they count every ingest and run (the CLI's and
//! other replicas' too) and survive restarts.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use tally_schema::enums::StoredName;

use rust_decimal::Decimal;
use tally_schema::rows::{Batch, RunCount, RunRow};

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    /// Observations at or under each bound (not cumulative; summed when
    /// written).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Http {
    /// (method, route, status) -> requests.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (method, route) -> latency.
    latency: BTreeMap<(String, String), Histogram>,
}

/// The process's HTTP figures.
#[derive(Default)]
pub struct Metrics {
    http: Mutex<Http>,
}

impl Metrics {
    /// Counts one request. `route` is the matched pattern (never the raw
    /// path, so ids do not explode the label set).
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Ok(mut h) = self.http.lock() else {
            return;
        };
        *h.requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let hist = h
            .latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        hist.count += 1;
        hist.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b)
            && let Some(c) = hist.counts.get_mut(i)
        {
            *c += 1;
        }
    }

    /// The whole exposition: this process's HTTP figures and the store's.
    pub fn render(&self, store: &StoreFigures) -> String {
        let mut out = String::new();
        store.write(&mut out);
        family(
            &mut out,
            "tally_job_runs_total",
            "counter",
            "Scheduled job runs of this process, by job and how they ended (skipped: another replica held the lock).",
        );
        for job in crate::jobs::JOBS {
            for (ended, name) in crate::jobs::Ended::ALL {
                let _ = writeln!(
                    out,
                    "tally_job_runs_total{{job=\"{job}\",ended=\"{name}\"}} {}",
                    crate::jobs::runs(job, ended)
                );
            }
        }
        if let Ok(h) = self.http.lock() {
            family(
                &mut out,
                "tally_http_requests_total",
                "counter",
                "HTTP requests by method, route and status.",
            );
            for ((m, r, s), n) in &h.requests {
                let _ = writeln!(
                    out,
                    "tally_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{s}\"}} {n}",
                    label(m),
                    label(r)
                );
            }
            family(
                &mut out,
                "tally_http_request_duration_seconds",
                "histogram",
                "HTTP request latency by method and route.",
            );
            for ((m, r), hist) in &h.latency {
                let labels = format!("method=\"{}\",route=\"{}\"", label(m), label(r));
                let mut cumulative = 0;
                for (b, c) in BUCKETS.iter().zip(hist.counts) {
                    cumulative += c;
                    let _ = writeln!(
                        out,
                        "tally_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "tally_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    hist.count
                );
                let _ = writeln!(
                    out,
                    "tally_http_request_duration_seconds_sum{{{labels}}} {}",
                    hist.sum
                );
                let _ = writeln!(
                    out,
                    "tally_http_request_duration_seconds_count{{{labels}}} {}",
                    hist.count
                );
            }
        }
        out
    }
}

/// What the store says, read at scrape time.
#[derive(Debug, Default)]
pub struct StoreFigures {
    /// (side, source) -> (rows stored, rows rejected, batches).
    pub ingested: BTreeMap<(String, String), (i64, i64, i64)>,
    /// Runs stored.
    pub runs: i64,
    /// Seconds all runs took.
    pub run_seconds: Decimal,
    /// The newest run and its rows per class.
    pub latest: Option<(RunRow, Vec<RunCount>)>,
    /// Firing alerts per kind.
    pub firing: Vec<(String, i64)>,
    /// Messages not yet accepted by the mail server, and of those the
    /// ones that failed at least once.
    pub outbox: (u64, u64),
}

impl StoreFigures {
    /// Figures from the store's batches and runs (runs newest first).
    pub fn new(batches: &[Batch], runs: &[RunRow], latest_counts: Vec<RunCount>) -> Self {
        let mut ingested: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
        for b in batches {
            let e = ingested
                .entry((b.side.to_string(), b.source.clone()))
                .or_default();
            e.0 += b.rows_new;
            e.1 += b.rows_rejected;
            e.2 += 1;
        }
        let seconds = |r: &RunRow| {
            let ms = (r.finished_at - r.started_at).num_milliseconds();
            // Milliseconds to seconds for a gauge: exact enough for any run.
            Decimal::from(ms) / Decimal::from(1000)
        };
        let run_seconds = runs.iter().map(seconds).sum::<Decimal>();
        Self {
            ingested,
            runs: i64::try_from(runs.len()).unwrap_or(i64::MAX),
            run_seconds,
            latest: runs.first().cloned().map(|r| (r, latest_counts)),
            firing: Vec::new(),
            outbox: (0, 0),
        }
    }

    fn write(&self, out: &mut String) {
        family(
            out,
            "tally_rows_ingested_total",
            "counter",
            "Usage rows stored, by side and source.",
        );
        for ((side, source), (new, _, _)) in &self.ingested {
            let _ = writeln!(
                out,
                "tally_rows_ingested_total{{side=\"{}\",source=\"{}\"}} {new}",
                label(side),
                label(source)
            );
        }
        family(
            out,
            "tally_rows_rejected_total",
            "counter",
            "Usage rows refused (kept as rejects), by side and source.",
        );
        for ((side, source), (_, rejected, _)) in &self.ingested {
            let _ = writeln!(
                out,
                "tally_rows_rejected_total{{side=\"{}\",source=\"{}\"}} {rejected}",
                label(side),
                label(source)
            );
        }
        family(
            out,
            "tally_batches_total",
            "counter",
            "Ingest batches (files or uploads), by side and source.",
        );
        for ((side, source), (_, _, n)) in &self.ingested {
            let _ = writeln!(
                out,
                "tally_batches_total{{side=\"{}\",source=\"{}\"}} {n}",
                label(side),
                label(source)
            );
        }
        family(
            out,
            "tally_runs_total",
            "counter",
            "Reconciliation runs stored.",
        );
        let _ = writeln!(out, "tally_runs_total {}", self.runs);
        family(
            out,
            "tally_run_duration_seconds_total",
            "counter",
            "Seconds all stored runs took.",
        );
        let _ = writeln!(out, "tally_run_duration_seconds_total {}", self.run_seconds);
        family(
            out,
            "tally_alerts_firing",
            "gauge",
            "Alerts firing, by kind.",
        );
        for (kind, n) in &self.firing {
            let _ = writeln!(out, "tally_alerts_firing{{kind=\"{}\"}} {n}", label(kind));
        }
        family(
            out,
            "tally_outbox_unsent",
            "gauge",
            "Messages the mail server has not accepted yet.",
        );
        let _ = writeln!(out, "tally_outbox_unsent {}", self.outbox.0);
        family(
            out,
            "tally_outbox_retrying",
            "gauge",
            "Unsent messages that failed at least once (mail server down or refusing).",
        );
        let _ = writeln!(out, "tally_outbox_retrying {}", self.outbox.1);
        if let Some((run, counts)) = &self.latest {
            family(
                out,
                "tally_latest_run_duration_seconds",
                "gauge",
                "Seconds the newest run took.",
            );
            let ms = (run.finished_at - run.started_at).num_milliseconds();
            let _ = writeln!(
                out,
                "tally_latest_run_duration_seconds{{run_id=\"{}\"}} {}",
                run.id,
                Decimal::from(ms) / Decimal::from(1000)
            );
            family(
                out,
                "tally_latest_run_rows",
                "gauge",
                "Rows per verdict class and side in the newest run.",
            );
            for c in counts {
                for (side, n) in [("client", c.client_rows), ("gateway", c.gateway_rows)] {
                    let _ = writeln!(
                        out,
                        "tally_latest_run_rows{{class=\"{}\",side=\"{side}\"}} {n}",
                        label(c.class.stored_name())
                    );
                }
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped as the format asks: backslash, quote, newline.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.observe("GET", "/v1/runs", 200, 0.003);
        m.observe("GET", "/v1/runs", 200, 0.2);
        m.observe("GET", "/v1/\"x\"", 404, 100.0);
        let text = m.render(&StoreFigures::default());
        assert!(text.contains(
            "tally_http_requests_total{method=\"GET\",route=\"/v1/runs\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "tally_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/runs\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "tally_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/runs\",le=\"0.25\"} 2"
        ));
        assert!(
            text.contains("route=\"/v1/\\\"x\\\"\",le=\"60\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("route=\"/v1/\\\"x\\\"\",le=\"+Inf\"} 1"),
            "{text}"
        );
    }
}

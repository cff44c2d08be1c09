//! A small load generator for `bench/serve.sh` (not a test): pushes NDJSON
//! client usage to a running `tally serve`, or repeats a GET, and prints
//! what it measured.
//!
//! ```text
//! loadgen ingest BASE TOKEN SECONDS ROWS_PER_REQUEST CONCURRENCY [MAX_ROWS_PER_S]
//! loadgen get    BASE TOKEN PATH REQUESTS CONCURRENCY
//! ```
#![expect(clippy::unwrap_used, reason = "a bench tool: a failure ends the run")]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// `n` client rows with ids from `first` on, one second apart per row.
fn rows(first: u64, n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap() * 420);
    for i in first..first + n {
        let secs = i % 86_400;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let key = i % 50;
        writeln!(
            out,
            "{{\"ts\":\"2026-10-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z\",\"key\":\"sk-proj-bench{key:040}\",\
             \"model\":\"gpt-4o-mini\",\"route\":\"/v1/chat/completions\",\"response_id\":\"chatcmpl-bench-{i}\",\
             \"team\":\"team-{t}\",\"service\":\"svc-{key}\",\"env\":\"prod\",\"http_status\":200,\"stream\":false,\
             \"usage\":{{\"prompt_tokens\":{p},\"completion_tokens\":{c},\"total_tokens\":{tot},\
             \"prompt_tokens_details\":{{\"cached_tokens\":0}}}}}}",
            day = 1 + (i / 86_400) % 28,
            ms = i % 1000,
            t = key % 5,
            p = 100 + i % 900,
            c = 10 + i % 90,
            tot = 110 + i % 900 + i % 90,
        )
        .unwrap();
    }
    out
}

fn ingest(base: &str, token: &str, seconds: u64, per_request: u64, workers: u64, cap: Option<u64>) {
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, stored, latencies) = (next.clone(), stored.clone(), latencies.clone());
            let url = format!("{base}/v1/usage/client");
            let auth = format!("Bearer {token}");
            std::thread::spawn(move || {
                let agent = agent();
                while Instant::now() < deadline {
                    let first = next.fetch_add(per_request, Ordering::SeqCst);
                    // Under a rate cap, a batch waits for its time.
                    if let Some(cap) = cap {
                        let due = start + Duration::from_secs_f64(first as f64 / cap as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let body = rows(first, per_request);
                    let t0 = Instant::now();
                    let resp = agent
                        .post(&url)
                        .header("Authorization", &auth)
                        .header("Content-Type", "application/x-ndjson")
                        .send(&body[..])
                        .unwrap();
                    let status = resp.status().as_u16();
                    let text = resp.into_body().read_to_string().unwrap();
                    assert_eq!(status, 201, "{text}");
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    stored.fetch_add(v["new"].as_u64().unwrap(), Ordering::SeqCst);
                    latencies.lock().unwrap().push(t0.elapsed());
                }
            })
        })
        .collect();
    // Progress every 10 s: a sustained rate, not a burst.
    let mut last = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(10).min(deadline - Instant::now()));
        let now = stored.load(Ordering::SeqCst);
        println!(
            "  t={:>4.0}s stored {now:>10} rows ({:>8.0} rows/s over the last interval)",
            start.elapsed().as_secs_f64(),
            (now - last) as f64 / 10.0
        );
        last = now;
    }
    for h in handles {
        h.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let total = stored.load(Ordering::SeqCst);
    let mut l = latencies.lock().unwrap().clone();
    println!(
        "ingest: {total} rows in {secs:.1} s = {:.0} rows/s ({} requests of {per_request} rows, {workers} at a time; {})",
        total as f64 / secs,
        l.len(),
        percentiles(&mut l)
    );
}

fn percentiles(l: &mut [Duration]) -> String {
    l.sort();
    let at = |q: f64| {
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        l[i].as_secs_f64() * 1000.0
    };
    if l.is_empty() {
        return "no requests".to_owned();
    }
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

fn get(base: &str, token: &str, path: &str, requests: u64, workers: u64) {
    let url = format!("{base}{path}");
    let auth = format!("Bearer {token}");
    // One untimed request first: connections and caches warm.
    let r = agent()
        .get(&url)
        .header("Authorization", &auth)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.into_body().read_to_vec().unwrap().len();
    let left = Arc::new(AtomicU64::new(requests));
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (left, url, auth) = (left.clone(), url.clone(), auth.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut l = Vec::new();
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let t0 = Instant::now();
                    let r = agent
                        .get(&url)
                        .header("Authorization", &auth)
                        .call()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    r.into_body().read_to_vec().unwrap();
                    l.push(t0.elapsed());
                }
                l
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "GET {path}: {requests} requests, {workers} at a time, {bytes} bytes each: {} ({:.0} requests/s)",
        percentiles(&mut all),
        requests as f64 / secs
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let num = |i: usize| a[i].parse::<u64>().unwrap();
    match a.get(1).map(String::as_str) {
        Some("ingest") if a.len() == 7 || a.len() == 8 => ingest(
            &a[2],
            &a[3],
            num(4),
            num(5),
            num(6),
            (a.len() == 8).then(|| num(7)),
        ),
        Some("get") if a.len() == 7 => get(&a[2], &a[3], &a[4], num(5), num(6)),
        _ => {
            println!(
                "loadgen ingest BASE TOKEN SECONDS ROWS_PER_REQUEST CONCURRENCY [MAX_ROWS_PER_S]\n\
                 loadgen get BASE TOKEN PATH REQUESTS CONCURRENCY"
            );
            std::process::exit(2);
        }
    }
}

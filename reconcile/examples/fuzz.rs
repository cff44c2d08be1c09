//! The long fuzz run (`bench/fuzz.sh`): `cargo run --release --example fuzz
//! -- EXECUTIONS [THREADS] [SEED]`. Prints executions, panics and speed;
//! exits 1 on any panic, after writing the first panicking input to
//! `fuzz-panic.bin`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::io::Write;

fn main() -> std::process::ExitCode {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(10_000_000);
    let threads = args.get(1).copied().unwrap_or(2).max(1);
    let seed = args.get(2).copied().unwrap_or(16);
    let seeds = harness::seeds();
    #[expect(clippy::disallowed_methods, reason = "a benchmark times itself")]
    let start = std::time::Instant::now();
    let results: Vec<harness::Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                let n = total / threads + u64::from(t < total % threads);
                s.spawn(move || harness::run(seeds, n, seed.wrapping_mul(1000).wrapping_add(t)))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let executions: u64 = results.iter().map(|r| r.executions).sum();
    let panics: u64 = results.iter().map(|r| r.panics).sum();
    let mut out = std::io::stdout().lock();
    #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
    let rate = executions as f64 / secs.max(1e-9);
    let _ = writeln!(
        out,
        "fuzz: {executions} executions, {panics} panics, {threads} threads, {secs:.0} s ({rate:.0} exec/s), seed {seed}"
    );
    if let Some((name, msg, input)) = results.iter().find_map(|r| r.first.clone()) {
        let _ = writeln!(out, "first panic, a mutant of {name}: {msg}");
        #[expect(clippy::disallowed_methods, reason = "the benchmark keeps its finding")]
        let _ = std::fs::File::create("fuzz-panic.bin").and_then(|mut f| f.write_all(&input));
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

//! `tally reconcile`: flags into a request, the summary onto the terminal,
//! phase timings onto standard error.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::{ClientFormatArg, OutputFormat, ReconcileArgs};
use crate::app::reconcile::{ReconcileRequest, reconcile_files, settings};
use crate::{clock, export, output};

/// Runs `tally reconcile`.
pub fn run(args: &ReconcileArgs) -> Result<ExitCode> {
    let mut phases = Phases::new(args.timings);
    let now_ms = match &args.now {
        Some(s) => tally_reconcile::time::parse_iso(s, None)
            .map_err(|e| anyhow::anyhow!("--now `{s}`: {e}"))?,
        None => clock::now_ms()?,
    };
    let req = ReconcileRequest {
        client: args.client.clone(),
        gateway: args.gateway.clone(),
        keys: args.keys.clone(),
        teams: args.teams.clone(),
        prices: args.prices.clone(),
        prices_effective_from: args.prices_effective_from.clone(),
        aliases: args.aliases.clone(),
        source: args.source.clone(),
        client_source: args.client_source.clone(),
        client_format: args.client_format.map(ClientFormatArg::format),
        engine: settings(
            args.tolerance.as_deref(),
            args.cost_tolerance.as_deref(),
            args.cost_tolerance_abs.as_deref(),
        )?,
        out: args.out.clone(),
        with_matches: !args.no_matches,
        strict: args.strict,
        split_min_bytes: args.split_min_bytes,
        now_ms,
    };
    let summary = reconcile_files(&req, &mut |what| phases.lap(what))?;
    match args.format {
        OutputFormat::Table => {
            let mut text = export::render_table(&summary);
            if let Some(dir) = &args.out {
                text.push_str(&format!("\nReport written to {}\n", dir.display()));
            }
            output::print(&text)?;
        }
        OutputFormat::Json => output::print(&(serde_json::to_string_pretty(&summary)? + "\n"))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Phase timer for `--timings` (stderr, so reports on stdout stay clean).
struct Phases {
    on: bool,
    last: std::time::Instant,
    last_cpu_ms: u64,
}

/// CPU time used by the process so far, in ms (Linux; 0 elsewhere).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3:
    // utime and stime are fields 14 and 15, in clock ticks (100 per second
    // on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks * 10
}

impl Phases {
    fn new(on: bool) -> Self {
        Self {
            on,
            last: std::time::Instant::now(),
            last_cpu_ms: if on { cpu_ms() } else { 0 },
        }
    }

    fn lap(&mut self, what: &str) {
        if self.on {
            let now = std::time::Instant::now();
            let ms = now.duration_since(self.last).as_millis();
            let cpu = cpu_ms();
            // Peak and current resident memory so far (Linux; blank elsewhere).
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .map_or_else(String::new, |kb| format!("{} MB", kb / 1024))
            };
            let _ = writeln!(
                std::io::stderr(),
                "timing {what}: {ms} ms (cpu {} ms, peak rss {}, rss {})",
                cpu.saturating_sub(self.last_cpu_ms),
                field("VmHWM:"),
                field("VmRSS:")
            );
            self.last = now;
            self.last_cpu_ms = cpu;
        }
    }
}

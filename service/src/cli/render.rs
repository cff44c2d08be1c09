//! The command line's text for use cases' results.

use tally_reconcile::report::Class;

use crate::app::follow_up::FollowUp;
use crate::app::ingest::Outcome;
use crate::app::quotas::{QuotaStatus, show};
use crate::app::run::{RunOutcome, Timings};
use crate::app::tokens::TokenView;
use tally_schema::enums::StoredName;

/// `--timings`: where the run's time went, one line.
pub fn describe_timings(t: &Timings) -> String {
    let beside = t.written_beside.map_or(String::new(), |b| {
        format!(" (verdicts written beside reading: {} ms)", b.as_millis())
    });
    let follow_up = t.follow_up.map_or(String::new(), |f| {
        format!(", then alerts and quotas {} ms", f.as_millis())
    });
    format!(
        "timing run: load {} ms, engine {} ms, write verdicts {} ms, commit {} ms{beside}{follow_up}\n",
        t.load.as_millis(),
        t.engine.as_millis(),
        t.write.as_millis(),
        t.commit.as_millis()
    )
}

/// The outcome for people.
pub fn describe_run(o: &RunOutcome) -> String {
    let r = &o.run;
    let mut out = format!(
        "Run {} over [{}, {}) UTC: {} client rows, {} gateway rows (tolerance {} ms, global offset {:+} ms)\n",
        r.id,
        r.window_from.format("%Y-%m-%d %H:%M:%S"),
        r.window_to.format("%Y-%m-%d %H:%M:%S"),
        r.client_rows,
        r.gateway_rows,
        r.tolerance_ms,
        r.global_offset_ms
    );
    out.push_str(&format!(
        "  {:<16} {:>12} {:>12}\n",
        "class", "client", "gateway"
    ));
    for c in Class::ALL {
        if let Some(k) = o.counts.iter().find(|k| *k.class == c) {
            out.push_str(&format!(
                "  {:<16} {:>12} {:>12}\n",
                k.class, k.client_rows, k.gateway_rows
            ));
        }
    }
    if !o.superseded.is_empty() {
        let ids: Vec<String> = o.superseded.iter().map(ToString::to_string).collect();
        out.push_str(&format!("Supersedes run(s) {}\n", ids.join(", ")));
    }
    out
}

/// One line per file: `read = new + duplicate + rejected`.
pub fn describe_ingest(o: &Outcome) -> String {
    let what = if o.already {
        format!(
            "already ingested as batch {} (same bytes): nothing added",
            o.batch_id
        )
    } else {
        format!("batch {}", o.batch_id)
    };
    let mut line = format!(
        "{}: {} read = {} new + {} duplicate + {} rejected ({}; {})\n",
        o.file, o.read, o.new, o.duplicate, o.rejected, o.source, what
    );
    if o.id_reused > 0 {
        line.push_str(&format!(
            "  {} row(s) use a request id also seen on another UTC day: kept as separate \
             requests (ids are unique per day, not forever)\n",
            o.id_reused
        ));
    }
    line
}

/// The quota table for people: name, scope, period, used of limit.
pub fn describe_quotas(statuses: &[QuotaStatus]) -> String {
    if statuses.is_empty() {
        return "no quotas\n".to_owned();
    }
    let mut out = String::new();
    for s in statuses {
        let q = &s.quota;
        out.push_str(&format!(
            "{:<24} {:<28} {:<8} {:<22} {} of {} ({} %){}{}\n",
            q.name,
            s.scope_label,
            q.basis.stored_name(),
            format!("{} {}", s.period_label, q.time_zone),
            show(q.metric, s.used),
            show(q.metric, q.limit),
            s.percent,
            if s.over { "  OVER" } else { "" },
            s.forecast_at
                .map(|t| format!("  forecast: limit at {}", t.to_rfc3339()))
                .unwrap_or_default(),
        ));
    }
    out
}

/// The token list as a table for people.
pub fn describe_tokens(list: &[TokenView]) -> String {
    let mut out = format!(
        "{:<24} {:<9} {:<9} {:<20} {}\n",
        "name", "role", "token", "created (UTC)", "revoked (UTC)"
    );
    for t in list {
        let fmt = |t: &chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        out.push_str(&format!(
            "{:<24} {:<9} {:<9} {:<20} {}\n",
            t.name,
            t.role,
            t.hint,
            fmt(&t.created_at),
            t.revoked_at.as_ref().map_or_else(|| "-".to_owned(), fmt)
        ));
    }
    out
}

/// What a run's alerts and the quotas did, a line each.
pub fn describe_follow_up(f: &FollowUp) -> String {
    let mut out = String::new();
    match &f.alerts {
        Some(Ok(a)) => out.push_str(&format!(
            "alerts: {} fired, {} resolved, {} message(s) queued\n",
            a.fired, a.resolved, a.queued
        )),
        Some(Err(e)) => out.push_str(&format!("alerts failed: {e}\n")),
        None => {}
    }
    match &f.quotas {
        Some(Ok(q)) if q.quotas > 0 => out.push_str(&format!(
            "quotas: {} measured, {} alert(s) fired, {} resolved, {} message(s) queued\n",
            q.quotas, q.fired, q.resolved, q.queued
        )),
        Some(Err(e)) => out.push_str(&format!("quota evaluation failed: {e}\n")),
        _ => {}
    }
    out
}

/// What a command that may raise alerts says of messages held for want of
/// a recipient: nothing when none are.
pub fn describe_held(held: Result<Vec<(i64, String)>, crate::app::alerts::AlertError>) -> String {
    match held {
        Ok(h) if !h.is_empty() => format!(
            "{} alert message(s) held: nobody to send them to (no owner or key contact, no \
             alerts.platform_contact in the configuration); set one and run \
             `tally alerts resend`, or `tally alerts resend --to ADDRESS`\n",
            h.len()
        ),
        Ok(_) => String::new(),
        Err(e) => format!("held messages could not be counted: {e}\n"),
    }
}

/// How `tally report` prints its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// CSV, safe to open in a spreadsheet.
    Csv,
    /// A JSON array.
    Json,
}

/// A report's lines in the format asked for.
pub fn report_text<T: tally_reconcile::report_lines::Tabular + serde::Serialize>(
    lines: &[T],
    format: Format,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => crate::export::text_table(lines),
        Format::Json => serde_json::to_string_pretty(lines)? + "\n",
        Format::Csv => crate::export::csv_string(lines)?,
    })
}

/// What a FOCUS export holds, for standard error.
pub fn describe_focus(e: &crate::app::periods::FocusExport) -> String {
    let state = match &e.closed {
        Some(c) => format!("closed {} by {}: final", c.closed_at, c.closed_by),
        None => "open: live figures".to_owned(),
    };
    format!(
        "{}: {} charge(s) and {} correction(s); BilledCost {} USD, ListCost {} USD; sha256 {} ({state})\n",
        e.period, e.charges, e.corrections, e.billed, e.list, e.sha256
    )
}

/// A close just made.
pub fn describe_close(c: &crate::app::periods::CloseView) -> String {
    let mut carried = String::new();
    for k in &c.carried {
        carried.push_str(&format!(
            "  correction {} {} {} {} ({}): {} request(s), {} USD\n",
            k.day,
            if k.owner.is_empty() {
                "(no owner)"
            } else {
                &k.owner
            },
            k.key,
            k.model,
            k.verdict,
            k.requests,
            k.billed
        ));
    }
    let head = format!(
        "{} closed at {}: {} charge(s) and {} correction(s), BilledCost {} USD, ListCost {} USD\n",
        c.period, c.closed_at, c.charges, c.corrections, c.billed, c.list
    );
    format!(
        "{head}{carried}sha256 {}\n\
         `tally focus --period {}` returns these bytes from now on; rows that arrive for {} later become corrections in the next open month.\n",
        c.sha256, c.period, c.period
    )
}

/// Every close, as a table or JSON.
pub fn describe_closes(
    closes: &[crate::app::periods::CloseView],
    format: Format,
) -> Result<String, crate::export::ExportError> {
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(closes).unwrap_or_default() + "\n");
    }
    if closes.is_empty() {
        return Ok("no month is closed\n".to_owned());
    }
    let mut out = String::new();
    for c in closes {
        let state = match (&c.reopened_at, &c.reopen_reason) {
            (Some(at), reason) => format!(
                "reopened {at} by {}: {}",
                c.reopened_by.as_deref().unwrap_or("?"),
                reason.as_deref().unwrap_or("")
            ),
            (None, _) => "closed".to_owned(),
        };
        out.push_str(&format!(
            "{}  {}  {}  billed {} USD  list {} USD  sha256 {}  {state}\n",
            c.period, c.closed_at, c.closed_by, c.billed, c.list, c.sha256
        ));
    }
    Ok(out)
}

/// A month repriced: per model, per owner, and the total.
pub fn describe_reprice(
    r: &crate::app::reprice::Reprice,
    format: Format,
) -> Result<String, crate::export::ExportError> {
    use crate::app::reprice::RepriceLine;
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(r).unwrap_or_default() + "\n");
    }
    let mut out = String::new();
    if format == Format::Csv {
        out.push_str(
            "dimension,group,rows,was,as_of,diff,contracted,unpriced_was,unpriced_as_of\n",
        );
    }
    let mut section = |title: &str, lines: &[RepriceLine]| {
        if format == Format::Table {
            out.push_str(&format!(
                "{title}\n{:<40} {:>8} {:>16} {:>16} {:>16} {:>16} {:>9}\n",
                "", "rows", "was", "as of", "change", "contracted", "unpriced"
            ));
        }
        for l in lines {
            let unpriced = if l.unpriced_was == l.unpriced_as_of {
                l.unpriced_as_of.to_string()
            } else {
                format!("{}->{}", l.unpriced_was, l.unpriced_as_of)
            };
            if format == Format::Csv {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{}\n",
                    title.to_lowercase().replace(' ', "_"),
                    crate::export::csv_safe(&l.group),
                    l.rows,
                    l.was,
                    l.as_of,
                    l.diff,
                    l.contracted,
                    l.unpriced_was,
                    l.unpriced_as_of
                ));
            } else {
                out.push_str(&format!(
                    "{:<40} {:>8} {:>16} {:>16} {:>16} {:>16} {:>9}\n",
                    l.group, l.rows, l.was, l.as_of, l.diff, l.contracted, unpriced
                ));
            }
        }
        if format == Format::Table {
            out.push('\n');
        }
    };
    section("By model", &r.by_model);
    section("By owner", &r.by_owner);
    section("Total", std::slice::from_ref(&r.total));
    if format == Format::Table {
        out.push_str(&format!(
            "{}: billed rows at Tally's prices then (was) and at the prices in force at {} (as of), USD.\n",
            r.period, r.as_of
        ));
    }
    Ok(out)
}

/// A tie-out: the buckets that disagree first, then the gaps.
pub fn describe_tieout(
    t: &crate::app::tieout::TieOutView,
    format: Format,
) -> Result<String, crate::export::ExportError> {
    use tally_reconcile::tieout::Verdict;
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(t).unwrap_or_default() + "\n");
    }
    let day = |ms: i64| tally_reconcile::time::format_ms(ms);
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let money = |v: Option<rust_decimal::Decimal>| {
        v.map_or_else(|| "-".to_owned(), |d| d.normalize().to_string())
    };
    let mut out = String::new();
    if format == Format::Csv {
        out.push_str("provider,bucket_start,bucket_end,group,model,verdict,provider_requests,gateway_requests,provider_input_tokens,gateway_input_tokens,provider_output_tokens,gateway_output_tokens,provider_cost,gateway_cost,gap\n");
        for l in &t.tieout.lines {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                l.provider.name(),
                day(l.start_ms),
                day(l.end_ms),
                crate::export::csv_safe(&l.group),
                crate::export::csv_safe(&l.model),
                l.verdict.name().to_owned(),
                opt(l.provider_sums.requests),
                opt(l.gateway_sums.requests),
                l.provider_sums.input_tokens,
                l.gateway_sums.input_tokens,
                l.provider_sums.output_tokens,
                l.gateway_sums.output_tokens,
                money(l.provider_sums.cost),
                money(l.gateway_sums.cost),
                money(l.gap),
            ));
        }
        return Ok(out);
    }
    let mut lines: Vec<&tally_reconcile::tieout::BucketLine> = t.tieout.lines.iter().collect();
    lines.sort_by_key(|l| {
        (
            l.verdict == Verdict::Agrees,
            std::cmp::Reverse(l.gap.map(|g| g.abs())),
        )
    });
    out.push_str(&format!(
        "{:<11} {:<10} {:<28} {:<22} {:>15} {:>19} {:>19} {:>12} {:>12} {:>11}\n",
        "provider",
        "day (UTC)",
        "model",
        "verdict",
        "requests p/g",
        "input p/g",
        "output p/g",
        "provider $",
        "gateway $",
        "gap $"
    ));
    for l in lines {
        let verdict = l.verdict.name().to_owned();
        out.push_str(&format!(
            "{:<11} {:<10} {:<28} {:<22} {:>15} {:>19} {:>19} {:>12} {:>12} {:>11}\n",
            l.provider.name(),
            day(l.start_ms).get(..10).unwrap_or_default(),
            if l.group.is_empty() {
                l.model.clone()
            } else {
                format!("{} ({})", l.model, l.group)
            },
            verdict,
            format!(
                "{}/{}",
                opt(l.provider_sums.requests),
                opt(l.gateway_sums.requests)
            ),
            format!(
                "{}/{}",
                l.provider_sums.input_tokens, l.gateway_sums.input_tokens
            ),
            format!(
                "{}/{}",
                l.provider_sums.output_tokens, l.gateway_sums.output_tokens
            ),
            money(l.provider_sums.cost),
            money(l.gateway_sums.cost),
            money(l.gap),
        ));
    }
    for (title, m) in [
        ("provider", &t.tieout.gap_by_provider),
        ("model", &t.tieout.gap_by_model),
        ("day", &t.tieout.gap_by_day),
    ] {
        if !m.is_empty() {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} {}", v.normalize()))
                .collect();
            out.push_str(&format!(
                "gap by {title} (USD, provider - gateway): {}\n",
                parts.join(", ")
            ));
        }
    }
    if t.tieout.rows_outside > 0 {
        out.push_str(&format!(
            "{} gateway row(s) of these providers fall outside every report bucket: fetch the reports for their days\n",
            t.tieout.rows_outside
        ));
    }
    Ok(out)
}

//! The wall clock and times given by people, for the edges: commands, the
//! server and its jobs read the clock here and pass "now" inward as a
//! value; the engine and the use cases never read it.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

/// UTC milliseconds now.
pub fn now_ms() -> Result<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock is before 1970")?;
    Ok(i64::try_from(d.as_millis())?)
}

/// Now, as a UTC time.
pub fn utc_now() -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(now_ms()?).context("clock out of range")
}

/// A time a person gave (a flag, a query parameter, a form field):
/// `YYYY-MM-DD` (00:00 UTC) or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64> {
    tally_reconcile::time::parse_date_or_iso(s).map_err(anyhow::Error::msg)
}

//! Quota decisions: calendar periods in a quota's own time zone, which
//! thresholds usage has crossed, and when the period's burn rate says the
//! limit will be reached. Pure: usage and "now" come in as arguments.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cost, USD.
    Cost,
    /// Tokens, input plus output.
    Tokens,
    Requests,
}

/// How long a quota's period is; every period starts at local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A calendar day.
    Day,
    /// Monday to Sunday (ISO weeks).
    Week,
    /// A calendar month.
    Month,
}

/// The default thresholds, percent of the limit.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];

/// Errors of quota arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The zone is not an IANA name.
    #[error("`{0}` is not an IANA time zone (e.g. America/Los_Angeles)")]
    Zone(String),
    /// A date out of range.
    #[error("no {0} period around this time")]
    OutOfRange(&'static str),
}

/// Parses an IANA zone name.
pub fn zone(name: &str) -> Result<Tz, QuotaError> {
    name.parse::<Tz>()
        .map_err(|_| QuotaError::Zone(name.to_owned()))
}

/// The first instant of local day `d` in `tz`. A midnight that does not
/// exist (a DST jump at midnight) is replaced by the first instant that
/// does; an ambiguous one (clocks back across midnight) is the earlier.
fn local_midnight(tz: Tz, d: NaiveDate) -> Result<DateTime<Utc>, QuotaError> {
    let mut t = d
        .and_hms_opt(0, 0, 0)
        .ok_or(QuotaError::OutOfRange("day"))?;
    // A gap is at most a few hours; step through it a minute at a time.
    for _ in 0..(24 * 60) {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(x) => return Ok(x.with_timezone(&Utc)),
            LocalResult::Ambiguous(early, _) => return Ok(early.with_timezone(&Utc)),
            LocalResult::None => t += Duration::minutes(1),
        }
    }
    Err(QuotaError::OutOfRange("day"))
}

/// The period of `period` in `tz` that `now` falls in: `[start, end)`, UTC.
pub fn bounds(
    period: Period,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), QuotaError> {
    let today = now.with_timezone(&tz).date_naive();
    let (first, next) = match period {
        Period::Day => (today, today.succ_opt()),
        Period::Week => {
            let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
            (monday, monday.checked_add_signed(Duration::days(7)))
        }
        Period::Month => {
            let first = today.with_day(1).ok_or(QuotaError::OutOfRange("month"))?;
            (first, first.checked_add_months(chrono::Months::new(1)))
        }
    };
    let next = next.ok_or(QuotaError::OutOfRange("period"))?;
    Ok((local_midnight(tz, first)?, local_midnight(tz, next)?))
}

/// The thresholds (percent) that `used` has reached of `limit`, in
/// ascending order. A limit of zero or less is reached by any use.
pub fn reached(thresholds: &[u32], limit: Decimal, used: Decimal) -> Vec<u32> {
    let mut hit: Vec<u32> = thresholds
        .iter()
        .copied()
        .filter(|t| {
            if limit <= Decimal::ZERO {
                return used > Decimal::ZERO;
            }
            used * Decimal::from(100) >= limit * Decimal::from(*t)
        })
        .collect();
    hit.sort_unstable();
    hit.dedup();
    hit
}

/// When the limit will be reached at the period's burn rate so far, if
/// that is before the period ends and it has not been reached yet. `None`
/// also when too little of the period has passed to say (less than
/// `min_elapsed`: an hour's burst is not a month's rate).
pub fn forecast(
    limit: Decimal,
    used: Decimal,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    min_elapsed: Duration,
) -> Option<DateTime<Utc>> {
    if used >= limit || used <= Decimal::ZERO || now >= end {
        return None;
    }
    let elapsed = (now - start).num_milliseconds();
    if elapsed < min_elapsed.num_milliseconds() || elapsed <= 0 {
        return None;
    }
    // ms until the limit at `used / elapsed` per ms.
    let remaining = (limit - used) * Decimal::from(elapsed) / used;
    let ms = i64::try_from(remaining.ceil()).ok()?;
    let at = now.checked_add_signed(Duration::milliseconds(ms))?;
    (at < end).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_los_angeles_day_starts_at_local_midnight_across_dst() {
        let la = zone("America/Los_Angeles").unwrap();
        // A normal day: midnight PST is 08:00 UTC.
        let (s, e) = bounds(Period::Day, la, utc("2026-01-15T12:00:00Z")).unwrap();
        assert_eq!(
            (s, e),
            (utc("2026-01-15T08:00:00Z"), utc("2026-01-16T08:00:00Z"))
        );
        // Spring forward (2026-03-08): a 23-hour day, midnight PST to PDT.
        let (s, e) = bounds(Period::Day, la, utc("2026-03-08T20:00:00Z")).unwrap();
        assert_eq!(
            (s, e),
            (utc("2026-03-08T08:00:00Z"), utc("2026-03-09T07:00:00Z"))
        );
        assert_eq!((e - s).num_hours(), 23);
        // Fall back (2026-11-01): a 25-hour day.
        let (s, e) = bounds(Period::Day, la, utc("2026-11-01T20:00:00Z")).unwrap();
        assert_eq!(
            (s, e),
            (utc("2026-11-01T07:00:00Z"), utc("2026-11-02T08:00:00Z"))
        );
        assert_eq!((e - s).num_hours(), 25);
        // 23:30 local on Oct 31 is still Oct 31 there, though Nov 1 in UTC.
        let (s, _) = bounds(Period::Day, la, utc("2026-11-01T06:30:00Z")).unwrap();
        assert_eq!(s, utc("2026-10-31T07:00:00Z"));
    }

    #[test]
    fn weeks_start_monday_and_months_on_the_first_local_midnight() {
        let la = zone("America/Los_Angeles").unwrap();
        // Sunday 2026-03-08 belongs to the week of Monday 2026-03-02 (PST)
        // that ends Monday 2026-03-09 (PDT).
        let (s, e) = bounds(Period::Week, la, utc("2026-03-08T20:00:00Z")).unwrap();
        assert_eq!(
            (s, e),
            (utc("2026-03-02T08:00:00Z"), utc("2026-03-09T07:00:00Z"))
        );
        let (s, e) = bounds(Period::Month, la, utc("2026-03-31T23:00:00Z")).unwrap();
        assert_eq!(
            (s, e),
            (utc("2026-03-01T08:00:00Z"), utc("2026-04-01T07:00:00Z"))
        );
        let utc_zone = zone("UTC").unwrap();
        let (s, e) = bounds(Period::Month, utc_zone, utc("2026-12-31T23:59:59Z")).unwrap();
        assert_eq!(
            (s, e),
            (utc("2026-12-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
        );
        assert!(zone("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn a_midnight_that_does_not_exist_starts_the_day_at_the_first_that_does() {
        // Santiago springs forward at 24:00 -> 01:00 (2026-09-06).
        let scl = zone("America/Santiago").unwrap();
        let (s, _) = bounds(Period::Day, scl, utc("2026-09-06T12:00:00Z")).unwrap();
        assert_eq!(s.with_timezone(&scl).format("%H:%M").to_string(), "01:00");
    }

    #[test]
    fn thresholds_are_reached_at_their_exact_percent() {
        let t = DEFAULT_THRESHOLDS;
        assert_eq!(reached(&t, d("100"), d("49.99")), Vec::<u32>::new());
        assert_eq!(reached(&t, d("100"), d("50")), vec![50]);
        assert_eq!(reached(&t, d("100"), d("80.00")), vec![50, 80]);
        assert_eq!(reached(&t, d("100"), d("250")), vec![50, 80, 100]);
        assert_eq!(reached(&[100, 50, 50], d("10"), d("5")), vec![50]);
        assert_eq!(reached(&t, d("0"), d("0.01")), vec![50, 80, 100]);
        assert!(reached(&t, d("0"), d("0")).is_empty());
    }

    #[test]
    fn the_burn_rate_says_when_the_limit_will_be_reached() {
        let period = (utc("2026-11-01T00:00:00Z"), utc("2026-12-01T00:00:00Z"));
        let hour = Duration::hours(1);
        // $40 of $100 in 10 days: $4/day, $60 more takes 15 days.
        let at = forecast(d("100"), d("40"), period, utc("2026-11-11T00:00:00Z"), hour);
        assert_eq!(at, Some(utc("2026-11-26T00:00:00Z")));
        // $20 in 10 days reaches $100 after the month ends: no alert.
        assert_eq!(
            forecast(d("100"), d("20"), period, utc("2026-11-11T00:00:00Z"), hour),
            None
        );
        // Already over, nothing used, too early to say.
        assert_eq!(
            forecast(
                d("100"),
                d("100"),
                period,
                utc("2026-11-11T00:00:00Z"),
                hour
            ),
            None
        );
        assert_eq!(
            forecast(d("100"), d("0"), period, utc("2026-11-11T00:00:00Z"), hour),
            None
        );
        assert_eq!(
            forecast(d("100"), d("99"), period, utc("2026-11-01T00:30:00Z"), hour),
            None
        );
    }
}

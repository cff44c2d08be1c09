//! Timestamps: everything becomes UTC milliseconds since the Unix epoch.
//!
//! The common shapes (`2026-11-20T10:00:00.123Z`, `2026-11-20 10:00:00.123`,
//! `...+02:00`, psql's `...+00`) go through a hand-written fast path because
//! timestamp parsing dominates parse time at ten million rows; anything else
//! falls back to chrono with an explicit format.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// How to read a timestamp that carries no offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// Naive timestamps are UTC.
    Utc,
    /// Naive timestamps are at a fixed offset from UTC (seconds east).
    Fixed(i32),
    /// Naive timestamps are local time in an IANA zone.
    Iana(chrono_tz::Tz),
}

impl Zone {
    /// Parses `UTC`, `+05:30`/`-0800`, or an IANA name like `Europe/Paris`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") {
            return Ok(Zone::Utc);
        }
        if let Some(off) = parse_offset(t.as_bytes()) {
            return Ok(Zone::Fixed(off));
        }
        t.parse::<chrono_tz::Tz>()
            .map(Zone::Iana)
            .map_err(|_| format!("unknown time zone `{t}` (use UTC, +HH:MM or an IANA name)"))
    }

    fn to_utc_ms(self, local_ms: i64) -> Result<i64, &'static str> {
        match self {
            Zone::Utc => Ok(local_ms),
            Zone::Fixed(secs) => Ok(local_ms - i64::from(secs) * 1000),
            Zone::Iana(tz) => {
                let naive = DateTime::from_timestamp_millis(local_ms)
                    .ok_or("timestamp out of range")?
                    .naive_utc();
                // An ambiguous local time (DST fall-back) takes the earlier
                // instant; a non-existent one (spring-forward gap) is refused.
                match tz.from_local_datetime(&naive).earliest() {
                    Some(dt) => Ok(dt.timestamp_millis()),
                    None => Err("local time does not exist in that zone (DST gap)"),
                }
            }
        }
    }
}

/// How a source writes its timestamps.
#[derive(Debug, Clone, PartialEq)]
pub enum TsFormat {
    /// RFC 3339 / ISO 8601 (offset optional; a naive value uses the zone).
    Iso,
    /// Unix seconds, integer or fractional.
    UnixSeconds,
    /// Unix milliseconds.
    UnixMillis,
    /// Unix nanoseconds (OpenTelemetry `startTimeUnixNano`), floored to ms.
    UnixNanos,
    /// A chrono `strftime` pattern; with `%z`/`%:z` the offset is read.
    Pattern(String),
}

impl TsFormat {
    /// Parses a format name: `rfc3339`/`iso8601`, `unix_s`, `unix_ms`, `unix_ns`, or a
    /// pattern containing `%`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "rfc3339" | "iso8601" | "iso" => Ok(TsFormat::Iso),
            "unix_s" | "unix" | "epoch_s" => Ok(TsFormat::UnixSeconds),
            "unix_ms" | "epoch_ms" => Ok(TsFormat::UnixMillis),
            "unix_ns" | "epoch_ns" => Ok(TsFormat::UnixNanos),
            p if p.contains('%') => Ok(TsFormat::Pattern(p.to_owned())),
            other => Err(format!(
                "unknown timestamp format `{other}` (rfc3339, unix_s, unix_ms, unix_ns or a strftime pattern)"
            )),
        }
    }

    /// Parses one value into UTC milliseconds.
    pub fn parse_value(&self, s: &str, zone: Zone) -> Result<i64, &'static str> {
        let s = s.trim();
        match self {
            TsFormat::Iso => parse_iso(s, Some(zone)),
            TsFormat::UnixSeconds => {
                let d: rust_decimal::Decimal = s.parse().map_err(|_| "not a number of seconds")?;
                let ms = d * rust_decimal::Decimal::from(1000);
                i64::try_from(ms.floor()).map_err(|_| "timestamp out of range")
            }
            TsFormat::UnixMillis => s
                .parse::<i64>()
                .map_err(|_| "not an integer of milliseconds"),
            TsFormat::UnixNanos => s
                .parse::<u64>()
                .map_err(|_| "not an integer of nanoseconds")
                .and_then(|ns| i64::try_from(ns / 1_000_000).map_err(|_| "timestamp out of range")),
            TsFormat::Pattern(p) => {
                if let Ok(dt) = DateTime::parse_from_str(s, p) {
                    return Ok(dt.timestamp_millis());
                }
                let naive = NaiveDateTime::parse_from_str(s, p)
                    .map_err(|_| "does not match the mapping's timestamp pattern")?;
                zone.to_utc_ms(naive.and_utc().timestamp_millis())
            }
        }
    }
}

fn digits(b: &[u8], from: usize, n: usize) -> Option<i64> {
    let mut v: i64 = 0;
    for i in from..from + n {
        let c = *b.get(i)?;
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// `+HH:MM`, `-HHMM`, `+HH` to seconds east of UTC.
fn parse_offset(b: &[u8]) -> Option<i32> {
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = digits(b, 1, 2)?;
    let m = match b.len() {
        3 => 0,
        5 => digits(b, 3, 2)?,
        6 if b.get(3) == Some(&b':') => digits(b, 4, 2)?,
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    i32::try_from(sign * (h * 3600 + m * 60)).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The last date [`parse_iso_with`] read and its day number: rows come in
/// time order, so most share the previous row's date.
#[derive(Debug, Clone, Copy, Default)]
pub struct DateMemo {
    /// The date's ten bytes; none before the first valid date.
    date: Option<[u8; 10]>,
    days: i64,
}

/// Parses an ISO 8601 / RFC 3339 timestamp to UTC milliseconds. Without an
/// offset in the text, `naive_zone` decides; `None` refuses naive values.
/// Fractions beyond milliseconds are truncated toward the past.
pub fn parse_iso(s: &str, naive_zone: Option<Zone>) -> Result<i64, &'static str> {
    parse_iso_with(s, naive_zone, &mut DateMemo::default())
}

/// [`parse_iso`], taking the date from `memo` when it is the same as last
/// time (and remembering it otherwise).
pub fn parse_iso_with(
    s: &str,
    naive_zone: Option<Zone>,
    memo: &mut DateMemo,
) -> Result<i64, &'static str> {
    let b = s.as_bytes();
    let bad = "not an RFC 3339 timestamp";
    let Some(h) = b.first_chunk::<19>() else {
        return Err(bad);
    };
    // Fixed positions: every digit checked in one pass without early exits
    // (two timestamps a row, tens of millions of rows).
    let n = |i: usize| h.get(i).map_or(10, |c| c.wrapping_sub(b'0'));
    let v = |i: usize| i64::from(n(i));
    let time_bad = [11, 12, 14, 15, 17, 18]
        .iter()
        .fold(false, |acc, &i| acc | (n(i) > 9))
        || !matches!(h[10], b'T' | b't' | b' ')
        || h[13] != b':'
        || h[16] != b':';
    let days = if memo
        .date
        .as_ref()
        .is_some_and(|d| h.first_chunk::<10>() == Some(d))
    {
        if time_bad {
            return Err(bad);
        }
        memo.days
    } else {
        let date_bad = [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .fold(false, |acc, &i| acc | (n(i) > 9))
            || h[4] != b'-'
            || h[7] != b'-';
        if date_bad || time_bad {
            return Err(bad);
        }
        let y = v(0) * 1000 + v(1) * 100 + v(2) * 10 + v(3);
        let (mo, d) = (v(5) * 10 + v(6), v(8) * 10 + v(9));
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
            return Err("date or time out of range");
        }
        let days = days_from_civil(y, mo, d);
        *memo = DateMemo {
            date: h.first_chunk::<10>().copied(),
            days,
        };
        days
    };
    let (h, mi, se) = (v(11) * 10 + v(12), v(14) * 10 + v(15), v(17) * 10 + v(18));
    if h > 23 || mi > 59 || se > 59 {
        return Err("date or time out of range");
    }
    let mut i = 19;
    let mut ms = 0;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad);
        }
        let take = (i - start).min(3);
        ms = digits(b, start, take).ok_or(bad)?;
        for _ in take..3 {
            ms *= 10;
        }
    }
    let local = (days * 86_400 + h * 3600 + mi * 60 + se) * 1000 + ms;
    let rest = b.get(i..).unwrap_or_default();
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    match rest {
        [] => naive_zone
            .ok_or("no UTC offset (RFC 3339 needs Z or ±HH:MM)")?
            .to_utc_ms(local),
        b"Z" | b"z" => Ok(local),
        b"UTC" => Ok(local),
        off => {
            let secs = parse_offset(off).ok_or("bad UTC offset")?;
            Ok(local - i64::from(secs) * 1000)
        }
    }
}

/// A date (`YYYY-MM-DD`, meaning 00:00 UTC) or an RFC 3339 time, as UTC
/// milliseconds: how people write a period's bounds and a price's start.
/// The error quotes the text and says what is accepted.
pub fn parse_date_or_iso(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    parse_iso(t, None).map_err(|e| format!("`{t}`: {e} (use YYYY-MM-DD or RFC 3339)"))
}

/// Formats UTC milliseconds as RFC 3339 with milliseconds and `Z`.
pub fn format_ms(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_ms(ms, &mut s);
    s
}

/// Appends UTC milliseconds as `2026-11-20T10:00:00.123Z` (years 0..=9999;
/// exports write tens of millions of these, so no formatter machinery).
pub fn write_ms(ms: i64, out: &mut String) {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    // Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if !(0..=9999).contains(&y) {
        // Outside what the fast path covers: let chrono format it.
        if let Some(d) = DateTime::<Utc>::from_timestamp_millis(ms) {
            out.push_str(&d.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        return;
    }
    fn push(out: &mut String, v: i64, width: u32) {
        for p in (0..width).rev() {
            let digit = (v / 10i64.pow(p)) % 10;
            out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
        }
    }
    push(out, y, 4);
    out.push('-');
    push(out, m, 2);
    out.push('-');
    push(out, d, 2);
    out.push('T');
    push(out, rem / 3_600_000, 2);
    out.push(':');
    push(out, rem / 60_000 % 60, 2);
    out.push(':');
    push(out, rem / 1000 % 60, 2);
    out.push('.');
    push(out, rem % 1000, 3);
    out.push('Z');
}

/// Parses a duration such as `2s`, `1500ms`, `1m`, `0.5s` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        return Err(format!("duration `{t}` needs a unit: ms, s, m or h"));
    };
    let d: rust_decimal::Decimal = num
        .trim()
        .parse()
        .map_err(|_| format!("duration `{t}` is not a number with a unit"))?;
    if d.is_sign_negative() {
        return Err(format!("duration `{t}` is negative"));
    }
    i64::try_from((d * rust_decimal::Decimal::from(mult)).round())
        .map_err(|_| format!("duration `{t}` is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_midnight_and_times_keep_their_offset() {
        assert_eq!(
            super::parse_date_or_iso("2026-11-20"),
            super::parse_iso("2026-11-20T00:00:00Z", None).map_err(String::from)
        );
        assert_eq!(
            super::parse_date_or_iso(" 2026-11-20T02:00:00+02:00 "),
            Ok(super::parse_iso("2026-11-20T00:00:00Z", None).unwrap())
        );
        let e = super::parse_date_or_iso("2026-11-2x").unwrap_err();
        assert!(
            e.contains("`2026-11-2x`") && e.contains("YYYY-MM-DD"),
            "{e}"
        );
    }

    proptest::proptest! {
        /// Reading a run of timestamps through one date memo gives what
        /// reading each alone gives, values and errors, valid or not.
        #[test]
        fn a_date_memo_changes_no_answer(
            picks in proptest::collection::vec((0usize..6, 0usize..4, 0usize..3, 0usize..4), 1..40),
        ) {
            let dates = ["2026-11-20", "2026-11-21", "2024-02-29", "2026-02-29", "2026-13-01", "20x6-11-20"];
            let times = ["10:00:00", "23:59:59", "24:00:00", "1x:00:00"];
            let seps = ["T", " ", "x"];
            let tails = ["Z", ".123Z", "+02:00", ""];
            let mut memo = DateMemo::default();
            for (d, t, sep, tail) in picks {
                let s = format!("{}{}{}{}", dates[d], seps[sep], times[t], tails[tail]);
                proptest::prop_assert_eq!(
                    parse_iso_with(&s, Some(Zone::Utc), &mut memo),
                    parse_iso(&s, Some(Zone::Utc)),
                    "{}", s
                );
            }
        }
    }

    use super::*;

    fn chrono_ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        for s in [
            "2026-11-20T10:00:00Z",
            "2026-11-20T10:00:00.123Z",
            "2026-11-20T10:00:00.123456+02:00",
            "2024-02-29T23:59:59.999-08:00",
            "1969-12-31T23:59:59.5Z",
            "2000-03-01T00:00:00+05:30",
        ] {
            assert_eq!(parse_iso(s, None).unwrap(), chrono_ms(s), "{s}");
        }
    }

    #[test]
    fn naive_uses_zone_or_is_refused() {
        assert!(parse_iso("2026-11-20 10:00:00.040", None).is_err());
        assert_eq!(
            parse_iso("2026-11-20 10:00:00.040", Some(Zone::Utc)).unwrap(),
            chrono_ms("2026-11-20T10:00:00.040Z")
        );
        assert_eq!(
            parse_iso("2026-11-20 10:00:00+00", None).unwrap(),
            chrono_ms("2026-11-20T10:00:00Z")
        );
        let paris = Zone::parse("Europe/Paris").unwrap();
        assert_eq!(
            parse_iso("2026-07-01 12:00:00", Some(paris)).unwrap(),
            chrono_ms("2026-07-01T10:00:00Z")
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-20T10:00:00+25:00",
            "",
        ] {
            assert!(parse_iso(s, Some(Zone::Utc)).is_err(), "{s}");
        }
    }

    #[test]
    fn unix_and_patterns() {
        assert_eq!(
            TsFormat::UnixSeconds.parse_value("1.5", Zone::Utc).unwrap(),
            1500
        );
        assert_eq!(
            TsFormat::UnixMillis.parse_value("1500", Zone::Utc).unwrap(),
            1500
        );
        let p = TsFormat::parse("%d/%m/%Y %H:%M:%S").unwrap();
        assert_eq!(
            p.parse_value("20/11/2026 10:00:00", Zone::Fixed(3600))
                .unwrap(),
            chrono_ms("2026-11-20T09:00:00Z")
        );
    }

    #[test]
    fn fast_formatting_agrees_with_chrono() {
        for ms in [
            0i64,
            -1,
            1_795_132_800_123,
            951_782_400_000,
            253_402_300_799_999,
            -62_135_596_800_000,
            1_709_251_199_999,
        ] {
            let want = DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(format_ms(ms), want, "{ms}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("2s").unwrap(), 2000);
        assert_eq!(parse_duration_ms("1500ms").unwrap(), 1500);
        assert_eq!(parse_duration_ms("0.5s").unwrap(), 500);
        assert!(parse_duration_ms("2").is_err());
        assert!(parse_duration_ms("-1s").is_err());
    }
}

//! The wall clock and times given by people, for the edges: commands, the
//! server and its jobs read the clock here and pass "now" inward as a
//! value (or as a [`Clock`], for a use case that stamps a start and an
//! end); the engine and the use cases never read it themselves.

use chrono::{DateTime, Utc};

/// Why the clock could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The system clock reads before 1970.
    #[error("the system clock is before 1970")]
    BeforeEpoch,
    /// The time does not fit the calendar Tally keeps.
    #[error("the clock is out of range")]
    OutOfRange,
}

/// A clock: UTC milliseconds now. The wall clock is [`now_ms`]; tests pass
/// a fixed or stepped one.
pub type Clock = fn() -> Result<i64, ClockError>;

/// UTC milliseconds now.
pub fn now_ms() -> Result<i64, ClockError> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ClockError::BeforeEpoch)?;
    i64::try_from(d.as_millis()).map_err(|_| ClockError::OutOfRange)
}

/// Now, as a UTC time.
pub fn utc_now() -> Result<DateTime<Utc>, ClockError> {
    utc_of(now_ms()?)
}

/// A clock's reading as a UTC time.
pub fn utc_of(ms: i64) -> Result<DateTime<Utc>, ClockError> {
    DateTime::from_timestamp_millis(ms).ok_or(ClockError::OutOfRange)
}

/// A time a person gave (a flag, a query parameter, a form field):
/// `YYYY-MM-DD` (00:00 UTC) or RFC 3339. The error says what is accepted.
pub fn parse_time(s: &str) -> Result<i64, String> {
    tally_reconcile::time::parse_date_or_iso(s)
}

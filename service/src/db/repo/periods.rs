//! Closed billing periods and the charges they froze.

// The parent's imports and helpers: these files are sections of one repository.
use super::*;

/// The close in force for `period` (`YYYY-MM`), if it is closed.
pub fn close_in_force(
    conn: &mut AnyConnection,
    period: &str,
) -> Result<Option<ClosedPeriod>, DbError> {
    Ok(closed_periods::table
        .filter(closed_periods::period.eq(period))
        .filter(closed_periods::reopened_at.is_null())
        .select(ClosedPeriod::as_select())
        .first(conn)
        .optional()?)
}

/// Every close, reopened ones too, by period then time.
pub fn closes(conn: &mut AnyConnection) -> Result<Vec<ClosedPeriod>, DbError> {
    Ok(closed_periods::table
        .order((closed_periods::period, closed_periods::id))
        .select(ClosedPeriod::as_select())
        .load(conn)?)
}

/// Stores a close and its charges in one transaction. A close already in
/// force for the period is a [`DbError::Conflict`].
pub fn insert_close(
    conn: &mut AnyConnection,
    close: &NewClosedPeriod<'_>,
    charges: &mut [ClosedCharge],
) -> Result<ClosedPeriod, DbError> {
    in_transaction(conn, |c| -> Result<ClosedPeriod, DbError> {
        let id: i64 = diesel::insert_into(closed_periods::table)
            .values(close)
            .returning(closed_periods::id)
            .get_result(c)
            .map_err(|e| match e {
                DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    DbError::Conflict(format!("{} is closed already", close.period))
                }
                e => DbError::Query(e),
            })?;
        for ch in charges.iter_mut() {
            ch.close_id = id;
        }
        // 16 values a row.
        for chunk in charges.chunks(1000) {
            on_backend!(c, c => diesel::insert_into(closed_charges::table).values(chunk).execute(c))?;
        }
        Ok(closed_periods::table
            .find(id)
            .select(ClosedPeriod::as_select())
            .first(c)?)
    })
}

/// The charges frozen for days in `[from_ms, to_ms)` by closes in force:
/// a closed period's own, and the corrections later closes froze for it.
pub fn frozen_charges(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> Result<Vec<ClosedCharge>, DbError> {
    Ok(closed_charges::table
        .inner_join(closed_periods::table)
        .filter(closed_periods::reopened_at.is_null())
        .filter(closed_charges::day_ms.ge(from_ms))
        .filter(closed_charges::day_ms.lt(to_ms))
        .select(ClosedCharge::as_select())
        .load(conn)?)
}

/// Marks the close in force for `period` reopened; whether there was one.
pub fn reopen_close(
    conn: &mut AnyConnection,
    period: &str,
    by: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let n = diesel::update(
        closed_periods::table
            .filter(closed_periods::period.eq(period))
            .filter(closed_periods::reopened_at.is_null()),
    )
    .set((
        closed_periods::reopened_at.eq(Some(now)),
        closed_periods::reopened_by.eq(Some(by)),
        closed_periods::reopen_reason.eq(Some(reason)),
    ))
    .execute(conn)?;
    Ok(n > 0)
}

/// Adds contracts, replacing those of the same name, in one transaction.
pub fn replace_contracts(conn: &mut AnyConnection, rows: &[NewContract]) -> Result<usize, DbError> {
    in_transaction(conn, |c| -> Result<usize, DbError> {
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        diesel::delete(contracts::table.filter(contracts::name.eq_any(&names))).execute(c)?;
        for chunk in rows.chunks(1000) {
            on_backend!(c, c => diesel::insert_into(contracts::table).values(chunk).execute(c))?;
        }
        Ok(rows.len())
    })
}

/// Every contract, by name.
pub fn contracts(conn: &mut AnyConnection) -> Result<Vec<ContractRow>, DbError> {
    Ok(contracts::table
        .order(contracts::name)
        .select(ContractRow::as_select())
        .load(conn)?)
}

/// Keeps a tie-out; its id.
pub fn insert_tieout(conn: &mut AnyConnection, t: &NewTieout<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(tieouts::table)
        .values(t)
        .returning(tieouts::id)
        .get_result(conn)?)
}

/// The newest tie-out whose window overlaps `[from_ms, to_ms)`.
pub fn latest_tieout(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> Result<Option<TieoutRow>, DbError> {
    Ok(tieouts::table
        .filter(tieouts::from_ms.lt(to_ms))
        .filter(tieouts::to_ms.gt(from_ms))
        .order(tieouts::id.desc())
        .select(TieoutRow::as_select())
        .first(conn)
        .optional()?)
}

//! Service tokens and sign-in sessions.

// The parent's imports and helpers: these files are sections of one repository.
use super::*;

/// Stores a new token's hash. A live token with the same name is a
/// [`DbError::Conflict`].
pub fn insert_token(conn: &mut AnyConnection, t: &NewToken<'_>) -> Result<i64, DbError> {
    diesel::insert_into(api_tokens::table)
        .values(t)
        .returning(api_tokens::id)
        .get_result(conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                DbError::Conflict(format!("a live token named `{}` exists", t.name))
            }
            e => DbError::Query(e),
        })
}

/// The live token with this hash, if any.
pub fn live_token(conn: &mut AnyConnection, sha256: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::token_sha256.eq(sha256))
        .filter(api_tokens::revoked_at.is_null())
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// Every token, live and revoked, oldest first.
pub fn tokens(conn: &mut AnyConnection) -> Result<Vec<TokenRow>, DbError> {
    Ok(api_tokens::table
        .order(api_tokens::id)
        .select(TokenRow::as_select())
        .load(conn)?)
}

/// Revokes the live token named `name` at `now`; whether there was one.
pub fn revoke_token(
    conn: &mut AnyConnection,
    name: &str,
    now: chrono::NaiveDateTime,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        api_tokens::table
            .filter(api_tokens::name.eq(name))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(Some(now)))
    .execute(conn)?
        > 0)
}

/// Stores a new browser session.
pub fn insert_session(conn: &mut AnyConnection, s: &NewSession<'_>) -> Result<(), DbError> {
    diesel::insert_into(web_sessions::table)
        .values(s)
        .execute(conn)?;
    Ok(())
}

/// The live token and CSRF token of an unexpired session whose token is
/// not revoked.
pub fn live_session(
    conn: &mut AnyConnection,
    sha256: &str,
    now: chrono::NaiveDateTime,
) -> Result<Option<(TokenRow, String)>, DbError> {
    Ok(web_sessions::table
        .inner_join(api_tokens::table)
        .filter(web_sessions::session_sha256.eq(sha256))
        .filter(web_sessions::expires_at.gt(now))
        .filter(api_tokens::revoked_at.is_null())
        .select((TokenRow::as_select(), web_sessions::csrf))
        .first(conn)
        .optional()?)
}

/// Ends a session, and any that expired before `now`.
pub fn delete_session(
    conn: &mut AnyConnection,
    sha256: &str,
    now: chrono::NaiveDateTime,
) -> Result<(), DbError> {
    diesel::delete(
        web_sessions::table.filter(
            web_sessions::session_sha256
                .eq(sha256)
                .or(web_sessions::expires_at.le(now)),
        ),
    )
    .execute(conn)?;
    Ok(())
}

/// Runs `f` in one transaction: all of it is stored, or none (an import,
/// a run). Any error that a query error converts into rolls it back.
pub fn in_transaction<T, E: From<DieselError>>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E> {
    conn.transaction(f)
}

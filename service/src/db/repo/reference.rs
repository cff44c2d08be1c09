//! Owners, keys, aliases and prices.

// The parent's imports and helpers: these files are sections of one repository.
use super::*;

/// Adds an owner or updates its contact; its id.
pub fn upsert_owner(conn: &mut AnyConnection, o: &NewOwner<'_>) -> Result<i64, DbError> {
    Ok(on_backend!(conn, c => diesel::insert_into(owners::table)
        .values(o)
        .on_conflict((owners::team, owners::service, owners::env))
        .do_update()
        .set(owners::contact.eq(o.contact))
        .returning(owners::id)
        .get_result(c))?)
}

/// The id of an owner, added without a contact if new; an existing
/// owner's contact is left as it is (keys name owners, `tally owners
/// import` sets their contacts).
pub fn owner_id(
    conn: &mut AnyConnection,
    team: &str,
    service: &str,
    env: &str,
) -> Result<i64, DbError> {
    let new = NewOwner {
        team,
        service,
        env,
        contact: None,
    };
    on_backend!(conn, c => diesel::insert_into(owners::table)
        .values(&new)
        .on_conflict((owners::team, owners::service, owners::env))
        .do_nothing()
        .execute(c))?;
    Ok(owners::table
        .filter(owners::team.eq(team))
        .filter(owners::service.eq(service))
        .filter(owners::env.eq(env))
        .select(owners::id)
        .first(conn)?)
}

/// Every owner, by team, service, env.
pub fn owners(conn: &mut AnyConnection) -> Result<Vec<OwnerRow>, DbError> {
    Ok(owners::table
        .order((owners::team, owners::service, owners::env))
        .select(OwnerRow::as_select())
        .load(conn)?)
}

/// Adds a key or replaces every field of the key with the same id.
pub fn upsert_key(conn: &mut AnyConnection, k: &NewKey<'_>) -> Result<(), DbError> {
    on_backend!(conn, c => diesel::insert_into(api_keys::table)
        .values(k)
        .on_conflict(api_keys::key_id)
        .do_update()
        .set(k)
        .execute(c))?;
    Ok(())
}

/// Every key, by id.
pub fn keys(conn: &mut AnyConnection) -> Result<Vec<KeyRow>, DbError> {
    Ok(api_keys::table
        .order(api_keys::key_id)
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// One page of keys by id, and how many there are.
pub fn keys_page(
    conn: &mut AnyConnection,
    offset: i64,
    limit: i64,
) -> Result<(Vec<KeyRow>, i64), DbError> {
    let total: i64 = api_keys::table.count().get_result(conn)?;
    let rows = api_keys::table
        .order(api_keys::key_id)
        .offset(offset)
        .limit(limit)
        .select(KeyRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// Adds an alias or points it at another family.
pub fn upsert_alias(conn: &mut AnyConnection, a: &AliasRow) -> Result<(), DbError> {
    on_backend!(conn, c => diesel::insert_into(model_aliases::table)
        .values(a)
        .on_conflict(model_aliases::alias)
        .do_update()
        .set(model_aliases::model.eq(&a.model))
        .execute(c))?;
    Ok(())
}

/// Every alias, by name.
pub fn aliases(conn: &mut AnyConnection) -> Result<Vec<AliasRow>, DbError> {
    Ok(model_aliases::table
        .order(model_aliases::alias)
        .select(AliasRow::as_select())
        .load(conn)?)
}

/// Adds a price or replaces the price of the same model from the same time.
pub fn upsert_price(conn: &mut AnyConnection, p: &NewPrice<'_>) -> Result<(), DbError> {
    on_backend!(conn, c => diesel::insert_into(prices::table)
        .values(p)
        .on_conflict((prices::model, prices::effective_from))
        .do_update()
        .set(p)
        .execute(c))?;
    Ok(())
}

/// Every price, by model and date.
pub fn prices(conn: &mut AnyConnection) -> Result<Vec<PriceRow>, DbError> {
    Ok(prices::table
        .order((prices::model, prices::effective_from))
        .select(PriceRow::as_select())
        .load(conn)?)
}

/// Renames the owner `id` or sets its contact; whether it existed. Another
/// owner with the same team, service and env is a [`DbError::Conflict`].
pub fn update_owner(conn: &mut AnyConnection, id: i64, o: &NewOwner<'_>) -> Result<bool, DbError> {
    diesel::update(owners::table.find(id))
        .set(o)
        .execute(conn)
        .map(|n| n > 0)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => DbError::Conflict(
                format!("an owner {}/{}/{} exists", o.team, o.service, o.env),
            ),
            e => DbError::Query(e),
        })
}

/// Deletes the owner `id`; its keys keep existing, owned by nobody.
/// Whether it existed.
pub fn delete_owner(conn: &mut AnyConnection, id: i64) -> Result<bool, DbError> {
    conn.transaction(|c| {
        diesel::update(api_keys::table.filter(api_keys::owner_id.eq(id)))
            .set(api_keys::owner_id.eq(None::<i64>))
            .execute(c)?;
        Ok(diesel::delete(owners::table.find(id)).execute(c)? > 0)
    })
}

/// Deletes the key with Tally id `key_id`; whether it existed.
pub fn delete_key(conn: &mut AnyConnection, key_id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(api_keys::table.filter(api_keys::key_id.eq(key_id))).execute(conn)? > 0)
}

/// Deletes an alias; whether it existed.
pub fn delete_alias(conn: &mut AnyConnection, alias: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(model_aliases::table.find(alias)).execute(conn)? > 0)
}

/// Deletes the price `id`; whether it existed.
pub fn delete_price(conn: &mut AnyConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(prices::table.find(id)).execute(conn)? > 0)
}

//! The reference data one entry at a time (the API's owners, keys, aliases
//! and prices): every write goes through here, and a key is stored by the
//! same code whether it came from `tally keys import` or `PUT /v1/keys`.

use chrono::NaiveDateTime;
use tally_reconcile::keys::KeyEntry;
use tally_reconcile::prices::Price;
use tally_schema::convert::{new_key, new_price};
use tally_schema::rows::{AliasRow, KeyRow, NewOwner, OwnerRow, PriceRow};

use super::error::AppError;
use crate::db::{AnyConnection, repo};

/// Every owner.
pub fn owners(c: &mut AnyConnection) -> Result<Vec<OwnerRow>, AppError> {
    Ok(repo::owners(c)?)
}

/// One owner.
pub fn owner(c: &mut AnyConnection, id: i64) -> Result<OwnerRow, AppError> {
    owners(c)?
        .into_iter()
        .find(|o| o.id == id)
        .ok_or_else(|| AppError::NotFound(format!("no owner {id}")))
}

/// Adds an owner, or sets the contact of the owner with the same team,
/// service and env; the owner as stored.
pub fn put_owner(c: &mut AnyConnection, o: &NewOwner<'_>) -> Result<OwnerRow, AppError> {
    check_owner(o)?;
    let id = repo::upsert_owner(c, o)?;
    owner(c, id)
}

/// Replaces owner `id`.
pub fn update_owner(
    c: &mut AnyConnection,
    id: i64,
    o: &NewOwner<'_>,
) -> Result<OwnerRow, AppError> {
    check_owner(o)?;
    if !repo::update_owner(c, id, o)? {
        return Err(AppError::NotFound(format!("no owner {id}")));
    }
    owner(c, id)
}

fn check_owner(o: &NewOwner<'_>) -> Result<(), AppError> {
    if o.team.is_empty() {
        return Err(AppError::Invalid("`team` is empty".to_owned()));
    }
    if let Some(contact) = o.contact {
        crate::mail::check_contact(contact)
            .map_err(|e| AppError::Invalid(format!("`contact`: {e}")))?;
    }
    Ok(())
}

/// Deletes owner `id`.
pub fn delete_owner(c: &mut AnyConnection, id: i64) -> Result<(), AppError> {
    found(repo::delete_owner(c, id)?, || format!("no owner {id}"))
}

/// Every key, with the owners they point at.
pub fn keys(c: &mut AnyConnection) -> Result<(Vec<KeyRow>, Vec<OwnerRow>), AppError> {
    let owners = repo::owners(c)?;
    Ok((repo::keys(c)?, owners))
}

/// A page of keys by id (read page by page from the store: a registry
/// imported from a gateway may hold thousands), with the owners.
pub fn keys_page(
    c: &mut AnyConnection,
    page: super::page::Page,
) -> Result<(super::page::Paged<KeyRow>, Vec<OwnerRow>), AppError> {
    let (offset, limit) = page.offset_limit();
    let (items, total) = repo::keys_page(c, offset, limit)?;
    let owners = repo::owners(c)?;
    Ok((
        super::page::Paged {
            items,
            page,
            total: usize::try_from(total).unwrap_or(0),
        },
        owners,
    ))
}

/// Adds or replaces keys (and adds their owners), in one transaction;
/// refused whole when a name would then point at two keys, which would
/// stop every later run.
pub fn put_keys(c: &mut AnyConnection, entries: &[KeyEntry]) -> Result<(), AppError> {
    for k in entries {
        if let Some(contact) = &k.contact {
            crate::mail::check_contact(contact)
                .map_err(|e| AppError::Invalid(format!("key `{}`: `contact`: {e}", k.id)))?;
        }
    }
    repo::in_transaction(c, |c| -> Result<(), AppError> {
        for k in entries {
            let o = k.owner();
            let owner = if o.is_empty() {
                None
            } else {
                Some(repo::owner_id(c, &o.team, &o.service, &o.env)?)
            };
            repo::upsert_key(c, &new_key(k, owner))?;
        }
        super::reference::registry_of(c)?;
        Ok(())
    })
}

/// Adds or replaces one key from a request (the API), whose owner must
/// already be registered: a typo in a team would otherwise create an owner
/// nobody watches and send the key's costs there. Imports, which carry
/// their owners with them, use [`put_keys`].
pub fn put_key(c: &mut AnyConnection, entry: &KeyEntry) -> Result<(), AppError> {
    let o = entry.owner();
    if !o.is_empty() {
        let owners = repo::owners(c)?;
        let known = owners
            .iter()
            .any(|r| r.team == o.team && r.service == o.service && r.env == o.env);
        if !known {
            let names: Vec<String> = owners
                .iter()
                .map(|r| format!("{}/{}/{}", r.team, r.service, r.env))
                .collect();
            let want = format!("{}/{}/{}", o.team, o.service, o.env);
            return Err(AppError::Invalid(format!(
                "key `{}`: {}; register the owner first (POST /v1/owners, or `tally owners import`)",
                entry.id,
                super::names::unknown("owner", &want, names.iter().map(String::as_str))
            )));
        }
    }
    put_keys(c, std::slice::from_ref(entry))
}

/// Deletes key `key_id`.
pub fn delete_key(c: &mut AnyConnection, key_id: &str) -> Result<(), AppError> {
    found(repo::delete_key(c, key_id)?, || {
        format!("no key `{key_id}`")
    })
}

/// Every alias.
pub fn aliases(c: &mut AnyConnection) -> Result<Vec<AliasRow>, AppError> {
    Ok(repo::aliases(c)?)
}

/// Adds or replaces an alias, stored lowercase as the engine compares names.
pub fn put_alias(c: &mut AnyConnection, alias: &str, model: &str) -> Result<AliasRow, AppError> {
    let row = AliasRow {
        alias: alias.trim().to_ascii_lowercase(),
        model: model.trim().to_ascii_lowercase(),
    };
    if row.alias.is_empty() || row.model.is_empty() {
        return Err(AppError::Invalid(
            "an alias and its `model` need names".to_owned(),
        ));
    }
    repo::upsert_alias(c, &row)?;
    Ok(row)
}

/// Deletes an alias.
pub fn delete_alias(c: &mut AnyConnection, alias: &str) -> Result<(), AppError> {
    let alias = alias.trim().to_ascii_lowercase();
    found(repo::delete_alias(c, &alias)?, || {
        format!("no alias `{alias}`")
    })
}

/// Every price.
pub fn prices(c: &mut AnyConnection) -> Result<Vec<PriceRow>, AppError> {
    Ok(repo::prices(c)?)
}

/// Adds or replaces one catalog entry (by model and date); the entry as
/// stored.
pub fn put_price(
    c: &mut AnyConnection,
    price: &Price,
    now: NaiveDateTime,
) -> Result<PriceRow, AppError> {
    let row = new_price(price, now).map_err(|e| AppError::Invalid(e.to_string()))?;
    repo::upsert_price(c, &row)?;
    repo::prices(c)?
        .into_iter()
        .find(|p| p.model == price.model && p.effective_from == row.effective_from)
        .ok_or_else(|| AppError::NotFound(format!("price for `{}` not stored", price.model)))
}

/// Deletes price `id`.
pub fn delete_price(c: &mut AnyConnection, id: i64) -> Result<(), AppError> {
    found(repo::delete_price(c, id)?, || format!("no price {id}"))
}

fn found(deleted: bool, missing: impl FnOnce() -> String) -> Result<(), AppError> {
    if deleted {
        Ok(())
    } else {
        Err(AppError::NotFound(missing()))
    }
}

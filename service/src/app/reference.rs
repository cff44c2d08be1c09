//! `tally keys|owners|prices|aliases import`: the reference data a stored
//! run prices and attributes with, and reading it back for the engine.
//!
//! Imports add or replace entries (by key id, by owner, by alias, by model
//! and date); nothing is deleted. Each import is one transaction.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use tally_reconcile::keys::{KeyEntry, KeyRegistry, OwnerEntry};
use tally_reconcile::models::AliasTable;
use tally_reconcile::prices::PriceBook;
use tally_schema::convert::{new_price, price};
use tally_schema::rows::{AliasRow, NewKey, NewOwner};
use tally_schema::schema::owners;

use crate::app::reconcile::{has_ext, load_keys, open, read_text};
use crate::db::{AnyConnection, DbError, on_backend, repo};

/// The id of an owner, added (without a contact) if new; an existing
/// owner's contact is left as `tally owners import` set it.
fn owner_id(
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

/// Imports a key registry (TOML, or CSV by extension); keys it names are
/// added or replaced, their owners added. Returns the number of keys.
pub fn import_keys(conn: &mut AnyConnection, path: &Path) -> Result<usize> {
    let reg = load_keys(path)?;
    repo::in_transaction(conn, |c| {
        for k in &reg.entries {
            let o = k.owner();
            let owner = if o.is_empty() {
                None
            } else {
                Some(owner_id(c, &o.team, &o.service, &o.env)?)
            };
            let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
            repo::upsert_key(
                c,
                &NewKey {
                    key_id: &k.id,
                    alias: k.alias.as_deref(),
                    last4: k.last4.as_deref(),
                    labels: json(&k.labels),
                    sha256: json(&k.sha256),
                    owner_id: owner,
                    contact: k.contact.as_deref(),
                },
            )?;
        }
        Ok(())
    })?;
    Ok(reg.entries.len())
}

/// Imports owners and their contacts (TOML `[[owner]]`, or CSV
/// `team,service,env,contact`). Returns the number of owners.
pub fn import_owners(conn: &mut AnyConnection, path: &Path) -> Result<usize> {
    let name = path.display().to_string();
    let list = if has_ext(path, "csv") {
        OwnerEntry::from_csv(open(path, "owners")?, &name)?
    } else {
        OwnerEntry::from_toml(&read_text(path, "owners")?, &name)?
    };
    repo::in_transaction(conn, |c| {
        for o in &list {
            let who = o.owner();
            repo::upsert_owner(
                c,
                &NewOwner {
                    team: &who.team,
                    service: &who.service,
                    env: &who.env,
                    contact: o.contact.as_deref(),
                },
            )?;
        }
        Ok(())
    })?;
    Ok(list.len())
}

/// What a price import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricesImported {
    /// Prices added or replaced.
    pub prices: usize,
    /// LiteLLM entries left out (provider-prefixed names, per-image and
    /// other non-token prices).
    pub skipped: usize,
}

/// Imports a price catalog: Tally's TOML, or LiteLLM's
/// `model_prices_and_context_window.json` (by extension), whose prices
/// apply from `effective_from_ms` (the file has no dates).
pub fn import_prices(
    conn: &mut AnyConnection,
    path: &Path,
    effective_from_ms: i64,
    now: NaiveDateTime,
) -> Result<PricesImported> {
    let name = path.display().to_string();
    let text = read_text(path, "price catalog")?;
    let (book, skipped) = if has_ext(path, "json") {
        PriceBook::from_litellm_json(&text, &name, effective_from_ms)?
    } else {
        (PriceBook::from_toml(&text, &name)?, 0)
    };
    let rows = book
        .entries
        .iter()
        .map(|p| new_price(p, now))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{name}: a price does not fit the store"))?;
    repo::in_transaction(conn, |c| {
        for r in &rows {
            repo::upsert_price(c, r)?;
        }
        Ok(())
    })?;
    Ok(PricesImported {
        prices: rows.len(),
        skipped,
    })
}

/// Imports a model alias table (TOML `[aliases]`). Returns the number.
pub fn import_aliases(conn: &mut AnyConnection, path: &Path) -> Result<usize> {
    let name = path.display().to_string();
    let table = AliasTable::from_toml(&read_text(path, "alias table")?, &name)?;
    let pairs = table.pairs();
    repo::in_transaction(conn, |c| {
        for (alias, model) in &pairs {
            repo::upsert_alias(
                c,
                &AliasRow {
                    alias: (*alias).to_owned(),
                    model: (*model).to_owned(),
                },
            )?;
        }
        Ok(())
    })?;
    Ok(pairs.len())
}

/// The store's reference data as the engine takes it.
pub struct Reference {
    /// Keys and owners.
    pub registry: KeyRegistry,
    /// Model aliases.
    pub aliases: AliasTable,
    /// Prices.
    pub prices: PriceBook,
}

/// Reads the reference data back.
pub fn load(conn: &mut AnyConnection) -> Result<Reference> {
    let owners = repo::owners(conn)?;
    let by_id: std::collections::HashMap<i64, &tally_schema::rows::OwnerRow> =
        owners.iter().map(|o| (o.id, o)).collect();
    let list = |json: &str, what: &str, key: &str| -> Result<Vec<String>> {
        serde_json::from_str(json)
            .with_context(|| format!("stored key `{key}`: {what} is not a JSON list"))
    };
    let mut entries = Vec::new();
    for k in repo::keys(conn)? {
        let owner = k.owner_id.and_then(|id| by_id.get(&id));
        entries.push(KeyEntry {
            labels: list(&k.labels, "labels", &k.key_id)?,
            sha256: list(&k.sha256, "sha256", &k.key_id)?,
            team: owner.map(|o| o.team.clone()).unwrap_or_default(),
            service: owner.map(|o| o.service.clone()).unwrap_or_default(),
            env: owner.map(|o| o.env.clone()).unwrap_or_default(),
            contact: k.contact.or_else(|| owner.and_then(|o| o.contact.clone())),
            id: k.key_id,
            alias: k.alias,
            last4: k.last4,
        });
    }
    let registry = KeyRegistry::new(entries, "the store's keys")?;
    let aliases = repo::aliases(conn)?;
    let aliases =
        AliasTable::from_pairs(aliases.iter().map(|a| (a.alias.as_str(), a.model.as_str())));
    let prices = PriceBook {
        currency: "USD".to_owned(),
        entries: repo::prices(conn)?.iter().map(price).collect(),
    };
    Ok(Reference {
        registry,
        aliases,
        prices,
    })
}

//! `tally keys|owners|prices|aliases import`: the reference data a stored
//! run prices and attributes with, and reading it back for the engine.
//!
//! Imports add or replace entries (by key id, by owner, by alias, by model
//! and date); nothing is deleted. Each import is one transaction.

use std::path::Path;

use chrono::NaiveDateTime;
use tally_reconcile::keys::{KeyRegistry, OwnerEntry};
use tally_reconcile::models::AliasTable;
use tally_reconcile::prices::PriceBook;
use tally_schema::convert::{key_entry, new_price, price};
use tally_schema::rows::{AliasRow, NewOwner};

use crate::app::error::{AppError, AppResult as Result, Context};
use crate::app::reconcile::{has_ext, load_keys, open, read_text};
use crate::db::{AnyConnection, repo};

/// Imports a key registry (TOML, or CSV by extension); keys it names are
/// added or replaced, their owners added. Returns the number of keys.
pub fn import_keys(conn: &mut AnyConnection, path: &Path, teams: Option<&Path>) -> Result<usize> {
    let reg = load_keys(path, teams)?;
    // Together with the keys already stored, every name must still point
    // at one key, or every later run would stop on the clash: the same
    // check as a key put through the API.
    super::registry::put_keys(conn, &reg.entries).map_err(|e| match e {
        AppError::Conflict(m) => {
            AppError::Conflict(format!("{}: not imported: {m}", path.display()))
        }
        other => other,
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
    for (i, o) in list.iter().enumerate() {
        if let Some(contact) = &o.contact {
            crate::app::alerts::check_contact(contact)
                .or_invalid(|| format!("{name}: owner #{}: contact", i + 1))?;
        }
    }
    repo::in_transaction(conn, |c| -> Result<()> {
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
    /// LiteLLM entries left out (per-image and other non-token prices).
    pub skipped: usize,
    /// Whether the file dated its own prices (Tally's TOML); LiteLLM's map
    /// takes the date given.
    pub dated_by_file: bool,
    /// Stored rows older than the date an undated map was given: a model
    /// this import alone prices stays unpriced for them.
    pub rows_before: i64,
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
    let litellm = has_ext(path, "json");
    let (book, skipped) = if litellm {
        PriceBook::from_litellm_json(&text, &name, effective_from_ms)?
    } else {
        (PriceBook::from_toml(&text, &name)?, 0)
    };
    let rows = book
        .entries
        .iter()
        .map(|p| new_price(p, now))
        .collect::<std::result::Result<Vec<_>, _>>()
        .or_invalid(|| format!("{name}: a price does not fit the store"))?;
    repo::in_transaction(conn, |c| -> Result<()> {
        for r in &rows {
            repo::upsert_price(c, r)?;
        }
        Ok(())
    })?;
    let rows_before = if litellm {
        repo::count_rows_in(conn, (i64::MIN, effective_from_ms), None)?
    } else {
        0
    };
    Ok(PricesImported {
        prices: rows.len(),
        skipped,
        dated_by_file: !litellm,
        rows_before,
    })
}

/// Imports a model alias table (TOML `[aliases]`). Returns the number.
pub fn import_aliases(conn: &mut AnyConnection, path: &Path) -> Result<usize> {
    let name = path.display().to_string();
    let table = AliasTable::from_toml(&read_text(path, "alias table")?, &name)?;
    let pairs = table.pairs();
    repo::in_transaction(conn, |c| -> Result<()> {
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
    pub prices: PriceBook,
}

/// The store's keys as one registry: an error when two keys claim one
/// name (alias, label or hash).
pub fn registry_of(conn: &mut AnyConnection) -> Result<KeyRegistry, AppError> {
    let owners = repo::owners(conn)?;
    let by_id: std::collections::HashMap<i64, &tally_schema::rows::OwnerRow> =
        owners.iter().map(|o| (o.id, o)).collect();
    let entries = repo::keys(conn)?
        .into_iter()
        .map(|k| {
            let owner = k.owner_id.and_then(|id| by_id.get(&id).copied());
            key_entry(k, owner)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // A name two stored keys share: the registry as stored cannot stand.
    KeyRegistry::new(entries, "the store's keys").map_err(|e| AppError::Conflict(e.to_string()))
}

/// The store's price catalog alone.
pub fn price_book(conn: &mut AnyConnection) -> Result<PriceBook, AppError> {
    Ok(PriceBook {
        currency: "USD".to_owned(),
        entries: repo::prices(conn)?.iter().map(price).collect(),
    })
}

/// Reads the reference data back.
pub fn load(conn: &mut AnyConnection) -> Result<Reference, AppError> {
    let registry = registry_of(conn)?;
    let aliases = repo::aliases(conn)?;
    let aliases =
        AliasTable::from_pairs(aliases.iter().map(|a| (a.alias.as_str(), a.model.as_str())));
    let prices = price_book(conn)?;
    Ok(Reference {
        registry,
        aliases,
        prices,
    })
}

/// `tally contracts import`: adds the file's contracts, replacing those of
/// the same name; how many.
pub fn import_contracts(conn: &mut AnyConnection, path: &Path) -> Result<usize, AppError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| AppError::Invalid(format!("cannot read `{name}`: {e}")))?;
    let book = tally_reconcile::contracts::ContractBook::from_toml(&text, &name)?;
    let rows: Vec<_> = book
        .entries
        .iter()
        .map(tally_schema::convert::new_contract)
        .collect();
    Ok(repo::replace_contracts(conn, &rows)?)
}

/// The store's contracts as the engine takes them.
pub fn contract_book(
    conn: &mut AnyConnection,
) -> Result<tally_reconcile::contracts::ContractBook, AppError> {
    Ok(tally_reconcile::contracts::ContractBook {
        entries: repo::contracts(conn)?
            .iter()
            .map(tally_schema::convert::contract_of)
            .collect::<Result<_, _>>()?,
    })
}

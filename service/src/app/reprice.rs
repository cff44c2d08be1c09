//! `tally reprice`: what a month's billed rows would cost under the prices
//! in force at another date, beside what Tally priced them at, per model
//! and per owner. Finance sees a price change (or a new contract rate in
//! the catalog) before it lands on an invoice.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::Serialize;
use tally_reconcile::prices::{Price, price_at};
use tally_reconcile::record::{TokenKind, Tokens};
use tally_schema::convert::{atto_to_nanos, nanos_to_usd};

use crate::app::dashboard::Month;
use crate::app::error::AppResult;
use crate::app::report::{Coverage, NO_GROUP, coverage};
use crate::db::AnyConnection;
use crate::db::repo;

/// One group's figures: rows, Tally's price then and as of the date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepriceLine {
    /// Model family or owner (`team/service/env`).
    pub group: String,
    /// Billed gateway rows.
    pub rows: i64,
    /// Tally's price of the rows priced then, USD.
    pub was: Decimal,
    /// Their price under the prices in force at the date, USD.
    pub as_of: Decimal,
    /// `as_of - was` over rows priced both times, USD.
    pub diff: Decimal,
    /// `as_of` under the contracted rates in force at the date, USD.
    pub contracted: Decimal,
    /// Rows no price covered then.
    pub unpriced_was: i64,
    /// Rows no price covers at the date.
    pub unpriced_as_of: i64,
}

impl RepriceLine {
    fn add(&mut self, was: Option<Decimal>, as_of: Option<Decimal>, contracted: Option<Decimal>) {
        self.rows += 1;
        self.contracted += contracted.unwrap_or_default();
        match was {
            Some(w) => self.was += w,
            None => self.unpriced_was += 1,
        }
        match as_of {
            Some(a) => self.as_of += a,
            None => self.unpriced_as_of += 1,
        }
        if let (Some(w), Some(a)) = (was, as_of) {
            self.diff += a - w;
        }
    }

    fn normalized(mut self) -> Self {
        for d in [
            &mut self.was,
            &mut self.as_of,
            &mut self.diff,
            &mut self.contracted,
        ] {
            *d = d.normalize();
        }
        self
    }
}

/// A month repriced.
#[derive(Debug, Clone, Serialize)]
pub struct Reprice {
    /// `YYYY-MM`.
    pub period: String,
    /// The date whose prices apply (RFC 3339).
    pub as_of: String,
    /// Per model family, largest change first.
    pub by_model: Vec<RepriceLine>,
    /// Per owner, largest change first.
    pub by_owner: Vec<RepriceLine>,
    /// All rows.
    pub total: RepriceLine,
    /// What the figures leave out (rows no run judged).
    pub coverage: Coverage,
}

/// The tokens of a stored row as the engine counts them.
fn tokens_of(t: &[Option<i64>; 5]) -> Tokens {
    let mut out = Tokens::default();
    for (kind, v) in TokenKind::ALL.into_iter().zip(t) {
        out.set(kind, v.and_then(|v| u32::try_from(v).ok()));
    }
    out
}

/// Reprices month `p`'s billed gateway rows at the prices in force at
/// `as_of_ms`, from the store's catalog.
pub fn reprice(conn: &mut AnyConnection, p: &Month, as_of_ms: i64) -> AppResult<Reprice> {
    // Only the catalog: the key registry is no part of a price.
    let book = crate::app::reference::price_book(conn)?;
    let contracts = crate::app::reference::contract_book(conn)?;
    // Tiers apply to the month's spend at the date's prices, in row order.
    let mut meter = tally_reconcile::contracts::Meter::default();
    let mut schedules: HashMap<String, Vec<Price>> = HashMap::new();
    let mut by_model: BTreeMap<String, RepriceLine> = BTreeMap::new();
    let mut by_owner: BTreeMap<String, RepriceLine> = BTreeMap::new();
    let mut total = RepriceLine {
        group: "total".to_owned(),
        ..RepriceLine::default()
    };
    repo::each_current_billed(conn, (p.from_ms, p.to_ms), |b| {
        let v = &b.verdict;
        let was = v.computed_cost_nanos.map(|n| nanos_to_usd(n, None));
        let tokens = tokens_of(&b.tokens);
        // A call that counted no token costs nothing at any price (the
        // engine's rule for failed calls), priced or not.
        let as_of = if !tokens.any_counted() && was.is_some() {
            Some(Decimal::ZERO)
        } else {
            let schedule = schedules
                .entry(v.model_family.clone())
                .or_insert_with(|| book.schedule(&v.model_family));
            // Rounded to the nano-dollar as a run stores its prices, so a
            // price that did not change shows no difference.
            price_at(schedule, as_of_ms)
                .and_then(|price| atto_to_nanos(price.cost(&tokens).0))
                .map(|n| nanos_to_usd(n, None))
        };
        let contracted = as_of.map(|a| {
            contracts
                .at(&v.model_family, as_of_ms)
                .map_or(a, |k| meter.charge(k, b.ts_ms, a))
        });
        let owner = [&v.team, &v.service, &v.env]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("/");
        for (map, key) in [
            (&mut by_model, v.model_family.clone()),
            (&mut by_owner, owner),
        ] {
            let key = if key.is_empty() {
                NO_GROUP.to_owned()
            } else {
                key
            };
            map.entry(key.clone())
                .or_insert_with(|| RepriceLine {
                    group: key,
                    ..RepriceLine::default()
                })
                .add(was, as_of, contracted);
        }
        total.add(was, as_of, contracted);
    })?;
    let ranked = |m: BTreeMap<String, RepriceLine>| {
        let mut v: Vec<RepriceLine> = m.into_values().map(RepriceLine::normalized).collect();
        v.sort_by(|a, b| b.diff.abs().cmp(&a.diff.abs()).then(a.group.cmp(&b.group)));
        v
    };
    Ok(Reprice {
        period: p.key.clone(),
        as_of: tally_reconcile::time::format_ms(as_of_ms),
        by_model: ranked(by_model),
        by_owner: ranked(by_owner),
        total: total.normalized(),
        coverage: coverage(conn, (p.from_ms, p.to_ms))?,
    })
}

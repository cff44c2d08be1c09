//! Domain values <-> column values, every conversion checked: a value that
//! does not fit is an error, never a silent rounding or truncation.

use chrono::{DateTime, NaiveDateTime};
use rust_decimal::Decimal;
use tally_reconcile::prices::Price;
use tally_reconcile::record::{Normalised, Side, SideKind, TokenKind, Tokens, flags};

use tally_reconcile::keys::KeyEntry;

use crate::enums::EnumCol;
use crate::rows::{
    KeyRow, NewKey, NewPrice, NewUsageRow, OwnerRow, PriceRow, UsageNames, UsageRow,
};

/// A value that cannot be stored as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A money amount beyond what an i64 of nano-dollars holds (about
    /// $9.2 billion).
    #[error("amount {0} does not fit the store (at most ±9,223,372,036.854775807 USD)")]
    AmountOutOfRange(Decimal),
    /// A time outside what the store's timestamps hold.
    #[error("time {0} ms since 1970 is out of range")]
    TimeOutOfRange(i64),
    /// A stored value the engine cannot take (a corrupted or hand-edited
    /// row): which row and column.
    #[error("stored {table} row {id}: column `{column}` holds {value}, which cannot be read")]
    StoredOutOfRange {
        table: &'static str,
        /// Row id.
        id: i64,
        column: &'static str,
        /// The value.
        value: String,
    },
}

/// Nano-dollars per dollar.
const NANOS: i64 = 1_000_000_000;

/// A dollar amount as nano-dollars, plus its exact text when it has more
/// than nine decimal places (float exports write such amounts; the nanos
/// are then the amount rounded half-even, for sums, and the text keeps it
/// exact).
pub fn usd_to_nanos(d: Decimal) -> Result<(i64, Option<String>), ConvertError> {
    let d = d.normalize();
    let rounded = d.round_dp_with_strategy(9, rust_decimal::RoundingStrategy::MidpointNearestEven);
    let nanos = rounded
        .checked_mul(Decimal::from(NANOS))
        .and_then(|n| i64::try_from(n).ok())
        .ok_or(ConvertError::AmountOutOfRange(d))?;
    let exact = (rounded != d).then(|| d.to_string());
    Ok((nanos, exact))
}

/// The dollar amount of stored nano-dollars (and exact text, which wins
/// when present).
pub fn nanos_to_usd(nanos: i64, exact: Option<&str>) -> Decimal {
    exact
        .and_then(|t| t.parse::<Decimal>().ok())
        .unwrap_or_else(|| Decimal::new(nanos, 9).normalize())
}

/// UTC milliseconds as the store's naive UTC timestamp.
pub fn naive_from_ms(ms: i64) -> Result<NaiveDateTime, ConvertError> {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc())
        .ok_or(ConvertError::TimeOutOfRange(ms))
}

/// The stored name of a side.
pub fn side_name(kind: SideKind) -> &'static str {
    match kind {
        SideKind::Client => "client",
        SideKind::Gateway => "gateway",
    }
}

/// Accepted row `i` of `side` as a row to insert.
///
/// `raw` is the row's source text; `dedup_key` its identity (see
/// [`tally_reconcile::identity`]). `None` when `i` is out of range.
pub fn new_usage_row<'a>(
    side: &'a Side,
    i: usize,
    batch_id: i64,
    dedup_key: &'a str,
    raw: &'a str,
) -> Option<Result<NewUsageRow<'a>, ConvertError>> {
    let r = side.rows.get(i)?;
    let (model, served_model) = side.models(r);
    let (route, labels) = side.route_and_labels(r);
    let mut l = labels.splitn(4, '\u{1f}');
    let mut label = || l.next().unwrap_or("");
    let (team, service, env, tags) = (label(), label(), label(), label());
    let (request_id, response_id) = side.ids.get(r.ids);
    let tok = |k: TokenKind| r.tokens.get(k).map(i64::from);
    let cost = match r.reported_cost().map(usd_to_nanos).transpose() {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    let (reported_cost_nanos, reported_cost_exact) = match cost {
        Some((n, exact)) => (Some(n), exact),
        None => (None, None),
    };
    Some(Ok(NewUsageRow {
        side: EnumCol(side.kind),
        batch_id,
        line: i64::from(r.line),
        dedup_key,
        ts_ms: r.ts_ms,
        key_name: side.strings.get(r.key),
        model,
        served_model,
        route,
        team,
        service,
        env,
        tags,
        request_id,
        response_id,
        input_tokens: tok(TokenKind::Input),
        cached_input_tokens: tok(TokenKind::CachedInput),
        cache_write_tokens: tok(TokenKind::CacheWrite),
        output_tokens: tok(TokenKind::Output),
        reasoning_tokens: tok(TokenKind::Reasoning),
        reported_cost_nanos,
        reported_cost_exact,
        stream: r.has(flags::STREAM_KNOWN).then(|| r.has(flags::STREAM)),
        cache_hit: r.has(flags::CACHE_HIT),
        failed: r.has(flags::FAILED),
        raw,
        key_alias: side.key_alias(r),
    }))
}

/// A stored row as the engine's normalised row, with its names parsed
/// (`line` is the ordinal the run gives it).
pub fn normalised<'a>(
    r: &'a UsageRow,
    names: &'a UsageNames,
    line: u32,
) -> Result<Normalised<'a>, ConvertError> {
    let mut tokens = Tokens::default();
    for (kind, v, column) in [
        (TokenKind::Input, r.input_tokens, "input_tokens"),
        (
            TokenKind::CachedInput,
            r.cached_input_tokens,
            "cached_input_tokens",
        ),
        (
            TokenKind::CacheWrite,
            r.cache_write_tokens,
            "cache_write_tokens",
        ),
        (TokenKind::Output, r.output_tokens, "output_tokens"),
        (TokenKind::Reasoning, r.reasoning_tokens, "reasoning_tokens"),
    ] {
        let v = v
            .map(|n| {
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n != u32::MAX)
                    .ok_or_else(|| ConvertError::StoredOutOfRange {
                        table: "usage_rows",
                        id: r.id,
                        column,
                        value: n.to_string(),
                    })
            })
            .transpose()?;
        tokens.set(kind, v);
    }
    Ok(Normalised {
        line,
        ts_ms: r.ts_ms,
        key: &names.key_name,
        model: &names.model,
        served_model: &names.served_model,
        route: &names.route,
        labels: [&names.team, &names.service, &names.env, &names.tags],
        key_alias: &names.key_alias,
        request_id: &r.request_id,
        response_id: &r.response_id,
        tokens,
        reported_cost: r
            .reported_cost_nanos
            .map(|n| nanos_to_usd(n, r.reported_cost_exact.as_deref())),
        stream: r.stream,
        cache_hit: r.cache_hit,
        failed: r.failed,
    })
}

fn price_nanos(v: i128) -> Result<i64, ConvertError> {
    i64::try_from(v).map_err(|_| {
        ConvertError::AmountOutOfRange(
            Decimal::try_from_i128_with_scale(v, 9).unwrap_or(Decimal::MAX),
        )
    })
}

/// A catalog price as a row to insert.
pub fn new_price(p: &Price, imported_at: NaiveDateTime) -> Result<NewPrice<'_>, ConvertError> {
    let effective = naive_from_ms(p.effective_from_ms)?;
    Ok(NewPrice {
        model: &p.model,
        effective_from: effective,
        currency: "USD",
        input_nanos: price_nanos(p.input)?,
        cached_input_nanos: price_nanos(p.cached_input)?,
        cache_write_nanos: price_nanos(p.cache_write)?,
        output_nanos: price_nanos(p.output)?,
        reasoning_nanos: p.reasoning.map(price_nanos).transpose()?,
        imported_at,
    })
}

/// A stored price as the engine's.
pub fn price(r: &PriceRow) -> Price {
    Price {
        model: r.model.clone(),
        effective_from_ms: r.effective_from.and_utc().timestamp_millis(),
        input: i128::from(r.input_nanos),
        cached_input: i128::from(r.cached_input_nanos),
        cache_write: i128::from(r.cache_write_nanos),
        output: i128::from(r.output_nanos),
        reasoning: r.reasoning_nanos.map(i128::from),
    }
}

/// A registry entry as a key row; its owner's id is looked up by the
/// caller. Multi-valued names are JSON arrays of strings.
pub fn new_key(k: &KeyEntry, owner_id: Option<i64>) -> NewKey<'_> {
    let json = |v: &[String]| serde_json::Value::from(v).to_string();
    NewKey {
        key_id: &k.id,
        alias: k.alias.as_deref(),
        last4: k.last4.as_deref(),
        labels: json(&k.labels),
        sha256: json(&k.sha256),
        owner_id,
        contact: k.contact.as_deref(),
    }
}

/// A stored key and its owner as a registry entry (the key's own contact,
/// else its owner's).
pub fn key_entry(k: KeyRow, owner: Option<&OwnerRow>) -> Result<KeyEntry, ConvertError> {
    let list = |json: &str, column: &'static str| -> Result<Vec<String>, ConvertError> {
        serde_json::from_str(json).map_err(|_| ConvertError::StoredOutOfRange {
            table: "api_keys",
            id: k.id,
            column,
            value: json.to_owned(),
        })
    };
    Ok(KeyEntry {
        labels: list(&k.labels, "labels")?,
        sha256: list(&k.sha256, "sha256")?,
        team: owner.map(|o| o.team.clone()).unwrap_or_default(),
        service: owner.map(|o| o.service.clone()).unwrap_or_default(),
        env: owner.map(|o| o.env.clone()).unwrap_or_default(),
        contact: k.contact.or_else(|| owner.and_then(|o| o.contact.clone())),
        id: k.key_id,
        alias: k.alias,
        last4: k.last4,
    })
}

/// Atto-dollars (the engine's exact unit) as nano-dollars, rounded half
/// to even: computed prices are exact to 10^-18, the store keeps 10^-9.
/// `None` when beyond an i64 of nano-dollars.
///
/// Integer arithmetic, not [`usd_to_nanos`]: a run converts two amounts a
/// verdict, and `Decimal`'s normalise-round-multiply was 2 % of a 1M-row
/// run's CPU.
pub fn atto_to_nanos(atto: i128) -> Option<i64> {
    const ATTO_PER_NANO: i128 = 1_000_000_000;
    // Floor division keeps the remainder in [0, 1e9) for negative amounts
    // too, so one rule rounds both signs.
    let (floor, rest) = (
        atto.div_euclid(ATTO_PER_NANO),
        atto.rem_euclid(ATTO_PER_NANO),
    );
    let half = ATTO_PER_NANO / 2;
    let up = rest > half || (rest == half && floor.rem_euclid(2) == 1);
    i64::try_from(floor + i128::from(up)).ok()
}

/// A charge frozen by close `close_id`, amounts in nano-dollars.
pub fn closed_charge(
    close_id: i64,
    c: &tally_reconcile::focus::Charge,
) -> Result<crate::rows::ClosedCharge, ConvertError> {
    let nanos = |d: Decimal| usd_to_nanos(d).map(|(n, _)| n);
    Ok(crate::rows::ClosedCharge {
        close_id,
        day_ms: c.day_ms,
        team: c.team.clone(),
        service: c.service.clone(),
        env: c.env.clone(),
        key_name: c.key.clone(),
        model_family: c.model.clone(),
        verdict: c.verdict.clone(),
        requests: c.requests,
        tokens: c.tokens,
        billed_nanos: nanos(c.billed)?,
        computed_nanos: nanos(c.computed)?,
        unpriced_rows: c.unpriced_rows,
        unpriced_billed_nanos: nanos(c.unpriced_billed)?,
        run_id: c.run_id,
        correction: c.correction,
    })
}

/// A frozen charge as the engine's.
pub fn charge_of(c: &crate::rows::ClosedCharge) -> tally_reconcile::focus::Charge {
    tally_reconcile::focus::Charge {
        day_ms: c.day_ms,
        team: c.team.clone(),
        service: c.service.clone(),
        env: c.env.clone(),
        key: c.key_name.clone(),
        model: c.model_family.clone(),
        verdict: c.verdict.clone(),
        requests: c.requests,
        tokens: c.tokens,
        billed: nanos_to_usd(c.billed_nanos, None),
        computed: nanos_to_usd(c.computed_nanos, None),
        unpriced_rows: c.unpriced_rows,
        unpriced_billed: nanos_to_usd(c.unpriced_billed_nanos, None),
        run_id: c.run_id,
        correction: c.correction,
    }
}

/// A contract as a row to insert.
pub fn new_contract(c: &tally_reconcile::contracts::Contract) -> crate::rows::NewContract {
    crate::rows::NewContract {
        name: c.name.clone(),
        models: c.models.clone(),
        discount: c.discount.normalize().to_string(),
        effective_from_ms: c.effective_from_ms,
        effective_to_ms: c.effective_to_ms,
        tiers: serde_json::to_string(
            &c.tiers
                .iter()
                .map(|(f, d)| [f.normalize().to_string(), d.normalize().to_string()])
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|_| "[]".to_owned()),
    }
}

/// A stored contract as the engine's.
pub fn contract_of(
    r: &crate::rows::ContractRow,
) -> Result<tally_reconcile::contracts::Contract, ConvertError> {
    Ok(tally_reconcile::contracts::Contract {
        name: r.name.clone(),
        models: r.models.clone(),
        discount: tally_reconcile::contracts::parse_share(&r.discount).ok_or_else(|| {
            ConvertError::StoredOutOfRange {
                table: "contracts",
                id: r.id,
                column: "discount",
                value: r.discount.clone(),
            }
        })?,
        effective_from_ms: r.effective_from_ms,
        effective_to_ms: r.effective_to_ms,
        tiers: {
            let bad = || ConvertError::StoredOutOfRange {
                table: "contracts",
                id: r.id,
                column: "tiers",
                value: r.tiers.clone(),
            };
            let raw: Vec<[String; 2]> = serde_json::from_str(&r.tiers).map_err(|_| bad())?;
            raw.iter()
                .map(|[f, d]| {
                    Ok((
                        f.parse::<Decimal>().map_err(|_| bad())?,
                        tally_reconcile::contracts::parse_share(d).ok_or_else(bad)?,
                    ))
                })
                .collect::<Result<Vec<_>, ConvertError>>()?
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_round_trip_exactly_or_are_refused() {
        for s in [
            "0",
            "0.0005463",
            "12.5",
            "-3.000000001",
            "9223372036.854775807",
        ] {
            let d: Decimal = s.parse().unwrap();
            let (n, exact) = usd_to_nanos(d).unwrap();
            assert_eq!(exact, None, "{s}");
            assert_eq!(nanos_to_usd(n, None), d.normalize(), "{s}");
        }
        let big: Decimal = "9223372036.854775808".parse().unwrap();
        assert_eq!(usd_to_nanos(big), Err(ConvertError::AmountOutOfRange(big)));
    }

    #[test]
    fn finer_than_a_nano_keeps_the_exact_text() {
        let d: Decimal = "0.00001234567890123".parse().unwrap();
        let (n, exact) = usd_to_nanos(d).unwrap();
        assert_eq!(n, 12_346);
        assert_eq!(exact.as_deref(), Some("0.00001234567890123"));
        assert_eq!(nanos_to_usd(n, exact.as_deref()), d);
    }

    #[test]
    fn a_key_reads_back_as_it_was_registered_and_bad_json_names_its_row() {
        let entry = KeyEntry {
            id: "k1".into(),
            alias: Some("al".into()),
            labels: vec!["L1".into(), "L,2".into()],
            last4: Some("Ab12".into()),
            sha256: vec!["ff".repeat(32)],
            team: "t".into(),
            service: "s".into(),
            env: "e".into(),
            contact: None,
        };
        let n = new_key(&entry, Some(7));
        let row = KeyRow {
            id: 3,
            key_id: n.key_id.to_owned(),
            alias: n.alias.map(str::to_owned),
            last4: n.last4.map(str::to_owned),
            labels: n.labels.clone(),
            sha256: n.sha256.clone(),
            owner_id: n.owner_id,
            contact: None,
        };
        let owner = OwnerRow {
            id: 7,
            team: "t".into(),
            service: "s".into(),
            env: "e".into(),
            contact: Some("o@x".into()),
        };
        let back = key_entry(row.clone(), Some(&owner)).unwrap();
        // The owner's contact stands in for a key without its own.
        assert_eq!(
            back,
            KeyEntry {
                contact: Some("o@x".into()),
                ..entry
            }
        );
        let bad = KeyRow {
            labels: "not json".into(),
            ..row
        };
        let e = key_entry(bad, None).unwrap_err().to_string();
        assert!(e.contains("api_keys row 3") && e.contains("labels"), "{e}");
    }

    /// What `atto_to_nanos` did before it was integer arithmetic.
    fn atto_to_nanos_by_decimal(atto: i128) -> Option<i64> {
        let d = Decimal::try_from_i128_with_scale(atto, 18).ok()?;
        usd_to_nanos(d).ok().map(|(n, _)| n)
    }

    #[test]
    fn atto_dollars_round_half_to_even_on_both_signs() {
        for (atto, nanos) in [
            (0, Some(0)),
            (1_500_000_000, Some(2)),
            (2_500_000_000, Some(2)),
            (2_500_000_001, Some(3)),
            (-1_500_000_000, Some(-2)),
            (-2_500_000_000, Some(-2)),
            (-2_499_999_999, Some(-2)),
            (-1, Some(0)),
            (i128::from(i64::MAX) * 1_000_000_000, Some(i64::MAX)),
            (i128::from(i64::MAX) * 1_000_000_000 + 500_000_001, None),
            (i128::from(i64::MIN) * 1_000_000_000, Some(i64::MIN)),
            (i128::MAX, None),
            (i128::MIN, None),
        ] {
            assert_eq!(atto_to_nanos(atto), nanos, "{atto}");
        }
    }

    proptest! {
        #[test]
        fn atto_dollars_convert_as_decimal_rounding_does(
            nanos in any::<i64>(),
            rest in 0i128..1_000_000_000,
            near_half in any::<bool>(),
        ) {
            // Half the cases sit within one atto of a tie, where rounding
            // rules differ.
            let rest = if near_half { 499_999_999 + rest % 3 } else { rest };
            let atto = i128::from(nanos) * 1_000_000_000 + rest;
            prop_assert_eq!(atto_to_nanos(atto), atto_to_nanos_by_decimal(atto));
            prop_assert_eq!(atto_to_nanos(-atto), atto_to_nanos_by_decimal(-atto));
        }

        #[test]
        fn any_amount_comes_back_exact(m in any::<i64>(), scale in 0u32..=18) {
            let d = Decimal::new(m, scale);
            if let Ok((n, exact)) = usd_to_nanos(d) {
                prop_assert_eq!(nanos_to_usd(n, exact.as_deref()), d.normalize());
            } else {
                // Refused only when it really is out of range.
                prop_assert!(d.abs() > Decimal::new(i64::MAX, 9) - Decimal::new(1, 9));
            }
        }
    }
}

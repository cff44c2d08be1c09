//! Contracted rates: a catalog layer over list prices.
//!
//! A contract takes a share off the list price of the models it names
//! (a glob over model families, `gpt-*`) from one date, to another or open
//! ended. The price catalog stays the provider's list; FOCUS's
//! `ContractedCost` and `tally reprice` apply the contract in force on the
//! day. Committed-spend tiers (a deeper discount past a monthly spend) are
//! not modelled yet.
//!
//! ```toml
//! [[contract]]
//! name = "OpenAI enterprise 2026"
//! models = "gpt-*"
//! discount = "15%"                 # or "0.15"
//! effective_from = "2026-11-01"    # UTC
//! effective_to = "2027-11-01"      # optional, exclusive
//! ```

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::Error;

/// One contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// Its name (unique in a catalog).
    pub name: String,
    /// The model families it covers: a name, or a glob with `*`.
    pub models: String,
    /// The share taken off the list price, 0 to 1.
    pub discount: Decimal,
    /// First millisecond it applies, UTC.
    pub effective_from_ms: i64,
    /// First millisecond it no longer applies (`None`: open ended).
    pub effective_to_ms: Option<i64>,
}

impl Contract {
    /// The contracted amount of `list`.
    pub fn apply(&self, list: Decimal) -> Decimal {
        list - list * self.discount
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    name: String,
    models: String,
    discount: String,
    effective_from: String,
    #[serde(default)]
    effective_to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBook {
    #[serde(default)]
    contract: Vec<RawContract>,
}

/// The contracts of a catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContractBook {
    /// Every contract.
    pub entries: Vec<Contract>,
}

/// `15%` or `0.15` as a share, 0 to 1.
pub fn parse_share(s: &str) -> Option<Decimal> {
    let s = s.trim();
    let d = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<Decimal>().ok()? / Decimal::ONE_HUNDRED,
        None => s.parse::<Decimal>().ok()?,
    };
    (d >= Decimal::ZERO && d <= Decimal::ONE).then_some(d)
}

impl ContractBook {
    /// Reads the TOML form; errors name the file and the contract.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, Error> {
        let raw: RawBook =
            toml::from_str(text).map_err(|e| Error::invalid(file, e.message().to_owned()))?;
        let mut entries = Vec::new();
        for (i, c) in raw.contract.into_iter().enumerate() {
            let at =
                |m: String| Error::invalid(file, format!("contract #{} `{}`: {m}", i + 1, c.name));
            // A date alone is its midnight, UTC.
            let time = |s: &str| {
                let full = if s.len() == 10 {
                    format!("{s}T00:00:00Z")
                } else {
                    s.to_owned()
                };
                crate::time::parse_iso(&full, None)
                    .map_err(|e| at(format!("`{s}` is no date: {e}")))
            };
            if c.name.trim().is_empty() || c.models.trim().is_empty() {
                return Err(at("`name` and `models` must not be empty".to_owned()));
            }
            let discount = parse_share(&c.discount).ok_or_else(|| {
                at(format!(
                    "discount `{}` is not a share from 0 to 100 %",
                    c.discount
                ))
            })?;
            let from = time(&c.effective_from)?;
            let to = c.effective_to.as_deref().map(time).transpose()?;
            if to.is_some_and(|t| t <= from) {
                return Err(at("effective_to must be after effective_from".to_owned()));
            }
            if entries.iter().any(|e: &Contract| e.name == c.name) {
                return Err(at("the name is used twice".to_owned()));
            }
            entries.push(Contract {
                name: c.name,
                models: c.models.trim().to_ascii_lowercase(),
                discount,
                effective_from_ms: from,
                effective_to_ms: to,
            });
        }
        Ok(Self { entries })
    }

    /// The contract in force for `family` at `ts_ms`: an exact name beats
    /// a glob, a longer glob a shorter one, a later start an earlier one.
    pub fn at(&self, family: &str, ts_ms: i64) -> Option<&Contract> {
        let family = family.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(|c| {
                c.effective_from_ms <= ts_ms
                    && c.effective_to_ms.is_none_or(|t| ts_ms < t)
                    && crate::prices::glob_matches(&c.models, &family)
            })
            .max_by_key(|c| (!c.models.contains('*'), c.models.len(), c.effective_from_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOK: &str = r#"
[[contract]]
name = "OpenAI 2026"
models = "gpt-*"
discount = "15%"
effective_from = "2026-11-01"

[[contract]]
name = "mini deal"
models = "gpt-4o-mini"
discount = "0.3"
effective_from = "2026-11-15"
effective_to = "2026-12-01"
"#;

    #[test]
    fn the_contract_in_force_is_the_most_specific_on_the_day() {
        let b = ContractBook::from_toml(BOOK, "c.toml").unwrap();
        let day = |s: &str| crate::time::parse_iso(s, None).unwrap();
        assert_eq!(b.at("gpt-4o", day("2026-10-31T23:59:59Z")), None);
        assert_eq!(
            b.at("gpt-4o", day("2026-11-20T00:00:00Z")).unwrap().name,
            "OpenAI 2026"
        );
        assert_eq!(
            b.at("gpt-4o-mini", day("2026-11-20T00:00:00Z"))
                .unwrap()
                .name,
            "mini deal"
        );
        assert_eq!(
            b.at("gpt-4o-mini", day("2026-12-01T00:00:00Z"))
                .unwrap()
                .name,
            "OpenAI 2026"
        );
        assert_eq!(b.at("claude-sonnet-4", day("2026-11-20T00:00:00Z")), None);
        let c = b.at("gpt-4o", day("2026-11-20T00:00:00Z")).unwrap();
        assert_eq!(
            c.apply("2.00".parse().unwrap()),
            "1.70".parse::<Decimal>().unwrap()
        );
    }

    #[test]
    fn bad_contracts_are_refused_by_name() {
        for (bad, why) in [
            (BOOK.replace("15%", "115%"), "is not a share"),
            (
                BOOK.replace("2026-12-01", "2026-11-01"),
                "effective_to must be after",
            ),
            (BOOK.replace("mini deal", "OpenAI 2026"), "used twice"),
        ] {
            let e = ContractBook::from_toml(&bad, "c.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains("c.toml"), "{e}");
        }
    }
}

//! Contracted rates: a catalog layer over list prices.
//!
//! A contract takes a share off the list price of the models it names
//! (a glob over model families, `gpt-*`) from one date, to another or open
//! ended. The price catalog stays the provider's list; FOCUS's
//! `ContractedCost` and `tally reprice` apply the contract in force on the
//! day. A committed-spend tier takes a deeper share off the list spend of a
//! UTC month past a threshold, marginally (only the spend past it).
//!
//! ```toml
//! [[contract]]
//! name = "OpenAI enterprise 2026"
//! models = "gpt-*"
//! discount = "15%"                 # or "0.15"
//! effective_from = "2026-11-01"    # UTC
//! effective_to = "2027-11-01"      # optional, exclusive
//!
//! [[contract.tier]]                # optional: past $10,000 of list spend
//! from_spend = "10000"             # in a UTC month, 20 % off instead
//! discount = "20%"
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
    /// Committed-spend tiers: past this much list spend (USD) in a UTC
    /// month, this share off instead; ascending.
    pub tiers: Vec<(Decimal, Decimal)>,
}

impl Contract {
    /// The contracted amount of `list`, at the base discount.
    pub fn apply(&self, list: Decimal) -> Decimal {
        list - list * self.discount
    }

    /// The contracted amount of `list` spent after `before` of list spend
    /// this month: each part at the share of the tier it falls in.
    pub fn apply_after(&self, before: Decimal, list: Decimal) -> Decimal {
        if self.tiers.is_empty() || list <= Decimal::ZERO {
            return self.apply(list);
        }
        // Tier bounds: [0, t1) base, [t1, t2) tier 1, ...
        let mut bounds: Vec<(Decimal, Decimal)> = vec![(Decimal::ZERO, self.discount)];
        bounds.extend(self.tiers.iter().copied());
        let (start, end) = (before, before + list);
        let mut off = Decimal::ZERO;
        for (i, &(from, share)) in bounds.iter().enumerate() {
            let to = bounds.get(i + 1).map(|b| b.0);
            let lo = start.max(from);
            let hi = to.map_or(end, |t| end.min(t));
            if hi > lo {
                off += (hi - lo) * share;
            }
        }
        list - off
    }
}

/// Running list spend per contract and UTC month, so tiers apply to the
/// spend past their threshold in the order charges are metered.
#[derive(Debug, Default)]
pub struct Meter {
    spent: std::collections::HashMap<(String, i64), Decimal>,
}

impl Meter {
    fn month(ts_ms: i64) -> i64 {
        crate::time::format_ms(ts_ms)
            .get(..7)
            .and_then(|m| m.replace('-', "").parse::<i64>().ok())
            .unwrap_or(0)
    }

    /// Counts `list` spent at `ts_ms` under `c` without charging it: what a
    /// closed month already spent, before its corrections are metered.
    pub fn spent_before(&mut self, c: &Contract, ts_ms: i64, list: Decimal) {
        *self
            .spent
            .entry((c.name.clone(), Self::month(ts_ms)))
            .or_default() += list;
    }

    /// The contracted amount of `list` spent at `ts_ms` under `c`, and the
    /// month's running spend moved on.
    pub fn charge(&mut self, c: &Contract, ts_ms: i64, list: Decimal) -> Decimal {
        let month = Self::month(ts_ms);
        let spent = self.spent.entry((c.name.clone(), month)).or_default();
        let out = c.apply_after(*spent, list);
        *spent += list;
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    from_spend: String,
    discount: String,
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
    #[serde(default)]
    tier: Vec<RawTier>,
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
            let mut tiers = Vec::new();
            for t in &c.tier {
                let from: Decimal = t
                    .from_spend
                    .trim()
                    .parse()
                    .ok()
                    .filter(|d: &Decimal| *d > Decimal::ZERO)
                    .ok_or_else(|| {
                        at(format!(
                            "tier from_spend `{}` is not a positive amount",
                            t.from_spend
                        ))
                    })?;
                let share = parse_share(&t.discount).ok_or_else(|| {
                    at(format!(
                        "tier discount `{}` is not a share from 0 to 100 %",
                        t.discount
                    ))
                })?;
                if tiers
                    .last()
                    .is_some_and(|(prev, _): &(Decimal, Decimal)| *prev >= from)
                {
                    return Err(at("tiers must go up in from_spend".to_owned()));
                }
                tiers.push((from, share));
            }
            entries.push(Contract {
                name: c.name,
                models: c.models.trim().to_ascii_lowercase(),
                discount,
                effective_from_ms: from,
                effective_to_ms: to,
                tiers,
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
    fn a_tier_takes_its_share_off_only_the_spend_past_it() {
        let text = format!("{BOOK}\n[[contract.tier]]\nfrom_spend = \"100\"\ndiscount = \"30%\"\n");
        let b = ContractBook::from_toml(&text, "c.toml").unwrap();
        let c = b.entries.iter().find(|c| c.name == "mini deal").unwrap();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        // $60 then $60 in a month: 30 % off the first 100 (base share
        // 0.3), then the tier's 30 % off the last 20.
        assert_eq!(c.apply_after(d("0"), d("60")), d("42"));
        let open = b.entries.iter().find(|c| c.name == "OpenAI 2026").unwrap();
        assert!(open.tiers.is_empty());
        let tiered = Contract {
            tiers: vec![(d("100"), d("0.5"))],
            ..open.clone()
        };
        // 15 % off the 40 below $100, 50 % off the 20 past it.
        assert_eq!(
            tiered.apply_after(d("60"), d("60")),
            d("60") - d("6") - d("10")
        );
        let mut m = Meter::default();
        let day = crate::time::parse_iso("2026-11-20T00:00:00Z", None).unwrap();
        let next_month = crate::time::parse_iso("2026-12-02T00:00:00Z", None).unwrap();
        assert_eq!(m.charge(&tiered, day, d("60")), d("51"));
        assert_eq!(m.charge(&tiered, day, d("60")), d("44"));
        // A new month starts from nothing.
        assert_eq!(m.charge(&tiered, next_month, d("60")), d("51"));
        // A correction to a month that already spent $120 is past the tier.
        let mut late = Meter::default();
        late.spent_before(&tiered, day, d("120"));
        assert_eq!(late.charge(&tiered, day, d("10")), d("5"));
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

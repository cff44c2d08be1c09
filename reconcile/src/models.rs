//! Model names: every source's spelling is reduced to one model family.
//!
//! `openai/gpt-4o`, `gpt-4o-2024-08-06`, `GPT-4o` and OpenRouter's
//! `openai/gpt-4o:free` are all the family `gpt-4o`. A user alias table is
//! consulted first, so deployment names (`azure/prod-eu-4o`) can be mapped.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::Error;

/// User model aliases: exact name (case-insensitive) to family.
#[derive(Debug, Clone, Default)]
pub struct AliasTable {
    map: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasFile {
    #[serde(default)]
    aliases: HashMap<String, String>,
}

impl AliasTable {
    /// Parses `[aliases]` `"name" = "family"` from TOML.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, Error> {
        let f: AliasFile = toml::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        let mut map = HashMap::new();
        for (k, v) in f.aliases {
            let v = v.trim().to_ascii_lowercase();
            if v.is_empty() {
                return Err(Error::invalid(
                    file,
                    format!("alias `{k}` maps to an empty name"),
                ));
            }
            map.insert(k.trim().to_ascii_lowercase(), v);
        }
        Ok(Self { map })
    }

    /// A table from `(alias, family)` pairs (as the store keeps them);
    /// names are trimmed and lowercased like the TOML form's.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map = pairs
            .into_iter()
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .collect();
        Self { map }
    }

    /// Every `(alias, family)`, sorted by alias.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .map
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        v.sort_unstable();
        v
    }

    fn get(&self, s: &str) -> Option<&str> {
        self.map.get(s).map(String::as_str)
    }

    /// The family of a model name as any source spells it.
    pub fn family(&self, model: &str) -> String {
        self.priced_name(model, |_| false)
    }

    /// The name a model is priced under: at each step an alias wins, then
    /// a name the catalog prices exactly (`priced`), before the model is cut
    /// further. The steps: the name as given, without its `:variant`,
    /// without its provider prefix (`anthropic/`), and last its family (the
    /// dated snapshot stripped). So a snapshot with its own price is priced
    /// by it (`gpt-4o-2024-05-13` is $5/$15 per million tokens where
    /// `gpt-4o` is $2.50/$10), and one without falls back to its family.
    pub fn priced_name(&self, model: &str, priced: impl Fn(&str) -> bool) -> String {
        self.priced_by(model, priced).0
    }

    /// [`AliasTable::priced_name`] and the rule that gave it.
    pub fn priced_by(&self, model: &str, priced: impl Fn(&str) -> bool) -> (String, PriceRule) {
        let m = model.trim().to_ascii_lowercase();
        if let Some(f) = self.get(&m) {
            return (f.to_owned(), PriceRule::Alias);
        }
        // Fine-tuned models are their own priced family.
        if m.starts_with("ft:") || priced(&m) {
            return (m, PriceRule::Exact);
        }
        // OpenRouter `:free`/`:online` variants and Bedrock `:0` revisions.
        let base = match m.rsplit_once(':') {
            Some((b, _)) if !b.is_empty() => b,
            _ => m.as_str(),
        };
        if let Some(f) = self.get(base) {
            return (f.to_owned(), PriceRule::Alias);
        }
        if priced(base) {
            return (base.to_owned(), PriceRule::WithoutVariant);
        }
        // Provider or deployment prefix: `openai/`, `azure/`, `bedrock/...`.
        let base = base.rsplit_once('/').map_or(base, |(_, b)| b);
        if let Some(f) = self.get(base) {
            return (f.to_owned(), PriceRule::Alias);
        }
        if priced(base) {
            return (base.to_owned(), PriceRule::WithoutPrefix);
        }
        let base = strip_snapshot(base);
        match self.get(base) {
            Some(f) => (f.to_owned(), PriceRule::Alias),
            None => (base.to_owned(), PriceRule::Family),
        }
    }
}

/// Which step of the price lookup named the price a model is priced under
/// (see [`AliasTable::priced_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceRule {
    /// The model as named.
    Exact,
    /// The model without its `:variant`.
    WithoutVariant,
    /// The model without its provider or deployment prefix.
    WithoutPrefix,
    /// The model's family (its dated snapshot stripped).
    Family,
    /// An entry of the alias table.
    Alias,
}

impl PriceRule {
    /// Every rule, in lookup order.
    pub const ALL: [PriceRule; 5] = [
        PriceRule::Exact,
        PriceRule::WithoutVariant,
        PriceRule::WithoutPrefix,
        PriceRule::Family,
        PriceRule::Alias,
    ];

    /// snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            PriceRule::Exact => "exact",
            PriceRule::WithoutVariant => "without_variant",
            PriceRule::WithoutPrefix => "without_prefix",
            PriceRule::Family => "family",
            PriceRule::Alias => "alias",
        }
    }

    fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(0)
    }

    fn from_code(c: u8) -> Option<PriceRule> {
        Self::ALL.get(usize::from(c)).copied()
    }
}

impl From<PriceRule> for u8 {
    fn from(r: PriceRule) -> u8 {
        r.code()
    }
}

impl TryFrom<u8> for PriceRule {
    type Error = ();
    fn try_from(c: u8) -> Result<Self, ()> {
        Self::from_code(c).ok_or(())
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Strips a dated snapshot suffix: `-2024-08-06`, `-20240620`, `@20240620`,
/// `-0613`.
fn strip_snapshot(m: &str) -> &str {
    if let Some((head, tail)) = m.rsplit_once('@')
        && all_digits(tail)
    {
        return head;
    }
    // -YYYY-MM-DD
    // `split_at_checked`: the cut is a byte offset, and a multibyte model
    // name (`gé-4o-mini-a`) has no char boundary there.
    if let Some((head, tail)) = m
        .len()
        .checked_sub(11)
        .and_then(|at| m.split_at_checked(at))
    {
        let b = tail.as_bytes();
        if b.first() == Some(&b'-')
            && b.get(5) == Some(&b'-')
            && b.get(8) == Some(&b'-')
            && all_digits(tail.get(1..5).unwrap_or(""))
            && all_digits(tail.get(6..8).unwrap_or(""))
            && all_digits(tail.get(9..11).unwrap_or(""))
            && !head.is_empty()
        {
            return head;
        }
    }
    if let Some((head, tail)) = m.rsplit_once('-') {
        let dated = (tail.len() == 8 && tail.starts_with("20")) || tail.len() == 4;
        // A four-digit tail is a snapshot only after a name with letters
        // (`gpt-4-0613`), never a size or version (`llama-3-8b` has none).
        if dated && all_digits(tail) && head.bytes().any(|b| b.is_ascii_alphabetic()) {
            return head;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_model_names_never_split_inside_a_char() {
        // Once a panic on every run ("byte index 2 is not a char
        // boundary"), issue 16.
        for m in [
            "gé-4o-mini-a",
            "日本語モデル-2024-08-06",
            "é-0613",
            "🎉🎉🎉🎉🎉🎉",
            "x-2024-08-0é",
        ] {
            let _ = strip_snapshot(m);
        }
        assert_eq!(strip_snapshot("gé-4o-2024-08-06"), "gé-4o");
        assert_eq!(strip_snapshot("gé-4o-mini-a"), "gé-4o-mini-a");
    }

    #[test]
    fn alias_pairs_round_trip_and_resolve_like_the_toml_form() {
        let t = AliasTable::from_toml("[aliases]\n\"Fast-Chat\" = \"GPT-4o-mini\"\n", "a.toml")
            .unwrap();
        let back = AliasTable::from_pairs(t.pairs());
        assert_eq!(back.pairs(), vec![("fast-chat", "gpt-4o-mini")]);
        assert_eq!(back.family("openai/FAST-CHAT"), "gpt-4o-mini");
    }

    #[test]
    fn families() {
        let t = AliasTable::default();
        for (name, fam) in [
            ("gpt-4o", "gpt-4o"),
            ("GPT-4o", "gpt-4o"),
            ("openai/gpt-4o", "gpt-4o"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("openai/gpt-4.1-2025-04-14", "gpt-4.1"),
            ("openai/gpt-oss-120b:free", "gpt-oss-120b"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("anthropic/claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
            ("gpt-4-0613", "gpt-4"),
            ("text-embedding-3-small", "text-embedding-3-small"),
            (
                "meta-llama/llama-4-scout-17b-16e-instruct",
                "llama-4-scout-17b-16e-instruct",
            ),
            (
                "ft:gpt-4o-2024-08-06:acme::abc",
                "ft:gpt-4o-2024-08-06:acme::abc",
            ),
        ] {
            assert_eq!(t.family(name), fam, "{name}");
        }
    }

    #[test]
    fn user_aliases_win() {
        let t = AliasTable::from_toml(
            "[aliases]\n\"azure/prod-eu-4o\" = \"gpt-4o\"\n\"fast\" = \"gpt-4o-mini\"\n",
            "aliases.toml",
        )
        .unwrap();
        assert_eq!(t.family("azure/prod-eu-4o"), "gpt-4o");
        assert_eq!(t.family("litellm_proxy/fast"), "gpt-4o-mini");
        assert!(AliasTable::from_toml("[aliases]\nx = \"\"\n", "a.toml").is_err());
    }
}

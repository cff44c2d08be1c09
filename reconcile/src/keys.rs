//! API keys: fingerprints and the key registry.
//!
//! A raw key (`sk-...`) is turned into a fingerprint the moment a parser sees
//! it: the SHA-256 hex of the key (what LiteLLM stores in `api_key` and
//! OpenRouter exposes as `api_key_hash`) plus its last four characters. The
//! raw value is never stored, printed or written.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Prefix of the interned form of a fingerprinted raw key: `fp:<hex>:<last4>`.
pub const FP_PREFIX: &str = "fp:";

/// Whether a key value is a raw secret rather than an id, label or hash.
pub fn is_raw_secret(s: &str) -> bool {
    (s.starts_with("sk-") || s.starts_with("sk_"))
        && s.len() >= 20
        && !s.contains('…')
        && !s.contains("...")
}

/// Whether `s` may hold a raw secret (`sk-` or `sk_` somewhere in a text
/// long enough for one): the cheap test every parsed field passes through
/// before [`mask_secrets`].
pub fn may_hold_secret(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && memchr::memchr_iter(b'k', b).any(|i| {
            i > 0 && b.get(i - 1) == Some(&b's') && matches!(b.get(i + 1), Some(b'-' | b'_'))
        })
}

/// Whether any word of `s` is a raw secret (`sk-...` anywhere in a team,
/// a tag, a request id or an alias, not only in the key field).
pub fn contains_raw_secret(s: &str) -> bool {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(is_raw_secret)
}

/// Lowercase SHA-256 hex of a string.
pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// Lowercase hex of bytes (digests, fingerprints).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: [u8; 16] = *b"0123456789abcdef";

fn last4(s: &str) -> &str {
    let n = s.len();
    s.get(n.saturating_sub(4)..).unwrap_or("")
}

/// The interned form of a key value: raw secrets become `fp:<sha256>:<last4>`,
/// everything else is kept as given (trimmed).
pub fn key_token(s: &str) -> std::borrow::Cow<'_, str> {
    let t = s.trim_ascii();
    if is_raw_secret(t) {
        format!("{FP_PREFIX}{}:{}", sha256_hex(t), last4(t)).into()
    } else {
        t.into()
    }
}

/// Masks raw secrets in free text (reject rows keep the raw line).
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("sk-").or_else(|| rest.find("sk_")) {
        let (before, at) = rest.split_at(pos);
        out.push_str(before);
        let len = at
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map_or(at.len(), |(i, _)| i);
        let token = at.get(..len).unwrap_or("");
        if is_raw_secret(token) {
            out.push_str("sk-…");
            out.push_str(last4(token));
        } else {
            out.push_str(token);
        }
        rest = at.get(len..).unwrap_or("");
        if len == 0 {
            break;
        }
    }
    out.push_str(rest);
    out
}

/// Who a key (or a client row) belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub team: String,
    pub service: String,
    /// Environment (prod, staging, ...).
    pub env: String,
}

impl Owner {
    /// `team/service/env`, with `-` for a missing part.
    pub fn display(&self) -> String {
        let part = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        format!(
            "{}/{}/{}",
            part(&self.team),
            part(&self.service),
            part(&self.env)
        )
    }

    /// Whether no label is set.
    pub fn is_empty(&self) -> bool {
        self.team.is_empty() && self.service.is_empty() && self.env.is_empty()
    }
}

/// One registered key and every way a source may name it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Tally's id for the key (also how reports name it).
    pub id: String,
    /// An alias (LiteLLM `key_alias`, a gateway's key name).
    #[serde(default)]
    pub alias: Option<String>,
    /// Labels (OpenRouter `api_key_name`, Anthropic Console key names).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Last four characters of the secret, for sources that only show those.
    #[serde(default)]
    pub last4: Option<String>,
    /// SHA-256 hex digests of the secret (LiteLLM `api_key`, OpenRouter `api_key_hash`).
    #[serde(default)]
    pub sha256: Vec<String>,
    /// Owning team.
    #[serde(default)]
    pub team: String,
    /// Owning service.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub env: String,
    /// Contact email for alerts about this key.
    #[serde(default)]
    pub contact: Option<String>,
}

impl KeyEntry {
    /// The key's owner.
    pub fn owner(&self) -> Owner {
        Owner {
            team: self.team.clone(),
            service: self.service.clone(),
            env: self.env.clone(),
        }
    }
}

/// Reads a CSV file with a header into entries: `make` gets each record as
/// a lookup of trimmed cells by column name ("" for a missing column).
pub(crate) fn csv_entries<T>(
    r: impl std::io::Read,
    file: &str,
    mut make: impl FnMut(&dyn Fn(&str) -> String) -> T,
) -> Result<Vec<T>, Error> {
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(r);
    let headers = rdr
        .headers()
        .map_err(|e| Error::invalid(file, e.to_string()))?
        .clone();
    let mut out = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| Error::invalid(file, format!("line {}: {e}", n + 2)))?;
        let get = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim() == name)
                .and_then(|i| rec.get(i))
                .map(str::trim)
                .unwrap_or("")
                .to_owned()
        };
        out.push(make(&get));
    }
    Ok(out)
}

/// An owner and who to tell about it (`tally owners import`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OwnerEntry {
    #[serde(default)]
    pub team: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub env: String,
    /// Contact email(s) for alerts, comma-separated.
    #[serde(default)]
    pub contact: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnersFile {
    #[serde(default)]
    owner: Vec<OwnerEntry>,
}

impl OwnerEntry {
    /// Parses `[[owner]]` tables (TOML), refusing an owner with no label or
    /// listed twice.
    pub fn from_toml(text: &str, file: &str) -> Result<Vec<OwnerEntry>, Error> {
        let f: OwnersFile =
            toml::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        Self::checked(f.owner, file)
    }

    /// Parses the CSV form: `team,service,env,contact`.
    pub fn from_csv(r: impl std::io::Read, file: &str) -> Result<Vec<OwnerEntry>, Error> {
        let out = csv_entries(r, file, |get| {
            let contact = get("contact");
            OwnerEntry {
                team: get("team"),
                service: get("service"),
                env: get("env"),
                contact: (!contact.is_empty()).then_some(contact),
            }
        })?;
        Self::checked(out, file)
    }

    fn checked(v: Vec<OwnerEntry>, file: &str) -> Result<Vec<OwnerEntry>, Error> {
        let mut seen = std::collections::HashSet::new();
        for (i, o) in v.iter().enumerate() {
            let who = o.owner();
            if who.is_empty() {
                return Err(Error::invalid(
                    file,
                    format!("owner #{}: team, service and env are all empty", i + 1),
                ));
            }
            if !seen.insert(who.clone()) {
                return Err(Error::invalid(
                    file,
                    format!("owner #{} ({}) is listed twice", i + 1, who.display()),
                ));
            }
        }
        Ok(v)
    }

    /// The owner it describes.
    pub fn owner(&self) -> Owner {
        Owner {
            team: self.team.trim().to_owned(),
            service: self.service.trim().to_owned(),
            env: self.env.trim().to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

/// Prefix of the token that names a key by its owner's service and
/// environment (`owner:search/prod`), for sources that name no key.
pub const OWNER_PREFIX: &str = "owner:";

/// The token that stands for "the key of this owner" when a source names
/// no key; [`KeyRegistry::resolve`] finds it by service and environment.
pub fn owner_key_token(service: &str, env: &str) -> String {
    format!("{OWNER_PREFIX}{service}/{env}")
}

/// How a key value was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A registered key (index into [`KeyRegistry::entries`]).
    Known(usize),
    /// Not in the registry: its canonical name (a full SHA-256 hex for
    /// fingerprinted or hashed keys, so a client's raw key and LiteLLM's hash
    /// of it meet) and the last four characters when known.
    Unknown {
        /// Canonical name.
        canonical: String,
        /// Last four characters of the secret, when a raw key was seen.
        last4: Option<String>,
    },
}

/// The key registry: registered keys and lookup tables over every name.
#[derive(Debug, Clone, Default)]
pub struct KeyRegistry {
    /// Registered keys, in file order.
    pub entries: Vec<KeyEntry>,
    by_name: HashMap<String, usize>,
    by_last4: HashMap<String, Option<usize>>,
    /// `service/env` to the one key of that owner (`None` when several).
    by_owner: HashMap<String, Option<usize>>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl KeyRegistry {
    /// Builds a registry, refusing a name that points at two keys.
    pub fn new(entries: Vec<KeyEntry>, file: &str) -> Result<Self, Error> {
        let mut reg = KeyRegistry::default();
        for (i, e) in entries.iter().enumerate() {
            if e.id.trim().is_empty() {
                return Err(Error::invalid(
                    file,
                    format!("key #{}: `id` is empty", i + 1),
                ));
            }
            let mut names: Vec<String> = vec![e.id.clone()];
            names.extend(e.alias.clone());
            names.extend(e.labels.iter().cloned());
            // A registry is shown and exported: a secret in it would leak.
            if let Some(n) = names.iter().find(|n| contains_raw_secret(n)) {
                return Err(Error::invalid(
                    file,
                    format!(
                        "key #{}: `{}` is a raw API key; name keys by id, alias, label or \
                         the SHA-256 of the secret, never the secret",
                        i + 1,
                        mask_secrets(n)
                    ),
                ));
            }
            for h in &e.sha256 {
                if !is_hex64(h) {
                    return Err(Error::invalid(
                        file,
                        format!("key `{}`: sha256 `{h}` is not 64 hex digits", e.id),
                    ));
                }
                names.push(h.to_ascii_lowercase());
            }
            for n in names {
                if let Some(&other) = reg.by_name.get(&n)
                    && other != i
                {
                    let other_id = entries.get(other).map_or("", |o| o.id.as_str());
                    return Err(Error::invalid(
                        file,
                        format!("name `{n}` is used by keys `{other_id}` and `{}`", e.id),
                    ));
                }
                reg.by_name.insert(n, i);
            }
            if !e.service.is_empty() {
                reg.by_owner
                    .entry(format!("{}/{}", e.service, e.env))
                    .and_modify(|v| *v = None)
                    .or_insert(Some(i));
            }
            if let Some(l4) = &e.last4 {
                reg.by_last4
                    .entry(l4.clone())
                    .and_modify(|v| *v = None)
                    .or_insert(Some(i));
            }
        }
        reg.entries = entries;
        Ok(reg)
    }

    /// Parses the TOML form (`[[key]]` tables).
    pub fn from_toml(text: &str, file: &str) -> Result<Self, Error> {
        let parsed: RegistryFile =
            toml::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        Self::new(parsed.key, file)
    }

    /// Parses the CSV form: `id,alias,labels,last4,sha256,team,service,env,contact`
    /// where `labels` and `sha256` may hold several values separated by `;`.
    pub fn from_csv(r: impl std::io::Read, file: &str) -> Result<Self, Error> {
        let entries = csv_entries(r, file, |get| {
            let list = |name: &str| -> Vec<String> {
                get(name)
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let opt = |s: String| (!s.is_empty()).then_some(s);
            KeyEntry {
                id: get("id"),
                alias: opt(get("alias")),
                labels: list("labels"),
                last4: opt(get("last4")),
                sha256: list("sha256"),
                team: get("team"),
                service: get("service"),
                env: get("env"),
                contact: opt(get("contact")),
            }
        })?;
        if entries.iter().any(|e| e.id.is_empty()) {
            return Err(Error::invalid(file, "a key has no `id`"));
        }
        Self::new(entries, file)
    }

    /// Resolves a key value as a source wrote it (after [`key_token`]).
    pub fn resolve(&self, token: &str) -> Resolved {
        // A source that names no key (OpenTelemetry spans): the one key the
        // registry gives that service and environment. Two keys for one
        // owner cannot say which was used: the row stays on an unknown key
        // named after the owner, so it is reported, never guessed.
        if let Some(owner) = token.strip_prefix(OWNER_PREFIX) {
            if let Some(Some(i)) = self.by_owner.get(owner) {
                return Resolved::Known(*i);
            }
            return Resolved::Unknown {
                canonical: token.to_owned(),
                last4: None,
            };
        }
        let mut last4_seen: Option<String> = None;
        let mut hash: Option<String> = None;
        if let Some(rest) = token.strip_prefix(FP_PREFIX) {
            let (h, l4) = rest.split_once(':').unwrap_or((rest, ""));
            hash = Some(h.to_owned());
            last4_seen = (!l4.is_empty()).then(|| l4.to_owned());
        } else if let Some(h) = token.strip_prefix("sha256:") {
            hash = Some(h.to_ascii_lowercase());
        } else if is_hex64(token) {
            hash = Some(token.to_ascii_lowercase());
        }
        if let Some(h) = &hash {
            if let Some(&i) = self.by_name.get(h) {
                return Resolved::Known(i);
            }
            return Resolved::Unknown {
                canonical: h.clone(),
                last4: last4_seen,
            };
        }
        if let Some(&i) = self.by_name.get(token) {
            return Resolved::Known(i);
        }
        // Redacted forms: `sk-...abcd`, `sk-…abcd`, `...abcd`, or a bare last-4
        // when the source is known to give only that (mapped as such).
        let redacted = token
            .rsplit_once("...")
            .or_else(|| token.rsplit_once('…'))
            .map(|(_, tail)| tail);
        let tail = redacted.or_else(|| (token.len() == 4).then_some(token));
        if let Some(t) = tail
            && let Some(Some(i)) = self.by_last4.get(t)
        {
            return Resolved::Known(*i);
        }
        Resolved::Unknown {
            canonical: token.to_owned(),
            last4: None,
        }
    }
}

/// How reports name an unregistered key: a hash as its whole fingerprint
/// (`sha256:` and all 64 hex digits, with the last four characters of the
/// secret when a source gave them), so it can be searched for in the
/// gateway; names are kept. Only displays shorten it ([`abbreviated`]).
pub fn display_unknown(canonical: &str, last4: Option<&str>) -> String {
    if is_hex64(canonical) {
        match last4 {
            Some(l4) => format!("sha256:{canonical} (…{l4})"),
            None => format!("sha256:{canonical}"),
        }
    } else {
        canonical.to_owned()
    }
}

/// A key's name shortened for a screen: a whole `sha256:` fingerprint
/// becomes its first 12 digits and `…` (what follows it is kept). Exports
/// keep the whole name; this is for terminals, pages and subjects.
pub fn abbreviated(name: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = name.strip_prefix("sha256:")
        && let Some((hash, tail)) = rest.split_at_checked(64)
        && is_hex64(hash)
    {
        let short = hash.get(..12).unwrap_or(hash);
        return std::borrow::Cow::Owned(format!("sha256:{short}…{tail}"));
    }
    std::borrow::Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_key_is_named_by_its_whole_fingerprint_and_only_displays_shorten_it() {
        let h = "4b4e721860d5".to_owned() + &"0".repeat(52);
        let full = super::display_unknown(&h, Some("wxyz"));
        assert_eq!(full, format!("sha256:{h} (…wxyz)"));
        assert_eq!(super::abbreviated(&full), "sha256:4b4e721860d5… (…wxyz)");
        assert_eq!(super::abbreviated("key_support_prod"), "key_support_prod");
        assert_eq!(super::abbreviated("sha256:short"), "sha256:short");
    }

    #[test]
    fn a_secret_in_any_field_is_masked_and_refused_as_a_name() {
        // Issue 16: a key pasted into a team, a tag, an id or a model was
        // stored and reported verbatim.
        let secret = "sk-proj-AAAAAAAAAAAAAAAAAAAAAAAAAAAAwxyz";
        let csv = format!(
            "ts,key,model,route,request_id,input_tokens,output_tokens,team,tags\n\
             2026-11-20T10:00:00Z,k,gpt-4o {secret},chat,{secret},1,1,{secret},a;{secret}\n"
        );
        let mut side = crate::Side::keeping_raw(crate::SideKind::Client);
        crate::parse::client::read_client(csv.as_bytes(), "c.csv", None, &mut side).unwrap();
        assert_eq!(side.rows.len(), 1);
        for (_, s) in side.strings.iter() {
            assert!(!s.contains(secret), "{s}");
        }
        let (id, _) = side.ids.get(side.rows[0].ids);
        assert_eq!(id, "sk-…wxyz");
        assert!(!side.raw(0).unwrap().contains(secret));
        let toml = format!("[[key]]\nid = \"k\"\nalias = \"{secret}\"\n");
        let e = KeyRegistry::from_toml(&toml, "k.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("raw API key") && !e.contains(secret), "{e}");
    }

    #[test]
    fn owners_read_from_toml_and_csv_alike_and_refuse_blanks_and_twins() {
        let toml =
            "[[owner]]\nteam = \"search\"\nservice = \"api\"\nenv = \"prod\"\ncontact = \"s@x\"\n";
        let csv = "team,service,env,contact\nsearch,api,prod,s@x\n";
        let a = OwnerEntry::from_toml(toml, "o.toml").unwrap();
        let b = OwnerEntry::from_csv(csv.as_bytes(), "o.csv").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].owner().display(), "search/api/prod");
        let twice = "team,service,env,contact\ns,a,p,\ns,a,p,x@y\n";
        let e = OwnerEntry::from_csv(twice.as_bytes(), "o.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let blank = "team,service,env,contact\n,,,x@y\n";
        assert!(OwnerEntry::from_csv(blank.as_bytes(), "o.csv").is_err());
    }

    use super::*;

    const SECRET: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789WXYZ";

    fn registry() -> KeyRegistry {
        KeyRegistry::from_toml(
            &format!(
                r#"
[[key]]
id = "k1"
alias = "support-bot-prod"
labels = ["Support bot"]
last4 = "WXYZ"
sha256 = ["{}"]
team = "support"
service = "bot"
env = "prod"
contact = "oncall@example.com"

[[key]]
id = "k2"
last4 = "1111"
"#,
                sha256_hex(SECRET)
            ),
            "keys.toml",
        )
        .unwrap()
    }

    #[test]
    fn raw_key_is_fingerprinted_and_found_by_hash() {
        let token = key_token(SECRET);
        assert!(!token.contains(SECRET));
        assert!(token.ends_with(":WXYZ"));
        let reg = registry();
        assert_eq!(reg.resolve(&token), Resolved::Known(0));
        // LiteLLM stores the same hash: it meets the client's raw key.
        assert_eq!(reg.resolve(&sha256_hex(SECRET)), Resolved::Known(0));
    }

    #[test]
    fn every_name_resolves() {
        let reg = registry();
        for n in [
            "k1",
            "support-bot-prod",
            "Support bot",
            "sk-...WXYZ",
            "sk-…WXYZ",
        ] {
            assert_eq!(reg.resolve(n), Resolved::Known(0), "{n}");
        }
        assert_eq!(reg.resolve("1111"), Resolved::Known(1));
        assert!(matches!(reg.resolve("nobody"), Resolved::Unknown { .. }));
    }

    #[test]
    fn unknown_raw_key_and_its_hash_share_a_canonical_name() {
        let reg = KeyRegistry::default();
        let secret = "sk-unregistered-0000000000000000abcd";
        let a = reg.resolve(&key_token(secret));
        let b = reg.resolve(&sha256_hex(secret));
        let (
            Resolved::Unknown {
                canonical: ca,
                last4,
            },
            Resolved::Unknown { canonical: cb, .. },
        ) = (a, b)
        else {
            panic!("expected unknown");
        };
        assert_eq!(ca, cb);
        assert_eq!(last4.as_deref(), Some("abcd"));
        assert!(!display_unknown(&ca, last4.as_deref()).contains(secret));
    }

    #[test]
    fn masking_removes_secrets_from_text() {
        let line = format!(r#"{{"key":"{SECRET}","model":"gpt-4o"}}"#);
        let masked = mask_secrets(&line);
        assert!(!masked.contains(SECRET));
        assert!(masked.contains("sk-…WXYZ"));
        assert!(masked.contains("gpt-4o"));
        assert_eq!(mask_secrets("sk-short"), "sk-short");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = KeyRegistry::from_toml(
            "[[key]]\nid = \"a\"\nalias = \"x\"\n[[key]]\nid = \"b\"\nalias = \"x\"\n",
            "keys.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
    }

    #[test]
    fn csv_form() {
        let csv =
            "id,alias,labels,last4,sha256,team,service,env,contact\nk9,al,L1;L2,9999,,t,s,e,c@x\n";
        let reg = KeyRegistry::from_csv(csv.as_bytes(), "keys.csv").unwrap();
        assert_eq!(reg.resolve("L2"), Resolved::Known(0));
        assert_eq!(reg.entries[0].owner().display(), "t/s/e");
    }
}

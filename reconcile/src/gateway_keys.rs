//! The key registry as a gateway already knows it (issue 17, item 7):
//! LiteLLM's key table (`LiteLLM_VerificationToken`) and team table
//! (`LiteLLM_TeamTable`), as `psql \copy ... CSV HEADER` writes them or as
//! the proxy's `/key/list?return_full_object=true` and `/team/list`
//! endpoints answer, become registry entries, so owners come from what the
//! gateway records instead of a file written by hand.
//!
//! Per key: `token` is the SHA-256 hex of the virtual key, the same value
//! as SpendLogs `api_key`; `key_name` is `sk-...` and the key's last four
//! characters; `key_alias` its name; `team_id` its team (named by the team
//! table's `team_alias` when given); `metadata` may carry `service`, `env`
//! (or `environment`) and `contact`.

use std::collections::HashMap;

use crate::error::Error;
use crate::keys::KeyEntry;

/// Whether a registry file is LiteLLM's key table: a CSV whose header has
/// `token` and `key_name`, or JSON with a `keys` list.
pub fn is_litellm_keys(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return t.contains("\"keys\"") || t.contains("\"token\"");
    }
    let header = t.lines().next().unwrap_or("");
    let cols: Vec<&str> = header
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    cols.contains(&"token") && cols.contains(&"key_name")
}

/// One key as LiteLLM records it.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
struct LitellmKey {
    token: String,
    key_name: Option<String>,
    key_alias: Option<String>,
    team_id: Option<String>,
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct LitellmTeam {
    team_id: String,
    team_alias: Option<String>,
}

/// Team ids to team names, from LiteLLM's team table (CSV or the JSON of
/// `/team/list`).
pub fn litellm_teams(text: &str, file: &str) -> Result<HashMap<String, String>, Error> {
    let teams: Vec<LitellmTeam> = if is_json(text) {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        let list = v.get("teams").cloned().unwrap_or(v);
        serde_json::from_value(list).map_err(|e| Error::invalid(file, format!("teams: {e}")))?
    } else {
        crate::keys::csv_entries(text.as_bytes(), file, |get| LitellmTeam {
            team_id: get("team_id"),
            team_alias: Some(get("team_alias")).filter(|a| !a.is_empty()),
        })?
    };
    Ok(teams
        .into_iter()
        .filter_map(|t| Some((t.team_id, t.team_alias?)))
        .collect())
}

/// Registry entries from LiteLLM's key table (CSV or `/key/list` JSON),
/// teams named through `teams` (team id to name) where it knows them.
pub fn litellm_keys(
    text: &str,
    file: &str,
    teams: &HashMap<String, String>,
) -> Result<Vec<KeyEntry>, Error> {
    let keys: Vec<LitellmKey> = if is_json(text) {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
        let list = v.get("keys").cloned().unwrap_or(v);
        if list
            .as_array()
            .is_some_and(|a| a.iter().any(serde_json::Value::is_string))
        {
            return Err(Error::invalid(
                file,
                "the key list holds bare tokens: ask /key/list with return_full_object=true",
            ));
        }
        serde_json::from_value(list).map_err(|e| Error::invalid(file, format!("keys: {e}")))?
    } else {
        crate::keys::csv_entries(text.as_bytes(), file, |get| {
            let opt = |s: String| Some(s).filter(|s| !s.is_empty());
            LitellmKey {
                token: get("token"),
                key_name: opt(get("key_name")),
                key_alias: opt(get("key_alias")),
                team_id: opt(get("team_id")),
                metadata: serde_json::from_str(&get("metadata")).ok(),
            }
        })?
    };
    let mut out = Vec::with_capacity(keys.len());
    for (i, k) in keys.into_iter().enumerate() {
        let token = k.token.trim().to_ascii_lowercase();
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                file,
                format!(
                    "key #{}: `token` is not the 64 hex digits LiteLLM stores",
                    i + 1
                ),
            ));
        }
        let meta = |name: &str| {
            k.metadata
                .as_ref()
                .and_then(|m| m.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        // `sk-...wxyz`: the last four characters, when LiteLLM kept them.
        let last4 = k
            .key_name
            .as_deref()
            .and_then(|n| n.rsplit("...").next().filter(|_| n.contains("...")))
            .filter(|l| l.chars().count() == 4)
            .map(str::to_owned);
        let team = k
            .team_id
            .as_deref()
            .map(|t| teams.get(t).cloned().unwrap_or_else(|| t.to_owned()))
            .unwrap_or_default();
        let id = k
            .key_alias
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| format!("litellm-{}", token.get(..12).unwrap_or("")));
        out.push(KeyEntry {
            id,
            alias: None,
            labels: Vec::new(),
            last4,
            sha256: vec![token],
            team,
            service: meta("service").unwrap_or_default(),
            env: meta("env")
                .or_else(|| meta("environment"))
                .unwrap_or_default(),
            contact: meta("contact"),
        });
    }
    Ok(out)
}

/// Whether a registry file is OpenRouter's key list (`GET /api/v1/keys`:
/// `{"data": [{"hash", "name", "label", ...}]}`).
pub fn is_openrouter_keys(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start();
    t.starts_with('{') && t.contains("\"data\"") && t.contains("\"hash\"")
}

/// Registry entries from OpenRouter's key list. `hash` is the SHA-256 hex
/// of the key (what its activity API filters on); `name` is what the
/// per-generation export calls `api_key_name`; `label` is a second name
/// (a masked form of the key on older accounts: kept only when it holds no
/// secret). OpenRouter knows no owners: the entries have none until the
/// registry gives them one.
pub fn openrouter_keys(text: &str, file: &str) -> Result<Vec<KeyEntry>, Error> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::invalid(file, e.to_string()))?;
    let list = v
        .get("data")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| Error::invalid(file, "no `data` list of keys"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, k) in list.iter().enumerate() {
        let text_of = |name: &str| {
            k.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let hash = text_of("hash")
            .map(|h| h.to_ascii_lowercase())
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                Error::invalid(
                    file,
                    format!(
                        "key #{}: `hash` is not the SHA-256 hex OpenRouter lists",
                        i + 1
                    ),
                )
            })?;
        let name = text_of("name");
        let mut labels: Vec<String> = Vec::new();
        for l in [name.clone(), text_of("label")].into_iter().flatten() {
            if !crate::keys::contains_raw_secret(&l) && !labels.contains(&l) {
                labels.push(l);
            }
        }
        let id = labels
            .first()
            .cloned()
            .unwrap_or_else(|| format!("openrouter-{}", hash.get(..12).unwrap_or("")));
        labels.retain(|l| *l != id);
        out.push(KeyEntry {
            id,
            alias: None,
            labels,
            last4: None,
            sha256: vec![hash],
            team: String::new(),
            service: String::new(),
            env: String::new(),
            contact: None,
        });
    }
    Ok(out)
}

fn is_json(text: &str) -> bool {
    matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRegistry, Resolved};

    const TOKEN: &str = "38421a3dd6372becf0707bb0ec1d1be405b690420957d45c1dc25a971cae0e63";

    #[test]
    fn openrouters_key_list_names_keys_by_name_label_and_hash() {
        // As `GET /api/v1/keys` answers (its API reference's example).
        let hash = "f01d52606dc8f0a8303a7b5cc3fa07109c2e346cec7c0a16b40de462992ce943";
        let json = format!(
            r#"{{"data": [{{"hash": "{hash}", "name": "My Production Key", "label": "Production API Key",
                "disabled": false, "limit": 100, "usage": 25.5, "created_at": "2025-08-24T10:30:00Z"}},
               {{"hash": "{}", "name": "", "label": "sk-or-v1-0e6...c96"}}]}}"#,
            "c".repeat(64)
        );
        assert!(is_openrouter_keys(json.as_bytes()));
        assert!(!is_openrouter_keys(b"token,key_name\n"));
        let entries = openrouter_keys(&json, "keys.json").unwrap();
        assert_eq!(entries[0].id, "My Production Key");
        assert_eq!(entries[0].labels, ["Production API Key"]);
        assert_eq!(entries[1].id, "sk-or-v1-0e6...c96");
        let reg = KeyRegistry::new(entries, "keys.json").unwrap();
        // The per-generation export's `api_key_name` and the activity API's
        // hash both find the key.
        assert!(matches!(
            reg.resolve("My Production Key"),
            Resolved::Known(0)
        ));
        assert!(matches!(
            reg.resolve("Production API Key"),
            Resolved::Known(0)
        ));
        assert!(matches!(reg.resolve(hash), Resolved::Known(0)));
        let bad = openrouter_keys(r#"{"data": [{"hash": "sk-or-v1-x"}]}"#, "k.json")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not the SHA-256 hex"), "{bad}");
    }

    #[test]
    fn litellm_key_and_team_tables_become_the_registry() {
        // As `psql \copy (SELECT token, key_name, key_alias, team_id, metadata
        // FROM "LiteLLM_VerificationToken") TO 'keys.csv' CSV HEADER` writes.
        let keys = format!(
            "token,key_name,key_alias,team_id,metadata,max_budget\n\
             {TOKEN},sk-...Ab12,support-bot-prod,team-uuid-1,\"{{\"\"service\"\": \"\"support-bot\"\", \"\"env\"\": \"\"prod\"\"}}\",10.0\n\
             {},sk-...Zz99,,,{{}},\n",
            "b".repeat(64)
        );
        let teams = "team_id,team_alias,max_budget\nteam-uuid-1,support,100\n";
        assert!(is_litellm_keys(keys.as_bytes()));
        let t = litellm_teams(teams, "teams.csv").unwrap();
        let entries = litellm_keys(&keys, "keys.csv", &t).unwrap();
        assert_eq!(entries.len(), 2);
        let e = &entries[0];
        assert_eq!(
            (
                e.id.as_str(),
                e.team.as_str(),
                e.service.as_str(),
                e.env.as_str()
            ),
            ("support-bot-prod", "support", "support-bot", "prod")
        );
        assert_eq!(e.last4.as_deref(), Some("Ab12"));
        assert_eq!(entries[1].id, "litellm-bbbbbbbbbbbb");
        // A SpendLogs row names the key by this hash: it resolves.
        let reg = KeyRegistry::new(entries, "keys.csv").unwrap();
        assert!(matches!(reg.resolve(TOKEN), Resolved::Known(0)));
        // The JSON of /key/list?return_full_object=true reads the same.
        let json = format!(
            "{{\"keys\": [{{\"token\": \"{TOKEN}\", \"key_name\": \"sk-...Ab12\", \"key_alias\": \"support-bot-prod\", \"team_id\": \"team-uuid-1\", \"metadata\": {{\"service\": \"support-bot\", \"env\": \"prod\"}}}}], \"total_count\": 1}}"
        );
        let team_json = "[{\"team_id\": \"team-uuid-1\", \"team_alias\": \"support\"}]";
        let from_json = litellm_keys(
            &json,
            "keys.json",
            &litellm_teams(team_json, "t.json").unwrap(),
        )
        .unwrap();
        assert_eq!(from_json[0], reg.entries[0]);
        // Bare tokens (the endpoint's default) say what to ask for.
        let bare = litellm_keys("{\"keys\": [\"x\"]}", "k.json", &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(bare.contains("return_full_object=true"), "{bare}");
    }
}

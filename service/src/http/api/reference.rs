//! Owners, keys, aliases and prices, through the registry use cases.

// The parent's imports and helpers: these files are sections of one API.
use super::*;
// ---- Owners -------------------------------------------------------------

/// An owner.
#[derive(Debug, Serialize)]
pub struct OwnerView {
    pub id: i64,
    pub team: String,
    pub service: String,
    pub env: String,
    /// Contact email(s).
    pub contact: Option<String>,
}

impl From<OwnerRow> for OwnerView {
    fn from(o: OwnerRow) -> Self {
        Self {
            id: o.id,
            team: o.team,
            service: o.service,
            env: o.env,
            contact: o.contact,
        }
    }
}

/// An owner as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerInput {
    team: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    env: String,
    contact: Option<String>,
}

impl OwnerInput {
    fn owner(&self) -> NewOwner<'_> {
        NewOwner {
            team: self.team.trim(),
            service: self.service.trim(),
            env: self.env.trim(),
            contact: self
                .contact
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty()),
        }
    }
}

/// `GET /v1/owners`.
pub async fn list_owners(state: Data, q: web::Query<PageQuery>) -> Reply {
    let list: Vec<OwnerView> = state
        .db(|c| Ok(registry::owners(c)?.into_iter().map(Into::into).collect()))
        .await?;
    Ok(HttpResponse::Ok().json(page_of(list, q.page, q.per_page)?))
}

/// `GET /v1/owners/{id}`.
pub async fn get_owner(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    let o = state.db(move |c| Ok(registry::owner(c, id)?)).await?;
    Ok(HttpResponse::Ok().json(OwnerView::from(o)))
}

/// `POST /v1/owners`: adds an owner, or sets the contact of the owner
/// with the same team, service and env.
pub async fn create_owner(state: Data, body: web::Json<OwnerInput>) -> Reply {
    let o = state
        .db(move |c| Ok(registry::put_owner(c, &body.owner())?))
        .await?;
    Ok(HttpResponse::Created().json(OwnerView::from(o)))
}

/// `PUT /v1/owners/{id}`.
pub async fn update_owner(state: Data, id: web::Path<i64>, body: web::Json<OwnerInput>) -> Reply {
    let id = id.into_inner();
    let o = state
        .db(move |c| Ok(registry::update_owner(c, id, &body.owner())?))
        .await?;
    Ok(HttpResponse::Ok().json(OwnerView::from(o)))
}

/// `DELETE /v1/owners/{id}`.
pub async fn delete_owner(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    state
        .db(move |c| Ok(registry::delete_owner(c, id)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- Keys ---------------------------------------------------------------

/// A registered key: how sources name it, never a secret.
#[derive(Debug, Serialize)]
pub struct KeyView {
    /// Tally's id.
    pub key_id: String,
    pub alias: Option<String>,
    pub labels: Vec<String>,
    /// Last four characters of the secret.
    pub last4: Option<String>,
    /// SHA-256 fingerprints of the secret known.
    pub fingerprints: usize,
    pub owner: Option<OwnerView>,
    /// Contact for this key (else the owner's).
    pub contact: Option<String>,
}

fn key_view(k: KeyRow, owners: &[OwnerRow]) -> KeyView {
    let list = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
    KeyView {
        labels: list(&k.labels),
        fingerprints: list(&k.sha256).len(),
        owner: k
            .owner_id
            .and_then(|id| owners.iter().find(|o| o.id == id))
            .cloned()
            .map(Into::into),
        key_id: k.key_id,
        alias: k.alias,
        last4: k.last4,
        contact: k.contact,
    }
}

fn key_views(c: &mut crate::db::AnyConnection) -> Result<Vec<KeyView>, ApiError> {
    let (keys, owners) = registry::keys(c)?;
    Ok(keys.into_iter().map(|k| key_view(k, &owners)).collect())
}

/// A key as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    alias: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    last4: Option<String>,
    /// SHA-256 hex digests of the secret (never the secret).
    #[serde(default)]
    sha256: Vec<String>,
    #[serde(default)]
    team: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    env: String,
    contact: Option<String>,
}

impl KeyInput {
    fn entry(self, id: String) -> Result<tally_reconcile::keys::KeyEntry, ApiError> {
        if id.trim().is_empty() {
            return Err(ApiError::unprocessable("the key id is empty"));
        }
        if let Some(l) = &self.last4
            && l.chars().count() != 4
        {
            return Err(ApiError::unprocessable("`last4` is not four characters"));
        }
        let mut sha256 = Vec::with_capacity(self.sha256.len());
        for h in self.sha256 {
            let h = h.trim().to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::unprocessable(
                    "`sha256`: each fingerprint is 64 hex digits (the SHA-256 of the secret, never the secret)",
                ));
            }
            sha256.push(h);
        }
        if self.team.trim().is_empty() && !(self.service.is_empty() && self.env.is_empty()) {
            return Err(ApiError::unprocessable("an owner needs a `team`"));
        }
        for (field, name) in self
            .alias
            .iter()
            .map(|a| ("alias", a))
            .chain(self.labels.iter().map(|l| ("labels", l)))
        {
            if tally_reconcile::keys::contains_raw_secret(name) {
                return Err(ApiError::unprocessable(format!(
                    "`{field}`: `{}` is a raw API key; name keys by id, alias, label or the SHA-256 of the secret",
                    tally_reconcile::keys::mask_secrets(name)
                )));
            }
        }
        Ok(tally_reconcile::keys::KeyEntry {
            id,
            alias: self.alias,
            labels: self.labels,
            last4: self.last4,
            sha256,
            team: self.team.trim().to_owned(),
            service: self.service.trim().to_owned(),
            env: self.env.trim().to_owned(),
            contact: self.contact,
        })
    }
}

/// `GET /v1/keys`.
pub async fn list_keys(state: Data, q: web::Query<PageQuery>) -> Reply {
    let page = q.page()?;
    let (keys, owners) = state.db(move |c| Ok(registry::keys_page(c, page)?)).await?;
    Ok(HttpResponse::Ok().json(Paged::from_store(keys, |k| key_view(k, &owners))))
}

/// `GET /v1/keys/{key_id}`.
pub async fn get_key(state: Data, id: web::Path<String>) -> Reply {
    let id = id.into_inner();
    let k = state
        .db(move |c| {
            key_views(c)?
                .into_iter()
                .find(|k| k.key_id == id)
                .ok_or_else(|| ApiError::not_found(format!("no key `{id}`")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(k))
}

/// `PUT /v1/keys/{key_id}`: adds or replaces the key (and adds its owner).
pub async fn put_key(state: Data, id: web::Path<String>, body: web::Json<KeyInput>) -> Reply {
    let entry = body.into_inner().entry(id.into_inner())?;
    let k = state
        .db(move |c| {
            registry::put_key(c, &entry)?;
            key_views(c)?
                .into_iter()
                .find(|k| k.key_id == entry.id)
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("key vanished after upsert")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(k))
}

/// `DELETE /v1/keys/{key_id}`.
pub async fn delete_key(state: Data, id: web::Path<String>) -> Reply {
    let id = id.into_inner();
    state.db(move |c| Ok(registry::delete_key(c, &id)?)).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- Aliases ------------------------------------------------------------

/// A model alias.
#[derive(Debug, Serialize)]
pub struct AliasView {
    /// The name a source uses.
    pub alias: String,
    /// The family it stands for.
    pub model: String,
}

/// `PUT /v1/aliases/{alias}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasInput {
    model: String,
}

/// `GET /v1/aliases`.
pub async fn list_aliases(state: Data, q: web::Query<PageQuery>) -> Reply {
    let list: Vec<AliasView> = state
        .db(|c| {
            Ok(registry::aliases(c)?
                .into_iter()
                .map(|a| AliasView {
                    alias: a.alias,
                    model: a.model,
                })
                .collect())
        })
        .await?;
    Ok(HttpResponse::Ok().json(page_of(list, q.page, q.per_page)?))
}

/// `PUT /v1/aliases/{alias}`.
pub async fn put_alias(
    state: Data,
    alias: web::Path<String>,
    body: web::Json<AliasInput>,
) -> Reply {
    let alias = alias.into_inner();
    let row = state
        .db(move |c| Ok(registry::put_alias(c, &alias, &body.model)?))
        .await?;
    Ok(HttpResponse::Ok().json(AliasView {
        alias: row.alias,
        model: row.model,
    }))
}

/// `DELETE /v1/aliases/{alias}`.
pub async fn delete_alias(state: Data, alias: web::Path<String>) -> Reply {
    let alias = alias.into_inner();
    state
        .db(move |c| Ok(registry::delete_alias(c, &alias)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- Prices -------------------------------------------------------------

/// A price: USD per million tokens, as decimal strings.
#[derive(Debug, Serialize)]
pub struct PriceView {
    pub id: i64,
    /// Family or glob.
    pub model: String,
    /// From when (UTC).
    pub effective_from: String,
    pub currency: String,
    /// Uncached input.
    pub input: Decimal,
    /// Cached input.
    pub cached_input: Decimal,
    /// Cache writes.
    pub cache_write: Decimal,
    pub output: Decimal,
    /// Reasoning, when priced apart from output.
    pub reasoning: Option<Decimal>,
}

fn per_million(nanos: i64) -> Decimal {
    Decimal::new(nanos, 9).normalize()
}

impl From<PriceRow> for PriceView {
    fn from(p: PriceRow) -> Self {
        Self {
            id: p.id,
            model: p.model,
            effective_from: utc(p.effective_from),
            currency: p.currency,
            input: per_million(p.input_nanos),
            cached_input: per_million(p.cached_input_nanos),
            cache_write: per_million(p.cache_write_nanos),
            output: per_million(p.output_nanos),
            reasoning: p.reasoning_nanos.map(per_million),
        }
    }
}

/// `GET /v1/prices`.
pub async fn list_prices(state: Data, q: web::Query<PageQuery>) -> Reply {
    let list: Vec<PriceView> = state
        .db(|c| Ok(registry::prices(c)?.into_iter().map(Into::into).collect()))
        .await?;
    Ok(HttpResponse::Ok().json(page_of(list, q.page, q.per_page)?))
}

/// A JSON value as the TOML the catalog parser reads: numbers keep their
/// exact text (as strings, so no float rounding on the way).
fn toml_value(v: &serde_json::Value) -> Option<toml::Value> {
    match v {
        serde_json::Value::String(s) => Some(toml::Value::String(s.clone())),
        serde_json::Value::Number(n) => Some(toml::Value::String(n.to_string())),
        _ => None,
    }
}

/// `POST /v1/prices`: one catalog entry, the fields of a `[[price]]` of
/// the TOML catalog (`model`, `effective_from`, `input`, `output`, and
/// optionally `cached_input`, `cache_write`, `reasoning`), read by the same
/// parser so the same rules hold.
pub async fn create_price(
    state: Data,
    body: web::Json<serde_json::Map<String, serde_json::Value>>,
) -> Reply {
    let mut entry = toml::Table::new();
    for (k, v) in body.into_inner() {
        let v = toml_value(&v)
            .ok_or_else(|| ApiError::unprocessable(format!("`{k}`: a string or a number")))?;
        entry.insert(k, v);
    }
    let mut doc = toml::Table::new();
    doc.insert(
        "price".to_owned(),
        toml::Value::Array(vec![toml::Value::Table(entry)]),
    );
    let text = toml::to_string(&doc).map_err(ApiError::internal)?;
    let book = tally_reconcile::prices::PriceBook::from_toml(&text, "request body")
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let price = book
        .entries
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::unprocessable("no price in the body"))?;
    let now = state.now()?;
    let view = state
        .db(move |c| Ok(PriceView::from(registry::put_price(c, &price, now)?)))
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// `DELETE /v1/prices/{id}`.
pub async fn delete_price(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    state
        .db(move |c| Ok(registry::delete_price(c, id)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

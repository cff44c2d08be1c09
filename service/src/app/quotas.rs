//! Quotas: set, list, delete; measure usage over a quota's calendar period;
//! fire threshold and forecast alerts once each; answer "is this key or
//! owner over a quota?".
//!
//! Usage is what the current runs' verdicts say: rows are attributed to an
//! owner and priced by reconciliation, so a quota counts what reports show.
//! Rows ingested since the last run count once a run covers them (the
//! `reconcile` schedule keeps the trailing window reconciled).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use tally_reconcile::SideKind;
use tally_reconcile::quota::{self, Metric, Period};
use tally_reconcile::report::Class;
use tally_schema::convert::{nanos_to_usd, usd_to_nanos};
use tally_schema::enums::{AlertKind, EnumCol, StoredName};
use tally_schema::rows::{NewQuota, QuotaRow};

use super::alerts::{AlertError, Body, Rule, fire, raise, record};
use super::sums::{Group, each_group};
use crate::db::{AnyConnection, repo};
use crate::settings::Settings;

pub use tally_schema::enums::Basis;

/// Whose usage a quota limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
pub struct Scope {
    /// Team (owner labels: every one given must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// One key, by its canonical name (instead of owner labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Scope {
    /// How messages and lists name it: `support-bot/prod`, `key key_x`.
    pub fn label(&self) -> String {
        if let Some(k) = &self.key {
            return format!("key {k}");
        }
        [&self.team, &self.service, &self.env]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    }

    fn check(&self) -> Result<(), AlertError> {
        let labels = [&self.team, &self.service, &self.env];
        let any_label = labels.iter().any(|l| l.is_some());
        if labels
            .iter()
            .chain([&&self.key])
            .any(|v| v.as_deref() == Some(""))
        {
            return Err(AlertError::Invalid(
                "scope: a label or key may not be empty".to_owned(),
            ));
        }
        match (any_label, self.key.is_some()) {
            (false, false) => Err(AlertError::Invalid(
                "scope: give a team, service or env (owner), or a key".to_owned(),
            )),
            (true, true) => Err(AlertError::Invalid(
                "scope: either owner labels or a key, not both".to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a row with this key and owner falls in the scope.
    pub fn covers(&self, key: &str, team: &str, service: &str, env: &str) -> bool {
        if let Some(k) = &self.key {
            return k == key;
        }
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.team, team) && is(&self.service, service) && is(&self.env, env)
    }
}

/// A quota as users set and read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// Unique name (the API takes it from the path).
    #[serde(default)]
    pub name: String,
    /// Whose usage.
    pub scope: Scope,
    /// What it counts.
    pub metric: Metric,
    /// The limit: USD for cost, else tokens or requests (read from decimal
    /// text or a number, written as text).
    #[serde(serialize_with = "rust_decimal::serde::str::serialize")]
    pub limit: Decimal,
    /// Day, week (Monday) or month.
    pub period: Period,
    /// IANA zone the period starts at local midnight in.
    #[serde(default = "utc_zone")]
    pub time_zone: String,
    /// Percent of the limit that alert.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<u32>,
    /// Who hears; empty for the owner's (or key's) contacts.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Billed (gateway) or client-logged usage.
    #[serde(default = "billed")]
    pub basis: Basis,
}

fn utc_zone() -> String {
    "UTC".to_owned()
}

fn default_thresholds() -> Vec<u32> {
    quota::DEFAULT_THRESHOLDS.to_vec()
}

fn billed() -> Basis {
    Basis::Billed
}

/// Parses a stored enum's name (`cost`, `month`, `billed`), naming the
/// field and the names it takes when it is not one.
pub fn parse_name<T: StoredName>(field: &str, s: &str) -> Result<T, AlertError> {
    T::from_stored_name(s.trim()).ok_or_else(|| {
        let known: Vec<&str> = T::all().iter().map(|v| v.stored_name()).collect();
        AlertError::Invalid(format!("{field}: `{s}` is not one of {}", known.join(", ")))
    })
}

/// The limit in stored units (nano-dollars for cost).
fn limit_units(metric: Metric, limit: Decimal) -> Result<i64, AlertError> {
    if limit <= Decimal::ZERO {
        return Err(AlertError::Invalid("limit: must be more than 0".to_owned()));
    }
    match metric {
        Metric::Cost => usd_to_nanos(limit)
            .map_err(|e| AlertError::Invalid(format!("limit: {e}")))
            .and_then(|(n, exact)| match exact {
                None => Ok(n),
                Some(_) => Err(AlertError::Invalid(
                    "limit: at most 9 decimal places of a dollar".to_owned(),
                )),
            }),
        Metric::Tokens | Metric::Requests => {
            if limit.fract() != Decimal::ZERO {
                return Err(AlertError::Invalid(
                    "limit: a whole number of tokens or requests".to_owned(),
                ));
            }
            i64::try_from(limit).map_err(|_| AlertError::Invalid("limit: too large".to_owned()))
        }
    }
}

fn limit_of(metric: Metric, units: i64) -> Decimal {
    match metric {
        Metric::Cost => nanos_to_usd(units, None),
        Metric::Tokens | Metric::Requests => Decimal::from(units),
    }
}

impl QuotaSpec {
    /// Checks everything the types do not.
    pub fn check(&self) -> Result<(), AlertError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(AlertError::Invalid("name: 1 to 200 characters".to_owned()));
        }
        self.scope.check()?;
        limit_units(self.metric, self.limit)?;
        quota::zone(&self.time_zone).map_err(|e| AlertError::Invalid(format!("time_zone: {e}")))?;
        if self.thresholds.is_empty() || self.thresholds.iter().any(|t| *t == 0 || *t > 1000) {
            return Err(AlertError::Invalid(
                "thresholds: one or more percentages from 1 to 1000".to_owned(),
            ));
        }
        for r in &self.recipients {
            super::alerts::check_contact(r)
                .map_err(|e| AlertError::Invalid(format!("recipients: {e}")))?;
        }
        Ok(())
    }

    fn from_row(r: QuotaRow) -> Result<Self, AlertError> {
        let metric = *r.metric;
        Ok(Self {
            scope: Scope {
                team: r.scope_team,
                service: r.scope_service,
                env: r.scope_env,
                key: r.scope_key,
            },
            limit: limit_of(metric, r.limit_units),
            metric,
            period: *r.period,
            time_zone: r.time_zone,
            thresholds: r
                .thresholds
                .split(',')
                .filter_map(|t| t.trim().parse().ok())
                .collect(),
            recipients: r
                .recipients
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            basis: *r.basis,
            name: r.name,
        })
    }

    /// The quota's time zone.
    pub fn tz(&self) -> Result<Tz, AlertError> {
        quota::zone(&self.time_zone).map_err(|e| AlertError::Invalid(e.to_string()))
    }
}

/// The scope checked against the registry: a team, service or env no
/// stored owner has, or a key no registered key is named, would never match
/// a row, so it is refused with the closest known names. A key given by its
/// alias or a label becomes its id, the name runs record.
fn registered_scope(conn: &mut AnyConnection, scope: &Scope) -> Result<Scope, AlertError> {
    use super::names::unknown;
    let mut out = scope.clone();
    if let Some(want) = &scope.key {
        let keys = repo::keys(conn)?;
        let labels = |k: &tally_schema::rows::KeyRow| -> Vec<String> {
            serde_json::from_str(&k.labels).unwrap_or_default()
        };
        let found = keys.iter().find(|k| {
            &k.key_id == want || k.alias.as_ref() == Some(want) || labels(k).contains(want)
        });
        let Some(k) = found else {
            let names: Vec<String> = keys
                .iter()
                .flat_map(|k| std::iter::once(k.key_id.clone()).chain(k.alias.clone()))
                .collect();
            return Err(AlertError::Invalid(format!(
                "scope: {}",
                unknown("key", want, names.iter().map(String::as_str))
            )));
        };
        out.key = Some(k.key_id.clone());
        return Ok(out);
    }
    let owners = repo::owners(conn)?;
    type Label = fn(&tally_schema::rows::OwnerRow) -> &str;
    let parts: [(&str, &Option<String>, Label); 3] = [
        ("team", &scope.team, |o| &o.team),
        ("service", &scope.service, |o| &o.service),
        ("env", &scope.env, |o| &o.env),
    ];
    for (what, want, label) in parts {
        if let Some(want) = want
            && !owners.iter().any(|o| label(o) == want)
        {
            return Err(AlertError::Invalid(format!(
                "scope: {}",
                unknown(what, want, owners.iter().map(label))
            )));
        }
    }
    // Each label is known; some owner must have them all.
    let fits = |o: &&tally_schema::rows::OwnerRow| {
        parts
            .iter()
            .all(|(_, want, label)| want.as_deref().is_none_or(|w| label(o) == w))
    };
    if !owners.iter().any(|o| fits(&o)) {
        return Err(AlertError::Invalid(format!(
            "scope: no owner is {} (each label is known, but not together)",
            scope.label()
        )));
    }
    Ok(out)
}

/// Adds or replaces a quota (by name). Its scope must name owners or a key
/// the registry knows: a typo is refused with the closest known names.
pub fn set(conn: &mut AnyConnection, q: &QuotaSpec, now: NaiveDateTime) -> Result<(), AlertError> {
    q.check()?;
    let scope = registered_scope(conn, &q.scope)?;
    let q = &QuotaSpec { scope, ..q.clone() };
    let mut thresholds = q.thresholds.clone();
    thresholds.sort_unstable();
    thresholds.dedup();
    let thresholds = thresholds
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let recipients = q.recipients.join(",");
    repo::upsert_quota(
        conn,
        &NewQuota {
            name: q.name.trim(),
            scope_team: q.scope.team.as_deref(),
            scope_service: q.scope.service.as_deref(),
            scope_env: q.scope.env.as_deref(),
            scope_key: q.scope.key.as_deref(),
            metric: EnumCol(q.metric),
            limit_units: limit_units(q.metric, q.limit)?,
            period: EnumCol(q.period),
            time_zone: &q.time_zone,
            thresholds: &thresholds,
            recipients: &recipients,
            basis: EnumCol(q.basis),
            created_at: now,
            updated_at: now,
        },
    )?;
    Ok(())
}

/// Every quota.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<QuotaSpec>, AlertError> {
    repo::quotas(conn)?
        .into_iter()
        .map(QuotaSpec::from_row)
        .collect()
}

/// Deletes a quota.
pub fn delete(conn: &mut AnyConnection, name: &str) -> Result<(), AlertError> {
    if repo::delete_quota(conn, name)? {
        Ok(())
    } else {
        Err(AlertError::NotFound(name.to_owned()))
    }
}

/// Usage of one quota in its current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaStatus {
    /// The quota.
    pub quota: QuotaSpec,
    /// Its scope in words.
    pub scope_label: String,
    /// The period: start (UTC, inclusive).
    pub period_start: DateTime<Utc>,
    /// The period: end (UTC, exclusive).
    pub period_end: DateTime<Utc>,
    /// The period in words (`November 2026`, `2026-11-22`, `week of 2026-11-16`).
    pub period_label: String,
    /// Used so far, in the metric's unit (USD for cost).
    #[serde(with = "rust_decimal::serde::str")]
    pub used: Decimal,
    /// Percent of the limit used, two decimals.
    #[serde(with = "rust_decimal::serde::str")]
    pub percent: Decimal,
    /// Rows counted.
    pub rows: u64,
    /// Rows counted without a price (cost quotas leave their cost out).
    pub unpriced_rows: u64,
    /// At or over the limit.
    pub over: bool,
    /// Thresholds reached.
    pub reached: Vec<u32>,
    /// When the period's burn rate reaches the limit, if before the end.
    pub forecast_at: Option<DateTime<Utc>>,
    /// The largest contributors: keys, with their use.
    pub top_keys: Vec<(String, String)>,
    /// The largest contributors: models.
    pub top_models: Vec<(String, String)>,
}

/// The period in words, in the quota's zone.
fn period_label(period: Period, tz: Tz, start: DateTime<Utc>) -> String {
    let local = start.with_timezone(&tz).date_naive();
    match period {
        Period::Day => local.format("%Y-%m-%d").to_string(),
        Period::Week => format!("week of {}", local.format("%Y-%m-%d")),
        Period::Month => local.format("%B %Y").to_string(),
    }
}

/// The period's identity for the alert key: the local start date.
fn period_key(tz: Tz, start: DateTime<Utc>) -> String {
    start
        .with_timezone(&tz)
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

#[derive(Default)]
struct Tally {
    used: Decimal,
    rows: u64,
    unpriced: u64,
    keys: HashMap<String, Decimal>,
    models: HashMap<String, Decimal>,
}

impl Tally {
    /// A group of `g.rows` rows: `amount` of the metric, of which
    /// `unpriced` rows had no price when the metric is cost (they count, but
    /// cost nothing and make no key or model a contributor).
    fn add(&mut self, g: &Group<'_>, (amount, unpriced): (Decimal, u64)) {
        self.rows += g.rows;
        self.used += amount;
        self.unpriced += unpriced;
        if g.rows > unpriced {
            *self.keys.entry(g.key_name.to_owned()).or_default() += amount;
            *self.models.entry(g.model_family.to_owned()).or_default() += amount;
        }
    }
}

/// What a group adds to a quota of `metric`, and its rows that lack a
/// price for it (only cost needs one).
fn amount(metric: Metric, g: &Group<'_>) -> (Decimal, u64) {
    match metric {
        Metric::Cost => (nanos_to_usd(g.computed_nanos, None), g.unpriced),
        Metric::Tokens => (Decimal::from(g.tokens), 0),
        Metric::Requests => (Decimal::from(g.rows), 0),
    }
}

fn side_of(b: Basis) -> SideKind {
    match b {
        Basis::Billed => SideKind::Gateway,
        Basis::Client => SideKind::Client,
    }
}

fn top(m: HashMap<String, Decimal>, metric: Metric) -> Vec<(String, String)> {
    let mut v: Vec<(String, Decimal)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter()
        .take(5)
        .map(|(k, d)| (k, show(metric, d)))
        .collect()
}

/// A figure of `metric` for people.
pub fn show(metric: Metric, d: Decimal) -> String {
    match metric {
        Metric::Cost => crate::export::money(d),
        Metric::Tokens => format!("{} tokens", d.trunc()),
        Metric::Requests => format!("{} requests", d.trunc()),
    }
}

/// Measures every quota in `specs` over its current period at `now`:
/// one pass per (side, period) the quotas share, reading whole UTC days
/// from the runs' daily sums where they are exact.
pub fn measure(
    conn: &mut AnyConnection,
    specs: Vec<QuotaSpec>,
    now: DateTime<Utc>,
    min_elapsed: chrono::Duration,
) -> Result<Vec<QuotaStatus>, AlertError> {
    measure_with(conn, specs, now, min_elapsed, true)
}

/// [`measure`], with the daily sums (`use_rollups`) or row by row only: the
/// two must agree to the nano-dollar, which a test checks.
pub fn measure_with(
    conn: &mut AnyConnection,
    specs: Vec<QuotaSpec>,
    now: DateTime<Utc>,
    min_elapsed: chrono::Duration,
    use_rollups: bool,
) -> Result<Vec<QuotaStatus>, AlertError> {
    let mut bounds = Vec::with_capacity(specs.len());
    for q in &specs {
        let b = quota::bounds(q.period, q.tz()?, now)
            .map_err(|e| AlertError::Invalid(e.to_string()))?;
        bounds.push(b);
    }
    let mut groups: BTreeMap<(&'static str, i64, i64), Vec<usize>> = BTreeMap::new();
    for (i, (q, (s, e))) in specs.iter().zip(&bounds).enumerate() {
        groups
            .entry((
                q.basis.stored_name(),
                s.timestamp_millis(),
                e.timestamp_millis(),
            ))
            .or_default()
            .push(i);
    }
    let mut tallies: Vec<Tally> = specs.iter().map(|_| Tally::default()).collect();
    for ((basis, from, to), members) in &groups {
        let side = side_of(Basis::from_stored_name(basis).unwrap_or(Basis::Billed));
        each_group(conn, side, (*from, *to), use_rollups, |g| {
            // A client row logged twice is one request.
            if side == SideKind::Client && g.class == Class::Duplicate {
                return;
            }
            for &i in members {
                let (Some(q), Some(t)) = (specs.get(i), tallies.get_mut(i)) else {
                    continue;
                };
                if q.scope.covers(g.key_name, g.team, g.service, g.env) {
                    t.add(&g, amount(q.metric, &g));
                }
            }
        })?;
    }
    let mut out = Vec::with_capacity(specs.len());
    for ((q, (start, end)), t) in specs.into_iter().zip(bounds).zip(tallies) {
        let tz = q.tz()?;
        let percent = if q.limit > Decimal::ZERO {
            (t.used * Decimal::from(100) / q.limit).round_dp(2)
        } else {
            Decimal::ZERO
        };
        out.push(QuotaStatus {
            scope_label: q.scope.label(),
            period_start: start,
            period_end: end,
            period_label: period_label(q.period, tz, start),
            used: t.used,
            percent,
            rows: t.rows,
            unpriced_rows: t.unpriced,
            over: t.used >= q.limit,
            reached: quota::reached(&q.thresholds, q.limit, t.used),
            forecast_at: quota::forecast(q.limit, t.used, (start, end), now, min_elapsed),
            top_keys: top(t.keys, q.metric),
            top_models: top(t.models, q.metric),
            quota: q,
        });
    }
    Ok(out)
}

/// The quotas that apply to a key or an owner, measured now. A key also
/// falls under its registry owner's quotas; an owner is `team/service/env`
/// (a shorter prefix, `team` or `team/service`, matches quotas scoped to it).
pub fn status(
    conn: &mut AnyConnection,
    key: Option<&str>,
    owner: Option<&str>,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Result<Vec<QuotaStatus>, AlertError> {
    let specs = list(conn)?;
    let wanted: Vec<QuotaSpec> = match (key, owner) {
        (Some(k), None) => {
            let reg = repo::keys(conn)?;
            let owners = repo::owners(conn)?;
            let of_key = reg
                .iter()
                .find(|r| r.key_id == k || r.alias.as_deref() == Some(k));
            let owner = of_key
                .and_then(|r| r.owner_id)
                .and_then(|id| owners.iter().find(|o| o.id == id));
            let canonical = of_key.map_or(k, |r| r.key_id.as_str());
            specs
                .into_iter()
                .filter(|q| match (&q.scope.key, owner) {
                    (Some(qk), _) => qk == canonical,
                    (None, Some(o)) => q.scope.covers("", &o.team, &o.service, &o.env),
                    (None, None) => false,
                })
                .collect()
        }
        (None, Some(o)) => {
            let mut parts = o.split('/').map(str::trim);
            let want = Scope {
                team: parts.next().filter(|s| !s.is_empty()).map(str::to_owned),
                service: parts
                    .next()
                    .filter(|s| !s.is_empty() && *s != "-")
                    .map(str::to_owned),
                env: parts
                    .next()
                    .filter(|s| !s.is_empty() && *s != "-")
                    .map(str::to_owned),
                key: None,
            };
            specs
                .into_iter()
                .filter(|q| {
                    q.scope.key.is_none()
                        && [
                            (&q.scope.team, &want.team),
                            (&q.scope.service, &want.service),
                            (&q.scope.env, &want.env),
                        ]
                        .iter()
                        .all(|(have, want)| have.is_none() || have == want)
                })
                .collect()
        }
        _ => {
            return Err(AlertError::Invalid(
                "give exactly one of key= or owner=".to_owned(),
            ));
        }
    };
    measure(conn, wanted, now, settings.forecast_min_elapsed())
}

/// Every quota, measured in its current period at `now`.
pub fn current(
    conn: &mut AnyConnection,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<QuotaStatus>, AlertError> {
    let specs = list(conn)?;
    measure(conn, specs, now, settings.forecast_min_elapsed())
}

/// What an evaluation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluated {
    /// Quotas measured.
    pub quotas: usize,
    /// Alerts that fired now (each once ever).
    pub fired: usize,
    /// Alerts resolved (their period ended, or their quota is gone).
    pub resolved: usize,
    /// Messages queued.
    pub queued: usize,
}

/// Recipients of a quota's alerts: its own list, else the contacts of the
/// owners (or key) in its scope, else the platform contact.
fn recipients_of(
    q: &QuotaSpec,
    contacts: &super::alerts::Contacts,
    settings: &Settings,
) -> Vec<String> {
    if !q.recipients.is_empty() {
        return q.recipients.clone();
    }
    let found = match &q.scope.key {
        Some(k) => contacts.of_key(k),
        None => contacts.of_owners(|o| q.scope.covers("", &o.team, &o.service, &o.env)),
    };
    super::alerts::addresses(found, settings)
}

/// Measures every quota at `now`, fires each threshold (and forecast) once
/// per period, and resolves the alerts of periods that have ended. Safe to
/// run on several replicas at once: the store's unique key decides.
pub fn evaluate(
    conn: &mut AnyConnection,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Evaluated, AlertError> {
    let statuses = current(conn, settings, now)?;
    let contacts = super::alerts::Contacts::load(conn)?;
    let fired_at = now.naive_utc();
    let mut done = Evaluated {
        quotas: statuses.len(),
        ..Evaluated::default()
    };
    // Per quota: its current period, the thresholds reached, and whether
    // a forecast still holds.
    let mut current: HashMap<String, (String, Vec<u32>, bool)> = HashMap::new();
    let link = format!("{}/quotas", settings.email.base_url.trim_end_matches('/'));
    for s in &statuses {
        let q = &s.quota;
        let tz = q.tz()?;
        let period = period_key(tz, s.period_start);
        current.insert(
            q.name.clone(),
            (period.clone(), s.reached.clone(), s.forecast_at.is_some()),
        );
        let to = recipients_of(q, &contacts, settings);
        let (what, lines, rows) = message_parts(s, tz);
        let body = Body {
            to: &to,
            lines: &lines,
            rows_heading: "Largest use",
            rows: &rows,
            more: &[],
            steps: &[],
            link: &link,
        };
        let rule_name = format!("quota:{}", q.name);
        let detail = serde_json::json!({
            "quota": q.name, "used": s.used.to_string(), "limit": q.limit.to_string(),
            "percent": s.percent.to_string(), "metric": q.metric.stored_name(),
        });
        let base = Rule {
            rule: &rule_name,
            scope: &s.scope_label,
            period: &period,
            threshold: 0,
            kind: AlertKind::QuotaThreshold,
            title: "",
            detail: &detail,
            at: fired_at,
        };
        let (fired, queued) = raise_thresholds(conn, s, &what, &base, &body)?;
        done.fired += fired;
        done.queued += queued;
        if let Some(queued) = raise_forecast(conn, s, tz, &what, &base, &body)? {
            done.fired += 1;
            done.queued += queued;
        }
    }
    done.resolved += resolve_cleared(conn, &current, fired_at)?;
    Ok(done)
}

/// What a quota's messages say: the quota in words (`November cost`), the
/// figures, and its largest keys and models.
#[expect(clippy::type_complexity, reason = "three parts of one message")]
fn message_parts(
    s: &QuotaStatus,
    tz: chrono_tz::Tz,
) -> (String, Vec<(String, String)>, Vec<(String, String)>) {
    let q = &s.quota;
    let month = s.period_start.with_timezone(&tz).format("%B").to_string();
    let what = match q.period {
        Period::Month => format!("{month} {}", q.metric.stored_name()),
        Period::Week => format!("weekly {}", q.metric.stored_name()),
        Period::Day => format!("daily {}", q.metric.stored_name()),
    };
    let limit = show(q.metric, q.limit);
    let used = show(q.metric, s.used);
    let mut lines = vec![
        ("Quota".to_owned(), q.name.clone()),
        ("Scope".to_owned(), s.scope_label.clone()),
        (
            "Period".to_owned(),
            format!("{} ({}; {})", s.period_label, q.time_zone, fmt_range(s, tz)),
        ),
        (
            "Used".to_owned(),
            format!("{used} of {limit} ({} %)", s.percent),
        ),
        (
            "Basis".to_owned(),
            format!("{} usage, {} rows", q.basis.stored_name(), s.rows),
        ),
    ];
    if s.unpriced_rows > 0 {
        lines.push((
            "Not priced".to_owned(),
            format!("{} rows (left out of the cost)", s.unpriced_rows),
        ));
    }
    let mut rows = s
        .top_keys
        .iter()
        .map(|(k, v)| (format!("key {k}"), v.clone()))
        .collect::<Vec<_>>();
    rows.extend(
        s.top_models
            .iter()
            .map(|(m, v)| (format!("model {m}"), v.clone())),
    );
    (what, lines, rows)
}

/// Every threshold reached is recorded, and the message of the highest
/// queued, in one transaction: never an alert without its message. The
/// message goes with the highest threshold reached, from whichever
/// evaluator recorded it: with two racing, one. A jump from 0 to 120 % is
/// one message, listing the others. Alerts fired and messages queued.
fn raise_thresholds(
    conn: &mut AnyConnection,
    s: &QuotaStatus,
    what: &str,
    base: &Rule<'_>,
    body: &Body<'_>,
) -> Result<(usize, usize), AlertError> {
    if s.reached.is_empty() {
        return Ok((0, 0));
    }
    repo::in_transaction(conn, |c| -> Result<_, AlertError> {
        let mut new: Vec<(u32, i64, String)> = Vec::new();
        for &t in &s.reached {
            let title = format!("{} at {t} % of its {what} quota", s.scope_label);
            let rule = Rule {
                threshold: i64::from(t),
                title: &title,
                ..*base
            };
            if let Some(id) = record(c, &rule)? {
                new.push((t, id, title));
            }
        }
        let top = s.reached.iter().max().copied();
        let Some((t, id, title)) = new.iter().find(|(t, _, _)| Some(*t) == top) else {
            return Ok((new.len(), 0));
        };
        let mut lines = body.lines.to_vec();
        let earlier: Vec<String> = new
            .iter()
            .filter(|(x, _, _)| x < t)
            .map(|(x, _, _)| format!("{x} %"))
            .collect();
        if !earlier.is_empty() {
            lines.push(("Also crossed".to_owned(), earlier.join(", ")));
        }
        let rule = Rule {
            threshold: i64::from(*t),
            title,
            ..*base
        };
        let body = Body {
            lines: &lines,
            ..*body
        };
        Ok((new.len(), fire(c, *id, &rule, &body)?))
    })
}

/// The forecast alert, while the limit is not yet reached: `Some` with
/// the messages queued when it fired now.
fn raise_forecast(
    conn: &mut AnyConnection,
    s: &QuotaStatus,
    tz: chrono_tz::Tz,
    what: &str,
    base: &Rule<'_>,
    body: &Body<'_>,
) -> Result<Option<usize>, AlertError> {
    let limit_reached = s.reached.iter().any(|t| *t >= 100);
    let (Some(at), false) = (s.forecast_at, limit_reached) else {
        return Ok(None);
    };
    let q = &s.quota;
    let when = at
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string();
    let title = format!(
        "{} is on course to exceed its {what} quota on {when}",
        s.scope_label
    );
    let detail = serde_json::json!({"quota": q.name, "forecast_at": at.to_rfc3339(), "used": s.used.to_string(), "limit": q.limit.to_string()});
    let mut lines = body.lines.to_vec();
    lines.push(("Projected to reach the limit".to_owned(), when));
    let rule = Rule {
        rule: &format!("forecast:{}", q.name),
        scope: &s.scope_label,
        period: base.period,
        threshold: 100,
        kind: AlertKind::QuotaForecast,
        title: &title,
        detail: &detail,
        at: base.at,
    };
    let body = Body {
        lines: &lines,
        ..*body
    };
    raise(conn, &rule, &body)
}

/// A quota alert resolves when its period has ended, its quota is gone,
/// or its cause cleared (a raised limit; a forecast that no longer holds).
/// It does not fire again in the same period. How many resolved.
fn resolve_cleared(
    conn: &mut AnyConnection,
    current: &HashMap<String, (String, Vec<u32>, bool)>,
    at: chrono::NaiveDateTime,
) -> Result<usize, AlertError> {
    let mut resolved = 0;
    for prefix in ["quota:", "forecast:"] {
        for a in repo::firing_alerts(conn, prefix)? {
            let name = a.rule.trim_start_matches(prefix);
            let holds = current
                .get(name)
                .is_some_and(|(period, reached, forecast)| {
                    *period == a.period
                        && match prefix {
                            "quota:" => reached.iter().any(|t| i64::from(*t) == a.threshold),
                            _ => *forecast,
                        }
                });
            if !holds && repo::resolve_alert(conn, a.id, at)? {
                resolved += 1;
            }
        }
    }
    Ok(resolved)
}

fn fmt_range(s: &QuotaStatus, tz: Tz) -> String {
    let f = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    format!("{} to {}", f(s.period_start), f(s.period_end))
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::app::testing::{DAY, fixture_store};

    #[test]
    fn a_quota_fires_each_threshold_once_with_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = fixture_store(dir.path());
        let clock = || Ok(DAY.1 + 3_600_000);
        crate::app::run::run(&mut c, &mut [], DAY, 10_000, Default::default(), clock).unwrap();
        let now = DateTime::from_timestamp_millis(DAY.0 + 20 * 3_600_000).unwrap();
        let spec = QuotaSpec {
            name: "support-day".to_owned(),
            scope: Scope {
                service: Some("support-bot".to_owned()),
                ..Scope::default()
            },
            metric: Metric::Cost,
            limit: Decimal::new(5, 2),
            period: Period::Day,
            time_zone: "UTC".to_owned(),
            thresholds: vec![50, 80, 100],
            recipients: vec!["oncall@example.com".to_owned()],
            basis: Basis::Billed,
        };
        set(&mut c, &spec, now.naive_utc()).unwrap();
        let settings = Settings::default();
        let e = evaluate(&mut c, &settings, now).unwrap();
        // $0.12 of $0.05: 50, 80 and 100 % recorded, one message.
        assert_eq!((e.quotas, e.fired, e.queued), (1, 3, 1), "{e:?}");
        let again = evaluate(&mut c, &settings, now).unwrap();
        assert_eq!((again.fired, again.queued), (0, 0), "{again:?}");
        // Raising the limit clears the cause: the alerts resolve.
        let raised = QuotaSpec {
            limit: Decimal::from(1000),
            ..spec
        };
        set(&mut c, &raised, now.naive_utc()).unwrap();
        let cleared = evaluate(&mut c, &settings, now).unwrap();
        assert_eq!((cleared.fired, cleared.resolved), (0, 3), "{cleared:?}");
    }
}

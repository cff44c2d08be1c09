//! Alerts: recorded once per (rule, scope, period, threshold) by the
//! store's unique key, their message queued in the same transaction, so an
//! alert is never emailed twice nor lost. Also the alerts a run raises
//! (unattributed traffic, unregistered keys, data quality), each owner's
//! daily digest, and the test message.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tally_reconcile::SideKind;
use tally_reconcile::report::Class;
use tally_reconcile::time::DAY_MS;
use tally_schema::convert::nanos_to_usd;
use tally_schema::enums::{AlertKind, StoredName};
use tally_schema::rows::{AlertRow, KeyRow, NewAlert, NewOutbox, OwnerRow};

use super::sums::each_group;
use crate::db::{AnyConnection, DbError, repo};
use crate::mail::{self, MailError, Mailer};
use crate::settings::Settings;

/// What the alert and quota use cases fail with (a quota is an alert
/// rule over usage).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A value is not acceptable (names the field).
    #[error("{0}")]
    Invalid(String),
    /// No such quota.
    #[error("no quota named `{0}`")]
    NotFound(String),
    /// The store.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Rendering a message.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    /// Reading a closed month's figures.
    #[error(transparent)]
    Period(Box<crate::app::error::AppError>),
}

impl From<diesel::result::Error> for AlertError {
    fn from(e: diesel::result::Error) -> Self {
        AlertError::Db(e.into())
    }
}

/// An alert to record.
#[derive(Clone, Copy)]
pub struct Rule<'a> {
    /// Rule name (`quota:NAME`, `unattributed`, ...).
    pub rule: &'a str,
    /// For whom.
    pub scope: &'a str,
    /// Which period.
    pub period: &'a str,
    /// Threshold, percent (0 for none).
    pub threshold: i64,
    pub kind: AlertKind,
    /// One line.
    pub title: &'a str,
    /// Figures.
    pub detail: &'a serde_json::Value,
    /// Now.
    pub at: NaiveDateTime,
}

/// Records an alert unless it fired already; its id when new.
pub fn record(conn: &mut AnyConnection, r: &Rule<'_>) -> Result<Option<i64>, AlertError> {
    let detail = r.detail.to_string();
    Ok(repo::insert_alert_once(
        conn,
        &NewAlert {
            rule: r.rule,
            scope: r.scope,
            period: r.period,
            threshold: r.threshold,
            kind: r.kind.into(),
            state: "firing",
            title: r.title,
            detail: &detail,
            fired_at: r.at,
        },
    )?)
}

/// What a message about an alert says, beyond its rule's title.
#[derive(Clone, Copy)]
pub struct Body<'a> {
    /// Recipients.
    pub to: &'a [String],
    /// Figures: label, value.
    pub lines: &'a [(String, String)],
    /// Heading of `rows`.
    pub rows_heading: &'a str,
    /// Largest contributors: label, value.
    pub rows: &'a [(String, String)],
    /// More lists: heading, then label and value lines.
    pub more: &'a [Section],
    /// What to do, in order.
    pub steps: &'a [String],
    /// Link to the page.
    pub link: &'a str,
}

/// A titled list in a message.
pub type Section = (String, Vec<(String, String)>);

/// Renders and queues the message of alert `alert_id` (recorded by
/// `rule`): 1 when it has someone to go to. With nobody (no contact and no
/// `alerts.platform_contact`) the message is still written, held, and 0 is
/// returned: `tally alerts resend` sends it once there is someone to tell,
/// since the alert will not fire again for the same cause.
pub fn fire(
    conn: &mut AnyConnection,
    alert_id: i64,
    rule: &Rule<'_>,
    b: &Body<'_>,
) -> Result<usize, AlertError> {
    let cause = Cause::of(rule.title, b);
    let (text, html) = render_causes(rule.title, rule.kind, &[cause], &[])?;
    queue(
        conn,
        Some(alert_id),
        b.to,
        rule.title,
        &text,
        &html,
        rule.at,
    )?;
    if b.to.is_empty() {
        tracing::warn!(
            alert_id,
            title = rule.title,
            "alert has no recipient: its message is held; set the owner's contact or \
             alerts.platform_contact and run `tally alerts resend`"
        );
        return Ok(0);
    }
    Ok(1)
}

/// One cause in a message: its title and figures.
#[derive(Debug, Clone, Serialize)]
struct Cause<'a> {
    title: &'a str,
    lines: &'a [(String, String)],
    rows_heading: &'a str,
    rows: &'a [(String, String)],
    more: &'a [Section],
    steps: &'a [String],
    link: &'a str,
}

impl<'a> Cause<'a> {
    fn of(title: &'a str, b: &Body<'a>) -> Self {
        Cause {
            title,
            lines: b.lines,
            rows_heading: b.rows_heading,
            rows: b.rows,
            more: b.more,
            steps: b.steps,
            link: b.link,
        }
    }
}

/// A message of one or more causes, costliest first; `also` lists by
/// title the causes past what one message details.
fn render_causes(
    subject: &str,
    kind: AlertKind,
    causes: &[Cause<'_>],
    also: &[&str],
) -> Result<(String, String), AlertError> {
    let ctx = minijinja::context! {
        title => subject, kind => kind, causes => causes, also => also,
    };
    Ok(mail::render("alert", &ctx)?)
}

/// Messages held for want of a recipient: id and subject.
pub fn held(conn: &mut AnyConnection) -> Result<Vec<(i64, String)>, AlertError> {
    Ok(repo::held_messages(conn)?)
}

/// Sends the held messages to `to` (checked as any contact is), else to
/// the platform contact; how many were released.
pub fn resend(
    conn: &mut AnyConnection,
    settings: &Settings,
    to: Option<&str>,
    now: NaiveDateTime,
) -> Result<usize, AlertError> {
    let to = match to {
        Some(t) => t.to_owned(),
        None => platform(settings).join(", "),
    };
    if to.trim().is_empty() {
        return Err(AlertError::Invalid(
            "no one to send held messages to: give --to ADDRESS or set alerts.platform_contact"
                .to_owned(),
        ));
    }
    check_contact(&to).map_err(AlertError::Invalid)?;
    Ok(repo::release_held(conn, &to, now)?)
}

/// An alert a run found, before it is raised.
#[derive(Clone)]
struct Pending {
    rule: String,
    scope: String,
    period: String,
    kind: AlertKind,
    title: String,
    detail: serde_json::Value,
    to: Vec<String>,
    lines: Vec<(String, String)>,
    rows_heading: &'static str,
    rows: Vec<(String, String)>,
    more: Vec<Section>,
    steps: Vec<String>,
    /// Its own page (the run filtered to its key), else the run's.
    link: Option<String>,
    /// What ranks it: cost (nano-USD), then rows.
    weight: (i64, u64),
}

impl Pending {
    fn rule(&self, at: NaiveDateTime) -> Rule<'_> {
        Rule {
            rule: &self.rule,
            scope: &self.scope,
            period: &self.period,
            threshold: 0,
            kind: self.kind,
            title: &self.title,
            detail: &self.detail,
            at,
        }
    }
}

/// Raises a run's alerts: each cause is recorded once (a cause that fired
/// on an earlier run has its figures updated, and sends nothing), and the
/// new ones go out as **one message per recipient**, every cause in it with
/// its figures, costliest first; past `cap` causes a message lists the rest
/// by title. A 1M-row day once queued 193 messages, 40 to one address
/// (issue 19); 3,000 unknown keys once queued 3,000 (issue 16).
fn raise_grouped(
    conn: &mut AnyConnection,
    mut items: Vec<Pending>,
    cap: usize,
    origin: &str,
    link: &str,
    at: NaiveDateTime,
    done: &mut RunAlerts,
) -> Result<(), AlertError> {
    items.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.scope.cmp(&b.scope)));
    repo::in_transaction(conn, |c| -> Result<(), AlertError> {
        let mut new: Vec<(i64, &Pending)> = Vec::new();
        for p in &items {
            match record(c, &p.rule(at))? {
                Some(id) => {
                    done.fired += 1;
                    new.push((id, p));
                }
                None => refresh(c, &p.rule(at))?,
            }
        }
        // Recipients in the order of their costliest cause; "" is nobody
        // (the message is held).
        let mut to: Vec<String> = Vec::new();
        let mut of: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (_, p)) in new.iter().enumerate() {
            let who: Vec<String> = if p.to.is_empty() {
                vec![String::new()]
            } else {
                p.to.clone()
            };
            for a in who {
                let list = of.entry(a.clone()).or_default();
                if list.is_empty() {
                    to.push(a);
                }
                list.push(i);
            }
        }
        for addr in to {
            let idx = of.get(&addr).map_or(&[][..], Vec::as_slice);
            let mine: Vec<&(i64, &Pending)> = idx.iter().filter_map(|&i| new.get(i)).collect();
            let Some(&&(first_id, first)) = mine.first() else {
                continue;
            };
            let subject = if mine.len() == 1 {
                first.title.clone()
            } else {
                format!(
                    "{origin}: {} alerts, costliest: {}",
                    mine.len(),
                    first.title
                )
            };
            let causes: Vec<Cause<'_>> = mine
                .iter()
                .take(cap.max(1))
                .map(|(_, p)| Cause {
                    title: &p.title,
                    lines: &p.lines,
                    rows_heading: p.rows_heading,
                    rows: &p.rows,
                    more: &p.more,
                    steps: &p.steps,
                    link: p.link.as_deref().unwrap_or(link),
                })
                .collect();
            let also: Vec<&str> = mine
                .iter()
                .skip(cap.max(1))
                .map(|(_, p)| p.title.as_str())
                .collect();
            let (text, html) = render_causes(&subject, first.kind, &causes, &also)?;
            let recipients: Vec<String> = if addr.is_empty() {
                Vec::new()
            } else {
                vec![addr]
            };
            queue(c, Some(first_id), &recipients, &subject, &text, &html, at)?;
            if recipients.is_empty() {
                tracing::warn!(
                    origin,
                    alerts = mine.len(),
                    "alerts have no recipient: their message is held; set the owners' contacts \
                     or alerts.platform_contact and run `tally alerts resend`"
                );
            } else {
                done.queued += 1;
            }
        }
        Ok(())
    })
}

/// A cause that fired on an earlier run and is still there: its open
/// alert takes today's figures (no message: it was told once).
fn refresh(conn: &mut AnyConnection, r: &Rule<'_>) -> Result<(), AlertError> {
    Ok(repo::update_open_alert(
        conn,
        r.rule,
        r.scope,
        r.period,
        r.threshold,
        r.title,
        &r.detail.to_string(),
    )?)
}

/// Records the alert and, when it is new, queues its message, in one
/// transaction (an alert is never recorded without its message): `Some`
/// with the messages queued, `None` when it had fired before.
pub fn raise(
    conn: &mut AnyConnection,
    rule: &Rule<'_>,
    b: &Body<'_>,
) -> Result<Option<usize>, AlertError> {
    repo::in_transaction(conn, |c| match record(c, rule)? {
        Some(id) => Ok(Some(fire(c, id, rule, b)?)),
        None => Ok(None),
    })
}

fn queue(
    conn: &mut AnyConnection,
    alert_id: Option<i64>,
    to: &[String],
    subject: &str,
    text: &str,
    html: &str,
    at: NaiveDateTime,
) -> Result<i64, AlertError> {
    let to = to.join(", ");
    Ok(repo::enqueue(
        conn,
        &NewOutbox {
            alert_id,
            recipients: &to,
            subject,
            body_text: text,
            body_html: html,
            created_at: at,
            attempts: 0,
            next_attempt_at: at,
        },
    )?)
}

pub use crate::mail::check_contact;

/// Splits contact fields into addresses (deduplicated, order kept); the
/// platform contact when there are none.
pub fn addresses(contacts: Vec<String>, settings: &Settings) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &contacts {
        for a in crate::mail::addresses_in(c) {
            if !out.iter().any(|o| o == a) {
                out.push(a.to_owned());
            }
        }
    }
    if out.is_empty() {
        out = platform(settings);
    }
    out
}

fn platform(settings: &Settings) -> Vec<String> {
    crate::mail::addresses_in(&settings.alerts.platform_contact)
        .map(str::to_owned)
        .collect()
}

/// Who hears of money at month-end: `alerts.finance_contact`, else the
/// platform contact.
fn finance(settings: &Settings) -> Vec<String> {
    if settings.alerts.finance_contact.trim().is_empty() {
        platform(settings)
    } else {
        crate::mail::addresses_in(&settings.alerts.finance_contact)
            .map(str::to_owned)
            .collect()
    }
}

fn day_label(day_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(day_ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `1 row`, `3 rows`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn usd(nanos: i64) -> String {
    crate::export::money(nanos_to_usd(nanos, None))
}

#[derive(Default)]
struct KeyDay {
    rows: u64,
    nanos: i64,
    /// Whether any of its rows billed anything (tokens or a cost): failed
    /// calls that billed nothing raise no money alert on a registered key.
    billed: bool,
    unpriced: u64,
    registered: bool,
    owner: (String, String, String),
    models: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Quality {
    zero_cost: BTreeMap<i64, u64>,
    unpriced: BTreeMap<(i64, String), u64>,
    duplicates: BTreeMap<(i64, &'static str), u64>,
    stream_no_usage: BTreeMap<i64, u64>,
}

/// What the alerts of a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RunAlerts {
    /// Alerts that fired now.
    pub fired: usize,
    /// Alerts resolved (their cause cleared).
    pub resolved: usize,
    /// Messages queued.
    pub queued: usize,
}

/// The registry's contacts, read once per evaluation rather than per alert.
pub struct Contacts {
    owners: Vec<OwnerRow>,
    keys: Vec<KeyRow>,
}

impl Contacts {
    /// Reads owners and keys.
    pub fn load(conn: &mut AnyConnection) -> Result<Self, AlertError> {
        Ok(Self {
            owners: repo::owners(conn)?,
            keys: repo::keys(conn)?,
        })
    }

    /// A key's contact, else its owner's.
    pub fn of_key(&self, key: &str) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| k.key_id == key)
            .filter_map(|k| {
                k.contact.clone().or_else(|| {
                    k.owner_id
                        .and_then(|id| self.owners.iter().find(|o| o.id == id))
                        .and_then(|o| o.contact.clone())
                })
            })
            .collect()
    }

    /// The contacts of the owners `pick` chooses, then of their keys.
    pub fn of_owners(&self, pick: impl Fn(&OwnerRow) -> bool) -> Vec<String> {
        let mine: Vec<i64> = self
            .owners
            .iter()
            .filter(|o| pick(o))
            .map(|o| o.id)
            .collect();
        let owners = self
            .owners
            .iter()
            .filter(|o| mine.contains(&o.id))
            .filter_map(|o| o.contact.clone());
        let keys = self
            .keys
            .iter()
            .filter(|k| k.owner_id.is_some_and(|id| mine.contains(&id)))
            .filter_map(|k| k.contact.clone());
        owners.chain(keys).collect()
    }

    /// Every owner.
    pub fn owners(&self) -> &[OwnerRow] {
        &self.owners
    }
}

/// After a run over `[from_ms, to_ms)`: unattributed traffic per key and
/// UTC day (to the key's owner and the platform contact; a key in no
/// registry is its own alert, to the platform contact), and data quality
/// per day. An alert of a day in the window whose cause is gone now (late
/// client rows arrived) is resolved.
pub fn raise_for_run(
    conn: &mut AnyConnection,
    settings: &Settings,
    run_id: i64,
    window: (i64, i64),
    now: DateTime<Utc>,
) -> Result<RunAlerts, AlertError> {
    let at = now.naive_utc();
    let mut done = RunAlerts::default();
    let (unattributed, quality) = gather(conn, run_id, window)?;
    let contacts = Contacts::load(conn)?;
    let evidence = evidence(conn, run_id, &unattributed)?;
    let mut pending = key_alerts(settings, &contacts, &unattributed, &evidence, run_id);
    pending.extend(quality_alerts(settings, &quality, run_id));
    pending.extend(correction_alerts(conn, settings, window, run_id)?);
    let link = format!(
        "{}/runs/{run_id}",
        settings.email.base_url.trim_end_matches('/')
    );
    let cap = settings.alerts.max_per_run;
    let origin = format!("Tally run {run_id}");
    raise_grouped(conn, pending.clone(), cap, &origin, &link, at, &mut done)?;
    let live: Vec<(&str, &str, &str)> = pending
        .iter()
        .map(|p| (p.rule.as_str(), p.scope.as_str(), p.period.as_str()))
        .collect();
    done.resolved += resolve_cleared(conn, window, &live, at)?;
    Ok(done)
}

/// Unattributed traffic per key and UTC day (ms).
type KeyDays = BTreeMap<(String, i64), KeyDay>;

fn day_of(ts: i64) -> i64 {
    ts - ts.rem_euclid(DAY_MS)
}

/// What a run found, from its own daily sums (written in its transaction:
/// the unattributed rows per key, the unpriced rows per model, the
/// duplicates per side) and two narrow queries for the rest.
fn gather(
    conn: &mut AnyConnection,
    run_id: i64,
    (from_ms, to_ms): (i64, i64),
) -> Result<(KeyDays, Quality), AlertError> {
    let mut unattributed = KeyDays::new();
    let mut q = Quality::default();
    let day = day_of;
    repo::each_rollup(conn, &[run_id], None, (day(from_ms), to_ms), |r| {
        let d = r.day_ms;
        let rows = u64::try_from(r.row_count).unwrap_or(0);
        let unpriced = u64::try_from(r.unpriced_rows).unwrap_or(0);
        // Failed calls that billed nothing are no unattributed money, but
        // on a key no registry knows they are probing with a leaked key:
        // counted with it.
        let gateway = *r.side == SideKind::Gateway;
        let probing = *r.class == Class::FailedUnbilled && !r.registered;
        if gateway && (*r.class == Class::Unattributed || probing) {
            let e = unattributed.entry((r.key_name.clone(), d)).or_default();
            e.rows += rows;
            e.billed |= r.tokens > 0 || r.reported_nanos > 0 || r.computed_nanos > 0;
            e.nanos = e.nanos.saturating_add(r.computed_nanos);
            // A group all unpriced (the model has no price) shows what the
            // gateway billed for it instead.
            if unpriced > 0 && unpriced == rows {
                e.nanos = e.nanos.saturating_add(r.reported_nanos);
            } else {
                e.unpriced += unpriced;
            }
            e.registered = r.registered;
            e.owner = (r.team.clone(), r.service.clone(), r.env.clone());
            *e.models.entry(r.model_family.clone()).or_default() += rows;
        }
        if gateway && unpriced > 0 {
            *q.unpriced.entry((d, r.model_family.clone())).or_default() += unpriced;
        }
        if *r.class == Class::Duplicate {
            *q.duplicates.entry((d, r.side.stored_name())).or_default() += rows;
        }
    })?;
    for ts in repo::billed_at_zero_cost(conn, (from_ms, to_ms))? {
        *q.zero_cost.entry(day(ts)).or_default() += 1;
    }
    for ts in repo::streamed_without_usage(conn, run_id, (from_ms, to_ms))? {
        *q.stream_no_usage.entry(day(ts)).or_default() += 1;
    }
    Ok((unattributed, q))
}

/// What a person needs to act on one key's unattributed traffic on one
/// day, read from the run's own verdicts of those rows.
#[derive(Debug, Default)]
struct Evidence {
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    /// What the gateway billed, nano-USD.
    reported_nanos: i64,
    /// Tally's price of the priced rows, nano-USD.
    computed_nanos: i64,
    unpriced: u64,
    routes: BTreeMap<String, u64>,
    /// The gateway's own names for the key (LiteLLM's key alias), by rows.
    aliases: BTreeMap<String, u64>,
    /// The first request ids, in time order.
    ids: Vec<String>,
}

/// Request ids an alert lists.
const ALERT_IDS: usize = 10;

/// Each alerting key-day's evidence: one pass over the run's unattributed
/// and failed-unbilled gateway rows (through the class index).
fn evidence(
    conn: &mut AnyConnection,
    run_id: i64,
    keys: &KeyDays,
) -> Result<BTreeMap<(String, i64), Evidence>, AlertError> {
    let mut out: BTreeMap<(String, i64), Evidence> = BTreeMap::new();
    let classes = [Class::Unattributed, Class::FailedUnbilled];
    repo::each_verdict_of_run(conn, run_id, &classes, |j| {
        if *j.side != SideKind::Gateway {
            return;
        }
        let k = (j.verdict.key_name, day_of(j.ts_ms));
        if !keys.contains_key(&k) {
            return;
        }
        let e = out.entry(k).or_default();
        e.first_ms = Some(e.first_ms.map_or(j.ts_ms, |t| t.min(j.ts_ms)));
        e.last_ms = Some(e.last_ms.map_or(j.ts_ms, |t| t.max(j.ts_ms)));
        e.reported_nanos = e
            .reported_nanos
            .saturating_add(j.verdict.reported_cost_nanos.unwrap_or(0));
        match j.verdict.computed_cost_nanos {
            Some(c) => e.computed_nanos = e.computed_nanos.saturating_add(c),
            None => e.unpriced += 1,
        }
        *e.routes.entry(j.route).or_default() += 1;
        if !j.key_alias.is_empty() {
            *e.aliases.entry(j.key_alias).or_default() += 1;
        }
        if e.ids.len() < ALERT_IDS && !j.request_id.is_empty() {
            e.ids.push(j.request_id);
        }
    })?;
    Ok(out)
}

/// The largest entries of a count, as message lines, at most `n`.
fn top(counts: &BTreeMap<String, u64>, n: usize, unit: &str) -> Vec<(String, String)> {
    let mut v: Vec<(&String, &u64)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter()
        .take(n)
        .map(|(k, c)| (k.clone(), count(*c, unit)))
        .collect()
}

/// An alert per key and day with unattributed traffic over the thresholds:
/// to the key's contacts on a registered key, to the platform contact as
/// a possibly leaked key otherwise.
fn key_alerts(
    settings: &Settings,
    contacts: &Contacts,
    unattributed: &KeyDays,
    evidence: &BTreeMap<(String, i64), Evidence>,
    run_id: i64,
) -> Vec<Pending> {
    let base = settings.email.base_url.trim_end_matches('/');
    let none = Evidence::default();
    let min_rows = settings.alerts.unattributed_min_rows.max(1);
    let min_cost = settings.alerts.unattributed_min_cost;
    let mut pending: Vec<Pending> = Vec::new();
    for ((key, d), e) in unattributed {
        let cost = nanos_to_usd(e.nanos, None);
        let over = e.rows >= min_rows || (min_cost > Decimal::ZERO && cost >= min_cost);
        // Calls that billed nothing (failures refused before any token) on
        // a known key are no unattributed money. On a key no registry knows
        // they still alert, by count: probing with a leaked key.
        if !over || (e.registered && !e.billed) {
            continue;
        }
        let period = day_label(*d);
        let ev = evidence.get(&(key.clone(), *d)).unwrap_or(&none);
        let shown = tally_reconcile::keys::abbreviated(key);
        let (rule, title, to) = if e.registered {
            let owner = [&e.owner.0, &e.owner.1, &e.owner.2]
                .into_iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("/");
            let mut to = contacts.of_key(key);
            to.extend(platform(settings));
            (
                AlertKind::Unattributed,
                format!(
                    "Unattributed traffic on {shown} ({}) on {period}: {} no application logged",
                    if owner.is_empty() { "no owner" } else { &owner },
                    count(e.rows, "request")
                ),
                addresses(to, settings),
            )
        } else {
            (
                AlertKind::UnregisteredKey,
                format!(
                    "Possibly leaked key {shown}: {} on {period} on a key in no registry",
                    count(e.rows, "request")
                ),
                platform(settings),
            )
        };
        let detail = serde_json::json!({
            "key": key, "rows": e.rows, "cost": cost.to_string(),
            "reported": nanos_to_usd(ev.reported_nanos, None).to_string(),
            "computed": nanos_to_usd(ev.computed_nanos, None).to_string(),
            "unpriced_rows": e.unpriced, "run": run_id,
            "first_seen": ev.first_ms.map(tally_reconcile::time::format_ms),
            "last_seen": ev.last_ms.map(tally_reconcile::time::format_ms),
            "request_ids": ev.ids,
            "gateway_names": ev.aliases.keys().collect::<Vec<_>>(),
        });
        let seen =
            |t: Option<i64>| t.map_or_else(|| "-".to_owned(), tally_reconcile::time::format_ms);
        let mut lines = vec![
            ("Key (full fingerprint)".to_owned(), key.clone()),
            (
                "Gateway's name for the key".to_owned(),
                if ev.aliases.is_empty() {
                    "none in the gateway's rows".to_owned()
                } else {
                    top(&ev.aliases, 3, "request")
                        .into_iter()
                        .map(|(name, n)| format!("{name} ({n})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            ("Day (UTC)".to_owned(), period.clone()),
            ("First seen".to_owned(), seen(ev.first_ms)),
            ("Last seen".to_owned(), seen(ev.last_ms)),
            ("Requests with no client row".to_owned(), e.rows.to_string()),
            (
                "Billed by the gateway (reported)".to_owned(),
                usd(ev.reported_nanos),
            ),
            (
                "At Tally's prices (computed)".to_owned(),
                if ev.unpriced > 0 {
                    format!(
                        "{} ({} rows without a price)",
                        usd(ev.computed_nanos),
                        ev.unpriced
                    )
                } else {
                    usd(ev.computed_nanos)
                },
            ),
            (
                "Registered".to_owned(),
                if e.registered {
                    "yes".to_owned()
                } else {
                    "no: in no key registry".to_owned()
                },
            ),
        ];
        if e.unpriced > 0 && ev.unpriced == 0 {
            lines.push(("Not priced".to_owned(), format!("{} rows", e.unpriced)));
        }
        let rows = top(&e.models, 5, "request");
        let mut more = vec![("Routes".to_owned(), top(&ev.routes, 5, "request"))];
        if !ev.ids.is_empty() {
            more.push((
                format!("Request ids (first {})", ev.ids.len()),
                ev.ids.iter().map(|i| (i.clone(), String::new())).collect(),
            ));
        }
        let steps = if e.registered {
            vec![
                "Check that the owner's application logs its usage on this key: these requests have no client row.".to_owned(),
                "If another process uses the key (a script, a second service), give it a key of its own or log its usage.".to_owned(),
                "If nobody recognises the requests, treat the key as leaked: rotate it in the gateway.".to_owned(),
            ]
        } else {
            vec![
                "Revoke or rotate this key in the gateway now: search its keys for the fingerprint above.".to_owned(),
                "Find who owns it: the models, routes and request ids above, and the gateway's own logs for them.".to_owned(),
                "If it is legitimate, register it (`tally keys import` with its sha256) so its traffic is attributed.".to_owned(),
            ]
        };
        let link = format!("{base}/runs/{run_id}?key={}", urlencoding_key(key));
        pending.push(Pending {
            rule: rule.as_str().to_owned(),
            scope: key.clone(),
            period,
            kind: rule,
            title,
            detail,
            to,
            lines,
            rows_heading: "Top models",
            rows,
            more,
            steps,
            link: Some(link),
            weight: (e.nanos, e.rows),
        });
    }
    pending
}

/// Data quality, to the platform contact: one alert per check and day.
fn quality_alerts(settings: &Settings, q: &Quality, run_id: i64) -> Vec<Pending> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut checks: Vec<(String, String, i64, String)> = Vec::new();
    for (d, n) in &q.zero_cost {
        checks.push((
            "data_quality:zero_cost".to_owned(),
            "gateway".to_owned(),
            *d,
            format!(
                "{} with tokens billed at zero cost on {}",
                count(*n, "gateway row"),
                day_label(*d)
            ),
        ));
    }
    for ((d, model), n) in &q.unpriced {
        checks.push((
            "data_quality:unpriced".to_owned(),
            format!("model {model}"),
            *d,
            format!(
                "{} of model {model} without a price on {}: import one",
                count(*n, "row"),
                day_label(*d)
            ),
        ));
    }
    for ((d, side), n) in &q.duplicates {
        checks.push((
            "data_quality:duplicate_ids".to_owned(),
            (*side).to_owned(),
            *d,
            format!(
                "{} repeating a request id on {}",
                count(*n, &format!("{side} row")),
                day_label(*d)
            ),
        ));
    }
    for (d, n) in &q.stream_no_usage {
        checks.push((
            "data_quality:stream_no_usage".to_owned(),
            "client".to_owned(),
            *d,
            format!(
                "{} billed but logged without usage on {}",
                count(*n, "streamed call"),
                day_label(*d)
            ),
        ));
    }
    let to = platform(settings);
    for (rule, scope, d, title) in checks {
        let period = day_label(d);
        let lines = vec![
            (
                "Check".to_owned(),
                rule.trim_start_matches("data_quality:").to_owned(),
            ),
            ("Day (UTC)".to_owned(), period.clone()),
        ];
        pending.push(Pending {
            rule,
            scope,
            period,
            kind: AlertKind::DataQuality,
            title,
            detail: serde_json::json!({"run": run_id}),
            to: to.clone(),
            lines,
            rows_heading: "",
            rows: Vec::new(),
            more: Vec::new(),
            steps: Vec::new(),
            link: None,
            weight: (0, 0),
        });
    }
    pending
}

/// An alert per closed month the run's window touches whose figures late
/// rows changed: to finance (the platform contact when none is set), once
/// per closed month and the open month that carries the corrections; more
/// late rows later update that alert's figures instead of mailing again.
fn correction_alerts(
    conn: &mut AnyConnection,
    settings: &Settings,
    (from_ms, to_ms): (i64, i64),
    run_id: i64,
) -> Result<Vec<Pending>, AlertError> {
    let mut pending = Vec::new();
    let base = settings.email.base_url.trim_end_matches('/');
    let to = finance(settings);
    let failed = |e: crate::app::error::AppError| AlertError::Period(Box::new(e));
    for c in crate::app::periods::closed_touching(conn, (from_ms, to_ms)).map_err(failed)? {
        let Some(late) = crate::app::periods::pending_corrections(conn, &c).map_err(failed)? else {
            continue;
        };
        let billed = late.billed.normalize();
        let title = format!(
            "Closed {} changed: {} arrived late, {} USD billed; corrections go into {}",
            c.period,
            count(u64::try_from(late.requests.max(0)).unwrap_or(0), "request"),
            billed,
            late.carried_by
        );
        let lines = vec![
            ("Closed month".to_owned(), c.period.clone()),
            ("Closed at (UTC)".to_owned(), c.closed_at.clone()),
            ("Frozen export sha256".to_owned(), c.sha256.clone()),
            ("Late requests".to_owned(), late.requests.to_string()),
            (
                "Billed by the gateway (reported)".to_owned(),
                format!("{billed} USD"),
            ),
            (
                "At Tally's prices (list)".to_owned(),
                format!("{} USD", late.list.normalize()),
            ),
            ("Corrections go into".to_owned(), late.carried_by.clone()),
        ];
        let steps = vec![
            format!(
                "`tally focus --period {}` lists them as ChargeClass=Correction rows; the closed month's export and hash stay as they were.",
                late.carried_by
            ),
            format!(
                "If the month must be restated instead, `tally close --period {} --reopen --reason \"...\"` and close it again.",
                c.period
            ),
        ];
        pending.push(Pending {
            rule: AlertKind::PeriodCorrection.as_str().to_owned(),
            scope: c.period.clone(),
            period: late.carried_by.clone(),
            kind: AlertKind::PeriodCorrection,
            title,
            detail: serde_json::json!({
                "run": run_id, "closed": c.period, "sha256": c.sha256,
                "requests": late.requests, "billed": billed.to_string(),
                "list": late.list.normalize().to_string(), "into": late.carried_by,
            }),
            to: to.clone(),
            lines,
            rows_heading: "",
            rows: Vec::new(),
            more: Vec::new(),
            steps,
            link: Some(format!("{base}/runs/{run_id}")),
            weight: (
                tally_schema::convert::usd_to_nanos(billed).map_or(i64::MAX, |(n, _)| n),
                u64::try_from(late.requests.max(0)).unwrap_or(0),
            ),
        });
    }
    Ok(pending)
}

/// Resolves this window's alerts whose cause is gone (not among `live`,
/// the rule, scope and period of what the run found); how many.
fn resolve_cleared(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
    live: &[(&str, &str, &str)],
    at: chrono::NaiveDateTime,
) -> Result<usize, AlertError> {
    let day = day_of;
    let mut resolved = 0;
    let (first, last) = (day_label(day(from_ms)), day_label(day(to_ms - 1)));
    for prefix in ["unattributed", "unregistered_key", "data_quality:"] {
        for a in repo::firing_alerts(conn, prefix)? {
            let in_window = a.period >= first && a.period <= last;
            // A day only partly inside the window is not judged by it.
            let whole = a.period.as_str() > first.as_str() || from_ms.rem_euclid(DAY_MS) == 0;
            let whole =
                whole && (a.period.as_str() < last.as_str() || to_ms.rem_euclid(DAY_MS) == 0);
            let still = live
                .iter()
                .any(|&(r, s, p)| r == a.rule && s == a.scope && p == a.period);
            if in_window && whole && !still && repo::resolve_alert(conn, a.id, at)? {
                resolved += 1;
            }
        }
    }
    Ok(resolved)
}

/// Each owner's digest of the UTC day before `now`: spend, unattributed
/// traffic on its keys, rows missing on the gateway. Sent once per owner
/// and day (recorded like an alert, kind `digest`).
pub fn digest(
    conn: &mut AnyConnection,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<usize, AlertError> {
    let today = now.timestamp_millis() - now.timestamp_millis().rem_euclid(DAY_MS);
    let (from, to) = (today - DAY_MS, today);
    let day = day_label(from);
    #[derive(Default)]
    struct Sums {
        nanos: i64,
        unpriced: u64,
        unattributed_rows: u64,
        unattributed_nanos: i64,
        missing: u64,
        models: BTreeMap<String, i64>,
    }
    let mut by: BTreeMap<(String, String, String), Sums> = BTreeMap::new();
    // Yesterday is a whole UTC day: its runs' daily sums when they answer.
    each_group(conn, SideKind::Gateway, (from, to), true, |g| {
        let s = by
            .entry((g.team.to_owned(), g.service.to_owned(), g.env.to_owned()))
            .or_default();
        s.nanos = s.nanos.saturating_add(g.computed_nanos);
        s.unpriced += g.unpriced;
        if g.rows > g.unpriced {
            *s.models.entry(g.model_family.to_owned()).or_default() += g.computed_nanos;
        }
        if g.class == Class::Unattributed {
            s.unattributed_rows += g.rows;
            s.unattributed_nanos = s.unattributed_nanos.saturating_add(g.computed_nanos);
        }
    })?;
    each_group(conn, SideKind::Client, (from, to), true, |g| {
        if g.class == Class::MissingUsage {
            by.entry((g.team.to_owned(), g.service.to_owned(), g.env.to_owned()))
                .or_default()
                .missing += g.rows;
        }
    })?;
    let mut queued = 0;
    let at = now.naive_utc();
    let contacts = Contacts::load(conn)?;
    for o in contacts.owners() {
        let Some(s) = by.get(&(o.team.clone(), o.service.clone(), o.env.clone())) else {
            continue;
        };
        // The owner's contact and its keys'; nobody: no digest.
        let to = contacts.of_owners(|x| x.id == o.id);
        if to.is_empty() {
            continue;
        }
        let who = format!("{}/{}/{}", o.team, o.service, o.env);
        let title = format!("Tally daily digest for {who}: {day}");
        let detail =
            serde_json::json!({"owner": who, "spend": nanos_to_usd(s.nanos, None).to_string()});
        let mut models: Vec<(&String, &i64)> = s.models.iter().collect();
        models.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let models: Vec<(String, String)> = models
            .into_iter()
            .take(5)
            .map(|(m, n)| (m.clone(), usd(*n)))
            .collect();
        let ctx = minijinja::context! {
            title => &title, day => &day, spend => usd(s.nanos), unpriced => s.unpriced,
            unattributed_rows => s.unattributed_rows, unattributed_cost => usd(s.unattributed_nanos),
            missing_rows => s.missing, models => models,
            link => format!("{}/owners/{}", settings.email.base_url.trim_end_matches('/'), o.id),
        };
        let (text, html) = mail::render("digest", &ctx)?;
        let rule = Rule {
            rule: "digest",
            scope: &who,
            period: &day,
            threshold: 0,
            kind: AlertKind::Digest,
            title: &title,
            detail: &detail,
            at,
        };
        let to = addresses(to, settings);
        // Recorded (as history, resolved at once) with its message, or not at all.
        let sent = repo::in_transaction(conn, |c| -> Result<bool, AlertError> {
            let Some(id) = record(c, &rule)? else {
                return Ok(false);
            };
            repo::resolve_alert(c, id, at)?;
            queue(c, Some(id), &to, &title, &text, &html, at)?;
            Ok(true)
        })?;
        if !sent {
            continue;
        }
        queued += 1;
    }
    Ok(queued)
}

/// Sends a test message straight away (not through the outbox): the
/// setup works when this returns.
pub fn test_email(mailer: &Mailer, to: &str, now: DateTime<Utc>) -> Result<(), MailError> {
    let ctx = minijinja::context! { at => now.to_rfc3339(), to };
    let (text, html) = mail::render("test", &ctx)?;
    mailer.send(
        now.timestamp_millis(),
        to,
        "Tally test message",
        &text,
        &html,
    )
}

/// An alert as the API and pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: i64,
    pub kind: AlertKind,
    pub rule: String,
    pub scope: String,
    pub period: String,
    /// Threshold, percent (0 when none).
    pub threshold: i64,
    /// `firing` or `resolved`.
    pub state: String,
    /// One line.
    pub title: String,
    /// Figures.
    pub detail: serde_json::Value,
    /// Fired (UTC, RFC 3339).
    pub fired_at: String,
    pub resolved_at: Option<String>,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> Self {
        Self {
            id: a.id,
            kind: a.kind.0,
            rule: a.rule,
            scope: a.scope,
            period: a.period,
            threshold: a.threshold,
            state: a.state,
            title: a.title,
            detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
            fired_at: super::run::utc(a.fired_at),
            resolved_at: a.resolved_at.map(super::run::utc),
        }
    }
}

/// Alerts newest first.
pub fn list(
    conn: &mut AnyConnection,
    state: Option<&str>,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<AlertView>, AlertError> {
    if let Some(s) = state
        && !matches!(s, "firing" | "resolved")
    {
        return Err(AlertError::Invalid(format!(
            "state: `{s}`: firing or resolved"
        )));
    }
    Ok(repo::alerts(conn, state, kind, limit.clamp(1, 10_000))?
        .into_iter()
        .map(AlertView::from)
        .collect())
}

/// A key's name in a query string (fingerprints and names are ASCII; the
/// rest is percent-encoded).
fn urlencoding_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::app::testing::{DAY, fixture_store};

    #[test]
    fn a_runs_alerts_fire_once_per_cause() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = fixture_store(dir.path());
        let mut settings = Settings::default();
        settings.alerts.platform_contact = "platform@example.com".to_owned();
        let clock = || Ok(DAY.1 + 3_600_000);
        let now = DateTime::from_timestamp_millis(DAY.1 + 3_600_000).unwrap();
        let o =
            crate::app::run::run(&mut c, &mut [], DAY, 10_000, Default::default(), clock).unwrap();
        let first = raise_for_run(&mut c, &settings, o.run.id, DAY, now).unwrap();
        // The leaked key and the day's data-quality checks.
        assert!(first.fired >= 2, "{first:?}");
        // All of them go to the platform contact: one message for the run.
        assert_eq!(first.queued, 1, "one message per recipient: {first:?}");
        let kinds: Vec<String> = repo::firing_alerts(&mut c, "unregistered_key")
            .unwrap()
            .into_iter()
            .map(|a| a.title)
            .collect();
        assert_eq!(kinds.len(), 1, "{kinds:?}");
        assert!(kinds[0].starts_with("Possibly leaked key"), "{kinds:?}");
        // The same cause on the next run: nothing new.
        let again = raise_for_run(&mut c, &settings, o.run.id, DAY, now).unwrap();
        assert_eq!((again.fired, again.queued, again.resolved), (0, 0, 0));
    }
}

/// Raises an alert per provider whose tie-out gap over `[from_ms, to_ms)`
/// is at least `alerts.tieout_min_gap` (either way): to finance, once per
/// provider and window; a later tie-out of the same window updates it.
pub fn raise_tieout_gaps(
    conn: &mut AnyConnection,
    settings: &Settings,
    t: &tally_reconcile::tieout::TieOut,
    (from_ms, to_ms): (i64, i64),
    now: DateTime<Utc>,
) -> Result<RunAlerts, AlertError> {
    let mut done = RunAlerts::default();
    let min = settings.alerts.tieout_min_gap;
    if min <= Decimal::ZERO {
        return Ok(done);
    }
    let window = format!("{}..{}", day_label(from_ms), day_label(to_ms));
    let base = settings.email.base_url.trim_end_matches('/');
    let to = finance(settings);
    let mut pending = Vec::new();
    for (provider, gap) in &t.gap_by_provider {
        if gap.abs() < min {
            continue;
        }
        let lines_of = |l: &&tally_reconcile::tieout::BucketLine| {
            l.provider.name() == provider && l.verdict != tally_reconcile::tieout::Verdict::Agrees
        };
        let worst: Vec<(String, String)> = {
            let mut v: Vec<&tally_reconcile::tieout::BucketLine> =
                t.lines.iter().filter(lines_of).collect();
            v.sort_by_key(|l| std::cmp::Reverse(l.gap.map(|g| g.abs())));
            v.into_iter()
                .take(10)
                .map(|l| {
                    (
                        format!("{} {}", day_label(l.start_ms), l.model),
                        format!(
                            "{} USD ({})",
                            l.gap
                                .map_or_else(|| "-".to_owned(), |g| g.normalize().to_string()),
                            l.verdict.name().to_owned()
                        ),
                    )
                })
                .collect()
        };
        let direction = if *gap > Decimal::ZERO {
            "billed more than the gateway logged"
        } else {
            "billed less than the gateway logged"
        };
        let title = format!(
            "{provider} {direction}: {} USD over {window}",
            gap.abs().normalize()
        );
        pending.push(Pending {
            rule: AlertKind::TieoutGap.as_str().to_owned(),
            scope: provider.clone(),
            period: window.clone(),
            kind: AlertKind::TieoutGap,
            title,
            detail: serde_json::json!({"provider": provider, "gap": gap.normalize().to_string(), "window": window}),
            to: to.clone(),
            lines: vec![
                ("Provider".to_owned(), provider.clone()),
                ("Window (UTC)".to_owned(), window.clone()),
                (
                    "Gap (provider - gateway)".to_owned(),
                    format!("{} USD", gap.normalize()),
                ),
            ],
            rows_heading: "Buckets that disagree",
            rows: worst,
            more: Vec::new(),
            steps: vec![
                "Rows the provider billed and the gateway never logged: check the gateway's logging under load (dropped spend-log writes) and ingest any later export.".to_owned(),
                format!("`tally tieout --from {} --to {} --report ...` lists every bucket.", day_label(from_ms), day_label(to_ms)),
            ],
            link: Some(base.to_owned()),
            weight: (
                tally_schema::convert::usd_to_nanos(gap.abs()).map_or(i64::MAX, |(n, _)| n),
                0,
            ),
        });
    }
    let origin = format!("Tally tie-out {window}");
    raise_grouped(
        conn,
        pending,
        settings.alerts.max_per_run,
        &origin,
        base,
        now.naive_utc(),
        &mut done,
    )?;
    Ok(done)
}

//! Quotas and alert email with real parts: the fixture day in a real store
//! (SQLite and PostgreSQL), and a real SMTP server on 127.0.0.1 (aiosmtpd,
//! Debian's `python3-aiosmtpd`) that the tests read back what it accepted.
#![expect(clippy::unwrap_used, reason = "tests: a failure is a failed test")]

mod common;
#[path = "common/fixture_day.rs"]
mod fixture_day;
#[path = "common/smtp.rs"]
mod smtp;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use chrono::{DateTime, Utc};
use common::{FIXTURE_ARGS, Store, run_fixture_day, stores, succeed, tally};
use fixture_day::load_fixture_day;
use rust_decimal::Decimal;
use smtp::Smtp;
use tally_reconcile::quota::{Metric, Period};
use tally_schema::enums::AlertKind;
use tally_service::app::alerts;
use tally_service::app::quotas::{self, Basis, QuotaSpec, Scope};
use tally_service::db::{self, repo};
use tally_service::mail;
use tally_service::settings::{AlertSettings, Settings};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn settings() -> Settings {
    Settings {
        alerts: AlertSettings {
            platform_contact: "platform@example.com".to_owned(),
            ..AlertSettings::default()
        },
        ..Settings::default()
    }
}

/// The fixture day loaded and reconciled with `tally run` as a user runs
/// it, the platform contact set from the environment.
fn reconciled(s: &Store, platform: bool) {
    load_fixture_day(s);
    let mut cmd = run_fixture_day(&s.url);
    if platform {
        cmd.env("TALLY_ALERTS_PLATFORM_CONTACT", "platform@example.com");
    }
    succeed(&mut cmd, &format!("run on {}", s.backend));
}

fn support_month(limit: &str) -> QuotaSpec {
    QuotaSpec {
        name: "support-month".to_owned(),
        scope: Scope {
            service: Some("support-bot".to_owned()),
            env: Some("prod".to_owned()),
            ..Scope::default()
        },
        metric: Metric::Cost,
        limit: d(limit),
        period: Period::Month,
        time_zone: "America/Los_Angeles".to_owned(),
        thresholds: vec![50, 80, 100],
        recipients: Vec::new(),
        basis: Basis::Billed,
    }
}

#[test]
#[cfg_attr(
    not(feature = "smtp-tests"),
    ignore = "needs python3-aiosmtpd: cargo test --features smtp-tests"
)]
fn quota_and_run_alerts_reach_a_real_smtp_server_once_each() {
    for s in stores() {
        let b = s.backend;
        reconciled(&s, true);
        let smtp = Smtp::start();
        let mut c = db::connect(&s.url).unwrap();
        let now = utc("2026-11-20T18:00:00Z");
        quotas::set(&mut c, &support_month("0.05"), now.naive_utc()).unwrap();
        let e = quotas::evaluate(&mut c, &settings(), now).unwrap();
        // 50, 80 and 100 % are each recorded; one message says so.
        assert_eq!((e.quotas, e.fired, e.queued), (1, 3, 1), "{b}");
        let again = quotas::evaluate(&mut c, &settings(), now).unwrap();
        assert_eq!((again.fired, again.queued), (0, 0), "{b}: fired twice");

        // `tally run` queued its alerts at the real time; send at a time
        // after both.
        let send_at = Utc::now().naive_utc() + chrono::Duration::seconds(1);
        let f = mail::flush(&mut c, &smtp.mailer(), send_at).unwrap();
        // The run's alerts (one unregistered key, four data-quality
        // checks), all to the platform contact in one message, and the
        // quota's message to the owner.
        assert_eq!((f.sent, f.failed, f.waiting), (2, 0, 0), "{b}");
        let got = smtp.received();
        assert_eq!(got.len(), 2, "{b}: one message per recipient");
        let quota = got
            .iter()
            .find(|m| m.subject == "support-bot/prod at 100 % of its November cost quota")
            .unwrap_or_else(|| panic!("{b}: {got:#?}"));
        // The owner's key contact, from the registry.
        assert_eq!(quota.to, ["support-oncall@example.com"], "{b}");
        for want in [
            "Used: $0.1211 of $0.0500 (242.20 %)",
            "Also crossed: 50 %, 80 %",
            "November 2026 (America/Los_Angeles; 2026-11-01 00:00 to 2026-12-01 00:00)",
            "key key_support_prod  $0.1211",
            "http://127.0.0.1:8080/quotas",
        ] {
            assert!(
                quota.text.contains(want),
                "{b}: no `{want}` in\n{}",
                quota.text
            );
        }
        let leaked = got
            .iter()
            .find(|m| m.text.contains("Possibly leaked key sha256:4b4e721860d5"))
            .unwrap_or_else(|| panic!("{b}: {got:#?}"));
        assert_eq!(leaked.to, ["platform@example.com"], "{b}");
        // Everything on-call needs to act, as delivered (issue 19): the
        // whole fingerprint to search the gateway for, when, how much (the
        // gateway's bill and Tally's price, each labelled), what was
        // called, which requests, a link to exactly these rows, and what
        // to do.
        let fp = "4b4e721860d5567581168884f58aed4aef8855dbc586d9b85bffa30a17640f11";
        for want in [
            format!("Key (full fingerprint): sha256:{fp}"),
            "Gateway's name for the key: temp-load-test (3 requests)".to_owned(),
            "First seen: 2026-11-20T02:10:03.000Z".to_owned(),
            "Last seen: 2026-11-20T02:24:03.000Z".to_owned(),
            "Requests with no client row: 3".to_owned(),
            "Billed by the gateway (reported): $0.1800".to_owned(),
            "At Tally's prices (computed): $".to_owned(),
            "Top models:\n  gpt-4o  3 requests".to_owned(),
            "Routes:\n  acompletion  3 requests".to_owned(),
            "Request ids (first 3):\n  chatcmpl-leak0\n  chatcmpl-leak1\n  chatcmpl-leak2"
                .to_owned(),
            "What to do:\n  1. Revoke or rotate this key in the gateway".to_owned(),
            "register it (`tally keys import` with its sha256)".to_owned(),
            format!("?key=sha256%3A{fp}"),
        ] {
            assert!(
                leaked.text.contains(&want),
                "{b}: no `{want}` in\n{}",
                leaked.text
            );
        }
        assert!(
            leaked.text.contains("<ol>"),
            "{b}: the HTML part lists the steps"
        );
        // Nothing is sent twice.
        let f = mail::flush(&mut c, &smtp.mailer(), send_at).unwrap();
        assert_eq!(f.sent, 0, "{b}");
        assert_eq!(smtp.received().len(), 2, "{b}");

        // A limit raised to $0.14 clears 100 % (used is $0.1211, 86.5 %): that alert
        // resolves; 50 and 80 % still hold. Back to $0.05, nothing fires
        // again: each threshold fires once a period.
        let mut raised = support_month("0.14");
        quotas::set(&mut c, &raised, now.naive_utc()).unwrap();
        // At this rate $0.14 runs out before December: a forecast fires.
        let r = quotas::evaluate(&mut c, &settings(), now).unwrap();
        assert_eq!((r.fired, r.resolved), (1, 1), "{b}");
        raised.limit = d("0.05");
        quotas::set(&mut c, &raised, now.naive_utc()).unwrap();
        // Over the limit, the forecast is moot and resolves.
        let r = quotas::evaluate(&mut c, &settings(), now).unwrap();
        assert_eq!((r.fired, r.queued, r.resolved), (0, 0, 1), "{b}");
        let firing = alerts::list(&mut c, Some("firing"), Some("quota_threshold"), 100).unwrap();
        assert_eq!(firing.len(), 2, "{b}: {firing:?}");

        // The quota's period is November in Los Angeles: still firing at
        // 23:30 on Nov 30 there (07:30 UTC on Dec 1), resolved once
        // December starts at local midnight (08:00 UTC).
        let late = quotas::evaluate(&mut c, &settings(), utc("2026-12-01T07:30:00Z")).unwrap();
        assert_eq!((late.fired, late.resolved), (0, 0), "{b}");
        let next = quotas::evaluate(&mut c, &settings(), utc("2026-12-01T08:00:00Z")).unwrap();
        assert_eq!((next.fired, next.resolved), (0, 2), "{b}");
        let firing = alerts::list(&mut c, Some("firing"), Some("quota_threshold"), 100).unwrap();
        assert!(firing.is_empty(), "{b}: {firing:?}");
    }
}

#[test]
fn quota_use_equals_an_independent_sum_of_the_same_rows() {
    // The file-based engine, with no store: its per-owner sums of the
    // gateway rows billed to each owner.
    let out = succeed(
        tally().args(FIXTURE_ARGS).args(["--format", "json"]),
        "tally reconcile",
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let owners = summary["costs_by_owner"].as_array().unwrap();
    assert!(owners.len() >= 3);
    for s in stores() {
        reconciled(&s, false);
        let mut c = db::connect(&s.url).unwrap();
        let now = utc("2026-11-20T23:00:00Z");
        for o in owners {
            let (team, service, env) = (
                o["team"].as_str().unwrap(),
                o["service"].as_str().unwrap(),
                o["env"].as_str().unwrap(),
            );
            if team.is_empty() && service.is_empty() && env.is_empty() {
                continue;
            }
            let scope = Scope {
                team: Some(team.to_owned()),
                service: Some(service.to_owned()),
                env: Some(env.to_owned()),
                key: None,
            };
            let spec = |metric| QuotaSpec {
                name: format!("{team}-{service}-{env}-{metric:?}"),
                scope: scope.clone(),
                metric,
                limit: d("1000000"),
                period: Period::Day,
                time_zone: "UTC".to_owned(),
                thresholds: vec![100],
                recipients: Vec::new(),
                basis: Basis::Billed,
            };
            let st = quotas::measure(
                &mut c,
                vec![spec(Metric::Cost), spec(Metric::Requests)],
                now,
                chrono::Duration::hours(6),
            )
            .unwrap();
            let want_cost = d(o["computed_cost"].as_str().unwrap());
            assert_eq!(
                st[0].used, want_cost,
                "{}: cost of {team}/{service}/{env}",
                s.backend
            );
            assert_eq!(st[0].used.round_dp(2), want_cost.round_dp(2));
            assert_eq!(
                st[0].unpriced_rows,
                o["unpriced_rows"].as_u64().unwrap(),
                "{}",
                s.backend
            );
            assert_eq!(
                st[1].used,
                Decimal::from(o["billed_rows"].as_u64().unwrap()),
                "{}: requests of {team}/{service}/{env}",
                s.backend
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "smtp-tests"),
    ignore = "needs python3-aiosmtpd: cargo test --features smtp-tests"
)]
fn smtp_down_for_ten_minutes_during_a_burst_then_every_alert_arrives_once() {
    for s in stores() {
        let b = s.backend;
        reconciled(&s, false);
        let mut smtp = Smtp::start();
        let mut c = db::connect(&s.url).unwrap();
        let t0 = utc("2026-11-20T18:00:00Z");
        let n = 12;
        for i in 0..n {
            let mut q = support_month("0.01");
            q.name = format!("burst-{i:02}");
            q.recipients = vec![format!("oncall-{i:02}@example.com")];
            quotas::set(&mut c, &q, t0.naive_utc()).unwrap();
        }
        smtp.stop();
        let e = quotas::evaluate(&mut c, &settings(), t0).unwrap();
        assert_eq!(e.queued, n, "{b}");
        // Ten minutes of the outbox job every 30 s against a dead server.
        for step in 0..=20 {
            let at = t0 + chrono::Duration::seconds(30 * step);
            let f = mail::flush(&mut c, &smtp.mailer(), at.naive_utc()).unwrap();
            assert_eq!(f.sent, 0, "{b}");
            assert_eq!(f.waiting, n as u64, "{b}");
        }
        smtp.resume();
        // The job goes on every 30 s; within five minutes everything is in.
        let back = t0 + chrono::Duration::minutes(10);
        let mut sent = 0;
        for step in 0..=10 {
            let at = back + chrono::Duration::seconds(30 * step);
            sent += mail::flush(&mut c, &smtp.mailer(), at.naive_utc())
                .unwrap()
                .sent;
        }
        assert_eq!(sent, n as u64, "{b}");
        assert_eq!(repo::unsent_count(&mut c).unwrap(), 0, "{b}");
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for m in smtp.received() {
            assert_eq!(m.to.len(), 1);
            *per.entry(m.to[0].clone()).or_default() += 1;
        }
        assert_eq!(per.len(), n, "{b}: {per:?}");
        assert!(per.values().all(|v| *v == 1), "{b}: {per:?}");
    }
}

#[test]
fn evaluators_racing_on_one_store_send_one_email_per_threshold() {
    for s in stores() {
        let b = s.backend;
        reconciled(&s, false);
        let now = utc("2026-11-20T18:00:00Z");
        let rounds = 8;
        for r in 0..rounds {
            let mut c = db::connect(&s.url).unwrap();
            let mut q = support_month("0.05");
            q.name = format!("race-{r}");
            q.recipients = vec!["race@example.com".to_owned()];
            quotas::set(&mut c, &q, now.naive_utc()).unwrap();
            let gate = Arc::new(Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (url, gate) = (s.url.clone(), gate.clone());
                    std::thread::spawn(move || {
                        let mut c = db::connect(&url).unwrap();
                        gate.wait();
                        quotas::evaluate(&mut c, &settings(), now).unwrap()
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            // Earlier rounds' quotas fired already; this round's three
            // thresholds fire once between the two evaluators.
            let fired: usize = results.iter().map(|e| e.fired).sum();
            let queued: usize = results.iter().map(|e| e.queued).sum();
            assert_eq!((fired, queued), (3, 1), "{b} round {r}: {results:?}");
        }
        let mut c = db::connect(&s.url).unwrap();
        let all = alerts::list(&mut c, None, Some("quota_threshold"), 1000).unwrap();
        assert_eq!(all.len(), 3 * rounds, "{b}");
        // The run's own alerts had nobody to tell: their messages are held.
        let addressed = repo::messages(&mut c, 1000)
            .unwrap()
            .into_iter()
            .filter(|m| !m.recipients.is_empty())
            .count();
        assert_eq!(addressed, rounds, "{b}");
    }
}

#[test]
fn a_job_runs_on_one_holder_at_a_time() {
    for s in stores() {
        let b = s.backend;
        let mut one = db::open(&s.url, false).unwrap();
        let mut two = db::connect(&s.url).unwrap();
        let t = utc("2026-11-20T18:00:00Z").naive_utc();
        let hour = chrono::Duration::hours(1);
        assert!(
            repo::try_lock_job(&mut one, "quotas", "a", t, t + hour).unwrap(),
            "{b}"
        );
        assert!(
            !repo::try_lock_job(&mut two, "quotas", "b", t, t + hour).unwrap(),
            "{b}: two holders"
        );
        // Another job is free.
        assert!(
            repo::try_lock_job(&mut two, "outbox", "b", t, t + hour).unwrap(),
            "{b}"
        );
        repo::unlock_job(&mut two, "outbox", "b").unwrap();
        repo::unlock_job(&mut one, "quotas", "a").unwrap();
        assert!(
            repo::try_lock_job(&mut two, "quotas", "b", t, t + hour).unwrap(),
            "{b}: not released"
        );
        repo::unlock_job(&mut two, "quotas", "b").unwrap();
    }
}

#[test]
fn quotas_are_checked_set_replaced_and_deleted() {
    for s in stores() {
        let b = s.backend;
        // The registry a scope is checked against.
        fixture_day::import(&s, "keys", &fixture_day::fixture("keys.toml"));
        let mut c = db::open(&s.url, false).unwrap();
        let t = utc("2026-11-20T18:00:00Z").naive_utc();
        let mut q = support_month("0.05");
        quotas::set(&mut c, &q, t).unwrap();
        q.limit = d("7.5");
        q.thresholds = vec![90, 50, 90];
        quotas::set(&mut c, &q, t).unwrap();
        let list = quotas::list(&mut c).unwrap();
        assert_eq!(list.len(), 1, "{b}");
        assert_eq!(list[0].limit, d("7.5"), "{b}");
        assert_eq!(list[0].thresholds, [50, 90], "{b}");
        for (bad, field) in [
            (
                QuotaSpec {
                    time_zone: "Mars/Olympus".to_owned(),
                    ..q.clone()
                },
                "time_zone",
            ),
            (
                QuotaSpec {
                    limit: d("0"),
                    ..q.clone()
                },
                "limit",
            ),
            (
                QuotaSpec {
                    limit: d("1.5"),
                    metric: Metric::Tokens,
                    ..q.clone()
                },
                "limit",
            ),
            (
                QuotaSpec {
                    scope: Scope::default(),
                    ..q.clone()
                },
                "scope",
            ),
            (
                QuotaSpec {
                    scope: Scope {
                        key: Some("k".to_owned()),
                        ..q.scope.clone()
                    },
                    ..q.clone()
                },
                "scope",
            ),
            (
                QuotaSpec {
                    recipients: vec!["not an address".to_owned()],
                    ..q.clone()
                },
                "recipients",
            ),
        ] {
            let e = quotas::set(&mut c, &bad, t).unwrap_err().to_string();
            assert!(e.starts_with(field), "{b}: {e}");
        }
        // A scope that would never match a row is refused when written,
        // with the names it was probably meant to be (issue 19).
        for (scope, want) in [
            (
                Scope {
                    team: Some("suport".to_owned()),
                    ..Scope::default()
                },
                "`suport` is no team Tally knows (did you mean `support`?)",
            ),
            (
                Scope {
                    service: Some("support-bot".to_owned()),
                    env: Some("staging".to_owned()),
                    ..Scope::default()
                },
                "no owner is support-bot/staging",
            ),
            (
                Scope {
                    key: Some("key_suport_prod".to_owned()),
                    ..Scope::default()
                },
                "did you mean `key_support_prod`",
            ),
        ] {
            let bad = QuotaSpec { scope, ..q.clone() };
            let e = quotas::set(&mut c, &bad, t).unwrap_err().to_string();
            assert!(e.starts_with("scope") && e.contains(want), "{b}: {e}");
        }
        // A key named by its alias is kept by its id, the name runs carry.
        let by_alias = QuotaSpec {
            name: "support-key".to_owned(),
            scope: Scope {
                key: Some("support-bot-prod".to_owned()),
                ..Scope::default()
            },
            ..q.clone()
        };
        quotas::set(&mut c, &by_alias, t).unwrap();
        let stored = quotas::list(&mut c).unwrap();
        let k = stored.iter().find(|x| x.name == "support-key").unwrap();
        assert_eq!(k.scope.key.as_deref(), Some("key_support_prod"), "{b}");
        quotas::delete(&mut c, "support-key").unwrap();
        quotas::delete(&mut c, "support-month").unwrap();
        assert!(quotas::list(&mut c).unwrap().is_empty());
        assert!(quotas::delete(&mut c, "support-month").is_err());
    }
}

#[test]
#[cfg_attr(
    not(feature = "smtp-tests"),
    ignore = "needs python3-aiosmtpd: cargo test --features smtp-tests"
)]
fn each_owner_gets_one_digest_of_yesterday() {
    for s in stores() {
        let b = s.backend;
        reconciled(&s, false);
        let smtp = Smtp::start();
        let mut c = db::connect(&s.url).unwrap();
        let now = utc("2026-11-21T07:00:00Z");
        // Five owners had traffic on the 20th, each with a key contact.
        assert_eq!(alerts::digest(&mut c, &settings(), now).unwrap(), 5, "{b}");
        assert_eq!(
            alerts::digest(&mut c, &settings(), now).unwrap(),
            0,
            "{b}: twice"
        );
        mail::flush(&mut c, &smtp.mailer(), now.naive_utc()).unwrap();
        let got = smtp.wait_for("5 digests", |got| got.len() >= 5);
        assert_eq!(got.len(), 5, "{b}");
        let support = got
            .iter()
            .find(|m| m.subject == "Tally daily digest for support/support-bot/prod: 2026-11-20")
            .unwrap_or_else(|| panic!("{b}: {got:#?}"));
        assert_eq!(support.to, ["support-oncall@example.com"]);
        for want in [
            "Spend yesterday (2026-11-20, UTC): $0.1211",
            "Rows missing on the gateway: 2",
            "Unattributed traffic on this owner's keys: 0 rows",
        ] {
            assert!(
                support.text.contains(want),
                "{b}: no `{want}` in\n{}",
                support.text
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "smtp-tests"),
    ignore = "needs python3-aiosmtpd: cargo test --features smtp-tests"
)]
fn test_email_checks_the_setup_and_without_smtp_writes_eml_files() {
    let mut smtp = Smtp::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tally.toml");
    std::fs::write(
        &config,
        format!(
            "[email]\nsmtp_url = \"{}\"\nfrom = \"Tally <tally@example.com>\"\n",
            smtp.url()
        ),
    )
    .unwrap();
    let out = succeed(
        tally()
            .args([
                "alerts",
                "test-email",
                "--to",
                "ops@example.com",
                "--config",
            ])
            .arg(&config),
        "test-email",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted by SMTP"));
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["ops@example.com"]);
    assert_eq!(got[0].subject, "Tally test message");
    // A dead server is a failure that says where it was sending.
    smtp.stop();
    let out = tally()
        .args([
            "alerts",
            "test-email",
            "--to",
            "ops@example.com",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("test message to ops@example.com through SMTP"),
        "{err}"
    );
    // No SMTP configured: the message is a file in the outbox folder.
    let outbox = dir.path().join("outbox");
    std::fs::write(
        &config,
        format!("[email]\noutbox_dir = \"{}\"\n", outbox.display()),
    )
    .unwrap();
    succeed(
        tally()
            .args([
                "alerts",
                "test-email",
                "--to",
                "ops@example.com",
                "--config",
            ])
            .arg(&config),
        "test-email to a folder",
    );
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "eml"));
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        eml.contains("To: ops@example.com") && eml.contains("Subject: Tally test message"),
        "{eml}"
    );
}

#[test]
fn a_forecast_says_when_the_month_will_run_over() {
    for s in stores() {
        let b = s.backend;
        reconciled(&s, false);
        let mut c = db::connect(&s.url).unwrap();
        // $0.1211 by 18:00 UTC on the 20th, 19.4 days into a Los Angeles
        // November: at that rate $0.15 is reached on the 25th, $0.20 never.
        let now = utc("2026-11-20T18:00:00Z");
        let mut q = support_month("0.15");
        q.recipients = vec!["finance@example.com".to_owned()];
        quotas::set(&mut c, &q, now.naive_utc()).unwrap();
        let mut calm = support_month("0.20");
        calm.name = "support-calm".to_owned();
        quotas::set(&mut c, &calm, now.naive_utc()).unwrap();
        quotas::evaluate(&mut c, &settings(), now).unwrap();
        let list = alerts::list(&mut c, Some("firing"), Some("quota_forecast"), 10).unwrap();
        assert_eq!(list.len(), 1, "{b}: {list:?}");
        let f = &list[0];
        assert!(
            f.title.starts_with(
                "support-bot/prod is on course to exceed its November cost quota on 2026-11-25 "
            ),
            "{b}: {}",
            f.title
        );
        assert!(
            f.title.ends_with("PST"),
            "{b}: in the quota's zone: {}",
            f.title
        );
        assert_eq!(f.rule, "forecast:support-month");
        // Once per period.
        assert_eq!(
            quotas::evaluate(&mut c, &settings(), now + chrono::Duration::hours(1))
                .unwrap()
                .fired,
            0,
            "{b}"
        );
    }
}

#[test]
fn a_run_alert_resolves_when_its_cause_is_gone() {
    for s in stores() {
        let b = s.backend;
        reconciled(&s, true);
        let mut c = db::connect(&s.url).unwrap();
        let unpriced = || {
            alerts::list(
                &mut db::connect(&s.url).unwrap(),
                None,
                Some("data_quality"),
                100,
            )
            .unwrap()
            .into_iter()
            .filter(|a| a.rule == "data_quality:unpriced")
            .collect::<Vec<_>>()
        };
        let before = unpriced();
        assert_eq!(before.len(), 1, "{b}");
        assert_eq!(before[0].state, "firing");
        assert_eq!(before[0].scope, "model mistral-large");
        // The missing price arrives; the day is reconciled again.
        let dir = tempfile::tempdir().unwrap();
        let prices = dir.path().join("prices.toml");
        std::fs::write(&prices, "currency = \"USD\"\n[[price]]\nmodel = \"mistral-large\"\neffective_from = \"2026-01-01T00:00:00Z\"\ninput = \"2\"\noutput = \"6\"\n").unwrap();
        succeed(
            tally()
                .args(["prices", "import", "--db", &s.url])
                .arg(&prices),
            "prices import",
        );
        succeed(&mut run_fixture_day(&s.url), "run");
        let after = unpriced();
        assert_eq!(after.len(), 1, "{b}: fired again");
        assert_eq!(after[0].state, "resolved", "{b}");
        assert!(after[0].resolved_at.is_some());
        // What still holds stays firing.
        let leaked = alerts::list(&mut c, Some("firing"), Some("unregistered_key"), 10).unwrap();
        assert_eq!(leaked.len(), 1, "{b}");
    }
}

fn fixed_clock() -> Result<i64, tally_service::clock::ClockError> {
    Ok(utc("2026-11-21T01:00:00Z").timestamp_millis())
}

fn five_past() -> Result<i64, tally_service::clock::ClockError> {
    Ok(utc("2026-11-21T01:05:00Z").timestamp_millis())
}

fn ten_past() -> Result<i64, tally_service::clock::ClockError> {
    Ok(utc("2026-11-21T01:10:00Z").timestamp_millis())
}

#[test]
fn the_reconcile_job_runs_each_day_of_the_trailing_window_once_a_tick() {
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        let pool = db::pool(&s.url, 3).unwrap();
        let mut config = settings();
        config.schedule.reconcile_window_h = 48;
        let job = |clock: tally_service::clock::Clock, tick: &str| {
            tally_service::jobs::run_job(&pool, "reconcile", &config, clock, "test", utc(tick))
                .unwrap()
        };
        let mut c = db::connect(&s.url).unwrap();
        let windows = |c: &mut db::AnyConnection, status: Option<&str>| -> Vec<String> {
            let mut w: Vec<String> = repo::runs(c)
                .unwrap()
                .iter()
                .filter(|r| status.is_none_or(|s| r.status == s))
                .map(|r| format!("{}..{}", r.window_from.date(), r.window_to.date()))
                .collect();
            w.sort();
            w
        };
        let days = [
            "2026-11-19..2026-11-20",
            "2026-11-20..2026-11-21",
            "2026-11-21..2026-11-22",
        ];
        assert!(job(fixed_clock, "2026-11-21T01:00:00Z"), "{b}");
        assert_eq!(windows(&mut c, None), days, "{b}");
        // Another replica waking for the same tick finds each day done.
        assert!(job(fixed_clock, "2026-11-21T01:00:00Z"), "{b}");
        assert_eq!(
            repo::runs(&mut c).unwrap().len(),
            3,
            "{b}: ran twice in one tick"
        );
        // The next tick runs each day again; each new run supersedes the last.
        assert!(job(five_past, "2026-11-21T01:05:00Z"), "{b}");
        assert_eq!(repo::runs(&mut c).unwrap().len(), 6, "{b}");
        assert_eq!(windows(&mut c, Some("current")), days, "{b}");
        // While another replica holds a day, this one does the other two.
        let t = utc("2026-11-21T01:10:00Z").naive_utc();
        let mut other = pool.get().unwrap();
        assert!(
            repo::try_lock_job(
                &mut other,
                "reconcile 2026-11-20",
                "elsewhere",
                t,
                t + chrono::Duration::hours(1)
            )
            .unwrap()
        );
        assert!(job(ten_past, "2026-11-21T01:10:00Z"), "{b}");
        let runs = repo::runs(&mut c).unwrap();
        assert_eq!(runs.len(), 8, "{b}");
        let newest: Vec<String> = runs
            .iter()
            .filter(|r| r.started_at == t)
            .map(|r| r.window_from.date().to_string())
            .collect();
        assert_eq!(newest.len(), 2, "{b}: {newest:?}");
        assert!(
            !newest.contains(&"2026-11-20".to_owned()),
            "{b}: {newest:?}"
        );
        repo::unlock_job(&mut other, "reconcile 2026-11-20", "elsewhere").unwrap();
    }
}

/// A private CA and a certificate for 127.0.0.1 signed by it, made with
/// the `openssl` program: (ca.pem, server.pem, server.key).
fn private_ca(dir: &std::path::Path) -> (String, String, String) {
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=Tally test CA",
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
            "-subj",
            "/CN=127.0.0.1",
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("server.pem"),
            "-days",
            "2",
            "-extfile",
            &p("san.ext"),
        ],
    ] {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e} (Debian package openssl)"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

fn mailer(url: &str, ca: Option<&str>) -> mail::Mailer {
    mail::Mailer::new(&tally_service::settings::EmailSettings {
        smtp_url: Some(tally_service::settings::Secret::new(url)),
        ca_file: ca.map(str::to_owned),
        timeout_s: 5,
        ..tally_service::settings::EmailSettings::default()
    })
    .unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "smtp-tests"),
    ignore = "needs python3-aiosmtpd: cargo test --features smtp-tests"
)]
fn starttls_and_smtps_verify_the_server_and_carry_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let now = utc("2026-11-20T18:00:00Z");

    // smtp:// means STARTTLS, required: credentials only inside TLS.
    let starttls = Smtp::start_with(&["--starttls", &cert, &key, "--auth", "tally:s3cret"]);
    let url = format!("smtp://tally:s3cret@127.0.0.1:{}", starttls.port);
    alerts::test_email(&mailer(&url, Some(&ca)), "ops@example.com", now).unwrap();
    let got = starttls.received();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].auth.as_deref(), got[0].tls), (Some("tally"), true));
    // Its certificate is checked: without the private CA it is refused.
    let e = alerts::test_email(&mailer(&url, None), "ops@example.com", now).unwrap_err();
    assert!(e.to_string().contains("sending"), "{e}");
    // Wrong credentials are refused by the server.
    let bad = format!("smtp://tally:wrong@127.0.0.1:{}", starttls.port);
    assert!(alerts::test_email(&mailer(&bad, Some(&ca)), "ops@example.com", now).is_err());
    assert_eq!(starttls.received().len(), 1);

    // smtps:// is TLS from the first byte.
    let smtps = Smtp::start_with(&["--tls", &cert, &key, "--auth", "tally:s3cret"]);
    let url = format!("smtps://tally:s3cret@127.0.0.1:{}", smtps.port);
    alerts::test_email(&mailer(&url, Some(&ca)), "ops@example.com", now).unwrap();
    let got = smtps.received();
    assert_eq!(
        (got.len(), got[0].auth.as_deref(), got[0].tls),
        (1, Some("tally"), true)
    );

    // A server without STARTTLS gets nothing from an smtp:// URL: no
    // falling back to plain text.
    let plain = Smtp::start();
    let url = format!("smtp://127.0.0.1:{}", plain.port);
    assert!(alerts::test_email(&mailer(&url, Some(&ca)), "ops@example.com", now).is_err());
    assert!(plain.received().is_empty());
}

#[test]
fn quota_use_from_daily_sums_equals_use_row_by_row() {
    for s in stores() {
        let b = s.backend;
        load_fixture_day(&s);
        // The day in two runs that meet at noon: each run's daily sums
        // hold its half of the day.
        for (from, to) in [
            ("2026-11-20T00:00:00Z", "2026-11-20T12:00:00Z"),
            ("2026-11-20T12:00:00Z", "2026-11-21"),
        ] {
            succeed(
                tally().args(["run", "--from", from, "--to", to, "--db", &s.url]),
                "run",
            );
        }
        let mut c = db::connect(&s.url).unwrap();
        // The month's daily sums answer exactly: the fast path is taken.
        let month = (
            utc("2026-11-01T00:00:00Z").timestamp_millis(),
            utc("2026-12-01T00:00:00Z").timestamp_millis(),
        );
        assert!(repo::rollup_runs(&mut c, month).unwrap().is_some(), "{b}");
        let mut specs = Vec::new();
        for (i, (metric, period, zone, basis, scope)) in [
            (
                Metric::Cost,
                Period::Month,
                "UTC",
                Basis::Billed,
                Scope {
                    team: Some("support".to_owned()),
                    ..Scope::default()
                },
            ),
            (
                Metric::Cost,
                Period::Month,
                "America/Los_Angeles",
                Basis::Billed,
                Scope {
                    env: Some("prod".to_owned()),
                    ..Scope::default()
                },
            ),
            (
                Metric::Requests,
                Period::Day,
                "UTC",
                Basis::Client,
                Scope {
                    env: Some("prod".to_owned()),
                    ..Scope::default()
                },
            ),
            (
                Metric::Cost,
                Period::Day,
                "Asia/Kolkata",
                Basis::Client,
                Scope {
                    key: Some("key_search_prod".to_owned()),
                    ..Scope::default()
                },
            ),
            (
                Metric::Cost,
                Period::Week,
                "Europe/Berlin",
                Basis::Billed,
                Scope {
                    team: Some("research".to_owned()),
                    ..Scope::default()
                },
            ),
            (
                Metric::Tokens,
                Period::Month,
                "UTC",
                Basis::Billed,
                Scope {
                    team: Some("growth".to_owned()),
                    ..Scope::default()
                },
            ),
        ]
        .into_iter()
        .enumerate()
        {
            specs.push(QuotaSpec {
                name: format!("q{i}"),
                scope,
                metric,
                limit: d("1"),
                period,
                time_zone: zone.to_owned(),
                thresholds: vec![100],
                recipients: Vec::new(),
                basis,
            });
        }
        for now in [
            "2026-11-20T23:00:00Z",
            "2026-11-21T05:00:00Z",
            "2026-11-27T12:00:00Z",
        ] {
            let now = utc(now);
            let min = chrono::Duration::hours(6);
            let fast = quotas::measure_with(&mut c, specs.clone(), now, min, true).unwrap();
            let slow = quotas::measure_with(&mut c, specs.clone(), now, min, false).unwrap();
            assert_eq!(fast, slow, "{b} at {now}");
            assert!(
                fast.iter().any(|q| q.rows > 0),
                "{b}: nothing measured at {now}"
            );
        }
        // The research team's unpriced rows are counted, not priced at 0.
        let st = quotas::measure(
            &mut c,
            specs.clone(),
            utc("2026-11-20T23:00:00Z"),
            chrono::Duration::hours(6),
        )
        .unwrap();
        assert_eq!(st[4].unpriced_rows, 3, "{b}");
    }
}

/// Issues 16 and 19: 3,000 unknown keys in a run once queued 3,000 emails,
/// and a 1M-row day 193, about 40 to one address. Now a run sends each
/// recipient one message: its causes costliest first, the first
/// `alerts.max_per_run` in full and the rest by title; every cause is
/// still an alert of its own, and a second run of the same day sends
/// nothing new.
#[test]
fn a_run_sends_each_recipient_one_message_costliest_first() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("spendlogs.csv");
    let mut csv = String::from(
        "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status,user,team_id,end_user,request_tags\n",
    );
    let keys = 60;
    let hash = |k: u32| tally_reconcile::keys::sha256_hex(&format!("leaked key {k}"));
    for k in 0..keys {
        // Key k costs k + 1 cents: the costliest come last.
        csv.push_str(&format!(
            "req-{k},acompletion,{},0.{:02},2,1,1,2026-11-20 10:00:00.000,2026-11-20 10:00:01.000,gpt-4o,gpt-4o,{{}},False,success,,,,[]\n",
            hash(k),
            k + 1,
        ));
    }
    std::fs::write(&export, csv).unwrap();
    for s in stores() {
        let b = s.backend;
        succeed(
            tally()
                .args(["ingest", "gateway", "--db", &s.url])
                .arg(&export),
            "ingest",
        );
        for round in 0..2 {
            succeed(
                run_fixture_day(&s.url)
                    .env("TALLY_ALERTS_PLATFORM_CONTACT", "platform@example.com")
                    .env("TALLY_ALERTS_MAX_PER_RUN", "20"),
                "run",
            );
            let mut c = db::connect(&s.url).unwrap();
            let messages = repo::messages(&mut c, 1000).unwrap();
            // Sixty leaked keys and the day's data-quality checks, all to
            // the platform contact: one message, sent in the first round.
            assert_eq!(
                messages.len(),
                1,
                "{b} round {round}: {:#?}",
                messages.iter().map(|m| &m.subject).collect::<Vec<_>>()
            );
            let m = &messages[0];
            assert_eq!(m.recipients, "platform@example.com", "{b}");
            assert!(
                m.subject.starts_with("Tally run ")
                    && m.subject
                        .contains(" alerts, costliest: Possibly leaked key"),
                "{b}: {}",
                m.subject
            );
            // Costliest first: key 59 ($0.60) opens the message.
            let first = m.body_text.find(&hash(59)[..12]).unwrap();
            let second = m.body_text.find(&hash(58)[..12]).unwrap();
            assert!(first < second, "{b}: not costliest first");
            // Twenty in full (their whole fingerprint), the rest by title.
            let full = (0..keys)
                .filter(|k| {
                    m.body_text
                        .contains(&format!("Key (full fingerprint): sha256:{}", hash(*k)))
                })
                .count();
            assert_eq!(full, 20, "{b}");
            assert!(m.body_text.contains("Also new in this run"), "{b}");
            for k in 0..keys {
                assert!(
                    m.body_text.contains(&hash(k)[..12]),
                    "{b}: key {k} is not in the message"
                );
            }
            let leaked =
                alerts::list(&mut c, Some("firing"), Some("unregistered_key"), 1000).unwrap();
            // Every key is still an alert of its own (the summary is a
            // notice of the run, not a condition that stays firing).
            assert_eq!(leaked.len(), 60, "{b}");
        }
    }
}

/// Issue 17: failed calls that billed nothing (LiteLLM's failure rows:
/// spend 0, tokens 0, `call_type` empty) on a registered key raised an
/// "Unattributed traffic ... $0.0000" email. They raise no money alert
/// now; on a key no registry knows they still alert, by count (probing
/// with a leaked key is a security signal). Their zero tokens cost nothing
/// at any price, so they are not "unpriced" either.
#[test]
fn failed_calls_that_billed_nothing_raise_no_money_alert() {
    let dir = tempfile::tempdir().unwrap();
    let known = tally_reconcile::keys::sha256_hex("known key");
    let leaked = tally_reconcile::keys::sha256_hex("leaked key");
    let export = dir.path().join("spendlogs.csv");
    let mut csv = String::from(
        "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status\n",
    );
    for (i, key) in [&known, &known, &leaked, &leaked, &leaked]
        .iter()
        .enumerate()
    {
        csv.push_str(&format!(
            "call-{i},,{key},0.0,0,0,0,2026-11-20 10:00:0{i}.100,2026-11-20 10:00:0{i}.200,gpt-4o,,{{}},False,failure\n"
        ));
    }
    std::fs::write(&export, csv).unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!("[[key]]\nid = \"known\"\nteam = \"t\"\nsha256 = [\"{known}\"]\n"),
    )
    .unwrap();
    for s in stores() {
        succeed(
            tally().args(["keys", "import", "--db", &s.url]).arg(&keys),
            "keys import",
        );
        let out = succeed(
            tally()
                .args(["ingest", "gateway", "--db", &s.url])
                .arg(&export),
            "ingest",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("5 read = 5 new + 0 duplicate + 0 rejected"),
            "{text}"
        );
        succeed(
            run_fixture_day(&s.url).env("TALLY_ALERTS_PLATFORM_CONTACT", "platform@example.com"),
            "run",
        );
        let mut c = db::connect(&s.url).unwrap();
        let firing = alerts::list(&mut c, Some("firing"), None, 100).unwrap();
        assert!(
            !firing.iter().any(|a| a.kind == AlertKind::Unattributed),
            "{}: {:?}",
            s.backend,
            firing.iter().map(|a| &a.title).collect::<Vec<_>>()
        );
        // Zero tokens cost nothing at any price: no "without a price" alarm.
        assert!(
            !firing.iter().any(|a| a.title.contains("without a price")),
            "{}",
            s.backend
        );
        let probing: Vec<_> = firing
            .iter()
            .filter(|a| a.kind == AlertKind::UnregisteredKey)
            .collect();
        assert_eq!(probing.len(), 1, "{}", s.backend);
        assert!(
            probing[0].title.contains("3 requests"),
            "{}",
            probing[0].title
        );
    }
}

//! Alert email: messages rendered from `templates/email/`, kept in the
//! outbox table until a server accepts them, and sent over SMTP (lettre) or,
//! with no SMTP configured, written as `.eml` files into a folder.
//!
//! Delivery is at least once and, in practice, exactly once: a message is
//! marked sent in the store right after the server accepts it, and a
//! failed attempt is retried with backoff until it is accepted.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::NaiveDateTime;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use minijinja::Environment;
use tally_schema::rows::OutboxRow;

use crate::db::{AnyConnection, DbError, repo};
use crate::settings::EmailSettings;

/// What can go wrong with email.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The configuration is wrong.
    #[error("email: {0}")]
    Config(String),
    /// An address cannot be used.
    #[error("email address `{0}`: {1}")]
    Address(String, String),
    /// The server refused or could not be reached.
    #[error("sending: {0}")]
    Send(String),
    /// The outbox folder.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A template.
    #[error("rendering {0}")]
    Template(String),
    /// The store.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Where messages go.
enum Sink {
    Smtp(Box<SmtpTransport>),
    Folder(PathBuf),
}

/// A configured sender.
pub struct Mailer {
    sink: Sink,
    from: Mailbox,
    /// Where links in messages point.
    pub base_url: String,
}

/// The URL lettre understands for ours: `smtp://` means STARTTLS required
/// unless the URL says `tls=none` (a plain relay on loopback) or another
/// `tls=` mode.
fn lettre_url(url: &str) -> Result<String, MailError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let tls = pairs
        .iter()
        .find_map(|p| p.strip_prefix("tls="))
        .map(str::to_owned);
    let scheme = base.split_once("://").map(|(s, _)| s).unwrap_or("");
    match (scheme, tls.as_deref()) {
        ("smtp", None) => pairs.push("tls=required"),
        ("smtp", Some("none")) => pairs.retain(|p| !p.starts_with("tls=")),
        ("smtp", Some("required" | "opportunistic")) | ("smtps", _) => {}
        ("smtp", Some(other)) => {
            return Err(MailError::Config(format!(
                "smtp_url: tls={other}: use required (the default), opportunistic or none"
            )));
        }
        _ => {
            return Err(MailError::Config(
                "smtp_url must start with smtp:// or smtps://".to_owned(),
            ));
        }
    }
    Ok(if pairs.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", pairs.join("&"))
    })
}

/// The server's host name in a URL (what its certificate must name).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    }
}

/// TLS that also trusts the roots in `ca_file`, in the URL's mode; `None`
/// for a URL without TLS.
fn tls_with_ca(url: &str, ca_file: &str) -> Result<Option<Tls>, MailError> {
    let pem = std::fs::read(ca_file).map_err(|source| MailError::Io {
        path: ca_file.to_owned(),
        source,
    })?;
    let cert = Certificate::from_pem(&pem)
        .map_err(|e| MailError::Config(format!("ca_file {ca_file}: {e}")))?;
    let params = || {
        TlsParameters::builder(host_of(url).to_owned())
            .add_root_certificate(cert.clone())
            .build_rustls()
            .map_err(|e| MailError::Config(format!("ca_file {ca_file}: {e}")))
    };
    Ok(if url.starts_with("smtps://") {
        Some(Tls::Wrapper(params()?))
    } else if url.contains("tls=required") {
        Some(Tls::Required(params()?))
    } else if url.contains("tls=opportunistic") {
        Some(Tls::Opportunistic(params()?))
    } else {
        None
    })
}

fn mailbox(s: &str) -> Result<Mailbox, MailError> {
    s.trim()
        .parse()
        .map_err(|e: lettre::address::AddressError| {
            MailError::Address(s.trim().to_owned(), e.to_string())
        })
}

/// Checks the `[email]` settings without connecting.
pub fn check(e: &EmailSettings) -> Result<(), MailError> {
    Mailer::new(e).map(|_| ())
}

impl Mailer {
    /// Builds the sender the settings describe (no connection yet).
    pub fn new(e: &EmailSettings) -> Result<Self, MailError> {
        let from = mailbox(&e.from)?;
        let sink = match &e.smtp_url {
            Some(url) => {
                let url = lettre_url(url.expose())?;
                let mut b = SmtpTransport::from_url(&url)
                    .map_err(|err| {
                        MailError::Config(format!(
                            "smtp_url: {}",
                            crate::db::redact(&err.to_string())
                        ))
                    })?
                    .timeout(Some(Duration::from_secs(e.timeout_s.max(1))));
                if let Some(ca) = &e.ca_file
                    && let Some(tls) = tls_with_ca(&url, ca)?
                {
                    b = b.tls(tls);
                }
                Sink::Smtp(Box::new(b.build()))
            }
            None => Sink::Folder(PathBuf::from(&e.outbox_dir)),
        };
        Ok(Self {
            sink,
            from,
            base_url: e.base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Where messages go, in words, for logs and the CLI.
    pub fn describe(&self) -> String {
        match &self.sink {
            Sink::Smtp(_) => "SMTP".to_owned(),
            Sink::Folder(p) => format!("the folder {}", p.display()),
        }
    }

    /// Sends one message. `id` makes its Message-ID (and file name), so a
    /// message retried after a lost reply can be recognised downstream.
    pub fn send(
        &self,
        id: i64,
        to: &str,
        subject: &str,
        text: &str,
        html: &str,
    ) -> Result<(), MailError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!(
                "<tally-outbox-{id}@{}>",
                self.from.email.domain()
            )));
        // One address that cannot be used (stored before addresses were
        // checked on write) must not cost the others their message.
        let mut any = false;
        for addr in addresses_in(to) {
            match mailbox(addr) {
                Ok(m) => {
                    b = b.to(m);
                    any = true;
                }
                Err(e) => tracing::warn!(outbox_id = id, error = %e, "recipient left out"),
            }
        }
        if !any {
            return Err(MailError::Address(
                to.to_owned(),
                "no usable recipient".to_owned(),
            ));
        }
        let msg = b
            .multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))
            .map_err(|e| MailError::Send(e.to_string()))?;
        match &self.sink {
            Sink::Smtp(t) => t
                .send(&msg)
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
            Sink::Folder(dir) => {
                let io = |path: &std::path::Path, source| MailError::Io {
                    path: path.display().to_string(),
                    source,
                };
                crate::files::create_private_dir(dir).map_err(|s| io(dir, s))?;
                let path = dir.join(format!("{id:08}.eml"));
                // Written whole then renamed: a reader never sees half a message.
                let tmp = dir.join(format!(".{id:08}.eml.tmp"));
                crate::files::create_private(&tmp)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, &msg.formatted()))
                    .map_err(|s| io(&tmp, s))?;
                std::fs::rename(&tmp, &path).map_err(|s| io(&path, s))
            }
        }
    }
}

/// Every email template, compiled into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("alert.txt", include_str!("../../templates/email/alert.txt")),
    (
        "alert.html",
        include_str!("../../templates/email/alert.html"),
    ),
    (
        "digest.txt",
        include_str!("../../templates/email/digest.txt"),
    ),
    (
        "digest.html",
        include_str!("../../templates/email/digest.html"),
    ),
    ("test.txt", include_str!("../../templates/email/test.txt")),
    ("test.html", include_str!("../../templates/email/test.html")),
];

fn build_env() -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    // `.html` templates escape every value; `.txt` ones do not need to.
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|e| format!("templates/email/{name}: {e}"))?;
    }
    Ok(env)
}

static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();

/// Renders `{name}.txt` and `{name}.html` with `ctx`.
pub fn render(name: &str, ctx: &minijinja::Value) -> Result<(String, String), MailError> {
    let env = ENV
        .get_or_init(build_env)
        .as_ref()
        .map_err(|e| MailError::Template(e.clone()))?;
    let one = |file: String| {
        env.get_template(&file)
            .and_then(|t| t.render(ctx))
            .map_err(|e| MailError::Template(format!("{file}: {e:#}")))
    };
    Ok((one(format!("{name}.txt"))?, one(format!("{name}.html"))?))
}

/// The wait before attempt `attempts + 1`: 30 s doubling, at most 5 min, so
/// a server back after an outage gets everything within five minutes.
pub fn backoff(attempts: i64) -> chrono::Duration {
    let shift = u32::try_from(attempts.clamp(0, 10)).unwrap_or(10);
    chrono::Duration::seconds((30_i64 << shift).min(300))
}

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flushed {
    /// Accepted by the server.
    pub sent: u64,
    /// Failed this pass (retried later).
    pub failed: u64,
    /// Still waiting (not yet due, or left after a connection failure).
    pub waiting: u64,
}

/// Sends every message that is due. A failure to reach the server ends
/// the pass (the rest would fail the same way); each failure is retried
/// after [`backoff`].
pub fn flush(
    conn: &mut AnyConnection,
    mailer: &Mailer,
    now: NaiveDateTime,
) -> Result<Flushed, MailError> {
    let mut out = Flushed::default();
    let due = repo::due_messages(conn, now, 500)?;
    let mut rest = due.into_iter();
    for m in rest.by_ref() {
        let OutboxRow {
            id,
            recipients,
            subject,
            body_text,
            body_html,
            attempts,
            ..
        } = m;
        match mailer.send(id, &recipients, &subject, &body_text, &body_html) {
            Ok(()) => {
                repo::mark_sent(conn, id, now)?;
                out.sent += 1;
            }
            // No address of it can ever be used: retrying cannot help.
            Err(e @ MailError::Address(..)) => {
                tracing::error!(outbox_id = id, error = %e, "email has no usable recipient; not retried");
                repo::mark_failed(conn, id, &e.to_string(), now + chrono::Duration::days(3650))?;
                out.failed += 1;
            }
            Err(e) => {
                tracing::warn!(outbox_id = id, attempts = attempts + 1, error = %e, "email not sent; will retry");
                repo::mark_failed(conn, id, &e.to_string(), now + backoff(attempts))?;
                out.failed += 1;
                if matches!(e, MailError::Send(_) | MailError::Io { .. }) {
                    break;
                }
            }
        }
    }
    out.waiting = repo::unsent_count(conn)?;
    Ok(out)
}

/// The addresses in a contact field: comma- or semicolon-separated.
pub fn addresses_in(field: &str) -> impl Iterator<Item = &str> {
    field
        .split([',', ';'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
}

/// Checks a contact field where it is written (keys, owners, quotas,
/// configuration): every address in it must be one a message can be sent
/// to, so a typo is refused then, not found when an alert is lost.
pub fn check_contact(field: &str) -> Result<(), String> {
    for a in addresses_in(field) {
        if a.chars().any(char::is_control) {
            return Err(format!(
                "`{}` holds a control character",
                crate::text::printable(a)
            ));
        }
        a.parse::<lettre::Address>()
            .map_err(|e| format!("`{a}` is not an email address ({e})"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_address_costs_only_itself_its_message() {
        // Issue 16: `not-an-email` beside a good address once kept the
        // message from everyone, retried for ever.
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::new(&EmailSettings {
            outbox_dir: dir.path().display().to_string(),
            ..EmailSettings::default()
        })
        .unwrap();
        mailer
            .send(
                7,
                "not-an-email, a@example.com; b@example.com",
                "s",
                "t",
                "<p>h</p>",
            )
            .unwrap();
        let eml_path = dir.path().join("00000007.eml");
        let eml = std::fs::read_to_string(&eml_path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&eml_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "an .eml is its owner's alone");
        }
        let to = eml.lines().find(|l| l.starts_with("To:")).unwrap();
        assert!(
            to.contains("a@example.com") && to.contains("b@example.com"),
            "{to}"
        );
        assert!(!to.contains("not-an-email"), "{to}");
        let e = mailer.send(8, "not-an-email", "s", "t", "h").unwrap_err();
        assert!(matches!(e, MailError::Address(..)), "{e}");
    }

    #[test]
    fn smtp_urls_mean_starttls_unless_they_say_otherwise() {
        assert_eq!(
            lettre_url("smtp://u:p@mail.example.com:587").unwrap(),
            "smtp://u:p@mail.example.com:587?tls=required"
        );
        assert_eq!(
            lettre_url("smtp://127.0.0.1:2525?tls=none").unwrap(),
            "smtp://127.0.0.1:2525"
        );
        assert_eq!(
            lettre_url("smtps://mail.example.com").unwrap(),
            "smtps://mail.example.com"
        );
        assert!(lettre_url("http://mail.example.com").is_err());
        assert!(lettre_url("smtp://h?tls=maybe").is_err());
    }

    #[test]
    fn the_host_is_what_the_certificate_must_name() {
        assert_eq!(
            host_of("smtp://u:p@mail.example.com:587?tls=required"),
            "mail.example.com"
        );
        assert_eq!(host_of("smtps://127.0.0.1:465"), "127.0.0.1");
        assert_eq!(host_of("smtp://[::1]:25"), "::1");
        assert_eq!(host_of("smtp://relay/ehlo.example.com"), "relay");
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let secs: Vec<i64> = (0..6).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 300, 300]);
    }

    #[test]
    fn html_parts_escape_what_they_show() {
        let ctx = minijinja::context! {
            title => "<script>x</script> at 80 %",
            kind => "quota_threshold",
            lines => vec![("Owner", "<b>o</b>")],
            rows => Vec::<(String, String)>::new(),
            link => "http://h/quotas",
        };
        let (text, html) = render("alert", &ctx).unwrap();
        assert!(text.contains("<script>x</script> at 80 %"));
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        assert!(!html.contains("<b>o</b>"));
    }
}

//! A real SMTP server for the email tests: aiosmtpd (Debian's
//! `python3-aiosmtpd`, installed by `.ci/run`) on 127.0.0.1, run by
//! `smtp_sink.py`, keeping each message it accepts for the test to read.
#![expect(
    clippy::unwrap_used,
    reason = "test support: a failure is a failed test"
)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use tally_service::mail;
use tally_service::settings::{EmailSettings, Secret};

use crate::common::root;

/// A real SMTP server on loopback that keeps what it accepts.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    /// `smtp_sink.py`'s options (TLS, credentials).
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// What the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// Envelope recipients.
    pub to: Vec<String>,
    /// Subject, unfolded.
    pub subject: String,
    /// The user that authenticated, if any.
    pub auth: Option<String>,
    /// Whether the session was encrypted.
    pub tls: bool,
    /// The message, quoted-printable soft breaks and escapes undone.
    pub text: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Smtp {
    /// Starts one on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with `smtp_sink.py` options: `--starttls CERT KEY`,
    /// `--tls CERT KEY`, `--auth USER:PASS`.
    pub fn start_with(args: &[&str]) -> Self {
        let mut s = Self {
            port: free_port(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.resume();
        s
    }

    /// Starts (again) on the same port and folder.
    pub fn resume(&mut self) {
        // Debian's python3 has aiosmtpd from the package; another python3
        // first on PATH (pyenv) may not.
        let python =
            std::env::var("TALLY_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned());
        let mut child = Command::new(&python)
            .arg(root().join("service/tests/smtp_sink.py"))
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::piped())
            // Its log (a refused handshake is a traceback there) stays
            // beside what it received.
            .stderr(std::fs::File::create(self.dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{python}: {e}: install python3-aiosmtpd (.ci/run does)"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP server did not start (is python3-aiosmtpd installed?)"
        );
        self.child = Some(child);
    }

    /// Stops it: connections are refused until [`Smtp::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// A sender to it.
    pub fn mailer(&self) -> mail::Mailer {
        mail::Mailer::new(&EmailSettings {
            smtp_url: Some(Secret::new(format!(
                "smtp://127.0.0.1:{}?tls=none",
                self.port
            ))),
            timeout_s: 5,
            ..EmailSettings::default()
        })
        .unwrap()
    }

    /// Everything it accepted, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                let data = v["data"].as_str().unwrap().replace("\r\n", "\n");
                // The header, unfolded (long subjects continue on lines
                // that start with a space).
                let mut subject = String::new();
                let mut lines = data.lines().skip_while(|l| !l.starts_with("Subject: "));
                if let Some(first) = lines.next() {
                    subject.push_str(&first["Subject: ".len()..]);
                    for l in lines.take_while(|l| l.starts_with(' ')) {
                        subject.push_str(l);
                    }
                }
                let text = data
                    .replace("=\n", "")
                    .replace("=3D", "=")
                    .replace("=20", " ");
                Received {
                    to: v["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_owned())
                        .collect(),
                    subject,
                    auth: v["auth"].as_str().map(str::to_owned),
                    tls: v["tls"].as_bool().unwrap_or(false),
                    text,
                }
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Smtp {
    /// Waits (up to 30 s) until `pred` holds of what it received.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                std::time::Instant::now() < end,
                "no {what} within 30 s: {got:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The URL `[email] smtp_url` takes for it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }
}

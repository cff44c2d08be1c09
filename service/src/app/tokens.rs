//! Service tokens: who may call `tally serve`, and as what.
//!
//! A token is 32 random bytes, printed once when created; the store keeps
//! only its SHA-256 (a token has full entropy, so a fast hash is enough:
//! there is nothing to brute-force) and its last four characters, so
//! people can tell tokens apart in a list.

use chrono::NaiveDateTime;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tally_schema::rows::{NewSession, NewToken, TokenRow};

use crate::app::error::AppError;
use crate::db::{AnyConnection, DbError, repo};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read reports and exports.
    Finance,
    /// Manage owners, keys, prices, aliases and quotas; read reports.
    Platform,
    /// Push usage only.
    Ingest,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Finance, Role::Platform, Role::Ingest];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::Platform => "platform",
            Role::Ingest => "ingest",
        }
    }

    /// The role of a stored name.
    pub fn from_name(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Who a request is from: a live token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A token as listed: never the token, never its hash.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub name: String,
    pub role: String,
    /// `...` and the last four characters.
    pub hint: String,
    /// Created, UTC.
    pub created_at: NaiveDateTime,
    /// Revoked, UTC.
    pub revoked_at: Option<NaiveDateTime>,
}

impl From<TokenRow> for TokenView {
    fn from(t: TokenRow) -> Self {
        Self {
            name: t.name,
            role: t.role,
            hint: format!("...{}", t.last4),
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// The prefix of every token, so a leaked one is recognisable (and
/// secret scanners can be taught it).
pub const PREFIX: &str = "tally_";

/// SHA-256 hex of a token, as stored.
pub fn hash(token: &str) -> String {
    tally_reconcile::keys::hex(&Sha256::digest(token.as_bytes()))
}

/// Makes a token for `name` with `role`, stores its hash, and returns the
/// token: the only time it exists outside its holder.
pub fn create(
    conn: &mut AnyConnection,
    name: &str,
    role: Role,
    now: NaiveDateTime,
) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(AppError::Invalid(
            "a token needs a name (printable text)".to_owned(),
        ));
    }
    let token = format!("{PREFIX}{}", random_hex()?);
    let last4 = token.get(token.len().saturating_sub(4)..).unwrap_or("");
    repo::insert_token(
        conn,
        &NewToken {
            name,
            role: role.as_str(),
            token_sha256: &hash(&token),
            last4,
            created_at: now,
        },
    )?;
    Ok(token)
}

/// Every token, live and revoked.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<TokenView>, DbError> {
    Ok(repo::tokens(conn)?.into_iter().map(Into::into).collect())
}

/// Revokes the live token named `name`; whether there was one.
pub fn revoke(conn: &mut AnyConnection, name: &str, now: NaiveDateTime) -> Result<bool, DbError> {
    repo::revoke_token(conn, name, now)
}

/// Who holds `token`, if it is live. A stored role this build does not
/// know (a newer version's) grants nothing.
pub fn authenticate(conn: &mut AnyConnection, token: &str) -> Result<Option<Principal>, DbError> {
    if !token.starts_with(PREFIX) {
        return Ok(None);
    }
    Ok(repo::live_token(conn, &hash(token))?
        .and_then(|t| Role::from_name(&t.role).map(|role| Principal { name: t.name, role })))
}

/// How long a browser session lasts.
pub const SESSION_HOURS: i64 = 12;

/// 32 random bytes as hex (session ids, form tokens).
pub fn random_hex() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Io(format!("no randomness: {e}")))?;
    Ok(tally_reconcile::keys::hex(&bytes))
}

/// A signed-in browser session: its id (the cookie) and its form token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id, for the cookie only.
    pub id: String,
    /// The token every state-changing form carries.
    pub csrf: String,
}

/// What signing in with a token came to.
#[derive(Debug)]
pub enum SignIn {
    /// A new session.
    Signed(Principal, Session),
    /// Not a live token.
    NotLive,
    /// A live token whose role may not use the pages.
    RoleRefused(Role),
}

/// Signs in with a token: a new session if it is live and its role is in
/// `allowed`.
pub fn sign_in(
    conn: &mut AnyConnection,
    token: &str,
    allowed: &[Role],
    now: NaiveDateTime,
) -> Result<SignIn, AppError> {
    let token = token.trim();
    if !token.starts_with(PREFIX) {
        return Ok(SignIn::NotLive);
    }
    let Some(row) = repo::live_token(conn, &hash(token))? else {
        return Ok(SignIn::NotLive);
    };
    let Some(role) = Role::from_name(&row.role) else {
        return Ok(SignIn::NotLive);
    };
    if !allowed.contains(&role) {
        return Ok(SignIn::RoleRefused(role));
    }
    let session = Session {
        id: random_hex()?,
        csrf: random_hex()?,
    };
    repo::insert_session(
        conn,
        &NewSession {
            session_sha256: &hash(&session.id),
            token_id: row.id,
            csrf: &session.csrf,
            created_at: now,
            expires_at: now + chrono::Duration::hours(SESSION_HOURS),
        },
    )?;
    Ok(SignIn::Signed(
        Principal {
            name: row.name,
            role,
        },
        session,
    ))
}

/// Who a session cookie is, and its form token, while it is live.
pub fn session(
    conn: &mut AnyConnection,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<(Principal, String)>, DbError> {
    Ok(
        repo::live_session(conn, &hash(id), now)?.and_then(|(t, csrf)| {
            Role::from_name(&t.role).map(|role| (Principal { name: t.name, role }, csrf))
        }),
    )
}

/// Ends a session (and sweeps expired ones).
pub fn sign_out(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> Result<(), DbError> {
    repo::delete_session(conn, &hash(id), now)
}

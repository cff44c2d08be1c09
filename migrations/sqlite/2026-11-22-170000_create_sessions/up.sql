-- Browser sessions of the pages (issue 4): signing in with a token makes a
-- session whose id lives only in an HttpOnly cookie; the store keeps the
-- id's SHA-256, the token it stands for (revoking the token ends its
-- sessions), the form (CSRF) token and when it expires.

CREATE TABLE web_sessions (
    id INTEGER PRIMARY KEY,
    session_sha256 TEXT NOT NULL UNIQUE,
    token_id BIGINT NOT NULL REFERENCES api_tokens (id),
    csrf TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

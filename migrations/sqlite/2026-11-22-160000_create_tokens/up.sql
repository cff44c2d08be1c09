-- Service tokens for `tally serve` (issue 4). Only a token's SHA-256 is kept
-- (the token is printed once, at creation); a revoked token stays listed.
-- A name is unique among live tokens, so a revoked one's name can be reused.

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    last4 TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

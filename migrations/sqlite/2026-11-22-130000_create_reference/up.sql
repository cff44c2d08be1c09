-- Owners, keys, model aliases and prices (issue 3): what `tally run` prices
-- and attributes with. Multi-valued key names are JSON arrays of strings.

CREATE TABLE owners (
    id INTEGER PRIMARY KEY,
    team TEXT NOT NULL,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    contact TEXT,
    UNIQUE (team, service, env)
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    alias TEXT,
    last4 TEXT,
    labels TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    owner_id BIGINT REFERENCES owners (id),
    contact TEXT
);

CREATE TABLE model_aliases (
    alias TEXT PRIMARY KEY,
    model TEXT NOT NULL
);

-- Prices in nano-dollars per million tokens; a model's prices form a
-- schedule by effective_from (UTC).
CREATE TABLE prices (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    effective_from TIMESTAMP NOT NULL,
    currency TEXT NOT NULL,
    input_nanos BIGINT NOT NULL,
    cached_input_nanos BIGINT NOT NULL,
    cache_write_nanos BIGINT NOT NULL,
    output_nanos BIGINT NOT NULL,
    reasoning_nanos BIGINT,
    imported_at TIMESTAMP NOT NULL,
    UNIQUE (model, effective_from)
);

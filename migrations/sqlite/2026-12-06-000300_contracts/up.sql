-- Contracted rates (issue 20): a share off the list price for the model
-- families a contract names, from one date (to another, or open ended).
-- The price catalog stays the provider's list; FOCUS ContractedCost and
-- tally reprice apply the contract in force on the day.
CREATE TABLE contracts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    models TEXT NOT NULL,
    discount TEXT NOT NULL,
    effective_from_ms BIGINT NOT NULL,
    effective_to_ms BIGINT,
    -- Committed-spend tiers, JSON: [["from_spend", "share"], ...] ascending.
    tiers TEXT NOT NULL DEFAULT '[]'
);

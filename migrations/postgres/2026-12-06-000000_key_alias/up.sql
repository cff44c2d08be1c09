-- The gateway's own name for a row's key (issue 19): LiteLLM's
-- `metadata.user_api_key_alias`, OpenRouter's `api_key_name`. A leaked-key
-- alert names it, so on-call can find the key in the gateway's own screens.
-- Rows stored before have none ("").
ALTER TABLE usage_rows ADD COLUMN key_alias TEXT NOT NULL DEFAULT '';

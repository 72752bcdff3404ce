-- Secrets the whole deployment shares and keeps across restarts, made at random by the
-- first node that needs one (INSERT ... ON CONFLICT DO NOTHING, then read back: every
-- node ends up with the same value). 'muc-occupant-id' keys the XEP-0421 occupant ids,
-- so that they cannot be recomputed from a room and a user's address (docs/security.md).
CREATE TABLE deployment_secrets (
    name text PRIMARY KEY,
    secret bytea NOT NULL CHECK (octet_length(secret) >= 16),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Accounts of the served domains. The password is never stored: only the SCRAM
-- salt, iteration count, and per-hash StoredKey and ServerKey (RFC 5802 §3).
CREATE TABLE accounts (
    domain            text        NOT NULL,
    username          text        NOT NULL,
    salt              bytea       NOT NULL,
    iterations        integer     NOT NULL CHECK (iterations > 0),
    sha1_stored_key   bytea       NOT NULL,
    sha1_server_key   bytea       NOT NULL,
    sha256_stored_key bytea       NOT NULL,
    sha256_server_key bytea       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, username)
);

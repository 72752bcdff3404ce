-- Offline messages (XEP-0160): a chat or normal message to an account none of whose
-- resources is available is kept here and delivered, oldest first, to the account's
-- next resource that comes online with a non-negative priority; deleting the account
-- deletes them.
CREATE TABLE offline_messages (
    id        bigserial   PRIMARY KEY,
    domain    text        NOT NULL,
    username  text        NOT NULL,
    stanza    text        NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
CREATE INDEX offline_messages_account ON offline_messages (domain, username, id);

-- Whether a session has sent available presence, and with which priority: a message to
-- a bare JID goes to the nodes of available resources, and is kept offline when there
-- is none. Rows of nodes that predate this column count as available, as they were
-- treated before.
ALTER TABLE sessions ADD COLUMN available boolean NOT NULL DEFAULT true;
ALTER TABLE sessions ADD COLUMN priority integer NOT NULL DEFAULT 0;

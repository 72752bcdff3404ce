-- Multi-User Chat rooms and their durable state (XEP-0045). Temporary rooms have
-- rows too while they exist, so their affiliations can be kept; a node removes
-- leftover temporary rooms when it starts.
CREATE TABLE rooms (
    jid           text        PRIMARY KEY,
    configuration jsonb       NOT NULL,
    persistent    boolean     NOT NULL,
    subject       text        NOT NULL DEFAULT '',
    subject_nick  text,
    subject_stamp double precision,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE room_affiliations (
    room        text        NOT NULL REFERENCES rooms (jid) ON DELETE CASCADE,
    jid         text        NOT NULL,
    affiliation text        NOT NULL CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
    reason      text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, jid)
);

CREATE TABLE room_history (
    room   text             NOT NULL REFERENCES rooms (jid) ON DELETE CASCADE,
    id     bigserial,
    stamp  double precision NOT NULL,
    nick   text             NOT NULL,
    stanza text             NOT NULL,
    PRIMARY KEY (room, id)
);

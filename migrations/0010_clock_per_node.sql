-- Migration 0009 kept the time of the latest heartbeat in one row (`cluster_clock`),
-- updated by a trigger on every heartbeat and registration of every node. That row
-- made every node's heartbeat wait for every other node's: one heartbeat whose commit
-- was slow (a busy machine, a slow disk) held its lock, the others queued behind it and
-- several nodes lost their leases together (seen by the churn harness a few seconds
-- after a PostgreSQL restart, lock waits of 1.7 s on `cluster_clock`).
--
-- Each node now keeps its own row: a heartbeat locks only what belongs to its node.
-- The last heartbeat anyone made before the database's current run started is the
-- latest of the nodes' own.
CREATE TABLE IF NOT EXISTS cluster_node_clock (
    name         text        PRIMARY KEY,
    last_beat    timestamptz NOT NULL DEFAULT '-infinity',
    before_start timestamptz NOT NULL DEFAULT '-infinity'
);

-- What the shared row knew is kept under the empty name (no node is called that):
-- the next heartbeats after this migration must not forget a start that came just before.
INSERT INTO cluster_node_clock (name, last_beat, before_start)
SELECT '', last_beat, before_start FROM cluster_clock WHERE id = 1
ON CONFLICT (name) DO NOTHING;

CREATE OR REPLACE FUNCTION conclave_clock_beat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cluster_node_clock AS c (name, last_beat) VALUES (NEW.name, NEW.heartbeat_at)
    ON CONFLICT (name) DO UPDATE SET
        before_start = CASE WHEN c.last_beat < pg_postmaster_start_time() THEN c.last_beat ELSE c.before_start END,
        last_beat = greatest(c.last_beat, EXCLUDED.last_beat);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION conclave_last_beat_before_start() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT max(CASE WHEN last_beat < pg_postmaster_start_time() THEN last_beat ELSE before_start END)
    FROM cluster_node_clock
$$;

DROP TABLE cluster_clock;

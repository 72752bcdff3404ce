-- The grace after a PostgreSQL (re)start (migration 0005) is for leases that ran out
-- while the database was down: nobody could heartbeat. A lease that had run out before
-- it went down says the node was dead already, and must not make that node look alive
-- for ten seconds — the ring would hand it rooms, and their input would go to a node
-- that is not there (seen when a cluster was started again after a node was killed).
--
-- When the database went down is not recorded, but the last heartbeat anyone made
-- before it is close: `cluster_clock` keeps the time of the latest heartbeat or
-- registration (`last_beat`) and, from the first one after a start, the latest one
-- before that start (`before_start`). A node alive when the database went down holds a
-- lease beyond that time; a node that had died before does not.
CREATE TABLE IF NOT EXISTS cluster_clock (
    id           int         PRIMARY KEY CHECK (id = 1),
    last_beat    timestamptz NOT NULL DEFAULT '-infinity',
    before_start timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO cluster_clock (id, last_beat)
SELECT 1, coalesce(max(heartbeat_at), '-infinity') FROM cluster_nodes
ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE FUNCTION conclave_clock_beat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE cluster_clock SET
        before_start = CASE WHEN last_beat < pg_postmaster_start_time() THEN last_beat ELSE before_start END,
        last_beat = greatest(last_beat, NEW.heartbeat_at)
    WHERE id = 1;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS cluster_nodes_clock ON cluster_nodes;
CREATE TRIGGER cluster_nodes_clock AFTER INSERT OR UPDATE OF heartbeat_at ON cluster_nodes
    FOR EACH ROW EXECUTE FUNCTION conclave_clock_beat();

-- The last heartbeat anyone made before the database's current run started.
CREATE OR REPLACE FUNCTION conclave_last_beat_before_start() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN last_beat < pg_postmaster_start_time() THEN last_beat ELSE before_start END
    FROM cluster_clock WHERE id = 1
$$;

CREATE OR REPLACE FUNCTION conclave_alive(lease_until timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT lease_until > now() OR (
        now() < pg_postmaster_start_time() + interval '10 seconds'
        AND lease_until >= coalesce(conclave_last_beat_before_start(), '-infinity'))
$$;

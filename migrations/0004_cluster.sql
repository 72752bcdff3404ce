-- The cluster (docs/cluster.md): node membership with leases, fenced room ownership,
-- the session directory, room occupancy, and the events table behind LISTEN/NOTIFY.

-- One row per node name. A node is alive while lease_until is in the future (by the
-- database's clock, the only clock every node agrees on); each registration bumps the
-- incarnation, so links and sessions of an earlier run of the same node are told apart.
CREATE TABLE cluster_nodes (
    name         text        PRIMARY KEY,
    link_address text        NOT NULL,
    incarnation  bigint      NOT NULL DEFAULT 1,
    state        text        NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'draining', 'left')),
    lease_until  timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- The owner of a room and its fencing epoch. node IS NULL: released by its last owner
-- (hand-over), free to claim. Every durable write of a room checks (node, epoch).
CREATE TABLE room_owners (
    room       text        PRIMARY KEY,
    node       text,
    epoch      bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Which node holds each bound full JID.
CREATE TABLE sessions (
    jid      text        PRIMARY KEY,
    bare     text        NOT NULL,
    node     text        NOT NULL,
    bound_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_bare ON sessions (bare);
CREATE INDEX sessions_node ON sessions (node);

-- Who is in each room, so that a new owner continues it.
CREATE TABLE room_occupants (
    room      text        NOT NULL REFERENCES rooms (jid) ON DELETE CASCADE,
    real_jid  text        NOT NULL,
    nick      text        NOT NULL,
    role      text        NOT NULL,
    presence  text        NOT NULL,
    home_node text        NOT NULL,
    position  bigint      NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, real_jid)
);
CREATE INDEX room_occupants_home ON room_occupants (home_node);

-- A room waiting for its first configuration is locked (XEP-0045 §10.1.2).
ALTER TABLE rooms ADD COLUMN locked boolean NOT NULL DEFAULT false;

-- Every change other nodes must learn about, in commit order of their ids. A node
-- keeps the last id it handled and, after reconnecting, reads what it missed.
-- origin: 'node:epoch' of the room owner that wrote it (set with
-- set_config('conclave.origin', …, true)), NULL for the CLI and plain SQL.
CREATE TABLE events (
    id         bigserial   PRIMARY KEY,
    kind       text        NOT NULL,
    room       text,
    node       text,
    origin     text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION conclave_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('conclave', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION conclave_notify_event();

-- Affiliation changes by anyone (an owner node, the CLI, psql) become events.
CREATE FUNCTION conclave_affiliation_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, room, origin)
    VALUES ('affiliation', COALESCE(NEW.room, OLD.room), NULLIF(current_setting('conclave.origin', true), ''));
    RETURN NULL;
END $$;
CREATE TRIGGER room_affiliations_event AFTER INSERT OR UPDATE OR DELETE ON room_affiliations
    FOR EACH ROW EXECUTE FUNCTION conclave_affiliation_event();

-- Configuration changes and destruction of a room.
CREATE FUNCTION conclave_room_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO events (kind, room, origin)
        VALUES ('destroyed', OLD.jid, NULLIF(current_setting('conclave.origin', true), ''));
    ELSIF TG_OP = 'UPDATE' AND NEW.configuration IS DISTINCT FROM OLD.configuration THEN
        INSERT INTO events (kind, room, origin)
        VALUES ('configuration', NEW.jid, NULLIF(current_setting('conclave.origin', true), ''));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER rooms_event AFTER UPDATE OR DELETE ON rooms
    FOR EACH ROW EXECUTE FUNCTION conclave_room_event();

-- Node membership changes (join, drain, leave). Deaths are noticed by lease expiry.
CREATE FUNCTION conclave_node_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state
        OR NEW.incarnation IS DISTINCT FROM OLD.incarnation THEN
        INSERT INTO events (kind, node) VALUES ('nodes', NEW.name);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER cluster_nodes_event AFTER INSERT OR UPDATE ON cluster_nodes
    FOR EACH ROW EXECUTE FUNCTION conclave_node_event();

-- A released room: its ring owner may claim it now.
CREATE FUNCTION conclave_owner_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.node IS NULL AND OLD.node IS NOT NULL THEN
        INSERT INTO events (kind, room, node) VALUES ('released', NEW.room, OLD.node);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER room_owners_event AFTER UPDATE ON room_owners
    FOR EACH ROW EXECUTE FUNCTION conclave_owner_event();

-- A node is alive while its lease runs, and also during the first seconds after
-- PostgreSQL itself (re)started: while the database was down no node could heartbeat,
-- so an expired lease then says nothing about the node. Nodes get this long to renew
-- their leases before anyone treats them as dead (docs/cluster.md).
CREATE FUNCTION conclave_alive(lease_until timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT lease_until > now() OR now() < pg_postmaster_start_time() + interval '10 seconds'
$$;

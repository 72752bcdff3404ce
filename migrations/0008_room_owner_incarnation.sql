-- A room's owner row names the owning incarnation, not just the node's name: a row left
-- by an earlier run of a node (a restart under the same name, a crash, a cluster
-- started again with another size) no longer blocks the ring's owner from claiming the
-- room while the new run of that node lives (docs/cluster.md). Rows written before this
-- column existed have none: no live incarnation holds them.
ALTER TABLE room_owners ADD COLUMN incarnation bigint;

-- Each node looks up the rows that name it (the rooms it must release or serve).
CREATE INDEX room_owners_node ON room_owners (node) WHERE node IS NOT NULL;

-- Whether the owner row's incarnation is the live one of its node: the row's holder may
-- be serving the room. A row with no node, an unknown node, a node that left or whose
-- lease ended, or an earlier incarnation of a node is held by nobody.
CREATE FUNCTION conclave_owner_live(owner_node text, owner_incarnation bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM cluster_nodes n
        WHERE n.name = owner_node AND n.incarnation = owner_incarnation
            AND conclave_alive(n.lease_until) AND n.state <> 'left')
$$;

-- The rooms a user owns are counted when a join would create one more
-- (muc_limits.rooms_per_user): looked up by member JID, which the primary key
-- (room, jid) cannot serve.
CREATE INDEX room_affiliations_owner_jid ON room_affiliations (jid) WHERE affiliation = 'owner';

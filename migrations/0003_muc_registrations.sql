-- XEP-0045 §7.10: a member may reserve a nickname in a room; it is kept with the
-- affiliation, as the registration belongs to it.
ALTER TABLE room_affiliations ADD COLUMN nick text;

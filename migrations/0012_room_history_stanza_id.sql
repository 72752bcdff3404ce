-- A history entry's stanza-id (XEP-0359, given by the room), so that storing the same
-- entry again — a write retried after a timeout although it had committed — adds nothing.
-- Entries stored before this column have none (NULL), and never conflict.
ALTER TABLE room_history ADD COLUMN stanza_id text;
CREATE UNIQUE INDEX room_history_stanza_id ON room_history (room, stanza_id);

-- A history page lists the seqs hidden from its viewer (src/store/history.ts HIDDEN_SQL),
-- among them the messages the viewer deleted for themselves in that conversation. The
-- deletion row had no seq, so the page looked up every such message by primary key and
-- sorted them all before its limit (audit 6 of 2026-12, F5: 34,700 deletions, 109,101 rows
-- read, 111-275 ms per page). The row now carries the message's seq (a message's seq never
-- changes) and the index below lists a viewer's deletions of one conversation in seq
-- order, so the page reads them backwards from the top and stops at its limit.
-- As in 005, a trigger fills the column from the message, so inserts that do not name it
-- (src/store/messages.ts, or an instance of the previous build during a rolling deploy)
-- still get it, and it can be NOT NULL (message_id references private_messages, so every
-- row has its message to copy from).
-- On a large table, prepare it beforehand so this runs briefly: add the column
-- (`seq BIGINT`), run the CREATE OR REPLACE FUNCTION below (the existing trigger calls it,
-- so new rows get their seq from then on), fill the column in batches, and CREATE INDEX
-- CONCURRENTLY under the name below; each step here then skips what is done (README
-- "Running against an existing PostgreSQL").
ALTER TABLE message_deletions ADD COLUMN IF NOT EXISTS seq BIGINT;
CREATE OR REPLACE FUNCTION chat_message_deletion_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.conversation_id IS NULL OR NEW.seq IS NULL THEN
    SELECT COALESCE(NEW.conversation_id, m.conversation_id), COALESCE(NEW.seq, m.seq)
      INTO NEW.conversation_id, NEW.seq FROM private_messages m WHERE m.id = NEW.message_id;
  END IF;
  RETURN NEW;
END
$$;
-- 005's trigger calls this function by name: replacing it is enough.
UPDATE message_deletions d SET seq = m.seq FROM private_messages m WHERE m.id = d.message_id AND d.seq IS NULL;
ALTER TABLE message_deletions ALTER COLUMN seq SET NOT NULL;
-- The viewer's deletions of one conversation in seq order, index-only.
CREATE INDEX IF NOT EXISTS message_deletions_conv_seq ON message_deletions (user_id, conversation_id, seq);

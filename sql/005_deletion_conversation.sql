-- A history page lists the seqs hidden from its viewer (src/store/history.ts HIDDEN_SQL),
-- among them the messages the viewer deleted for themselves. message_deletions had no
-- conversation column, so that meant reading every deletion of the viewer, in every
-- conversation, on every page (a viewer with 20,000 such deletions elsewhere: 60,000 rows
-- read for a page of a 2-message conversation). The row now names its conversation.
-- A trigger fills it from the message, so inserts that do not name it (an instance of the
-- previous build during a rolling deploy) still get it, and it can be NOT NULL.
-- On a large table, prepare it beforehand so this runs briefly: add the column, fill it in
-- batches, and CREATE INDEX CONCURRENTLY under the name below; each step here then skips
-- what is done (README "Running against an existing PostgreSQL").
ALTER TABLE message_deletions ADD COLUMN IF NOT EXISTS conversation_id TEXT;
UPDATE message_deletions d SET conversation_id = m.conversation_id FROM private_messages m WHERE m.id = d.message_id AND d.conversation_id IS NULL;
ALTER TABLE message_deletions ALTER COLUMN conversation_id SET NOT NULL;
CREATE OR REPLACE FUNCTION chat_message_deletion_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.conversation_id IS NULL THEN
    SELECT m.conversation_id INTO NEW.conversation_id FROM private_messages m WHERE m.id = NEW.message_id;
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS message_deletions_conversation ON message_deletions;
CREATE TRIGGER message_deletions_conversation BEFORE INSERT ON message_deletions
  FOR EACH ROW EXECUTE FUNCTION chat_message_deletion_conversation();
-- The viewer's deletions of one conversation, index-only.
CREATE INDEX IF NOT EXISTS message_deletions_conversation ON message_deletions (user_id, conversation_id, message_id);

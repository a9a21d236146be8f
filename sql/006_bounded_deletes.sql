-- Deletions whose cost does not grow with the database (audit 6 of 2026-12, F1, F8).
-- Built inside the migration transaction (not CONCURRENTLY), which holds writes to the
-- indexed table while it builds; on a large table create the indexes beforehand with
-- CREATE INDEX CONCURRENTLY under these names, and this file then skips them
-- (README "Running against an existing PostgreSQL").
-- Deleting a message checks group_pins for pins of it (the ON DELETE CASCADE foreign key).
-- The primary key is (group_id, message_id), so without this index every deleted message
-- read the whole pin table: deleting a 20,000-message group with 6,000 pins anywhere took 2.3 s
-- in that check alone.
CREATE INDEX IF NOT EXISTS group_pins_message ON group_pins (message_id);
-- Sync tombstones of a conversation deletion (src/store/sync.ts) are read in stream order,
-- message id within the deletion, and stop at the page size, instead of reading every
-- hidden message of the deletion on every page.
CREATE INDEX IF NOT EXISTS private_messages_conv_id ON private_messages (conversation_id, id);
-- A group being purged (src/store/groupPurge.ts): deleted for good (delete_group
-- permanent, the last member leaving, or the purge of a soft deletion), its messages
-- removed in batches, then the group row. Never restored. Adding a column with a constant
-- default does not rewrite the table. A purging group is never active again: the check
-- refuses a restore from an instance of the previous build during a rolling deploy (it
-- knows nothing of `purging`), instead of leaving a live group whose rows are being deleted.
ALTER TABLE group_chats ADD COLUMN IF NOT EXISTS purging BOOLEAN NOT NULL DEFAULT false
  CONSTRAINT group_chats_purging_inactive CHECK (NOT (purging AND is_active));

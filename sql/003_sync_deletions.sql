-- Deletions "for me" in the sync stream (PROTOCOL §9: deletions reach sync as tombstones,
-- including messages the viewer deleted for themselves or hid with a conversation
-- deletion). Such a deletion changes no private_messages row, so each deletion row
-- carries the transaction that last wrote it; sync reads the viewer's deletion rows after
-- the cursor beside the changed messages (src/store/sync.ts).
-- Existing rows get this migration's transaction id: a device whose cursor predates the
-- migration receives their tombstones once, which is what it missed.
ALTER TABLE message_deletions ADD COLUMN change_xid XID8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE conversation_deletions ADD COLUMN change_xid XID8 NOT NULL DEFAULT pg_current_xact_id();
-- A repeated conversation deletion keeps what the previous one covered (up_to_seq and
-- change_xid), so a device that already synced past the previous one is sent tombstones
-- only for the messages the new one hides.
ALTER TABLE conversation_deletions ADD COLUMN prev_up_to_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversation_deletions ADD COLUMN prev_change_xid XID8;
CREATE INDEX message_deletions_sync ON message_deletions (user_id, change_xid);
CREATE INDEX conversation_deletions_sync ON conversation_deletions (user_id, change_xid);

-- History pages without a count over the conversation (audit 2 of 2026-12-05, F5, src/store/history.ts
-- HIDDEN_SQL): a page lists the seqs hidden from its viewer, newest first and capped, and
-- derives `total` and the offset position from the conversation's gap-free seq range.
-- These indexes make each kind of hidden message readable in seq order without scanning
-- the conversation's visible messages.
-- Built inside the migration transaction (not CONCURRENTLY), which holds writes to
-- private_messages while it builds; on a large table create them beforehand with
-- CREATE INDEX CONCURRENTLY under these names, and this file then skips them.
-- Deleted-for-everyone messages of a conversation.
CREATE INDEX IF NOT EXISTS private_messages_conv_deleted ON private_messages (conversation_id, seq) WHERE is_deleted;
-- A group's messages by sender (members hidden from a viewer by a block, PROTOCOL §5).
CREATE INDEX IF NOT EXISTS private_messages_group_sender ON private_messages (conversation_id, sender_id, seq) WHERE group_id IS NOT NULL;

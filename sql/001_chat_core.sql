-- Chat-owned tables (direct messages). User ids are text (opaque decimal strings).
-- Bodies are AES-256-GCM ciphertext only: key_id + 96-bit nonce + ciphertext||tag.
-- change_xid: the transaction that last created or changed the row (insert, edit,
-- delete, reaction, read); sync pages on (change_xid, id) below the snapshot xmin,
-- so a commit in flight during a sync is never skipped (see SYSTEM_DESIGN.md).
CREATE TABLE conversations (
  conversation_id TEXT PRIMARY KEY,
  kind            TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
  user_a          TEXT,
  user_b          TEXT,
  last_seq        BIGINT NOT NULL DEFAULT 0,
  last_message_at TIMESTAMPTZ,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX conversations_user_a ON conversations (user_a, updated_at DESC) WHERE kind = 'direct';
CREATE INDEX conversations_user_b ON conversations (user_b, updated_at DESC) WHERE kind = 'direct';

CREATE TABLE private_messages (
  id                UUID PRIMARY KEY,
  conversation_id   TEXT NOT NULL REFERENCES conversations(conversation_id) ON DELETE CASCADE,
  seq               BIGINT NOT NULL,
  sender_id         TEXT NOT NULL,
  recipient_id      TEXT,
  group_id          TEXT,
  key_id            TEXT NOT NULL,
  nonce             BYTEA NOT NULL,
  ciphertext        BYTEA NOT NULL,
  reply_to          UUID,
  client_message_id TEXT,
  mentions          JSONB,
  is_announcement   BOOLEAN NOT NULL DEFAULT false,
  is_read           BOOLEAN NOT NULL DEFAULT false,
  read_at           TIMESTAMPTZ,
  delivered_at      TIMESTAMPTZ,
  is_edited         BOOLEAN NOT NULL DEFAULT false,
  edited_at         TIMESTAMPTZ,
  is_deleted        BOOLEAN NOT NULL DEFAULT false,
  deleted_at        TIMESTAMPTZ,
  deleted_by        TEXT,
  created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
  change_xid        XID8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE UNIQUE INDEX private_messages_conv_seq ON private_messages (conversation_id, seq);
CREATE UNIQUE INDEX private_messages_client_id ON private_messages (sender_id, client_message_id) WHERE client_message_id IS NOT NULL;
CREATE INDEX private_messages_unread ON private_messages (recipient_id, conversation_id) WHERE NOT is_read AND NOT is_deleted;
CREATE INDEX private_messages_sync_recipient ON private_messages (recipient_id, change_xid) WHERE recipient_id IS NOT NULL;
CREATE INDEX private_messages_sync_sender ON private_messages (sender_id, change_xid) WHERE group_id IS NULL;

CREATE TABLE message_reactions (
  message_id UUID NOT NULL REFERENCES private_messages(id) ON DELETE CASCADE,
  user_id    TEXT NOT NULL,
  reaction   TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (message_id, user_id, reaction)
);

CREATE TABLE message_deletions (
  message_id UUID NOT NULL REFERENCES private_messages(id) ON DELETE CASCADE,
  user_id    TEXT NOT NULL,
  deleted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (message_id, user_id)
);

CREATE TABLE conversation_deletions (
  conversation_id TEXT NOT NULL REFERENCES conversations(conversation_id) ON DELETE CASCADE,
  user_id         TEXT NOT NULL,
  up_to_seq       BIGINT NOT NULL,
  deleted_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (conversation_id, user_id)
);

CREATE TABLE user_status (
  user_id    TEXT PRIMARY KEY,
  is_online  BOOLEAN NOT NULL DEFAULT false,
  last_seen  TIMESTAMPTZ,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

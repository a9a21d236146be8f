-- Groups (PROTOCOL §7). Group messages live in private_messages (group_id set,
-- recipient_id NULL) with their seq on the conversations row of kind 'group'
-- (conversation_id = group_id), so DMs and groups share one store, one crypto path and
-- one sync stream.
CREATE TABLE group_chats (
  group_id           TEXT PRIMARY KEY,
  group_name         TEXT NOT NULL,
  group_description  TEXT NOT NULL DEFAULT '',
  created_by_user_id TEXT NOT NULL,
  owner_id           TEXT NOT NULL,
  max_members        INT NOT NULL,
  is_active          BOOLEAN NOT NULL DEFAULT true,
  deleted_at         TIMESTAMPTZ,
  deleted_by         TEXT,
  created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX group_chats_deleted ON group_chats (deleted_at) WHERE NOT is_active;

CREATE TABLE group_members (
  group_id         TEXT NOT NULL REFERENCES group_chats(group_id) ON DELETE CASCADE,
  user_id          TEXT NOT NULL,
  role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  joined_at        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  added_by_user_id TEXT,
  last_read_seq    BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE group_pins (
  group_id   TEXT NOT NULL REFERENCES group_chats(group_id) ON DELETE CASCADE,
  message_id UUID NOT NULL REFERENCES private_messages(id) ON DELETE CASCADE,
  pinned_by  TEXT NOT NULL,
  pinned_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (group_id, message_id)
);

-- Membership and group-state changes, for sync_result.changes (PROTOCOL §9).
CREATE TABLE group_changes (
  id         BIGSERIAL PRIMARY KEY,
  group_id   TEXT NOT NULL,
  user_id    TEXT,
  kind       TEXT NOT NULL,
  actor_id   TEXT,
  role       TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  change_xid XID8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX group_changes_group ON group_changes (group_id, change_xid);
CREATE INDEX group_changes_user ON group_changes (user_id, change_xid);

CREATE INDEX private_messages_group_sync ON private_messages (group_id, change_xid) WHERE group_id IS NOT NULL;

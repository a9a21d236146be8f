/**
 * `sync {cursor, limit}` → `sync_result` (PROTOCOL §9): every message created, edited,
 * deleted (as a tombstone) or reacted to in the user's conversations and groups after
 * the cursor, and the membership changes of the user's groups. A client that syncs from
 * the last cursor it saw misses nothing (see chat/cursor.ts and store/sync.ts).
 */
import { ChatError } from '../protocol/errors.ts';
import { messageM, nowIso } from '../protocol/outbound.ts';
import type { MessageRecord } from '../store/types.ts';
import { openRecord, type Actor, type ChatDeps, type Reply } from './context.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';

/** What the groups service provides to sync. */
export interface SyncGroups {
  /** Active group ids of the user. */
  groupIdsOf(userId: string): Promise<string[]>;
  /** Render a decrypted group message as G. */
  render(record: MessageRecord, content: string): Record<string, unknown>;
  /** Membership/group changes visible to the user with change xid in [fromXid, toXid). */
  changes(userId: string, groupIds: readonly string[], fromXid: string, toXid: string): Promise<Record<string, unknown>[]>;
}

/** Sync service. */
export class SyncService {
  /** Set by the groups service. */
  groups: SyncGroups | undefined;

  constructor(private readonly deps: ChatDeps) {}

  /** Answer one `sync`. Throws SYNC_EXPIRED for a cursor older than SYNC_RETENTION_DAYS, BAD_REQUEST for a foreign one. */
  async sync(actor: Actor, cursor: string | undefined, limit = 100): Promise<Reply> {
    const { deps } = this;
    const c = cursor ? decodeCursor(cursor) : { x: '0', i: '', t: Date.now() };
    if (Date.now() - c.t > deps.settings.syncRetentionDays * 86_400_000) throw new ChatError('SYNC_EXPIRED', 'Cursor too old; reload history', { field: 'cursor' });
    const [groupIds, blocked] = await Promise.all([this.groups ? this.groups.groupIdsOf(actor.userId) : [], deps.stores.relations.blockedWith(actor.userId)]);
    const { rows, xmin } = await deps.stores.sync.changes(actor.userId, groupIds, c.x, c.i, limit);
    await deps.stores.history.attachReactions(rows.filter((r) => r.visible).map((r) => r.record));
    const messages: Record<string, unknown>[] = [];
    for (const r of rows) {
      const rec = r.record;
      if (rec.groupId && blocked.has(rec.senderId)) continue; // never seen across a block (§5)
      const view = r.visible ? openRecord(deps, rec) : null;
      if (!view) messages.push({ messageId: rec.id, id: rec.id, conversationId: rec.conversationId, groupId: rec.groupId, seq: rec.seq, isDeleted: true });
      else messages.push(rec.groupId && this.groups ? this.groups.render(rec, view.content) : messageM(view));
    }
    const hasMore = rows.length >= limit;
    const last = rows[rows.length - 1];
    const next = hasMore && last ? { x: last.changeXid, i: last.record.id, t: Date.now() } : { x: xmin, i: '', t: Date.now() };
    const changes = this.groups ? await this.groups.changes(actor.userId, groupIds, c.x, next.x) : [];
    return { type: 'sync_result', messages, changes, cursor: encodeCursor(next), hasMore, timestamp: nowIso() };
  }
}

/**
 * `sync {cursor, limit}` → `sync_result` (PROTOCOL §9): every message created, edited,
 * deleted (as a tombstone) or reacted to in the user's conversations and groups after
 * the cursor. A client that syncs from the last cursor it saw misses nothing.
 */
import { ChatError } from '../protocol/errors.ts';
import { messageM, nowIso } from '../protocol/outbound.ts';
import { openRecord, type Actor, type ChatDeps, type Reply } from './context.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';

/** Renders a group message G (set by the groups service); DMs render as M. */
export type GroupRender = (actor: Actor, view: NonNullable<ReturnType<typeof openRecord>>) => Record<string, unknown>;

/** Sync service. */
export class SyncService {
  /** Set by the groups service: the user's group ids (for the stream filter) and G rendering. */
  groups: { groupIdsOf(userId: string): Promise<string[]>; render: GroupRender; changes?(actor: Actor, sinceMs: number): Promise<Record<string, unknown>[]> } | undefined;

  constructor(private readonly deps: ChatDeps) {}

  /** Answer one `sync`. Throws SYNC_EXPIRED for a cursor older than SYNC_RETENTION_DAYS, BAD_REQUEST for a foreign one. */
  async sync(actor: Actor, cursor: string | undefined, limit = 100): Promise<Reply> {
    const c = cursor ? decodeCursor(cursor) : { x: '0', i: '', t: Date.now() };
    if (Date.now() - c.t > this.deps.settings.syncRetentionDays * 86_400_000) throw new ChatError('SYNC_EXPIRED', 'Cursor too old; reload history', { field: 'cursor' });
    const groupIds = this.groups ? await this.groups.groupIdsOf(actor.userId) : [];
    const { rows, xmin } = await this.deps.stores.sync.changes(actor.userId, groupIds, c.x, c.i, limit);
    await this.deps.stores.history.attachReactions(rows.filter((r) => r.visible).map((r) => r.record));
    const messages: Record<string, unknown>[] = [];
    for (const r of rows) {
      const rec = r.record;
      const view = r.visible ? openRecord(this.deps, rec) : null;
      if (!view) {
        messages.push({ messageId: rec.id, id: rec.id, conversationId: rec.conversationId, groupId: rec.groupId ?? undefined, seq: rec.seq, isDeleted: true });
      } else {
        messages.push(rec.groupId && this.groups ? this.groups.render(actor, view) : messageM(view));
      }
    }
    const hasMore = rows.length >= limit;
    const last = rows[rows.length - 1];
    const next = hasMore && last ? { x: last.changeXid, i: last.record.id, t: Date.now() } : { x: xmin, i: '', t: Date.now() };
    const changes = this.groups?.changes ? await this.groups.changes(actor, c.t) : [];
    return { type: 'sync_result', messages, changes, cursor: encodeCursor(next), hasMore, timestamp: nowIso() };
  }
}

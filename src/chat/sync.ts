/**
 * `sync {cursor, limit}` → `sync_result` (PROTOCOL §9): every message created, edited,
 * deleted (as a tombstone: for everyone, or by the caller for themselves, or hidden by
 * the caller's conversation deletion) or reacted to in the user's conversations and
 * groups after the cursor, and the membership changes of the user's groups (soft-deleted
 * groups included, so a deletion and a restore reach their members). Messages and group
 * changes form one stream paged with one cursor (chat/cursor.ts, store/sync.ts): a page
 * holds at most `limit` entries of both kinds together, and ends early once its entries
 * pass half of SEND_QUEUE_LIMIT_BYTES in JSON bytes (./pageBytes.ts; audit 7, F5), so a
 * client that syncs from the last cursor it saw misses nothing.
 */
import { ChatError } from '../protocol/errors.ts';
import { messageM, nowIso } from '../protocol/outbound.ts';
import { GROUP_LEVEL_KINDS, type ChangedMessage, type GroupChange } from '../store/sync.ts';
import type { MessageRecord } from '../store/types.ts';
import { openRecord, type Actor, type ChatDeps, type Reply } from './context.ts';
import { decodeCursor, encodeCursor, type Cursor } from './cursor.ts';
import { pageBudgetBytes, takeWithinBytes } from './pageBytes.ts';

/** What the groups service provides to sync. */
export interface SyncGroups {
  /** Group ids of the user, soft-deleted ones included (their messages are synced). */
  groupIdsOf(userId: string): Promise<string[]>;
  /** Render a decrypted group message as G (PROTOCOL §7). */
  render(record: MessageRecord, content: string): Record<string, unknown>;
}

/** Above every message id: a position after all messages of its transaction. */
const MAX_UUID = 'ffffffff-ffff-ffff-ffff-ffffffffffff';

/** One stream entry: a message change or a group change, with its transaction. */
type Entry = { xid: bigint; m: ChangedMessage; g?: undefined } | { xid: bigint; g: GroupChange; m?: undefined };

/** Stream order: transaction, then messages (by id) before group changes (by id). */
function before(a: Entry, b: Entry): boolean {
  if (a.xid !== b.xid) return a.xid < b.xid;
  if (a.m && b.m) return a.m.record.id < b.m.record.id;
  if (a.g && b.g) return BigInt(a.g.id) < BigInt(b.g.id);
  return a.m !== undefined;
}

/** `sync_result.changes` entry (docs/PROTOCOL-NOTES.md): `{type, groupId, userId?, actorId?, role?, timestamp}`. */
function changeEntry(c: GroupChange): Record<string, unknown> {
  return {
    type: c.kind,
    groupId: c.groupId,
    // A whole-group change recorded per member names the member only for routing.
    userId: GROUP_LEVEL_KINDS.includes(c.kind) ? undefined : (c.userId ?? undefined),
    actorId: c.actorId ?? undefined,
    role: c.role ?? undefined,
    timestamp: c.createdAt.toISOString(),
  };
}

/** Sync service. */
export class SyncService {
  /** Set by the groups service. */
  groups: SyncGroups | undefined;

  /** @param deps stores, cipher and settings (SYNC_RETENTION_DAYS) */
  constructor(private readonly deps: ChatDeps) {}

  /**
   * Answer one `sync` (PROTOCOL §9).
   * @param actor the authenticated user
   * @param cursor the last cursor the client saw (auth_success or sync_result); absent: from the beginning
   * @param limit entries per page (messages and changes together), 1..500 (validated by the protocol layer)
   * @returns `sync_result {messages: [M | G | tombstone {messageId, id, conversationId, groupId, seq, isDeleted:true}],
   *   changes: [{type, groupId, userId?, actorId?, role?, timestamp}], cursor, hasMore, timestamp}`; with hasMore the
   *   client syncs again from `cursor` at once
   * @throws ChatError BAD_REQUEST (field `cursor`) for a cursor not from this server, SYNC_EXPIRED for one older
   *   than SYNC_RETENTION_DAYS (PROTOCOL §2.2, §9); DbUnavailableError / driver errors
   */
  async sync(actor: Actor, cursor: string | undefined, limit = 100): Promise<Reply> {
    const { deps } = this;
    const c: Cursor = cursor ? decodeCursor(cursor) : { x: '0', i: '', t: Date.now() };
    if (Date.now() - c.t > deps.settings.syncRetentionDays * 86_400_000) throw new ChatError('SYNC_EXPIRED', 'Cursor too old; reload history', { field: 'cursor' });
    const [groupIds, blocked] = await Promise.all([this.groups ? this.groups.groupIdsOf(actor.userId) : [], deps.stores.relations.blockedWith(actor.userId)]);
    // With `g`, every message of transaction x was seen: only later ones are read.
    const { rows, xmin } = await deps.stores.sync.changes(actor.userId, groupIds, c.x, c.g === undefined ? c.i : MAX_UUID, limit);
    const groupRows = await deps.stores.sync.groupChanges(actor.userId, c.x, c.g ?? '0', xmin, limit);
    const merged = merge(rows, groupRows, limit);
    const all = merged.page.flatMap((e) => (e.m ? [e.m] : []));
    // Group reactions by users in a block with the caller are left out of the totals (§5).
    await deps.stores.history.attachReactions(all.filter((r) => r.visible).map((r) => r.record), blocked);
    // A message changed twice in the page (e.g. edited, then deleted for me) is shown once, as it is now,
    // at its last change: if the byte budget ends the page before that, it comes on the next page.
    const latest = new Map(all.map((r) => [r.record.id, r]));
    const changeViews = new Set<Record<string, unknown>>();
    const render = (e: Entry): Record<string, unknown> | null => {
      if (e.g) {
        const c = changeEntry(e.g);
        changeViews.add(c);
        return c;
      }
      const rec = e.m.record;
      if (latest.get(rec.id) !== e.m) return null;
      if (rec.groupId && blocked.has(rec.senderId)) return null; // never seen across a block (§5)
      if (!e.m.visible) return { messageId: rec.id, id: rec.id, conversationId: rec.conversationId, groupId: rec.groupId, seq: rec.seq, isDeleted: true };
      // A body that fails authentication (tampered, or its key not configured) is left out, as in
      // history (docs/PROTOCOL-NOTES.md), and the page covers it. Never a tombstone: devices would
      // drop their copy of a message nobody deleted, and a restored key would not bring it back.
      const view = openRecord(deps, rec);
      if (!view) return null;
      return rec.groupId && this.groups ? this.groups.render(rec, view.content) : messageM(view);
    };
    // The page ends once its entries pass half of SEND_QUEUE_LIMIT_BYTES (./pageBytes.ts, §2.3).
    const fit = takeWithinBytes(merged.page, render, pageBudgetBytes(deps.settings));
    const page = merged.page.slice(0, fit.taken);
    const hasMore = merged.hasMore || page.length < merged.page.length;
    const messages = fit.views.filter((v) => !changeViews.has(v));
    const changes = fit.views.filter((v) => changeViews.has(v));
    const last = page[page.length - 1];
    let next: Cursor = { x: xmin, i: '', t: Date.now() };
    if (hasMore && last) next = last.m ? { x: last.m.changeXid, i: last.m.record.id, t: Date.now() } : { x: last.g.changeXid, i: '', t: Date.now(), g: last.g.id };
    return { type: 'sync_result', messages, changes, cursor: encodeCursor(next), hasMore, timestamp: nowIso() };
  }
}

/**
 * Merge the two ordered sources (each the first ≤ `limit` entries after the cursor) into
 * the first ≤ `limit` entries of the stream. `hasMore` when entries were cut or a source
 * came back full (it may have more): the page then ends at its last entry; otherwise it
 * ends at the snapshot xmin.
 */
function merge(ms: readonly ChangedMessage[], gs: readonly GroupChange[], limit: number): { page: Entry[]; hasMore: boolean } {
  const page: Entry[] = [];
  let a = 0;
  let b = 0;
  while (page.length < limit && (a < ms.length || b < gs.length)) {
    const em: Entry | undefined = a < ms.length ? { xid: BigInt(ms[a]!.changeXid), m: ms[a]! } : undefined;
    const eg: Entry | undefined = b < gs.length ? { xid: BigInt(gs[b]!.changeXid), g: gs[b]! } : undefined;
    if (em && (!eg || before(em, eg))) {
      page.push(em);
      a++;
    } else {
      page.push(eg!);
      b++;
    }
  }
  const hasMore = a < ms.length || b < gs.length || ms.length >= limit || gs.length >= limit;
  return { page, hasMore };
}

/**
 * PROTOCOL §9 sync: a client that syncs from the last cursor it saw misses nothing, even
 * while other connections commit concurrently; edits, deletions (tombstones) and
 * reactions after the cursor are returned; old cursors get SYNC_EXPIRED.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../../src/chat/cursor.ts';
import type { TestClient } from '../helpers/client.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
const SENDERS = ['11', '12', '13', '14'];
beforeAll(async () => {
  s = await startServer({ FOLLOW_POLICY: 'none', SYNC_RETENTION_DAYS: '1', DB_POOL_SIZE: '8' });
  await s.users('10', ...SENDERS);
});
afterAll(() => s?.close());

async function syncAll(c: TestClient, cursor: string | undefined, seen: Map<string, any>): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const r = await c.request({ type: 'sync', cursor, limit: 25 });
    expect(r.type).toBe('sync_result');
    for (const m of r.messages) seen.set(m.messageId, m);
    cursor = r.cursor;
    if (!r.hasMore) return cursor!;
  }
  throw new Error('sync did not finish');
}

describe('sync', () => {
  it('misses nothing while four senders commit concurrently', async () => {
    const reader = await s.login('10');
    const auth = await s.connect();
    const ok = await auth.request({ type: 'authenticate', token: s.token('10') });
    let cursor: string = ok.cursor;
    const senders = await Promise.all(SENDERS.map((id) => s.login(id)));
    const acked = new Set<string>();
    const seen = new Map<string, any>();
    let sending = true;
    const writers = senders.map(async (c, i) => {
      for (let n = 0; n < 40; n++) {
        const r = await c.request({ type: 'send_private_message', recipientId: '10', content: `m${i}-${n}`, clientMessageId: `s${i}-${n}` });
        expect(r.type).toBe('private_message_sent');
        acked.add(r.messageId);
      }
    });
    const syncer = (async () => {
      while (sending) cursor = await syncAll(auth, cursor, seen);
    })();
    await Promise.all(writers);
    sending = false;
    await syncer;
    // Final catch-up: bounded retries, as a write transaction in another test database on
    // the same server can hold the snapshot xmin back for a moment (lag, never a skip).
    for (let i = 0; i < 50 && [...acked].some((id) => !seen.has(id)); i++) {
      cursor = await syncAll(auth, cursor, seen);
      if ([...acked].some((id) => !seen.has(id))) await new Promise((res) => setTimeout(res, 100));
    }
    const missing = [...acked].filter((id) => !seen.has(id));
    expect(missing).toEqual([]);
    expect(acked.size).toBe(160);
    // seq is gap-free per conversation
    const history = await reader.request({ type: 'get_private_messages', recipientId: '11', limit: 100 });
    expect(history.messages.map((m: any) => m.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });

  it('returns edits, reactions and deletion tombstones after the cursor, and membership changes', async () => {
    const a = await s.login('11');
    const b = await s.login('10');
    const sent = await a.request({ type: 'send_private_message', recipientId: '10', content: 'to edit' });
    const gone = await a.request({ type: 'send_private_message', recipientId: '10', content: 'to delete' });
    const first = await b.request({ type: 'sync', cursor: undefined, limit: 500 });
    let cursor = first.cursor;
    for (let i = 0; first.hasMore && i < 20; i++) cursor = (await b.request({ type: 'sync', cursor, limit: 500 })).cursor;
    await a.request({ type: 'edit_message', messageId: sent.messageId, newContent: 'edited' });
    await b.request({ type: 'add_reaction', messageId: sent.messageId, reaction: '🎉' });
    await a.request({ type: 'delete_message', messageId: gone.messageId, deleteForEveryone: true });
    const g = await a.request({ type: 'create_group', groupName: 'S', initialMembers: ['10'] });
    // sync returns changes once every older write transaction on the server ended (snapshot
    // xmin; other test databases share the server), so poll, bounded.
    let r: any;
    for (let i = 0; i < 50; i++) {
      r = await b.request({ type: 'sync', cursor });
      const ids = new Set(r.messages.map((m: any) => m.messageId));
      if (ids.has(sent.messageId) && ids.has(gone.messageId) && r.changes.some((c: any) => c.groupId === g.groupId) && r.messages.find((m: any) => m.messageId === sent.messageId)?.reactions?.length) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const edited = r.messages.find((m: any) => m.messageId === sent.messageId);
    expect(edited.content).toBe('edited');
    expect(edited.isEdited).toBe(true);
    expect(edited.reactions).toEqual([{ reaction: '🎉', count: 1, userIds: ['10'] }]);
    expect(r.messages.find((m: any) => m.messageId === gone.messageId)).toMatchObject({ isDeleted: true });
    expect(r.messages.find((m: any) => m.messageId === gone.messageId).content).toBeUndefined();
    expect(r.changes.some((c: any) => c.type === 'group_created' && c.groupId === g.groupId)).toBe(true);
    // nothing new: the next sync is empty
    const again = await b.request({ type: 'sync', cursor: r.cursor });
    expect(again.messages).toEqual([]);
    expect(again.changes).toEqual([]);
  });

  it('refuses a foreign cursor (BAD_REQUEST) and an expired one (SYNC_EXPIRED)', async () => {
    const b = await s.login('10');
    expect((await b.request({ type: 'sync', cursor: 'garbage' })).code).toBe('BAD_REQUEST');
    const old = encodeCursor({ x: '1', i: '', t: Date.now() - 2 * 86_400_000 });
    const r = await b.request({ type: 'sync', cursor: old });
    expect(r.code).toBe('SYNC_EXPIRED');
  });
});

describe('sync pages stay within the send queue', () => {
  it('long messages: a page ends early (hasMore) near SEND_QUEUE_LIMIT_BYTES / 2, and paging returns each message once', async () => {
    const q = await startServer({ FOLLOW_POLICY: 'none', SEND_QUEUE_LIMIT_BYTES: '65536' });
    try {
      await q.users('20', '21');
      const sender = await q.login('21');
      const reader = await q.login('20');
      const start = (await reader.request({ type: 'sync' })).cursor as string;
      const sent: string[] = [];
      for (let i = 0; i < 12; i++) sent.push((await sender.request({ type: 'send_private_message', recipientId: '20', content: `${i} ${'é'.repeat(4000)}` })).messageId);
      const seen: string[] = [];
      let cursor = start;
      let pages = 0;
      for (let i = 0; i < 50; i++) {
        const r = await reader.request({ type: 'sync', cursor, limit: 500 });
        expect(r.type).toBe('sync_result');
        pages++;
        // Each page well within the 64 KiB queue (a message here is ~8 KB of UTF-8).
        expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThan(65536);
        seen.push(...r.messages.map((m: { messageId: string }) => m.messageId));
        cursor = r.cursor;
        if (!r.hasMore && seen.length >= sent.length) break;
      }
      expect(pages).toBeGreaterThan(2);
      expect(seen).toEqual(sent);
      expect(reader.closeCode).toBeUndefined();
    } finally {
      await q.close();
    }
  });
});

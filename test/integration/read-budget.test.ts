/**
 * Per-user budgets for reads and receipts (READ_RATE_LIMIT, RECEIPT_RATE_LIMIT per
 * MESSAGE_RATE_WINDOW_MS; docs/PROTOCOL-NOTES.md "Reads and receipts"): one account's
 * devices together get a bounded number of history pages, lists, syncs and presence
 * queries, and of read/delivery receipts, each over budget refused `RATE_LIMITED` with
 * `retryAfter` (§2.2, §4) without running. Sends, other users and the other budget are
 * untouched. The client SDK waits out a refused sync page or receipt instead of
 * reconnecting or dropping it.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatClient, type StateChange, type SyncPage, type WebSocketConstructor } from '../../src/client/index.ts';
import { expectError, freshUsers, sendOk, syncable, waitFor } from '../helpers/dmkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';
import { httpGet } from '../helpers/wire.ts';

const servers: TestServer[] = [];
const clients: ChatClient[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.close();
});

/** chat_rate_limit_hits_total of `limit` on the server at `port`. */
async function hits(port: number, limit: string): Promise<number> {
  const m = new RegExp(`chat_rate_limit_hits_total\\{limit="${limit}"\\} (\\d+)`).exec((await httpGet(port, '/metrics')).text);
  return m ? Number(m[1]) : 0;
}

/** A server with these budgets (FOLLOW_POLICY=none), stopped after the file. */
async function budgeted(env: Record<string, string>): Promise<TestServer> {
  const s = await startServer({ ...env, FOLLOW_POLICY: 'none' });
  servers.push(s);
  return s;
}

describe('READ_RATE_LIMIT=5, RECEIPT_RATE_LIMIT=3 per 2 s', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await budgeted({ READ_RATE_LIMIT: '5', RECEIPT_RATE_LIMIT: '3', MESSAGE_RATE_WINDOW_MS: '2000' });
  }, 60_000);

  it('reads from all of a user\'s devices share one budget; over it RATE_LIMITED, and sends, receipts and other users go on', async () => {
    const [a, b, c] = await freshUsers(s, 3);
    const [a1, a2, bc, cc] = await Promise.all([s.login(a!), s.login(a!), s.login(b!), s.login(c!)]);
    const ok = [
      await a1.request({ type: 'get_conversations' }),
      await a2.request({ type: 'sync' }),
      await a1.request({ type: 'get_private_messages', recipientId: b }),
      await a2.request({ type: 'get_user_groups' }),
      await a1.request({ type: 'get_presence', userIds: [b] }),
    ];
    expect(ok.map((f) => f.type)).toEqual(['conversations', 'sync_result', 'private_message_history', 'user_groups', 'presence']);
    const before = await hits(s.port, 'read');
    const refused = await expectError(a2, { type: 'get_group_info', groupId: 'group_01890000-0000-7000-8000-000000000000' }, 'RATE_LIMITED');
    expect(refused.retryAfter).toBeGreaterThanOrEqual(1);
    expect(refused.retryAfter).toBeLessThanOrEqual(2);
    await expectError(a1, { type: 'start_conversation', recipientId: b }, 'RATE_LIMITED');
    expect(await hits(s.port, 'read')).toBe(before + 2);

    // Other budgets and other users are untouched.
    const sent = await sendOk(a1, b!, 'still sending');
    expect((await cc.request({ type: 'get_conversations' })).type).toBe('conversations');
    const id = sent.message.id;
    expect((await bc.request({ type: 'mark_message_read', messageId: id })).type).toBe('message_marked_read');
    expect((await bc.request({ type: 'message_delivered', messageIds: [id] })).type).toBe('message_delivered_ack');
    expect((await bc.request({ type: 'mark_message_read', messageId: id })).type).toBe('message_marked_read');
    await expectError(bc, { type: 'message_delivered', messageIds: [id] }, 'RATE_LIMITED');
    expect((await bc.request({ type: 'get_private_messages', recipientId: a })).type).toBe('private_message_history');

    // The window ends: reads are served again.
    await sleep(refused.retryAfter * 1000 + 100);
    expect((await a2.request({ type: 'get_conversations' })).type).toBe('conversations');
  });

  it('authenticate again on an authenticated connection takes a read point; over budget RATE_LIMITED and the session is unchanged; first logins are not budgeted', async () => {
    const [d, e] = await freshUsers(s, 2);
    const [d1, d2] = await Promise.all([s.login(d!), s.login(d!)]);
    const refresh = async (c: typeof d1) => c.request({ type: 'authenticate', token: await s.token(d!) });
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push((await refresh(i % 2 ? d1 : d2)).type);
    expect(replies).toEqual(Array(5).fill('auth_success'));
    const before = await hits(s.port, 'read');
    const refused = await expectError(d1, { type: 'authenticate', token: await s.token(d!) }, 'RATE_LIMITED');
    expect(refused.retryAfter).toBeGreaterThanOrEqual(1);
    // A token for another user is refused before it is looked at, and counts as a refresh too.
    await expectError(d2, { type: 'authenticate', token: await s.token(e!) }, 'RATE_LIMITED');
    expect(await hits(s.port, 'read')).toBe(before + 2);
    // The connections stay authenticated, and a new device still logs in.
    expect((await sendOk(d1, e!, 'still here')).type).toBe('private_message_sent');
    const d3 = await s.login(d!);
    await expectError(d3, { type: 'get_conversations' }, 'RATE_LIMITED');
    await sleep(refused.retryAfter * 1000 + 100);
    expect((await refresh(d2)).type).toBe('auth_success');
  });
});

describe('ACTION_RATE_LIMIT=3: group commands that lock a group row take an action point', () => {
  it('leave_group (any group id), delete_group and restore_group are refused RATE_LIMITED past the budget', async () => {
    const s = await budgeted({ ACTION_RATE_LIMIT: '3', MESSAGE_RATE_WINDOW_MS: '60000' });
    const [a, b] = await freshUsers(s, 2);
    const [ca, cb] = await Promise.all([s.login(a!), s.login(b!)]);
    const missing = 'group_01890000-0000-7000-8000-000000000000';
    for (let i = 0; i < 3; i++) await expectError(cb, { type: 'leave_group', groupId: missing }, 'NOT_FOUND');
    await expectError(cb, { type: 'leave_group', groupId: missing }, 'RATE_LIMITED');
    const gid = (await ca.request({ type: 'create_group', groupName: 'x' })).groupId as string;
    expect((await ca.request({ type: 'delete_group', groupId: gid })).type).toBe('group_deleted');
    expect((await ca.request({ type: 'restore_group', groupId: gid })).type).toBe('group_restored');
    await expectError(ca, { type: 'delete_group', groupId: gid }, 'RATE_LIMITED');
  });
});

describe('the client SDK under the budgets (READ_RATE_LIMIT=2, RECEIPT_RATE_LIMIT=1 per 1 s)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await budgeted({ READ_RATE_LIMIT: '2', RECEIPT_RATE_LIMIT: '1', MESSAGE_RATE_WINDOW_MS: '1000' });
  }, 60_000);

  const client = (userId: string, opts: Partial<ConstructorParameters<typeof ChatClient>[0]> = {}): ChatClient => {
    const c = new ChatClient({ url: s.url, token: () => s.token(userId), WebSocket: WebSocket as unknown as WebSocketConstructor, pingIntervalMs: 0, ...opts });
    clients.push(c);
    return c;
  };

  it('a catch-up of four sync pages waits out RATE_LIMITED on the same connection; refused receipts are sent again', async () => {
    const [x, y] = await freshUsers(s, 2);
    const first = client(x!);
    await first.connect();
    const cursor = first.cursor;
    first.close();

    const sender = client(y!);
    await sender.connect();
    const statuses = new Set<string>();
    sender.on('message_status', (f) => {
      if (f.status === 'delivered') statuses.add(String(f.messageId));
    });
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await sender.request('send_private_message', { recipientId: x!, content: `away ${i}` })).message.id);
    await syncable(s, ids);

    // A connect deadline shorter than the wait: paused while the client waits out retryAfter.
    const back = client(x!, { cursor, syncLimit: 2, connectTimeoutMs: 600 });
    const seen: StateChange[] = [];
    back.onState((st) => seen.push(st));
    const pages: SyncPage[] = [];
    back.onSync((p) => pages.push(p));
    await back.connect();
    await waitFor(async () => pages.at(-1)?.hasMore === false || undefined, 10_000);
    const synced = pages.flatMap((p) => p.messages.map((m) => ('id' in m ? m.id : m.messageId)));
    expect(synced).toEqual(expect.arrayContaining(ids));
    expect(pages.length).toBeGreaterThanOrEqual(4);
    expect(await hits(s.port, 'read')).toBeGreaterThanOrEqual(1);
    // One connection throughout: no reconnect after a refused page.
    expect(seen.filter((st) => st.state === 'connecting')).toHaveLength(1);
    expect(seen.some((st) => st.state === 'waiting')).toBe(false);

    // Live DMs in separate receipt batches: the second batch of a window is refused, then sent again.
    for (const content of ['live 1', 'live 2']) {
      ids.push((await sender.request('send_private_message', { recipientId: x!, content })).message.id);
      await sleep(150);
    }
    await waitFor(async () => ids.every((id) => statuses.has(id)) || undefined, 10_000);
    expect(await hits(s.port, 'receipt')).toBeGreaterThanOrEqual(1);
  }, 30_000);
});

/**
 * The client SDK's background resync (src/client/syncLoop.ts, `resyncIntervalMs`) and
 * its token refresh under the read budget, against real servers (PROTOCOL §3 item 6, §9):
 * - the cursor follows what arrived live, so the next catch-up repeats none of it, and
 *   DMs that arrived live are not reported delivered a second time;
 * - a DM that reached the database without live delivery (stored by another instance
 *   with no bus between them) arrives by `onSync` without a reconnect, and is reported
 *   (one round: the receipt's ack does not call for another);
 * - a connection with no traffic, or only presence, typing and pongs, sends no `sync`;
 * - a refresh refused `RATE_LIMITED` (READ_RATE_LIMIT) is tried again after `retryAfter`.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatClient, type ChatClientOptions, type StateChange, type SyncPage, type WebSocketConstructor } from '../../src/client/index.ts';
import { createTestDatabase, onPostgres } from '../helpers/db.ts';
import { freshUsers, syncable, waitFor } from '../helpers/dmkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';
import { httpGet } from '../helpers/wire.ts';

const ENV = { JWT_CLOCK_TOLERANCE_S: '0' };
/** Background resync period of the devices under test, ms. */
const RESYNC_MS = 250;

let s: TestServer;
const open: ChatClient[] = [];
const servers: TestServer[] = [];

beforeAll(async () => {
  s = await startServer(ENV);
  servers.push(s);
}, 120_000);
afterAll(async () => {
  for (const c of open) c.close();
  for (const x of servers) await x.close();
});

/** A client of `server` for `userId` (no application pings, fast reconnects). */
function client(server: TestServer, userId: string, opts: Partial<ChatClientOptions> = {}): ChatClient {
  const c = new ChatClient({ url: server.url, token: () => server.token(userId), WebSocket: WebSocket as unknown as WebSocketConstructor, reconnect: { minDelayMs: 20, maxDelayMs: 100 }, pingIntervalMs: 0, ...opts });
  open.push(c);
  return c;
}

/** A WebSocket constructor that records every frame the client sends (parsed). */
function spying(sent: Record<string, unknown>[]): WebSocketConstructor {
  return function (url: string) {
    const ws = new WebSocket(url);
    const send = ws.send.bind(ws);
    ws.send = ((data: string) => (sent.push(JSON.parse(data)), send(data))) as typeof ws.send;
    return ws;
  } as unknown as WebSocketConstructor;
}

/** Message ids in sync pages. */
const idsOf = (pages: SyncPage[]): string[] => pages.flatMap((p) => p.messages.map((m) => ('id' in m ? m.id : m.messageId)));
/** Ids reported in the `message_delivered` frames among `sent`, in order. */
const reported = (sent: Record<string, unknown>[]): string[] => sent.filter((f) => f.type === 'message_delivered').flatMap((f) => f.messageIds as string[]);
/** chat_rate_limit_hits_total of `limit` on the server at `port`. */
async function hits(port: number, limit: string): Promise<number> {
  const m = new RegExp(`chat_rate_limit_hits_total\\{limit="${limit}"\\} (\\d+)`).exec((await httpGet(port, '/metrics')).text);
  return m ? Number(m[1]) : 0;
}

/** What `device` reports from now on: state changes, sync pages, ids of live DMs. */
function observe(device: ChatClient): { states: StateChange[]; pages: SyncPage[]; live: string[] } {
  const states: StateChange[] = [];
  device.onState((st) => states.push(st));
  const pages: SyncPage[] = [];
  device.onSync((p) => pages.push(p));
  const live: string[] = [];
  device.on('new_private_message', (f) => live.push(f.message.id));
  return { states, pages, live };
}

describe('background resync while connected', () => {
  it('the cursor follows what arrived live: a catch-up from it brings none of it; live DMs are reported delivered once', async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const sender = client(s, a!);
    const sent: Record<string, unknown>[] = [];
    const device = client(s, b!, { resyncIntervalMs: RESYNC_MS, WebSocket: spying(sent) });
    await Promise.all([sender.connect(), device.connect()]);
    const firstCursor = device.cursor;
    const { states, pages, live } = observe(device);

    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await sender.request('send_private_message', { recipientId: b!, content: `live ${i}` })).message.id);
    await waitFor(async () => ids.every((id) => live.includes(id)) || undefined);
    await syncable(s, ids);
    // Traffic after they are syncable (a reply: acks of the device's own sends count), so a
    // round certainly runs after that point.
    await device.request('send_private_message', { recipientId: a!, content: 'got them' });
    await waitFor(async () => ids.every((id) => idsOf(pages).includes(id)) || undefined, 4000);
    expect(device.cursor).not.toBe(firstCursor);
    expect(device.cursor).toBe(pages.at(-1)!.cursor);
    expect(states).toEqual([]); // no reconnect

    // Receipts go out in order: once this later DM is reported, a second report of the
    // first five (from the background page) would already have been sent.
    const last = (await sender.request('send_private_message', { recipientId: b!, content: 'barrier' })).message.id;
    await waitFor(async () => reported(sent).includes(last) || undefined);
    expect(reported(sent).filter((id) => ids.includes(id)).sort()).toEqual([...ids].sort());
    // The receipts changed those messages again (the stream carries delivery state): a round
    // after those changes are syncable takes the cursor past them.
    await syncable(s, [...ids, last]);
    const seenBefore = pages.length;
    await device.request('send_private_message', { recipientId: a!, content: 'nudge' });
    await waitFor(async () => idsOf(pages.slice(seenBefore)).includes(last) || undefined, 4000);

    // The device comes back in a later session from its saved cursor: nothing repeated.
    const caughtUp: SyncPage[] = [];
    const later = client(s, b!, { cursor: device.cursor, resyncIntervalMs: 0 });
    later.onSync((p) => caughtUp.push(p));
    await later.connect();
    expect(caughtUp.at(-1)?.hasMore).toBe(false);
    expect(idsOf(caughtUp).filter((id) => ids.includes(id))).toEqual([]);
    // From the connect-time cursor, the same catch-up repeats all five.
    const stale: SyncPage[] = [];
    const old = client(s, b!, { cursor: firstCursor, resyncIntervalMs: 0 });
    old.onSync((p) => stale.push(p));
    await old.connect();
    expect(idsOf(stale)).toEqual(expect.arrayContaining(ids));
  });

  it('no traffic, or only presence, typing and pongs: no sync; a DM: one round, then quiet again', async () => {
    const [c, e] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const sent: Record<string, unknown>[] = [];
    const device = client(s, c!, { resyncIntervalMs: 200, WebSocket: spying(sent) });
    await device.connect();
    const syncs = (): number => sent.filter((f) => f.type === 'sync').length;
    const seen: string[] = [];
    for (const t of ['user_online', 'typing_indicator'] as const) device.on(t, (f) => seen.push(f.type));

    const contact = client(s, e!);
    await contact.connect(); // user_online to the device
    await contact.request('typing', { recipientId: c!, isTyping: true });
    await device.request('ping', {});
    await device.request('get_presence', { userIds: [e!] });
    await device.request('get_online_users', {});
    await waitFor(async () => seen.length === 2 || undefined);
    await sleep(1000); // five periods
    expect(syncs()).toBe(0);

    const dm = (await contact.request('send_private_message', { recipientId: c!, content: 'wake up' })).message.id;
    await waitFor(async () => syncs() === 1 || undefined, 2000);
    await waitFor(async () => reported(sent).includes(dm) || undefined);
    await sleep(800); // four more periods: the round and its receipt call for no other
    expect(syncs()).toBe(1);
  });

  it('a page refused RATE_LIMITED ends the round without a reconnect or a wait; a later period tries again', async () => {
    const limited = await startServer({ ...ENV, READ_RATE_LIMIT: '1', MESSAGE_RATE_WINDOW_MS: '1500' });
    servers.push(limited);
    const [f] = await freshUsers(limited, 1);
    const sent: Record<string, unknown>[] = [];
    const device = client(limited, f!, { token: () => limited.token(f!), resyncIntervalMs: 200, WebSocket: spying(sent) });
    await device.connect();
    const states: StateChange[] = [];
    device.onState((st) => states.push(st));
    const pages: SyncPage[] = [];
    device.onSync((p) => pages.push(p));
    // The one read point of the window, and traffic (a reply) that calls for a round.
    expect((await device.request('get_conversations', {})).type).toBe('conversations');
    await waitFor(async () => (await hits(limited.port, 'read')) >= 2 || undefined, 2000);
    expect(pages).toEqual([]);
    // The window ends (1.5 s after the first point): a later round gets its page.
    await waitFor(async () => pages.at(-1)?.hasMore === false || undefined, 3000);
    const syncs = sent.filter((x) => x.type === 'sync').length;
    expect(syncs).toBeGreaterThanOrEqual(3);
    expect(syncs).toBeLessThanOrEqual(12); // about one a period, none while waiting on the connection
    expect(states).toEqual([]);
    await sleep(600);
    expect(sent.filter((x) => x.type === 'sync').length).toBe(syncs); // done: no more rounds
  });
});

// Two servers on one database: PostgreSQL only (each embedded PGlite is its own database).
describe.skipIf(!onPostgres)('repair: a DM live delivery missed', () => {
  let s1: TestServer;
  let s2: TestServer;
  beforeAll(async () => {
    const db = await createTestDatabase();
    s1 = await startServer({ ...ENV, BUS: 'local' }, { database: db });
    s2 = await startServer({ ...ENV, BUS: 'local' }, { database: db });
  }, 120_000);
  afterAll(async () => {
    await s1?.app.shutdown(200).catch(() => {});
    await s2?.close();
  });

  it('stored by another instance with no bus: it arrives by onSync without a reconnect, and the sender sees it delivered', async () => {
    const [d, x, y] = await freshUsers(s1, 3, [
      [0, 1],
      [1, 0],
      [0, 2],
      [2, 0],
    ]);
    const sent: Record<string, unknown>[] = [];
    const device = client(s1, d!, { token: () => s1.token(d!), resyncIntervalMs: RESYNC_MS, WebSocket: spying(sent) });
    const senderHere = client(s1, x!, { token: () => s1.token(x!) }); // the sender's device on the device's instance
    const senderThere = client(s2, x!, { token: () => s2.token(x!) });
    const other = client(s1, y!, { token: () => s1.token(y!) });
    await Promise.all([device, senderHere, senderThere, other].map((c) => c.connect()));
    const { states, pages, live } = observe(device);
    const delivered: string[] = [];
    senderHere.on('message_status', (f) => f.status === 'delivered' && f.userId === d && delivered.push(f.messageId));

    const missed = (await senderThere.request('send_private_message', { recipientId: d!, content: 'through the other instance' })).message.id;
    await syncable(s1, [missed]);
    // Ordinary live traffic on the device's connection calls for the next round.
    const hello = (await other.request('send_private_message', { recipientId: d!, content: 'hello' })).message.id;
    await waitFor(async () => live.includes(hello) || undefined);
    await waitFor(async () => idsOf(pages).includes(missed) || undefined, 4000);
    expect(live).not.toContain(missed);
    expect(states).toEqual([]);
    await waitFor(async () => delivered.includes(missed) || undefined);
    // One round: its receipt's ack (message_delivered_ack) calls for no other.
    await sleep(4 * RESYNC_MS);
    expect(sent.filter((f) => f.type === 'sync')).toHaveLength(1);
    for (const c of [device, senderHere, senderThere, other]) c.close();
  });
});

describe('token refresh under READ_RATE_LIMIT', () => {
  it('a refresh refused RATE_LIMITED is tried again after retryAfter on the same connection', async () => {
    const limited = await startServer({ ...ENV, READ_RATE_LIMIT: '1', MESSAGE_RATE_WINDOW_MS: '2000' });
    servers.push(limited);
    const [u] = await freshUsers(limited, 1);
    // Another device of the user spends the one read point of the window.
    const other = await limited.login(u!);
    expect((await other.request({ type: 'get_conversations' })).type).toBe('conversations');

    const asked: boolean[] = [];
    // 5 s: token_expiring at once (60 s before exp), and the connection outlives a 2 s wait.
    const device = client(limited, u!, { token: (refresh) => (asked.push(refresh), limited.token(u!, { ttlS: refresh ? 3600 : 5 })) });
    const states: StateChange[] = [];
    device.onState((st) => states.push(st));
    const before = await hits(limited.port, 'read');
    await device.connect();
    const firstExp = device.expiresAt;
    await waitFor(async () => Date.parse(device.expiresAt!) > Date.now() + 3_000_000 || undefined, 4500);
    expect(firstExp).not.toBe(device.expiresAt);
    expect(await hits(limited.port, 'read')).toBeGreaterThan(before);
    expect(asked).toEqual([false, true, true]);
    expect(states.map((st) => st.state)).toEqual(['connecting', 'authenticating', 'ready']);
  });
});

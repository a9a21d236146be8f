/**
 * The client SDK (src/client/, DESIGN "client/") against a real server: requests and
 * their replies by requestId (§2, §2.1), events, the outbox (a send whose ack was lost is
 * resent with its clientMessageId and stored once, §6), catching up with `sync` after a
 * reconnect (§9), the close-code rules (§2.3: 1001 reconnects, 4403 and 4409 stop),
 * token refresh (§3 item 6) and dead-connection detection. Faults come from a TCP proxy
 * between the SDK and the server.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatClient, ClientError, type ChatClientOptions, type StateChange, type SyncPage, type WebSocketConstructor } from '../../src/client/index.ts';
import { bundleClient } from '../../scripts/lib/bundle.ts';
import { revokeJti } from '../../src/store/devData.ts';
import { createTestDatabase, onPostgres } from '../helpers/db.ts';
import { messagesFrom, syncable, waitFor } from '../helpers/dmkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';
import { databaseBehindProxy, FreezableProxy } from '../helpers/tcpProxy.ts';
import { httpGet } from '../helpers/wire.ts';

const WS = WebSocket as unknown as WebSocketConstructor;
const ENV = { JWT_CLOCK_TOLERANCE_S: '0', SESSION_RECHECK_MS: '200' };

let s: TestServer;
const open: ChatClient[] = [];
const proxies: FreezableProxy[] = [];

beforeAll(async () => {
  s = await startServer(ENV);
  await s.users('1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13', '14', '15', '16');
  await s.follow(['1', '2'], ['2', '1'], ['3', '4'], ['4', '3'], ['5', '6'], ['6', '5'], ['7', '8'], ['8', '7'], ['13', '14'], ['15', '16']);
}, 120_000);
afterAll(async () => {
  for (const c of open) c.close();
  for (const p of proxies) await p.close();
  await s?.close();
});

/** A client with fast reconnects and no application pings unless asked. */
function client(url: string, userId: string, opts: Partial<ChatClientOptions> = {}): ChatClient {
  const c = new ChatClient({ url, token: () => s.token(userId), WebSocket: WS, reconnect: { minDelayMs: 20, maxDelayMs: 100 }, pingIntervalMs: 0, ...opts });
  open.push(c);
  return c;
}

/** A proxy in front of `port` (default: the shared server). */
async function proxyTo(port = s.port): Promise<FreezableProxy> {
  const p = new FreezableProxy({ host: '127.0.0.1', port });
  await p.start();
  proxies.push(p);
  return p;
}

/** `SERVICE_UNAVAILABLE` error frames the server on `port` has sent (its /metrics). */
async function unavailableSent(port: number): Promise<number> {
  const m = /chat_errors_total\{code="SERVICE_UNAVAILABLE"\} (\d+)/.exec((await httpGet(port, '/metrics')).text);
  return m ? Number(m[1]) : 0;
}

/** Record a client's state changes. */
function states(c: ChatClient): StateChange[] {
  const seen: StateChange[] = [];
  c.onState((st) => seen.push(st));
  return seen;
}

describe('requests and events', () => {
  it('a command resolves with its reply (sends get a clientMessageId); the recipient gets the event, the sender does not', async () => {
    const a = client(s.url, '1');
    const b = client(s.url, '2');
    await Promise.all([a.connect(), b.connect()]);
    expect(a.userId).toBe('1');
    const got: unknown[] = [];
    b.on('new_private_message', (f) => got.push(f.message.content));
    const echoed: unknown[] = [];
    a.on('private_message_sent', (f) => echoed.push(f));

    const ack = await a.request('send_private_message', { recipientId: 2, content: 'hello' });
    expect(ack.type).toBe('private_message_sent');
    expect(ack.message.content).toBe('hello');
    expect(ack.clientMessageId).toMatch(/^[0-9a-f-]{36}$/);
    await waitFor(async () => got.length === 1 || undefined);
    expect(got).toEqual(['hello']);
    expect(echoed).toEqual([]);
    expect(a.outbox).toEqual([]);

    const pong = await a.request('ping', {});
    expect(typeof pong.timestamp).toBe('number');
  });

  it('delivery receipts (§9): DMs that reach a device are reported delivered to the sender, batched; none when turned off', async () => {
    const a = client(s.url, '13');
    const b = client(s.url, '14');
    const quietA = client(s.url, '15');
    const quietB = client(s.url, '16', { deliveryReceipts: false });
    await Promise.all([a, b, quietA, quietB].map((c) => c.connect()));
    const statuses: string[] = [];
    a.on('message_status', (f) => statuses.push(`${f.messageId}:${f.status}:${f.userId}`));
    const ids = await Promise.all(['x', 'y', 'z'].map(async (content) => (await a.request('send_private_message', { recipientId: '14', content })).message.id));
    await waitFor(async () => statuses.length === 3 || undefined);
    expect(statuses.sort()).toEqual(ids.map((id) => `${id}:delivered:14`).sort());

    const quiet: unknown[] = [];
    quietA.on('message_status', (f) => quiet.push(f));
    await quietA.request('send_private_message', { recipientId: '16', content: 'no receipt' });
    await sleep(500);
    expect(quiet).toEqual([]);
  });

  it('an error reply rejects with its code and field; a request before connect() is refused', async () => {
    const a = client(s.url, '3');
    await a.connect();
    const err = await a.request('send_private_message', { recipientId: '9', content: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).code).toBe('NOT_FOLLOWING');
    const bad = await a.request('get_presence', { userIds: 'nope' as unknown as string[] }).catch((e: unknown) => e);
    expect((bad as ClientError).code).toBe('BAD_REQUEST');
    expect((bad as ClientError).field).toBe('userIds');

    const idle = client(s.url, '3');
    expect(((await idle.request('ping', {}).catch((e: unknown) => e)) as ClientError).code).toBe('STOPPED');
  });
});

describe('the browser bundle on a WHATWG WebSocket', () => {
  it('dist-style bundle + the standard WebSocket (Node\'s undici one): connect, send, ack', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chat-sdk-'));
    try {
      const file = join(dir, 'chat-client.mjs');
      await bundleClient(new URL('../..', import.meta.url).pathname, file);
      const script = `
        const { ChatClient } = await import(${JSON.stringify(pathToFileURL(file).href)});
        const c = new ChatClient({ url: ${JSON.stringify(s.url)}, token: ${JSON.stringify(s.token('11'))}, pingIntervalMs: 0 });
        await c.connect();
        const ack = await c.request('send_private_message', { recipientId: '12', content: 'from a standard WebSocket' });
        console.log(JSON.stringify({ ws: WebSocket.name, id: ack.message.id }));
        c.close();`;
      await s.follow(['11', '12']);
      const out = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, ['--experimental-websocket', '--input-type=module', '-e', script], { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(stderr || String(err))) : resolve(stdout))),
      );
      const r = JSON.parse(out.trim().split('\n').at(-1)!);
      expect(r.ws).toBe('WebSocket');
      const { rows } = await s.app.db.query<{ id: string }>('SELECT id::text AS id FROM private_messages WHERE sender_id = $1', ['11']);
      expect(rows.map((x) => x.id)).toEqual([r.id]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('outbox and catching up', () => {
  it('a send whose ack was lost is resent after the reconnect and stored once (duplicate ack)', async () => {
    const proxy = await proxyTo();
    const a = client(`ws://127.0.0.1:${proxy.port}`, '3');
    const b = client(s.url, '4');
    await Promise.all([a.connect(), b.connect()]);
    const delivered: string[] = [];
    b.on('new_private_message', (f) => delivered.push(f.message.id));
    const before = await messagesFrom(s, '3');

    proxy.freeze('down'); // the send reaches the server; its ack does not come back
    const pending = a.request('send_private_message', { recipientId: '4', content: 'exactly once' });
    await waitFor(async () => (await messagesFrom(s, '3')) === before + 1 || undefined);
    expect(a.outbox).toHaveLength(1);
    const cmid = a.outbox[0]!.clientMessageId;
    proxy.cut(); // the held ack is dropped with the connection
    proxy.thaw();

    const ack = await pending;
    expect(ack.duplicate).toBe(true);
    expect(ack.clientMessageId).toBe(cmid);
    expect(await messagesFrom(s, '3')).toBe(before + 1);
    await sleep(200);
    expect(delivered).toEqual([ack.message.id]);
    expect(a.outbox).toEqual([]);
  });

  it('after a reconnect, sync brings what was sent while away, then queued sends go out', async () => {
    const proxy = await proxyTo();
    const a = client(`ws://127.0.0.1:${proxy.port}`, '5');
    const b = client(s.url, '6');
    await Promise.all([a.connect(), b.connect()]);
    const firstCursor = a.cursor;
    const pages: SyncPage[] = [];
    const order: string[] = [];
    a.onSync((p) => (pages.push(p), order.push('page')));
    const seen = states(a);

    proxy.refuse(true);
    proxy.cut();
    await waitFor(async () => seen.some((st) => st.state === 'waiting') || undefined);
    const missed: string[] = [];
    for (const text of ['one', 'two', 'three']) missed.push((await b.request('send_private_message', { recipientId: '5', content: text })).message.id);
    const queued = a.request('send_private_message', { recipientId: '6', content: 'written offline' });
    void queued.then(() => order.push('ack'));
    const pingWhileAway = a.request('ping', {}, { timeoutMs: 5000 });
    expect(a.outbox).toHaveLength(1);
    await syncable(s, missed);

    proxy.refuse(false);
    const ack = await queued;
    await pingWhileAway;
    expect(ack.message.content).toBe('written offline');
    const synced = pages.flatMap((p) => p.messages.map((m) => ('id' in m ? m.id : m.messageId)));
    expect(synced).toEqual(expect.arrayContaining(missed));
    expect(pages.at(-1)!.hasMore).toBe(false);
    expect(a.cursor).not.toBe(firstCursor);
    expect(a.cursor).toBe(pages.at(-1)!.cursor);
    // The sync ran before the queued send was written: its ack came after the last page.
    expect(order.at(-1)).toBe('ack');
    expect(order.filter((o) => o === 'page')).toHaveLength(pages.length);
    expect(seen.map((st) => st.state).slice(-4)).toEqual(['connecting', 'authenticating', 'syncing', 'ready']);
  });

  // Two servers on one database: PostgreSQL only (each embedded PGlite is its own database).
  it.skipIf(!onPostgres)('a server that drains (1001) is left for another one, and sync closes the gap', async () => {
    const db = await createTestDatabase();
    const s1 = await startServer(ENV, { database: db });
    const s2 = await startServer(ENV, { database: db });
    try {
      await s1.users('20', '21');
      await s1.follow(['20', '21'], ['21', '20']);
      const proxy = await proxyTo(s1.port);
      const a = new ChatClient({ url: `ws://127.0.0.1:${proxy.port}`, token: () => s1.token('20'), WebSocket: WS, reconnect: { minDelayMs: 20, maxDelayMs: 100 }, pingIntervalMs: 0 });
      const b = new ChatClient({ url: s2.url, token: () => s2.token('21'), WebSocket: WS, pingIntervalMs: 0 });
      open.push(a, b);
      await Promise.all([a.connect(), b.connect()]);
      const pages: SyncPage[] = [];
      a.onSync((p) => pages.push(p));
      const seen = states(a);
      // Stored by s2; a's server has no bus to s2, so only sync can bring it.
      const sent = await b.request('send_private_message', { recipientId: '20', content: 'across the deploy' });
      await syncable(s1, [sent.message.id]);
      proxy.retarget(s2.port);
      await s1.app.shutdown(500);
      await waitFor(async () => (a.state === 'ready' && pages.length > 0) || undefined, 5000);
      expect(seen[0]).toEqual({ state: 'waiting', closeCode: 1001 });
      expect(pages.flatMap((p) => p.messages.map((m) => ('id' in m ? m.id : m.messageId)))).toContain(sent.message.id);
      expect((await a.request('ping', {})).type).toBe('pong');
    } finally {
      await s2.close();
    }
  });
});

describe('close codes and tokens', () => {
  it('4403 (token revoked) stops the client: no reconnect', async () => {
    const jti = `sdk-${Date.now()}`;
    const a = client(s.url, '7', { token: () => s.token('7', { jti }) });
    await a.connect();
    const seen = states(a);
    await revokeJti(s.app.db, jti);
    await waitFor(async () => a.state === 'stopped' || undefined, 3000);
    await sleep(300);
    expect(seen).toEqual([{ state: 'stopped', closeCode: 4403, reason: 'revoked' }]);
    expect(((await a.request('ping', {}).catch((e: unknown) => e)) as ClientError).code).toBe('STOPPED');
  });

  it('a refused token gets one fresh try from the token function', async () => {
    const asked: boolean[] = [];
    const a = client(s.url, '8', { token: (refresh) => (asked.push(refresh), s.token('8', { ttlS: refresh ? 3600 : -10 })) });
    await a.connect();
    expect(asked).toEqual([false, true]);
    expect(a.state).toBe('ready');
  });

  it('a token source that throws is asked again after a backoff', async () => {
    let calls = 0;
    const a = client(s.url, '8', { token: () => (++calls < 3 ? Promise.reject(new Error('auth service down')) : s.token('8')) });
    const seen = states(a);
    await a.connect();
    expect(calls).toBe(3);
    expect(seen.filter((st) => st.state === 'waiting')).toHaveLength(2);
  });

  it('a token refused twice stops the client and connect() rejects', async () => {
    const a = client(s.url, '8', { token: () => s.token('8', { ttlS: -10 }) });
    const err = await a.connect().catch((e: unknown) => e);
    expect((err as ClientError).code).toBe('STOPPED');
    expect(a.state).toBe('stopped');
  });

  it('token_expiring: the client authenticates again on the same connection and outlives the first exp', async () => {
    const asked: boolean[] = [];
    const a = client(s.url, '9', { token: (refresh) => (asked.push(refresh), s.token('9', { ttlS: refresh ? 3600 : 2 })) });
    await a.connect();
    const seen = states(a);
    await waitFor(async () => (asked.length === 2 && Date.parse(a.expiresAt!) > Date.now() + 3_000_000) || undefined, 3000);
    expect(asked).toEqual([false, true]);
    await sleep(2600); // past the first token's exp (leeway 0): the server would close 4401
    expect(seen).toEqual([]);
    expect((await a.request('ping', {})).type).toBe('pong');
  });

  it('a dead connection (no pong) is dropped and replaced; a handshake that hangs is retried', async () => {
    const proxy = await proxyTo();
    const a = client(`ws://127.0.0.1:${proxy.port}`, '10', { pingIntervalMs: 150, pongTimeoutMs: 200, connectTimeoutMs: 400 });
    await a.connect();
    const seen = states(a);
    proxy.freeze('both');
    await waitFor(async () => seen.filter((st) => st.state === 'waiting').length >= 2 || undefined, 5000);
    expect(a.state).not.toBe('ready');
    proxy.thaw();
    await waitFor(async () => a.state === 'ready' || undefined, 5000);
    expect((await a.request('ping', {})).type).toBe('pong');
  });
});

describe('SINGLE_SESSION=true', () => {
  let single: TestServer;
  beforeAll(async () => {
    single = await startServer({ ...ENV, SINGLE_SESSION: 'true' });
    await single.users('30');
  }, 120_000);
  afterAll(() => single?.close());

  it('4409: the replaced client stops for good; the newer one stays', async () => {
    const older = client(single.url, '30', { token: () => single.token('30') });
    await older.connect();
    const conflicts: unknown[] = [];
    older.on('session_conflict', (f) => conflicts.push(f.type));
    const seen = states(older);
    const newer = client(single.url, '30', { token: () => single.token('30') });
    await newer.connect();
    await waitFor(async () => older.state === 'stopped' || undefined, 3000);
    await sleep(300);
    expect(conflicts).toEqual(['session_conflict']);
    expect(seen).toEqual([{ state: 'stopped', closeCode: 4409, reason: 'replaced' }]);
    expect(newer.state).toBe('ready');
    expect((await newer.request('ping', {})).type).toBe('pong');
  });
});

describe('the outbox retries sends refused for a passing reason', () => {
  it('RATE_LIMITED: the send goes again after retryAfter and is stored once', async () => {
    const limited = await startServer({ ...ENV, MESSAGE_RATE_LIMIT: '2', ACTION_RATE_LIMIT: '1', MESSAGE_RATE_WINDOW_MS: '1000' });
    try {
      await limited.users('40', '41');
      await limited.follow(['40', '41']);
      const a = client(limited.url, '40', { token: () => limited.token('40') });
      await a.connect();
      const t0 = Date.now();
      const acks = await Promise.all(['a', 'b', 'c'].map((content) => a.request('send_private_message', { recipientId: '41', content })));
      expect(acks.map((k) => k.message.content)).toEqual(['a', 'b', 'c']);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900); // the third waited for the next window
      expect(await messagesFrom(limited, '40')).toBe(3);
      // Other commands get their error: no retry behind the caller's back.
      const err = await a.request('send_private_message', { recipientId: '99', content: 'x' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ClientError);
      expect((err as ClientError).code).toBe('NOT_FOUND');
      // A command that is not a send, refused RATE_LIMITED, rejects at once with retryAfter.
      await a.request('create_group', { groupName: 'one' });
      const t1 = Date.now();
      const limitedErr = await a.request('create_group', { groupName: 'two' }).catch((e: unknown) => e);
      expect(limitedErr).toBeInstanceOf(ClientError);
      expect((limitedErr as ClientError).code).toBe('RATE_LIMITED');
      expect((limitedErr as ClientError).retryAfter).toBeGreaterThan(0);
      expect(Date.now() - t1).toBeLessThan(500);
    } finally {
      await limited.close();
    }
  });

  // PostgreSQL only: the embedded database runs in-process and cannot go away.
  it.skipIf(!onPostgres)('SERVICE_UNAVAILABLE: a send written while the database is down is stored once it is back', async () => {
    const { database: db, proxy: dbProxy, url } = await databaseBehindProxy();
    proxies.push(dbProxy);
    const down = await startServer({ ...ENV, DATABASE_URL: url, DB_CONNECT_TIMEOUT_MS: '500' }, { database: db });
    try {
      await down.users('50', '51');
      await down.follow(['50', '51']);
      const a = client(down.url, '50', { token: () => down.token('50'), reconnect: { minDelayMs: 200, maxDelayMs: 400 } });
      await a.connect();
      dbProxy.refuse(true);
      dbProxy.cut();
      const pending = a.request('send_private_message', { recipientId: '51', content: 'during the outage' });
      // The server refused it at least once (and the client did not give up).
      await waitFor(async () => (await unavailableSent(down.port)) >= 1 || undefined, 10_000);
      await sleep(300);
      expect(a.outbox).toHaveLength(1);
      dbProxy.refuse(false);
      const ack = await pending;
      expect(ack.message.content).toBe('during the outage');
      expect(await messagesFrom(down, '50')).toBe(1);
    } finally {
      await down.close();
    }
  });
});

/**
 * PROTOCOL §1 (transport: payload limit, UTF-8, text frames only, Origin allow-list,
 * per-IP caps, X-Forwarded-For with TRUST_PROXY), §2 frame validation (BAD_REQUEST,
 * UNKNOWN_TYPE, requestId, forbidden keys, PROTOCOL_ERROR_LIMIT), §10 /metrics open
 * without METRICS_TOKEN and §11 compatibility answers.
 *
 * Server `s`: TRUST_PROXY=1 with small per-IP caps; every test connects with its own
 * X-Forwarded-For address so the caps only bite where a test means them to.
 * TRUST_PROXY=0 and the §10 HTTP probes with METRICS_TOKEN: transport-http.test.ts.
 */
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';
import { forwardedIps, httpGet, ISO_RE, upgrade, waitFor, within, writeRawFrame } from '../helpers/wire.ts';

const ORIGINS = ['https://app.example', 'https://admin.example'];

/** Server start on the embedded database can be slow on a busy machine. */
const START_TIMEOUT_MS = 120_000;

let s: TestServer;
/** A fresh client address, as the trusted proxy reports it. */
const nextIp = forwardedIps('10.77');
const xff = (ip = nextIp()) => ({ 'X-Forwarded-For': ip });

/** Connect to `s` from a fresh forwarded address. */
async function connect(headers: Record<string, string> = xff()): Promise<TestClient> {
  const c = await s.connect({ headers });
  open.push(c);
  return c;
}
/** Clients of the current test, closed after it (user 1 may hold only 10 devices). */
const open: TestClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});
/** Connect from a fresh address and authenticate as `userId`. */
async function login(userId: string): Promise<TestClient> {
  const c = await connect();
  const r = await c.request({ type: 'authenticate', token: s.token(userId) });
  expect(r.type).toBe('auth_success');
  return c;
}

beforeAll(async () => {
  s = await startServer({
    ALLOWED_ORIGINS: ORIGINS.join(','),
    TRUST_PROXY: '1',
    MAX_CONNECTIONS_PER_IP: '2',
    CONNECTION_RATE_PER_IP: '5',
    PROTOCOL_ERROR_LIMIT: '5',
  });
  await s.users('1', '2');
  await s.follow(['1', '2']);
}, START_TIMEOUT_MS);
afterAll(() => s?.close());

describe('§1 frames', () => {
  it('closes with 1009 on a message over MAX_PAYLOAD_BYTES; one of exactly the limit is processed', async () => {
    const c = await login('1');
    const base = JSON.stringify({ type: 'ping', requestId: 'max', pad: '' });
    const exact = JSON.stringify({ type: 'ping', requestId: 'max', pad: 'x'.repeat(65536 - base.length) });
    expect(Buffer.byteLength(exact)).toBe(65536);
    c.send(exact);
    expect((await c.next((f) => f.requestId === 'max')).type).toBe('pong');
    c.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(70_000) }));
    expect((await within(c.closed, 3000, '1009 close')).code).toBe(1009);
  });

  it('closes with 1007 on a text frame that is not valid UTF-8', async () => {
    const c = await login('1');
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
    writeRawFrame(c.ws, 0x1, Buffer.concat([Buffer.from('{"type":"ping","x":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]));
    expect((await within(c.closed, 3000, '1007 close')).code).toBe(1007);
  });

  it('does not negotiate permessage-deflate by default (WS_COMPRESSION=false), on any path', async () => {
    // The ws client offers permessage-deflate unless told otherwise.
    const c = await s.connect({ headers: xff() });
    open.push(c);
    expect(c.ws.extensions).toBe('');
    const onPath = await TestClient.connect(`${s.url}/some/old/path`, { headers: xff() });
    open.push(onPath);
    expect((await onPath.request({ type: 'ping' })).type).toBe('pong');
  });

  it('sends the 101 and the connected frame in one write (one system call, one TCP segment)', async () => {
    // Count the writes the server's socket hands to libuv (`_write` / `_writev`: one call each).
    let writes = -1;
    const onConnection = (sock: Socket) => {
      writes = 0;
      const w = sock as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
      const write = w._write.bind(sock);
      const writev = w._writev.bind(sock);
      w._write = (...a) => (writes++, write(...a));
      w._writev = (...a) => (writes++, writev(...a));
    };
    s.app.server.prependListener('connection', onConnection);
    try {
      const u = await upgrade(s.port, { headers: xff() });
      try {
        expect(u.status).toBe(101);
        // The unmasked FIN text frame (0x81) of the welcome (PROTOCOL §3 item 1) came with the 101.
        expect(u.head?.[0]).toBe(0x81);
        expect(u.head?.toString('utf8')).toContain('"type":"connected"');
        expect(writes).toBe(1);
      } finally {
        u.close();
      }
    } finally {
      s.app.server.removeListener('connection', onConnection);
    }
  });

  it('answers a binary frame with BAD_REQUEST and keeps the connection', async () => {
    const c = await login('1');
    c.ws.send(Buffer.from(JSON.stringify({ type: 'ping' })), { binary: true });
    expect(await c.next('error')).toMatchObject({ type: 'error', code: 'BAD_REQUEST' });
    expect(await c.none('pong', 100)).toBe(true);
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
  });
});

describe('§1 admission', () => {
  it('ALLOWED_ORIGINS: another Origin → 403 before the handshake; a listed one and none are accepted', async () => {
    for (const origin of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example', 'null']) {
      expect((await upgrade(s.port, { headers: { Origin: origin, ...xff() } })).status, origin).toBe(403);
    }
    for (const origin of ORIGINS) {
      const u = await upgrade(s.port, { headers: { Origin: origin, ...xff() } });
      expect(u.status, origin).toBe(101);
      u.close();
    }
    const none = await upgrade(s.port, { headers: xff() });
    expect(none.status).toBe(101);
    none.close();
    // A real client with an allowed Origin gets the welcome frame.
    const c = await TestClient.connect(s.url, { headers: { Origin: ORIGINS[0]!, ...xff() } });
    await c.close();
  });

  it('MAX_CONNECTIONS_PER_IP=2: a third concurrent connection → 429; a freed slot is reusable', async () => {
    const ip = nextIp();
    const a = await connect(xff(ip));
    const b = await connect(xff(ip));
    expect((await upgrade(s.port, { headers: xff(ip) })).status).toBe(429);
    const before = s.app.gateway.connectionCount();
    await a.close();
    await waitFor(() => s.app.gateway.connectionCount() < before, 3000, 'the server to see the close');
    const c = await connect(xff(ip));
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
    await Promise.all([b.close(), c.close()]);
  });

  it('upgrades the WebSocket handshake refuses (400: bad version, bad key) give their per-IP slot back', async () => {
    const ip = nextIp();
    for (const bad of [{ 'Sec-WebSocket-Version': '99' }, { 'Sec-WebSocket-Key': 'short' }] as Record<string, string>[]) {
      const r = await upgrade(s.port, { headers: { ...xff(ip), ...bad } });
      expect(r.status).toBe(400);
      r.close();
    }
    // MAX_CONNECTIONS_PER_IP=2 and both refused: a valid upgrade still gets in (it got 429
    // for good before). One try only: each counts toward CONNECTION_RATE_PER_IP=5.
    await sleep(200);
    const u = await upgrade(s.port, { headers: xff(ip) });
    u.close();
    expect(u.status).toBe(101);
  });

  it('CONNECTION_RATE_PER_IP=5: a sixth new connection within the minute → 429, even with none open', async () => {
    const ip = nextIp();
    for (let i = 0; i < 5; i++) {
      const u = await upgrade(s.port, { headers: xff(ip) });
      expect(u.status, `attempt ${i + 1}`).toBe(101);
      const before = s.app.gateway.connectionCount();
      u.close();
      await waitFor(() => s.app.gateway.connectionCount() < before, 3000, 'the server to see the close');
    }
    expect((await upgrade(s.port, { headers: xff(ip) })).status).toBe(429);
    // Another address is not affected.
    const other = await upgrade(s.port, { headers: xff() });
    expect(other.status).toBe(101);
    other.close();
  });

  it('TRUST_PROXY=1: the client IP is the last X-Forwarded-For hop, not the socket address nor earlier hops', async () => {
    // Same socket address (127.0.0.1), three different forwarded clients: all accepted.
    const distinct = await Promise.all([1, 2, 3].map(() => upgrade(s.port, { headers: xff() })));
    expect(distinct.map((u) => u.status)).toEqual([101, 101, 101]);
    // Different spoofed left-hand entries, same trusted hop: the third is the same client → 429.
    const ip = nextIp();
    const same = [];
    for (const spoof of ['203.0.113.1', '203.0.113.2', '203.0.113.3']) same.push(await upgrade(s.port, { headers: { 'X-Forwarded-For': `${spoof}, ${ip}` } }));
    expect(same.map((u) => u.status)).toEqual([101, 101, 429]);
    for (const u of [...distinct, ...same]) u.close();
  });
});

describe('§2 frame validation', () => {
  it.each([
    ['not JSON', 'hello {'],
    ['a JSON array', '[{"type":"ping"}]'],
    ['a JSON string', '"ping"'],
    ['a JSON number', '42'],
    ['JSON null', 'null'],
  ])('%s → BAD_REQUEST, connection kept', async (_name, raw) => {
    const c = await login('1');
    c.send(raw);
    expect(await c.next('error')).toMatchObject({ type: 'error', code: 'BAD_REQUEST', message: expect.any(String) });
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
  });

  it('missing or non-string type → BAD_REQUEST naming the field, with the requestId', async () => {
    const c = await login('1');
    expect(await c.request({ content: 'no type' })).toMatchObject({ type: 'error', code: 'BAD_REQUEST', field: 'type' });
    expect(await c.request({ type: 7 })).toMatchObject({ type: 'error', code: 'BAD_REQUEST', field: 'type' });
  });

  it('unknown type → UNKNOWN_TYPE with the requestId (also before authentication)', async () => {
    const c = await connect();
    expect(await c.request({ type: 'launch_rockets' })).toMatchObject({ type: 'error', code: 'UNKNOWN_TYPE' });
    const a = await login('1');
    expect(await a.request({ type: 'launch_rockets' })).toMatchObject({ type: 'error', code: 'UNKNOWN_TYPE' });
  });

  it('echoes requestId on replies and errors, and only then', async () => {
    const c = await connect();
    c.send({ type: 'ping', requestId: 'rq-ping' });
    expect(await c.next('pong')).toMatchObject({ requestId: 'rq-ping' });
    c.send({ type: 'authenticate', token: s.token('1'), requestId: 'rq-auth' });
    expect(await c.next('auth_success')).toMatchObject({ requestId: 'rq-auth' });
    c.send({ type: 'get_communities', requestId: 'rq-cmd' });
    expect(await c.next('community_list')).toMatchObject({ requestId: 'rq-cmd' });
    c.send({ type: 'send_private_message', recipientId: 2, requestId: 'rq-bad' });
    expect(await c.next('error')).toMatchObject({ code: 'BAD_REQUEST', field: 'content', requestId: 'rq-bad' });
    c.send({ type: 'nope', requestId: 'rq-unknown' });
    expect(await c.next('error')).toMatchObject({ code: 'UNKNOWN_TYPE', requestId: 'rq-unknown' });
    c.send({ type: 'ping' });
    expect((await c.next('pong')).requestId).toBeUndefined();
    // A requestId longer than 64 characters, or not a string, is itself invalid.
    c.send({ type: 'ping', requestId: 'x'.repeat(65) });
    expect(await c.next('error')).toMatchObject({ code: 'BAD_REQUEST', field: 'requestId' });
    c.send({ type: 'ping', requestId: 5 });
    expect(await c.next('error')).toMatchObject({ code: 'BAD_REQUEST', field: 'requestId' });
    c.send({ type: 'ping', requestId: 'x'.repeat(64) });
    expect(await c.next('pong')).toMatchObject({ requestId: 'x'.repeat(64) });
  });

  it('a __proto__, constructor or prototype key anywhere → BAD_REQUEST', async () => {
    const raws = [
      '{"type":"ping","__proto__":{"x":1},"requestId":"fk1"}',
      '{"type":"get_communities","deep":{"a":[{"constructor":{"prototype":1}}]},"requestId":"fk2"}',
      '{"type":"ping","prototype":1,"requestId":"fk3"}',
    ];
    for (const raw of raws) {
      const c = await login('1');
      const rid = JSON.parse(raw).requestId as string;
      c.send(raw);
      const r = await c.next((f) => f.requestId === rid || f.type === 'error');
      expect(r, raw).toMatchObject({ type: 'error', code: 'BAD_REQUEST' });
      await c.close();
    }
    // The words as values are fine.
    const c = await login('1');
    expect((await c.request({ type: 'ping', note: '__proto__ constructor prototype' })).type).toBe('pong');
  });

  it('PROTOCOL_ERROR_LIMIT=5: four invalid frames are tolerated, the fifth closes with 4400', async () => {
    const c = await login('1');
    c.send('not json');
    c.send({ type: 'bogus' });
    c.send('[]');
    c.send({ type: 'send_private_message', recipientId: 'x', content: 'hi' });
    for (let i = 0; i < 4; i++) await c.next('error');
    // Errors that are not about the frame's form do not count.
    expect((await c.request({ type: 'start_conversation', recipientId: 999 })).type).toBe('error');
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
    expect(c.closeCode).toBeUndefined();
    c.send({ type: 'bogus again' });
    expect((await within(c.closed, 3000, '4400 close')).code).toBe(4400);
  });
});

describe('§11 compatibility answers', () => {
  it('get_communities → community_list {communities: []}', async () => {
    const c = await login('1');
    expect(await c.request({ type: 'get_communities' })).toMatchObject({ type: 'community_list', communities: [], timestamp: expect.stringMatching(ISO_RE) });
  });

  it('get_community_members {communityId} → community_members {communityId, members: []}', async () => {
    const c = await login('1');
    expect(await c.request({ type: 'get_community_members', communityId: 'c-42' })).toMatchObject({
      type: 'community_members',
      communityId: 'c-42',
      members: [],
      timestamp: expect.stringMatching(ISO_RE),
    });
  });

  it('get_community_progress {communityId} → community_progress {communityId, progress: null}', async () => {
    const c = await login('1');
    const r = await c.request({ type: 'get_community_progress', communityId: 'c-7' });
    expect(r).toMatchObject({ type: 'community_progress', communityId: 'c-7', progress: null, timestamp: expect.stringMatching(ISO_RE) });
    expect('progress' in r).toBe(true);
  });

  it('a numeric communityId is echoed as a string (§2: ids are strings on output)', async () => {
    const c = await login('1');
    expect(await c.request({ type: 'get_community_members', communityId: 42 })).toMatchObject({ type: 'community_members', communityId: '42' });
    expect(await c.request({ type: 'get_community_progress', communityId: 7 })).toMatchObject({ type: 'community_progress', communityId: '7' });
  });
});

describe('§10 HTTP without METRICS_TOKEN', () => {
  it('GET /metrics without METRICS_TOKEN configured is open', async () => {
    const r = await httpGet(s.port, '/metrics');
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/^# TYPE /m);
  });
});

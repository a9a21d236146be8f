/**
 * /metrics (issue "Benchmarks and metrics", deliverable 3): each family named there moves
 * with real traffic from real clients: frames in and out by type, commands by type (ack
 * latency as the server sees it), messages stored, delivery lag, error frames by code
 * (command, validation and authentication errors), rate-limit hits by limit, refused
 * upgrades by reason, server-initiated closes by code, and, on PostgreSQL, database
 * statement time and pool wait.
 *
 * Every client comes from its own X-Forwarded-For address (TRUST_PROXY=1) so the per-IP
 * limits only bite where a test means them to.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import { freshUsers, sendOk } from '../helpers/dmkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { forwardedIps, httpGet, upgrade, type UpgradeResult, waitFor, within } from '../helpers/wire.ts';

/** Server start on the embedded database can be slow on a busy machine. */
const START_TIMEOUT_MS = 120_000;

let s: TestServer;
const nextIp = forwardedIps('10.88');

beforeAll(async () => {
  s = await startServer({
    TRUST_PROXY: '1',
    ALLOWED_ORIGINS: 'https://app.example',
    MAX_CONNECTIONS_PER_IP: '2',
    CONNECTION_RATE_PER_IP: '3',
    MESSAGE_RATE_LIMIT: '3',
    TYPING_RATE_LIMIT: '2',
    PROTOCOL_ERROR_LIMIT: '3',
  });
}, START_TIMEOUT_MS);
afterAll(() => s?.close());

/** Connect from a fresh forwarded address (and log in as `userId` when given). */
async function client(userId?: string): Promise<TestClient> {
  const c = await s.connect({ headers: { 'X-Forwarded-For': nextIp() } });
  if (userId) expect((await c.request({ type: 'authenticate', token: s.token(userId) })).type).toBe('auth_success');
  return c;
}

/** A series: metric name and its exact labels (none for an unlabelled one). */
type Series = [name: string, labels?: Record<string, string>];

/** The value of each of `series` in one scrape of /metrics (0 for a series not exposed yet). */
async function read(...series: Series[]): Promise<number[]> {
  const r = await httpGet(s.port, '/metrics');
  expect(r.status).toBe(200);
  const lines = r.text.split('\n');
  return series.map(([name, labels = {}]) => {
    const want = Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .join(',');
    const prefix = (want ? `${name}{${want}}` : name) + ' ';
    const line = lines.find((l) => l.startsWith(prefix));
    return line ? Number(line.slice(prefix.length)) : 0;
  });
}

/** How much each of `series` grew while `act` ran. */
async function growth(series: Series[], act: () => Promise<unknown>): Promise<number[]> {
  const before = await read(...series);
  await act();
  const after = await read(...series);
  return after.map((v, i) => v - before[i]!);
}

describe('/metrics moves with traffic', () => {
  it('DMs: frames in and out by type (a fan-out to two devices counts 2), commands by type, messages stored, delivery lag (and database time on PostgreSQL)', async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    // b has two devices: each delivery is one frame written to both (one fan-out of 2).
    const [ca, cb, cb2] = await Promise.all([client(a), client(b), client(b)]);
    const d = await growth(
      [
        ['chat_frames_in_total', { type: 'send_private_message' }],
        ['chat_frames_out_total', { type: 'new_private_message' }],
        ['chat_frames_out_total', { type: 'private_message_sent' }],
        ['chat_command_duration_seconds_count', { type: 'send_private_message' }],
        ['chat_messages_stored_total'],
        ['chat_delivery_lag_seconds_count'],
        ['chat_db_query_duration_seconds_count'],
        ['chat_db_pool_wait_seconds_count'],
      ],
      async () => {
        for (let i = 0; i < 2; i++) {
          await sendOk(ca, b!, `hello ${i}`);
          await Promise.all([cb.next('new_private_message'), cb2.next('new_private_message')]);
        }
      },
    );
    expect(d[0], 'send_private_message frames in').toBe(2);
    expect(d[1], 'new_private_message out').toBe(4);
    expect(d[2], 'private_message_sent out').toBe(2);
    expect(d[3], 'send_private_message commands').toBe(2);
    expect(d[4], 'messages stored').toBe(2);
    expect(d[5], 'deliveries with a lag').toBeGreaterThanOrEqual(2);
    if (s.database.url) {
      expect(d[6], 'database statements').toBeGreaterThanOrEqual(2);
      expect(d[7], 'pool waits').toBeGreaterThanOrEqual(2);
    }
  });

  it('error frames by code: validation, unknown type, authentication and command errors; frames in as invalid or by mapped type', async () => {
    const [a, b] = await freshUsers(s, 2);
    const c = await client(a);
    const bad = await client();
    let authCode = '';
    const d = await growth(
      [
        ['chat_errors_total', { code: 'BAD_REQUEST' }],
        ['chat_errors_total', { code: 'UNKNOWN_TYPE' }],
        ['chat_errors_total', { code: 'NOT_FOUND' }],
        ['chat_frames_in_total', { type: 'invalid' }],
        ['chat_frames_in_total', { type: 'edit_message' }],
      ],
      async () => {
        expect((await c.request({ type: 'send_private_message', recipientId: b })).code).toBe('BAD_REQUEST');
        expect((await c.request({ type: 'no_such_type' })).code).toBe('UNKNOWN_TYPE');
        // Sent as its alias: counted under the mapped type.
        expect((await c.request({ type: 'edit_private_message', messageId: '0190a7c4-0000-7000-8000-000000000000', content: 'x' })).code).toBe('NOT_FOUND');
        const r = await bad.request({ type: 'authenticate', token: 'not-a-jwt' });
        expect(r.type).toBe('auth_error');
        authCode = r.code;
      },
    );
    expect(d, 'errors BAD_REQUEST, UNKNOWN_TYPE, NOT_FOUND; frames in invalid, edit_message').toEqual([1, 1, 1, 2, 1]);
    expect((await read(['chat_errors_total', { code: authCode }]))[0], `auth_error ${authCode}`).toBeGreaterThanOrEqual(1);
  });

  it('rate-limit hits by limit (message, typing) next to the RATE_LIMITED error frames', async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const c = await client(a);
    const d = await growth(
      [['chat_rate_limit_hits_total', { limit: 'message' }], ['chat_rate_limit_hits_total', { limit: 'typing' }], ['chat_errors_total', { code: 'RATE_LIMITED' }]],
      async () => {
        for (let i = 0; i < 3; i++) await sendOk(c, b!, `m${i}`);
        expect((await c.request({ type: 'send_private_message', recipientId: b, content: 'one too many' })).code).toBe('RATE_LIMITED');
        for (let i = 0; i < 3; i++) await c.request({ type: 'typing', recipientId: Number(b), isTyping: true });
      },
    );
    expect(d).toEqual([1, 1, 1]);
  });

  it('refused upgrades by reason (origin, ip_cap, connect_rate) and the connect limit as a rate-limit hit', async () => {
    const ip = nextIp();
    const held: UpgradeResult[] = [];
    const d = await growth(
      [
        ['chat_upgrades_rejected_total', { reason: 'origin' }],
        ['chat_upgrades_rejected_total', { reason: 'ip_cap' }],
        ['chat_upgrades_rejected_total', { reason: 'connect_rate' }],
        ['chat_rate_limit_hits_total', { limit: 'connect' }],
      ],
      async () => {
        expect((await upgrade(s.port, { headers: { Origin: 'https://evil.example', 'X-Forwarded-For': nextIp() } })).status).toBe(403);
        for (let i = 0; i < 2; i++) held.push(await upgrade(s.port, { headers: { 'X-Forwarded-For': ip } }));
        expect(held.map((u) => u.status)).toEqual([101, 101]);
        // The third from the address passes the rate (3 per minute) and meets the cap of 2.
        expect((await upgrade(s.port, { headers: { 'X-Forwarded-For': ip } })).status).toBe(429);
        // The fourth is over the rate.
        expect((await upgrade(s.port, { headers: { 'X-Forwarded-For': ip } })).status).toBe(429);
      },
    ).finally(() => held.forEach((u) => u.close()));
    expect(d).toEqual([1, 1, 1, 1]);
  });

  it('server-initiated closes by close code (4400 after PROTOCOL_ERROR_LIMIT invalid frames)', async () => {
    const series: Series = ['chat_server_closes_total', { code: '4400' }];
    const [before] = await read(series);
    const c = await client();
    for (let i = 0; i < 3; i++) c.send('{"type":');
    expect((await within(c.closed, 3000, '4400 close')).code).toBe(4400);
    await waitFor(async () => (await read(series))[0] === before! + 1 || undefined, 3000, 'close counted');
  });
});

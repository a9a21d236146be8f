/**
 * Two server processes sharing PostgreSQL and Redis (RedisBus, RedisPresence, Redis rate
 * limits and IP counts): users on different instances reach each other as if on one, and
 * per-user rules hold deployment-wide (PROTOCOL §1, §3 item 9, §4, §8).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeRedis, createRedis } from '../../src/fanout/redisClient.ts';
import { createLogger } from '../../src/observability/logger.ts';
import type { Frame, TestClient } from '../helpers/client.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { teardownRedisPair, Fixture, freePort, getJson, scaleEnabled, sleep, spawnRedisInstance, spawnServer, until, warnIfSkipped, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('scale-redis.test.ts');

const GRACE_MS = 1500;
const HEARTBEAT_MS = 250;
const TTL_MS = 1000;
const PREFIX = `t:scale:${randomBytes(4).toString('hex')}:`;

let db: TestDatabase;
let fx: Fixture;
let i1: Proc;
let i2: Proc;
let ipSeq = 10;
/** A loopback source address of its own per test (per-IP caps are deployment-wide). */
const nextIp = () => `127.0.0.${ipSeq++}`;

async function instance(): Promise<Proc> {
  return spawnRedisInstance(db.url!, process.env.TEST_REDIS_URL!, PREFIX, {
    OFFLINE_GRACE_MS: String(GRACE_MS),
    PRESENCE_HEARTBEAT_MS: String(HEARTBEAT_MS),
    PRESENCE_TTL_MS: String(TTL_MS),
    MESSAGE_RATE_LIMIT: '6',
    MAX_CONNECTIONS_PER_USER: '3',
    MAX_CONNECTIONS_PER_IP: '5',
  });
}

/** `chat_delivery_lag_seconds_count` of the instance on `port` (publish → frames written, across the bus when remote). */
async function remoteLagCount(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = /^chat_delivery_lag_seconds_count(?:\{[^}]*\})? (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

const dm = (to: string, content: string) => ({ type: 'send_private_message', recipientId: to, content });
const isPresence = (type: string, id: string) => (f: Frame) => f.type === type && f.user?.id === id;

describe.skipIf(!scaleEnabled)('scale-out over Redis: two processes', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    fx = new Fixture(db.url!);
    await fx.seed(
      ['1', '2', '10', '11', '20', '21', '30', '40', '41', '50', '60', '61', '62', '70', '71'],
      [['60', '61'], ['60', '62'], ...Fixture.mutual(['1', '2']), ...Fixture.mutual(['10', '11']), ['20', '21'], ...Fixture.mutual(['40', '41']), ['70', '71']],
    );
    // Sequential: the first applies migrations, the second finds them done.
    i1 = await instance();
    i2 = await instance();
  }, 120_000);

  afterAll(() => teardownRedisPair(fx, [i1, i2], db, PREFIX), 60_000);

  it('reports redis healthy in /ready and /health', async () => {
    const r = await getJson(i1.port, '/ready');
    expect(r.status).toBe(200);
    expect(r.body.checks).toContainEqual({ name: 'redis', status: 'healthy' });
    expect(r.body.degraded).toBeUndefined();
    expect((await getJson(i2.port, '/health')).body.redis).toMatchObject({ connected: true, configured: true });
  });

  it('a DM from instance 1 reaches the recipient on both instances and the sender\'s other device on instance 2, once each', async () => {
    const ip = nextIp();
    const a1 = await fx.login(i1.url, '1', ip);
    const a2 = await fx.login(i2.url, '1', ip);
    const b1 = await fx.login(i1.url, '2', ip);
    const b2 = await fx.login(i2.url, '2', ip);
    const lagBefore = await remoteLagCount(i2.port);
    // What Redis carries (BUS_ENCRYPTION, on by default): sealed frames, no message text.
    const spy = createRedis(process.env.TEST_REDIS_URL!, 'spy', createLogger('error', { silent: true }));
    const carried: string[] = [];
    await spy.pSubscribe(`${PREFIX}*`, (m) => carried.push(m));
    const ack = await a1.request(dm('2', 'across'));
    expect(ack.type).toBe('private_message_sent');
    for (const b of [b1, b2]) {
      const ev = await b.next('new_private_message');
      expect(ev.message).toMatchObject({ id: ack.messageId, content: 'across', senderId: '1' });
    }
    const echo = await a2.next((f) => f.type === 'private_message_sent' && f.messageId === ack.messageId);
    expect(echo.message.content).toBe('across');
    expect(carried.length).toBeGreaterThanOrEqual(2);
    expect(carried.join('\n')).not.toMatch(/across|new_private_message/);
    closeRedis(spy);
    // Instance 2 got both over Redis (b2's message, a2's echo) and timed each (/metrics).
    expect((await remoteLagCount(i2.port)) - lagBefore).toBeGreaterThanOrEqual(2);
    // Exactly once everywhere; the sending connection only has its ack.
    await Promise.all([
      b1.none('new_private_message', 300),
      b2.none('new_private_message', 300),
      a2.none('private_message_sent', 300),
      a1.none((f) => f.type === 'private_message_sent' && f.requestId === undefined, 300),
    ]);
    // And back: from instance 2 to instance 1.
    const back = await b2.request(dm('1', 'reply'));
    expect((await a1.next('new_private_message')).message.id).toBe(back.messageId);
    expect((await a2.next('new_private_message')).message.id).toBe(back.messageId);
    expect((await b1.next('private_message_sent')).messageId).toBe(back.messageId);
    for (const c of [a1, a2, b1, b2]) await c.close();
  });

  it('a user that closes and reconnects in quick succession on one instance stays reachable from the other', async () => {
    const ip = nextIp();
    const sender = await fx.login(i1.url, '1', ip);
    let last: TestClient | undefined;
    for (let k = 0; k < 5; k++) {
      const c = await fx.login(i2.url, '2', ip);
      if (k < 4) {
        c.ws.close(1000);
        await c.closed;
      } else last = c;
    }
    const ack = await sender.request(dm('2', 'after churn'));
    expect((await last!.next('new_private_message')).message.id).toBe(ack.messageId);
    await sender.close();
    await last!.close();
  });

  it('presence: user_online across instances; a reconnect within OFFLINE_GRACE_MS is silent; user_offline after it with persisted lastSeen', async () => {
    const ip = nextIp();
    const watcher = await fx.login(i1.url, '10', ip);
    const d = await fx.login(i2.url, '11', ip);
    await watcher.next(isPresence('user_online', '11'));
    const online = await watcher.request({ type: 'get_online_users' });
    expect(online.users.map((u: Frame) => u.id)).toEqual(['11']);
    // Close on instance 2, come back on instance 1 within the grace period: no events.
    await d.close();
    await sleep(GRACE_MS / 4);
    const d2 = await fx.login(i1.url, '11', ip);
    await sleep(GRACE_MS + 400);
    await watcher.none((f) => f.type === 'user_offline' || f.type === 'user_online', 200);
    // Now leave for good: exactly one user_offline after the grace period.
    const closedAt = Date.now();
    await d2.close();
    const off = await watcher.next(isPresence('user_offline', '11'), GRACE_MS + 5000);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
    expect(off.user).toEqual({ id: '11', username: 'u11' });
    expect(Number.isNaN(Date.parse(off.lastSeen))).toBe(false);
    await watcher.none('user_offline', 500);
    const p = await watcher.request({ type: 'get_presence', userIds: ['11'] });
    expect(p.users).toEqual([{ id: '11', online: false, lastSeen: off.lastSeen }]);
    expect((await watcher.request({ type: 'get_online_users' })).users).toEqual([]);
    await watcher.close();
  });

  it('group events cross instances: creation, a message to every member device, the sender\'s other device, reactions', async () => {
    const ip = nextIp();
    const o1 = await fx.login(i1.url, '60', ip);
    const o2 = await fx.login(i2.url, '60', ip);
    const m1a = await fx.login(i1.url, '61', ip);
    const m1b = await fx.login(i2.url, '61', ip);
    const m2 = await fx.login(i2.url, '62', ip);
    const created = await o1.request({ type: 'create_group', groupName: 'across', initialMembers: ['61', '62'] });
    expect(created.rejectedMembers).toEqual([]);
    for (const c of [o2, m1a, m1b, m2]) expect((await c.next('group_created')).groupId).toBe(created.groupId);
    const sent = await o1.request({ type: 'send_group_message', groupId: created.groupId, content: 'hello @U62' });
    expect(sent.type).toBe('group_message_sent');
    for (const c of [m1a, m1b, m2]) expect((await c.next('new_group_message')).message.id).toBe(sent.message.id);
    expect((await m2.next('mentioned_in_group')).messageId).toBe(sent.message.id);
    expect((await o2.next('group_message_sent')).message.id).toBe(sent.message.id);
    const r = await m2.request({ type: 'add_group_reaction', messageId: sent.message.id, reaction: '👍' });
    expect(r.type).toBe('group_reaction_added');
    for (const c of [o1, o2, m1a, m1b]) expect((await c.next('group_reaction_added')).messageId).toBe(sent.message.id);
    // each device got the message exactly once
    for (const c of [m1a, m1b, m2]) await c.none((f) => f.type === 'new_group_message', 300);
  });

  it('the message rate limit is shared by the user\'s devices on both instances', async () => {
    const ip = nextIp();
    const s1 = await fx.login(i1.url, '20', ip);
    const s2 = await fx.login(i2.url, '20', ip);
    for (let i = 0; i < 3; i++) expect((await s1.request(dm('21', `one ${i}`))).type).toBe('private_message_sent');
    for (let i = 0; i < 3; i++) expect((await s2.request(dm('21', `two ${i}`))).type).toBe('private_message_sent');
    const over = await s1.request(dm('21', 'seventh'));
    expect(over).toMatchObject({ type: 'error', code: 'RATE_LIMITED' });
    expect(over.retryAfter).toBeGreaterThanOrEqual(1);
    expect((await s2.request(dm('21', 'eighth'))).code).toBe('RATE_LIMITED');
    await s1.close();
    await s2.close();
  });

  it('typing: a stop sent by the typist\'s device on the other instance reaches the recipient at once, not after TYPING_TIMEOUT_MS', async () => {
    const ip = nextIp();
    const t1 = await fx.login(i1.url, '70', ip);
    const t2 = await fx.login(i2.url, '70', ip);
    const r = await fx.login(i2.url, '71', ip);
    await t1.request({ type: 'typing', recipientId: '71', isTyping: true });
    expect((await r.next('typing_indicator', 3000)).isTyping).toBe(true);
    const t0 = Date.now();
    await t2.request({ type: 'typing', recipientId: '71', isTyping: false });
    expect(await r.next('typing_indicator', 3000)).toMatchObject({ senderId: '70', isTyping: false });
    expect(Date.now() - t0).toBeLessThan(3000); // TYPING_TIMEOUT_MS is 6000
    await Promise.all([t1.close(), t2.close(), r.close()]);
  });

  it('MAX_CONNECTIONS_PER_USER counts devices on every instance (4429)', async () => {
    const ip = nextIp();
    const c: TestClient[] = [];
    c.push(await fx.login(i1.url, '30', ip));
    c.push(await fx.login(i2.url, '30', ip));
    c.push(await fx.login(i1.url, '30', ip));
    const fourth = await fx.connect(i2.url, ip);
    fourth.send({ type: 'authenticate', token: fx.token('30') });
    expect((await fourth.closed).code).toBe(4429);
    // A slot freed on one instance can be used on the other.
    await c[0]!.close();
    await until('the freed slot to be seen', async () => {
      const again = await fx.connect(i2.url, ip);
      const r = await again.request({ type: 'authenticate', token: fx.token('30') }).catch(() => null);
      if (r?.type === 'auth_success') return true;
      await again.close();
      return false;
    }, 5000, 200);
    await fx.closeAll();
  });

  it('MAX_CONNECTIONS_PER_IP counts connections on every instance (HTTP 429)', async () => {
    const ip = nextIp();
    const open: TestClient[] = [];
    for (let i = 0; i < 5; i++) open.push(await fx.connect(i % 2 ? i2.url : i1.url, ip));
    await expect(fx.connect(i2.url, ip)).rejects.toMatchObject({ status: 429 });
    await expect(fx.connect(i1.url, ip)).rejects.toMatchObject({ status: 429 });
    for (const c of open) await c.close();
  });

  it('a killed instance\'s users go offline within PRESENCE_TTL_MS + PRESENCE_HEARTBEAT_MS (announced once)', async () => {
    const ip = nextIp();
    const w = await fx.login(i1.url, '40', ip);
    await fx.login(i2.url, '41', ip);
    await w.next(isPresence('user_online', '41'));
    const killedAt = Date.now();
    i2.kill('SIGKILL');
    await i2.exited;
    const off = await w.next(isPresence('user_offline', '41'), TTL_MS + HEARTBEAT_MS + 5000);
    expect(Date.now() - killedAt).toBeLessThan(TTL_MS + HEARTBEAT_MS + 3000);
    expect(off.user.username).toBe('u41');
    await w.none('user_offline', 500);
    expect((await w.request({ type: 'get_online_users' })).users).toEqual([]);
    await w.close();
  });
});

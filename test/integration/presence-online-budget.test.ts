/**
 * `get_online_users` over a large contact set (audit 7, F1): it takes one more
 * READ_RATE_LIMIT point per started CONTACTS_PER_READ_POINT contacts beyond the first, so an
 * account following 50,000 users cannot ask 20 times a second; and on Redis the online
 * check runs in scripts of ONLINE_CHUNK keys (other clients' commands run between them)
 * with the same answer as one script.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeRedis, createRedis, waitReady, type Redis } from '../../src/fanout/redisClient.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { ONLINE_CHUNK, RedisPresence } from '../../src/presence/redisPresence.ts';
import type { Frame } from '../helpers/client.ts';
import { freshUsers } from '../helpers/dmkit.ts';
import { scaleEnabled } from '../helpers/scaleProcs.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const PER_POINT = 1000; // CONTACTS_PER_READ_POINT (src/chat/presence.ts), spelled out: the old code has no such export.
const READ_BUDGET = 10;

describe('get_online_users read points', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ READ_RATE_LIMIT: String(READ_BUDGET), FOLLOW_POLICY: 'none' });
  });
  afterAll(() => s?.close());

  /** A fresh user following `n` others (`friend`, and n - 1 users made in bulk). */
  async function follower(n: number): Promise<{ u: string; friend: string }> {
    const [u, friend] = (await freshUsers(s, 2, [[0, 1]])) as [string, string];
    const base = 9_000_000 + Number(u) * 10_000;
    const others = Array.from({ length: n - 1 }, (_, i) => String(base + i));
    await s.users(...others);
    await s.follow(...others.map((o) => [u, o] as [string, string]));
    return { u, friend };
  }

  it(`${2 * PER_POINT + 500} contacts: 3 points a call, so the ${READ_BUDGET}-point budget allows 3 calls, not ${READ_BUDGET}; the reply is unchanged`, async () => {
    const { u, friend } = await follower(2 * PER_POINT + 500);
    const cf = await s.login(friend);
    const cu = await s.login(u);
    const replies: Frame[] = [];
    for (let i = 0; i < 4; i++) replies.push(await cu.request({ type: 'get_online_users' }));
    expect(replies.slice(0, 3).map((r) => r.type)).toEqual(['online_users', 'online_users', 'online_users']);
    expect((replies[0]!.users as Frame[]).map((x) => x.id)).toEqual([friend]);
    expect(replies[3]).toMatchObject({ type: 'error', code: 'RATE_LIMITED' });
    expect(replies[3]!.retryAfter).toBeGreaterThanOrEqual(1);
    await cf.close();
  });

  it(`${PER_POINT} contacts or fewer: one point a call, as before`, async () => {
    const { u } = await follower(PER_POINT);
    const cu = await s.login(u);
    for (let i = 0; i < READ_BUDGET; i++) expect((await cu.request({ type: 'get_online_users' })).type).toBe('online_users');
    expect((await cu.request({ type: 'get_online_users' })).code).toBe('RATE_LIMITED');
  });
});

describe.skipIf(!scaleEnabled)('RedisPresence.onlineAmong in chunks (Redis)', () => {
  let client: Redis;
  let p: RedisPresence;
  const prefix = `tpo${randomBytes(4).toString('hex')}:`;
  beforeAll(async () => {
    client = createRedis(process.env.TEST_REDIS_URL!, 'presence-chunks', createLogger('error', { silent: true }));
    expect(await waitReady(client, 5000)).toBe(true);
    p = new RedisPresence(client, { prefix, instanceId: 'i1', graceMs: 100, heartbeatMs: 1000, ttlMs: 3000, logger: createLogger('error', { silent: true }) });
    p.start();
    await new Promise((r) => setTimeout(r, 100));
  });
  afterAll(async () => {
    await p?.stop();
    if (client) {
      const keys = await client.keys(`${prefix}*`);
      if (keys.length) await client.del(keys);
      await closeRedis(client);
    }
  });

  it(`${ONLINE_CHUNK * 2 + 17} ids over 3 scripts: the users online in each chunk, and no others`, async () => {
    const ids = Array.from({ length: ONLINE_CHUNK * 2 + 17 }, (_, i) => `u${i}`);
    const online = [ids[0]!, ids[ONLINE_CHUNK - 1]!, ids[ONLINE_CHUNK]!, ids[2 * ONLINE_CHUNK + 16]!];
    for (const [i, id] of online.entries()) expect(await p.admit(id, `c${i}`, 5)).toBe('first');
    const before = Number((await client.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
    expect([...(await p.onlineAmong(ids))].sort()).toEqual([...online].sort());
    const after = Number((await client.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
    expect(after - before).toBeGreaterThanOrEqual(3); // one script per chunk (other tests may add more)
  });
});

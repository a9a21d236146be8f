/**
 * PROTOCOL §8 on one process: contacts are followers/followees and members of shared
 * groups, minus blocks; user_online / user_offline go to online contacts only;
 * get_online_users and get_presence show contacts only (others omitted), with lastSeen;
 * lastSeen is persisted when the process holding a user shuts down (one process, or the
 * last live instance on Redis), not while another instance can still take the user over.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import { createTestDatabase, onPostgres } from '../helpers/db.ts';
import { clearRedisPrefix } from '../helpers/scaleProcs.ts';
import { startServer, type EnvOverrides, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ OFFLINE_GRACE_MS: '200' });
  await s.users('1', '2', '3', '4', '5');
  // 2 follows 1; 1 and 3 share a group (created below); 4 follows 1 but is blocked by 1; 5 is a stranger
  await s.follow(['2', '1'], ['1', '3'], ['4', '1']);
  await addBlock(s.app.db, '1', '4');
});
afterAll(() => s?.close());

describe('presence', () => {
  it('user_online / user_offline reach online contacts only, never across a block', async () => {
    const three = await s.login('3');
    const one = await s.login('1');
    await one.request({ type: 'create_group', groupName: 'P', initialMembers: ['3'] });
    await one.close();
    await new Promise((r) => setTimeout(r, 500)); // past OFFLINE_GRACE_MS: a reconnect within it is silent
    const two = await s.login('2');
    const four = await s.login('4');
    const five = await s.login('5');
    const a = await s.login('1');
    for (const c of [two, three]) expect((await c.next((f) => f.type === 'user_online' && f.user.id === '1')).user.username).toBe('u1');
    await four.none((f) => f.type === 'user_online' && f.user.id === '1', 300);
    await five.none((f) => f.type === 'user_online' && f.user.id === '1', 100);

    const online = await a.request({ type: 'get_online_users' });
    expect(online.users.map((u: any) => u.id).sort()).toEqual(['2', '3']);
    const presence = await a.request({ type: 'get_presence', userIds: ['2', '3', '4', 5, '1'] });
    expect(presence.users.map((u: any) => u.id).sort()).toEqual(['2', '3']);
    expect(presence.users.every((u: any) => u.online === true)).toBe(true);

    await a.close();
    const off = await two.next((f) => f.type === 'user_offline' && f.user.id === '1', 5000);
    expect(typeof off.lastSeen).toBe('string');
    await four.none((f) => f.type === 'user_offline' && f.user.id === '1', 300);
    const b = await s.login('3');
    const after = await b.request({ type: 'get_presence', userIds: ['1'] });
    expect(after.users).toEqual([{ id: '1', online: false, lastSeen: expect.any(String) }]);
  });
});

describe('lastSeen is the last close, not the end of the grace period (§8)', () => {
  it('user_offline and get_presence give the time of the close, OFFLINE_GRACE_MS before the announcement', async () => {
    const g = await startServer({ OFFLINE_GRACE_MS: '2000' });
    try {
      await g.users('1', '2');
      await g.follow(['2', '1']);
      const two = await g.login('2');
      const one = await g.login('1');
      const closedAt = Date.now();
      await one.close();
      const off = await two.next((f) => f.type === 'user_offline' && f.user.id === '1', 6000);
      const announcedAt = Date.now();
      const seen = Date.parse(off.lastSeen);
      expect(announcedAt - closedAt).toBeGreaterThanOrEqual(1900);
      expect(seen).toBeGreaterThanOrEqual(closedAt - 50);
      expect(seen).toBeLessThan(closedAt + 1000);
      const p = await two.request({ type: 'get_presence', userIds: ['1'] });
      expect(p.users).toEqual([{ id: '1', online: false, lastSeen: off.lastSeen }]);
    } finally {
      await g.close();
    }
  });
});

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const redisUrl = process.env.TEST_REDIS_URL;

/** is_online and last_seen of `userId` in user_status. */
async function status(srv: TestServer, userId: string): Promise<{ is_online: boolean; last_seen: Date | null } | undefined> {
  const { rows } = await srv.app.db.query<{ is_online: boolean; last_seen: Date | null }>('SELECT is_online, last_seen FROM user_status WHERE user_id = $1', [userId]);
  return rows[0];
}

/**
 * User 1 online on the only process (with `env`), which shuts down; a new process on the
 * same database shows 1 offline to contact 2, with a lastSeen from the shutdown.
 */
async function lastSeenSurvivesShutdown(env: EnvOverrides): Promise<void> {
  const database = await createTestDatabase();
  // A grace period longer than the test: only the shutdown can persist lastSeen.
  const s1 = await startServer({ OFFLINE_GRACE_MS: '60000', ...env }, { database });
  let s2: TestServer | undefined;
  try {
    await s1.users('1', '2');
    await s1.follow(['1', '2'], ['2', '1']);
    const c1 = await s1.login('1');
    expect((await c1.request({ type: 'ping' })).type).toBe('pong');
    const before = Date.now();
    await s1.app.shutdown(1000);
    const after = Date.now();
    expect((await c1.closed).code).toBe(1001);
    s2 = await startServer({ OFFLINE_GRACE_MS: '60000', ...env }, { database });
    const c2 = await s2.login('2');
    const pr = await c2.request({ type: 'get_presence', userIds: ['1'] });
    expect(pr.users, JSON.stringify(pr)).toEqual([{ id: '1', online: false, lastSeen: expect.stringMatching(ISO) }]);
    const seen = Date.parse(pr.users[0].lastSeen);
    // Database clock vs. ours: allow a little skew.
    expect(seen).toBeGreaterThanOrEqual(before - 1000);
    expect(seen).toBeLessThanOrEqual(after + 1000);
    expect((await status(s2, '1'))?.is_online).toBe(false);
  } finally {
    await s1.app.shutdown(200).catch(() => {});
    if (s2) await s2.close();
    else await database.drop();
  }
}

// A new process on the same database needs PostgreSQL (embedded PGlite is per process, in memory).
describe.skipIf(!onPostgres)('lastSeen at shutdown (§8)', () => {
  it('one process: a user online when it shuts down has lastSeen persisted (offline to a contact after a restart)', async () => {
    await lastSeenSurvivesShutdown({});
  });

  describe.skipIf(!redisUrl)('on Redis', () => {
    const prefixes: string[] = [];
    const prefix = () => {
      prefixes.push(`t:pres-stop:${randomBytes(4).toString('hex')}:`);
      return prefixes.at(-1)!;
    };
    afterAll(async () => {
      for (const p of prefixes) await clearRedisPrefix(redisUrl!, p);
    });

    it('the last live instance shuts down: its users go offline with lastSeen persisted', async () => {
      await lastSeenSurvivesShutdown({ REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix() });
    });

    it('another instance is live: nothing is persisted at shutdown, and a reconnect there within OFFLINE_GRACE_MS is silent', async () => {
      const database = await createTestDatabase();
      const env = { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix(), OFFLINE_GRACE_MS: '3000' };
      const a = await startServer(env, { database });
      const b = await startServer(env, { database });
      try {
        await a.users('1', '2');
        await a.follow(['1', '2'], ['2', '1']);
        const watcher = await b.login('2');
        await a.login('1');
        await watcher.next((f) => f.type === 'user_online' && f.user.id === '1', 3000);
        await a.app.shutdown(1000);
        expect((await status(b, '1'))?.is_online).toBe(true);
        await b.login('1');
        expect(await watcher.none((f) => (f.type === 'user_offline' || f.type === 'user_online') && f.user.id === '1', 500)).toBe(true);
        const pr = await watcher.request({ type: 'get_presence', userIds: ['1'] });
        expect(pr.users).toEqual([{ id: '1', online: true, lastSeen: null }]);
      } finally {
        await a.app.shutdown(200).catch(() => {});
        await b.close();
      }
    });
  });
});

/**
 * Redis failure (DESIGN "Failure behaviour", PROTOCOL §10): with a PRIVATE redis-server
 * stopped, each process keeps serving and delivering to its own connections and /ready
 * stays 200 with `degraded:true`; once Redis is back (empty: no persistence), the
 * subscriptions and presence are restored without restart and cross-instance delivery
 * resumes (per-user channels and the per-instance routing of deliveries to 3+ users).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame, TestClient } from '../helpers/client.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { Fixture, freePort, getJson, scaleEnabled, spawnRedisInstance, spawnServer, startPrivateRedis, until, warnIfSkipped, type PrivateRedis, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('scale-outage.test.ts');

let db: TestDatabase;
let fx: Fixture;
let redis: PrivateRedis;
let i1: Proc;
let i2: Proc;

async function instance(): Promise<Proc> {
  return spawnRedisInstance(db.url!, redis.url, 't:scale-out:', {
    MESSAGE_RATE_LIMIT: '1000',
    PRESENCE_HEARTBEAT_MS: '300',
    PRESENCE_TTL_MS: '1500',
    // The 4503 closes after the outage are bus-gap.test.ts's subject; here the same
    // connections go on being used once Redis is back.
    BUS_GAP_RESYNC_MS: '0',
  });
}

const dm = (to: string, content: string) => ({ type: 'send_private_message', recipientId: to, content });

/** Send from `from` to `toId` until `to` receives one (bounded); resolves the number of tries. */
async function deliveredAcross(from: TestClient, to: TestClient, toId: string, tag: string): Promise<number> {
  for (let i = 1; i <= 40; i++) {
    const ack = await from.request(dm(toId, `${tag} ${i}`));
    expect(ack.type).toBe('private_message_sent');
    try {
      await to.next((f: Frame) => f.type === 'new_private_message' && f.message.id === ack.messageId, 250);
      return i;
    } catch {
      // not yet: the subscriber may still be reconnecting
    }
  }
  throw new Error(`${tag}: nothing delivered across instances`);
}

describe.skipIf(!scaleEnabled)('Redis outage: two processes on a private redis-server', () => {
  beforeAll(async () => {
    redis = await startPrivateRedis();
    db = await createTestDatabase();
    fx = new Fixture(db.url!);
    await fx.seed(['1', '2', '3'], Fixture.mutual(['1', '2', '3']));
    i1 = await instance();
    i2 = await instance();
  }, 120_000);

  afterAll(async () => {
    await fx?.closeAll();
    await Promise.all([i1?.stop(), i2?.stop()]);
    await redis?.kill();
    await db?.drop();
  }, 60_000);

  it('keeps local delivery during the outage, reports degraded, and recovers cross-instance delivery and presence after', async () => {
    const p1 = await fx.login(i1.url, '1');
    const p2 = await fx.login(i1.url, '2');
    const q3 = await fx.login(i2.url, '3');
    expect(await deliveredAcross(p1, q3, '3', 'before')).toBe(1);

    await redis.kill();
    for (const i of [i1, i2]) {
      await until('/ready degraded', async () => {
        const r = await getJson(i.port, '/ready');
        return r.status === 200 && r.body.degraded === true && r.body.checks.some((c: Frame) => c.name === 'redis' && c.status === 'unhealthy');
      }, 10_000, 100);
      const h = await getJson(i.port, '/health');
      expect(h.body).toMatchObject({ status: 'degraded', redis: { connected: false, configured: true, perProcessFallback: true } });
    }
    // Same-instance delivery and the per-process rate-limit fallback keep working.
    for (let k = 0; k < 3; k++) {
      const ack = await p1.request(dm('2', `local ${k}`));
      expect(ack.type).toBe('private_message_sent');
      expect((await p2.next('new_private_message')).message.id).toBe(ack.messageId);
    }
    // Cross-instance sends are still stored and acknowledged (clients catch up with sync).
    expect((await p1.request(dm('3', 'stored only'))).type).toBe('private_message_sent');
    // New logins work while Redis is down (user 1's first device on instance 2).
    const late = await fx.login(i2.url, '1');

    // Redis returns empty on the same port.
    redis = await startPrivateRedis(redis.port);
    for (const i of [i1, i2]) {
      await until('/ready healthy again', async () => {
        const r = await getJson(i.port, '/ready');
        return r.status === 200 && r.body.degraded === undefined;
      }, 15_000, 100);
    }
    await deliveredAcross(p1, q3, '3', 'after');
    // The login made during the outage was subscribed once Redis returned.
    const ack = await p2.request(dm('1', 'to both devices of 1'));
    await p1.next((f) => f.type === 'new_private_message' && f.message.id === ack.messageId);
    await late.next((f) => f.type === 'new_private_message' && f.message.id === ack.messageId);
    // Presence was written back: instance 2 sees the users of instance 1 online.
    await until('presence restored', async () => {
      const r = await q3.request({ type: 'get_online_users' });
      const ids = r.users.map((u: Frame) => u.id).sort();
      return ids.join(',') === '1,2';
    }, 5000, 200);
    // Deliveries to 3+ users go once per instance, routed through the presence hashes,
    // which were written back too: a group reaction reaches the members on the other instance.
    const g = await p1.request({ type: 'create_group', groupName: 'after the outage', initialMembers: ['2', '3'] });
    const msg = await p1.request({ type: 'send_group_message', groupId: g.groupId, content: 'routed' });
    await q3.next((f) => f.type === 'new_group_message' && f.message.id === msg.message.id);
    expect((await q3.request({ type: 'add_group_reaction', messageId: msg.message.id, reaction: '👍' })).type).toBe('group_reaction_added');
    for (const c of [p1, p2, late]) await c.next((f) => f.type === 'group_reaction_added' && f.messageId === msg.message.id);
    expect(i1.child.exitCode).toBeNull();
    expect(i2.child.exitCode).toBeNull();
  }, 90_000);
});

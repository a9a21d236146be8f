/**
 * Live deliveries lost on Redis (src/fanout/busGaps.ts, docs/scaling.md "Redis failure"):
 * a connection that stayed open while Redis lost events for it is closed 4503 ("reconnect
 * and sync", PROTOCOL §2.3) within BUS_GAP_RESYNC_MS after Redis is back, and a `sync`
 * from the cursor it held brings what it missed (§9). Two server processes on a PRIVATE
 * redis-server:
 * - Redis restarts: both subscribers come back, so every connection held then is closed;
 * - Redis stalls (SIGSTOP) past the command connection's stall bound: no subscriber
 *   reconnects, the publisher's PUBLISH fails, and once Redis answers again it tells the
 *   other instance which of its users missed a delivery; only those are closed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { httpGet } from '../helpers/wire.ts';
import { Fixture, getJson, scaleEnabled, sleep, spawnRedisInstance, startPrivateRedis, until, warnIfSkipped, type PrivateRedis, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('bus-gap.test.ts');

let db: TestDatabase;
let fx: Fixture;
let redis: PrivateRedis;
let i1: Proc;
let i2: Proc;

const dm = (to: string, content: string) => ({ type: 'send_private_message', recipientId: to, content });

/** Log `userId` in at `url`; resolves the client and the cursor of its auth_success. */
async function loginWithCursor(url: string, userId: string): Promise<{ c: TestClient; cursor: string }> {
  const c = await fx.connect(url);
  const r = await c.request({ type: 'authenticate', token: fx.token(userId) }, 10_000);
  expect(r.type).toBe('auth_success');
  return { c, cursor: r.cursor };
}

/** Every message id a `sync` from `cursor` brings to `userId` (a fresh connection at `url`). */
async function syncedIds(url: string, userId: string, cursor: string): Promise<string[]> {
  const { c } = await loginWithCursor(url, userId);
  const ids: string[] = [];
  for (let page = 0, cur = cursor; page < 20; page++) {
    const r = await c.request({ type: 'sync', cursor: cur, limit: 100 });
    expect(r.type).toBe('sync_result');
    ids.push(...r.messages.map((m: { id: string }) => m.id));
    if (!r.hasMore) break;
    cur = r.cursor;
  }
  await c.close();
  return ids;
}

async function bothReady(what: string, degraded: boolean): Promise<void> {
  for (const i of [i1, i2]) {
    await until(what, async () => {
      const r = await getJson(i.port, '/ready');
      return r.status === 200 && (r.body.degraded === true) === degraded;
    }, 20_000, 100);
  }
}

describe.skipIf(!scaleEnabled)('Redis lost live deliveries: connections told to reconnect and sync', () => {
  beforeAll(async () => {
    redis = await startPrivateRedis();
    db = await createTestDatabase();
    fx = new Fixture(db.url!);
    await fx.seed(['1', '2', '3'], Fixture.mutual(['1', '2', '3']));
    const env = { MESSAGE_RATE_LIMIT: '1000', BUS_GAP_RESYNC_MS: '300', PRESENCE_HEARTBEAT_MS: '300', PRESENCE_TTL_MS: '3000' };
    [i1, i2] = await Promise.all([spawnRedisInstance(db.url!, redis.url, 't:gap:', env), spawnRedisInstance(db.url!, redis.url, 't:gap:', env)]);
  }, 120_000);

  afterAll(async () => {
    if (redis) process.kill(redis.pid, 'SIGCONT');
    await fx?.closeAll();
    await Promise.all([i1?.stop(), i2?.stop()]);
    await redis?.kill();
    await db?.drop();
  }, 60_000);

  it('Redis restarts: connections held on both instances are closed 4503, and sync brings the DM sent meanwhile', async () => {
    const { c: p1 } = await loginWithCursor(i1.url, '1');
    const { c: q3, cursor } = await loginWithCursor(i2.url, '3');
    const before = await p1.request(dm('3', 'before'));
    expect((await q3.next((f) => f.type === 'new_private_message' && f.message.id === before.messageId, 5000)).type).toBe('new_private_message');

    await redis.kill();
    await bothReady('/ready degraded', true);
    const missed = await p1.request(dm('3', 'sent while Redis was down'));
    expect(missed.type).toBe('private_message_sent');
    expect(q3.closeCode).toBeUndefined();

    redis = await startPrivateRedis(redis.port);
    await bothReady('/ready healthy again', false);
    const [closed3, closed1] = await Promise.all([withTimeout(q3.closed, 10_000), withTimeout(p1.closed, 10_000)]);
    expect(closed3.code).toBe(4503);
    expect(closed3.reason).toMatch(/reconnect and sync/);
    expect(closed1.code).toBe(4503);
    // Told apart from slow consumers in /metrics.
    for (const i of [i1, i2]) {
      const text = (await httpGet(i.port, '/metrics')).text;
      expect(Number(/^chat_bus_gap_closes_total (\d+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
      expect(Number(/^chat_server_closes_total\{code="4503"\} (\d+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    }
    // Sync pages stop below the snapshot xmin: another test file's open transaction may hold it back a moment.
    await until('the DM sent meanwhile in sync', async () => (await syncedIds(i2.url, '3', cursor)).includes(missed.messageId) || undefined, 10_000, 200);
  }, 90_000);

  it('Redis stalls: the failed publish is reported once Redis answers, and only the recipient\'s connection elsewhere is closed', async () => {
    await bothReady('/ready healthy', false);
    const { c: p1 } = await loginWithCursor(i1.url, '1');
    const { c: p2 } = await loginWithCursor(i2.url, '2');
    const { c: q3, cursor } = await loginWithCursor(i2.url, '3');
    const before = await p1.request(dm('3', 'before the stall'));
    await q3.next((f) => f.type === 'new_private_message' && f.message.id === before.messageId, 5000);

    process.kill(redis.pid, 'SIGSTOP');
    let missed: string | undefined;
    try {
      const ack = await p1.request(dm('3', 'sent while Redis was stalled'));
      expect(ack.type).toBe('private_message_sent');
      missed = ack.messageId;
      // The command connection's stall watch drops it (5 s without a PING answer): /ready degraded.
      await until('instance 1 sees Redis stalled', async () => (await getJson(i1.port, '/ready')).body.degraded === true, 20_000, 200);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    const closed3 = await withTimeout(q3.closed, 15_000);
    expect(closed3.code).toBe(4503);
    await until('the DM sent meanwhile in sync', async () => (await syncedIds(i2.url, '3', cursor)).includes(missed!) || undefined, 10_000, 200);
    // Nobody else missed anything: the sender's and the bystander's connections stay open.
    await sleep(1000);
    expect(p1.closeCode).toBeUndefined();
    expect(p2.closeCode).toBeUndefined();
  }, 90_000);
});

/** `p`, or a rejection after `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`not within ${ms} ms`)), ms).unref())]);
}

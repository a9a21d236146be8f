/**
 * SINGLE_SESSION across processes (PROTOCOL §3 item 9): a login on one instance replaces
 * the user's connections on the other (session_conflict, close 4409), and the newer
 * connection stays fully routable from anywhere.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { teardownRedisPair, Fixture, freePort, scaleEnabled, spawnRedisInstance, spawnServer, warnIfSkipped, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('scale-session.test.ts');

const PREFIX = `t:scale-ss:${randomBytes(4).toString('hex')}:`;
let db: TestDatabase;
let fx: Fixture;
let i1: Proc;
let i2: Proc;

async function instance(): Promise<Proc> {
  return spawnRedisInstance(db.url!, process.env.TEST_REDIS_URL!, PREFIX, {
    SINGLE_SESSION: 'true',
    MESSAGE_RATE_LIMIT: '1000',
  });
}

describe.skipIf(!scaleEnabled)('SINGLE_SESSION over Redis: two processes', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    fx = new Fixture(db.url!);
    await fx.seed(['1', '2'], Fixture.mutual(['1', '2']));
    i1 = await instance();
    i2 = await instance();
  }, 120_000);

  afterAll(() => teardownRedisPair(fx, [i1, i2], db, PREFIX), 60_000);

  it('a newer login on instance 2 closes the older one on instance 1 with 4409; the newer one receives from instance 1', async () => {
    const old = await fx.login(i1.url, '1');
    const peer = await fx.login(i1.url, '2');
    const fresh = await fx.login(i2.url, '1');
    const conflict = await old.next('session_conflict');
    expect(typeof conflict.message).toBe('string');
    expect((await old.closed).code).toBe(4409);
    await fresh.none('session_conflict', 300);
    const ack = await peer.request({ type: 'send_private_message', recipientId: '1', content: 'to the newer session' });
    expect(ack.type).toBe('private_message_sent');
    expect((await fresh.next('new_private_message')).message.id).toBe(ack.messageId);
    // And the other way round: a login on instance 1 replaces the one on instance 2.
    const newest = await fx.login(i1.url, '1');
    await fresh.next('session_conflict');
    expect((await fresh.closed).code).toBe(4409);
    const ack2 = await peer.request({ type: 'send_private_message', recipientId: '1', content: 'again' });
    expect((await newest.next('new_private_message')).message.id).toBe(ack2.messageId);
  });
});

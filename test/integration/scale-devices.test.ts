/**
 * MAX_CONNECTIONS_PER_USER across processes (PROTOCOL §3 item 9, §2.3 4429): simultaneous
 * logins of one user spread over two instances sharing Redis, or over the two workers of
 * the cluster server, never admit more than the cap; the refused ones are closed 4429
 * without auth_success, and no slot leaks.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { teardownRedisPair, Fixture, scaleEnabled, seededCluster, spawnRedisInstance, teardownCluster, until, warnIfSkipped, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('scale-devices.test.ts');

const PREFIX = `t:scale-dev:${randomBytes(4).toString('hex')}:`;
let db: TestDatabase;
let fx: Fixture;
let i1: Proc;
let i2: Proc;

/** Authenticate every client at once; once each got auth_success or closed (then 300 ms more): how many stay open, how many were refused 4429. */
async function authenticateAtOnce(f: Fixture, clients: TestClient[]): Promise<{ open: number; refused4429: number }> {
  const token = f.token('1');
  for (const c of clients) c.send({ type: 'authenticate', token });
  const success = (c: TestClient) => c.frames.some((f) => f.type === 'auth_success');
  await until('every login answered or closed', () => clients.every((c) => c.closeCode !== undefined || success(c)), 10_000, 20);
  await new Promise((r) => setTimeout(r, 300));
  return {
    open: clients.filter((c) => success(c) && c.closeCode === undefined).length,
    refused4429: clients.filter((c) => !success(c) && c.closeCode === 4429).length,
  };
}

/** Wait (bounded) until 2 simultaneous logins on `urls` both stay open: no slot of the cap 2 leaked. */
async function slotsFreed(f: Fixture, urls: [string, string]): Promise<void> {
  await until(
    'the 2 freed slots',
    async () => {
      const pair = await Promise.all(urls.map((u) => f.connect(u)));
      const r = await authenticateAtOnce(f, pair);
      await Promise.all(pair.map((c) => c.close()));
      return r.open === 2;
    },
    10_000,
    100,
  );
}

describe.skipIf(!scaleEnabled)('MAX_CONNECTIONS_PER_USER over Redis: two processes', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    fx = new Fixture(db.url!);
    await fx.seed(['1']);
    const spawn = () => spawnRedisInstance(db.url!, process.env.TEST_REDIS_URL!, PREFIX, { MAX_CONNECTIONS_PER_USER: '2' });
    [i1, i2] = await Promise.all([spawn(), spawn()]);
  }, 120_000);

  afterAll(() => teardownRedisPair(fx, [i1, i2], db, PREFIX), 60_000);

  it('cap 2: of 6 simultaneous logins (3 per instance) exactly 2 stay open and 4 are closed 4429; the slots are reusable', async () => {
    const clients = await Promise.all([i1, i2, i1, i2, i1, i2].map((p) => fx.connect(p.url)));
    expect(await authenticateAtOnce(fx, clients)).toEqual({ open: 2, refused4429: 4 });
    // No reservation leaked on either instance: after the 2 close, 2 new simultaneous logins fit.
    await Promise.all(clients.map((c) => c.close()));
    await slotsFreed(fx, [i1.url, i2.url]);
  });
});

describe.skipIf(!scaleEnabled)('MAX_CONNECTIONS_PER_USER in the cluster server: two workers, no Redis', () => {
  let cdb: TestDatabase;
  let cfx: Fixture;
  let primary: Proc;
  beforeAll(async () => {
    ({ db: cdb, fx: cfx, primary } = await seededCluster(2, ['1'], [], { MAX_CONNECTIONS_PER_USER: '2' })); // both workers listening
  }, 120_000);

  afterAll(() => teardownCluster({ db: cdb, fx: cfx, primary }), 60_000);

  it('cap 2: of 6 simultaneous logins over both workers exactly 2 stay open and 4 are closed 4429', async () => {
    for (let round = 0; round < 3; round++) {
      const clients = await Promise.all(Array.from({ length: 6 }, () => cfx.connect(primary.url)));
      expect(await authenticateAtOnce(cfx, clients)).toEqual({ open: 2, refused4429: 4 });
      await Promise.all(clients.map((c) => c.close()));
      // No slot leaked: once the closes reached the primary, 2 new simultaneous logins fit.
      await slotsFreed(cfx, [primary.url, primary.url]);
    }
  });
});

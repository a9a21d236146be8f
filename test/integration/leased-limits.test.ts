/**
 * Redis rate limits with local leases (src/fanout/leasedLimits.ts) against the real Redis
 * (TEST_REDIS_URL): two limiter objects on two connections stand for two instances
 * sharing one key prefix. Checks: exact with small budgets (PROTOCOL §4 across devices
 * and processes), never more than the budget with large ones, few round trips, no lease
 * carried into the next window, one request for concurrent consumes, failing closed to
 * the caller (which falls back) when Redis cannot be asked.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEASE_DIVISOR, LeasedRedisLimits } from '../../src/fanout/leasedLimits.ts';
import { closeRedis, createRedis, waitReady, type Redis } from '../../src/fanout/redisClient.ts';
import { createLogger } from '../../src/observability/logger.ts';
import type { LimitSpec } from '../../src/policy/rateLimits.ts';
import { clearRedisPrefix, scaleEnabled, sleep, warnIfSkipped } from '../helpers/scaleProcs.ts';

warnIfSkipped('leased-limits.test.ts');

const url = process.env.TEST_REDIS_URL ?? '';
const prefix = `tl${randomBytes(4).toString('hex')}:`;
const logger = createLogger('error', { silent: true });

function spec(points: number, windowMs = 60_000): LimitSpec {
  const w = { points, windowMs };
  return { message: w, action: w, typing: w, connect: w, read: w, receipt: w };
}

describe.skipIf(!scaleEnabled)('LeasedRedisLimits on Redis', () => {
  let a: Redis;
  let b: Redis;
  const made: LeasedRedisLimits[] = [];
  const limits = (client: Redis, s: LimitSpec) => {
    const l = new LeasedRedisLimits(client, s, prefix);
    made.push(l);
    return l;
  };

  beforeAll(async () => {
    a = createRedis(url, 'a', logger);
    b = createRedis(url, 'b', logger);
    expect(await waitReady(a, 5000)).toBe(true);
    expect(await waitReady(b, 5000)).toBe(true);
  });
  afterAll(async () => {
    for (const l of made) l.close();
    await clearRedisPrefix(url, prefix);
    if (a) closeRedis(a);
    if (b) closeRedis(b);
  });

  it('is exact for a small budget shared by two instances', async () => {
    const s = spec(6);
    const i1 = limits(a, s);
    const i2 = limits(b, s);
    const results: (number | null)[] = [];
    for (let n = 0; n < 5; n++) results.push(await i1.consume('message', 'u1'), await i2.consume('message', 'u1'));
    expect(results.filter((r) => r === null)).toHaveLength(6);
    const refused = results.filter((r) => r !== null) as number[];
    expect(refused).toHaveLength(4);
    for (const r of refused) expect(r).toBeGreaterThanOrEqual(1);
    expect(refused[0]).toBeLessThanOrEqual(60);
    // Every point was a Redis grant of 1 (budget < 2 × divisor): the shared count is exact.
    expect(Number(await a.get(`${prefix}rl:message:u1`))).toBe(6);
  });

  it('never admits more than a large budget across instances, with few round trips', async () => {
    const points = 2000;
    const s = spec(points);
    const i1 = limits(a, s);
    const i2 = limits(b, s);
    let allowed = 0;
    const tries = 3000;
    const jobs: Promise<void>[] = [];
    for (let n = 0; n < tries; n++) {
      const inst = n % 3 === 0 ? i2 : i1;
      jobs.push(inst.consume('message', 'u2').then((r) => void (r === null && allowed++)));
      if (n % 50 === 0) await Promise.all(jobs.splice(0));
    }
    await Promise.all(jobs);
    expect(allowed).toBeLessThanOrEqual(points);
    // Refused early by at most what the other instance holds: one lease ≤ remaining / 16.
    expect(allowed).toBeGreaterThanOrEqual(points - Math.ceil(points / LEASE_DIVISOR));
    expect(Number(await a.get(`${prefix}rl:message:u2`))).toBeLessThanOrEqual(points);
    const requests = i1.stats.leaseRequests + i2.stats.leaseRequests;
    expect(requests).toBeLessThan(tries / 10);
    expect(i1.stats.consumes + i2.stats.consumes).toBe(tries);
  });

  it('sends one lease request for many concurrent consumes of a fresh key', async () => {
    const i1 = limits(a, spec(10));
    const r = await Promise.all(Array.from({ length: 40 }, () => i1.consume('action', 'u3')));
    expect(r.filter((x) => x === null)).toHaveLength(10);
    // 10 grants of 1 point, then one request finds the window exhausted; the rest are local.
    expect(i1.stats.leaseRequests).toBe(11);
    expect(await i1.consume('action', 'u3')).toBeGreaterThanOrEqual(1);
    expect(i1.stats.leaseRequests).toBe(11);
  });

  it('drops a lease when its window ends (no points carried into the next window)', async () => {
    const s = spec(1000, 1000);
    const i1 = limits(a, s);
    expect(await i1.consume('typing', 'u4')).toBeNull();
    expect(i1.stats.leaseRequests).toBe(1);
    expect(await i1.consume('typing', 'u4')).toBeNull();
    expect(i1.stats.leaseRequests).toBe(1);
    await sleep(1100);
    // The old lease still has points left, but its window is over: a new request is made.
    expect(await i1.consume('typing', 'u4')).toBeNull();
    expect(i1.stats.leaseRequests).toBe(2);
    const used = Number(await a.get(`${prefix}rl:typing:u4`));
    expect(used).toBe(Math.floor(1000 / LEASE_DIVISOR));
  });

  it('rejects (the caller falls back) when Redis cannot be asked', async () => {
    const dead = createRedis('redis://127.0.0.1:1', 'dead', logger);
    try {
      const l = limits(dead, spec(5));
      await expect(l.consume('message', 'u5')).rejects.toThrow();
    } finally {
      closeRedis(dead);
    }
  });
});

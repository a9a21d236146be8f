/**
 * The command connection's stall watch (src/fanout/redisClient.ts): it runs without
 * node-redis's per-command timeouts, so a Redis that stops answering while keeping the
 * socket open (here: a private redis-server under SIGSTOP) must still fail pending
 * commands within the stall bound, and the client must be usable again once Redis answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeRedis, createRedis, waitReady, type Redis } from '../../src/fanout/redisClient.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { scaleEnabled, startPrivateRedis, until, warnIfSkipped, type PrivateRedis } from '../helpers/scaleProcs.ts';

warnIfSkipped('redis-stall.test.ts');

describe.skipIf(!scaleEnabled)('redis command connection: stall watch', () => {
  let redis: PrivateRedis;
  let client: Redis;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    client = createRedis(redis.url, 'command', createLogger('error', { silent: true }), { stallWatch: { checkMs: 100, stallMs: 600 } });
    expect(await waitReady(client, 5000)).toBe(true);
  }, 20_000);
  afterAll(async () => {
    if (redis) process.kill(redis.pid, 'SIGCONT');
    if (client) closeRedis(client);
    await redis?.kill();
  });

  it('rejects a command pending on a stalled Redis within the bound, then recovers', async () => {
    expect(await client.ping()).toBe('PONG');
    process.kill(redis.pid, 'SIGSTOP');
    const t0 = Date.now();
    const outcome = await client.set('k', 'v').then(
      () => 'resolved',
      (err: Error) => `rejected: ${err.message}`,
    );
    const took = Date.now() - t0;
    expect(outcome).toMatch(/^rejected/);
    expect(took).toBeGreaterThanOrEqual(500);
    expect(took).toBeLessThan(3000);
    // While stalled, new commands fail at once instead of queueing.
    await expect(client.get('k')).rejects.toThrow();
    process.kill(redis.pid, 'SIGCONT');
    await until('client ready again', async () => client.isReady && (await client.ping()) === 'PONG', 10_000, 100);
    expect(await client.set('k2', 'v2')).toBe('OK');
  }, 20_000);
});

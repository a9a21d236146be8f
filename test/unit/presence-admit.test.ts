/**
 * LocalPresence.admit (PROTOCOL §3 item 9: the device cap and the registration are one
 * step, so concurrent admissions never pass the cap) and LocalPresence.release (§8: at
 * shutdown every user held, connected or within the grace period, is reported offline);
 * RedisPresence.admit while Redis is unreachable (the cap counts this process's
 * connections, in-flight admissions included).
 */
import { describe, expect, it } from 'vitest';
import type { Redis } from '../../src/fanout/redisClient.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { LocalPresence } from '../../src/presence/presence.ts';
import { RedisPresence } from '../../src/presence/redisPresence.ts';

describe('LocalPresence.admit', () => {
  it('6 concurrent admissions with max 2: 2 admitted (one first), 4 refused and not registered', async () => {
    const p = new LocalPresence();
    const r = await Promise.all(Array.from({ length: 6 }, (_, i) => p.admit('u', `c${i}`, 2)));
    expect(r).toEqual(['first', 'again', 'refused', 'refused', 'refused', 'refused']);
    expect(await p.connectionCount('u')).toBe(2);
    // A refused connection was never registered: its close changes nothing.
    expect(await p.disconnected('u', 'c3')).toBe(false);
    expect(await p.disconnected('u', 'c0')).toBe(false);
    expect(await p.admit('u', 'c6', 2)).toBe('again');
    expect(await p.admit('u', 'c7', 2)).toBe('refused');
  });

  it('a reconnect within the grace period is admitted silently', async () => {
    const p = new LocalPresence();
    expect(await p.admit('u', 'c1', 1)).toBe('first');
    expect(await p.disconnected('u', 'c1')).toBe(true);
    expect(await p.admit('u', 'c2', 1)).toBe('again');
    expect(await p.claimOffline('u')).toBe(false);
  });
});

describe('LocalPresence.release', () => {
  it('reports users still connected and users within the grace period, once', async () => {
    const p = new LocalPresence();
    await p.admit('a', 'a1', 5);
    await p.admit('a', 'a2', 5);
    await p.admit('g', 'g1', 5);
    expect(await p.disconnected('g', 'g1')).toBe(true);
    expect((await p.release()).sort()).toEqual(['a', 'g']);
    expect(await p.release()).toEqual([]);
    // Later closes and grace claims announce nothing more.
    expect(await p.disconnected('a', 'a1')).toBe(false);
    expect(await p.claimOffline('g')).toBe(false);
    expect(await p.onlineAmong(['a', 'g'])).toEqual(new Set());
  });
});

describe('RedisPresence.admit with Redis unreachable', () => {
  it('counts this process\'s connections and in-flight admissions: 6 concurrent with max 2 → 2 admitted', async () => {
    const down = { isReady: false, on: () => down } as unknown as Redis;
    const p = new RedisPresence(down, { prefix: 't:', instanceId: 'i1', graceMs: 100, heartbeatMs: 1000, ttlMs: 3000, logger: createLogger('error', { silent: true }) });
    const r = await Promise.all(Array.from({ length: 6 }, (_, i) => p.admit('u', `c${i}`, 2)));
    expect(r.filter((x) => x !== 'refused')).toHaveLength(2);
    expect(r.filter((x) => x === 'first')).toHaveLength(0);
    expect(await p.connectionCount('u')).toBe(2);
    expect(await p.release()).toEqual([]);
  });
});

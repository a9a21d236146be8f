/**
 * Unit tests of the scale-out building blocks: the in-memory presence table (grace
 * tokens, owners), LocalPresence, and the bus wire format (header + untouched frame).
 */
import { describe, expect, it } from 'vitest';
import { distributionKind } from '../../src/fanout/index.ts';
import { decodeDelivery, encodeDelivery } from '../../src/fanout/wire.ts';
import { LocalPresence } from '../../src/presence/presence.ts';
import { PresenceTable } from '../../src/presence/table.ts';

describe('PresenceTable', () => {
  it('announces online once per offline→online transition and counts across owners', () => {
    const t = new PresenceTable();
    expect(t.connect('w1', 'u', 'c1')).toBe(true);
    expect(t.connect('w2', 'u', 'c2')).toBe(false);
    expect(t.count('u')).toBe(2);
    expect(t.disconnect('w1', 'u', 'c1')).toBeNull();
    expect([...t.online(['u', 'v'])]).toEqual(['u']);
  });

  it('the last close starts a grace period; a reconnect within it is silent and voids the token', () => {
    const t = new PresenceTable();
    t.connect('w1', 'u', 'c1');
    const token = t.disconnect('w1', 'u', 'c1')!;
    expect(token).toMatch(/^w1\|/);
    expect(t.online(['u']).size).toBe(0);
    expect(t.connect('w2', 'u', 'c2')).toBe(false);
    expect(t.claim('u', token)).toBe(false);
    const token2 = t.disconnect('w2', 'u', 'c2')!;
    expect(t.claim('u', token)).toBe(false);
    expect(t.claim('u', token2)).toBe(true);
    expect(t.claim('u', token2)).toBe(false);
    expect(t.connect('w1', 'u', 'c3')).toBe(true);
  });

  it('dropOwner reports users left without connections and the grace periods the owner held', () => {
    const t = new PresenceTable();
    t.connect('w1', 'a', 'c1');
    t.connect('w1', 'b', 'c2');
    t.connect('w2', 'b', 'c3');
    t.connect('w1', 'g', 'c4');
    const token = t.disconnect('w1', 'g', 'c4')!;
    const d = t.dropOwner('w1');
    expect(d.offline).toEqual(['a']);
    expect(d.grace).toEqual([{ userId: 'g', token }]);
    expect(t.count('b')).toBe(1);
    expect(t.claim('g', token)).toBe(true);
    expect(t.disconnect('w1', 'a', 'c1')).toBeNull();
  });
});

describe('LocalPresence', () => {
  it('claims offline once, only after the last close', async () => {
    const p = new LocalPresence();
    expect(await p.admit('u', 'c1', Number.MAX_SAFE_INTEGER)).toBe('first');
    expect(await p.admit('u', 'c2', Number.MAX_SAFE_INTEGER)).toBe('again');
    expect(await p.disconnected('u', 'c1')).toBe(false);
    expect(await p.claimOffline('u')).toBe(false);
    expect(await p.disconnected('u', 'c2')).toBe(true);
    expect(await p.connectionCount('u')).toBe(0);
    expect(await p.claimOffline('u')).toBe(true);
    expect(await p.claimOffline('u')).toBe(false);
  });
});

describe('bus wire format', () => {
  it('round-trips the header and leaves the frame string untouched', () => {
    const frame = JSON.stringify({ type: 'x', content: 'line\nbreak "quoted" ✓' });
    const wire = encodeDelivery('inst-1', { userIds: ['1', '2'], frame, exceptConnId: 'c', close: { code: 4409, reason: 'r' }, publishedAt: 1700000000123 }, true);
    expect(wire.endsWith('\n' + frame)).toBe(true);
    expect(decodeDelivery(wire)).toEqual({
      origin: 'inst-1',
      delivery: { userIds: ['1', '2'], frame, exceptConnId: 'c', close: { code: 4409, reason: 'r' }, publishedAt: 1700000000123 },
      sealed: false,
    });
    expect(decodeDelivery(encodeDelivery('i', { userIds: ['1'], frame }, false))).toEqual({ origin: 'i', delivery: { userIds: [], frame }, sealed: false });
    expect(decodeDelivery('garbage')).toBeNull();
    expect(decodeDelivery('{not json\n{}')).toBeNull();
  });
});

describe('distributionKind', () => {
  it('BUS=auto: redis with REDIS_URL, cluster in a worker, else local; explicit values win', () => {
    expect(distributionKind({ bus: 'auto', redisUrl: 'redis://x' }, true)).toBe('redis');
    expect(distributionKind({ bus: 'auto', redisUrl: '' }, true)).toBe('cluster');
    expect(distributionKind({ bus: 'auto', redisUrl: '' }, false)).toBe('local');
    expect(distributionKind({ bus: 'local', redisUrl: 'redis://x' }, true)).toBe('local');
  });
});

/**
 * Gap handling of the Redis bus (src/fanout/busGaps.ts): recipients of failed publishes
 * are kept (bounded) and told through the other instances once Redis takes commands, in
 * chunks, never locally; a subscriber that came back closes the connections held here;
 * the close's spread survives the wire (sealed) and is bounded; BUS_GAP_RESYNC_MS=0 does
 * nothing. The end-to-end behaviour (two servers, a private redis-server restarted and
 * stalled) is test/integration/bus-gap.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BusSeal } from '../../src/crypto/busSeal.ts';
import { BodyCipher } from '../../src/crypto/cipher.ts';
import type { Delivery } from '../../src/fanout/bus.ts';
import { batchRecipients, BusGaps, GAP_NOTICE_CHUNK, GAP_NOTICE_RETRY_MS, gapSpread, MAX_MISSED_USERS, MissedUsers } from '../../src/fanout/busGaps.ts';
import { decodeDelivery, encodeDelivery, MAX_CLOSE_SPREAD_MS } from '../../src/fanout/wire.ts';
import { ConnectionRegistry, type Deliverable } from '../../src/gateway/registry.ts';
import { createLogger } from '../../src/observability/logger.ts';

const logger = createLogger('error', { silent: true });

function gaps(spreadMs: number, ready: { now: boolean }) {
  const remote: Delivery[] = [];
  const local: Delivery[] = [];
  const g = new BusGaps(spreadMs, { publishReady: () => ready.now, publishRemote: (d) => remote.push(d), deliverLocal: (d) => local.push(d), logger });
  return { g, remote, local };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('bus gaps', () => {
  it('batchRecipients reads the users of per-user and routed entries', () => {
    const args = ['p:', 'inst', 'c', 'p:u:7', 'msg', 'r', '3', '1', '2', '3', 'msg2', 'c', 'p:u:9', 'msg3'];
    expect(batchRecipients(args, 'p:u:')).toEqual(['7', '1', '2', '3', '9']);
  });

  it('MissedUsers keeps distinct ids up to the cap, counts the rest, and takes them in chunks', () => {
    const m = new MissedUsers();
    m.add(['1', '2', '1']);
    expect(m.size).toBe(2);
    m.add(Array.from({ length: MAX_MISSED_USERS + 5 }, (_, i) => String(i)));
    expect(m.size).toBe(MAX_MISSED_USERS);
    expect(m.dropped).toBe(5);
    const { chunks, dropped } = m.take();
    expect(dropped).toBe(5);
    expect(chunks.length).toBe(MAX_MISSED_USERS / GAP_NOTICE_CHUNK);
    expect(chunks.every((c) => c.length === GAP_NOTICE_CHUNK)).toBe(true);
    expect(m.size).toBe(0);
  });

  it('failed publishes are told remotely once Redis takes commands again, never locally', () => {
    vi.useFakeTimers();
    const ready = { now: false };
    const { g, remote, local } = gaps(5000, ready);
    g.failed(['3', '4']);
    g.failed(['4', '5']);
    vi.advanceTimersByTime(GAP_NOTICE_RETRY_MS * 4);
    expect(remote).toEqual([]);
    ready.now = true;
    vi.advanceTimersByTime(GAP_NOTICE_RETRY_MS);
    expect(remote).toHaveLength(1);
    expect(remote[0]).toMatchObject({ userIds: ['3', '4', '5'], frame: '', close: { code: 4503, spreadMs: 5000 } });
    expect(local).toEqual([]);
    // Told once.
    vi.advanceTimersByTime(GAP_NOTICE_RETRY_MS * 4);
    expect(remote).toHaveLength(1);
  });

  it('a subscriber that came back closes the connections of every user held here; nothing when none', () => {
    const { g, remote, local } = gaps(5000, { now: true });
    g.subscriberBack(new Set());
    expect(local).toEqual([]);
    g.subscriberBack(new Set(['1', '2']));
    expect(local).toEqual([{ userIds: ['1', '2'], frame: '', close: { code: 4503, reason: 'Missed live events; reconnect and sync', spreadMs: 5000 } }]);
    expect(remote).toEqual([]);
  });

  it('many users: the closes spread over at least 1 ms per user, locally and remotely', () => {
    vi.useFakeTimers();
    expect(gapSpread(5000, 100)).toBe(5000);
    expect(gapSpread(5000, 20_000)).toBe(20_000);
    const { g, remote, local } = gaps(5000, { now: true });
    const many = Array.from({ length: 12_000 }, (_, i) => String(i));
    g.subscriberBack(many);
    expect(local[0]!.close!.spreadMs).toBe(12_000);
    g.failed(many);
    vi.advanceTimersByTime(GAP_NOTICE_RETRY_MS);
    expect(remote).toHaveLength(12);
    expect(remote.every((d) => d.close!.spreadMs === 12_000)).toBe(true);
  });

  it('BUS_GAP_RESYNC_MS=0: nothing kept, nobody closed', () => {
    vi.useFakeTimers();
    const { g, remote, local } = gaps(0, { now: true });
    g.failed(['1']);
    g.subscriberBack(['1']);
    vi.advanceTimersByTime(GAP_NOTICE_RETRY_MS * 4);
    expect(remote).toEqual([]);
    expect(local).toEqual([]);
  });

  it('the close spread crosses the wire sealed, bounded to the maximum', () => {
    const cipher = new BodyCipher([['k1', randomBytes(32)]]);
    const [a, b] = [new BusSeal(cipher), new BusSeal(cipher)];
    const d: Delivery = { userIds: ['1'], frame: '', close: { code: 4503, reason: 'r', spreadMs: 2500 } };
    expect(decodeDelivery(encodeDelivery('i1', d, false, a), { open: b, acceptPlaintext: false })?.delivery.close).toEqual({ code: 4503, reason: 'r', spreadMs: 2500 });
    const huge: Delivery = { ...d, close: { code: 4503, reason: 'r', spreadMs: 10 * MAX_CLOSE_SPREAD_MS } };
    expect(decodeDelivery(encodeDelivery('i1', huge, false, a), { open: b, acceptPlaintext: false })?.delivery.close?.spreadMs).toBe(MAX_CLOSE_SPREAD_MS);
  });

  it('the registry closes each connection at a random time within the spread, once', () => {
    vi.useFakeTimers();
    const closes: [string, number][] = [];
    const conn = (id: string): Deliverable => ({ id, sendRaw: () => {}, close: (code) => void closes.push([id, code]) });
    const reg = new ConnectionRegistry();
    for (let i = 0; i < 50; i++) reg.add(String(i % 5), conn(`c${i}`));
    reg.deliver({ userIds: ['0', '1', '2', '3', '4'], frame: '', close: { code: 4503, reason: 'r', spreadMs: 1000 } });
    expect(closes).toEqual([]);
    vi.advanceTimersByTime(500);
    const half = closes.length;
    expect(half).toBeGreaterThan(0);
    expect(half).toBeLessThan(50);
    vi.advanceTimersByTime(500);
    expect(closes.length).toBe(50);
    expect(new Set(closes.map(([id]) => id)).size).toBe(50);
  });
});

/**
 * The outbound queue limit (src/gateway/sendQueue.ts, PROTOCOL §2.3 4503): bytes, not
 * UTF-16 units; one frame of any size passes into a queue within the limit; a queue that
 * is not draining is refused; memory stays within the limit plus one frame. And the
 * configuration warning for a statement timeout not below the drain timeout (src/config.ts).
 */
import { describe, expect, it } from 'vitest';
import { configWarnings, loadConfig } from '../../src/config.ts';
import { frameBytes, queueVerdict, SLOW_CONSUMER, WRITE, WRITE_PAST_LIMIT } from '../../src/gateway/sendQueue.ts';

const L = 1024 * 1024;

describe('frameBytes', () => {
  it('counts UTF-8 bytes of a string and the length of a Buffer', () => {
    expect(frameBytes('abc')).toBe(3);
    expect(frameBytes('é')).toBe(2);
    expect(frameBytes('€')).toBe(3);
    expect(frameBytes('😀')).toBe(4); // 2 UTF-16 units
    expect(frameBytes(Buffer.from('😀😀'))).toBe(8);
  });
  it('never exceeds 3 × the UTF-16 length (the fast path bound)', () => {
    for (const s of ['a', 'é', '€', '😀', '\u0000', '\uffff', '\ud800']) expect(frameBytes(s)).toBeLessThanOrEqual(3 * s.length);
  });
});

describe('queueVerdict', () => {
  it('writes what fits under the limit', () => {
    expect(queueVerdict(0, 1000, L, 0)).toBe(WRITE);
    expect(queueVerdict(L - 1000, 1000, L, 0)).toBe(WRITE);
  });
  it('lets one frame of any size into an empty queue, or one within the limit', () => {
    expect(queueVerdict(0, 20 * L, L, 0)).toBe(WRITE_PAST_LIMIT);
    expect(queueVerdict(L, 1, L, 0)).toBe(WRITE_PAST_LIMIT);
  });
  it('counts the frame let past the limit as room for the frames behind it until it is flushed', () => {
    // 3 MB reply written into an empty queue; 2.5 MB of it still queued; a delivery arrives
    expect(queueVerdict(2.5 * L, 500, L, 3 * L)).toBe(WRITE);
    // queued behind it: more than the limit → slow consumer
    expect(queueVerdict(4 * L, 500, L, 3 * L)).toBe(SLOW_CONSUMER);
  });
  it('refuses a queue already past the limit, and a second large frame while one is in flight', () => {
    expect(queueVerdict(L + 1, 1, L, 0)).toBe(SLOW_CONSUMER);
    expect(queueVerdict(L / 2, 2 * L, L, L)).toBe(SLOW_CONSUMER);
  });
  it('bounds the queue by the limit plus one frame for a client that stopped reading', () => {
    let buffered = 0;
    let allowance = 0;
    let max = 0;
    for (let i = 0; i < 1000; i++) {
      const bytes = 1000 + ((i * 7919) % (3 * L)); // up to 3 MiB, never flushed
      const v = queueVerdict(buffered, bytes, L, allowance);
      if (v === SLOW_CONSUMER) break;
      if (v === WRITE_PAST_LIMIT) allowance = bytes;
      buffered += bytes;
      max = Math.max(max, buffered);
    }
    expect(max).toBeLessThanOrEqual(L + 3 * L + 1000);
  });
});

describe('configWarnings', () => {
  // HOST on loopback: the warning about an open /metrics is config-validation.test.ts's.
  const db = { DATABASE_URL: 'postgres://x@127.0.0.1/db', HOST: '127.0.0.1' };
  it('is empty for the defaults (5 s statement timeout, 10 s drain)', () => {
    expect(configWarnings(loadConfig(db))).toEqual([]);
  });
  it('names both variables when the statement timeout is not below the drain timeout, or is off', () => {
    expect(configWarnings(loadConfig({ ...db, DB_STATEMENT_TIMEOUT_MS: '5000', DRAIN_TIMEOUT_MS: '3000' }))[0]).toMatch(/DB_STATEMENT_TIMEOUT_MS \(5000\).*DRAIN_TIMEOUT_MS \(3000\)/);
    expect(configWarnings(loadConfig({ ...db, DB_STATEMENT_TIMEOUT_MS: '0' }))).toHaveLength(1);
  });
  it('is empty on the embedded database (no statement timeout there)', () => {
    expect(configWarnings(loadConfig({ HOST: '127.0.0.1', DB_STATEMENT_TIMEOUT_MS: '0' }))).toEqual([]);
  });
});

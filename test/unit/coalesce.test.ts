/**
 * Coalescer (src/store/coalesce.ts): requests of one event-loop turn share a batch;
 * `minIntervalMs` spaces batch starts so that requests in between share the next one;
 * a lone request after a quiet period runs at once; per-item errors stay per item.
 */
import { describe, expect, it } from 'vitest';
import { Coalescer } from '../../src/store/coalesce.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A batch function that records each batch and answers item * 10 (Error for negatives). */
function recorder(delayMs = 0) {
  const batches: number[][] = [];
  const starts: number[] = [];
  const run = async (items: number[]) => {
    batches.push(items);
    starts.push(performance.now());
    if (delayMs) await sleep(delayMs);
    return items.map((x) => (x < 0 ? new Error(`bad ${x}`) : x * 10));
  };
  return { batches, starts, run };
}

describe('Coalescer', () => {
  it('runs the requests of one turn as one batch and resolves each in order', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, { maxInFlight: 2, maxBatch: 100 });
    const out = await Promise.all([1, 2, 3, 4].map((x) => c.add(x)));
    expect(out).toEqual([10, 20, 30, 40]);
    expect(r.batches).toEqual([[1, 2, 3, 4]]);
  });

  it('keeps an error to its own item', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, { maxInFlight: 1, maxBatch: 100 });
    const [a, b] = await Promise.allSettled([c.add(1), c.add(-1)]);
    expect(a).toEqual({ status: 'fulfilled', value: 10 });
    expect(b.status).toBe('rejected');
    expect(r.batches).toHaveLength(1);
  });

  it('splits at maxBatch and never exceeds maxInFlight', async () => {
    const r = recorder(20);
    let inFlight = 0;
    let peak = 0;
    const c = new Coalescer(
      async (items: number[]) => {
        peak = Math.max(peak, ++inFlight);
        try {
          return await r.run(items);
        } finally {
          inFlight--;
        }
      },
      { maxInFlight: 2, maxBatch: 3 },
    );
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => c.add(i)));
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => i * 10));
    expect(r.batches.map((b) => b.length)).toEqual([3, 3, 3, 1]);
    expect(peak).toBe(2);
  });

  it('with minIntervalMs, requests arriving within the interval share the next batch, started no earlier', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, { maxInFlight: 4, maxBatch: 100, minIntervalMs: 60 });
    const first = c.add(1);
    await first; // ran at once: nothing ran before it
    const later: Promise<number>[] = [];
    for (let i = 2; i <= 5; i++) {
      later.push(c.add(i));
      await sleep(5);
    }
    expect(await Promise.all(later)).toEqual([20, 30, 40, 50]);
    expect(r.batches).toEqual([[1], [2, 3, 4, 5]]);
    expect(r.starts[1]! - r.starts[0]!).toBeGreaterThanOrEqual(50); // timers round to whole ms
    // After a quiet period longer than the interval, a lone request runs at once.
    await sleep(80);
    const t0 = performance.now();
    expect(await c.add(6)).toBe(60);
    expect(performance.now() - t0).toBeLessThan(40);
    expect(c.batches).toBe(3);
  });
});

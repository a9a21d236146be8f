/**
 * sharedResult (src/http/shared.ts): callers share one call in flight, reuse its value for
 * ttlMs, and a rejection is shared but not kept.
 */
import { describe, expect, it } from 'vitest';
import { sharedResult } from '../../src/http/shared.ts';

describe('sharedResult', () => {
  it('concurrent callers share one call; within ttlMs the value is reused; after it a new call is made', async () => {
    let now = 0;
    let calls = 0;
    const f = sharedResult(async () => ++calls, 1000, () => now);
    expect(await Promise.all([f(), f(), f()])).toEqual([1, 1, 1]);
    now = 999;
    expect(await f()).toBe(1);
    now = 1000;
    expect(await Promise.all([f(), f()])).toEqual([2, 2]);
    expect(calls).toBe(2);
  });

  it('a rejection reaches every caller of that call, and the next caller calls again', async () => {
    let calls = 0;
    const f = sharedResult(async () => {
      calls++;
      if (calls === 1) throw new Error('down');
      return 'up';
    }, 1000);
    const both = await Promise.allSettled([f(), f()]);
    expect(both.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(await f()).toBe('up');
    expect(calls).toBe(2);
  });
});

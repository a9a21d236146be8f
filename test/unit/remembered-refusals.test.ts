/**
 * rememberingRefusals (src/fanout/limits.ts), the cluster's rate limits: a key refused
 * once is answered locally until its fixed window ends, so a client past its budget costs
 * the primary one round trip per window (audit 3), with the same answers (PROTOCOL §4).
 */
import { RateLimiterMemory, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { describe, expect, it } from 'vitest';
import { rememberingRefusals } from '../../src/fanout/limits.ts';
import type { LimitSpec } from '../../src/policy/rateLimits.ts';

const spec: LimitSpec = {
  message: { points: 3, windowMs: 1000 },
  action: { points: 3, windowMs: 1000 },
  typing: { points: 2, windowMs: 1000 },
  connect: { points: 3, windowMs: 1000 },
  read: { points: 3, windowMs: 1000 },
  receipt: { points: 3, windowMs: 1000 },
};

/** Limits over in-memory fixed windows, counting the calls that reach them. */
function counted(): { limits: ReturnType<typeof rememberingRefusals>; calls: () => number } {
  let calls = 0;
  const limits = rememberingRefusals(spec, (kind, points, duration) => {
    const inner = new RateLimiterMemory({ keyPrefix: kind, points, duration });
    return new Proxy(inner, {
      get(target, prop, recv) {
        if (prop === 'consume') return (key: string) => (calls++, target.consume(key));
        return Reflect.get(target, prop, recv);
      },
    }) as RateLimiterAbstract;
  });
  return { limits, calls: () => calls };
}

describe('rememberingRefusals', () => {
  it('answers a refused key locally until its window ends, then asks the shared limiter again', async () => {
    const { limits, calls } = counted();
    expect(await limits.consume('typing', 'u1')).toBeNull();
    expect(await limits.consume('typing', 'u1')).toBeNull();
    expect(await limits.consume('typing', 'u1')).toBe(1); // refused: remembered
    const before = calls();
    for (let i = 0; i < 50; i++) expect(await limits.consume('typing', 'u1')).toBe(1);
    expect(calls()).toBe(before); // none reached the shared limiter
    // Other keys and kinds are unaffected.
    expect(await limits.consume('typing', 'u2')).toBeNull();
    expect(await limits.consume('message', 'u1')).toBeNull();
    await new Promise((r) => setTimeout(r, 1100));
    expect(await limits.consume('typing', 'u1')).toBeNull(); // a new window
    expect(calls()).toBe(before + 3);
  });
});

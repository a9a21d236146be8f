/**
 * RelationPolicy's cache (PROTOCOL §5, RELATION_CACHE_MS): refresh-ahead renews an entry in
 * use in the background, so the send path does not wait for a lookup when the entry would
 * have expired, and nothing older than RELATION_CACHE_MS is ever served (the entry's age
 * counts from when its lookup was issued). The store here is a stand-in whose lookups the
 * test resolves by hand; the end-to-end staleness bound against PostgreSQL/PGlite is in
 * test/integration/dm-rules.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { REFRESH_AFTER_MAX, REFRESH_AFTER_MIN, RelationPolicy } from '../../src/policy/relations.ts';
import type { PairRelation, RelationStore } from '../../src/store/relations.ts';

const OPEN: PairRelation = { blocked: false, aFollowsB: true, bFollowsA: true, bExists: true };
const BLOCKED: PairRelation = { ...OPEN, blocked: true };
const CACHE_MS = 1000;

/** A lookup the test settles by hand. */
interface Pending {
  resolve(r: PairRelation): void;
  reject(e: Error): void;
}

function gatedStore(): { store: RelationStore; pending: Pending[] } {
  const pending: Pending[] = [];
  const store = {
    pair: () => new Promise<PairRelation>((resolve, reject) => pending.push({ resolve, reject })),
  } as unknown as RelationStore;
  return { store, pending };
}

/** A policy over a gated store whose entry for (1, 2) was loaded (OPEN) and is now past its latest refresh point. */
async function loadedPastRefresh(): Promise<{ p: RelationPolicy; pending: Pending[] }> {
  const { store, pending } = gatedStore();
  const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
  const first = p.pair('1', '2');
  pending[0]!.resolve(OPEN);
  await first;
  vi.advanceTimersByTime(Math.ceil(CACHE_MS * REFRESH_AFTER_MAX));
  return { p, pending };
}

/** Resolves once the promise has settled (fake timers do not hold microtasks). */
async function settled<T>(p: Promise<T>): Promise<{ ok: true; v: T } | { ok: false; e: unknown } | 'pending'> {
  let out: { ok: true; v: T } | { ok: false; e: unknown } | 'pending' = 'pending';
  p.then(
    (v) => (out = { ok: true, v }),
    (e) => (out = { ok: false, e }),
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return out;
}

describe('RelationPolicy refresh-ahead', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  it('a miss waits for one lookup; uses before the refresh point do not look up again', async () => {
    const { store, pending } = gatedStore();
    const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
    const first = p.pair('1', '2');
    expect(await settled(first)).toBe('pending');
    expect(pending).toHaveLength(1);
    pending[0]!.resolve(OPEN);
    expect(await first).toEqual(OPEN);
    vi.advanceTimersByTime(CACHE_MS * REFRESH_AFTER_MIN - 1);
    for (let i = 0; i < 10; i++) expect(await p.pair('1', '2')).toEqual(OPEN);
    expect(pending).toHaveLength(1);
  });

  it('past the refresh point a use is answered from the cache at once and starts exactly one background lookup', async () => {
    const { p, pending } = await loadedPastRefresh();
    for (let i = 0; i < 5; i++) {
      const r = await settled(p.pair('1', '2'));
      expect(r).toEqual({ ok: true, v: OPEN });
    }
    expect(pending).toHaveLength(2);
    // The renewal lands: the new relation is served, with a fresh lifetime.
    pending[1]!.resolve(BLOCKED);
    await settled(Promise.resolve());
    expect(await p.pair('1', '2')).toEqual(BLOCKED);
    vi.advanceTimersByTime(CACHE_MS * REFRESH_AFTER_MIN - 1);
    expect(await p.pair('1', '2')).toEqual(BLOCKED);
    expect(pending).toHaveLength(2);
  });

  it('never serves an entry older than RELATION_CACHE_MS: a renewal still in flight at expiry does not extend it', async () => {
    const { p, pending } = await loadedPastRefresh();
    await p.pair('1', '2'); // starts the renewal, which hangs
    expect(pending).toHaveLength(2);
    vi.advanceTimersByTime(CACHE_MS);
    const late = p.pair('1', '2');
    expect(await settled(late)).toBe('pending'); // waits for its own lookup
    expect(pending).toHaveLength(3);
    pending[2]!.resolve(BLOCKED);
    expect(await late).toEqual(BLOCKED);
    // The stale renewal landing afterwards does not replace the newer answer.
    pending[1]!.resolve(OPEN);
    await settled(Promise.resolve());
    expect(await p.pair('1', '2')).toEqual(BLOCKED);
  });

  it('clear() while a renewal is in flight: what the renewal read is not brought back', async () => {
    const { p, pending } = await loadedPastRefresh();
    await p.pair('1', '2'); // starts the renewal
    p.clear();
    pending[1]!.resolve(OPEN);
    await settled(Promise.resolve());
    const next = p.pair('1', '2');
    expect(await settled(next)).toBe('pending'); // a fresh lookup, not the renewal's answer
    pending[2]!.resolve(BLOCKED);
    expect(await next).toEqual(BLOCKED);
  });

  it('a failed renewal leaves the entry to age out; then the send path fails closed (SERVICE_UNAVAILABLE)', async () => {
    const { p, pending } = await loadedPastRefresh();
    expect(await p.pair('1', '2')).toEqual(OPEN);
    pending[1]!.reject(new Error('connection refused'));
    await settled(Promise.resolve());
    // Still within its lifetime: served, and the next use tries the renewal again.
    expect(await p.pair('1', '2')).toEqual(OPEN);
    expect(pending).toHaveLength(3);
    pending[2]!.reject(new Error('connection refused'));
    await settled(Promise.resolve());
    vi.advanceTimersByTime(CACHE_MS);
    const late = p.pair('1', '2');
    pending[3]!.reject(new Error('connection refused'));
    await expect(late).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
  });

  it('entries loaded together renew at spread points between REFRESH_AFTER_MIN and REFRESH_AFTER_MAX of their lifetime', async () => {
    const { store, pending } = gatedStore();
    const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
    const n = 200;
    const loads = Array.from({ length: n }, (_, i) => p.pair('1', String(i + 2)));
    for (const q of pending) q.resolve(OPEN);
    await Promise.all(loads);
    const renewedAt: number[] = [];
    for (let t = 0; t < CACHE_MS; t += 10) {
      for (let i = 0; i < n; i++) {
        const before = pending.length;
        await p.pair('1', String(i + 2));
        if (pending.length > before) renewedAt.push(t);
      }
      vi.advanceTimersByTime(10);
    }
    expect(renewedAt).toHaveLength(n);
    expect(Math.min(...renewedAt)).toBeGreaterThanOrEqual(CACHE_MS * REFRESH_AFTER_MIN - 10);
    expect(Math.max(...renewedAt)).toBeLessThanOrEqual(CACHE_MS * REFRESH_AFTER_MAX);
    // Spread, not one burst: no 10 ms step holds more than a quarter of them.
    const perStep = new Map<number, number>();
    for (const t of renewedAt) perStep.set(t, (perStep.get(t) ?? 0) + 1);
    expect(Math.max(...perStep.values())).toBeLessThan(n / 4);
  });

  it('RELATION_CACHE_MS=0: every use looks up', async () => {
    const { store, pending } = gatedStore();
    const p = new RelationPolicy(store, 'sender_follows', 0);
    for (let i = 0; i < 3; i++) {
      const q = p.pair('1', '2');
      pending[i]!.resolve(OPEN);
      await q;
    }
    expect(pending).toHaveLength(3);
  });
});

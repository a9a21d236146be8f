/**
 * RelationPolicy's cache bounds (audit 2 of 2026-12-05, F4; PROTOCOL §5, RELATION_CACHE_MS): expired
 * entries are evicted a few per store from the oldest end, a full cache evicts its oldest
 * entry instead of being cleared for every user, and answers for users that do not exist
 * live in their own small map so they cannot push real pairs out. The store is a
 * stand-in that answers at once and counts lookups; the end-to-end flood through
 * `start_conversation` is in test/integration/relation-cache-flood.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { REFRESH_AFTER_MAX, RelationPolicy } from '../../src/policy/relations.ts';
import type { PairRelation, RelationStore } from '../../src/store/relations.ts';

const OPEN: PairRelation = { blocked: false, aFollowsB: true, bFollowsA: true, bExists: true };
const NOBODY: PairRelation = { blocked: false, aFollowsB: false, bFollowsA: false, bExists: false };
const CACHE_MS = 1000;
/** The cache's capacity for real pairs (MAX_ENTRIES, the value the audit measured against). */
const CAP = 200_000;
/** The capacity for unknown-user answers (MAX_UNKNOWN_ENTRIES). */
const UNKNOWN_CAP = 10_000;

/** A store answering at once: users whose id starts with 'x' do not exist. Counts lookups per pair. */
function countingStore(): { store: RelationStore; lookups: Map<string, number> } {
  const lookups = new Map<string, number>();
  const store = {
    pair: async (a: string, b: string) => {
      lookups.set(a + ':' + b, (lookups.get(a + ':' + b) ?? 0) + 1);
      return b.startsWith('x') ? NOBODY : OPEN;
    },
  } as unknown as RelationStore;
  return { store, lookups };
}

/** Entries held, read from the policy's maps (the old code had only `cache`). */
function held(p: RelationPolicy): { known: number; unknown: number } {
  const q = p as unknown as { cache: Map<string, unknown>; unknown?: Map<string, unknown> };
  return { known: q.cache.size, unknown: q.unknown?.size ?? 0 };
}

describe('RelationPolicy cache bounds', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  it('expired entries are evicted as new ones are stored, not kept forever', async () => {
    const { store } = countingStore();
    const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
    for (let i = 0; i < 1000; i++) await p.pair('1', String(i + 2));
    expect(held(p).known).toBe(1000);
    vi.advanceTimersByTime(CACHE_MS);
    // 200 stores drop up to 8 expired entries each: all 1000 old ones are gone.
    for (let i = 0; i < 200; i++) await p.pair('2', String(i + 2));
    expect(held(p)).toEqual({ known: 200, unknown: 0 });
  });

  it('a full cache evicts its oldest entry; other users keep theirs (no clear for everyone)', async () => {
    const { store, lookups } = countingStore();
    const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
    await p.pair('1', 'oldest');
    await p.pair('1', 'victim');
    for (let i = 0; held(p).known < CAP; i++) await p.pair('9', String(i));
    await p.pair('1', 'one-more');
    expect(held(p).known).toBe(CAP);
    await p.pair('1', 'victim');
    expect(lookups.get('1:victim')).toBe(1); // still cached
    await p.pair('1', 'oldest');
    expect(lookups.get('1:oldest')).toBe(2); // the one evicted
  });

  it('lookups of users that do not exist cannot push real pairs out, and are bounded on their own', async () => {
    const { store, lookups } = countingStore();
    const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
    await p.pair('1', 'victim');
    // One user "starting conversations" with random ids, more than the whole cache holds.
    for (let i = 0; i < CAP + 50_000; i++) await p.pair('1', 'x' + i);
    expect((await p.pair('1', 'x0')).bExists).toBe(false);
    expect(await p.pair('1', 'victim')).toEqual(OPEN);
    expect(lookups.get('1:victim')).toBe(1);
    expect(held(p)).toEqual({ known: 1, unknown: UNKNOWN_CAP });
    // Unknown answers are still cached (within RELATION_CACHE_MS) for repeated sends to the same id.
    const last = 'x' + (CAP + 50_000 - 1);
    await p.pair('1', last);
    expect(lookups.get('1:' + last)).toBe(1);
  });

  it('a user that appears (or disappears) moves between the maps within RELATION_CACHE_MS', async () => {
    let exists = false;
    let n = 0;
    const store = { pair: async () => (n++, exists ? OPEN : NOBODY) } as unknown as RelationStore;
    const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
    expect((await p.pair('1', '2')).bExists).toBe(false);
    exists = true;
    vi.advanceTimersByTime(CACHE_MS);
    expect((await p.pair('1', '2')).bExists).toBe(true);
    expect(held(p)).toEqual({ known: 1, unknown: 0 });
    exists = false;
    vi.advanceTimersByTime(CACHE_MS);
    expect((await p.pair('1', '2')).bExists).toBe(false);
    expect(held(p)).toEqual({ known: 0, unknown: 1 });
    expect(n).toBe(3);
  });

  it('refresh-ahead still renews a pair in use, which moves it to the young end: the eviction at the cap takes an idle pair', async () => {
    const { store, lookups } = countingStore();
    const p = new RelationPolicy(store, 'sender_follows', CACHE_MS);
    await p.pair('1', 'idle');
    await p.pair('1', 'busy');
    vi.advanceTimersByTime(Math.ceil(CACHE_MS * REFRESH_AFTER_MAX));
    expect(await p.pair('1', 'busy')).toEqual(OPEN); // served at once, renewed in the background
    await Promise.resolve();
    await Promise.resolve();
    expect(lookups.get('1:busy')).toBe(2);
    // Fill to the cap and one beyond: idle (now the oldest) is the one evicted.
    for (let i = 0; held(p).known < CAP; i++) await p.pair('9', String(i));
    await p.pair('1', 'one-more');
    vi.advanceTimersByTime(CACHE_MS * 0.1); // busy's renewed entry is still young
    await p.pair('1', 'busy');
    await p.pair('1', 'idle');
    expect(lookups.get('1:busy')).toBe(2);
    expect(lookups.get('1:idle')).toBe(2);
  });
});

/**
 * Block and follow rules (PROTOCOL §5), over the backend's tables with a short cache:
 * a change is seen within `RELATION_CACHE_MS` (0 = no cache). Any lookup error refuses
 * the action with SERVICE_UNAVAILABLE (fail closed).
 *
 * Refresh-ahead: an entry used after {@link REFRESH_AFTER_MIN}–{@link REFRESH_AFTER_MAX}
 * of its lifetime (a random point per entry, so entries loaded together do not all
 * refresh together) is still served, and one lookup renews it in the background. So a
 * pair in steady use never waits for the database when its entry would have expired:
 * without this, every active pair paid one lookup on its send path every
 * RELATION_CACHE_MS, and in the bench's 200-pair load those lookups came in bursts, one
 * every 5 s, each a p99 spike (2026-12-04). An entry's age counts from the moment its
 * lookup was issued, so nothing older than RELATION_CACHE_MS is ever served; a failed
 * background lookup leaves the entry to expire, after which the send path looks up (and
 * fails closed) as before.
 *
 * Bounds (audit 2 of 2026-12-05, F4): lookups of a user that does not exist (`bExists: false`) are
 * kept in a separate map of at most {@link MAX_UNKNOWN_ENTRIES}, so `start_conversation`
 * with random ids (not rate-limited) cannot push real pairs out; each map holds at most
 * its cap, evicting its oldest entry when full (never the whole cache), and every store
 * drops up to {@link SWEEP_PER_PUT} expired entries from the front of the map (Maps keep
 * insertion order, and an entry is re-inserted on each store, so the front is the oldest).
 */
import { ChatError, notFound } from '../protocol/errors.ts';
import type { PairRelation, RelationStore } from '../store/relations.ts';

/** FOLLOW_POLICY values: who must follow whom for a DM. */
export type FollowPolicy = 'sender_follows' | 'either' | 'none';

/** Most cached relations between existing users; the oldest is evicted beyond this. */
export const MAX_ENTRIES = 200_000;
/** Most cached "user does not exist" answers, kept apart so they never evict real pairs. */
export const MAX_UNKNOWN_ENTRIES = 10_000;
/** Expired entries dropped from the front of a map per store (incremental eviction). */
export const SWEEP_PER_PUT = 8;
/** Earliest point of an entry's lifetime (fraction of RELATION_CACHE_MS) at which a use renews it in the background. */
export const REFRESH_AFTER_MIN = 0.5;
/** Latest such point (fraction of RELATION_CACHE_MS). */
export const REFRESH_AFTER_MAX = 0.8;

/** A cached relation: `at` is when its lookup was issued (epoch ms). */
interface Entry {
  at: number;
  rel: PairRelation;
  /** Age (ms) from which a use starts a background renewal. */
  refreshAfterMs: number;
  /** A background renewal is in flight. */
  refreshing: boolean;
}

/**
 * Relationship checks with a TTL cache keyed by ordered pair, renewed ahead of expiry while in use.
 * Constructor: `cacheMs` is RELATION_CACHE_MS (ms, 0 = no cache); `limits` overrides the
 * entry caps ({@link MAX_ENTRIES}, {@link MAX_UNKNOWN_ENTRIES}; counts, for tests).
 */
export class RelationPolicy {
  /** Pairs whose second user exists, in store order (oldest first). */
  private readonly cache = new Map<string, Entry>();
  /** Pairs whose second user does not exist (`bExists: false`), in store order; at most MAX_UNKNOWN_ENTRIES. */
  private readonly unknown = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxUnknown: number;

  constructor(
    private readonly store: RelationStore,
    private readonly followPolicy: FollowPolicy,
    private readonly cacheMs: number,
    limits: { maxEntries?: number; maxUnknown?: number } = {},
  ) {
    this.maxEntries = Math.max(1, limits.maxEntries ?? MAX_ENTRIES);
    this.maxUnknown = Math.max(1, limits.maxUnknown ?? MAX_UNKNOWN_ENTRIES);
  }

  /**
   * The relation of (a, b): from the cache when its entry is younger than RELATION_CACHE_MS
   * (renewing it in the background past its refresh point), else one lookup. Throws
   * ChatError SERVICE_UNAVAILABLE when that lookup fails.
   */
  async pair(a: string, b: string): Promise<PairRelation> {
    const key = a + ':' + b;
    const now = Date.now();
    if (this.cacheMs > 0) {
      const hit = this.cache.get(key) ?? this.unknown.get(key);
      if (hit && now - hit.at < this.cacheMs) {
        if (!hit.refreshing && now - hit.at >= hit.refreshAfterMs) this.renew(key, a, b, hit);
        return hit.rel;
      }
    }
    let rel: PairRelation;
    try {
      rel = await this.store.pair(a, b);
    } catch {
      throw new ChatError('SERVICE_UNAVAILABLE', 'Relationship check unavailable; nothing was changed');
    }
    this.put(key, now, rel);
    return rel;
  }

  /** Background lookup for a cached entry past its refresh point; on failure the entry just ages out. */
  private renew(key: string, a: string, b: string, entry: Entry): void {
    entry.refreshing = true;
    const at = Date.now();
    this.store.pair(a, b).then(
      (rel) => {
        // Only while the entry is still the one cached: a lookup issued later may have
        // replaced it (keep the newer), or clear() dropped it (a renewal issued before must
        // not bring back what it read).
        if (this.cache.get(key) === entry || this.unknown.get(key) === entry) this.put(key, at, rel);
        else entry.refreshing = false;
      },
      () => {
        entry.refreshing = false;
      },
    );
  }

  /**
   * Store `rel` for `key` as looked up at `at` (epoch ms): re-inserted at the back of its
   * map (unknown users in their own, smaller map), after dropping up to SWEEP_PER_PUT
   * expired entries from the front and, when the map is still full, its oldest entry.
   */
  private put(key: string, at: number, rel: PairRelation): void {
    if (this.cacheMs <= 0) return;
    const [into, other, max] = rel.bExists ? [this.cache, this.unknown, this.maxEntries] : [this.unknown, this.cache, this.maxUnknown];
    other.delete(key);
    into.delete(key);
    const now = Date.now();
    this.sweep(this.cache, now);
    this.sweep(this.unknown, now);
    if (into.size >= max) into.delete(into.keys().next().value!);
    const frac = REFRESH_AFTER_MIN + Math.random() * (REFRESH_AFTER_MAX - REFRESH_AFTER_MIN);
    into.set(key, { at, rel, refreshAfterMs: Math.floor(this.cacheMs * frac), refreshing: false });
  }

  /** Drop up to SWEEP_PER_PUT expired entries from the front (oldest end) of `map`, stopping at the first live one. */
  private sweep(map: Map<string, Entry>, now: number): void {
    for (let i = 0; i < SWEEP_PER_PUT; i++) {
      const first = map.entries().next();
      if (first.done || now - first.value[1].at < this.cacheMs) return;
      map.delete(first.value[0]);
    }
  }

  /** Entries held: `known` pairs and `unknown`-user answers (tests, diagnostics). */
  size(): { known: number; unknown: number } {
    return { known: this.cache.size, unknown: this.unknown.size };
  }

  /** True when `follower` satisfies FOLLOW_POLICY towards `target` given their relation. */
  followOk(rel: PairRelation): boolean {
    switch (this.followPolicy) {
      case 'none':
        return true;
      case 'either':
        return rel.aFollowsB || rel.bFollowsA;
      default:
        return rel.aFollowsB;
    }
  }

  /**
   * The DM / start_conversation rule: recipient exists (else NOT_FOUND), no block either
   * way (USER_BLOCKED, checked first), then the follow policy (NOT_FOLLOWING).
   */
  async assertCanMessage(sender: string, recipient: string): Promise<void> {
    const rel = await this.pair(sender, recipient);
    if (!rel.bExists) throw notFound('User', 'recipientId');
    if (rel.blocked) throw new ChatError('USER_BLOCKED', 'You cannot message this user');
    if (!this.followOk(rel)) throw new ChatError('NOT_FOLLOWING', 'You must follow this user to message them');
  }

  /** True when a block exists either way between a and b (cached). Throws SERVICE_UNAVAILABLE on lookup failure. */
  async isBlocked(a: string, b: string): Promise<boolean> {
    return (await this.pair(a, b)).blocked;
  }

  /** Drop cached entries (tests; after local changes). */
  clear(): void {
    this.cache.clear();
    this.unknown.clear();
  }
}

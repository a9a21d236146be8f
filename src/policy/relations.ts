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
 */
import { ChatError, notFound } from '../protocol/errors.ts';
import type { PairRelation, RelationStore } from '../store/relations.ts';

/** FOLLOW_POLICY values: who must follow whom for a DM. */
export type FollowPolicy = 'sender_follows' | 'either' | 'none';

const MAX_ENTRIES = 200_000;
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

/** Relationship checks with a TTL cache keyed by ordered pair, renewed ahead of expiry while in use. */
export class RelationPolicy {
  private readonly cache = new Map<string, Entry>();

  constructor(
    private readonly store: RelationStore,
    private readonly followPolicy: FollowPolicy,
    private readonly cacheMs: number,
  ) {}

  /**
   * The relation of (a, b): from the cache when its entry is younger than RELATION_CACHE_MS
   * (renewing it in the background past its refresh point), else one lookup. Throws
   * ChatError SERVICE_UNAVAILABLE when that lookup fails.
   */
  async pair(a: string, b: string): Promise<PairRelation> {
    const key = a + ':' + b;
    const now = Date.now();
    if (this.cacheMs > 0) {
      const hit = this.cache.get(key);
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
        if (this.cache.get(key) === entry) this.put(key, at, rel);
        else entry.refreshing = false;
      },
      () => {
        entry.refreshing = false;
      },
    );
  }

  private put(key: string, at: number, rel: PairRelation): void {
    if (this.cacheMs <= 0) return;
    if (this.cache.size >= MAX_ENTRIES && !this.cache.has(key)) this.cache.clear();
    const frac = REFRESH_AFTER_MIN + Math.random() * (REFRESH_AFTER_MAX - REFRESH_AFTER_MIN);
    this.cache.set(key, { at, rel, refreshAfterMs: Math.floor(this.cacheMs * frac), refreshing: false });
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
  }
}

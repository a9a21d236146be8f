/**
 * Block and follow rules (PROTOCOL §5), over the backend's tables with a short cache:
 * a change is seen within `RELATION_CACHE_MS` (0 = no cache). Any lookup error refuses
 * the action with SERVICE_UNAVAILABLE (fail closed).
 */
import { ChatError, notFound } from '../protocol/errors.ts';
import type { PairRelation, RelationStore } from '../store/relations.ts';

/** FOLLOW_POLICY values: who must follow whom for a DM. */
export type FollowPolicy = 'sender_follows' | 'either' | 'none';

const MAX_ENTRIES = 200_000;

/** Relationship checks with a TTL cache keyed by ordered pair. */
export class RelationPolicy {
  private readonly cache = new Map<string, { at: number; rel: PairRelation }>();

  constructor(
    private readonly store: RelationStore,
    private readonly followPolicy: FollowPolicy,
    private readonly cacheMs: number,
  ) {}

  /** The relation of (a, b), cached. Throws ChatError SERVICE_UNAVAILABLE when the lookup fails. */
  async pair(a: string, b: string): Promise<PairRelation> {
    const key = a + ':' + b;
    const now = Date.now();
    if (this.cacheMs > 0) {
      const hit = this.cache.get(key);
      if (hit && now - hit.at < this.cacheMs) return hit.rel;
    }
    let rel: PairRelation;
    try {
      rel = await this.store.pair(a, b);
    } catch {
      throw new ChatError('SERVICE_UNAVAILABLE', 'Relationship check unavailable; nothing was changed');
    }
    if (this.cacheMs > 0) {
      if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
      this.cache.set(key, { at: now, rel });
    }
    return rel;
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

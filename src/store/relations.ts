/**
 * Reads of the backend's relationship tables (`user_follows`, `blocked_relationships`).
 * Read-only.
 */
import type { Queryable } from './db.ts';

/** Relationship of an ordered pair (a, b). */
export interface PairRelation {
  /** A block exists in either direction. */
  blocked: boolean;
  aFollowsB: boolean;
  bFollowsA: boolean;
  /** b exists in users_auth. */
  bExists: boolean;
}

/** Follow and block lookups. */
export class RelationStore {
  constructor(private readonly db: Queryable) {}

  /** Everything the DM rules need about (a, b), in one round trip. Throws on database errors. */
  async pair(a: string, b: string): Promise<PairRelation> {
    const { rows } = await this.db.query<{ blocked: boolean; ab: boolean; ba: boolean; b_exists: boolean }>(
      `SELECT
         EXISTS (SELECT 1 FROM blocked_relationships WHERE (blocker_id = $1::bigint AND blocked_id = $2::bigint) OR (blocker_id = $2::bigint AND blocked_id = $1::bigint)) AS blocked,
         EXISTS (SELECT 1 FROM user_follows WHERE follower_id = $1::bigint AND followee_id = $2::bigint) AS ab,
         EXISTS (SELECT 1 FROM user_follows WHERE follower_id = $2::bigint AND followee_id = $1::bigint) AS ba,
         EXISTS (SELECT 1 FROM users_auth WHERE user_id = $2::bigint) AS b_exists`,
      [a, b],
    );
    const r = rows[0]!;
    return { blocked: r.blocked, aFollowsB: r.ab, bFollowsA: r.ba, bExists: r.b_exists };
  }

  /**
   * {@link pair} for many b at once (group creation): one query. Resolves a map b → relation
   * (every b present; `bExists` false for unknown users).
   */
  async pairsMany(a: string, others: readonly string[]): Promise<Map<string, PairRelation>> {
    const out = new Map<string, PairRelation>();
    if (others.length === 0) return out;
    const { rows } = await this.db.query<{ b: string; blocked: boolean; ab: boolean; ba: boolean; b_exists: boolean }>(
      `SELECT o.b::text AS b,
         EXISTS (SELECT 1 FROM blocked_relationships WHERE (blocker_id = $1::bigint AND blocked_id = o.b) OR (blocker_id = o.b AND blocked_id = $1::bigint)) AS blocked,
         EXISTS (SELECT 1 FROM user_follows WHERE follower_id = $1::bigint AND followee_id = o.b) AS ab,
         EXISTS (SELECT 1 FROM user_follows WHERE follower_id = o.b AND followee_id = $1::bigint) AS ba,
         EXISTS (SELECT 1 FROM users_auth WHERE user_id = o.b) AS b_exists
       FROM unnest($2::bigint[]) AS o(b)`,
      [a, others],
    );
    for (const r of rows) out.set(r.b, { blocked: r.blocked, aFollowsB: r.ab, bFollowsA: r.ba, bExists: r.b_exists });
    return out;
  }

  /** Of `others`, those with a block in either direction with `userId`. */
  async blockedAmong(userId: string, others: readonly string[]): Promise<Set<string>> {
    if (others.length === 0) return new Set();
    const { rows } = await this.db.query<{ id: string }>(
      `SELECT blocked_id::text AS id FROM blocked_relationships WHERE blocker_id = $1::bigint AND blocked_id = ANY($2::bigint[])
       UNION SELECT blocker_id::text FROM blocked_relationships WHERE blocked_id = $1::bigint AND blocker_id = ANY($2::bigint[])`,
      [userId, others],
    );
    return new Set(rows.map((r) => r.id));
  }

  /** Everyone with a block in either direction with `userId`. */
  async blockedWith(userId: string): Promise<Set<string>> {
    const { rows } = await this.db.query<{ id: string }>(
      `SELECT blocked_id::text AS id FROM blocked_relationships WHERE blocker_id = $1::bigint
       UNION SELECT blocker_id::text FROM blocked_relationships WHERE blocked_id = $1::bigint`,
      [userId],
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * The presence contacts of `userId` in one query (PROTOCOL §8): users they follow or who
   * follow them, plus members of active groups they share, minus anyone in a block
   * relation with them, minus themselves.
   */
  async contacts(userId: string): Promise<Set<string>> {
    const { rows } = await this.db.query<{ id: string }>(
      `WITH c AS (
         SELECT followee_id::text AS id FROM user_follows WHERE follower_id = $1::text::bigint
         UNION SELECT follower_id::text FROM user_follows WHERE followee_id = $1::text::bigint
         UNION SELECT o.user_id FROM group_members me
           JOIN group_chats g ON g.group_id = me.group_id AND g.is_active
           JOIN group_members o ON o.group_id = me.group_id
           WHERE me.user_id = $1::text),
       b AS (
         SELECT blocked_id::text AS id FROM blocked_relationships WHERE blocker_id = $1::text::bigint
         UNION SELECT blocker_id::text FROM blocked_relationships WHERE blocked_id = $1::text::bigint)
       SELECT c.id FROM c WHERE c.id <> $1::text AND NOT EXISTS (SELECT 1 FROM b WHERE b.id = c.id)`,
      [userId],
    );
    return new Set(rows.map((r) => r.id));
  }
}

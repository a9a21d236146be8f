/**
 * Reads of the backend's relationship tables (`user_follows`, `blocked_relationships`).
 * Read-only.
 */
import { Coalescer, type CoalesceOptions } from './coalesce.ts';
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
  private readonly contactsBatch: Coalescer<string, Set<string>> | undefined;

  /** @param batchContacts coalesce concurrent {@link contacts} lookups into one query (PostgreSQL) */
  constructor(
    private readonly db: Queryable,
    batchContacts?: CoalesceOptions,
  ) {
    this.contactsBatch = batchContacts ? new Coalescer((ids) => this.contactsMany(ids), batchContacts) : undefined;
  }

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
   * The presence contacts of `userId` (PROTOCOL §8): users they follow or who follow
   * them, plus members of active groups they share, minus anyone in a block relation with
   * them, minus themselves. Concurrent calls share one query ({@link contactsMany}) on
   * PostgreSQL. Throws on database errors.
   */
  contacts(userId: string): Promise<Set<string>> {
    return this.contactsBatch ? this.contactsBatch.add(userId) : this.contactsMany([userId]).then((r) => r[0]!);
  }

  /**
   * Of `others`, those that are presence contacts of `userId` ({@link contacts}: a follow
   * either way or a shared active group, no block either way, not `userId`), tested per
   * id with index probes: the cost grows with the number of ids (and their memberships),
   * never with the sizes of `userId`'s groups (audit 6 F7). Ids are matched as text, as
   * {@link contacts} does: a non-canonical id ("007") is never a contact. Throws on
   * database errors.
   */
  async contactsAmong(userId: string, others: readonly string[]): Promise<Set<string>> {
    if (others.length === 0) return new Set();
    const { rows } = await this.db.query<{ id: string }>(
      `WITH o AS (
         SELECT v, b FROM (
           SELECT v, CASE WHEN v ~ '^[0-9]{1,18}$' THEN v::bigint END AS b
           FROM (SELECT DISTINCT v FROM unnest($2::text[]) AS t(v)) d) x
         WHERE b IS NOT NULL AND b::text = v AND v <> $1::text)
       SELECT o.v AS id FROM o
       WHERE (EXISTS (SELECT 1 FROM user_follows f WHERE f.follower_id = $1::bigint AND f.followee_id = o.b)
           OR EXISTS (SELECT 1 FROM user_follows f WHERE f.follower_id = o.b AND f.followee_id = $1::bigint)
           OR EXISTS (SELECT 1 FROM group_members theirs
                        JOIN group_members mine ON mine.group_id = theirs.group_id AND mine.user_id = $1::text
                        JOIN group_chats g ON g.group_id = theirs.group_id AND g.is_active
                      WHERE theirs.user_id = o.v))
         AND NOT EXISTS (SELECT 1 FROM blocked_relationships br
                         WHERE (br.blocker_id = $1::bigint AND br.blocked_id = o.b) OR (br.blocker_id = o.b AND br.blocked_id = $1::bigint))`,
      [userId, others],
      { prepare: true },
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * {@link contacts} of several users in one query: one set per input id, in input order
   * (a repeated id gets the same set). Throws on database errors.
   */
  async contactsMany(userIds: readonly string[]): Promise<Set<string>[]> {
    const { rows } = await this.db.query<{ u: string; id: string }>(
      `WITH me AS (SELECT DISTINCT u FROM unnest($1::text[]) AS t(u)),
       c AS (
         SELECT me.u, f.followee_id::text AS id FROM me JOIN user_follows f ON f.follower_id = me.u::bigint
         UNION SELECT me.u, f.follower_id::text FROM me JOIN user_follows f ON f.followee_id = me.u::bigint
         UNION SELECT me.u, o.user_id FROM me
           JOIN group_members mine ON mine.user_id = me.u
           JOIN group_chats g ON g.group_id = mine.group_id AND g.is_active
           JOIN group_members o ON o.group_id = mine.group_id),
       b AS (
         SELECT me.u, br.blocked_id::text AS id FROM me JOIN blocked_relationships br ON br.blocker_id = me.u::bigint
         UNION SELECT me.u, br.blocker_id::text FROM me JOIN blocked_relationships br ON br.blocked_id = me.u::bigint)
       SELECT c.u, c.id FROM c WHERE c.id <> c.u AND NOT EXISTS (SELECT 1 FROM b WHERE b.u = c.u AND b.id = c.id)`,
      [userIds],
      { prepare: true },
    );
    const byUser = new Map<string, Set<string>>();
    for (const id of userIds) if (!byUser.has(id)) byUser.set(id, new Set());
    for (const r of rows) byUser.get(r.u)?.add(r.id);
    return userIds.map((id) => byUser.get(id)!);
  }
}

/**
 * Reads of the auth backend's user tables (`users_auth`, `user_profile_info`,
 * `jwt_revocation`). Read-only: this service never writes them.
 */
import { Coalescer, type CoalesceOptions } from './coalesce.ts';
import type { Queryable } from './db.ts';

/** A user as the chat service shows them. `displayName` = "first last", else the username. */
export interface UserInfo {
  id: string;
  username: string;
  email: string | null;
  firstName: string | null;
  lastName: string | null;
  displayName: string;
}

function toUser(r: Record<string, unknown>): UserInfo {
  const first = (r.first_name as string | null) ?? null;
  const last = (r.last_name as string | null) ?? null;
  const full = [first, last].filter((x) => x && x.trim()).join(' ').trim();
  return {
    id: String(r.user_id),
    username: r.username as string,
    email: (r.email as string | null) ?? null,
    firstName: first,
    lastName: last,
    displayName: full || (r.username as string),
  };
}

const USER_COLUMNS = 'u.user_id::text AS user_id, u.username, u.email, p.first_name, p.last_name';

/** Outcome of an authentication lookup. */
export interface AuthLookup {
  user: UserInfo | null;
  revoked: boolean;
  /** Snapshot xmin (xid8 text) at the lookup: the sync cursor position "now". */
  xmin: string;
}

/** User lookups. */
export class UserStore {
  private readonly authBatch: Coalescer<{ userId: string; jti: string | null }, AuthLookup> | undefined;

  /** @param batchAuth coalesce concurrent authentication lookups into one query (PostgreSQL) */
  constructor(
    private readonly db: Queryable,
    batchAuth?: CoalesceOptions,
  ) {
    this.authBatch = batchAuth ? new Coalescer((items) => this.forAuthMany(items), batchAuth) : undefined;
  }

  /**
   * For authentication: the user (or null), whether `jti` is revoked, and the snapshot
   * xmin; concurrent calls share one query. Throws on database errors (the caller
   * refuses: fail closed).
   */
  forAuth(userId: string, jti: string | null): Promise<AuthLookup> {
    return this.authBatch ? this.authBatch.add({ userId, jti }) : this.forAuthMany([{ userId, jti }]).then((r) => r[0]!);
  }

  /** {@link forAuth} for many (user, jti) pairs in one query; results in input order. */
  async forAuthMany(items: readonly { userId: string; jti: string | null }[]): Promise<AuthLookup[]> {
    const { rows } = await this.db.query(
      `SELECT r.i, pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
         (r.jti IS NOT NULL AND EXISTS (SELECT 1 FROM jwt_revocation WHERE jti = r.jti)) AS revoked, ${USER_COLUMNS}
       FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS r(uid, jti, i)
       LEFT JOIN users_auth u ON u.user_id = r.uid LEFT JOIN user_profile_info p ON p.user_id = u.user_id
       ORDER BY r.i`,
      [items.map((x) => x.userId), items.map((x) => x.jti)],
      { prepare: true },
    );
    return rows.map((r) => ({ revoked: r.revoked === true, xmin: String(r.xmin), user: r.user_id == null ? null : toUser(r) }));
  }

  /** Users by id (unknown ids are absent from the map). */
  async byIds(ids: readonly string[]): Promise<Map<string, UserInfo>> {
    const out = new Map<string, UserInfo>();
    if (ids.length === 0) return out;
    const { rows } = await this.db.query(
      `SELECT ${USER_COLUMNS} FROM users_auth u LEFT JOIN user_profile_info p ON p.user_id = u.user_id WHERE u.user_id = ANY($1::bigint[])`,
      [ids],
    );
    for (const r of rows) {
      const u = toUser(r);
      out.set(u.id, u);
    }
    return out;
  }

  /**
   * Session re-check in one query: of the given sessions, those whose jti is revoked or
   * whose user no longer exists. Resolves their indexes in `sessions`.
   */
  async invalidSessions(sessions: readonly { userId: string; jti: string | null }[]): Promise<number[]> {
    if (sessions.length === 0) return [];
    const { rows } = await this.db.query<{ i: number }>(
      `SELECT s.i FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS s(uid, jti, i)
       WHERE NOT EXISTS (SELECT 1 FROM users_auth u WHERE u.user_id = s.uid)
          OR (s.jti IS NOT NULL AND EXISTS (SELECT 1 FROM jwt_revocation r WHERE r.jti = s.jti))`,
      [sessions.map((s) => s.userId), sessions.map((s) => s.jti)],
      { prepare: true },
    );
    return rows.map((r) => Number(r.i) - 1);
  }
}

/**
 * Reads of the auth backend's user tables (`users_auth`, `user_profile_info`,
 * `jwt_revocation`). Read-only: this service never writes them.
 */
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

/** User lookups. */
export class UserStore {
  constructor(private readonly db: Queryable) {}

  /**
   * One round trip for authentication: the user (or null), whether `jti` is revoked, and
   * the snapshot xmin (the sync cursor position "now", see chat/cursor.ts).
   * Throws on database errors (the caller refuses: fail closed).
   */
  async forAuth(userId: string, jti: string | null): Promise<{ user: UserInfo | null; revoked: boolean; xmin: string }> {
    const { rows } = await this.db.query(
      `SELECT (SELECT EXISTS (SELECT 1 FROM jwt_revocation WHERE jti = $2)) AS revoked, pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, ${USER_COLUMNS}
       FROM (SELECT 1) one LEFT JOIN users_auth u ON u.user_id = $1::bigint LEFT JOIN user_profile_info p ON p.user_id = u.user_id`,
      [userId, jti],
    );
    const r = rows[0]!;
    return { revoked: r.revoked === true, xmin: String(r.xmin), user: r.user_id == null ? null : toUser(r) };
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
    );
    return rows.map((r) => Number(r.i) - 1);
  }
}

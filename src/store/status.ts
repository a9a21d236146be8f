/** `user_status`: persisted presence (last seen) (PROTOCOL §8). */
import type { Queryable } from './db.ts';

/** Presence persistence. */
export class StatusStore {
  constructor(private readonly db: Queryable) {}

  /** Record a user as online or offline now (offline also sets last_seen). Resolves last_seen. */
  async set(userId: string, online: boolean): Promise<Date | null> {
    const { rows } = await this.db.query<{ last_seen: Date | null }>(
      `INSERT INTO user_status (user_id, is_online, last_seen, updated_at) VALUES ($1, $2, CASE WHEN $2 THEN NULL ELSE now() END, now())
       ON CONFLICT (user_id) DO UPDATE SET is_online = $2, last_seen = CASE WHEN $2 THEN user_status.last_seen ELSE now() END, updated_at = now()
       RETURNING last_seen`,
      [userId, online],
    );
    return rows[0]?.last_seen ?? null;
  }

  /** last_seen per user id (absent when never seen). */
  async lastSeen(ids: readonly string[]): Promise<Map<string, Date | null>> {
    const out = new Map<string, Date | null>();
    if (ids.length === 0) return out;
    const { rows } = await this.db.query<{ user_id: string; last_seen: Date | null }>('SELECT user_id, last_seen FROM user_status WHERE user_id = ANY($1::text[])', [ids]);
    for (const r of rows) out.set(r.user_id, r.last_seen);
    return out;
  }
}

/** `user_status`: persisted presence (last seen) (PROTOCOL §8). */
import { Coalescer, type CoalesceOptions } from './coalesce.ts';
import type { Queryable } from './db.ts';

/** Presence persistence; concurrent writes share one statement. */
/** One status write: `seenAtMs` (epoch ms) is the last-seen time of an offline write; absent: now. */
export interface StatusItem {
  userId: string;
  online: boolean;
  seenAtMs?: number;
}

export class StatusStore {
  private readonly batch: Coalescer<StatusItem, Date | null>;

  /** @param batch coalescing of concurrent writes (1 in flight when omitted: PGlite) */
  constructor(
    private readonly db: Queryable,
    batch: CoalesceOptions = { maxInFlight: 1, maxBatch: 500 },
  ) {
    this.batch = new Coalescer((items) => this.setMany(items), batch);
  }

  /**
   * Record a user as online or offline (PROTOCOL §8). Offline also sets last_seen: to
   * `seenAt` (the last close) when given, else now. Resolves last_seen.
   */
  set(userId: string, online: boolean, seenAt?: Date): Promise<Date | null> {
    return this.batch.add({ userId, online, seenAtMs: seenAt?.getTime() });
  }

  /**
   * {@link set} for many; a user named twice gets the later state (one row can be updated
   * once per statement). Resolves last_seen per item, in order.
   */
  async setMany(items: readonly StatusItem[]): Promise<(Date | null)[]> {
    const last = new Map<string, StatusItem>();
    for (const it of items) last.set(it.userId, it);
    const states = [...last.values()];
    const { rows } = await this.db.query<{ user_id: string; last_seen: Date | null }>(
      `INSERT INTO user_status (user_id, is_online, last_seen, updated_at)
       SELECT u, o, CASE WHEN o THEN NULL ELSE COALESCE(to_timestamp(a / 1000.0), now()) END, now()
       FROM unnest($1::text[], $2::bool[], $3::float8[]) AS t(u, o, a)
       ON CONFLICT (user_id) DO UPDATE SET is_online = EXCLUDED.is_online,
         last_seen = CASE WHEN EXCLUDED.is_online THEN user_status.last_seen ELSE EXCLUDED.last_seen END, updated_at = now()
       RETURNING user_id, last_seen`,
      [states.map((i) => i.userId), states.map((i) => i.online), states.map((i) => i.seenAtMs ?? null)],
      { prepare: true },
    );
    const byUser = new Map(rows.map((r) => [r.user_id, r.last_seen]));
    return items.map((it) => byUser.get(it.userId) ?? null);
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

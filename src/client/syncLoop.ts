/**
 * Paging `sync` (PROTOCOL §9) from the held cursor until `hasMore` is false, on one
 * connection: the loop ({@link runSync}) and its scheduling ({@link SyncRounds}) shared by
 * the client's catch-up after each authentication and its background resync while
 * `ready` (./client.ts), and the rule for which server frames make a background resync
 * worth running ({@link UNSYNCED_FRAMES}).
 */
import type { SyncPage } from './options.ts';
import type { ServerFrames } from './types.ts';

/**
 * Server frame types that never mean the sync stream (§9: messages created, edited,
 * deleted or reacted to, group membership) changed, so they do not call for a background
 * resync: heartbeats (`pong`, `test_response`, §3 item 8), typing (`typing_indicator`,
 * `typing_indicator_sent`), presence (`user_online`, `user_offline`, the `presence` and
 * `online_users` replies, §8), `token_expiring` (§3 item 6), and delivery state
 * (`message_status`, and `message_delivered_ack`, the reply to the client's own receipts:
 * counting it would make every round that reports a DM call for another round). Every
 * other event or reply, replies to the client's own sends included, counts.
 */
export const UNSYNCED_FRAMES: ReadonlySet<string> = new Set([
  'pong',
  'test_response',
  'typing_indicator',
  'typing_indicator_sent',
  'user_online',
  'user_offline',
  'presence',
  'online_users',
  'token_expiring',
  'message_status',
  'message_delivered_ack',
]);

/**
 * How a run of {@link runSync} ended:
 * - `done`: the last page (`hasMore` false) was applied;
 * - `lost`: the connection closed or was replaced first; nothing more was applied;
 * - `refused`: a page was answered with `frame` instead of a `sync_result` (`code` is its
 *   error code: `SYNC_EXPIRED`, `RATE_LIMITED`, `SERVICE_UNAVAILABLE`, …, or `PROTOCOL`
 *   for a reply of another type), and the run stopped there; earlier pages stay applied.
 */
export type SyncOutcome = { kind: 'done' } | { kind: 'lost' } | { kind: 'refused'; code: string; frame: Record<string, unknown> };

/** What {@link runSync} needs from the client, for one connection. */
export interface SyncLoopHost {
  /**
   * Send `sync {cursor, limit}` on the run's connection.
   * @param cursor the held cursor (null: from now)
   * @returns its reply frame, or null when the connection closed first
   */
  page(cursor: string | null): Promise<Record<string, unknown> | null>;
  /** @returns true while the run's connection is still the client's current one */
  current(): boolean;
  /** @returns the held cursor, read before each page */
  cursor(): string | null;
  /**
   * Apply one page (only called while {@link current}): advance the cursor to
   * `page.cursor`, note its DMs for delivery receipts, hand it to the `onSync` listeners.
   */
  apply(page: SyncPage): void;
  /**
   * A page was refused `RATE_LIMITED` (the user's READ_RATE_LIMIT, §4). Absent: the run
   * stops (`refused`).
   * @param retryAfterS the error's `retryAfter`, seconds (1 when absent)
   * @returns true to ask for the same page again (after waiting), false to stop
   */
  rateLimited?(retryAfterS: number): Promise<boolean>;
}

/**
 * Page `sync` from the held cursor until `hasMore` is false (§9), applying each page.
 * Never throws; at most one page is in flight.
 * @param host the client's side of the run (see {@link SyncLoopHost})
 * @returns how the run ended (see {@link SyncOutcome})
 */
export async function runSync(host: SyncLoopHost): Promise<SyncOutcome> {
  for (;;) {
    const page = await host.page(host.cursor());
    if (!page || !host.current()) return { kind: 'lost' };
    if (page.type === 'error') {
      const code = String(page.code);
      if (code === 'RATE_LIMITED' && host.rateLimited) {
        const again = await host.rateLimited(Number(page.retryAfter ?? 1));
        if (!host.current()) return { kind: 'lost' };
        if (again) continue;
      }
      return { kind: 'refused', code, frame: page };
    }
    if (page.type !== 'sync_result') return { kind: 'refused', code: 'PROTOCOL', frame: page };
    host.apply(page as ServerFrames['sync_result']);
    if (!page.hasMore) return { kind: 'done' };
  }
}

/** What {@link SyncRounds} needs from the client; `C` is its connection type. */
export interface SyncClient<C> {
  /** Send `sync {cursor, limit}` on `conn`; resolves its reply, or null when `conn` closed first. */
  page(conn: C, cursor: string | null): Promise<Record<string, unknown> | null>;
  /** @returns true while `conn` is the client's current connection */
  current(conn: C): boolean;
  /** @returns true while the client is `ready` (background rounds run only then) */
  ready(): boolean;
  /** A page was applied (the cursor already advanced): note its DMs for receipts, hand it to `onSync`. */
  onPage(page: SyncPage): void;
  /** The held cursor expired (`SYNC_EXPIRED`, §9): the `error` frame, for the `error` event. */
  onExpired(frame: Record<string, unknown>): void;
}

/**
 * The client's sync cursor and its sync rounds: one at a time, catch-up or background.
 * Background rounds run every `intervalMs` while `ready`, and only when the connection
 * had stream traffic ({@link saw}) since the last round; a page can never move the cursor
 * once its connection is no longer current.
 */
export class SyncRounds<C> {
  /** The held cursor (null: none yet; the first authentication's is taken). */
  cursor: string | null;
  private authCursor = '';
  private dirty = false;
  /** The connection a round runs on, while one runs. */
  private runningOn: C | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;

  /**
   * @param cursor the resume cursor the application saved, or null
   * @param intervalMs background period, ms (0 or less: no background rounds)
   * @param client the client's side (see {@link SyncClient})
   */
  constructor(
    cursor: string | null,
    private readonly intervalMs: number,
    private readonly client: SyncClient<C>,
  ) {
    this.cursor = cursor;
  }

  /**
   * A connection authenticated (§3 item 4): the traffic mark is cleared (the catch-up
   * covers everything so far); without a held cursor, this authentication's is taken.
   * @param authCursor `auth_success.cursor`
   * @returns true when a catch-up ({@link catchUp}) is needed
   */
  connected(authCursor: string): boolean {
    this.authCursor = authCursor;
    this.dirty = false;
    if (this.cursor !== null) return true;
    this.cursor = authCursor;
    return false;
  }

  /**
   * A server frame that is no connection-internal reply arrived: unless its type is in
   * {@link UNSYNCED_FRAMES}, the next background period runs a round.
   * @param type the frame's `type`
   */
  saw(type: string): void {
    if (!UNSYNCED_FRAMES.has(type)) this.dirty = true;
  }

  /**
   * The catch-up of a new connection, before it is `ready`.
   * @param conn the connection
   * @param rateLimited waits out a `RATE_LIMITED` page (see {@link SyncLoopHost})
   * @returns `ready` when the last page was applied, or the cursor had expired
   *   (`SYNC_EXPIRED`, see {@link expire}); `lost` when the connection closed first;
   *   `refused` when a page was refused otherwise (`SERVICE_UNAVAILABLE`, …: the caller
   *   drops the connection and tries a new one)
   */
  async catchUp(conn: C, rateLimited: (retryAfterS: number) => Promise<boolean>): Promise<'ready' | 'lost' | 'refused'> {
    const end = await this.round(conn, rateLimited);
    if (end.kind !== 'refused') return end.kind === 'done' ? 'ready' : 'lost';
    if (end.code !== 'SYNC_EXPIRED') return 'refused';
    this.expire(end.frame);
    return 'ready';
  }

  /** Run background rounds on `conn` every `intervalMs` (the timer does not keep Node alive). */
  start(conn: C): void {
    this.stop();
    if (this.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.background(conn), this.intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Stop the background rounds (the connection ended); a running round ends by itself. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * A background round: when `ready`, on the current connection, with no round running and
   * the traffic mark set. A refusal (`RATE_LIMITED`, `SERVICE_UNAVAILABLE`, …) ends it
   * without waiting and keeps the mark for the next period.
   */
  private async background(conn: C): Promise<void> {
    if (!this.dirty || this.runningOn !== undefined || !this.client.ready() || !this.client.current(conn)) return;
    this.dirty = false;
    const end = await this.round(conn);
    if (end.kind !== 'refused' || !this.client.current(conn)) return;
    if (end.code === 'SYNC_EXPIRED') this.expire(end.frame);
    else this.dirty = true;
  }

  /** One run of {@link runSync} on `conn`, marked as running. */
  private async round(conn: C, rateLimited?: SyncLoopHost['rateLimited']): Promise<SyncOutcome> {
    this.runningOn = conn;
    try {
      return await runSync({
        page: (cursor) => this.client.page(conn, cursor),
        current: () => this.client.current(conn),
        cursor: () => this.cursor,
        apply: (page) => {
          this.cursor = String(page.cursor);
          this.client.onPage(page);
        },
        ...(rateLimited ? { rateLimited } : {}),
      });
    } finally {
      if (this.runningOn === conn) this.runningOn = undefined;
    }
  }

  /**
   * `SYNC_EXPIRED` (the held cursor is past SYNC_RETENTION_DAYS, §9): the cursor becomes
   * the current connection's authentication cursor, since everything after it arrives
   * live, and the client emits the `error` event (the application reloads its state).
   */
  private expire(frame: Record<string, unknown>): void {
    this.cursor = this.authCursor;
    this.client.onExpired(frame);
  }
}

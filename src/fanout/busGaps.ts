/**
 * Live deliveries the Redis bus lost, and how their recipients recover (docs/scaling.md
 * "Redis failure"). Redis pub/sub keeps nothing for a subscriber that is not connected,
 * and a publish that fails is not retried (at-most-once, DESIGN "Cross-process
 * delivery"). A client recovers with `sync` when it reconnects (PROTOCOL §9: "A client
 * that reconnects with the last cursor it saw misses nothing"), but a connection that
 * stayed open across the gap would not reconnect, and its user would not see the lost
 * events until some later reconnect. So such connections are closed 4503, whose rule for
 * clients is "reconnect and sync" (PROTOCOL §2.3), each at a random time within
 * BUS_GAP_RESYNC_MS so that their reconnects spread out.
 *
 * An instance learns of a gap two ways:
 * - its subscriber connection came back (`ready` again): anything published meanwhile to
 *   the users it holds is lost, so all of them are closed;
 * - publishes of its own failed (Redis down, or stalled and dropped by the stall watch):
 *   the recipients on other instances missed them. Their ids are kept (at most
 *   {@link MAX_MISSED_USERS}) and, once Redis takes commands again, one close-only
 *   delivery addressed to them goes to the other instances (never to this one, whose own
 *   connections got the events directly).
 */
import type { Logger } from '../observability/logger.ts';
import { CloseCode } from '../protocol/errors.ts';
import type { Delivery } from './bus.ts';

/** Most recipient ids one instance keeps for one outage; the rest are counted and logged. */
export const MAX_MISSED_USERS = 100_000;

/** Recipients per close-only delivery sent after an outage. */
export const GAP_NOTICE_CHUNK = 1000;

/** How often a pending notice checks whether Redis takes commands again, ms. */
export const GAP_NOTICE_RETRY_MS = 250;

/**
 * Least spread per user told, ms: the closes of n users are spread over at least n ms, so
 * an instance's clients come back at about 1,000 users a second at most, whatever
 * BUS_GAP_RESYNC_MS says (each reconnect verifies a JWT and looks up two tables).
 */
export const GAP_SPREAD_PER_USER_MS = 1;

/** The spread for closing `users` users: BUS_GAP_RESYNC_MS, or longer for many users (ms). */
export function gapSpread(configuredMs: number, users: number): number {
  return Math.max(configuredMs, users * GAP_SPREAD_PER_USER_MS);
}

/** The close reason of a bus-gap close (told apart from slow consumers' 4503 in /metrics). */
export const GAP_CLOSE_REASON = 'Missed live events; reconnect and sync';

/** The close told to connections that may have missed live events (PROTOCOL §2.3 4503). */
export function gapClose(spreadMs: number): NonNullable<Delivery['close']> {
  return { code: CloseCode.SLOW_CONSUMER, reason: GAP_CLOSE_REASON, spreadMs };
}

/** Recipients whose remote deliveries failed, until they are told. */
export class MissedUsers {
  private ids = new Set<string>();
  /** Ids not kept because {@link MAX_MISSED_USERS} were already kept (since the last {@link take}). */
  dropped = 0;

  /** Number of ids kept. */
  get size(): number {
    return this.ids.size;
  }

  /** Keep `userIds` (decimal strings): recipients of a publish that failed. */
  add(userIds: Iterable<string>): void {
    for (const u of userIds) {
      if (this.ids.size < MAX_MISSED_USERS || this.ids.has(u)) this.ids.add(u);
      else this.dropped++;
    }
  }

  /**
   * The kept ids in chunks of ≤ {@link GAP_NOTICE_CHUNK}, and forget them.
   * @returns the chunks and how many ids were dropped over the cap
   */
  take(): { chunks: string[][]; dropped: number } {
    const all = [...this.ids];
    const dropped = this.dropped;
    this.ids = new Set();
    this.dropped = 0;
    const chunks: string[][] = [];
    for (let i = 0; i < all.length; i += GAP_NOTICE_CHUNK) chunks.push(all.slice(i, i + GAP_NOTICE_CHUNK));
    return { chunks, dropped };
  }
}

/**
 * The recipients of one failed publish batch (the argument list of RedisBus's
 * PUBLISH_MANY: prefix, origin, then entries `c channel message` or `r n user₁…userₙ
 * message`).
 * @param args the batch's arguments
 * @param userChannelPrefix `<prefix>u:`: a per-user channel is this plus the user id
 * @returns the user ids it addressed (in order; may repeat)
 */
export function batchRecipients(args: readonly string[], userChannelPrefix: string): string[] {
  const out: string[] = [];
  for (let i = 2; i < args.length; ) {
    if (args[i] === 'c') {
      const ch = args[i + 1]!;
      if (ch.startsWith(userChannelPrefix)) out.push(ch.slice(userChannelPrefix.length));
      i += 3;
    } else {
      const n = Number(args[i + 1]);
      for (let k = 0; k < n; k++) out.push(args[i + 2 + k]!);
      i += 3 + n;
    }
  }
  return out;
}

/** What {@link BusGaps} needs of the bus. */
export interface GapHooks {
  /** Whether the command connection takes commands (a publish would go out). */
  publishReady(): boolean;
  /** Publish `d` to the other instances only (never to this process's connections). */
  publishRemote(d: Delivery): void;
  /** Deliver `d` to this process's connections only. */
  deliverLocal(d: Delivery): void;
  logger: Logger;
}

/**
 * The gap handling of one RedisBus (see the module doc): recipients of failed publishes
 * are told once Redis takes commands again; the users held here are told when the
 * subscriber connection comes back. Disabled (nothing kept, nobody closed) with
 * `spreadMs` 0 (BUS_GAP_RESYNC_MS=0).
 */
export class BusGaps {
  private readonly missed = new MissedUsers();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** Close-only deliveries sent to other instances, and local gap closes, so far (tests). */
  notices = 0;

  /**
   * @param spreadMs BUS_GAP_RESYNC_MS: each connection told is closed at a random time
   *   (over at least {@link GAP_SPREAD_PER_USER_MS} per user told)
   *   within this many ms; 0 disables gap handling
   * @param hooks the bus's publish and delivery paths
   */
  constructor(
    private readonly spreadMs: number,
    private readonly hooks: GapHooks,
  ) {}

  /**
   * A publish to `userIds` failed (or was skipped: Redis unavailable): keep them and tell
   * them, through the other instances, once Redis takes commands again.
   */
  failed(userIds: Iterable<string>): void {
    if (this.spreadMs <= 0 || this.stopped) return;
    this.missed.add(userIds);
    this.schedule();
  }

  /**
   * The subscriber connection is back (after reconnecting and resubscribing): what was
   * published meanwhile to `held` (the users with connections here) is lost; close their
   * connections 4503.
   */
  subscriberBack(held: Iterable<string>): void {
    if (this.spreadMs <= 0) return;
    const userIds = [...held];
    if (userIds.length === 0) return;
    this.notices++;
    const spreadMs = gapSpread(this.spreadMs, userIds.length);
    this.hooks.logger.warn('redis subscriber reconnected: live events for the connections here may be lost; closing them 4503 (reconnect and sync)', { users: userIds.length, spreadMs });
    this.hooks.deliverLocal({ userIds, frame: '', close: gapClose(spreadMs) });
  }

  /** Stop the pending notice timer and keep nothing more (the bus stops). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => this.notify(), GAP_NOTICE_RETRY_MS);
    this.timer.unref?.();
  }

  /** Send the notices once Redis takes commands; a notice that fails is kept again by {@link failed}. */
  private notify(): void {
    this.timer = undefined;
    if (this.missed.size === 0) return;
    if (!this.hooks.publishReady()) return this.schedule();
    const { chunks, dropped } = this.missed.take();
    const users = chunks.reduce((n, c) => n + c.length, 0);
    const spreadMs = gapSpread(this.spreadMs, users);
    for (const userIds of chunks) {
      this.notices++;
      this.hooks.publishRemote({ userIds, frame: '', close: gapClose(spreadMs) });
    }
    this.hooks.logger.warn('redis is back: told the other instances which users missed live deliveries of this one (their connections close 4503: reconnect and sync)', { users, dropped });
  }
}

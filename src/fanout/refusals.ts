/**
 * Why the Redis bus refused a message it received, and the accounting of refusals (DESIGN
 * "Cross-process delivery": the bus never carries plaintext that the database holds
 * encrypted unless configured to; docs/scaling.md "Sealed frames on Redis"). Each refusal
 * is counted by reason (RedisBus `refusedByReason`, `/metrics` `chat_bus_refused_total`
 * through the bus's `onRefused` hook) and logged at most every {@link REFUSAL_LOG_MS} with
 * the counts by reason since the last line: counts only, never a message's header or body.
 */
import type { Logger } from '../observability/logger.ts';

/**
 * Every reason, in the order they are logged and exported:
 * - `malformed`: not a wire message (no header line, header not JSON, no origin, a sealed
 *   header without its key id, salt, recipients or seal time);
 * - `unauthenticated`: sealed, but does not open with any configured key (forged, altered,
 *   another key, or this instance has no keys);
 * - `plaintext`: plaintext while plaintext is refused (BUS_ENCRYPTION=true; an instance
 *   still on BUS_ENCRYPTION=false or an older build, or someone PUBLISHing without the key);
 * - `stale`: opened, but sealed more than SEALED_MAX_AGE_MS before or after it arrived
 *   (clocks apart, or an old capture replayed);
 * - `replayed`: opened, but its counter is below the last one seen from its origin;
 * - `redirected`: opened, but found on the channel of a user its header does not name.
 */
export const BUS_REFUSALS = ['malformed', 'unauthenticated', 'plaintext', 'stale', 'replayed', 'redirected'] as const;

/** One of {@link BUS_REFUSALS}: why a received bus message was not delivered. */
export type BusRefusal = (typeof BUS_REFUSALS)[number];

/** The refusals ./wire.ts decodeWire finds in a message alone (the others need the receiver's state). */
export type WireRefusal = Exclude<BusRefusal, 'replayed' | 'redirected'>;

/** Shortest interval between two refusal log lines, ms. */
export const REFUSAL_LOG_MS = 30_000;

/** A count per reason, all zero. */
function zeros(): Record<BusRefusal, number> {
  return { malformed: 0, unauthenticated: 0, plaintext: 0, stale: 0, replayed: 0, redirected: 0 };
}

/** Counts of refused bus messages by reason, with a throttled warning log. */
export class RefusalCounter {
  /** Refusals since start, by reason. */
  readonly byReason: Readonly<Record<BusRefusal, number>> = zeros();
  private total = 0;
  private sinceLog = zeros();
  private countSinceLog = 0;
  private lastLog = 0;

  /**
   * @param logger where the throttled warning goes
   * @param onRefused called once per refusal with its reason (the metrics counter); must not throw
   */
  constructor(
    private readonly logger: Logger,
    private readonly onRefused?: (reason: BusRefusal) => void,
  ) {}

  /** Refusals since start, all reasons. */
  get count(): number {
    return this.total;
  }

  /**
   * Count one refusal of `reason`, report it to the hook, and log (when the last line is
   * more than {@link REFUSAL_LOG_MS} old) the refusals since that line: total and the
   * non-zero counts by reason.
   * @param now epoch ms
   */
  note(reason: BusRefusal, now = Date.now()): void {
    this.total++;
    (this.byReason as Record<BusRefusal, number>)[reason]++;
    this.sinceLog[reason]++;
    this.countSinceLog++;
    this.onRefused?.(reason);
    if (now - this.lastLog < REFUSAL_LOG_MS) return;
    this.lastLog = now;
    const fields: Record<string, number> = { refused: this.countSinceLog };
    for (const r of BUS_REFUSALS) if (this.sinceLog[r]) fields[r] = this.sinceLog[r];
    this.logger.warn(
      'redis bus: messages refused (malformed, not opened with a configured key, plaintext, stale, replayed or redirected); check BUS_ENCRYPTION, CHAT_ENCRYPTION_KEYS and clocks on every instance, and who can PUBLISH to Redis',
      fields,
    );
    this.sinceLog = zeros();
    this.countSinceLog = 0;
  }
}

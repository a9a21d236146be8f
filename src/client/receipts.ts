/**
 * Delivery receipts of one client (PROTOCOL §9 `message_delivered`): the ids of the DMs
 * that reached the device, sent in batches so a burst of messages costs one frame. DMs
 * received live are remembered for the connection, so a sync page that repeats them does
 * not report them again.
 */

/** Longest a receipt waits for others to join its batch, ms. */
const BATCH_MS = 100;
/** Most ids in one `message_delivered` (the server accepts up to 100). */
const MAX_IDS = 100;
/** Most DM ids remembered as received live; past it the oldest is forgotten (a second report of it is harmless). */
const MAX_LIVE = 10_000;

/** Collects received DM ids and reports them in batches. */
export class ReceiptBatcher {
  private ids: string[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** No batch goes out before this time (ms since the epoch): a refusal's retryAfter. */
  private holdUntil = 0;
  /** DMs received live on the current connection and not yet seen in a sync page, oldest first. */
  private readonly liveIds = new Set<string>();

  /**
   * @param send sends one `message_delivered` with up to {@link MAX_IDS} message ids;
   *   resolves the `retryAfter` (s) of a `RATE_LIMITED` refusal (the user's
   *   RECEIPT_RATE_LIMIT is spent: those ids are sent again after it, with any new ones),
   *   else undefined (sent, or failed otherwise: dropped, a receipt is best effort)
   */
  constructor(private readonly send: (messageIds: string[]) => Promise<number | undefined>) {}

  /**
   * Note a message that reached this device; reported within {@link BATCH_MS}, or after the
   * `retryAfter` of a refused batch.
   * @param m the message (`M` of §6, or a sync entry)
   * @param me the device's user id: only DMs addressed to it are reported
   */
  add(m: { id?: unknown; recipientId?: unknown } | undefined, me: string | undefined): void {
    if (typeof m?.id !== 'string' || me === undefined || m.recipientId !== me) return;
    this.ids.push(m.id);
    this.schedule(BATCH_MS);
  }

  /**
   * A DM received live (`new_private_message`): reported as by {@link add}, and remembered
   * (up to {@link MAX_LIVE} ids) until a sync page repeats it.
   * @param m the message (`M` of §6)
   * @param me the device's user id
   */
  live(m: { id?: unknown; recipientId?: unknown } | undefined, me: string | undefined): void {
    if (typeof m?.id !== 'string' || me === undefined || m.recipientId !== me) return;
    if (this.liveIds.size >= MAX_LIVE) this.liveIds.delete(this.liveIds.values().next().value!);
    this.liveIds.add(m.id);
    this.add(m, me);
  }

  /**
   * A message in a sync page (§9): reported as by {@link add}, unless it was received live
   * on this connection (already reported; it is forgotten then).
   * @param m a sync entry (`M`, `G` or a tombstone)
   * @param me the device's user id
   */
  synced(m: { id?: unknown; recipientId?: unknown } | undefined, me: string | undefined): void {
    if (typeof m?.id === 'string' && this.liveIds.delete(m.id)) return;
    this.add(m, me);
  }

  /** The connection ended: forget the DMs received live on it (the next catch-up reports what it brings). */
  forgetLive(): void {
    this.liveIds.clear();
  }

  /** Flush after `ms`, and not before a refusal's `retryAfter` has passed. */
  private schedule(ms: number): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => this.flush(), Math.max(ms, this.holdUntil - Date.now()));
  }

  private flush(): void {
    this.timer = undefined;
    const ids = this.ids.splice(0);
    for (let i = 0; i < ids.length; i += MAX_IDS) {
      const batch = ids.slice(i, i + MAX_IDS);
      void this.send(batch).then((retryAfter) => {
        if (retryAfter === undefined) return;
        this.ids.unshift(...batch);
        this.holdUntil = Date.now() + retryAfter * 1000;
        clearTimeout(this.timer);
        this.timer = undefined;
        this.schedule(0);
      });
    }
  }
}

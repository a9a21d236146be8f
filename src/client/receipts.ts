/**
 * Delivery receipts of one client (PROTOCOL §9 `message_delivered`): the ids of the DMs
 * that reached the device, sent in batches so a burst of messages costs one frame.
 */

/** Longest a receipt waits for others to join its batch, ms. */
const BATCH_MS = 100;
/** Most ids in one `message_delivered` (the server accepts up to 100). */
const MAX_IDS = 100;

/** Collects received DM ids and reports them in batches. */
export class ReceiptBatcher {
  private ids: string[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** No batch goes out before this time (ms since the epoch): a refusal's retryAfter. */
  private holdUntil = 0;

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

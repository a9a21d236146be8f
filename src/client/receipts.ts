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

  /**
   * @param send sends one `message_delivered` with up to {@link MAX_IDS} message ids;
   *   its failures are the caller's to ignore
   */
  constructor(private readonly send: (messageIds: string[]) => void) {}

  /**
   * Note a message that reached this device; reported within {@link BATCH_MS}.
   * @param m the message (`M` of §6, or a sync entry)
   * @param me the device's user id: only DMs addressed to it are reported
   */
  add(m: { id?: unknown; recipientId?: unknown } | undefined, me: string | undefined): void {
    if (typeof m?.id !== 'string' || me === undefined || m.recipientId !== me) return;
    this.ids.push(m.id);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      const ids = this.ids.splice(0);
      for (let i = 0; i < ids.length; i += MAX_IDS) this.send(ids.slice(i, i + MAX_IDS));
    }, BATCH_MS);
  }
}

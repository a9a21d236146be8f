/**
 * Many per-connection deadlines on one timer (PROTOCOL §3 items 5 and 6: the
 * authentication deadline, `token_expiring`, the close at `exp`). A Node `Timeout` and its
 * closure cost about 160 bytes of heap each; three per connection were ~5% of an idle
 * connection's memory. Here an entry is one slot in a Set of its time bucket.
 *
 * Semantics: an entry fires at the first tick at or after its due time: never early, and
 * at most `resolutionMs` (plus event-loop delay) late. The timer runs only while entries
 * are pending, and never keeps the process alive (unref).
 */

/** A set of deadlines for items of type `T`, each item at most once. */
export class DeadlineWheel<T> {
  private readonly buckets = new Map<number, Set<T>>();
  /** item → its bucket number (to cancel and reschedule). */
  private readonly bucketOf = new Map<T, number>();
  private timer: NodeJS.Timeout | undefined;
  /** Bucket numbers count from here (small integers stay unboxed). */
  private readonly origin: number;
  /** Last bucket number processed. */
  private done = 0;

  /**
   * @param resolutionMs bucket width, ms (> 0): the most an entry fires late
   * @param fire called once per due entry (after it was removed); exceptions are the caller's bug and are not caught
   * @param now clock, epoch ms (tests)
   */
  constructor(
    private readonly resolutionMs: number,
    private readonly fire: (item: T) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.origin = Math.floor(this.now() / resolutionMs);
  }

  /** Fire `item` at `atMs` (epoch ms), replacing any deadline it already has. A past time fires at the next tick. */
  set(item: T, atMs: number): void {
    this.clear(item);
    // The bucket whose end is at or after atMs: never early.
    const b = Math.max(Math.ceil(atMs / this.resolutionMs) - this.origin, this.done + 1);
    let set = this.buckets.get(b);
    if (!set) this.buckets.set(b, (set = new Set()));
    set.add(item);
    this.bucketOf.set(item, b);
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.resolutionMs);
      this.timer.unref();
    }
  }

  /** Cancel `item`'s deadline (no-op when it has none). */
  clear(item: T): void {
    const b = this.bucketOf.get(item);
    if (b === undefined) return;
    this.bucketOf.delete(item);
    const set = this.buckets.get(b);
    if (set && set.delete(item) && set.size === 0) this.buckets.delete(b);
  }

  /** Pending deadlines. */
  size(): number {
    return this.bucketOf.size;
  }

  /** Stop the timer and forget every deadline. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.buckets.clear();
    this.bucketOf.clear();
  }

  /** Fire every bucket that ended by now. */
  tick(): void {
    const current = Math.floor(this.now() / this.resolutionMs) - this.origin;
    if (current <= this.done) return;
    const due: number[] = [];
    if (current - this.done <= this.buckets.size) {
      for (let b = this.done + 1; b <= current; b++) if (this.buckets.has(b)) due.push(b);
    } else {
      for (const b of this.buckets.keys()) if (b <= current) due.push(b);
      due.sort((x, y) => x - y);
    }
    this.done = current;
    for (const b of due) {
      const set = this.buckets.get(b)!;
      this.buckets.delete(b);
      for (const item of set) {
        this.bucketOf.delete(item);
        this.fire(item);
      }
    }
    if (this.bucketOf.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

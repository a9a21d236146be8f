/**
 * Coalescing of concurrent requests into batches: requests made in the same event-loop
 * turn (e.g. the frames of every socket read in one poll phase), and those that arrive
 * while earlier batches are in flight, are run together by one call of `run` (one
 * statement, one round trip). A lone request waits only for the end of the current turn
 * (`setImmediate`, microseconds), never for a timer.
 */

/** Tuning: batches in flight at once, and items per batch. */
export interface CoalesceOptions {
  maxInFlight: number;
  maxBatch: number;
}

/**
 * Runs batches of `I` through `run`, which resolves one outcome per item in the same
 * order: a value, or an Error for that item alone. A rejection of `run` rejects the whole
 * batch.
 */
export class Coalescer<I, O> {
  private queue: { item: I; resolve(o: O): void; reject(err: unknown): void }[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly run: (items: I[]) => Promise<(O | Error)[]>,
    private readonly opts: CoalesceOptions,
  ) {}

  /** Queue `item`; resolves its outcome once its batch ran. */
  add(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.pump();
      });
    });
  }

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch);
      this.inFlight++;
      this.run(batch.map((b) => b.item))
        .then(
          (outs) => batch.forEach((b, i) => (outs[i] instanceof Error ? b.reject(outs[i]) : b.resolve(outs[i] as O))),
          (err) => batch.forEach((b) => b.reject(err)),
        )
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }
}

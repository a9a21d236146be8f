/**
 * Coalescing of concurrent requests into batches: requests made in the same event-loop
 * turn (e.g. the frames of every socket read in one poll phase), and those that arrive
 * while earlier batches are in flight, are run together by one call of `run` (one
 * statement, one round trip). A lone request waits only for the end of the current turn
 * (`setImmediate`, microseconds), never for a timer.
 *
 * Under load, `minIntervalMs` spaces batch starts: a batch starts at most that long after
 * the previous one, so requests arriving in between share it (bigger batches, fewer
 * statements: each costs a round trip and the database's parse/execute overhead). A
 * request that finds the last batch older than the interval still runs at once.
 */

/** Tuning: batches in flight at once, items per batch, least time between batch starts (ms). */
export interface CoalesceOptions {
  maxInFlight: number;
  maxBatch: number;
  /** Least time between the starts of two batches, ms (default 0: as soon as a slot is free). */
  minIntervalMs?: number;
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
  /** performance.now() of the last batch start. */
  private lastStart = -Infinity;
  /** Batches started so far (tests). */
  batches = 0;

  constructor(
    private readonly run: (items: I[]) => Promise<(O | Error)[]>,
    private readonly opts: CoalesceOptions,
  ) {}

  /** Queue `item`; resolves its outcome once its batch ran. */
  add(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.inFlight >= this.opts.maxInFlight) return;
    this.scheduled = true;
    const wait = this.lastStart + (this.opts.minIntervalMs ?? 0) - performance.now();
    const go = () => {
      this.scheduled = false;
      this.pump();
    };
    if (wait > 0) setTimeout(go, wait);
    else setImmediate(go);
  }

  private pump(): void {
    if (this.inFlight >= this.opts.maxInFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    this.inFlight++;
    this.batches++;
    this.lastStart = performance.now();
    this.run(batch.map((b) => b.item))
      .then(
        (outs) => batch.forEach((b, i) => (outs[i] instanceof Error ? b.reject(outs[i]) : b.resolve(outs[i] as O))),
        (err) => batch.forEach((b) => b.reject(err)),
      )
      .finally(() => {
        this.inFlight--;
        this.schedule();
      });
    // More queued than one batch takes: the next one starts after the interval.
    this.schedule();
  }
}

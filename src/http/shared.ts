/**
 * One answer for many requests: the probes behind `/ready`, `/health` and `/metrics` cost a
 * database query or a registry render each (about 0.75 ms of event loop per `/metrics`), and
 * these endpoints take anonymous traffic (audit 7, F2 and F6).
 */

/**
 * Wrap `fn` so that callers while a call is in flight share it, and callers within `ttlMs`
 * after it resolved get its value without a call. A rejection is shared by the callers of
 * that call but not kept: the next caller calls again.
 * @param fn the probe (a database ping, a metrics render)
 * @param ttlMs how long a resolved value is reused, ms (0: only in-flight calls are shared)
 * @param now clock, ms (tests pass their own)
 * @returns the shared probe
 */
export function sharedResult<T>(fn: () => Promise<T>, ttlMs: number, now: () => number = () => performance.now()): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  let last: { value: T; at: number } | undefined;
  return () => {
    if (last && now() - last.at < ttlMs) return Promise.resolve(last.value);
    if (!inFlight) {
      inFlight = fn().then(
        (value) => {
          last = { value, at: now() };
          inFlight = undefined;
          return value;
        },
        (err: unknown) => {
          inFlight = undefined;
          throw err;
        },
      );
    }
    return inFlight;
  };
}

/**
 * Deployment-wide rate limits (PROTOCOL §1 connection rate, §4 per-user budgets):
 * Redis windows with local leases across hosts (redisRateLimits in ./leasedLimits.ts,
 * loaded only with Redis), RateLimiterCluster (counted by the primary) on one host.
 * Both fall back to this process's in-memory limits when the shared store fails, so a
 * Redis outage or a silent primary degrades to per-process limits instead of refusing or
 * allowing everything; the fallback is logged (at most every 30 s) and Redis health is
 * visible in /health.
 */
import { RateLimiterCluster, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Logger } from '../observability/logger.ts';
import { limiterPerKind, memoryRateLimits, type LimitKind, type LimitSpec, type RateLimits } from '../policy/rateLimits.ts';

/**
 * `shared` limits, falling back to `local` ones for any call where `shared` rejects.
 * `degraded()` true means `shared` cannot reach its store (Redis not ready): only
 * logged. Never rejects.
 */
export function withFallback(shared: RateLimits, local: RateLimits, logger: Logger, degraded: () => boolean = () => false): RateLimits {
  let lastLog = 0;
  const note = (err: unknown) => {
    const now = Date.now();
    if (now - lastLog < 30_000) return;
    lastLog = now;
    logger.warn('shared rate limits unavailable: using per-process limits', { err: err instanceof Error ? err.message : String(err ?? 'store not ready') });
  };
  return {
    async consume(kind, key) {
      if (degraded()) note(undefined);
      try {
        return await shared.consume(kind, key);
      } catch (err) {
        note(err);
        return local.consume(kind, key);
      }
    },
  };
}

/**
 * Limits counted by the cluster primary (RateLimiterClusterMaster), per-process when it
 * does not answer within 1 s. A key the primary refused is remembered by this worker until
 * its window ends ({@link rememberingRefusals}): a client that keeps sending past its
 * budget (typing, sends, connects) costs the primary one round trip per window, not one
 * per frame (audit 3: a typing flood from 200 connections held the primary at a third of
 * a core and slowed every worker's commands).
 */
export function clusterRateLimits(spec: LimitSpec, logger: Logger): RateLimits {
  const shared = rememberingRefusals(spec, (kind, points, duration) => new RateLimiterCluster({ keyPrefix: `chat:${kind}`, points, duration, timeoutMs: 1000 }));
  return withFallback(shared, memoryRateLimits(spec), logger);
}

/** Remembered refusals are swept this often, ms. */
const REFUSAL_SWEEP_MS = 10_000;

/**
 * Fixed-window limits (one `make` limiter per kind) that answer a key refused once
 * locally until its window ends: in a fixed window nothing is granted again before then,
 * so the answers are the same, with the exact `retryAfter` (PROTOCOL §4). Remembered keys
 * are swept every {@link REFUSAL_SWEEP_MS} (an unref'd timer).
 * @param spec points and window per kind
 * @param make the shared limiter of one kind
 * @returns limits that reject like `make`'s limiters do (a store error rejects; the caller falls back)
 */
export function rememberingRefusals(spec: LimitSpec, make: (kind: LimitKind, points: number, durationS: number) => RateLimiterAbstract): RateLimits {
  const limiters = limiterPerKind(spec, make);
  /** `kind key` → end of its exhausted window (epoch ms). */
  const refusedUntil = new Map<string, number>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [k, until] of refusedUntil) if (until <= now) refusedUntil.delete(k);
  }, REFUSAL_SWEEP_MS);
  sweep.unref();
  return {
    async consume(kind, key) {
      const k = `${kind} ${key}`;
      const until = refusedUntil.get(k);
      const now = Date.now();
      if (until !== undefined) {
        if (until > now) return Math.max(1, Math.ceil((until - now) / 1000));
        refusedUntil.delete(k);
      }
      try {
        await limiters[kind].consume(key);
        return null;
      } catch (res) {
        if (!(res instanceof RateLimiterRes)) throw res;
        refusedUntil.set(k, Date.now() + res.msBeforeNext);
        return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
      }
    },
  };
}

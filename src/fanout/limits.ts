/**
 * Deployment-wide rate limits (PROTOCOL §1 connection rate, §4 per-user budgets):
 * Redis windows with local leases across hosts (redisRateLimits in ./leasedLimits.ts,
 * loaded only with Redis), RateLimiterCluster (counted by the primary) on one host.
 * Both fall back to this process's in-memory limits when the shared store fails, so a
 * Redis outage or a silent primary degrades to per-process limits instead of refusing or
 * allowing everything; the fallback is logged (at most every 30 s) and Redis health is
 * visible in /health.
 */
import { RateLimiterCluster } from 'rate-limiter-flexible';
import type { Logger } from '../observability/logger.ts';
import { limitersFrom, memoryRateLimits, type LimitSpec, type RateLimits } from '../policy/rateLimits.ts';

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

/** Limits counted by the cluster primary (RateLimiterClusterMaster), per-process when it does not answer within 1 s. */
export function clusterRateLimits(spec: LimitSpec, logger: Logger): RateLimits {
  const shared = limitersFrom(spec, (kind, points, duration) => new RateLimiterCluster({ keyPrefix: `chat:${kind}`, points, duration, timeoutMs: 1000 }));
  return withFallback(shared, memoryRateLimits(spec), logger);
}

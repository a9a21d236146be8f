/**
 * Deployment-wide rate limits on Redis with local leases (PROTOCOL §1 connection rate,
 * §4 per-user budgets "across all devices and processes").
 *
 * Each budget is a fixed window in Redis under `<prefix>rl:<kind>:<key>` holding the
 * points taken in the window (the key layout and counter of rate-limiter-flexible's
 * RateLimiterRedis, so a rolling deploy next to older instances shares one count).
 * Instead of one Redis round trip per consume, an instance takes a *lease*: one atomic
 * script grants it `g` points at once, `g = clamp(floor(remaining / LEASE_DIVISOR), 1,
 * MAX_LEASE)`, and the next `g - 1` consumes of that key on this instance are answered
 * locally. Guarantees:
 *
 * - never more than `points` per window across the deployment: every point used was
 *   granted by Redis against the shared count, and a lease is dropped (never carried
 *   into the next window) at the window's end as seen from before the request was sent;
 * - with a budget under `2 × LEASE_DIVISOR` (the defaults: 30 sends, 20 typing frames
 *   per window) every lease is 1 point, so the limit is exact, as before;
 * - with larger budgets a key used on several instances at once may be refused early by
 *   at most the points other instances hold unused, each lease being at most 1/16 of
 *   what remained; leased points left unused expire with the window.
 *
 * A window found exhausted is remembered until it ends (no further round trips for that
 * key). Errors (Redis down, not ready, stalled) reject, and {@link withFallback} in
 * ./limits.ts answers from per-process limits instead.
 */
import type { Logger } from '../observability/logger.ts';
import { memoryRateLimits, type LimitKind, type LimitSpec, type RateLimits } from '../policy/rateLimits.ts';
import { withFallback } from './limits.ts';
import { LuaScript, type Redis } from './redisClient.ts';

/** A lease is at most 1/LEASE_DIVISOR of the points remaining in the window. */
export const LEASE_DIVISOR = 16;
/** Largest lease, points. */
export const MAX_LEASE = 1024;
/** Local lease states are swept this often, ms. */
const SWEEP_MS = 10_000;

/**
 * KEYS window key; ARGV window seconds, points, divisor, max lease → {granted, pttl ms}.
 * Starts the window when absent (SET NX EX, as RateLimiterRedis), grants nothing when
 * the window is exhausted.
 */
const LEASE = new LuaScript(`
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
local used = tonumber(redis.call('GET', KEYS[1]))
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = 1000 * tonumber(ARGV[1]) end
local remaining = tonumber(ARGV[2]) - used
if remaining <= 0 then return {0, ttl} end
local grant = math.floor(remaining / tonumber(ARGV[3]))
if grant < 1 then grant = 1 end
if grant > tonumber(ARGV[4]) then grant = tonumber(ARGV[4]) end
redis.call('INCRBY', KEYS[1], grant)
return {grant, ttl}`);

/** Local state of one window key. */
interface Lease {
  /** Granted points not yet used here. */
  left: number;
  /** End of the window (epoch ms, conservative: request send time + PTTL). */
  until: number;
  /** True when Redis reported the window exhausted. */
  exhausted: boolean;
  /** The lease request in flight, if any. */
  pending?: Promise<void>;
}

/** Counters of a {@link LeasedRedisLimits}, for tests and logs. */
export interface LeaseStats {
  /** Consumes answered (allowed or refused). */
  consumes: number;
  /** Lease scripts sent to Redis. */
  leaseRequests: number;
}

/** {@link RateLimits} over Redis fixed windows with local leases (see the module doc). */
export class LeasedRedisLimits implements RateLimits {
  readonly stats: LeaseStats = { consumes: 0, leaseRequests: 0 };
  private readonly leases = new Map<string, Lease>();
  private readonly timer: NodeJS.Timeout;
  /** Per budget: the key prefix `<prefix>rl:<kind>:` and the script's arguments, built once. */
  private readonly kinds: Record<LimitKind, { keyPrefix: string; args: string[] }>;

  /**
   * @param client the command connection (no offline queue: rejects at once while down)
   * @param spec points and window (ms, whole seconds used) of each budget
   * @param prefix REDIS_KEY_PREFIX
   * @param now clock, epoch ms (tests)
   */
  constructor(
    private readonly client: Redis,
    spec: LimitSpec,
    prefix: string,
    private readonly now: () => number = Date.now,
  ) {
    this.kinds = {} as Record<LimitKind, { keyPrefix: string; args: string[] }>;
    for (const kind of Object.keys(spec) as LimitKind[]) {
      const { points, windowMs } = spec[kind];
      const windowS = Math.max(1, Math.floor(windowMs / 1000));
      this.kinds[kind] = { keyPrefix: `${prefix}rl:${kind}:`, args: [String(windowS), String(points), String(LEASE_DIVISOR), String(MAX_LEASE)] };
    }
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  /**
   * Take one point of `kind` for `key`: null when allowed, else the seconds (≥ 1) until
   * the window ends. Rejects when Redis cannot be asked (not ready, error, stall).
   */
  async consume(kind: LimitKind, key: string): Promise<number | null> {
    const k = this.kinds[kind].keyPrefix + key;
    for (;;) {
      const now = this.now();
      let lease = this.leases.get(k);
      if (lease && now >= lease.until && !lease.pending) {
        this.leases.delete(k);
        lease = undefined;
      }
      if (lease && now < lease.until) {
        if (lease.left > 0) {
          lease.left--;
          this.stats.consumes++;
          return null;
        }
        if (lease.exhausted) {
          this.stats.consumes++;
          return Math.max(1, Math.ceil((lease.until - now) / 1000));
        }
      }
      if (lease?.pending) {
        await lease.pending;
        continue;
      }
      await this.request(k, kind);
    }
  }

  /** Stop the sweep timer. */
  close(): void {
    clearInterval(this.timer);
  }

  /** Ask Redis for a lease on `k`; concurrent consumes of `k` wait for this one request. */
  private request(k: string, kind: LimitKind): Promise<void> {
    if (!this.client.isReady) return Promise.reject(new Error('Redis connection is not ready'));
    const sentAt = this.now();
    const lease: Lease = this.leases.get(k) ?? { left: 0, until: 0, exhausted: false };
    this.leases.set(k, lease);
    this.stats.leaseRequests++;
    const p = LEASE.run(this.client, [k], this.kinds[kind].args).then(
      (reply) => {
        const [granted, ttl] = reply as [number, number];
        lease.pending = undefined;
        // A grant always belongs to the window Redis holds now; older leftovers are dropped.
        lease.until = sentAt + Number(ttl);
        lease.left = Number(granted);
        lease.exhausted = lease.left === 0;
      },
      (err: unknown) => {
        lease.pending = undefined;
        if (lease.left === 0 && !lease.exhausted) this.leases.delete(k);
        throw err;
      },
    );
    lease.pending = p;
    return p;
  }

  /** Drop states whose window ended. */
  private sweep(): void {
    const now = this.now();
    for (const [k, lease] of this.leases) if (now >= lease.until && !lease.pending) this.leases.delete(k);
  }
}

/**
 * Limits in Redis under `<prefix>rl:<kind>:<key>` (fixed windows leased to this instance
 * a few points at a time, {@link LeasedRedisLimits}), falling back to per-process limits
 * while Redis cannot be asked. Never rejects.
 */
export function redisRateLimits(spec: LimitSpec, client: Redis, prefix: string, logger: Logger): RateLimits {
  return withFallback(new LeasedRedisLimits(client, spec, prefix), memoryRateLimits(spec), logger, () => !client.isReady);
}

/**
 * Rate limits (PROTOCOL §1, §4) behind one interface, so the scale-out work can put them
 * on Redis or the cluster primary: `consume(kind, key)` resolves null (allowed) or the
 * seconds to wait. Implemented with rate-limiter-flexible.
 */
import { RateLimiterMemory, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

/**
 * Budgets: sends, edit/delete/react actions, typing frames, new connections per IP
 * (PROTOCOL §1, §4); reads and read/delivery receipts (docs/PROTOCOL-NOTES.md: §4 is
 * silent on them, and each costs the database a query or an update).
 */
export type LimitKind = 'message' | 'action' | 'typing' | 'connect' | 'read' | 'receipt';

/** Points per window (ms) of each budget. */
export type LimitSpec = Record<LimitKind, { points: number; windowMs: number }>;

/** A rate-limit store. */
export interface RateLimits {
  /**
   * Take one point of `kind` for `key` (a user id or an IP). Resolves null when allowed,
   * else `retryAfter` in whole seconds (≥ 1). Never rejects: a failing backing store
   * falls back to a per-process limit.
   */
  consume(kind: LimitKind, key: string): Promise<number | null>;
}

/**
 * `limits` with every refusal also reported to `onHit(kind)` (the metrics'
 * chat_rate_limit_hits_total): same results, same errors.
 */
export function countingHits(limits: RateLimits, onHit: (kind: LimitKind) => void): RateLimits {
  // One continuation per kind, made on first use: no closure per call (one per send).
  const after = new Map<LimitKind, (wait: number | null) => number | null>();
  const continuation = (kind: LimitKind) => {
    let f = after.get(kind);
    if (!f) {
      f = (wait) => {
        if (wait !== null) onHit(kind);
        return wait;
      };
      after.set(kind, f);
    }
    return f;
  };
  return { consume: (kind, key) => limits.consume(kind, key).then(continuation(kind)) };
}

/**
 * One limiter per kind of `spec`, built by `make` with the kind's points and window (s).
 * @returns the limiters by kind
 */
export function limiterPerKind(spec: LimitSpec, make: (kind: LimitKind, points: number, durationS: number) => RateLimiterAbstract): Record<LimitKind, RateLimiterAbstract> {
  const limiters = {} as Record<LimitKind, RateLimiterAbstract>;
  for (const kind of Object.keys(spec) as LimitKind[]) limiters[kind] = make(kind, spec[kind].points, spec[kind].windowMs / 1000);
  return limiters;
}

/** Build the limiters of `spec` with `make` (memory, cluster or Redis store). */
export function limitersFrom(spec: LimitSpec, make: (kind: LimitKind, points: number, durationS: number) => RateLimiterAbstract): RateLimits {
  const limiters = limiterPerKind(spec, make);
  return {
    async consume(kind, key) {
      try {
        await limiters[kind].consume(key);
        return null;
      } catch (res) {
        if (res instanceof RateLimiterRes) return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
        throw res;
      }
    },
  };
}

/** Per-process limits (one process, or the fallback while Redis is down). */
export function memoryRateLimits(spec: LimitSpec): RateLimits {
  return limitersFrom(spec, (kind, points, duration) => new RateLimiterMemory({ keyPrefix: kind, points, duration }));
}

/** The {@link LimitSpec} of a Config. */
export function limitSpec(cfg: {
  messageRateLimit: number;
  messageRateWindowMs: number;
  actionRateLimit: number;
  readRateLimit: number;
  receiptRateLimit: number;
  typingRateLimit: number;
  typingRateWindowMs: number;
  connectionRatePerIp: number;
}): LimitSpec {
  return {
    message: { points: cfg.messageRateLimit, windowMs: cfg.messageRateWindowMs },
    action: { points: cfg.actionRateLimit, windowMs: cfg.messageRateWindowMs },
    read: { points: cfg.readRateLimit, windowMs: cfg.messageRateWindowMs },
    receipt: { points: cfg.receiptRateLimit, windowMs: cfg.messageRateWindowMs },
    typing: { points: cfg.typingRateLimit, windowMs: cfg.typingRateWindowMs },
    connect: { points: cfg.connectionRatePerIp, windowMs: 60_000 },
  };
}

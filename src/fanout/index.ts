/**
 * Chooses the deployment-wide parts from Config (DESIGN "Cross-process delivery"): the
 * Bus, Presence, rate-limit store and per-IP connection counter. One process: local
 * implementations. (Cluster and Redis variants: scale-out issue.)
 */
import type { Config } from '../config.ts';
import { LocalIpCounter, type IpConnectionCounter } from '../gateway/admission.ts';
import type { Logger } from '../observability/logger.ts';
import { limitSpec, memoryRateLimits, type RateLimits } from '../policy/rateLimits.ts';
import { LocalPresence, type Presence } from '../presence/presence.ts';
import { LocalBus, type Bus } from './bus.ts';

/** The parts that make per-user rules hold across processes. */
export interface Distribution {
  bus: Bus;
  presence: Presence;
  limits: RateLimits;
  ipCounter: IpConnectionCounter;
  /** Redis health for /ready and /health: undefined when Redis is not configured. */
  redisHealthy(): boolean | undefined;
  /** Release connections (after the bus stopped). */
  stop(): Promise<void>;
}

/** Build the distribution parts for `cfg`. */
export async function createDistribution(cfg: Config, _logger: Logger): Promise<Distribution> {
  return {
    bus: new LocalBus(),
    presence: new LocalPresence(),
    limits: memoryRateLimits(limitSpec(cfg)),
    ipCounter: new LocalIpCounter(),
    redisHealthy: () => undefined,
    stop: async () => {},
  };
}

/**
 * Chooses the deployment-wide parts from Config (DESIGN "Cross-process delivery"): the
 * Bus, Presence, rate-limit store and per-IP connection counter, all on one backend.
 * BUS=auto → `redis` when REDIS_URL is set, `cluster` when running as a node:cluster
 * worker (cluster-server.ts), else `local`.
 */
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import client from 'prom-client';
import type { Config } from '../config.ts';
import { BusSeal } from '../crypto/busSeal.ts';
import type { BodyCipher } from '../crypto/cipher.ts';
import { LocalIpCounter, type IpConnectionCounter } from '../gateway/admission.ts';
import type { Logger } from '../observability/logger.ts';
import { limitSpec, memoryRateLimits, type RateLimits } from '../policy/rateLimits.ts';
import { ClusterIpCounter, ClusterPresence } from '../presence/clusterPresence.ts';
import { LocalPresence, type Presence } from '../presence/presence.ts';
import { LocalBus, type Bus } from './bus.ts';
import { ClusterBus } from './clusterBus.ts';
import { CH, isMsg, sendToPrimary, WorkerRpc, type MetricFamily, type MetricsReq, type MetricsRes } from './clusterIpc.ts';
import { clusterRateLimits } from './limits.ts';
import type { BusRefusal } from './refusals.ts';

/** The parts that make per-user rules hold across processes. */
export interface Distribution {
  bus: Bus;
  presence: Presence;
  limits: RateLimits;
  ipCounter: IpConnectionCounter;
  /** Redis health for /ready and /health: undefined when Redis is not configured. */
  redisHealthy(): boolean | undefined;
  /**
   * Under the cluster server: given this worker's metrics registry, a function resolving the
   * Prometheus text aggregated over all workers by the primary (src/fanout/clusterPrimary.ts).
   */
  aggregateMetrics?(registry: client.Registry): () => Promise<string>;
  /** Release connections (after the bus stopped). */
  stop(): Promise<void>;
}

/** Callbacks from the distribution parts into the metrics (all optional). */
export interface DistributionObserver {
  /** A message received from Redis was refused, for `reason` (RedisBusOptions.onRefused). */
  busRefused?(reason: BusRefusal): void;
}

/** The backend a Config resolves to. */
export type DistributionKind = 'local' | 'cluster' | 'redis';

/** BUS=auto → redis with REDIS_URL, cluster under a node:cluster primary, else local; explicit values win. */
export function distributionKind(cfg: Pick<Config, 'bus' | 'redisUrl'>, isWorker = cluster.isWorker): DistributionKind {
  if (cfg.bus === 'auto') return cfg.redisUrl ? 'redis' : isWorker ? 'cluster' : 'local';
  return cfg.bus;
}

/** How long startup waits for Redis before serving degraded, ms. */
const REDIS_STARTUP_WAIT_MS = 3000;

/**
 * Build the distribution parts for `cfg`. Throws when BUS=cluster outside a cluster
 * worker. Never fails because Redis is down: the service starts degraded and recovers.
 * @param cipher the message-body keyring; the Redis bus seals with keys derived from it
 *   (BUS_ENCRYPTION, DESIGN "Cross-process delivery"). The cluster IPC bus never leaves
 *   the host's process tree and carries frames as they are.
 * @param observe metric callbacks (the Redis bus's refusals)
 */
export async function createDistribution(cfg: Config, logger: Logger, cipher: BodyCipher, observe: DistributionObserver = {}): Promise<Distribution> {
  const kind = distributionKind(cfg);
  if (kind === 'redis') {
    const dist = await redisDistribution(cfg, logger, new BusSeal(cipher), observe);
    if (cluster.isWorker) dist.aggregateMetrics = aggregateViaPrimary(new WorkerRpc());
    return dist;
  }
  if (kind === 'cluster') {
    if (!cluster.isWorker) throw new Error('BUS=cluster: run under cluster-server.ts (npm run start:cluster)');
    return clusterDistribution(cfg, logger);
  }
  return {
    bus: new LocalBus(),
    presence: new LocalPresence(),
    limits: memoryRateLimits(limitSpec(cfg)),
    ipCounter: new LocalIpCounter(),
    redisHealthy: () => undefined,
    stop: async () => {},
  };
}

/** A unique id for this process in Redis keys and bus headers (no `|`). */
export function newInstanceId(): string {
  return `${process.pid.toString(36)}-${randomBytes(5).toString('hex')}`;
}

async function redisDistribution(cfg: Config, logger: Logger, busKeys: BusSeal, observe: DistributionObserver): Promise<Distribution> {
  // Loaded only when Redis is configured (the redis client is not needed otherwise).
  const [{ RedisPresence }, { RedisBus }, { closeRedis, COMMAND_STALL_WATCH, createRedis, waitReady }, { redisRateLimits }] = await Promise.all([
    import('../presence/redisPresence.ts'),
    import('./redisBus.ts'),
    import('./redisClient.ts'),
    import('./leasedLimits.ts'),
  ]);
  const url = cfg.redisUrl!;
  const prefix = cfg.redisKeyPrefix;
  const instanceId = newInstanceId();
  const cmd = createRedis(url, 'command', logger, { stallWatch: COMMAND_STALL_WATCH });
  const sub = createRedis(url, 'subscriber', logger);
  const [a, b] = await Promise.all([waitReady(cmd, REDIS_STARTUP_WAIT_MS), waitReady(sub, REDIS_STARTUP_WAIT_MS)]);
  if (!a || !b) logger.warn('redis not reachable at startup: serving degraded (this process only) until it is');
  const presence = new RedisPresence(cmd, {
    prefix,
    instanceId,
    graceMs: cfg.offlineGraceMs,
    heartbeatMs: cfg.presenceHeartbeatMs,
    ttlMs: cfg.presenceTtlMs,
    logger,
  });
  presence.start();
  // BUS_ENCRYPTION=false still opens sealed frames (an upgrade in progress), and accepts plaintext.
  const bus = new RedisBus(cmd, sub, {
    prefix,
    instanceId,
    logger,
    seal: busKeys,
    acceptPlaintext: !cfg.busEncryption,
    sealOutgoing: cfg.busEncryption,
    gapResyncMs: cfg.busGapResyncMs,
    onRefused: observe.busRefused?.bind(observe),
  });
  logger.info('redis distribution', { instanceId, prefix, busEncryption: cfg.busEncryption });
  return {
    bus,
    presence,
    limits: redisRateLimits(limitSpec(cfg), cmd, prefix, logger),
    ipCounter: presence.ipCounter,
    redisHealthy: () => cmd.isReady && sub.isReady,
    async stop() {
      await presence.stop();
      closeRedis(sub);
      closeRedis(cmd);
    },
  };
}

function clusterDistribution(cfg: Config, logger: Logger): Distribution {
  const rpc = new WorkerRpc();
  const presence = new ClusterPresence(rpc, logger);
  return {
    bus: new ClusterBus(logger),
    presence,
    limits: clusterRateLimits(limitSpec(cfg), logger),
    ipCounter: new ClusterIpCounter(rpc),
    redisHealthy: () => undefined,
    aggregateMetrics: aggregateViaPrimary(rpc),
    async stop() {
      presence.close();
      rpc.close();
    },
  };
}

/**
 * In a cluster worker: answer the primary's metric requests (`chat:metrics-req`) from
 * `registry`, and serve /metrics as the primary's aggregate over all workers (live ones,
 * plus the counters and histograms of exited ones: src/fanout/clusterPrimary.ts). The
 * returned function rejects with PrimaryUnavailableError when the primary does not answer
 * within 7 s (it waits at most 3 s for each worker).
 */
function aggregateViaPrimary(rpc: WorkerRpc): (registry: client.Registry) => () => Promise<string> {
  return (registry) => {
    process.on('message', (m: unknown) => {
      if (!isMsg<MetricsReq>(m, CH.metricsReq)) return;
      registry.getMetricsAsJSON().then(
        (fs) => sendToPrimary({ ch: CH.metricsRes, id: m.id, m: fs as unknown as MetricFamily[] } satisfies MetricsRes),
        (err: Error) => sendToPrimary({ ch: CH.metricsRes, id: m.id, e: err.message } satisfies MetricsRes),
      );
    });
    return () => rpc.call<string>('metrics', [], 7000);
  };
}

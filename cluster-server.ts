/**
 * One-host scale-out (`npm run start:cluster`): a node:cluster primary forks
 * CLUSTER_WORKERS workers, each running the normal server (src/server.ts) on the shared
 * PORT. The primary runs no chat code; it relays deliveries between workers, holds
 * presence, per-IP counts and rate limits when there is no Redis (src/fanout/clusterPrimary.ts),
 * and aggregates /metrics. With REDIS_URL set, workers use Redis like separate hosts.
 *
 * - A worker that exits unexpectedly is re-forked (logged). Crash-loop guard: re-forks are
 *   delayed exponentially (0.5 s doubling to 30 s) while exits repeat, and after more than
 *   max(5, 2 × CLUSTER_WORKERS) exits within 60 s the primary stops everything and exits 1.
 *   A pending re-fork keeps the primary alive: it never exits while it should be running,
 *   and exits 0 only after a SIGTERM/SIGINT.
 * - SIGTERM/SIGINT are forwarded to the workers, which drain (PROTOCOL §2.3 1001) and
 *   persist their users offline with `lastSeen` (the hub's `p.release`); the primary exits
 *   0 once they are all gone, or kills the rest and exits 1 after DRAIN_TIMEOUT_MS + 5 s.
 * - Refuses to start without a configured PostgreSQL (DATABASE_URL or DB_HOST): the
 *   embedded PGlite database belongs to a single process.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import dotenv from 'dotenv';
import { loadConfigOrExit, type Config } from './src/config.ts';
import { ClusterHub } from './src/fanout/clusterPrimary.ts';
import { createLogger } from './src/observability/logger.ts';

const CRASH_WINDOW_MS = 60_000;
const MAX_RESTART_DELAY_MS = 30_000;

dotenv.config({ quiet: true });

const cfg = loadConfigOrExit();
const logger = createLogger(cfg.logLevel, { service: 'chat-server-primary' });

if (!cluster.isPrimary) {
  // Only reached if someone forks this file directly; workers normally run src/server.ts.
  await import('./src/server.ts');
} else if (cfg.embedded) {
  logger.error(
    'cannot start the cluster: no database configured. Set DATABASE_URL (or DB_HOST…): the embedded PGlite database in DATA_DIR can only be used by one process (run `npm start` instead).',
  );
  process.exit(1);
} else {
  runPrimary(cfg);
}

function runPrimary(cfg: Config): void {
  const workers = cfg.clusterWorkers;
  const crashes: number[] = [];
  let stopping = false;
  let finalCode = 0;

  // Bundled (npm run build: dist/node/cluster-server.mjs) → the bundled server beside it.
  const workerEntry = import.meta.url.endsWith('.mjs') ? new URL('./server.mjs', import.meta.url) : new URL('./src/server.ts', import.meta.url);
  cluster.setupPrimary({ exec: fileURLToPath(workerEntry), serialization: 'advanced' });
  const hub = new ClusterHub({ graceMs: cfg.offlineGraceMs, logger });
  hub.attach();

  const fork = (): Worker => {
    const w = cluster.fork();
    w.once('online', () => logger.info('worker started', { workerId: w.id, pid: w.process.pid }));
    return w;
  };

  cluster.on('exit', (worker, code, signal) => {
    hub.workerGone(worker.id);
    const alive = Object.keys(cluster.workers ?? {}).length;
    if (stopping) {
      logger.info('worker stopped', { workerId: worker.id, pid: worker.process.pid, code, signal });
      if (alive === 0) {
        hub.close();
        logger.info('all workers stopped; exiting', { code: finalCode });
        process.exit(finalCode);
      }
      return;
    }
    const now = Date.now();
    crashes.push(now);
    while (crashes.length && now - crashes[0]! > CRASH_WINDOW_MS) crashes.shift();
    const limit = Math.max(5, 2 * workers);
    if (crashes.length > limit) {
      logger.error('crash loop: too many worker exits; stopping the cluster', { exits: crashes.length, windowMs: CRASH_WINDOW_MS });
      shutdown('crash-loop', 1);
      return;
    }
    const delay = crashes.length <= 1 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 500 * 2 ** (crashes.length - 2));
    logger.error('worker exited unexpectedly; re-forking', { workerId: worker.id, pid: worker.process.pid, code, signal, delayMs: delay, recentExits: crashes.length });
    // Not unref'd: with no worker left, this timer is what keeps the primary running (audit 8 F1).
    setTimeout(() => {
      if (!stopping) fork();
    }, delay);
  });

  function shutdown(reason: string, exitCode = 0): void {
    if (stopping) return;
    stopping = true;
    finalCode = exitCode;
    hub.beginShutdown();
    logger.info('stopping workers', { reason, timeoutMs: cfg.drainTimeoutMs });
    const list = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    if (list.length === 0) {
      logger.info('no worker running; exiting', { code: exitCode });
      process.exit(exitCode);
    }
    for (const w of list) w.process.kill('SIGTERM');
    setTimeout(() => {
      const left = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
      logger.error('workers did not stop in time; killing', { left: left.length });
      for (const w of left) w.process.kill('SIGKILL');
      process.exit(1);
    }, cfg.drainTimeoutMs + 5000).unref();
  }

  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  logger.info('cluster primary started', { pid: process.pid, workers, port: cfg.port, redis: !!cfg.redisUrl });
  for (let i = 0; i < workers; i++) fork();
}

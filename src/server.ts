/**
 * Process entry: `.env` + environment → Config → app → listen. SIGTERM/SIGINT drain
 * (`/ready` 503 at once, new upgrades refused, open connections closed 1001 after their
 * in-flight commands, or at DRAIN_TIMEOUT_MS without waiting for them any longer), close
 * the app's resources, and exit 0; at the latest DRAIN_TIMEOUT_MS + {@link CLOSE_GRACE_MS}.
 * A second SIGINT exits at once (130); a second SIGTERM is logged. A signal before the
 * server listens exits 0 with a log line.
 */
import cluster from 'node:cluster';
import dotenv from 'dotenv';
import { createApp, StartupError } from './app.ts';
import { configWarnings, loadConfigOrExit } from './config.ts';
import { createLogger } from './observability/logger.ts';
import { startCpuProfile } from './observability/profiler.ts';

dotenv.config({ quiet: true });

const cfg = loadConfigOrExit();
const logger = createLogger(cfg.logLevel);
for (const w of configWarnings(cfg)) logger.warn(`configuration: ${w}`);
// Node's own warnings (deprecations, timer overflows) as JSON log lines too (audit 8, F13).
process.removeAllListeners('warning');
process.on('warning', (w) => logger.warn(`node: ${w.message}`, { name: w.name }));

// A signal before the server listens: nothing to drain (a migration in flight rolls back).
const earlyStop = (signal: string) => {
  logger.info('stopped during start-up', { signal });
  process.exit(0);
};
process.on('SIGTERM', earlyStop);
process.on('SIGINT', earlyStop);

/**
 * Time after DRAIN_TIMEOUT_MS for closing the app's resources (bus, Redis, database pool),
 * ms. The drain itself ends by DRAIN_TIMEOUT_MS (Gateway.drain); what may still run after
 * that is closing the pool, which waits for a statement stuck in the database (a row lock)
 * until DB_STATEMENT_TIMEOUT_MS. That must not hold the exit.
 */
const CLOSE_GRACE_MS = 2000;

/** A SIGINT this long after the first forces the exit (a person pressing Ctrl-C again), ms; sooner it is a duplicate. */
const SECOND_SIGINT_MS = 1000;

// Under the cluster server each worker writes its own profile (`FILE.w<worker id>`).
const profileFile = cfg.cpuProfileFile;
const stopProfile = await startCpuProfile(profileFile && cluster.isWorker ? `${profileFile}.w${cluster.worker!.id}` : profileFile);

try {
  const app = await createApp(cfg, { logger });
  await app.listen();
  let stopping = false;
  let stoppedAt = 0;
  const stop = (signal: string) => {
    if (stopping) {
      // A second Ctrl-C means "now" (audit 8, F14); a repeated SIGTERM only gets a log line.
      // One Ctrl-C under npm arrives twice at once (the terminal's and npm's copy): only a
      // SIGINT more than SECOND_SIGINT_MS after the first counts.
      if (signal === 'SIGINT' && Date.now() - stoppedAt > SECOND_SIGINT_MS) {
        logger.warn('second SIGINT: exiting without waiting for the drain', { open: app.gateway.connectionCount() });
        process.exit(130);
      }
      logger.info('already draining', { signal, open: app.gateway.connectionCount(), exitsWithinMs: cfg.drainTimeoutMs + CLOSE_GRACE_MS });
      return;
    }
    stopping = true;
    stoppedAt = Date.now();
    logger.info('draining', { signal, timeoutMs: cfg.drainTimeoutMs });
    const force = setTimeout(() => {
      // Every client was closed 1001 by the drain: only resources are still closing (exit 0).
      const open = app.gateway.connectionCount();
      if (open === 0) logger.warn('shutdown: resources still closing after the drain (a database statement in flight?); exiting');
      else logger.error('drain timed out; exiting', { open });
      process.exit(open === 0 ? 0 : 1);
    }, cfg.drainTimeoutMs + CLOSE_GRACE_MS);
    force.unref();
    app.shutdown(cfg.drainTimeoutMs).then(
      async () => {
        await stopProfile().catch((err) => logger.warn('cpu profile not written', { err: (err as Error).message }));
        logger.info('stopped');
        process.exit(0);
      },
      (err) => {
        logger.error('shutdown failed', { err: (err as Error).message });
        process.exit(1);
      },
    );
  };
  process.off('SIGTERM', earlyStop);
  process.off('SIGINT', earlyStop);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
} catch (err) {
  if (err instanceof StartupError) {
    logger.error(`cannot start: ${err.message}`);
    process.exit(1);
  }
  logger.error('cannot start', { err: (err as Error).message, stack: (err as Error).stack });
  process.exit(1);
}

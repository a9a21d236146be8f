/**
 * Process entry: `.env` + environment → Config → app → listen. SIGTERM/SIGINT drain
 * (`/ready` 503 at once, new upgrades refused, open connections closed 1001 after their
 * in-flight commands) and exit within DRAIN_TIMEOUT_MS.
 */
import cluster from 'node:cluster';
import dotenv from 'dotenv';
import { createApp, StartupError } from './app.ts';
import { loadConfigOrExit } from './config.ts';
import { createLogger } from './observability/logger.ts';
import { startCpuProfile } from './observability/profiler.ts';

dotenv.config({ quiet: true });

const cfg = loadConfigOrExit();
const logger = createLogger(cfg.logLevel);

// Under the cluster server each worker writes its own profile (`FILE.w<worker id>`).
const profileFile = process.env.CPU_PROFILE_FILE;
const stopProfile = await startCpuProfile(profileFile && cluster.isWorker ? `${profileFile}.w${cluster.worker!.id}` : profileFile);

try {
  const app = await createApp(cfg, { logger });
  await app.listen();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('draining', { signal, timeoutMs: cfg.drainTimeoutMs });
    const force = setTimeout(() => {
      logger.error('drain timed out; exiting');
      process.exit(1);
    }, cfg.drainTimeoutMs + 2000);
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

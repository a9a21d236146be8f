/**
 * Redis connections for fan-out, presence and limits (node-redis v6). Every client:
 * an 'error' listener (a Redis error never crashes the process), a bounded exponential
 * reconnect delay (50 ms doubling to 2 s, plus jitter; retried for ever so the service
 * recovers without restart), no offline queue (commands fail fast while disconnected so
 * callers fall back to per-process behaviour at once), rate-limited logs.
 */
import { createHash } from 'node:crypto';
import { createClient } from 'redis';
import type { Logger } from '../observability/logger.ts';

function newClient(url: string) {
  return createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => reconnectDelay(retries) },
  });
}

/** A node-redis client as created here. */
export type Redis = ReturnType<typeof newClient>;

/** Longest wait between reconnect attempts, ms. */
export const MAX_RECONNECT_DELAY_MS = 2000;

/** Delay before reconnect attempt `retries` (0-based), ms: 50·2^n capped at 2 s, + ≤ 100 ms jitter. */
export function reconnectDelay(retries: number): number {
  return Math.min(50 * 2 ** Math.min(retries, 10), MAX_RECONNECT_DELAY_MS) + Math.floor(Math.random() * 100);
}

/**
 * Create and start connecting a client to `url` (never throws, never waits): `name` tags
 * it in logs. Connection errors are logged at most once per 30 s while the outage lasts;
 * recovery is logged once. The URL (it may hold a password) is never logged.
 */
export function createRedis(url: string, name: string, logger: Logger): Redis {
  const client = newClient(url);
  let down = false;
  let lastLog = 0;
  client.on('error', (err: Error) => {
    const now = Date.now();
    if (!down || now - lastLog > 30_000) {
      logger.warn('redis unavailable; serving this process only until it returns', { client: name, err: err.message });
      lastLog = now;
    }
    down = true;
  });
  client.on('ready', () => {
    if (down) logger.info('redis reconnected', { client: name });
    down = false;
  });
  client.connect().catch(() => {
    // Rejected only when the client is destroyed during the first connect; errors are logged above.
  });
  return client;
}

/** Resolve once `client` is ready or `timeoutMs` passed (true when ready). */
export function waitReady(client: Redis, timeoutMs: number): Promise<boolean> {
  if (client.isReady) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(t);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const t = setTimeout(() => done(false), timeoutMs);
    client.on('ready', onReady);
  });
}

/** Close a client without waiting for Redis (never throws). */
export function closeRedis(client: Redis): void {
  try {
    client.destroy();
  } catch {
    // already closed
  }
}

/** A Lua script run with EVALSHA, falling back to EVAL when Redis lost its script cache (restart). */
export class LuaScript {
  readonly sha: string;
  /** @param src Lua source */
  constructor(readonly src: string) {
    this.sha = createHash('sha1').update(src).digest('hex');
  }

  /** Run with `keys` and `args`; rejects with the Redis error (e.g. not connected). */
  async run(client: Redis, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await client.evalSha(this.sha, { keys, arguments: args });
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      return client.eval(this.src, { keys, arguments: args });
    }
  }
}

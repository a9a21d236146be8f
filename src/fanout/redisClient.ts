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

function newClient(url: string, perCommandTimeouts: boolean) {
  return createClient({
    url,
    disableOfflineQueue: true,
    // node-redis's per-command timeout is an AbortSignal.timeout per command that later
    // fires and builds a DOMException: ~8% of a core at 2,000 DM/s. Clients without it are
    // watched for stalls instead ({@link watchStalls}); bounded queue while Redis is slow.
    ...(perCommandTimeouts ? {} : { commandOptions: { timeout: 0 }, commandsQueueMaxLength: COMMAND_QUEUE_MAX }),
    socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => reconnectDelay(retries) },
  });
}

/** Commands queued at most on a watched client (beyond: rejected at once, "The queue is full"). */
const COMMAND_QUEUE_MAX = 100_000;

/** A node-redis client as created here. */
export type Redis = ReturnType<typeof newClient>;

/** Options of {@link createRedis}. */
export interface RedisClientOptions {
  /**
   * Instead of node-redis's timeout on every command (5 s), probe the connection with a
   * PING every `checkMs` and, when one is unanswered for `stallMs`, drop the connection
   * and reconnect: every pending command is rejected (callers fall back as on an outage).
   * For the busy command connection; the subscriber keeps per-command timeouts.
   */
  stallWatch?: { checkMs: number; stallMs: number };
}

/** Stall watch of the command connection: PING every second, reconnect after 5 s unanswered. */
export const COMMAND_STALL_WATCH = { checkMs: 1000, stallMs: 5000 } as const;

const watchers = new WeakMap<Redis, NodeJS.Timeout>();

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
export function createRedis(url: string, name: string, logger: Logger, opts: RedisClientOptions = {}): Redis {
  const client = newClient(url, !opts.stallWatch);
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
  if (opts.stallWatch) watchers.set(client, watchStalls(client, name, logger, opts.stallWatch));
  return client;
}

/**
 * A Redis that stops answering without closing the socket (stopped process, lost route)
 * leaves commands without a timeout pending for ever. Every `checkMs` (while ready) a
 * PING goes out unless one is pending; one pending for `stallMs` or more drops the
 * connection (destroy: every pending command rejects) and connects again. Returns the
 * timer (unref'd; cleared by {@link closeRedis}).
 */
function watchStalls(client: Redis, name: string, logger: Logger, w: { checkMs: number; stallMs: number }): NodeJS.Timeout {
  let probeSince = 0;
  let restarting = false;
  const timer = setInterval(() => {
    if (restarting) return;
    if (probeSince) {
      if (Date.now() - probeSince < w.stallMs) return;
      logger.warn('redis stopped answering; reconnecting (pending commands fail)', { client: name, stalledMs: Date.now() - probeSince });
      probeSince = 0;
      restarting = true;
      client.destroy();
      client.emit('error', new Error('redis stalled'));
      client
        .connect()
        .catch(() => {})
        .finally(() => (restarting = false));
      return;
    }
    if (!client.isReady) return;
    probeSince = Date.now();
    client.ping().then(
      () => (probeSince = 0),
      () => (probeSince = 0),
    );
  }, w.checkMs);
  timer.unref();
  return timer;
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
  clearInterval(watchers.get(client));
  watchers.delete(client);
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

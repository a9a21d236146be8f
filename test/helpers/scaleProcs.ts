/**
 * Scale-out test kit: real server PROCESSES (`node --import tsx src/server.ts` or
 * `cluster-server.ts`) on 127.0.0.1 sharing one test database and one Redis key prefix,
 * a private `redis-server`, seeding, tokens and authenticated clients. Every process is
 * tracked by PID and killed by PID; every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { get as httpGet } from 'node:http';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { jwtKey } from '../../src/auth/keys.ts';
import { signToken } from '../../src/auth/tokens.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { addFollows, upsertUsers } from '../../src/store/devData.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { TestClient } from './client.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';

/** Repository root (cwd of spawned servers). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** True when the scale tests can run (CI sets both). */
export const scaleEnabled = !!process.env.TEST_DATABASE_URL && !!process.env.TEST_REDIS_URL;

/** Warn loudly once per file when skipped. */
export function warnIfSkipped(file: string): void {
  if (!scaleEnabled) console.warn(`\n!!! ${file} SKIPPED: set TEST_DATABASE_URL and TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) to run the scale-out tests !!!\n`);
}

/** Shared secrets of one test file's processes. */
export const SCALE_JWT_SECRET = randomBytes(48).toString('base64');
const SCALE_ENC_KEY = randomBytes(32).toString('hex');

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Sleep `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `check` every `everyMs` until truthy or `timeoutMs`; rejects naming `what`. */
export async function until<T>(what: string, check: () => Promise<T> | T, timeoutMs = 10_000, everyMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let i = 0; i < Math.ceil(timeoutMs / everyMs) + 1; i++) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) break;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

/**
 * GET a JSON endpoint on a fresh connection (no keep-alive, so node:cluster can hand each
 * request to another worker). Status and body (null when not JSON); 3 s timeout.
 */
export function getJson(port: number, path: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host: '127.0.0.1', port, path, agent: false, headers: { Connection: 'close' }, timeout: 3000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let body: any = null;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** A spawned server process. */
export interface Proc {
  pid: number;
  port: number;
  url: string;
  child: ChildProcess;
  /** stdout+stderr lines so far. */
  logs: string[];
  exited: Promise<number | null>;
  /** Signal by PID (no-op when gone). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, wait ≤ `ms`, then SIGKILL. */
  stop(ms?: number): Promise<void>;
}

/** Environment of a test server: secrets, loopback, fast timers, plus `env`. */
export function serverEnv(env: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    HOST: '127.0.0.1',
    JWT_SECRET: SCALE_JWT_SECRET,
    JWT_SECRET_ENCODING: 'base64',
    CHAT_ENCRYPTION_KEY: SCALE_ENC_KEY,
    LOG_LEVEL: 'warn',
    RELATION_CACHE_MS: '0',
    METRICS_CACHE_MS: '0', // tests read /metrics right after what they count
    DB_POOL_SIZE: '4',
    DATA_DIR: '/tmp/chat-scale-unused',
    DRAIN_TIMEOUT_MS: '3000',
    ...env,
  };
}

/** Run src/server.ts (test server env, ./serverEnv) with `env` until it exits (or `ms`: then SIGKILL by PID); resolves its exit code (null: it kept running) and log lines. */
export async function runToExit(env: Record<string, string>, ms = 30_000): Promise<{ code: number | null; logs: string[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env: serverEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const take = (b: Buffer) => logs.push(...b.toString().split('\n').filter((l) => l.trim()));
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const timer = setTimeout(() => {
    try {
      process.kill(child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }, ms);
  const code = await exited;
  clearTimeout(timer);
  return { code, logs };
}

/**
 * Spawn `script` (relative to the repo) with `env` (PORT must be set) and wait for `GET /ready` 200.
 * `nodeArgs` go before the script (default: the tsx loader; a production build runs with
 * `start:prod`'s flags instead).
 */
export async function spawnServer(env: Record<string, string>, script = 'src/server.ts', readyTimeoutMs = 60_000, nodeArgs: readonly string[] = ['--import', 'tsx']): Promise<Proc> {
  const port = Number(env.PORT);
  const child = spawn(process.execPath, [...nodeArgs, script], { cwd: ROOT, env: serverEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const take = (b: Buffer) => {
    for (const line of b.toString().split('\n')) if (line.trim()) logs.push(line);
    if (logs.length > 2000) logs.splice(0, logs.length - 2000);
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const pid = child.pid!;
  const p: Proc = {
    pid,
    port,
    url: `ws://127.0.0.1:${port}`,
    child,
    logs,
    exited,
    kill(signal = 'SIGKILL') {
      try {
        process.kill(pid, signal);
      } catch {
        // gone
      }
    },
    async stop(ms = 8000) {
      if (process.env.TEST_LOGS) console.log(`--- ${script} pid ${pid} port ${port} ---\n${logs.join('\n')}`);
      if (child.exitCode !== null || child.signalCode !== null) return;
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), ms);
      await exited;
      clearTimeout(t);
    },
  };
  let dead = false;
  void exited.then(() => (dead = true));
  try {
    await until(`${script} on port ${port} to be ready`, async () => {
      if (dead) throw new Error(`exited early: ${logs.slice(-5).join('\n')}`);
      return (await getJson(port, '/ready')).status === 200;
    }, readyTimeoutMs, 200);
  } catch (err) {
    p.kill('SIGKILL');
    throw err;
  }
  return p;
}

/** Seeding and login helpers over one shared test database and token secret. */
export class Fixture {
  private readonly key = jwtKey(SCALE_JWT_SECRET, 'base64');
  readonly clients: TestClient[] = [];

  constructor(readonly dbUrl: string) {}

  /** Create users `u<id>` and follow edges [follower, followee]. */
  async seed(ids: string[], follows: [string, string][] = []): Promise<void> {
    const db = createPgDb({ connectionString: this.dbUrl, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 5000, idleTimeoutMs: 1000 }, createLogger('error', { silent: true }));
    try {
      await upsertUsers(db, ids.map((id) => ({ id, username: `u${id}`, firstName: `First${id}`, lastName: `Last${id}` })));
      await addFollows(db, follows);
    } finally {
      await db.close();
    }
  }

  /** Everyone in `ids` follows everyone else. */
  static mutual(ids: string[]): [string, string][] {
    return ids.flatMap((a) => ids.filter((b) => b !== a).map((b) => [a, b] as [string, string]));
  }

  /** A token for `userId`. */
  token(userId: string): string {
    return signToken(this.key, userId);
  }

  /** Connect to `url` (optionally from a loopback `localAddress`). */
  async connect(url: string, localAddress?: string): Promise<TestClient> {
    const c = await TestClient.connect(url, { localAddress });
    this.clients.push(c);
    return c;
  }

  /** Connect and authenticate; resolves after `auth_success`. */
  async login(url: string, userId: string, localAddress?: string): Promise<TestClient> {
    const c = await this.connect(url, localAddress);
    const r = await c.request({ type: 'authenticate', token: this.token(userId) }, 10_000);
    if (r.type !== 'auth_success') throw new Error(`login ${userId} failed: ${JSON.stringify(r)}`);
    return c;
  }

  /** Close every client. */
  async closeAll(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
  }
}

/**
 * Tear down a two-instance Redis deployment of a test file: close the fixture's clients,
 * stop the instances (by PID), drop the test database, delete the Redis keys under `prefix`.
 */
export async function teardownRedisPair(fx: Fixture | undefined, procs: (Proc | undefined)[], db: { drop(): Promise<void> } | undefined, prefix: string): Promise<void> {
  await fx?.closeAll();
  await Promise.all(procs.map((p) => p?.stop()));
  await db?.drop();
  await clearRedisPrefix(process.env.TEST_REDIS_URL!, prefix);
}

/** A cluster server over its own test database, with a {@link Fixture} for seeding and logins. */
export interface SeededCluster {
  db: TestDatabase;
  fx: Fixture;
  primary: Proc;
}

/**
 * Create a test database, seed `users` (`u<id>`) and `follows` [follower, followee], and
 * spawn cluster-server.ts with `workers` workers and `extra` settings ({@link spawnCluster}:
 * resolves once every worker listens).
 */
export async function seededCluster(workers: number, users: string[], follows: [string, string][] = [], extra: Record<string, string> = {}): Promise<SeededCluster> {
  const db = await createTestDatabase();
  const fx = new Fixture(db.url!);
  await fx.seed(users, follows);
  return { db, fx, primary: await spawnCluster(db.url!, workers, extra) };
}

/** Tear down what {@link seededCluster} (or part of it) set up: close the clients, stop the cluster by PID (SIGKILL after 15 s), drop the database. */
export async function teardownCluster(c: Partial<SeededCluster>): Promise<void> {
  await c.fx?.closeAll();
  await c.primary?.stop(15_000);
  await c.db?.drop();
}

/**
 * Pids of the cluster server's workers on `port`, read from /health (node:cluster hands
 * requests round-robin) until `min` distinct ones other than `exclude` were seen (30 s bound).
 */
export async function workerPids(port: number, min: number, exclude: number[] = []): Promise<Set<number>> {
  const seen = new Set<number>();
  await until(`${min} live worker pids on /health`, async () => {
    const h = await getJson(port, '/health');
    if (h.status === 200 && !exclude.includes(h.body.pid)) seen.add(h.body.pid);
    return seen.size >= min;
  }, 30_000, 50);
  return seen;
}

/**
 * Spawn `cluster-server.ts` with `workers` workers on a free port against `dbUrl` (plus
 * `extra` settings) and wait until every worker is listening (its pid on /health).
 */
export async function spawnCluster(dbUrl: string, workers: number, extra: Record<string, string> = {}): Promise<Proc> {
  const p = await spawnServer({ PORT: String(await freePort()), DATABASE_URL: dbUrl, CLUSTER_WORKERS: String(workers), ...extra }, 'cluster-server.ts', 90_000);
  await workerPids(p.port, workers);
  return p;
}

/** Delete every Redis key under `prefix` (bounded SCAN). */
export async function clearRedisPrefix(url: string, prefix: string): Promise<void> {
  const c = createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  c.on('error', () => {});
  try {
    await c.connect();
    let cursor = '0';
    for (let i = 0; i < 1000; i++) {
      const r = await c.scan(cursor, { MATCH: `${prefix}*`, COUNT: 500 });
      if (r.keys.length) await c.del(r.keys);
      cursor = String(r.cursor);
      if (cursor === '0') break;
    }
  } catch {
    // best effort
  } finally {
    c.destroy();
  }
}

/** A private `redis-server` (no persistence) on a free port. */
export interface PrivateRedis {
  port: number;
  url: string;
  pid: number;
  /** Kill by PID (SIGKILL) and wait for exit. */
  kill(): Promise<void>;
}

/** Start `redis-server --port <port> --save '' --appendonly no` and wait until it answers PING. */
export async function startPrivateRedis(port?: number): Promise<PrivateRedis> {
  const p = port ?? (await freePort());
  const child = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `redis://127.0.0.1:${p}`;
  await until(`redis-server on ${p}`, async () => {
    const c = createClient({ url, socket: { connectTimeout: 500, reconnectStrategy: false } });
    c.on('error', () => {});
    try {
      await c.connect();
      return (await c.ping()) === 'PONG';
    } finally {
      c.destroy();
    }
  }, 10_000, 100);
  return {
    port: p,
    url,
    pid: child.pid!,
    async kill() {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      await Promise.race([exited, sleep(3000)]);
    },
  };
}

/**
 * A server process on a free port sharing `dbUrl` and the Redis at `redisUrl` under key
 * prefix `prefix` (one per test file), with `extra` settings.
 */
export async function spawnRedisInstance(dbUrl: string, redisUrl: string, prefix: string, extra: Record<string, string> = {}): Promise<Proc> {
  return spawnServer({ PORT: String(await freePort()), DATABASE_URL: dbUrl, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix, ...extra });
}

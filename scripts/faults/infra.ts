/**
 * Infrastructure of the fault suite, all on 127.0.0.1 and free ports, every process
 * stopped by PID (scripts/lib): a private PostgreSQL (initdb in a temp dir) with the
 * backend's tables and the test users (everyone follows everyone), a private
 * `redis-server`, and the chat server as two instances (A and B) sharing both, or, for
 * the worker-kill fault, the cluster server (2 workers) as A beside a plain B.
 */
import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import winston from 'winston';
import type { Db } from '../../src/store/db.ts';
import { addFollows, upsertUsers } from '../../src/store/devData.ts';
import { applyDevSchema } from '../../src/store/migrate.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { createDatabase, startPostgres, startRedis, startServer, type PostgresService, type RedisService, type ServerProcess } from '../lib/services.ts';

/** Repository root (cwd of the servers). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Shared services of the whole suite. */
export interface Infra {
  pg: PostgresService;
  redis: RedisService;
  /** URL of the suite's database. */
  dbUrl: string;
  /** Pool for seeding, revocations and verification (reconnects after outages). */
  admin: Db;
  /** JWT_SECRET (base64) and its key. */
  jwtSecret: string;
  key: KeyObject;
  encryptionKey: string;
  logDir: string;
  userIds: string[];
  /** Settings the servers get on top of the defaults. */
  sessionRecheckMs: number;
}

/** Start PostgreSQL and Redis, create the database, the backend's tables and `users` users following each other. */
export async function startInfra(users: number, sessionRecheckMs: number): Promise<Infra> {
  const logDir = mkdtempSync(join(tmpdir(), 'chat-faults-'));
  const pg = await startPostgres({ settings: { shared_buffers: '128MB' } });
  const redis = await startRedis();
  const dbUrl = await createDatabase(pg.url, 'chat_faults');
  const admin = createPgDb(
    { connectionString: dbUrl, poolSize: 3, statementTimeoutMs: 30_000, connectTimeoutMs: 2000, idleTimeoutMs: 1000, applicationName: 'fault-suite' },
    winston.createLogger({ silent: true }),
  );
  await applyDevSchema(admin);
  const userIds = Array.from({ length: users }, (_, i) => String(1001 + i));
  await upsertUsers(
    admin,
    userIds.map((id) => ({ id, username: `f${id}`, firstName: 'Fault', lastName: `User${id}` })),
  );
  const edges: [string, string][] = [];
  for (const a of userIds) for (const b of userIds) if (a !== b) edges.push([a, b]);
  await addFollows(admin, edges);
  const secret = randomBytes(32);
  return {
    pg,
    redis,
    dbUrl,
    admin,
    jwtSecret: secret.toString('base64'),
    key: createSecretKey(secret),
    encryptionKey: randomBytes(32).toString('hex'),
    logDir,
    userIds,
    sessionRecheckMs,
  };
}

/** Stop everything {@link startInfra} started. */
export async function stopInfra(infra: Infra): Promise<void> {
  await infra.admin.close().catch(() => undefined);
  await infra.redis.remove();
  await infra.pg.remove();
}

/** One chat server instance (a plain server or the cluster primary) that can be restarted on its port. */
export class Instance {
  proc: ServerProcess | undefined;
  port = 0;
  starts = 0;

  /** @param name A or B; @param entry src/server.ts or cluster-server.ts */
  constructor(
    readonly name: string,
    readonly entry: string,
    private readonly env: Record<string, string>,
    private readonly logDir: string,
  ) {}

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/`;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Start (again, on the same port once it has one); resolves when /ready is 200. */
  async start(): Promise<number> {
    const t0 = Date.now();
    const env = this.port ? { ...this.env, PORT: String(this.port) } : this.env;
    const tag = this.entry.startsWith('cluster') ? 'cluster' : 'server';
    this.proc = await startServer(env, { cwd: REPO_ROOT, entry: this.entry, logFile: join(this.logDir, `${this.name}-${tag}.log`), readyTimeoutMs: 90_000 });
    this.port = this.proc.port;
    this.starts++;
    return Date.now() - t0;
  }

  /** A start running in the background (see {@link startInBackground}). */
  pending: Promise<number> | undefined;

  /** Start again without waiting; `done` gets the ms taken, or the error. Awaited by {@link ready} and {@link stop}. */
  startInBackground(done: (ms: number | null, err?: Error) => void): void {
    this.pending = this.start().then(
      (ms) => (done(ms), ms),
      (err: Error) => (done(null, err), 0),
    );
  }

  /** Wait for a background start (or worker replacement; rethrows its failure), then for /ready 200 (bounded). */
  async ready(timeoutMs: number): Promise<void> {
    await this.pending;
    this.pending = undefined;
    if (!this.proc) throw new Error(`${this.name} is not running`);
    const deadline = Date.now() + timeoutMs;
    while ((await httpStatus(`${this.httpUrl}/ready`, 3000)).status !== 200) {
      if (Date.now() > deadline) throw new Error(`${this.name} /ready not 200 within ${timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  /** Stop with `signal` (SIGTERM: drain), bounded; resolves true on a clean exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<boolean> {
    await this.pending?.catch(() => 0);
    this.pending = undefined;
    const p = this.proc;
    this.proc = undefined;
    return p ? p.stop(signal, timeoutMs) : true;
  }
}

/** Environment of every server process: the suite's database, Redis, secrets and raised per-IP/per-user limits. */
export function serverEnv(infra: Infra, extra: Record<string, string> = {}): Record<string, string> {
  return {
    HOST: '127.0.0.1',
    DATABASE_URL: infra.dbUrl,
    REDIS_URL: infra.redis.url,
    JWT_SECRET: infra.jwtSecret,
    JWT_SECRET_ENCODING: 'base64',
    CHAT_ENCRYPTION_KEY: infra.encryptionKey,
    LOG_LEVEL: 'warn',
    DATA_DIR: join(infra.logDir, 'data'),
    // All clients share 127.0.0.1 and reconnect in storms: raise the per-IP and per-user budgets.
    MESSAGE_RATE_LIMIT: '100000000',
    READ_RATE_LIMIT: '100000000',
    RECEIPT_RATE_LIMIT: '100000000',
    MAX_CONNECTIONS_PER_IP: '100000',
    CONNECTION_RATE_PER_IP: '100000000',
    SESSION_RECHECK_MS: String(infra.sessionRecheckMs),
    // The re-check interval is shortened here (token-revoked is timed by it) but sessions keep
    // production's grace while the re-check fails (3 × the 60 s default): a PostgreSQL outage
    // of a few seconds closes no session 1011, as in production.
    SESSION_RECHECK_GRACE_MS: '180000',
    ...extra,
  };
}

/**
 * The two instances of a topology: `pair` = two plain servers; `cluster` = A is the cluster
 * server with 2 workers (resolves once both workers serve). `keepB`: a running B to reuse.
 */
export async function startTopology(infra: Infra, kind: 'pair' | 'cluster', keepB?: Instance): Promise<[Instance, Instance]> {
  const a = kind === 'cluster' ? new Instance('A', 'cluster-server.ts', serverEnv(infra, { CLUSTER_WORKERS: '2' }), infra.logDir) : new Instance('A', 'src/server.ts', serverEnv(infra), infra.logDir);
  const b = keepB ?? new Instance('B', 'src/server.ts', serverEnv(infra), infra.logDir);
  await Promise.all([a.start(), keepB ? Promise.resolve(0) : b.start()]);
  if (kind === 'cluster') {
    const primary = a.proc!.pid;
    const ms = await workersServing(a, () => workerPids(primary), 90_000);
    if (ms === null) throw new Error(`cluster: not every worker of ${workerPids(primary).join(',')} answered /health within 90 s`);
  }
  return [a, b];
}

/**
 * HTTP status and body of GET `url` on a NEW connection (no keep-alive, so a cluster's
 * primary hands each probe to the next worker); status 0 when it fails or takes longer
 * than `timeoutMs`.
 */
export function httpStatus(url: string, timeoutMs = 1000): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (status: number, body: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ status, body });
    };
    const req = httpGet(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => finish(res.statusCode ?? 0, body));
      res.on('error', () => finish(0, ''));
    });
    req.on('error', () => finish(0, ''));
    const timer = setTimeout(() => {
      req.destroy();
      finish(0, '');
    }, timeoutMs);
  });
}

/**
 * Poll `/health` of a cluster instance until every one of `pids` (its workers) has answered
 * at least once (the primary hands connections to workers round-robin, so requests reach
 * each listening worker); resolves ms taken, or null after `timeoutMs`.
 */
export async function workersServing(inst: Instance, pids: () => number[], timeoutMs: number): Promise<number | null> {
  const t0 = Date.now();
  const seen = new Set<number>();
  while (Date.now() - t0 < timeoutMs) {
    const r = await httpStatus(`${inst.httpUrl}/health`, 3000);
    if (r.status === 200) {
      try {
        seen.add(Number((JSON.parse(r.body) as { pid?: number }).pid));
      } catch {
        /* not JSON */
      }
    }
    const want = pids();
    if (want.length > 0 && want.every((p) => seen.has(p))) return Date.now() - t0;
    await new Promise((res) => setTimeout(res, 50));
  }
  return null;
}

/** PIDs of the cluster workers of `primary`: its children running src/server.ts (not e.g. tsx's esbuild service). */
export function workerPids(primary: number): number[] {
  return childPids(primary).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('src/server.ts');
    } catch {
      return false;
    }
  });
}

/** Child PIDs of `pid` (from /proc). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

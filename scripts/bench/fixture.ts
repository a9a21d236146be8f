/**
 * Driver side of the benchmark: private infrastructure (PostgreSQL, Redis), per-run
 * databases seeded with users and follows, the server's environment and process, and the
 * pool of forked load-generator processes.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import winston from 'winston';
import { createPgDb } from '../../src/store/pgDb.ts';
import { applyDevSchema } from '../../src/store/migrate.ts';
import { addFollows, upsertUsers, type DevUser } from '../../src/store/devData.ts';
import { checkpoint, createDatabase, prodNodeFlags, startPostgres, startRedis, startServer, tail, type PostgresService, type RedisService, type ServerProcess, warmWal } from '../lib/services.ts';
import { track, untrack, waitExit } from '../lib/proc.ts';
import type { BenchOptions, ClientHandshake } from './args.ts';
import type { LgReply, LgRequest } from './ipc.ts';
import { FlushProbe } from './flush-probe.ts';

/** Repository root (cwd of the server and load generators). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Shared infrastructure of one `npm run bench`. */
export interface Infra {
  /** PostgreSQL URL to create per-run databases on (or the given database). */
  pgUrl: string;
  /** True when BENCH_DATABASE_URL was given: every run uses that database as is. */
  givenDb: boolean;
  ownPg?: PostgresService;
  redisUrl?: string;
  ownRedis?: RedisService;
  /** base64 of 32 random bytes (JWT_SECRET). */
  jwtSecret: string;
  /** 64 hex chars (CHAT_ENCRYPTION_KEY). */
  encryptionKey: string;
  /** Directory for server logs. */
  logDir: string;
  /** The disk flush probe beside the private PostgreSQL's data directory (or in the temp dir); undefined: off. */
  flushProbe?: FlushProbe;
}

/**
 * Start (or adopt from the environment) PostgreSQL, and the disk flush probe (every
 * `flushProbeMs` ms; 0 = none) on its file system. Redis is started on demand by
 * {@link ensureRedis}. The log directory is removed at exit unless `keepLogs`.
 */
export async function startInfra(keepLogs: boolean, flushProbeMs = 0): Promise<Infra> {
  const logDir = mkdtempSync(join(tmpdir(), 'chat-bench-logs-'));
  if (!keepLogs) process.once('exit', () => rmSync(logDir, { recursive: true, force: true }));
  const given = process.env.BENCH_DATABASE_URL;
  // min_wal_size: checkpoints keep up to 1 GB of spent WAL segments for reuse (see warmWal).
  const ownPg = given ? undefined : await startPostgres({ settings: { shared_buffers: '256MB', min_wal_size: '1GB', max_wal_size: '2GB' } });
  if (ownPg) await warmWal(ownPg.url, WAL_WARMUP_MB);
  return {
    pgUrl: given ?? ownPg!.url,
    givenDb: !!given,
    ownPg,
    redisUrl: process.env.BENCH_REDIS_URL,
    jwtSecret: randomBytes(32).toString('base64'),
    encryptionKey: randomBytes(32).toString('hex'),
    logDir,
    // With BENCH_DATABASE_URL the database's disk is unknown: the temp dir's is probed.
    flushProbe: flushProbeMs > 0 ? FlushProbe.start(ownPg ? dirname(ownPg.dataDir) : logDir, flushProbeMs) : undefined,
  };
}

/** Redis URL: BENCH_REDIS_URL, else a private redis-server started now (once). */
export async function ensureRedis(infra: Infra): Promise<string> {
  if (!infra.redisUrl) {
    infra.ownRedis = await startRedis();
    infra.redisUrl = infra.ownRedis.url;
  }
  return infra.redisUrl;
}

/** Stop what {@link startInfra}/{@link ensureRedis} started; remove logs unless `keepLogs`. */
export async function stopInfra(infra: Infra, keepLogs: boolean): Promise<void> {
  await infra.flushProbe?.stop();
  await infra.ownRedis?.remove();
  await infra.ownPg?.remove();
  if (!keepLogs) rmSync(infra.logDir, { recursive: true, force: true });
}

let dbSeq = 0;

/**
 * WAL written once into the private PostgreSQL before the first run, MB: more than one run
 * writes (a 2,000 DM/s run of 35 s, ~100 MB), so with a {@link checkpoint} before each run no
 * run has to create a WAL segment (see warmWal in ../lib/services.ts). Takes ~3 s.
 */
export const WAL_WARMUP_MB = 300;

/**
 * A fresh database named after `label` (or the given database), with the auth tables.
 * On the private PostgreSQL, a CHECKPOINT first: the previous run's WAL segments are
 * recycled and no timed checkpoint falls inside this run. A given database is left alone.
 */
export async function freshDatabase(infra: Infra, label: string): Promise<string> {
  if (!infra.givenDb) await checkpoint(infra.pgUrl);
  const url = infra.givenDb ? infra.pgUrl : await createDatabase(infra.pgUrl, `bench_${++dbSeq}_${label.replace(/[^a-z0-9]/g, '_')}`.slice(0, 60));
  const db = createPgDb({ connectionString: url, poolSize: 2, statementTimeoutMs: 120_000, connectTimeoutMs: 5000, idleTimeoutMs: 1000, applicationName: 'bench-seed' }, winston.createLogger({ silent: true }));
  try {
    await applyDevSchema(db);
  } finally {
    await db.close();
  }
  return url;
}

/** Upsert users 1..`count` (username `u<id>`) and the given follow edges, in batches. */
export async function seed(url: string, count: number, follows: readonly (readonly [string, string])[]): Promise<void> {
  const db = createPgDb({ connectionString: url, poolSize: 2, statementTimeoutMs: 120_000, connectTimeoutMs: 5000, idleTimeoutMs: 1000, applicationName: 'bench-seed' }, winston.createLogger({ silent: true }));
  try {
    const BATCH = 2000;
    for (let from = 1; from <= count; from += BATCH) {
      const users: DevUser[] = [];
      for (let id = from; id < Math.min(from + BATCH, count + 1); id++) users.push({ id: String(id), username: `u${id}`, firstName: 'Bench', lastName: `User${id}` });
      await upsertUsers(db, users);
    }
    for (let i = 0; i < follows.length; i += 5000) await addFollows(db, follows.slice(i, i + 5000));
  } finally {
    await db.close();
  }
}

/**
 * Server environment for a benchmark run: loopback, the run's database, fresh secrets,
 * quiet logs, and per-user / per-IP limits raised far above the offered load (all load
 * comes from 127.0.0.1 and a few hundred users). `extra` and `--server-env` override.
 */
export function serverEnv(infra: Infra, dbUrl: string, opts: BenchOptions, extra: Record<string, string> = {}): Record<string, string> {
  return {
    HOST: '127.0.0.1',
    DATABASE_URL: dbUrl,
    JWT_SECRET: infra.jwtSecret,
    JWT_SECRET_ENCODING: 'base64',
    CHAT_ENCRYPTION_KEY: infra.encryptionKey,
    LOG_LEVEL: 'warn',
    FOLLOW_POLICY: 'sender_follows',
    MESSAGE_RATE_LIMIT: '100000000',
    ACTION_RATE_LIMIT: '100000000',
    READ_RATE_LIMIT: '100000000',
    RECEIPT_RATE_LIMIT: '100000000',
    MAX_CONNECTIONS_PER_IP: '1000000',
    CONNECTION_RATE_PER_IP: '100000000',
    MAX_CONNECTIONS_PER_USER: String(Math.max(16, opts.devices + 2)),
    MAX_GROUP_SIZE: String(Math.max(1000, opts.groupSize)),
    DATA_DIR: join(infra.logDir, 'data'),
    // Empty = unset for the server, and keeps a REDIS_URL in the repo's .env out of single-process runs.
    REDIS_URL: '',
    ...extra,
    ...opts.serverEnv,
  };
}

/** The limits part of {@link serverEnv}, for the report. */
export const RAISED_LIMITS = ['MESSAGE_RATE_LIMIT', 'ACTION_RATE_LIMIT', 'READ_RATE_LIMIT', 'RECEIPT_RATE_LIMIT', 'MAX_CONNECTIONS_PER_IP', 'CONNECTION_RATE_PER_IP', 'MAX_CONNECTIONS_PER_USER', 'MAX_GROUP_SIZE', 'FOLLOW_POLICY'];

/** The single-process server entry: BENCH_SERVER_ENTRY (relative to the repo root) or `src/server.ts`. */
export const SERVER_ENTRY = process.env.BENCH_SERVER_ENTRY ?? 'src/server.ts';

/** The cluster entry: BENCH_CLUSTER_ENTRY (relative to the repo root) or `cluster-server.ts`. */
export const CLUSTER_ENTRY = process.env.BENCH_CLUSTER_ENTRY ?? 'cluster-server.ts';

/**
 * Start the single-process server (`ctx.serverEntry`) or the cluster entry
 * (`ctx.clusterEntry`), under tsx unless bundled, for run `label`, logging to the infra log dir.
 */
export function bootServer(ctx: BenchContext, env: Record<string, string>, label: string, cluster = false): Promise<ServerProcess> {
  const entry = cluster ? ctx.clusterEntry : ctx.serverEntry;
  const loader = entry.endsWith('.mjs') ? 'none' : 'tsx';
  // A build runs with the node options of `npm run start:prod` (workers inherit them), plus
  // BENCH_SERVER_NODE_FLAGS (for A/B runs of V8 flags, e.g. `--trace-gc`).
  const nodeFlags = loader === 'none' ? [...prodNodeFlags(REPO_ROOT), ...envFlags('BENCH_SERVER_NODE_FLAGS')] : [];
  return startServer(env, { cwd: REPO_ROOT, entry, loader, nodeFlags, logFile: join(ctx.infra.logDir, `${label}.log`), readyTimeoutMs: 90_000 });
}

/** Extra node flags from environment variable `name` (space-separated; none when unset). */
function envFlags(name: string): string[] {
  const v = process.env[name]?.trim();
  return v ? v.split(/\s+/) : [];
}

/** Throw (with the log tail) when the server process is gone: a crash during a run is a failure, not a figure. */
export function assertAlive(server: ServerProcess, when: string): void {
  if (!server.alive()) throw new Error(`server exited ${when}: ${tail(server.logFile, 600)}`);
}

/** Loopback source address number `i` (127.1.x.y), for `--source-ips`. */
export function sourceAddress(i: number, n: number): string | undefined {
  if (n <= 0) return undefined;
  const k = i % n;
  return `127.1.${Math.floor(k / 250) % 250}.${(k % 250) + 1}`;
}

/** Forked load-generator processes, driven by request/response over IPC. */
export class LoadGens {
  private seq = 0;
  private readonly waiters = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  private constructor(private readonly procs: ChildProcess[]) {
    for (const p of procs) {
      p.on('message', (m) => {
        const r = m as LgReply;
        const w = this.waiters.get(r.id);
        if (!w) return;
        this.waiters.delete(r.id);
        clearTimeout(w.timer);
        if (r.ok) w.resolve(r.result);
        else w.reject(new Error(`loadgen: ${r.error}`));
      });
      p.on('exit', (code, sig) => {
        for (const [id, w] of this.waiters) {
          clearTimeout(w.timer);
          w.reject(new Error(`loadgen ${p.pid} exited (${code ?? sig})`));
          this.waiters.delete(id);
        }
      });
    }
  }

  /** Fork `n` load generators and point them at `wsUrl`; their clients' opening handshake per `handshake`. */
  static async start(n: number, wsUrl: string, jwtSecret: string, handshake: ClientHandshake): Promise<LoadGens> {
    const file = fileURLToPath(new URL('./loadgen.ts', import.meta.url));
    const procs: ChildProcess[] = [];
    for (let i = 0; i < n; i++) {
      const p = fork(file, [], { cwd: REPO_ROOT, execArgv: ['--import', 'tsx', ...envFlags('BENCH_LOADGEN_NODE_FLAGS')], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      if (!p.pid) throw new Error('fork loadgen failed');
      track(p.pid, 'loadgen', 'SIGKILL');
      procs.push(p);
    }
    const lg = new LoadGens(procs);
    await lg.all(() => ({ op: 'init', url: wsUrl, jwtSecret, handshake }), 30_000);
    return lg;
  }

  /** Number of processes. */
  get size(): number {
    return this.procs.length;
  }

  /** Send one request to process `i`; resolve its result within `timeoutMs`. */
  request<T>(i: number, body: DistributiveOmit<LgRequest, 'id'>, timeoutMs: number): Promise<T> {
    const p = this.procs[i];
    if (!p || !p.connected) return Promise.reject(new Error(`loadgen ${i} is not running`));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Error(`loadgen ${i}: no answer to ${body.op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      p.send({ ...body, id });
    });
  }

  /** The same kind of request to every process (`make(i)` builds it); results in process order. */
  all<T>(make: (i: number) => DistributiveOmit<LgRequest, 'id'>, timeoutMs: number): Promise<T[]> {
    return Promise.all(this.procs.map((_, i) => this.request<T>(i, make(i), timeoutMs)));
  }

  /** Close the clients and stop every process (killed after 5 s). */
  async stop(): Promise<void> {
    await Promise.allSettled(this.procs.map((_, i) => this.request(i, { op: 'close' }, 5000)));
    await Promise.all(
      this.procs.map(async (p) => {
        if (!p.pid) return;
        await waitExit(p.pid, 5000);
        untrack(p.pid);
      }),
    );
  }
}

/** Omit over each member of a union. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What every scenario gets: the options, the shared infrastructure and the server entry. */
export interface BenchContext {
  opts: BenchOptions;
  infra: Infra;
  /** {@link SERVER_ENTRY}, or its esbuild bundle (`.mjs`, run on plain node) with `--bundle`. */
  serverEntry: string;
  /** {@link CLUSTER_ENTRY}, or its bundle with `--bundle`. */
  clusterEntry: string;
}

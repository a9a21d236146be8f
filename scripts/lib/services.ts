/**
 * Private services for benchmarks and fault injection: a PostgreSQL cluster, a Redis and
 * the chat server itself (./server.ts, re-exported), each on 127.0.0.1 and a free port,
 * each stopped by PID (and killed by PID if the calling script exits or fails; see ./proc.ts).
 *
 * PostgreSQL keeps full durability (fsync on, synchronous_commit on). When this process
 * runs as root, initdb and postgres run as the `postgres` OS user.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chownSync, chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort, isAlive, signalPid, track, untrack, waitExit, waitUntil } from './proc.ts';

import { tail } from './server.ts';

export { freePort, killAllTracked, sleep, waitUntil } from './proc.ts';
export { startServer, rssOf, cpuSecondsOf, prodNodeFlags, tail, type ServerOptions, type ServerProcess } from './server.ts';

/** Directory of the PostgreSQL 15 binaries. */
export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** Options of {@link startPostgres}. */
export interface PostgresOptions {
  /** Base directory (created if missing; default: a new temp dir, removed by `remove()`). */
  dir?: string;
  /** TCP port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** Bound on each start (initdb excluded), ms (default 30 000). */
  startTimeoutMs?: number;
  /** Extra `-c name=value` server settings (durability settings cannot be weakened). */
  settings?: Record<string, string>;
}

/** A running private PostgreSQL cluster. */
export interface PostgresService {
  /** `postgres://postgres:<pw>@127.0.0.1:<port>/postgres`. */
  readonly url: string;
  readonly port: number;
  /** PID of the postmaster (changes on every `start()`; 0 while stopped). */
  readonly pid: number;
  /** The data directory (PGDATA). */
  readonly dataDir: string;
  /** Stop: `fast` = clean shutdown (SIGINT), `immediate` = crash-like (SIGQUIT, recovery on next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Start again on the same port and data directory; resolves when it accepts queries. */
  start(): Promise<void>;
  /** Stop (fast) if running and delete the base directory if this module created it. */
  remove(): Promise<void>;
}

const DURABLE = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on' } as const;

/** uid/gid of the `postgres` OS user when we are root; undefined otherwise (run as ourselves). */
function postgresIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/** argv running `cmd` as the postgres user (setpriv execs in place, so the PID is the command's). */
function asPostgres(ids: { uid: number; gid: number } | undefined, cmd: string, args: string[]): [string, string[]] {
  if (!ids) return [cmd, args];
  return ['setpriv', [`--reuid=${ids.uid}`, `--regid=${ids.gid}`, '--init-groups', '--', cmd, ...args]];
}

/**
 * initdb a new cluster (scram password auth, loopback only) and start it.
 * Resolves when it answers `SELECT 1`. Throws (and cleans up) on failure.
 */
export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresService> {
  const ids = postgresIds();
  const ownDir = !opts.dir;
  const base = opts.dir ?? mkdtempSync(join(tmpdir(), 'chat-pg-'));
  mkdirSync(base, { recursive: true });
  chmodSync(base, 0o700);
  if (ids) chownSync(base, ids.uid, ids.gid);
  const dataDir = join(base, 'data');
  const password = randomBytes(18).toString('base64url');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: base, LANG: 'C', LC_ALL: 'C' };
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    const pwFile = join(base, 'pw');
    writeFileSync(pwFile, password + '\n', { mode: 0o600 });
    if (ids) chownSync(pwFile, ids.uid, ids.gid);
    const [cmd, args] = asPostgres(ids, join(PG_BIN, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8', '--locale=C']);
    try {
      execFileSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    } finally {
      rmSync(pwFile, { force: true });
    }
  } else if (!opts.dir) {
    throw new Error('unreachable: fresh temp dir already initialised');
  }
  const port = opts.port ?? (await freePort());
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  const settings: Record<string, string> = { max_connections: '200', ...opts.settings, listen_addresses: '127.0.0.1', unix_socket_directories: base, ...DURABLE };
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  let child: ChildProcess | undefined;
  let pid = 0;

  const start = async (): Promise<void> => {
    if (pid && isAlive(pid)) throw new Error(`postgres already running (pid ${pid})`);
    const cArgs = ['-D', dataDir, '-p', String(port)];
    for (const [k, v] of Object.entries(settings)) cArgs.push('-c', `${k}=${v}`);
    const [cmd, args] = asPostgres(ids, join(PG_BIN, 'postgres'), cArgs);
    const logFd = openSync(join(base, 'postgres.log'), 'a');
    child = spawn(cmd, args, { env, stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    if (!child.pid) throw new Error('postgres: spawn failed');
    pid = child.pid;
    track(pid, 'postgres', 'SIGQUIT', ownDir ? [base] : []);
    const proc = child;
    try {
      await waitUntil(
        `postgres on port ${port}`,
        async () => {
          if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`postgres exited: ${tail(join(base, 'postgres.log'))}`);
          const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
          c.on('error', () => undefined);
          try {
            await c.connect();
            await c.query('SELECT 1');
            return true;
          } finally {
            await c.end().catch(() => undefined);
          }
        },
        startTimeoutMs,
        100,
      );
    } catch (err) {
      signalPid(pid, 'SIGQUIT');
      await waitExit(pid, 5000);
      untrack(pid);
      pid = 0;
      throw err;
    }
  };

  const stop = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    if (!pid) return;
    const p = pid;
    signalPid(p, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    await waitExit(p, 30_000);
    untrack(p);
    pid = 0;
  };

  await start();
  return {
    url,
    port,
    dataDir,
    get pid() {
      return pid;
    },
    stop,
    start,
    async remove() {
      await stop('fast');
      if (ownDir) rmSync(base, { recursive: true, force: true });
    },
  };
}

/**
 * Create database `name` (lower-case identifier) on the cluster at `url`; resolves to the
 * URL of the new database (same credentials). Throws if it exists.
 */
export async function createDatabase(url: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${JSON.stringify(name)}`);
  await withClient(url, 30_000, (c) => c.query(`CREATE DATABASE ${name}`));
  const u = new URL(url);
  u.pathname = '/' + name;
  return u.toString();
}

/**
 * Run `fn` on a new connection to `url` (statement_timeout `timeoutMs`, ms), closed
 * afterwards. Resolves `fn`'s result; rejects on a connection or query error.
 */
export async function withClient<T>(url: string, timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000, statement_timeout: timeoutMs });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Give a new cluster the spare WAL segments a long-running one has. A fresh cluster has
 * none: each time its WAL crosses into a new 16 MB segment, the committing backend creates
 * and zero-fills that file (and fsyncs it) while holding WALWriteLock, so every commit
 * waits. Measured on this machine at 1,000 DM/s: a new segment every ~12 s, and acks
 * behind it ~5 ms later at p99. A server that has run through a few checkpoints renames
 * old segments into future ones instead (RemoveOldXlogFiles, up to `min_wal_size`).
 *
 * Writes about `mb` MB of WAL (a throwaway table of ~1 KB rows, dropped again), then runs
 * {@link checkpoint}, which recycles those segments. Needs `min_wal_size` ≥ `mb`, or the
 * checkpoint removes what it would recycle. Superuser (CHECKPOINT). Returns the time taken, ms.
 * Throws on a connection or SQL error.
 */
export async function warmWal(url: string, mb: number): Promise<number> {
  const t0 = Date.now();
  // CREATE TABLE AS takes no bind parameters; `rows` is an integer we computed.
  const rows = Math.max(1, Math.round(mb * 1000));
  await withClient(url, 120_000, async (c) => {
    await c.query(`CREATE TABLE wal_warmup AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, ${rows}) AS g`);
    await c.query('DROP TABLE wal_warmup');
  });
  await checkpoint(url);
  return Date.now() - t0;
}

/**
 * CHECKPOINT (superuser): flush dirty buffers, recycle the WAL segments written since the
 * last one (see {@link warmWal}) and restart the `checkpoint_timeout` clock, so no timed
 * checkpoint falls in the next few minutes. Returns the time taken, ms. Throws on error.
 */
export async function checkpoint(url: string): Promise<number> {
  const t0 = Date.now();
  await withClient(url, 120_000, (c) => c.query('CHECKPOINT'));
  return Date.now() - t0;
}

/** A running private Redis (no persistence). */
export interface RedisService {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** PID of redis-server (0 while stopped). */
  readonly pid: number;
  /** Stop (SIGTERM, SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** Start again on the same port (empty: nothing is persisted). */
  start(): Promise<void>;
  /** Stop and delete its log directory. */
  remove(): Promise<void>;
}

/** Answer of a raw `PING` to 127.0.0.1:`port` within `timeoutMs` (true on `+PONG`). */
function redisPing(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('error', () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** Start `redis-server` on 127.0.0.1 (`port` or a free one), no RDB/AOF. Resolves when it answers PING. */
export async function startRedis(opts: { port?: number; startTimeoutMs?: number } = {}): Promise<RedisService> {
  const port = opts.port ?? (await freePort());
  const logDir = mkdtempSync(join(tmpdir(), 'chat-redis-'));
  let pid = 0;
  const start = async (): Promise<void> => {
    if (pid && isAlive(pid)) throw new Error(`redis already running (pid ${pid})`);
    mkdirSync(logDir, { recursive: true });
    const logFd = openSync(join(logDir, 'redis.log'), 'a');
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', logDir], {
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    if (!child.pid) throw new Error('redis-server: spawn failed');
    pid = child.pid;
    track(pid, 'redis', 'SIGKILL', [logDir]);
    try {
      await waitUntil(
        `redis on port ${port}`,
        async () => {
          if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis exited: ${tail(join(logDir, 'redis.log'))}`);
          return redisPing(port, 500);
        },
        opts.startTimeoutMs ?? 10_000,
        50,
      );
    } catch (err) {
      signalPid(pid, 'SIGKILL');
      untrack(pid);
      pid = 0;
      throw err;
    }
  };
  const stop = async (): Promise<void> => {
    if (!pid) return;
    const p = pid;
    signalPid(p, 'SIGTERM');
    await waitExit(p, 5000);
    untrack(p);
    pid = 0;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return pid;
    },
    stop,
    start,
    async remove() {
      await stop();
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}


/**
 * PostgreSQL adapter over a `pg` Pool: statement timeout on every connection, bounded
 * connect and pool wait, and an `error` listener so an idle connection's failure is
 * logged instead of crashing the process. A connection failure is thrown as
 * {@link DbUnavailableError} whose message names the target (`host:port/database`, never
 * the user or password) and the cause (errno or SQLSTATE and the driver's message), so
 * the one log line that carries it says why.
 */
import pg from 'pg';
import type { Logger } from 'winston';
import { DbUnavailableError, sqlState, type Db, type Queryable, type QueryOptions, type QueryResult } from './db.ts';

/** Pool settings (ms). */
export interface PgOptions {
  connectionString?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  ssl?: boolean;
  poolSize: number;
  statementTimeoutMs: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** application_name shown in pg_stat_activity. */
  applicationName?: string;
  /**
   * Honour {@link QueryOptions.prepare}: run those statements as named prepared statements
   * (PostgreSQL parses each distinct SQL text once per connection instead of on every
   * call). Off for poolers that cannot keep prepared statements (PgBouncer in transaction
   * mode before 1.21).
   */
  preparedStatements?: boolean;
  /** Timing callbacks (metrics): pool wait and statement time, ms. */
  observer?: DbObserver;
}

/** Receives database timings (observability/metrics implements it). */
export interface DbObserver {
  /** Time spent waiting for a pool connection, ms. */
  poolWait(ms: number): void;
  /** Time of one statement on its connection, ms. */
  query(ms: number): void;
}

/** Pool occupancy for gauges: connections open, idle, and callers waiting for one. */
export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

// SQLSTATE classes meaning "could not talk to the database" rather than "bad statement".
// 57P01..05: admin shutdown, crash shutdown, cannot connect now, database dropped, idle session timeout.
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '57P04', '57P05', '08000', '08001', '08003', '08004', '08006', '53300']);
const UNAVAILABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** True when `err` says the database was unreachable (not a failed statement). */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof DbUnavailableError) return true;
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  if (e.code && (UNAVAILABLE_STATES.has(e.code) || UNAVAILABLE_ERRNOS.has(e.code))) return true;
  const m = e.message ?? '';
  // "Query read timeout": pg's client-side query_timeout (no answer at all: a black-holed
  // server). "not currently accepting connections": a database closed to connections (55000).
  return /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|not queryable|Query read timeout|not currently accepting connections/i.test(m);
}

/** An 'error' listener that only keeps the event from being unhandled (see createPgDb). */
function ignoreError(): void {}

/**
 * Where the pool connects, for logs: `host:port/database` (from the URL or the DB_* parts),
 * never the user name or password. A connection string that is not a URL gives
 * `"(DATABASE_URL is not a URL)"`.
 */
export function describeTarget(opts: Pick<PgOptions, 'connectionString' | 'host' | 'port' | 'database'>): string {
  let host = opts.host;
  let port = opts.port ? String(opts.port) : undefined;
  let database = opts.database;
  if (opts.connectionString) {
    try {
      const u = new URL(opts.connectionString);
      host = decodeURIComponent(u.hostname) || u.searchParams.get('host') || host;
      port = u.port || port;
      database = decodeURIComponent(u.pathname.replace(/^\//, '')) || database;
    } catch {
      return '(DATABASE_URL is not a URL)';
    }
  }
  return `${host || 'localhost'}:${port || '5432'}/${database || '(default database)'}`;
}

/**
 * One line for a database error: the driver's message (or, for a Node AggregateError with
 * an empty message, its errors' messages) followed by `[CODE]` (errno such as
 * ECONNREFUSED, or SQLSTATE) when the message does not already contain it. `secrets`
 * (password, connection string) are replaced by `***`, as is the user:password part of
 * any URL in the text.
 */
export function describeDbError(err: unknown, secrets: readonly (string | undefined)[] = []): string {
  const e = err as { message?: unknown; code?: unknown; errors?: unknown } | null;
  let msg = typeof e?.message === 'string' ? e.message : String(err);
  if (!msg && Array.isArray(e?.errors)) msg = e.errors.map((x) => (x as Error)?.message).filter(Boolean).join('; ');
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code && !msg.includes(code)) msg = `${msg} [${code}]`;
  for (const s of secrets) if (s && s.length >= 3) msg = msg.split(s).join('***');
  return msg.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1***@');
}

/** The password of a connection string, or undefined. */
function urlPassword(cs: string | undefined): string | undefined {
  try {
    return cs ? decodeURIComponent(new URL(cs).password) || undefined : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Names for prepared statements: one per distinct SQL text, the same in every connection
 * of the pool (pg prepares a name on a connection the first time it runs there). Bounded:
 * past {@link MAX_PREPARED} distinct texts, new ones run unnamed.
 */
class StatementNames {
  private readonly byText = new Map<string, string | null>();
  constructor(private readonly enabled: boolean) {}
  /** The name for `sql`, or undefined to run it unnamed. */
  of(sql: string): string | undefined {
    if (!this.enabled) return undefined;
    let n = this.byText.get(sql);
    if (n === undefined) {
      if (this.byText.size >= MAX_PREPARED) return undefined;
      n = `chat_${this.byText.size + 1}`;
      this.byText.set(sql, n);
    }
    return n ?? undefined;
  }
  /** Never prepare `sql` again (its prepared plan went stale). */
  forget(sql: string): void {
    this.byText.set(sql, null);
  }
}

/** Distinct statement texts prepared at most (our SQL is a fixed set of about 100). */
const MAX_PREPARED = 500;

/** The PostgreSQL {@link Db}: pool gauges, the logger it reports to, and transactions without timeouts. */
export interface PgDb extends Db {
  /** Pool occupancy now. */
  poolStats(): PoolStats;
  /** The logger given to {@link createPgDb} (migrate() logs its lock waits there). */
  readonly logger: Logger;
  /** `host:port/database` of the pool (no credentials), see {@link describeTarget}. */
  readonly target: string;
  /**
   * Like {@link Db.transaction}, on a connection of its own (outside the pool, closed
   * afterwards) with neither `statement_timeout` nor pg's client-side `query_timeout`:
   * for migrations, whose lock wait and DDL may take longer than DB_STATEMENT_TIMEOUT_MS.
   * Connects within DB_CONNECT_TIMEOUT_MS. Throws like {@link Db.transaction}.
   */
  transactionWithoutTimeout<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

/** Create a pool-backed {@link Db}. Does not connect until the first query. */
export function createPgDb(opts: PgOptions, logger: Logger): PgDb {
  const target = describeTarget(opts);
  const secrets = [opts.password, urlPassword(opts.connectionString), opts.connectionString];
  /** An error as one log-safe line (see {@link describeDbError}). */
  const describe = (err: unknown): string => describeDbError(err, secrets);
  /** A connection-class error as {@link DbUnavailableError} naming the target and the cause. */
  const wrap = (err: unknown): unknown =>
    isConnectionError(err) && !(err instanceof DbUnavailableError) ? new DbUnavailableError(`database unavailable at ${target}: ${describe(err)}`, err) : err;
  const connection = {
    connectionString: opts.connectionString,
    host: opts.host,
    port: opts.port,
    database: opts.database,
    user: opts.user,
    password: opts.password,
    ssl: opts.ssl ? { rejectUnauthorized: true } : undefined,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    keepAlive: true,
  };
  const pool = new pg.Pool({
    ...connection,
    max: opts.poolSize,
    idleTimeoutMillis: opts.idleTimeoutMs,
    statement_timeout: opts.statementTimeoutMs || undefined,
    query_timeout: opts.statementTimeoutMs ? opts.statementTimeoutMs + 1000 : undefined,
    application_name: opts.applicationName ?? 'chat-server',
    // No JIT compilation: our statements are short OLTP ones, and a plan whose estimate
    // passes jit_above_cost (get_user_groups of a member of 200 busy groups) spent ~30 ms
    // compiling to run in ~10 (45.5 -> 14.0 ms median). A SET, not a startup `options`, so
    // an `options` in DATABASE_URL (search_path) is kept and PgBouncer, which refuses
    // unknown startup parameters by default, is not. pg-pool awaits this hook before it
    // hands a new connection out, so the SET is never queued behind or ahead of a query
    // (queuing made pg 8 warn that it will be an error in pg 9: audit 7). Its failure
    // (a server without `jit`) is ignored; a dead connection fails its first query.
    onConnect: (client) => client.query('SET jit = off').then(ignoreError, ignoreError),
  });
  pool.on('error', (err) => logger.warn('idle database connection failed', { target, err: describe(err) }));
  // Every connection keeps a listener for its whole life. pg parses a socket read message
  // by message: when one read holds both the ReadyForQuery that completes a checkout and an
  // ErrorResponse (57P01 from pg_terminate_backend, a restart), pg-pool has already removed
  // its idle listener and ours (acquire) is not yet added, and an 'error' event with no
  // listener would crash the process. The idle listener or the checked-out one logs it.
  pool.on('connect', (client) => client.on('error', ignoreError));

  const obs = opts.observer;
  const names = new StatementNames(opts.preparedStatements ?? false);
  const run = async <T>(q: { query: pg.Pool['query'] }, sql: string, params?: readonly unknown[], qo?: QueryOptions): Promise<QueryResult<T>> => {
    const t0 = obs ? performance.now() : 0;
    const values = params as unknown[] | undefined;
    const name = qo?.prepare && values?.length ? names.of(sql) : undefined;
    try {
      const r = name ? await q.query({ name, text: sql, values }) : await q.query(sql, values);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    } catch (err) {
      if (name && sqlState(err) === '0A000') {
        // "cached plan must not change result type": a table behind `SELECT *` changed
        // under a prepared statement (a migration by a newer instance). Stop preparing it.
        names.forget(sql);
        return run<T>(q, sql, params);
      }
      throw wrap(err);
    } finally {
      if (obs) obs.query(performance.now() - t0);
    }
  };
  // A checked-out client has no pool 'error' listener, and pg emits 'error' on it when its
  // socket dies (even mid-query, or right after a result in the same read): without a
  // listener of our own that event would crash the process when PostgreSQL stops.
  const onCheckedOutError = (err: Error) => logger.warn('database connection failed while in use', { target, err: describe(err) });
  /** Return a checked-out connection (`broken`: discard it). */
  const giveBack = (client: pg.PoolClient, broken: boolean): void => {
    client.off('error', onCheckedOutError);
    client.release(broken ? true : undefined);
  };
  /** Check out a connection, timing the wait. */
  const acquire = async (): Promise<pg.PoolClient> => {
    const t0 = obs ? performance.now() : 0;
    try {
      const client = await pool.connect();
      client.on('error', onCheckedOutError);
      return client;
    } catch (err) {
      throw wrap(err);
    } finally {
      if (obs) obs.poolWait(performance.now() - t0);
    }
  };
  /** One statement on a pooled connection (pool wait and statement timed separately). */
  const pooled = async <T>(sql: string, params?: readonly unknown[], qo?: QueryOptions): Promise<QueryResult<T>> => {
    const client = await acquire();
    let broken = false;
    try {
      return await run<T>(client as unknown as pg.Pool, sql, params, qo);
    } catch (err) {
      broken = isConnectionError(err);
      throw err;
    } finally {
      giveBack(client, broken);
    }
  };

  /** BEGIN, `fn`, COMMIT on `client` (ROLLBACK when `fn` fails); never throws: resolves `fn`'s result or error, and whether the connection broke. */
  const inTransaction = async <T>(client: pg.ClientBase, fn: (tx: Queryable) => Promise<T>): Promise<{ out?: T; err?: unknown; broken: boolean }> => {
    const tx: Queryable = { query: (sql, params, qo) => run(client as unknown as pg.Pool, sql, params, qo) };
    try {
      await tx.query('BEGIN');
      const out = await fn(tx);
      await tx.query('COMMIT');
      return { out, broken: false };
    } catch (err) {
      let broken = isConnectionError(err);
      if (!broken) await client.query('ROLLBACK').catch(() => (broken = true));
      return { err, broken };
    }
  };

  return {
    kind: 'pg',
    logger,
    target,
    query: (sql, params, qo) => pooled(sql, params, qo),
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async transaction(fn) {
      const client = await acquire();
      const r = await inTransaction(client, fn);
      giveBack(client, r.broken);
      if ('err' in r) throw r.err;
      return r.out!;
    },
    async transactionWithoutTimeout(fn) {
      const client = new pg.Client({ ...connection, application_name: `${opts.applicationName ?? 'chat-server'} (migrations)` });
      client.on('error', onCheckedOutError);
      try {
        await client.connect();
      } catch (err) {
        await client.end().catch(ignoreError);
        throw wrap(err);
      }
      try {
        const r = await inTransaction(client, fn);
        if ('err' in r) throw r.err;
        return r.out!;
      } finally {
        await client.end().catch(ignoreError);
      }
    },
    async ping(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          pool.query('SELECT 1').then(() => true),
          new Promise<boolean>((res) => (timer = setTimeout(() => res(false), timeoutMs))),
        ]);
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      await pool.end();
    },
  };
}

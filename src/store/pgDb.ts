/**
 * PostgreSQL adapter over a `pg` Pool: statement timeout on every connection, bounded
 * connect and pool wait, and an `error` listener so an idle connection's failure is
 * logged instead of crashing the process.
 */
import pg from 'pg';
import type { Logger } from 'winston';
import { DbUnavailableError, type Db, type Queryable, type QueryResult } from './db.ts';

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
}

// SQLSTATE classes meaning "could not talk to the database" rather than "bad statement".
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '53300']);
const UNAVAILABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** True when `err` says the database was unreachable (not a failed statement). */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof DbUnavailableError) return true;
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  if (e.code && (UNAVAILABLE_STATES.has(e.code) || UNAVAILABLE_ERRNOS.has(e.code))) return true;
  const m = e.message ?? '';
  return /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(m);
}

function wrap(err: unknown): unknown {
  return isConnectionError(err) && !(err instanceof DbUnavailableError) ? new DbUnavailableError('database unavailable', err) : err;
}

/** Create a pool-backed {@link Db}. Does not connect until the first query. */
export function createPgDb(opts: PgOptions, logger: Logger): Db {
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    host: opts.host,
    port: opts.port,
    database: opts.database,
    user: opts.user,
    password: opts.password,
    ssl: opts.ssl ? { rejectUnauthorized: true } : undefined,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    idleTimeoutMillis: opts.idleTimeoutMs,
    statement_timeout: opts.statementTimeoutMs || undefined,
    query_timeout: opts.statementTimeoutMs ? opts.statementTimeoutMs + 1000 : undefined,
    application_name: opts.applicationName ?? 'chat-server',
    keepAlive: true,
  });
  pool.on('error', (err) => logger.warn('idle database connection failed', { err: err.message }));

  const run = async <T>(q: { query: pg.Pool['query'] }, sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> => {
    try {
      const r = await q.query(sql, params as unknown[] | undefined);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    } catch (err) {
      throw wrap(err);
    }
  };

  return {
    kind: 'pg',
    query: (sql, params) => run(pool, sql, params),
    async transaction(fn) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw wrap(err);
      }
      const tx: Queryable = { query: (sql, params) => run(client as unknown as pg.Pool, sql, params) };
      let broken = false;
      try {
        await tx.query('BEGIN');
        const out = await fn(tx);
        await tx.query('COMMIT');
        return out;
      } catch (err) {
        broken = isConnectionError(err);
        if (!broken) await client.query('ROLLBACK').catch(() => (broken = true));
        throw err;
      } finally {
        client.release(broken ? true : undefined);
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

/**
 * Ordered SQL migrations from `sql/NNN_name.sql`, applied at start, each file in its own
 * transaction under a transaction-scoped advisory lock (so concurrent starts of several
 * processes apply each file exactly once), recorded in `chat_migrations`.
 *
 * Timeouts: on PostgreSQL a migration runs on a connection of its own with no
 * statement_timeout (DB_STATEMENT_TIMEOUT_MS bounds the service's queries, not a backfill
 * or an index build), and the wait for another instance's migration is unbounded but
 * logged every {@link MigrateOptions.lockLogEveryMs}. Each statement of a file takes
 * `lock_timeout` {@link MigrateOptions.ddlLockTimeoutMs}: an ALTER waiting for a table
 * lock queues every later query on that table behind it, so the wait is kept shorter than
 * DB_STATEMENT_TIMEOUT_MS (the queued statements of running instances finish instead of
 * timing out) and the file is retried after a pause instead. A failure names the file,
 * the statement and the SQLSTATE ({@link MigrationError}).
 *
 * Before migrating, checks that the auth backend's tables this service reads exist
 * ({@link BACKEND_TABLES}); never touches them (they are in `sql/dev/`, applied only by
 * {@link applyDevSchema}).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sqlState, type Db, type Queryable } from './db.ts';
import { describeDbError, type PgDb } from './pgDb.ts';

/** Absolute path of the repo's `sql/` folder. */
export const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));
/** Advisory lock key for migrations ('chat' in ASCII). */
const MIGRATION_LOCK = 0x63686174;

/**
 * The auth backend's tables that src/store reads and our migrations do not create
 * (sql/dev/backend_schema.sql has them for development).
 */
export const BACKEND_TABLES: readonly string[] = ['users_auth', 'user_profile_info', 'jwt_revocation', 'user_follows', 'blocked_relationships'];

/** A migration file: `version` is its numeric prefix. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Where migrate() reports (a winston Logger fits). */
export interface MigrateLogger {
  info(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
}

/** Options of {@link migrate}; every one has a default for the service. */
export interface MigrateOptions {
  /** Folder of `NNN_name.sql` files (default {@link SQL_DIR}). */
  dir?: string;
  /** Progress and waits; default: the PostgreSQL adapter's logger, else none. */
  logger?: MigrateLogger;
  /** Log "waiting for the migration lock" this often while another instance migrates, ms (default 10,000). */
  lockLogEveryMs?: number;
  /** Poll interval for the migration lock, ms (default 250). */
  lockPollMs?: number;
  /** `lock_timeout` of each migration statement, ms (default 2,000; 0 = wait as long as it takes). */
  ddlLockTimeoutMs?: number;
  /** Attempts of a file that fails on lock_timeout (SQLSTATE 55P03) before giving up (default 30). */
  ddlLockAttempts?: number;
  /** Pause between those attempts, ms (default 1,000). */
  ddlRetryDelayMs?: number;
  /** Tables that must exist before migrating (default {@link BACKEND_TABLES}; [] skips the check). */
  requiredTables?: readonly string[];
}

/**
 * A migration file failed. `message` names the file, the statement (number and first
 * words) and the cause with its SQLSTATE; `code` is that SQLSTATE; `cause` the driver's error.
 */
export class MigrationError extends Error {
  /** SQLSTATE of the cause (e.g. 55P03 lock_not_available), or undefined. */
  readonly code: string | undefined;
  constructor(
    readonly file: string,
    message: string,
    override readonly cause: unknown,
  ) {
    super(message);
    this.name = 'MigrationError';
    this.code = sqlState(cause);
  }
}

/** The backend's tables are missing: this is not the auth backend's database. */
export class MissingTablesError extends Error {
  constructor(
    readonly tables: string[],
    readonly database: string,
  ) {
    super(
      `backend tables missing in database ${database}: ${tables.join(', ')}. This service reads the auth backend's ` +
        `tables and never creates them: is DATABASE_URL (or DB_HOST/DB_NAME) the backend's database? ` +
        `For a development database run npm run db:dev-schema.`,
    );
    this.name = 'MissingTablesError';
  }
}

/** The migration files in order. Throws if two files share a version. */
export function listMigrations(dir = SQL_DIR): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = /^(\d+)_.+\.sql$/.exec(file);
    if (!m) continue;
    out.push({ version: Number(m[1]), name: file, sql: readFileSync(join(dir, file), 'utf8') });
  }
  const seen = new Set<number>();
  for (const m of out) {
    if (seen.has(m.version)) throw new Error(`duplicate migration version ${m.version}`);
    seen.add(m.version);
  }
  return out;
}

/**
 * Throw {@link MissingTablesError} naming every table of `tables` that `db` does not
 * have (looked up on its search_path, as our queries are) and the database
 * (`name at server-address:port`; no user, no password).
 */
export async function checkTables(db: Queryable, tables: readonly string[] = BACKEND_TABLES): Promise<void> {
  if (!tables.length) return;
  const { rows } = await db.query<{ t: string; db: string; addr: string | null }>(
    `SELECT t, current_database() AS db, inet_server_addr()::text || ':' || inet_server_port() AS addr
       FROM unnest($1::text[]) WITH ORDINALITY AS x(t, i) WHERE to_regclass(quote_ident(t)) IS NULL ORDER BY i`,
    [tables],
  );
  if (!rows.length) return;
  const where = `"${rows[0]!.db}"${rows[0]!.addr ? ` at ${rows[0]!.addr.replace(/\/\d+(?=:)/, '')}` : ''}`;
  throw new MissingTablesError(
    rows.map((r) => r.t),
    where,
  );
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Apply pending migrations, each file in its own transaction (files before a failing one
 * stay applied; nothing of the failing one is kept). Resolves to the names applied (empty
 * when up to date). Waits for another instance's migration as long as it takes (logged
 * every `lockLogEveryMs`). Throws {@link MissingTablesError} before migrating when a
 * required table is missing, {@link MigrationError} when a file fails (after
 * `ddlLockAttempts` on lock timeouts), the driver's error (SQLSTATE 55P03) when the
 * bookkeeping on `chat_migrations` is still locked out after as many attempts, and
 * DbUnavailableError when the database cannot be reached.
 */
export async function migrate(db: Db, opts: MigrateOptions = {}): Promise<string[]> {
  const migrations = listMigrations(opts.dir ?? SQL_DIR);
  const pgDb = 'transactionWithoutTimeout' in db ? (db as PgDb) : undefined;
  const logger = opts.logger ?? pgDb?.logger;
  await checkTables(db, opts.requiredTables ?? BACKEND_TABLES);
  const txn = <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> => (pgDb ? pgDb.transactionWithoutTimeout(fn) : db.transaction(fn));
  const lockTimeout = Math.max(0, Math.floor(opts.ddlLockTimeoutMs ?? 2000));
  const attempts = Math.max(1, opts.ddlLockAttempts ?? 30);
  const applied: string[] = [];
  for (;;) {
    let name: string | null = null;
    for (let attempt = 1; ; attempt++) {
      try {
        name = await txn((tx) => applyNext(tx, migrations, lockTimeout, opts, logger));
        break;
      } catch (err) {
        // 55P03 lock_not_available: a file's statement, or the bookkeeping on chat_migrations
        // (another session holding a lock on it), waited past lock_timeout. Both are retried.
        if (sqlState(err) !== '55P03' || attempt >= attempts) {
          if (sqlState(err) === '55P03') {
            (err as Error).message += ` (after ${attempt} attempts with lock_timeout ${lockTimeout} ms: another session holds a lock on a table ${err instanceof MigrationError ? 'this file changes' : 'chat_migrations'})`;
          }
          throw err;
        }
        const file = err instanceof MigrationError ? err.file : 'chat_migrations (bookkeeping)';
        logger?.warn('migration waits for a table lock; retrying', { file, attempt, lockTimeoutMs: lockTimeout, err: (err as Error).message });
        await sleep(opts.ddlRetryDelayMs ?? 1000);
      }
    }
    if (name === null) return applied;
    applied.push(name);
  }
}

/** Take the migration lock (waiting as long as it takes, logged), then apply the first pending file; resolves its name, or null. */
async function applyNext(tx: Queryable, migrations: Migration[], lockTimeoutMs: number, opts: MigrateOptions, logger: MigrateLogger | undefined): Promise<string | null> {
  await tx.query('SET LOCAL statement_timeout = 0');
  await tx.query(`SET LOCAL lock_timeout = ${lockTimeoutMs}`);
  await waitForLock(tx, opts, logger);
  await tx.query(`CREATE TABLE IF NOT EXISTS chat_migrations (
    version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
  const { rows } = await tx.query<{ version: number }>('SELECT version FROM chat_migrations');
  const done = new Set(rows.map((r) => Number(r.version)));
  const m = migrations.find((x) => !done.has(x.version));
  if (!m) return null;
  const t0 = Date.now();
  logger?.info('applying migration', { file: m.name });
  // Simple-protocol multi-statement text: no parameters in migration files.
  const stmts = splitStatements(m.sql);
  for (const [i, stmt] of stmts.entries()) {
    try {
      await tx.query(stmt);
    } catch (err) {
      const what = stmt.replace(/--.*$/gm, '').replace(/\s+/g, ' ').trim().slice(0, 60);
      throw new MigrationError(m.name, `migration ${m.name} failed at statement ${i + 1} of ${stmts.length} (${what}…): ${describeDbError(err)}`, err);
    }
  }
  await tx.query('INSERT INTO chat_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
  logger?.info('migration applied', { file: m.name, ms: Date.now() - t0 });
  return m.name;
}

/** Take the transaction-scoped migration lock, polling; logs every `lockLogEveryMs` while another session holds it. */
async function waitForLock(tx: Queryable, opts: MigrateOptions, logger: MigrateLogger | undefined): Promise<void> {
  const t0 = Date.now();
  const every = opts.lockLogEveryMs ?? 10_000;
  let nextLog = t0 + every;
  let waited = false;
  for (;;) {
    const { rows } = await tx.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(${MIGRATION_LOCK}) AS ok`);
    if (rows[0]?.ok) {
      if (waited) logger?.info('migration lock acquired', { waitedMs: Date.now() - t0 });
      return;
    }
    waited = true;
    if (Date.now() >= nextLog) {
      nextLog += every;
      const { rows: holder } = await tx.query<{ pid: number; app: string | null }>(
        `SELECT l.pid, a.application_name AS app FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.objid = ${MIGRATION_LOCK} AND l.granted LIMIT 1`,
      );
      logger?.warn('waiting for the migration lock: another instance is applying migrations', {
        waitedMs: Date.now() - t0,
        holderPid: holder[0]?.pid,
        holderApplication: holder[0]?.app ?? undefined,
      });
    }
    await sleep(opts.lockPollMs ?? 250);
  }
}

/**
 * Split a SQL file into statements on `;` at line ends, outside `$$` bodies.
 * Our migration files keep to that form (no `;` inside string literals at line ends).
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inDollar = false;
  for (const line of sql.split('\n')) {
    const trimmed = line.replace(/--.*$/, '');
    if ((trimmed.match(/\$\$/g)?.length ?? 0) % 2 === 1) inDollar = !inDollar;
    cur += line + '\n';
    if (!inDollar && /;\s*$/.test(trimmed)) {
      if (cur.replace(/--.*$/gm, '').trim()) out.push(cur.trim());
      cur = '';
    }
  }
  if (cur.replace(/--.*$/gm, '').trim()) out.push(cur.trim());
  return out;
}

/**
 * Create the auth backend's tables (development only: embedded database,
 * `npm run db:dev-schema`, tests). Idempotent.
 */
export async function applyDevSchema(db: Db): Promise<void> {
  const sql = readFileSync(join(SQL_DIR, 'dev/backend_schema.sql'), 'utf8');
  for (const stmt of splitStatements(sql)) await db.query(stmt);
}

/**
 * Audit 8 F5 and F8 against migrate() (src/store/migrate.ts), with test-only migration
 * folders (`dir`) over a private database whose pool has a 300 ms DB_STATEMENT_TIMEOUT_MS:
 * - a migration statement longer than the statement timeout succeeds (its own connection,
 *   statement_timeout 0 and no client-side query timeout);
 * - the wait for another session's migration lock is not bounded by it either, and is logged;
 * - an ALTER blocked by a table lock retries after lock_timeout and then succeeds, or fails
 *   naming the file and SQLSTATE 55P03 when the attempts run out;
 * - a failing file's error names the file, its statement and the SQLSTATE; files before it
 *   stay applied;
 * - a database without the backend's tables is refused before anything is created, naming
 *   the missing tables and the database; on PGlite (dev schema) the check passes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';
import type { Db } from '../../src/store/db.ts';
import { applyDevSchema, BACKEND_TABLES, migrate, MigrationError, MissingTablesError } from '../../src/store/migrate.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { createPgliteDb } from '../../src/store/pgliteDb.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from '../helpers/db.ts';

/** A temp folder with `files` (name → SQL). */
function migrationsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'chat-mig-'));
  for (const [name, sql] of Object.entries(files)) writeFileSync(join(dir, name), sql);
  dirs.push(dir);
  return dir;
}
const dirs: string[] = [];

/** A logger that keeps `[level, message, meta]`. */
function memoryLogger(): { lines: [string, string, Record<string, unknown> | undefined][]; info: (m: string, meta?: Record<string, unknown>) => void; warn: (m: string, meta?: Record<string, unknown>) => void } {
  const lines: [string, string, Record<string, unknown> | undefined][] = [];
  return { lines, info: (m, meta) => lines.push(['info', m, meta]), warn: (m, meta) => lines.push(['warn', m, meta]) };
}

const fast = { lockPollMs: 50, ddlRetryDelayMs: 100 };

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.skipIf(!onPostgres)('migrations on PostgreSQL are not bounded by DB_STATEMENT_TIMEOUT_MS', () => {
  let database: TestDatabase;
  let db: Db;
  let admin: pg.Client;
  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPgDb({ connectionString: database.url, poolSize: 2, statementTimeoutMs: 300, connectTimeoutMs: 5000, idleTimeoutMs: 1000 }, createLogger('error', { silent: true }));
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
  }, 60_000);
  afterAll(async () => {
    await admin?.end().catch(() => {});
    await db?.close();
    await database?.drop();
  });

  it('the pool does enforce the 300 ms statement timeout (the premise)', async () => {
    await expect(db.query('SELECT pg_sleep(1)')).rejects.toThrow(/statement timeout|Query read timeout|database unavailable/);
  });

  it('a migration statement running 1.5 s (5x the statement timeout) is applied', async () => {
    const dir = migrationsDir({ '901_slow.sql': 'SELECT pg_sleep(1.5);\nCREATE TABLE mig_slow (x INT);\n' });
    const log = memoryLogger();
    expect(await migrate(db, { dir, logger: log })).toEqual(['901_slow.sql']);
    const { rows } = await admin.query(`SELECT to_regclass('mig_slow')::text AS t, (SELECT count(*)::int FROM chat_migrations WHERE version = 901) AS n`);
    expect(rows[0]).toEqual({ t: 'mig_slow', n: 1 });
    expect(log.lines.find((l) => l[1] === 'migration applied')?.[2]).toMatchObject({ file: '901_slow.sql' });
  });

  it('waits for another session holding the migration lock longer than the statement timeout, and logs the wait', async () => {
    const dir = migrationsDir({ '902_after_wait.sql': 'CREATE TABLE mig_waited (x INT);\n' });
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT pg_advisory_xact_lock(${0x63686174})`);
    const release = setTimeout(() => void holder.query('COMMIT'), 1500);
    const log = memoryLogger();
    const t0 = Date.now();
    try {
      expect(await migrate(db, { dir, logger: log, lockLogEveryMs: 400, ...fast })).toEqual(['902_after_wait.sql']);
    } finally {
      clearTimeout(release);
      await holder.end().catch(() => {});
    }
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    const waits = log.lines.filter((l) => l[0] === 'warn' && /waiting for the migration lock/.test(l[1]));
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(Number(waits[0]![2]!.holderPid)).toBeGreaterThan(0);
  });

  /**
   * Hold `LOCK TABLE <table> IN <mode> MODE` on another session for 1.2 s while migrating
   * `dir` (lock_timeout 200 ms, 50 attempts); expect `applied`, and the first retry logged for `file`.
   */
  async function migrateWhileLocked(table: string, mode: string, dir: string, applied: string, file: string): Promise<void> {
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${table} IN ${mode} MODE`);
    const release = setTimeout(() => void holder.query('COMMIT'), 1200);
    const log = memoryLogger();
    try {
      expect(await migrate(db, { dir, logger: log, ddlLockTimeoutMs: 200, ddlLockAttempts: 50, ...fast })).toEqual([applied]);
    } finally {
      clearTimeout(release);
      await holder.end().catch(() => {});
    }
    const retries = log.lines.filter((l) => l[1] === 'migration waits for a table lock; retrying');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0]![2]).toMatchObject({ file });
  }

  it('an ALTER blocked by a table lock retries after lock_timeout, then succeeds once the lock is gone', async () => {
    await admin.query('CREATE TABLE mig_locked (x INT)');
    const dir = migrationsDir({ '903_alter.sql': 'ALTER TABLE mig_locked ADD COLUMN y INT;\n' });
    await migrateWhileLocked('mig_locked', 'ACCESS SHARE', dir, '903_alter.sql', '903_alter.sql');
  });

  it('bookkeeping on chat_migrations blocked by another session is retried too, then the file is applied', async () => {
    const dir = migrationsDir({ '900_after_bookkeeping.sql': 'CREATE TABLE mig_after_bookkeeping (x INT);\n' });
    await migrate(db, { dir: migrationsDir({}), ...fast }); // chat_migrations exists
    await migrateWhileLocked('chat_migrations', 'ACCESS EXCLUSIVE', dir, '900_after_bookkeeping.sql', 'chat_migrations (bookkeeping)');
  });

  it('gives up after the attempts with an error naming the file, the statement and SQLSTATE 55P03', async () => {
    await admin.query('CREATE TABLE mig_held (x INT)');
    const dir = migrationsDir({ '904_held.sql': 'ALTER TABLE mig_held ADD COLUMN y INT;\n' });
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE mig_held IN ACCESS SHARE MODE');
    try {
      const err = await migrate(db, { dir, ddlLockTimeoutMs: 100, ddlLockAttempts: 2, ...fast }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect((err as MigrationError).code).toBe('55P03');
      expect((err as Error).message).toMatch(/^migration 904_held\.sql failed at statement 1 of 1 \(ALTER TABLE mig_held ADD COLUMN y INT;…\): .*lock timeout.*\[55P03\].*after 2 attempts/);
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end().catch(() => {});
    }
  });

  it('a failing migration names its file, statement and SQLSTATE; the file before it stays applied, nothing of it is kept', async () => {
    const dir = migrationsDir({
      '905_ok.sql': 'CREATE TABLE mig_ok (x INT);\n',
      '906_bad.sql': '-- creates a table, then fails\nCREATE TABLE mig_bad (x INT);\nSELECT 1 / 0;\n',
    });
    const err = await migrate(db, { dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).file).toBe('906_bad.sql');
    expect((err as Error).message).toBe('migration 906_bad.sql failed at statement 2 of 2 (SELECT 1 / 0;…): division by zero [22012]');
    const { rows } = await admin.query(`SELECT to_regclass('mig_ok')::text AS ok, to_regclass('mig_bad')::text AS bad, array(SELECT version FROM chat_migrations WHERE version >= 905) AS v`);
    expect(rows[0]).toEqual({ ok: 'mig_ok', bad: null, v: [905] });
  });
});

describe.skipIf(!onPostgres)('backend tables on PostgreSQL (F8)', () => {
  const name = `chat_t_nobackend_${process.pid}`;
  let admin: pg.Client;
  let db: Db;
  beforeAll(async () => {
    admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
    const u = new URL(process.env.TEST_DATABASE_URL!);
    u.pathname = '/' + name;
    db = createPgDb({ connectionString: u.toString(), poolSize: 1, statementTimeoutMs: 5000, connectTimeoutMs: 5000, idleTimeoutMs: 1000 }, createLogger('error', { silent: true }));
  }, 60_000);
  afterAll(async () => {
    await db?.close();
    await admin?.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await admin?.end();
  });

  it('refuses a database without them before creating anything, naming each missing table and the database', async () => {
    const err = await migrate(db).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingTablesError);
    expect((err as MissingTablesError).tables).toEqual([...BACKEND_TABLES]);
    expect((err as Error).message).toContain(`backend tables missing in database "${name}" at 127.0.0.1:`);
    expect((err as Error).message).toContain('users_auth, user_profile_info, jwt_revocation, user_follows, blocked_relationships');
    const { rows } = await db.query<{ t: string | null }>(`SELECT to_regclass('chat_migrations')::text AS t`);
    expect(rows[0]!.t).toBeNull();
  });

  it('names only the missing ones, and migrates once they all exist', async () => {
    await applyDevSchema(db);
    await db.query('DROP TABLE jwt_revocation');
    await expect(migrate(db)).rejects.toThrow(/backend tables missing in database "[^"]+" at [^:]+:\d+: jwt_revocation\. /);
    await applyDevSchema(db);
    expect((await migrate(db)).length).toBeGreaterThan(0);
  });
});

describe('on embedded PGlite', () => {
  it('the dev schema passes the backend check; a failing migration names its file', async () => {
    const db = await createPgliteDb(undefined);
    try {
      await expect(migrate(db, { requiredTables: ['users_auth'] })).rejects.toThrow(/backend tables missing in database "[^"]+": users_auth\./);
      await applyDevSchema(db);
      expect((await migrate(db)).length).toBeGreaterThan(0);
      const dir = migrationsDir({ '950_bad.sql': 'SELECT 1 / 0;\n' });
      await expect(migrate(db, { dir })).rejects.toThrow(/^migration 950_bad\.sql failed at statement 1 of 1 .*division by zero \[22012\]/);
    } finally {
      await db.close();
    }
  }, 60_000);
});

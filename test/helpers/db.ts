/**
 * A private database per test file: on PostgreSQL (TEST_DATABASE_URL) a fresh database
 * `chat_t_<random>` with the backend's dev schema, dropped at the end; without it,
 * embedded PGlite in memory (the server creates the schema itself).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createLogger } from '../../src/observability/logger.ts';
import { applyDevSchema } from '../../src/store/migrate.ts';
import { createPgDb } from '../../src/store/pgDb.ts';

/** True when integration tests run on a real PostgreSQL server. */
export const onPostgres = !!process.env.TEST_DATABASE_URL;

/** A created test database: its URL (undefined on PGlite) and a drop function. */
export interface TestDatabase {
  url: string | undefined;
  drop(): Promise<void>;
}

/** Create an empty database with only the backend's tables (the server migrates its own). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = process.env.TEST_DATABASE_URL;
  if (!admin) return { url: undefined, drop: async () => {} };
  const name = `chat_t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  const u = new URL(admin);
  u.pathname = '/' + name;
  const url = u.toString();
  const db = createPgDb({ connectionString: url, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 5000, idleTimeoutMs: 1000 }, createLogger('error', { silent: true }));
  await applyDevSchema(db);
  await db.close();
  return {
    url,
    async drop() {
      const c2 = new pg.Client({ connectionString: admin });
      await c2.connect();
      await c2.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await c2.end();
    },
  };
}

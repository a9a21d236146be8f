/**
 * Audit 8 F7 and F8, against server processes (src/server.ts) whose logs are read:
 * - F7: a database that cannot be reached (closed port, unknown host, a DATABASE_URL that
 *   is not a URL) gives `cannot start` with the cause (errno) and the target host:port/db,
 *   never the password or the URL; the same text is on the DbUnavailableError a query
 *   throws at runtime (which the per-command warning logs);
 * - F8: a database without the auth backend's tables makes the server exit non-zero with
 *   one error naming the missing tables and the database (not its password), having
 *   created none of its own tables there.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';
import { DbUnavailableError } from '../../src/store/db.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { onPostgres } from '../helpers/db.ts';
import { freePort, runToExit } from '../helpers/scaleProcs.ts';

const SECRET = 'Sup3rSecretPassw0rd';


/** The parsed `cannot start` line, or undefined. */
function cannotStart(logs: string[]): { err?: string; message: string } | undefined {
  for (const l of logs) {
    try {
      const j = JSON.parse(l) as { message: string; err?: string };
      if (j.message?.startsWith('cannot start')) return j;
    } catch {
      // not JSON
    }
  }
  return undefined;
}

describe('F7: an unreachable database is logged with its cause, never with the password', () => {
  it('closed port: cannot start names ECONNREFUSED and host:port/db; no password, no URL', async () => {
    const port = await freePort();
    const url = `postgres://chatuser:${SECRET}@127.0.0.1:${port}/chatdb`;
    const { code, logs } = await runToExit({ PORT: String(await freePort()), DATABASE_URL: url, DB_CONNECT_TIMEOUT_MS: '2000' });
    expect(code).toBe(1);
    const line = cannotStart(logs);
    expect(line?.err).toContain('ECONNREFUSED');
    expect(line?.err).toContain(`database unavailable at 127.0.0.1:${port}/chatdb: connect ECONNREFUSED 127.0.0.1:${port}`);
    const all = logs.join('\n');
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain('chatuser');
  }, 60_000);

  it('DB_* settings with a password: the cause and target, no password', async () => {
    const port = await freePort();
    const { code, logs } = await runToExit({ PORT: String(await freePort()), DB_HOST: '127.0.0.1', DB_PORT: String(port), DB_NAME: 'chatdb', DB_USER: 'chatuser', DB_PASS: SECRET, DB_CONNECT_TIMEOUT_MS: '2000' });
    expect(code).toBe(1);
    expect(cannotStart(logs)?.err).toMatch(new RegExp(`at 127\\.0\\.0\\.1:${port}/chatdb: .*ECONNREFUSED`));
    expect(logs.join('\n')).not.toContain(SECRET);
  }, 60_000);

  it('runtime queries: unknown host (ENOTFOUND) and a non-URL DATABASE_URL carry the cause and no secret', async () => {
    const quiet = createLogger('error', { silent: true });
    const cases = [
      { cs: `postgres://chatuser:${SECRET}@nosuchhost.invalid:5432/chatdb`, want: /^database unavailable at nosuchhost\.invalid:5432\/chatdb: getaddrinfo ENOTFOUND nosuchhost\.invalid/ },
      { cs: `garbage${SECRET}`, want: /^database unavailable at \(DATABASE_URL is not a URL\): .*ENOTFOUND/ },
    ];
    for (const c of cases) {
      const db = createPgDb({ connectionString: c.cs, poolSize: 1, statementTimeoutMs: 1000, connectTimeoutMs: 2000, idleTimeoutMs: 1000 }, quiet);
      try {
        const err = await db.query('SELECT 1').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DbUnavailableError);
        expect((err as Error).message).toMatch(c.want);
        expect((err as Error).message).not.toContain(SECRET);
      } finally {
        await db.close();
      }
    }
  }, 30_000);
});

describe.skipIf(!onPostgres)('F8: a database without the backend tables is refused at start', () => {
  const name = `chat_t_nobackend_srv_${process.pid}`;
  let admin: pg.Client;
  beforeAll(async () => {
    admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  });
  afterAll(async () => {
    await admin?.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await admin?.end();
  });

  it('exits 1 with one error naming the missing tables and the database, not its password; creates nothing there', async () => {
    const u = new URL(process.env.TEST_DATABASE_URL!);
    u.pathname = '/' + name;
    u.password = SECRET; // ignored by a trust-auth server; must not be logged
    const { code, logs } = await runToExit({ PORT: String(await freePort()), DATABASE_URL: u.toString() });
    expect(code).toBe(1);
    const line = cannotStart(logs);
    expect(line?.err).toMatch(new RegExp(`^backend tables missing in database "${name}" at [^:]+:\\d+: users_auth, user_profile_info, jwt_revocation, user_follows, blocked_relationships\\. .*DATABASE_URL`));
    expect(logs.join('\n')).not.toContain(SECRET);
    const c = new pg.Client({ connectionString: u.toString() });
    await c.connect();
    try {
      const { rows } = await c.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`);
      expect(rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
  }, 60_000);
});

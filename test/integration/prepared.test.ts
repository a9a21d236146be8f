/**
 * Named prepared statements (store/pgDb.ts, QueryOptions.prepare) on real PostgreSQL:
 * the statement is prepared once per connection and reused; without the option, or with
 * DB_PREPARED_STATEMENTS off, nothing is prepared; a prepared `SELECT *` whose table
 * changed underneath (a newer instance's migration) falls back to unnamed runs instead of
 * failing.
 */
import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyCipher } from '../../src/crypto/cipher.ts';
import { createLogger } from '../../src/observability/logger.ts';
import type { Db } from '../../src/store/db.ts';
import { MessageStore } from '../../src/store/messages.ts';
import { migrate } from '../../src/store/migrate.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from '../helpers/db.ts';

let database: TestDatabase;

// pg 8 warns once per process when a query is queued on a client that is busy (an error in
// pg 9); the session settings below must not cause it. Listening from the file's start
// catches the one warning whichever test causes it.
const warnings: string[] = [];
process.on('warning', (w) => warnings.push(`${w.name}: ${w.message}`));

function open(preparedStatements: boolean): Db {
  return createPgDb(
    { connectionString: database.url, poolSize: 1, statementTimeoutMs: 5000, connectTimeoutMs: 5000, idleTimeoutMs: 10_000, preparedStatements },
    createLogger('error', { silent: true }),
  );
}

/** Names of the statements prepared on the pool's (single) connection. */
async function prepared(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name');
  return rows.map((r) => r.name);
}

describe.skipIf(!onPostgres)('prepared statements (PostgreSQL)', () => {
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('prepares a statement once per connection when asked, and only then', async () => {
    const db = open(true);
    try {
      await db.query('SELECT $1::int + 1 AS n', [1]);
      expect(await prepared(db)).toEqual([]);
      for (let i = 0; i < 3; i++) {
        const { rows } = await db.query<{ n: number }>('SELECT $1::int + 2 AS n', [i], { prepare: true });
        expect(rows[0]!.n).toBe(i + 2);
      }
      expect(await prepared(db)).toHaveLength(1);
    } finally {
      await db.close();
    }
  });

  it('prepares nothing with DB_PREPARED_STATEMENTS off', async () => {
    const db = open(false);
    try {
      await db.query('SELECT $1::int + 3 AS n', [1], { prepare: true });
      expect(await prepared(db)).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('runs the single-message insert prepared; a repeated idempotency key still resolves as a duplicate', async () => {
    const db = open(true);
    try {
      await migrate(db);
      const store = new MessageStore(db);
      const cipher = new BodyCipher([['k1', randomBytes(32)]]);
      const msg = (key: string) => {
        const id = uuidv7();
        return { id, conversationId: 'conv_1_2', kind: 'direct' as const, userA: '1', userB: '2', senderId: '1', recipientId: '2', groupId: null, sealed: cipher.seal('hi', id), replyTo: null, clientMessageId: key, mentions: null, isAnnouncement: false };
      };
      const first = await store.insert(msg('a'));
      const second = await store.insert(msg('b'));
      expect([first.duplicate, second.duplicate]).toEqual([false, false]);
      expect(!first.duplicate && !second.duplicate && [first.seq, second.seq]).toEqual([1, 2]);
      const { rows } = await db.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements');
      expect(rows.filter((r) => /INSERT INTO private_messages/.test(r.statement))).toHaveLength(1);
      const again = await store.insert(msg('a'));
      expect(again.duplicate && again.existing.seq).toBe(1);
      const third = await store.insert(msg('c'));
      expect(!third.duplicate && third.seq).toBe(3);
    } finally {
      await db.close();
    }
  });

  it('falls back to unnamed runs when a prepared SELECT * changes its result type', async () => {
    const db = open(true);
    try {
      await db.query('CREATE TABLE prep_t (id int PRIMARY KEY, a text)');
      await db.query("INSERT INTO prep_t VALUES (1, 'x')");
      const sql = 'SELECT * FROM prep_t WHERE id = $1';
      expect((await db.query(sql, [1], { prepare: true })).rows).toEqual([{ id: 1, a: 'x' }]);
      await db.query('ALTER TABLE prep_t ADD COLUMN b int DEFAULT 7');
      expect((await db.query(sql, [1], { prepare: true })).rows).toEqual([{ id: 1, a: 'x', b: 7 }]);
      expect((await db.query(sql, [1], { prepare: true })).rows).toEqual([{ id: 1, a: 'x', b: 7 }]);
    } finally {
      await db.close();
    }
  });
});

describe.skipIf(!onPostgres)('session settings of pooled connections (PostgreSQL)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('every connection runs with jit off, from its first query; an `options` in DATABASE_URL is kept', async () => {
    const url = new URL(db.url!);
    url.searchParams.set('options', '-c work_mem=7MB');
    const pool = createPgDb({ connectionString: url.toString(), poolSize: 4, statementTimeoutMs: 5000, connectTimeoutMs: 5000, idleTimeoutMs: 10_000 }, createLogger('error', { silent: true }));
    try {
      // Four at once: each on a new connection, each the connection's first query.
      const rows = await Promise.all(
        Array.from({ length: 4 }, () => pool.query<{ jit: string; work_mem: string; pid: number }>("SELECT current_setting('jit') AS jit, current_setting('work_mem') AS work_mem, pg_backend_pid() AS pid, pg_sleep(0.05)")),
      );
      expect(new Set(rows.map((r) => r.rows[0]!.pid)).size).toBe(4);
      for (const r of rows) expect(r.rows[0]).toMatchObject({ jit: 'off', work_mem: '7MB' });
    } finally {
      await pool.close();
    }
  });

  it('the setting queues no statement on a busy connection (pg 8 warns, pg 9 will refuse): queries and health pings on a fresh pool', async () => {
    const pool = createPgDb({ connectionString: db.url!, poolSize: 10, statementTimeoutMs: 5000, connectTimeoutMs: 5000, idleTimeoutMs: 10_000 }, createLogger('error', { silent: true }));
    try {
      // ping() runs on pg's pool.query, which sends in the tick the connection is made.
      const [pings, rows] = await Promise.all([
        Promise.all(Array.from({ length: 20 }, () => pool.ping(5000))),
        Promise.all(Array.from({ length: 30 }, () => pool.query<{ jit: string }>("SELECT current_setting('jit') AS jit"))),
      ]);
      expect(new Set(rows.map((r) => r.rows[0]!.jit))).toEqual(new Set(['off']));
      expect(pings.every(Boolean)).toBe(true);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.includes('already executing a query'))).toEqual([]);
    } finally {
      await pool.close();
    }
  });
});

/**
 * Upgrading a database migrated by an earlier build (src/store/migrate.ts): 005 gives
 * each deletion-for-me row its conversation (history pages read only the viewer's
 * deletions of the conversation paged, src/store/history.ts). Rows written before it are
 * backfilled, and a row inserted without the column (as an instance of the previous build
 * does during a rolling deploy) gets it from the message by trigger. Runs on PostgreSQL
 * or, without TEST_DATABASE_URL, on embedded PGlite. 007 adds the message's seq to those rows
 * (backfilled, then by the same trigger) so a page reads them in seq order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';
import type { Db } from '../../src/store/db.ts';
import { applyDevSchema, listMigrations, migrate, splitStatements } from '../../src/store/migrate.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { createPgliteDb } from '../../src/store/pgliteDb.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';

let database: TestDatabase;
let db: Db;

beforeAll(async () => {
  database = await createTestDatabase();
  if (database.url) {
    db = createPgDb({ connectionString: database.url, poolSize: 2, statementTimeoutMs: 0, connectTimeoutMs: 5000, idleTimeoutMs: 1000 }, createLogger('error', { silent: true }));
  } else {
    db = await createPgliteDb(undefined);
    await applyDevSchema(db);
  }
}, 60_000);
afterAll(async () => {
  await db?.close();
  await database?.drop();
});

/** Apply the migrations below `version` as the earlier build's migrate() did. */
async function migrateBelow(version: number): Promise<void> {
  await db.query(`CREATE TABLE IF NOT EXISTS chat_migrations (
    version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
  for (const m of listMigrations().filter((x) => x.version < version)) {
    for (const stmt of splitStatements(m.sql)) await db.query(stmt);
    await db.query('INSERT INTO chat_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
  }
}

/** A stored message of conversation `conv` (created if new) with sequence `seq`; resolves its id. */
async function message(conv: string, seq: number): Promise<string> {
  await db.query(`INSERT INTO conversations (conversation_id, kind, user_a, user_b) VALUES ($1, 'direct', '1', '2') ON CONFLICT DO NOTHING`, [conv]);
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO private_messages (id, conversation_id, seq, sender_id, recipient_id, key_id, nonce, ciphertext)
     VALUES (gen_random_uuid(), $1, $2, '1', '2', 'k', '\\x00', '\\x00') RETURNING id::text`,
    [conv, seq],
  );
  return rows[0]!.id;
}

describe('005: deletions-for-me name their conversation', () => {
  it('backfills rows from before it, fills rows inserted without it, and is applied once', async () => {
    await migrateBelow(5);
    const old = await message('conv_1_2', 1);
    await db.query('INSERT INTO message_deletions (message_id, user_id) VALUES ($1, $2)', [old, '2']);

    expect(await migrate(db)).toEqual(listMigrations().filter((m) => m.version >= 5).map((m) => m.name));
    expect(await migrate(db)).toEqual([]);

    const fresh = await message('conv_1_2', 2);
    await db.query('INSERT INTO message_deletions (message_id, user_id) VALUES ($1, $2)', [fresh, '2']);
    const { rows } = await db.query<{ message_id: string; conversation_id: string }>('SELECT message_id::text, conversation_id FROM message_deletions ORDER BY deleted_at, message_id');
    expect(rows.map((r) => [r.message_id, r.conversation_id]).sort()).toEqual([old, fresh].map((id) => [id, 'conv_1_2']).sort());
    await expect(db.query('INSERT INTO message_deletions (message_id, user_id, conversation_id) VALUES ($1, $2, NULL)', [await message('conv_1_2', 3), '1'])).resolves.toBeDefined();
    const { rows: nulls } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM message_deletions WHERE conversation_id IS NULL');
    expect(Number(nulls[0]!.n)).toBe(0);
  });
});

describe('006: bounded deletions (indexes for pins and conversation deletions, group purging flag)', () => {
  const indexes = async (): Promise<string[]> =>
    (await db.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE indexname IN ('group_pins_message', 'private_messages_conv_id') ORDER BY indexname`)).rows.map((r) => r.indexname);

  it('upgrades a database from 005: existing groups are not purging; an index pre-created by the operator is kept; applied once', async () => {
    await migrate(db);
    // Back to the state before 006, with a group in it and one index pre-created by hand.
    await db.query('DROP INDEX IF EXISTS group_pins_message');
    await db.query('DROP INDEX IF EXISTS private_messages_conv_id');
    await db.query('ALTER TABLE group_chats DROP COLUMN IF EXISTS purging');
    await db.query('DELETE FROM chat_migrations WHERE version >= 6');
    await db.query(`INSERT INTO group_chats (group_id, group_name, created_by_user_id, owner_id, max_members) VALUES ('group_m6', 'g', '1', '1', 10)`);
    await db.query('CREATE INDEX group_pins_message ON group_pins (message_id)');

    expect(await migrate(db)).toEqual(listMigrations().filter((m) => m.version >= 6).map((m) => m.name));
    expect(await migrate(db)).toEqual([]);
    expect(await indexes()).toEqual(['group_pins_message', 'private_messages_conv_id']);
    const { rows } = await db.query<{ purging: boolean }>(`SELECT purging FROM group_chats WHERE group_id = 'group_m6'`);
    expect(rows[0]!.purging).toBe(false);
    // Every statement of the file can run again (a partial manual preparation is skipped).
    const m6 = listMigrations().find((m) => m.version === 6)!;
    for (const stmt of splitStatements(m6.sql)) await db.query(stmt);
  });
});

describe('007: deletions-for-me carry their message seq', () => {
  it('upgrades a database from 006: existing rows get their seq, new rows get it by trigger, NOT NULL, index; applied once', async () => {
    await migrate(db);
    // Back to the state before 007: no column, no index, 005's trigger function.
    await db.query('DROP INDEX IF EXISTS message_deletions_conv_seq');
    await db.query('ALTER TABLE message_deletions DROP COLUMN IF EXISTS seq');
    const fn005 = splitStatements(listMigrations().find((m) => m.version === 5)!.sql).find((s) => /CREATE OR REPLACE FUNCTION/i.test(s))!;
    await db.query(fn005);
    await db.query('DELETE FROM chat_migrations WHERE version >= 7');
    const old = [await message('conv_7_8', 5), await message('conv_7_8', 6)];
    for (const id of old) await db.query('INSERT INTO message_deletions (message_id, user_id) VALUES ($1, $2)', [id, '8']);

    expect(await migrate(db)).toEqual(listMigrations().filter((m) => m.version >= 7).map((m) => m.name));
    expect(await migrate(db)).toEqual([]);

    // An insert that names neither column (this build's, and the previous build's).
    const fresh = await message('conv_7_8', 7);
    await db.query('INSERT INTO message_deletions (message_id, user_id) VALUES ($1, $2)', [fresh, '8']);
    const { rows } = await db.query<{ message_id: string; conversation_id: string; seq: string }>(
      `SELECT message_id::text, conversation_id, seq::text AS seq FROM message_deletions WHERE user_id = '8'`,
    );
    expect(rows.map((r) => [r.message_id, r.conversation_id, Number(r.seq)]).sort()).toEqual(
      [
        [old[0], 'conv_7_8', 5],
        [old[1], 'conv_7_8', 6],
        [fresh, 'conv_7_8', 7],
      ].sort(),
    );
    const { rows: nulls } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM message_deletions WHERE seq IS NULL');
    expect(Number(nulls[0]!.n)).toBe(0);
    const { rows: col } = await db.query<{ is_nullable: string }>(
      `SELECT is_nullable FROM information_schema.columns WHERE table_name = 'message_deletions' AND column_name = 'seq'`,
    );
    expect(col[0]!.is_nullable).toBe('NO');
    const { rows: idx } = await db.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE indexname = 'message_deletions_conv_seq'`);
    expect(idx).toHaveLength(1);
    // Every statement of the file can run again (a partial manual preparation is skipped).
    const m7 = listMigrations().find((m) => m.version === 7)!;
    for (const stmt of splitStatements(m7.sql)) await db.query(stmt);
  });
});

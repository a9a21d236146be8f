/**
 * Encryption at rest (DESIGN "Storage"): no plaintext body in any column of any table;
 * a tampered body is never shown (and is logged, not fatal); keys rotate without
 * rewriting history (CHAT_ENCRYPTION_KEYS, key_id per row).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import winston from 'winston';
import { dumpTable, listTables } from '../../src/store/devData.ts';
import type { Queryable } from '../../src/store/db.ts';
import type { Frame } from '../helpers/client.ts';
import { createTestDatabase, onPostgres } from '../helpers/db.ts';
import { count, expectError, freshUsers, history, mutualPair, sendOk, syncable } from '../helpers/dmkit.ts';
import { startServer, TEST_ENC_KEY, type TestServer } from '../helpers/server.ts';
import { BodyCipher } from '../../src/crypto/cipher.ts';

/** Every readable rendering of a stored value: text as is, bytes as UTF-8/Latin-1, JSON, and text decoded as base64/hex. */
function renderings(v: unknown): string[] {
  if (v === null || v === undefined) return [];
  if (v instanceof Uint8Array) {
    const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return [b.toString('utf8'), b.toString('latin1'), b.toString('hex'), b.toString('base64')];
  }
  if (v instanceof Date) return [v.toISOString()];
  if (typeof v === 'object') return [JSON.stringify(v)];
  const s = String(v);
  const out = [s];
  if (/^[A-Za-z0-9+/_-]+=*$/.test(s) && s.length >= 8) out.push(Buffer.from(s, 'base64').toString('utf8'));
  if (/^(\\x)?[0-9a-fA-F]+$/.test(s) && s.length % 2 === 0) out.push(Buffer.from(s.replace(/^\\x/, ''), 'hex').toString('utf8'));
  return out;
}

/** Route the server's logger (normally silent in tests) at debug level into memory until `stop()`. */
function captureLogs(server: TestServer): { lines: string[]; stop(): void } {
  const logger = server.app.logger;
  const lines: string[] = [];
  const sink = new winston.transports.Stream({
    stream: new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  });
  const saved = { silent: logger.silent, level: logger.level, transports: [...logger.transports] };
  for (const t of saved.transports) logger.remove(t);
  logger.add(sink);
  logger.silent = false;
  logger.level = 'debug';
  return {
    lines,
    stop() {
      logger.remove(sink);
      for (const t of saved.transports) logger.add(t);
      logger.silent = saved.silent;
      logger.level = saved.level;
    },
  };
}

/** Places (table.column) where `needle` (or its hex / base64 text) appears in the database. */
async function findEverywhere(db: Queryable, needle: string): Promise<string[]> {
  const forms = [needle, Buffer.from(needle).toString('hex'), Buffer.from(needle).toString('base64').replace(/=+$/, '')];
  const hits: string[] = [];
  for (const table of await listTables(db)) {
    for (const row of await dumpTable(db, table)) {
      for (const [col, v] of Object.entries(row)) {
        if (renderings(v).some((r) => forms.some((f) => r.includes(f)))) hits.push(`${table}.${col}`);
      }
    }
  }
  return hits;
}

// One server for the scan and the tamper tests (each starts fresh users).
let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(() => s?.close());

describe('no plaintext at rest', () => {
  it('the scanner itself finds a canary in bytes, text and JSON (control)', async () => {
    const c = `CTRL-${randomBytes(6).toString('hex')}`;
    await s.app.db.query('CREATE TABLE canary_ctrl (b BYTEA, t TEXT, j JSONB)');
    try {
      await s.app.db.query('INSERT INTO canary_ctrl VALUES ($1, NULL, NULL), (NULL, $2, NULL), (NULL, NULL, $3)', [Buffer.from(`xx${c}yy`), `a ${c} b`, JSON.stringify({ k: [c] })]);
      expect((await findEverywhere(s.app.db, c)).sort()).toEqual(['canary_ctrl.b', 'canary_ctrl.j', 'canary_ctrl.t']);
    } finally {
      await s.app.db.query('DROP TABLE canary_ctrl');
    }
  });

  it('a canary sent, quoted, edited in and edited out never appears in any column of any table (nor in debug logs)', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const canary = `CANARY-${randomBytes(8).toString('hex')}`;
    const canary2 = `EDITED-${randomBytes(8).toString('hex')}`;
    const logs = captureLogs(s);
    try {
      await runCanaryScenario();
    } finally {
      logs.stop();
    }
    expect(logs.lines.some((l) => l.includes('capture control'))).toBe(true); // the sink did capture
    for (const line of logs.lines) {
      expect(line).not.toContain(canary);
      expect(line).not.toContain(canary2);
    }

    async function runCanaryScenario(): Promise<void> {
      s.app.logger.debug('capture control', { n: 0 });
      const m1 = await sendOk(ca, b, `hello ${canary} world`);
      const m2 = await sendOk(cb, a, `re: ${canary}`, { replyTo: m1.messageId });
      const quoted = await ca.next('new_private_message');
      expect(quoted.replyTo.content).toBe(`hello ${canary} world`);
      await ca.request({ type: 'edit_message', messageId: m1.messageId, newContent: `now ${canary2}` });
      await ca.request({ type: 'add_reaction', messageId: m2.messageId, reaction: '🔥' });
      const m3 = await sendOk(ca, b, `to be deleted ${canary}`);
      await ca.request({ type: 'delete_message', messageId: m3.messageId, deleteForEveryone: true });
      // The server still reads them back.
      expect((await history(cb, a)).messages.map((m: Frame) => m.content)).toEqual([`now ${canary2}`, `re: ${canary}`]);
      expect(await count(s, 'private_messages', 'conversation_id = $1', [m1.conversationId])).toBe(3);

      expect(await findEverywhere(s.app.db, canary)).toEqual([]);
      expect(await findEverywhere(s.app.db, canary2)).toEqual([]);
      // Each body has its own random 96-bit nonce and a key id.
      const { rows } = await s.app.db.query<{ key_id: string; nonce: Uint8Array }>('SELECT key_id, nonce FROM private_messages WHERE conversation_id = $1 AND NOT is_deleted', [m1.conversationId]);
      expect(rows.map((r) => r.key_id)).toEqual(['k1', 'k1']);
      expect(rows.map((r) => r.nonce.length)).toEqual([12, 12]);
      expect(Buffer.from(rows[0]!.nonce).equals(Buffer.from(rows[1]!.nonce))).toBe(false);
    }
  });
});

describe('tampered bodies', () => {
  it('a body with a flipped byte, a bad nonce or moved to another row is not shown; the server logs it and keeps serving', async () => {
    const errorLog = vi.spyOn(s.app.logger, 'error');
    const unreadable = async () => {
      const text = await s.app.metrics.text();
      const read = (reason: string) => Number(new RegExp(`^chat_bodies_unreadable_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
      return { unknownKey: read('unknown_key'), failed: read('failed_authentication') };
    };
    const before = await unreadable();
    const { a, b, ca, cb } = await mutualPair(s);
    const ms: Frame[] = [];
    for (const t of ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']) ms.push(await sendOk(ca, b, t));
    const id = (i: number): string => ms[i]!.messageId;
    await s.app.db.query('UPDATE private_messages SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) WHERE id = $1', [id(1)]);
    await s.app.db.query('UPDATE private_messages SET ciphertext = set_byte(ciphertext, length(ciphertext) - 1, get_byte(ciphertext, length(ciphertext) - 1) # 128) WHERE id = $1', [id(2)]);
    await s.app.db.query('UPDATE private_messages SET nonce = set_byte(nonce, 11, get_byte(nonce, 11) # 1) WHERE id = $1', [id(3)]);
    // Copy m0's sealed body onto m4: valid ciphertext, wrong row (the id is bound in).
    await s.app.db.query('UPDATE private_messages t SET nonce = f.nonce, ciphertext = f.ciphertext FROM private_messages f WHERE f.id = $1 AND t.id = $2', [id(0), id(4)]);
    await s.app.db.query("UPDATE private_messages SET key_id = 'nokey' WHERE id = $1", [id(5)]);

    const h = await history(cb, a);
    expect(h.messages.map((m: Frame) => m.content)).toEqual(['m0']);
    // One history read: m5's key id is not configured (unknown_key), m1–m4 fail authentication.
    const counted = await unreadable();
    expect(counted.unknownKey - before.unknownKey).toBe(1);
    expect(counted.failed - before.failed).toBe(4);
    const started = await ca.request({ type: 'start_conversation', recipientId: b });
    expect(started.messages.map((m: Frame) => m.content)).toEqual(['m0']);
    const convs = await cb.request({ type: 'get_conversations' });
    expect(convs.type).toBe('conversations');
    expect(convs.conversations[0].lastMessage?.content ?? null).not.toBe('m5');
    // Quoting a tampered message is refused like a missing one.
    await expectError(cb, { type: 'send_private_message', recipientId: a, content: 'q', replyTo: id(1) }, 'NOT_FOUND', 'replyTo');

    // Logged with the message id (never the body), for every tampered row.
    const logged = new Set(errorLog.mock.calls.map((c) => ((c as unknown[])[1] as { messageId?: string } | undefined)?.messageId).filter(Boolean));
    for (const i of [1, 2, 3, 4, 5]) expect(logged.has(id(i)), `logged ${i}`).toBe(true);
    for (const c of errorLog.mock.calls) expect(JSON.stringify(c)).not.toMatch(/"m[0-5]"/);
    errorLog.mockRestore();

    // Still serving.
    expect((await ca.request({ type: 'ping' })).type).toBe('pong');
    const after = await sendOk(ca, b, 'after');
    expect((await history(cb, a)).messages.map((m: Frame) => m.id)).toEqual([id(0), after.messageId]);
  });
});

describe('bodies bound to their row: id, conversation, sender, recipient or group, edit time (audit 10, F3)', () => {
  it('a body moved to another conversation, re-attributed, or rolled back to before its edit is not shown; a body sealed before the binding still opens', async () => {
    const errorLog = vi.spyOn(s.app.logger, 'error');
    const [a, b, c] = await freshUsers(s, 3, [[0, 1], [1, 0], [0, 2], [2, 0]]);
    const [ca, cb, cc] = await Promise.all([s.login(a!), s.login(b!), s.login(c!)]);
    const secret = await sendOk(ca, b!, 'for b only: the door code is 4711');
    const fromA = await sendOk(ca, b!, 'A: signed by a');
    const pay = await sendOk(ca, b!, 'pay 10 EUR');
    const legacy = await sendOk(ca, b!, 'to be resealed the old way');
    const toC = await sendOk(ca, c!, 'hello c');
    const before = (await s.app.db.query<{ nonce: Buffer; ciphertext: Buffer }>('SELECT nonce, ciphertext FROM private_messages WHERE id = $1', [pay.messageId])).rows[0]!;
    expect((await ca.request({ type: 'edit_message', messageId: pay.messageId, newContent: 'do NOT pay' })).type).not.toBe('error');
    expect((await history(cb, a!)).messages.map((m: Frame) => m.content)).toEqual(['for b only: the door code is 4711', 'A: signed by a', 'do NOT pay', 'to be resealed the old way']);

    // Disclosure to a third user: the DM moved into the a–c conversation.
    await s.app.db.query('UPDATE conversations SET last_seq = last_seq + 1 WHERE conversation_id = $1', [toC.conversationId]);
    await s.app.db.query(
      'UPDATE private_messages SET conversation_id = $2, recipient_id = $3, seq = (SELECT last_seq FROM conversations WHERE conversation_id = $2) WHERE id = $1',
      [secret.messageId, toC.conversationId, c],
    );
    // Re-attribution: b appears to have written a's words.
    await s.app.db.query('UPDATE private_messages SET sender_id = recipient_id, recipient_id = sender_id WHERE id = $1', [fromA.messageId]);
    // Edit rollback: the body from before the edit, the row still saying it was edited.
    await s.app.db.query('UPDATE private_messages SET nonce = $2, ciphertext = $3 WHERE id = $1', [pay.messageId, before.nonce, before.ciphertext]);
    // A body sealed the way rows were before the binding (AAD = the message id alone).
    const old = BodyCipher.fromConfig(TEST_ENC_KEY, undefined).seal('sealed before the binding', legacy.messageId);
    await s.app.db.query('UPDATE private_messages SET key_id = $2, nonce = $3, ciphertext = $4 WHERE id = $1', [legacy.messageId, old.keyId, old.nonce, old.ciphertext]);

    expect((await history(cc, a!)).messages.map((m: Frame) => m.content)).toEqual(['hello c']);
    expect((await history(cb, a!)).messages.map((m: Frame) => m.content)).toEqual(['sealed before the binding']);
    expect((await history(ca, b!)).messages.map((m: Frame) => m.content)).toEqual(['sealed before the binding']);
    const logged = new Set(errorLog.mock.calls.map((x) => ((x as unknown[])[1] as { messageId?: string } | undefined)?.messageId).filter(Boolean));
    for (const m of [secret, fromA, pay]) expect(logged.has(m.messageId), m.messageId).toBe(true);
    errorLog.mockRestore();
    // An edit made now is bound to its new edit time and reads back.
    expect((await ca.request({ type: 'edit_message', messageId: legacy.messageId, newContent: 'edited again' })).type).not.toBe('error');
    expect((await history(cb, a!)).messages.map((m: Frame) => [m.content, m.isEdited])).toEqual([['edited again', true]]);
  });
});

describe('undecryptable bodies in sync (audit 10, F1 and F4)', () => {
  it('sync leaves them out (no deletion tombstone) and pages past them; a row not deleted with an empty body is one of them', async () => {
    const errorLog = vi.spyOn(s.app.logger, 'error');
    const { a, b, ca, cb } = await mutualPair(s);
    const ms: Frame[] = [];
    for (const t of ['m0', 'm1', 'm2']) ms.push(await sendOk(ca, b, t));
    const id = (i: number): string => ms[i]!.messageId;
    await syncable(s, ms.map((m) => m.messageId));
    const synced = await cb.request({ type: 'sync' });
    expect(synced.messages.map((m: Frame) => m.content)).toEqual(['m0', 'm1', 'm2']);
    // m1: its key is not configured (a rotation mistake); m2: its body emptied without deleting it.
    await s.app.db.query("UPDATE private_messages SET key_id = 'gone' WHERE id = $1", [id(1)]);
    await s.app.db.query("UPDATE private_messages SET nonce = '\\x', ciphertext = '\\x' WHERE id = $1", [id(2)]);
    // Both change again (a reaction each) after Bob's cursor, and a new message follows.
    for (const i of [1, 2]) expect((await ca.request({ type: 'add_reaction', messageId: id(i), reaction: '👍' })).type).not.toBe('error');
    const m3 = await sendOk(ca, b, 'm3');
    await syncable(s, [id(1), id(2), m3.messageId]);
    const next = await cb.request({ type: 'sync', cursor: synced.cursor });
    expect(next.messages.map((m: Frame) => [m.id ?? m.messageId, m.content ?? null, m.isDeleted ?? false])).toEqual([[m3.messageId, 'm3', false]]);
    // A new device from the start: m0 and m3 only, in pages of one that go past the two.
    const seen: Frame[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page++) {
      const r = await cb.request({ type: 'sync', limit: 1, ...(cursor ? { cursor } : {}) });
      seen.push(...r.messages);
      cursor = r.cursor;
      if (!r.hasMore) break;
    }
    expect(seen.map((m) => [m.content ?? null, m.isDeleted ?? false])).toEqual([['m0', false], ['m3', false]]);
    // History leaves the empty body out too, instead of showing an empty message.
    expect((await history(cb, a)).messages.map((m: Frame) => m.content)).toEqual(['m0', 'm3']);
    const logged = new Set(errorLog.mock.calls.map((c) => ((c as unknown[])[1] as { messageId?: string } | undefined)?.messageId).filter(Boolean));
    expect(logged.has(id(1)) && logged.has(id(2))).toBe(true);
    errorLog.mockRestore();
  });
});

describe('key rotation (CHAT_ENCRYPTION_KEYS)', () => {
  const k1 = randomBytes(32).toString('hex');
  const k2 = randomBytes(32).toString('base64');
  let dataDir: string | undefined;
  let drop: () => Promise<void> = async () => {};
  let env: Record<string, string> = {};
  let database: { url: string | undefined; drop(): Promise<void> };
  let current: TestServer | undefined;

  beforeAll(async () => {
    if (onPostgres) {
      const db = await createTestDatabase();
      drop = db.drop;
      database = { url: db.url, drop: async () => {} };
    } else {
      dataDir = mkdtempSync(join(tmpdir(), 'chat-rotation-'));
      env = { DATA_DIR: dataDir };
      database = { url: undefined, drop: async () => {} };
    }
  });
  afterAll(async () => {
    await current?.close();
    await drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const keyIds = async (s: TestServer): Promise<Record<string, string>> => {
    const { rows } = await s.app.db.query<{ c: string; key_id: string }>('SELECT key_id FROM private_messages ORDER BY seq');
    return Object.fromEntries(rows.map((r, i) => [String(i + 1), r.key_id]));
  };

  it('old messages stay readable after adding a new primary key; new ones use it; a dropped key hides its rows', async () => {
    // 1. Only k1.
    current = await startServer({ ...env, CHAT_ENCRYPTION_KEY: undefined, CHAT_ENCRYPTION_KEYS: `k1:${k1}` }, { database });
    await current.users('500', '501');
    await current.follow(['500', '501'], ['501', '500']);
    let ca = await current.login('500');
    await sendOk(ca, '501', 'old one');
    await sendOk(ca, '501', 'old two');
    expect(await keyIds(current)).toEqual({ 1: 'k1', 2: 'k1' });
    await current.close();
    current = undefined;

    // 2. k2 primary, k1 still known.
    current = await startServer({ ...env, CHAT_ENCRYPTION_KEY: undefined, CHAT_ENCRYPTION_KEYS: `k2:${k2},k1:${k1}` }, { database });
    ca = await current.login('500');
    let cb = await current.login('501');
    expect((await history(cb, '500')).messages.map((m: Frame) => m.content)).toEqual(['old one', 'old two']);
    const n = await sendOk(ca, '501', 'new one');
    expect(n.message.seq).toBe(3);
    const edited = await ca.request({ type: 'edit_message', messageId: (await history(ca, '501')).messages[1].id, newContent: 'old two, re-sealed' });
    expect(edited.type).toBe('message_edited');
    expect(await keyIds(current)).toEqual({ 1: 'k1', 2: 'k2', 3: 'k2' });
    expect((await history(cb, '500')).messages.map((m: Frame) => m.content)).toEqual(['old one', 'old two, re-sealed', 'new one']);
    await current.close();
    current = undefined;

    // 3. k1 retired: its rows can no longer be opened and are left out, the rest reads fine.
    current = await startServer({ ...env, CHAT_ENCRYPTION_KEY: undefined, CHAT_ENCRYPTION_KEYS: `k2:${k2}` }, { database });
    cb = await current.login('501');
    expect((await history(cb, '500')).messages.map((m: Frame) => m.content)).toEqual(['old two, re-sealed', 'new one']);
  }, 180_000); // three server starts (slow on embedded PGlite)
});

/**
 * Group commit (store/insertBatch.ts) on real PostgreSQL: concurrent inserts are stored
 * in multi-row statements with gap-free seq per conversation; idempotency keys repeated
 * inside a batch, or already stored by an earlier one, resolve as duplicates, stored once.
 */
import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyCipher } from '../../src/crypto/cipher.ts';
import { createLogger } from '../../src/observability/logger.ts';
import type { Db } from '../../src/store/db.ts';
import { PREPARED_MAX_ROWS } from '../../src/store/insertBatch.ts';
import { MessageStore, type InsertResult } from '../../src/store/messages.ts';
import { migrate } from '../../src/store/migrate.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from '../helpers/db.ts';

let database: TestDatabase;
let db: Db;
let queries = 0;

describe.skipIf(!onPostgres)('insert batching (PostgreSQL)', () => {
  beforeAll(async () => {
    database = await createTestDatabase();
    db = createPgDb(
      { connectionString: database.url, poolSize: 4, statementTimeoutMs: 5000, connectTimeoutMs: 5000, idleTimeoutMs: 1000, observer: { query: () => queries++, poolWait: () => {} } },
      createLogger('error', { silent: true }),
    );
    await migrate(db);
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  it('commits concurrent inserts together, seq gap-free, duplicates stored once', async () => {
    const store = new MessageStore(db, { maxInFlight: 2, maxBatch: 64 });
    const cipher = new BodyCipher([['k1', randomBytes(32)]]);
    const convs = ['conv_1_2', 'conv_1_3', 'conv_2_3', 'conv_3_4', 'conv_4_5'];
    const jobs: Promise<InsertResult>[] = [];
    queries = 0;
    for (let i = 0; i < 300; i++) {
      const conversationId = convs[i % convs.length]!;
      const [a, b] = conversationId.slice(5).split('_') as [string, string];
      const id = uuidv7();
      // every 10th message repeats the idempotency key of the one before it
      const key = i % 10 === 9 ? `k${i - 1}` : `k${i}`;
      const sender = i % 10 === 9 ? convs[(i - 1) % convs.length]!.slice(5).split('_')[0]! : a;
      jobs.push(
        store.insert({ id, conversationId: i % 10 === 9 ? convs[(i - 1) % convs.length]! : conversationId, kind: 'direct', userA: a, userB: b, senderId: sender, recipientId: b, groupId: null, sealed: cipher.seal(`m${i}`, id), replyTo: null, clientMessageId: key, mentions: null, isAnnouncement: false }),
      );
    }
    const results = await Promise.all(jobs);
    console.log(`insert batching: 300 inserts in ${queries} statements`);
    expect(results.filter((r) => r.duplicate).length).toBe(30);
    // 300 inserts in batches of ≤ 64 plus one lookup per duplicate: far fewer than 300 statements
    expect(queries).toBeLessThan(100);
    const { rows } = await db.query<{ conversation_id: string; seqs: string[]; n: number }>(
      'SELECT conversation_id, array_agg(seq::text ORDER BY seq) AS seqs, count(*)::int AS n FROM private_messages GROUP BY 1',
    );
    const total = rows.reduce((s, r) => s + Number(r.n), 0);
    expect(total).toBe(270);
    for (const r of rows) expect(r.seqs.map(Number)).toEqual(Array.from({ length: Number(r.n) }, (_, i) => i + 1));
    const last = await db.query<{ conversation_id: string; last_seq: string }>('SELECT conversation_id, last_seq::text FROM conversations');
    for (const c of last.rows) expect(Number(c.last_seq)).toBe(Number(rows.find((r) => r.conversation_id === c.conversation_id)!.n));
  });

  it('a batch carrying keys stored earlier (client retries) stores the rest once, seq gap-free', async () => {
    const store = new MessageStore(db, { maxInFlight: 1, maxBatch: 64 });
    const cipher = new BodyCipher([['k1', randomBytes(32)]]);
    const msg = (i: number, key: string) => {
      const id = uuidv7();
      return { id, conversationId: 'conv_7_8', kind: 'direct' as const, userA: '7', userB: '8', senderId: '7', recipientId: '8', groupId: null, sealed: cipher.seal(`r${i}`, id), replyTo: null, clientMessageId: key, mentions: null, isAnnouncement: false };
    };
    const first = await Promise.all(Array.from({ length: 20 }, (_, i) => store.insert(msg(i, `r${i}`))));
    expect(first.every((r) => !r.duplicate)).toBe(true);
    // Retries of r0..r9 mixed with new keys n0..n19, all concurrent (batched together).
    const jobs: Promise<InsertResult>[] = [];
    for (let i = 0; i < 20; i++) {
      jobs.push(store.insert(msg(100 + i, `n${i}`)));
      if (i < 10) jobs.push(store.insert(msg(200 + i, `r${i}`)));
    }
    const second = await Promise.all(jobs);
    const dups = second.filter((r) => r.duplicate);
    expect(dups).toHaveLength(10);
    for (const d of dups) if (d.duplicate) expect(d.existing.clientMessageId).toMatch(/^r\d$/);
    const { rows } = await db.query<{ seqs: string[]; keys: string[] }>(
      "SELECT array_agg(seq::text ORDER BY seq) AS seqs, array_agg(client_message_id ORDER BY seq) AS keys FROM private_messages WHERE conversation_id = 'conv_7_8'",
    );
    expect(rows[0]!.seqs.map(Number)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(new Set(rows[0]!.keys).size).toBe(40);
    const conv = await db.query<{ last_seq: string }>("SELECT last_seq::text FROM conversations WHERE conversation_id = 'conv_7_8'");
    expect(Number(conv.rows[0]!.last_seq)).toBe(40);
  });

  it('batches above and below PREPARED_MAX_ROWS store every column as given (bytea binary, jsonb, nulls)', async () => {
    const store = new MessageStore(db, { maxInFlight: 1, maxBatch: 256 });
    const cipher = new BodyCipher([['k1', randomBytes(32)]]);
    const sent = new Map<string, { text: string; mentions: unknown[] | null; replyTo: string | null; key: string | null; announcement: boolean; recipient: string }>();
    const msg = (i: number) => {
      const id = uuidv7();
      const text = `body ${i} ${'é'.repeat(i % 7)}`;
      const mentions = i % 3 === 0 ? [{ userId: String(i), offset: 0, length: 2 }] : null;
      const replyTo = i % 4 === 0 ? uuidv7() : null;
      const key = i % 5 === 0 ? null : `rt${i}`;
      const recipient = String(10 + (i % 3));
      sent.set(id, { text, mentions, replyTo, key, announcement: i % 2 === 0, recipient });
      return { id, conversationId: `conv_9_${recipient}`, kind: 'direct' as const, userA: '9', userB: recipient, senderId: '9', recipientId: recipient, groupId: null,
        sealed: cipher.seal(text, id), replyTo, clientMessageId: key, mentions, isAnnouncement: i % 2 === 0 };
    };
    // One tick's inserts form one batch: first one above the prepared size, then one below.
    queries = 0;
    for (const n of [PREPARED_MAX_ROWS + 8, 5]) {
      const base = sent.size;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => store.insert(msg(base + i))));
      expect(results.every((r) => !r.duplicate)).toBe(true);
    }
    expect(queries).toBe(2);
    const { rows } = await db.query<{
      id: string; conversation_id: string; recipient_id: string; group_id: string | null; key_id: string; nonce: Buffer; ciphertext: Buffer;
      mentions: unknown[] | null; reply_to: string | null; client_message_id: string | null; is_announcement: boolean;
    }>(
      `SELECT id::text, conversation_id, recipient_id, group_id, key_id, nonce, ciphertext, mentions, reply_to::text, client_message_id, is_announcement
         FROM private_messages WHERE sender_id = '9'`,
    );
    expect(rows).toHaveLength(PREPARED_MAX_ROWS + 8 + 5);
    for (const r of rows) {
      const want = sent.get(r.id)!;
      expect(cipher.open({ keyId: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext }, r.id)).toBe(want.text);
      expect(r.mentions).toEqual(want.mentions);
      expect(r.reply_to).toBe(want.replyTo);
      expect(r.client_message_id).toBe(want.key);
      expect(r.is_announcement).toBe(want.announcement);
      expect([r.conversation_id, r.recipient_id, r.group_id, r.key_id]).toEqual([`conv_9_${want.recipient}`, want.recipient, null, 'k1']);
    }
    const seqs = await db.query<{ n: number; max: string }>("SELECT count(*)::int AS n, max(seq)::text AS max FROM private_messages WHERE sender_id = '9' GROUP BY conversation_id");
    for (const c of seqs.rows) expect(Number(c.max)).toBe(c.n);
  });
});

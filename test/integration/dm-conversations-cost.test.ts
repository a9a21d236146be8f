/**
 * `get_conversations` reads about the page, not every conversation of the caller (audit 6,
 * F6): a user with thousands of DM conversations gets the newest page from ordered reads of
 * the conversations_user_a / _b indexes, the last message and unread count computed only
 * for those. Order, paging and the skipping of conversations with nothing visible are
 * checked against the full list (order: millisecond of `updated_at` DESC, then
 * conversation id DESC).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { freshUsers } from '../helpers/dmkit.ts';
import { planCost, startMeasuredServer, type QueryRecorder } from '../helpers/queryCost.ts';
import type { TestServer } from '../helpers/server.ts';

let s: TestServer;
let recorder: QueryRecorder;
beforeAll(async () => {
  ({ s, recorder } = await startMeasuredServer({ FOLLOW_POLICY: 'none' }));
});
afterAll(() => s?.close());

/**
 * `n` DM conversations of user `u` with fresh ids (half with u as user_a, half as user_b;
 * a message from the other side each), conversation i updated at `at(i)`.
 * Resolves the conversation ids.
 */
async function seed(u: string, n: number, at: (i: number) => string): Promise<string[]> {
  const db = s.app.db;
  const base = 9_000_000_000 + Math.floor(Math.random() * 1e9) * 1000;
  const others = Array.from({ length: n }, (_, i) => String(base + i));
  const pairs = others.map((o, i) => (i % 2 === 0 ? [u, o] : [o, u]).sort() as [string, string]);
  const ids = pairs.map(([a, b]) => `conv_${a}_${b}`);
  await db.query(
    `INSERT INTO conversations (conversation_id, kind, user_a, user_b, last_seq, last_message_at, updated_at)
     SELECT id, 'direct', a, b, 1, ts, ts FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS t(id, a, b, ts)`,
    [ids, pairs.map((p) => p[0]), pairs.map((p) => p[1]), ids.map((_, i) => at(i))],
  );
  await db.query(
    `INSERT INTO private_messages (id, conversation_id, seq, sender_id, recipient_id, key_id, nonce, ciphertext)
     SELECT ($3::uuid[])[n], id, 1, o, $2, 'x', '\\x00', '\\x00' FROM unnest($1::text[], $4::text[]) WITH ORDINALITY AS t(id, o, n)`,
    [ids, u, ids.map(() => randomUUID()), others],
  );
  await db.query('ANALYZE conversations');
  await db.query('ANALYZE private_messages');
  return ids;
}

/** All pages of `limit` through `get_conversations`; resolves the conversation ids in order. */
async function walk(c: Awaited<ReturnType<TestServer['login']>>, limit: number): Promise<string[]> {
  const seen: string[] = [];
  let before: string | undefined;
  for (;;) {
    const page = await c.request({ type: 'get_conversations', limit, ...(before ? { before } : {}) });
    expect(page.type).toBe('conversations');
    seen.push(...page.conversations.map((x: Frame) => x.conversationId as string));
    if (!page.hasMore) return seen;
    before = page.nextBefore;
  }
}

describe('get_conversations cost (F6)', () => {
  it("a page's rows read do not grow with the number of conversations (3,000)", async () => {
    const [u] = await freshUsers(s, 1);
    // One second apart, newest last.
    const ids = await seed(u!, 3000, (i) => new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString());
    const c = await s.login(u!);
    const { value: page, queries: rec } = await recorder.during(() => c.request({ type: 'get_conversations', limit: 50 }));
    expect(page.conversations.map((x: Frame) => x.conversationId)).toEqual([...ids].reverse().slice(0, 50));
    expect(page.hasMore).toBe(true);
    const q = rec.filter((x) => /FROM conversations/.test(x.sql));
    expect(q).toHaveLength(1);
    const rowsRead = await planRows(q[0]!.sql, q[0]!.params);
    if (process.env.SHOW_PLAN) console.log('rows read', rowsRead);
    // The whole list would read 3,000 conversations and their messages (about 9,000 rows).
    expect(rowsRead).toBeLessThan(1000);
    // A deep page costs the same.
    const deep = await c.request({ type: 'get_conversations', limit: 50, before: page.nextBefore });
    expect(deep.conversations[0].conversationId).toBe(ids[ids.length - 51]);
  });

  it('same order and pages as the full order, with ties within a millisecond and conversations with nothing visible skipped', async () => {
    const [u] = await freshUsers(s, 1);
    // 120 conversations in 30 milliseconds, four to a millisecond, at microsecond offsets
    // that do not follow the conversation ids.
    const t0 = Date.UTC(2026, 1, 1);
    const at = (i: number): string => {
      const ms = t0 + Math.floor(i / 4);
      const micro = [700, 100, 900, 300][i % 4]!;
      return new Date(ms).toISOString().replace('Z', String(micro).padStart(3, '0') + 'Z');
    };
    const ids = await seed(u!, 120, at);
    // u deleted 40 of them for themselves (runs of the newest, so whole batches are skipped).
    const hidden = ids.filter((_, i) => i >= 60 && i < 100);
    await s.app.db.query(
      `INSERT INTO conversation_deletions (conversation_id, user_id, up_to_seq) SELECT id, $2, 1 FROM unnest($1::text[]) id`,
      [hidden, u],
    );
    const keyed = ids.map((id, i) => ({ id, ms: t0 + Math.floor(i / 4) }));
    const expected = keyed
      .filter((x) => !hidden.includes(x.id))
      .sort((a, b) => b.ms - a.ms || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
      .map((x) => x.id);
    const c = await s.login(u!);
    for (const limit of [1, 3, 7, 50, 100]) expect(await walk(c, limit)).toEqual(expected);
  });
});

/** Rows the plan of `sql` read (./../helpers/queryCost.ts). */
async function planRows(sql: string, params: readonly unknown[]): Promise<number> {
  return (await planCost(s.app.db, sql, params)).rowsRead;
}

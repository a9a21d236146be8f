/**
 * History page cost (audit 2 of 2026-12-05, F5; PROTOCOL §6 `get_private_messages`, §7
 * `get_group_messages`): a page must not read the whole conversation. Before the fix every
 * page ran count(*) over all of the conversation's messages (with a NOT EXISTS probe per
 * row), and an `offset` page skipped its offset row by row, so a page of a 300 000-message
 * conversation took 80–240 ms of database time.
 *
 * Cost is measured as rows read, not time: every statement the server runs while it
 * answers one request is recorded and re-run under EXPLAIN ANALYZE, and the rows its scan
 * nodes returned or filtered out are summed. That count is deterministic on PostgreSQL and
 * PGlite alike; before the fix it was at least the conversation's size for every page.
 *
 * Placement is checked against a reference: the store's pages (seqs, hasMore, total)
 * against one plain SQL listing of what the viewer may see, for offsets across the whole
 * range, viewers with per-message deletions, a conversation deletion, group blocks, and
 * more hidden messages than HIDDEN_SCAN_CAP (where `total` is a lower bound).
 * Seeded rows have no decryptable body, so replies leave them out (as the probe in
 * .tmp/audit2 does); message contents are checked on real messages sent on top.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import { HIDDEN_SCAN_CAP } from '../../src/store/history.ts';
import type { Queryable } from '../../src/store/db.ts';
import type { Frame } from '../helpers/client.ts';
import { onPostgres } from '../helpers/db.ts';
import { freshUsers, sendOk, syncable } from '../helpers/dmkit.ts';
import { makeGroup, ok, say } from '../helpers/groupkit.ts';
import { planCost, recordQueries, type QueryRecorder } from '../helpers/queryCost.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

/** Seeded messages per conversation (PGlite is much slower to seed and scan). */
const N = onPostgres ? 100_000 : 20_000;
/** A page may read at most this many rows: before the fix each page read at least N. */
const MAX_ROWS_READ = N / 10;

let s: TestServer;
let db: Queryable;
let recorder: QueryRecorder;

beforeAll(async () => {
  s = await startServer({ PROTOCOL_ERROR_LIMIT: '100000' });
  db = s.app.db;
  // Record what the server runs while a request is measured (same object the stores use).
  recorder = recordQueries(db);
}, 60_000);
afterAll(() => s?.close());

/** Send `frame` and resolve its reply and the rows read by the statements run to answer it. */
async function measured(c: { request(f: Record<string, unknown>, t?: number): Promise<Frame> }, frame: Record<string, unknown>): Promise<{ r: Frame; rowsRead: number }> {
  const { value: r, queries } = await recorder.during(() => c.request(frame, 15_000));
  let rowsRead = 0;
  for (const q of queries) rowsRead += (await planCost(db, q.sql, q.params)).rowsRead;
  return { r, rowsRead };
}

/** Seed seqs from..to of `conv` as undecryptable rows; `sender(g)` / `deleted(g)` SQL expressions of the seq g. */
async function seed(conv: string, from: number, to: number, cols: { sender: string; recipient: string; groupId: string | null; deleted: string }): Promise<void> {
  await db.query(
    `INSERT INTO private_messages (id, conversation_id, seq, sender_id, recipient_id, group_id, key_id, nonce, ciphertext, is_read, is_deleted)
     SELECT gen_random_uuid(), $1, g, ${cols.sender}, ${cols.recipient}, $4, 'x', '\\x00', '\\x00', true, ${cols.deleted}
     FROM generate_series($2::int, $3::int) g`,
    [conv, from, to, cols.groupId],
  );
  await db.query('UPDATE conversations SET last_seq = $2 WHERE conversation_id = $1', [conv, to]);
}

/** What `viewer` may see of `conv`, newest first (the reference for placement). */
async function visibleSeqs(conv: string, viewer: string, exclude: string[] = []): Promise<number[]> {
  const { rows } = await db.query<{ seq: string }>(
    `SELECT m.seq::text AS seq FROM private_messages m WHERE m.conversation_id = $1 AND NOT m.is_deleted
       AND m.seq > COALESCE((SELECT up_to_seq FROM conversation_deletions cd WHERE cd.conversation_id = $1 AND cd.user_id = $2), 0)
       AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = $2)
       AND NOT (m.sender_id = ANY($3::text[]))
     ORDER BY m.seq DESC`,
    [conv, viewer, exclude],
  );
  return rows.map((r) => Number(r.seq));
}

/** The store's pages for `viewer` match the reference at offsets across the range and with `before`. */
async function expectPlacement(conv: string, viewer: string, exclude: string[], exactTotal: boolean): Promise<void> {
  const ref = await visibleSeqs(conv, viewer, exclude);
  const history = s.app.chat.deps.stores.history;
  const L = ref.length;
  const limit = 7;
  for (const offset of [0, 1, 6, 7, 8, 99, 1000, Math.floor(L / 2), L - 8, L - 7, L - 6, L - 1, L, L + 3, 1_000_000_000]) {
    if (offset < 0) continue;
    const p = await history.page(conv, viewer, { limit, offset }, exclude);
    const want = ref.slice(offset, offset + limit).reverse();
    expect(p.messages.map((m) => m.seq), `offset ${offset}`).toEqual(want);
    expect(p.hasMore, `hasMore at offset ${offset}`).toBe(offset + limit < L);
    expect(p.totalExact).toBe(exactTotal);
    if (exactTotal) expect(p.total).toBe(L);
    else expect(p.total).toBeLessThanOrEqual(L);
  }
  for (const i of [0, 3, Math.floor(L / 3), L - 2]) {
    const before = ref[i]!;
    const p = await history.page(conv, viewer, { limit, before }, exclude);
    expect(p.messages.map((m) => m.seq), `before ${before}`).toEqual(ref.slice(i + 1, i + 1 + limit).reverse());
    expect(p.hasMore).toBe(i + 1 + limit < L);
  }
}

describe('history page cost does not grow with the conversation', () => {
  it('DM: offset 0, a deep offset, offset 1e9 and before each read a bounded number of rows; total stays exact; pages land exactly', async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const ca = await s.login(a!);
    const first = await sendOk(ca, b!, 'first');
    const conv = first.conversationId as string;
    // seq 2..N+1: every 97th deleted for everyone; a deleted every 101st for themselves,
    // b every 89th; b deleted the conversation up to seq 1000.
    await seed(conv, 2, N + 1, { sender: `CASE WHEN g % 2 = 0 THEN '${a}' ELSE '${b}' END`, recipient: `CASE WHEN g % 2 = 0 THEN '${b}' ELSE '${a}' END`, groupId: null, deleted: 'g % 97 = 0' });
    await db.query(`INSERT INTO message_deletions (message_id, user_id) SELECT id, $2 FROM private_messages WHERE conversation_id = $1 AND seq % 101 = 0`, [conv, a]);
    await db.query(`INSERT INTO message_deletions (message_id, user_id) SELECT id, $2 FROM private_messages WHERE conversation_id = $1 AND seq % 89 = 0`, [conv, b]);
    await db.query('INSERT INTO conversation_deletions (conversation_id, user_id, up_to_seq) VALUES ($1, $2, 1000)', [conv, b]);
    const real: Frame[] = [];
    for (let i = 0; i < 5; i++) real.push(await sendOk(ca, b!, `top${i}`));
    await db.query('ANALYZE private_messages');
    await db.query('ANALYZE message_deletions');
    const refA = await visibleSeqs(conv, a!);

    const top = await measured(ca, { type: 'get_private_messages', recipientId: b, limit: 50 });
    expect(top.r).toMatchObject({ type: 'private_message_history', total: refA.length, hasMore: true, offset: 0, limit: 50 });
    expect(top.r.messages.map((m: Frame) => m.content)).toEqual(['top0', 'top1', 'top2', 'top3', 'top4']);
    expect(top.r.messages.map((m: Frame) => m.id)).toEqual(real.map((m) => m.messageId));
    const deep = await measured(ca, { type: 'get_private_messages', recipientId: b, limit: 50, offset: refA.length - 10 });
    expect(deep.r).toMatchObject({ total: refA.length, hasMore: false, offset: refA.length - 10 });
    const far = await measured(ca, { type: 'get_private_messages', conversationId: conv, limit: 100, offset: 1_000_000_000 });
    expect(far.r).toMatchObject({ messages: [], total: refA.length, hasMore: false });
    const before = await measured(ca, { type: 'get_private_messages', recipientId: b, limit: 50, before: 500 });
    expect(before.r).toMatchObject({ total: refA.length, hasMore: true });
    const started = await measured(ca, { type: 'start_conversation', recipientId: b });
    expect(started.r.messages.map((m: Frame) => m.content)).toEqual(['top0', 'top1', 'top2', 'top3', 'top4']);
    const read = { top: top.rowsRead, deep: deep.rowsRead, far: far.rowsRead, before: before.rowsRead, start: started.rowsRead };
    for (const [k, v] of Object.entries(read)) expect(v, `${k}: rows read ${JSON.stringify(read)}`).toBeLessThan(MAX_ROWS_READ);

    await expectPlacement(conv, a!, [], true);
    await expectPlacement(conv, b!, [], true);
  }, 60_000);

  it("a page does not read the viewer's deletions-for-me in other conversations; they stay hidden where they belong", async () => {
    const [a, b, c] = await freshUsers(s, 3, [
      [0, 1],
      [1, 0],
      [0, 2],
      [2, 0],
    ]);
    const ca = await s.login(a!);
    const conv = (await sendOk(ca, b!, 'first')).conversationId as string;
    await seed(conv, 2, N + 1, { sender: `'${b}'`, recipient: `'${a}'`, groupId: null, deleted: 'false' });
    // a deleted every 20th message of the a-b conversation for themselves (N / 20 rows,
    // under HIDDEN_SCAN_CAP so that conversation's total stays exact).
    await db.query(`INSERT INTO message_deletions (message_id, user_id) SELECT id, $2 FROM private_messages WHERE conversation_id = $1 AND seq % 20 = 0`, [conv, a]);
    const other = [await sendOk(ca, c!, 'one'), await sendOk(ca, c!, 'two')];
    await db.query('ANALYZE message_deletions');
    const page = await measured(ca, { type: 'get_private_messages', recipientId: c, limit: 50 });
    expect(page.r).toMatchObject({ type: 'private_message_history', total: 2, hasMore: false });
    expect(page.r.messages.map((m: Frame) => m.id)).toEqual(other.map((m) => m.messageId));
    expect(page.rowsRead, `rows read for a 2-message conversation with ${N / 20} deletions elsewhere`).toBeLessThan(100);
    await expectPlacement(conv, a!, [], true);
  }, 60_000);

  it('group: a member with a blocked sender pages at bounded cost with exact total; past HIDDEN_SCAN_CAP hidden messages pages still land exactly', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [x, y] = g.members;
    await addBlock(db, y!.id, x!.id);
    const firstMsg = await say(g.owner, g.groupId, 'first');
    // seq 2..N+1: every 50th from x (hidden from y), the rest from the owner; every 97th deleted for everyone.
    await seed(g.groupId, firstMsg.seq + 1, N + 1, { sender: `CASE WHEN g % 50 = 0 THEN '${x!.id}' ELSE '${g.owner.id}' END`, recipient: 'NULL', groupId: g.groupId, deleted: 'g % 97 = 0' });
    await db.query(`INSERT INTO message_deletions (message_id, user_id) SELECT id, $2 FROM private_messages WHERE conversation_id = $1 AND seq % 101 = 0`, [g.groupId, y!.id]);
    const top = await say(g.owner, g.groupId, 'top');
    await db.query('ANALYZE private_messages');
    const refY = await visibleSeqs(g.groupId, y!.id, [x!.id]);

    const p0 = await measured(y!.c, { type: 'get_group_messages', groupId: g.groupId, limit: 50 });
    expect(p0.r).toMatchObject({ type: 'group_messages', total: refY.length, hasMore: true });
    expect(p0.r.messages.map((m: Frame) => m.id)).toEqual([top.id]);
    const deep = await measured(y!.c, { type: 'get_group_messages', groupId: g.groupId, limit: 50, offset: refY.length - 20 });
    expect(deep.r).toMatchObject({ total: refY.length, hasMore: false });
    const read = { top: p0.rowsRead, deep: deep.rowsRead };
    for (const [k, v] of Object.entries(read)) expect(v, `${k}: rows read ${JSON.stringify(read)}`).toBeLessThan(MAX_ROWS_READ);
    await expectPlacement(g.groupId, y!.id, [x!.id], true);
    await expectPlacement(g.groupId, x!.id, [], true);

    // A second group where x wrote every 2nd message: more than HIDDEN_SCAN_CAP hidden from y.
    const g2 = await ok(g.owner.c, { type: 'create_group', groupName: 'Busy', initialMembers: [x!.id, y!.id] }, 'group_created');
    const busy = g2.groupId as string;
    const m1 = await say(g.owner, busy, 'first');
    const n2 = 2 * HIDDEN_SCAN_CAP + 4_000;
    await seed(busy, m1.seq + 1, n2, { sender: `CASE WHEN g % 2 = 0 THEN '${x!.id}' ELSE '${g.owner.id}' END`, recipient: 'NULL', groupId: busy, deleted: 'false' });
    await db.query('ANALYZE private_messages');
    await expectPlacement(busy, y!.id, [x!.id], false);
    await expectPlacement(busy, x!.id, [], true);
  }, 60_000);
});

describe('hidden messages beyond HIDDEN_SCAN_CAP are not all read on every page (audit 6, F5)', () => {
  /** Hidden messages of each kind below: twice the cap, so a page lists only the newest cap + 1 of them. */
  const HIDDEN = 2 * HIDDEN_SCAN_CAP;
  /** Conversation size: HIDDEN hidden, a quarter as many visible. */
  const M = HIDDEN + HIDDEN / 4;
  /**
   * A page reads at most cap + 1 hidden seqs of each kind (the group's second blocked
   * sender has M / 15 in all), then its own rows; before the fix it read every hidden
   * message, deletions-for-me twice (the deletion, then its message) and the whole
   * conversation for the page itself.
   */
  const PAGE_BOUND = HIDDEN_SCAN_CAP + 3_000;

  it("DM: 20,000 deletions-for-me in the conversation; each page reads at most the cap's worth of them", async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const ca = await s.login(a!);
    const conv = (await sendOk(ca, b!, 'first')).conversationId as string;
    await seed(conv, 2, M + 1, { sender: `'${b}'`, recipient: `'${a}'`, groupId: null, deleted: 'false' });
    // a deleted 4 of every 5 messages for themselves.
    await db.query(`INSERT INTO message_deletions (message_id, user_id) SELECT id, $2 FROM private_messages WHERE conversation_id = $1 AND seq % 5 <> 0 AND seq > 1`, [conv, a]);
    const { rows: n } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM message_deletions WHERE user_id = $1', [a]);
    expect(Number(n[0]!.n)).toBe(HIDDEN);
    await db.query('ANALYZE private_messages');
    await db.query('ANALYZE message_deletions');
    const top = await measured(ca, { type: 'get_private_messages', recipientId: b, limit: 50 });
    expect(top.r).toMatchObject({ type: 'private_message_history', hasMore: true });
    const deeper = await measured(ca, { type: 'get_private_messages', recipientId: b, limit: 50, offset: 500 });
    const before = await measured(ca, { type: 'get_private_messages', recipientId: b, limit: 50, before: M - 1_000 });
    const read = { top: top.rowsRead, offset500: deeper.rowsRead, before: before.rowsRead };
    for (const [k, v] of Object.entries(read)) expect(v, `${k}: rows read ${JSON.stringify(read)} with ${HIDDEN} deletions`).toBeLessThan(PAGE_BOUND);
    await expectPlacement(conv, a!, [], false);
    await expectPlacement(conv, b!, [], true);
  }, 120_000);

  it('group: a blocked sender with 20,000 messages (and a second blocked sender); each page reads at most the cap\'s worth of them', async () => {
    const g = await makeGroup(s, { members: 3 });
    const [x, y, w] = g.members;
    await addBlock(db, y!.id, x!.id);
    await addBlock(db, y!.id, w!.id);
    const firstMsg = await say(g.owner, g.groupId, 'first');
    // x wrote 4 of every 5 messages (HIDDEN in all), w every 15th, the owner the rest.
    await seed(g.groupId, firstMsg.seq + 1, M + 1, {
      sender: `CASE WHEN g % 5 <> 0 THEN '${x!.id}' WHEN g % 3 = 0 THEN '${w!.id}' ELSE '${g.owner.id}' END`,
      recipient: 'NULL',
      groupId: g.groupId,
      deleted: 'false',
    });
    const { rows: n } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM private_messages WHERE conversation_id = $1 AND sender_id = $2', [g.groupId, x!.id]);
    expect(Number(n[0]!.n)).toBe(HIDDEN);
    await db.query('ANALYZE private_messages');
    const top = await measured(y!.c, { type: 'get_group_messages', groupId: g.groupId, limit: 50 });
    expect(top.r).toMatchObject({ type: 'group_messages', hasMore: true });
    const deeper = await measured(y!.c, { type: 'get_group_messages', groupId: g.groupId, limit: 50, offset: 500 });
    const before = await measured(y!.c, { type: 'get_group_messages', groupId: g.groupId, limit: 50, before: M - 1_000 });
    const read = { top: top.rowsRead, offset500: deeper.rowsRead, before: before.rowsRead };
    for (const [k, v] of Object.entries(read)) expect(v, `${k}: rows read ${JSON.stringify(read)} with ${HIDDEN} messages of a blocked sender`).toBeLessThan(PAGE_BOUND);
    await expectPlacement(g.groupId, y!.id, [x!.id, w!.id], false);
    await expectPlacement(g.groupId, x!.id, [], true);
  }, 120_000);
});

describe('sync cost does not grow with the viewer\'s history (audit 6, F2)', () => {
  it('a sync from a recent cursor reads a bounded number of rows, with a long DM and a busy group behind it', async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const ca = await s.login(a!);
    const first = await sendOk(ca, b!, 'first');
    const conv = first.message.conversationId as string;
    // Half of the DM sent by a, half received: both of a's DM indexes hold N/2 rows.
    await seed(conv, 2, N + 1, { sender: `CASE WHEN g % 2 = 0 THEN '${a}' ELSE '${b}' END`, recipient: `CASE WHEN g % 2 = 0 THEN '${b}' ELSE '${a}' END`, groupId: null, deleted: 'false' });
    const g = await makeGroup(s, { members: 1 });
    await say(g.owner, g.groupId, 'in the group');
    await g.owner.c.request({ type: 'add_group_member', groupId: g.groupId, userId: a });
    await seed(g.groupId, 2, N / 10 + 1, { sender: `'${g.owner.id}'`, recipient: 'NULL', groupId: g.groupId, deleted: 'false' });
    await db.query('ANALYZE private_messages');
    // A cursor from a login after all of it: the sync has nothing to send.
    const late = await s.login(a!);
    const auth = await late.request({ type: 'authenticate', token: s.token(a!) });
    const { r, rowsRead } = await measured(late, { type: 'sync', cursor: auth.cursor, limit: 100 });
    expect(r.type).toBe('sync_result');
    expect(r.messages).toEqual([]);
    // Without the lower bound on change_xid each source's index was read from its start: ≥ 1.1 N rows.
    expect(rowsRead).toBeLessThan(MAX_ROWS_READ);
    // What comes after the cursor still arrives.
    const next = await sendOk(ca, b!, 'after the cursor');
    await syncable(s, [next.message.id]);
    const after = await late.request({ type: 'sync', cursor: auth.cursor, limit: 100 });
    expect(after.messages.map((m: Frame) => m.id)).toContain(next.message.id);
  }, 120_000);
});

/**
 * History pages have a byte budget (audit 7, F5; src/chat/pageBytes.ts): `get_private_messages`,
 * `get_group_messages` and `start_conversation` pages, like `sync` pages, end once their
 * messages pass half of SEND_QUEUE_LIMIT_BYTES, counted in escaped JSON bytes (a control
 * character is 6 bytes on the wire, `"` and `\` 2, `é` 2). A cut page keeps its newest messages
 * with `hasMore:true`, `total` unchanged and `limit` = the messages it holds, so paging on with
 * `offset + limit` or `before` its oldest `seq` returns the rest, each message once, in order.
 * One message larger than the budget still comes, alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame, TestClient } from '../helpers/client.ts';
import { freshUsers, history, sendOk } from '../helpers/dmkit.ts';
import { makeGroup, ok, say } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const QUEUE = 32_768; // SEND_QUEUE_LIMIT_BYTES of the test server
const BUDGET = QUEUE / 2; // bytes the messages of one page may take
/** The reply's fields other than its messages (type, ids, total, offset, limit, timestamp, requestId, recipient). */
const ENVELOPE = 512;

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ FOLLOW_POLICY: 'none', SEND_QUEUE_LIMIT_BYTES: String(QUEUE), PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

/**
 * Content of message `i`: 400 code points, 300 of them control characters, so ~2.3 KB on the
 * wire (the server's old 2×-of-the-body guess for sync said ~1.3 KB; a 100-message page
 * with no byte budget is ~240 KB, seven times the whole 32 KB queue).
 */
const heavy = (i: number): string => `#${i} ` + '\u0001\u001f\u0007'.repeat(100) + '"\\é'.repeat(30) + 'x'.repeat(6);
/** 5,000 control characters: ~30 KB on the wire, alone past the 16 KB budget. */
const huge = (i: number): string => `#${i} ` + '\u0001'.repeat(4990);

const bytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v));
const ids = (r: Frame): string[] => r.messages.map((m: Frame) => m.messageId);

/** A page's messages fit the budget (each with a comma), unless it holds a single message; the whole frame stays under the queue limit. */
function expectWithinBudget(r: Frame, mayBeEmpty = false): void {
  const msgBytes = r.messages.reduce((n: number, m: Frame) => n + bytes(m) + 1, 0);
  if (r.messages.length > 1) {
    expect(msgBytes, `${r.messages.length} messages`).toBeLessThanOrEqual(BUDGET);
    expect(bytes(r)).toBeLessThanOrEqual(BUDGET + ENVELOPE);
  }
  if (!mayBeEmpty) expect(r.messages.length).toBeGreaterThan(0);
}

type Pager = (offset: number, before: number | undefined) => Promise<Frame>;

/**
 * Page a history from the newest page down, by `offset + limit` (mode `offset`) or by
 * `before` the oldest seq (mode `before`), `first` given (at `firstOffset`) or read with offset 0; checks each
 * page (budget, `total`, `limit`, `hasMore` true on every page but the last). Resolves the
 * ids oldest first and the pages.
 */
async function pageAll(get: Pager, mode: 'offset' | 'before', total: number, first?: Frame, firstOffset = 0): Promise<{ seen: string[]; pages: Frame[] }> {
  const pages: Frame[] = [];
  let seen: string[] = [];
  let r = first ?? (await get(firstOffset, undefined));
  let offset = firstOffset;
  for (let i = 0; i < 100; i++) {
    pages.push(r);
    expectWithinBudget(r);
    if (r.total !== undefined) expect(r.total).toBe(total);
    if (r.limit !== undefined && r.hasMore) expect(r.limit).toBe(r.messages.length);
    seen = [...ids(r), ...seen];
    if (!r.hasMore) break;
    offset += r.limit ?? r.messages.length;
    r = mode === 'offset' ? await get(offset, undefined) : await get(0, r.messages[0].seq);
  }
  expect(pages[pages.length - 1]!.hasMore).toBe(false);
  return { seen, pages };
}

/** `n` DMs of {@link heavy} content (or `content(i)`) from a fresh sender to a fresh reader; resolves both, the reader logged in, and the ids oldest first. */
async function dmSeed(n: number, content: (i: number) => string = heavy): Promise<{ a: string; b: string; cb: TestClient; sent: string[] }> {
  const [a, b] = await freshUsers(s, 2);
  const ca = await s.login(a!);
  const sent: string[] = [];
  for (let i = 0; i < n; i++) sent.push((await sendOk(ca, b!, content(i))).messageId as string);
  const cb = await s.login(b!);
  return { a: a!, b: b!, cb, sent };
}

describe('get_private_messages pages stay within the byte budget', () => {
  it('control-character-heavy DMs: the newest page is cut (hasMore, total exact, limit = its size); paging by offset + limit and by before returns each message once, in order', async () => {
    const { a, cb, sent } = await dmSeed(30);
    const get: Pager = (offset, before) => ok(cb, { type: 'get_private_messages', recipientId: a, limit: 100, ...(before !== undefined ? { before } : { offset }) }, 'private_message_history');
    const first = await get(0, undefined);
    expect(first.messages.length).toBeLessThan(30);
    expect(first.hasMore).toBe(true);
    expect(ids(first)).toEqual(sent.slice(30 - first.messages.length));
    expect(first.messages[0].content).toBe(heavy(30 - first.messages.length));
    for (const mode of ['offset', 'before'] as const) {
      const { seen, pages } = await pageAll(get, mode, 30);
      expect(seen, mode).toEqual(sent);
      expect(pages.length).toBeGreaterThan(2);
    }
  });

  it('a message larger than the budget comes alone, between pages of the others', async () => {
    const sizes = ['h', 'h', 'H', 'h', 'h', 'H', 'H', 'h'];
    const { a, cb, sent } = await dmSeed(sizes.length, (i) => (sizes[i] === 'H' ? huge(i) : heavy(i)));
    const get: Pager = (offset, before) => ok(cb, { type: 'get_private_messages', recipientId: a, limit: 100, ...(before !== undefined ? { before } : { offset }) }, 'private_message_history');
    for (const mode of ['offset', 'before'] as const) {
      const { seen, pages } = await pageAll(get, mode, sizes.length);
      expect(seen, mode).toEqual(sent);
      const withHuge = pages.filter((p) => p.messages.some((m: Frame) => m.content.length >= 4990));
      expect(withHuge.map((p) => p.messages.length), mode).toEqual([1, 1, 1]);
      for (const p of withHuge) expect(bytes(p.messages[0])).toBeGreaterThan(BUDGET);
    }
  });
});

describe('start_conversation stays within the byte budget', () => {
  it('its page keeps the newest messages with hasMore; get_private_messages from its oldest seq (or offset = its size) returns the rest once, in order', async () => {
    const { a, cb, sent } = await dmSeed(30);
    const r = await ok(cb, { type: 'start_conversation', recipientId: a }, 'conversation_started');
    expect(r.hasMore).toBe(true);
    expect(r.messages.length).toBeLessThan(30);
    expectWithinBudget(r);
    const get: Pager = (offset, before) => ok(cb, { type: 'get_private_messages', recipientId: a, limit: 100, ...(before !== undefined ? { before } : { offset }) }, 'private_message_history');
    expect(ids(r)).toEqual(sent.slice(30 - r.messages.length));
    const rest = sent.slice(0, 30 - r.messages.length);
    const byOffset = await pageAll(get, 'offset', 30, undefined, r.messages.length);
    expect(byOffset.seen).toEqual(rest);
    const byBefore = await pageAll(get, 'before', 30, await get(0, r.messages[0].seq));
    expect(byBefore.seen).toEqual(rest);
  });

  it('a newest message larger than the budget comes alone, with hasMore', async () => {
    const { a, cb, sent } = await dmSeed(3, (i) => (i === 2 ? huge(i) : heavy(i)));
    const r = await ok(cb, { type: 'start_conversation', recipientId: a }, 'conversation_started');
    expect(ids(r)).toEqual([sent[2]]);
    expect(r.hasMore).toBe(true);
  });
});

describe('get_group_messages pages stay within the byte budget', () => {
  it('control-character-heavy group messages: cut pages (hasMore, total exact); paging by offset + limit and by before returns each once, in order; a huge one comes alone', async () => {
    const g = await makeGroup(s, { members: 1 });
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) sent.push((await say(g.owner, g.groupId, i === 12 ? huge(i) : heavy(i))).messageId as string);
    const reader = g.members[0]!.c;
    const get: Pager = (offset, before) => ok(reader, { type: 'get_group_messages', groupId: g.groupId, limit: 100, ...(before !== undefined ? { before } : { offset }) }, 'group_messages');
    const first = await get(0, undefined);
    expect(first.hasMore).toBe(true);
    expect(first.messages.length).toBeLessThan(30);
    for (const mode of ['offset', 'before'] as const) {
      const { seen, pages } = await pageAll(get, mode, 30);
      expect(seen, mode).toEqual(sent);
      const withHuge = pages.find((p) => ids(p).includes(sent[12]!));
      expect(withHuge!.messages, mode).toHaveLength(1);
    }
  });
});

describe('sync uses the same measured budget', () => {
  it('control-character-heavy messages: each sync page stays within the budget, and paging returns each message once', async () => {
    const [a, b] = await freshUsers(s, 2);
    const cb = await s.login(b!);
    const start = (await ok(cb, { type: 'sync' }, 'sync_result')).cursor as string;
    const ca = await s.login(a!);
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) sent.push((await sendOk(ca, b!, heavy(i))).messageId as string);
    await cb.next((f) => f.type === 'new_private_message' && f.message.messageId === sent[29]);
    const seen: string[] = [];
    let cursor = start;
    let pages = 0;
    for (let i = 0; i < 100; i++) {
      const r = await ok(cb, { type: 'sync', cursor, limit: 500 }, 'sync_result');
      // A sync page may be empty (nothing committed past the cursor's snapshot yet): §9 pages by cursor.
      expectWithinBudget(r, true);
      if (r.messages.length > 0) pages++;
      seen.push(...ids(r));
      cursor = r.cursor;
      if (!r.hasMore && seen.length >= sent.length) break;
    }
    expect(pages).toBeGreaterThan(2);
    expect(seen).toEqual(sent);
    expect(cb.closeCode).toBeUndefined();
  });
});

describe('an undecryptable stored message (tampered, or its key retired)', () => {
  /** Make the stored body of `messageId` fail authentication (AES-GCM). */
  const tamper = (messageId: string) => s.app.db.query("UPDATE private_messages SET ciphertext = '\\x00'::bytea || ciphertext WHERE id = $1", [messageId]);

  it('is left out of group history; the messages around it are unchanged (their own sender, seq, time)', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [m1, m2] = g.members;
    for (const [w, text] of [[g.owner, 'one'], [m1!, 'two'], [m2!, 'three'], [g.owner, 'four']] as const) await say(w, g.groupId, text);
    const page = () => ok(g.owner.c, { type: 'get_group_messages', groupId: g.groupId, limit: 10 }, 'group_messages');
    const before = (await page()).messages as Frame[];
    expect(before.map((m) => m.content)).toEqual(['one', 'two', 'three', 'four']);
    await tamper(before[1]!.messageId);
    const after = (await page()).messages as Frame[];
    expect(after).toEqual([before[0], before[2], before[3]]);
    expect(g.owner.c.closeCode).toBeUndefined();
  });

  it('is left out of DM history; the messages around it are unchanged', async () => {
    const [a, b] = await freshUsers(s, 2);
    const ca = await s.login(a!);
    const cb = await s.login(b!);
    for (const [c, to, text] of [[ca, b!, 'one'], [cb, a!, 'two'], [cb, a!, 'three'], [ca, b!, 'four']] as const) await sendOk(c, to, text);
    const before = (await history(ca, b!)).messages as Frame[];
    expect(before.map((m) => m.content)).toEqual(['one', 'two', 'three', 'four']);
    await tamper(before[1]!.messageId);
    const after = (await history(ca, b!)).messages as Frame[];
    expect(after).toEqual([before[0], before[2], before[3]]);
  });
});

/**
 * PROTOCOL §5 relationship rules for direct messages (block either way → USER_BLOCKED,
 * checked before the follow rule; FOLLOW_POLICY sender_follows / either / none; a failing
 * lookup refuses and stores nothing; RELATION_CACHE_MS) and §4 MESSAGE_RATE_LIMIT.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock, addFollows, removeBlock, removeFollows } from '../../src/store/devData.ts';
import { count, expectError, freshUsers, messagesFrom, sendOk, waitFor } from '../helpers/dmkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

const send = (to: string, content = 'hi') => ({ type: 'send_private_message', recipientId: to, content });
const start = (to: string) => ({ type: 'start_conversation', recipientId: to });

describe('FOLLOW_POLICY=sender_follows (default) and blocks', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer();
  });
  afterAll(() => s?.close());

  it('the sender must follow the recipient; the reverse direction → NOT_FOLLOWING', async () => {
    const [a, b] = await freshUsers(s, 2, [[0, 1]]);
    const ca = await s.login(a!);
    const cb = await s.login(b!);
    await sendOk(ca, b!, 'a follows b');
    expect((await ca.request(start(b!))).type).toBe('conversation_started');
    await expectError(cb, send(a!), 'NOT_FOLLOWING');
    await expectError(cb, start(a!), 'NOT_FOLLOWING');
    expect(await messagesFrom(s, b!)).toBe(0);
    // Being followed by the recipient is not enough; following works at once (no cache here).
    await addFollows(s.app.db, [[b!, a!]]);
    await sendOk(cb, a!, 'now b follows a');
    await removeFollows(s.app.db, [[b!, a!]]);
    await expectError(cb, send(a!), 'NOT_FOLLOWING');
    expect(await messagesFrom(s, b!)).toBe(1);
  });

  it('a block in either direction → USER_BLOCKED for send and start_conversation; nothing stored or delivered', async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const ca = await s.login(a!);
    const cb = await s.login(b!);
    await sendOk(ca, b!, 'before the block');
    await cb.next('new_private_message');
    const directions: [string, string][] = [
      [a!, b!],
      [b!, a!],
    ];
    for (const [blocker, blocked] of directions) {
      await addBlock(s.app.db, blocker, blocked);
      await expectError(ca, send(b!), 'USER_BLOCKED');
      await expectError(cb, send(a!), 'USER_BLOCKED');
      await expectError(ca, start(b!), 'USER_BLOCKED');
      await expectError(cb, start(a!), 'USER_BLOCKED');
      await removeBlock(s.app.db, blocker, blocked);
    }
    expect(await messagesFrom(s, a!)).toBe(1);
    expect(await messagesFrom(s, b!)).toBe(0);
    await cb.none('new_private_message', 200);
    await ca.none('new_private_message', 10);
    // Unblocked: allowed again.
    await sendOk(cb, a!, 'after the block');
  });

  it('the block is checked before the follow rule', async () => {
    const [c, d] = await freshUsers(s, 2);
    const cc = await s.login(c!);
    await expectError(cc, send(d!), 'NOT_FOLLOWING');
    await addBlock(s.app.db, d!, c!);
    await expectError(cc, send(d!), 'USER_BLOCKED');
    await expectError(cc, start(d!), 'USER_BLOCKED');
    expect(await messagesFrom(s, c!)).toBe(0);
  });

  it('a failing block lookup refuses (SERVICE_UNAVAILABLE) and stores nothing; recovers when the table is back', async () => {
    const [a, b] = await freshUsers(s, 2, [
      [0, 1],
      [1, 0],
    ]);
    const ca = await s.login(a!);
    const cb = await s.login(b!);
    const total = await count(s, 'private_messages');
    await s.app.db.query('ALTER TABLE blocked_relationships RENAME TO br_x');
    try {
      await expectError(ca, { ...send(b!), clientMessageId: 'during-outage' }, 'SERVICE_UNAVAILABLE');
      await expectError(ca, start(b!), 'SERVICE_UNAVAILABLE');
      await expectError(cb, send(a!), 'SERVICE_UNAVAILABLE');
    } finally {
      await s.app.db.query('ALTER TABLE br_x RENAME TO blocked_relationships');
    }
    expect(await count(s, 'private_messages')).toBe(total);
    expect(await count(s, 'conversations', 'conversation_id = $1', [a! < b! ? `conv_${a}_${b}` : `conv_${b}_${a}`])).toBe(0);
    await cb.none('new_private_message', 200);
    // The retry with the same key is a first send, not a duplicate of something never stored.
    const ok = await sendOk(ca, b!, 'hi', { clientMessageId: 'during-outage' });
    expect(ok.duplicate).toBeUndefined();
    expect(ok.message.seq).toBe(1);
  });
});

describe('FOLLOW_POLICY=either', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ FOLLOW_POLICY: 'either' });
  });
  afterAll(() => s?.close());

  it('a follow in either direction suffices; none → NOT_FOLLOWING; a block still wins', async () => {
    const [a, b, c] = await freshUsers(s, 3, [[0, 1]]);
    const ca = await s.login(a!);
    const cb = await s.login(b!);
    const cc = await s.login(c!);
    await sendOk(ca, b!, 'a follows b');
    await sendOk(cb, a!, 'b is followed by a');
    expect((await cb.request(start(a!))).type).toBe('conversation_started');
    await expectError(cc, send(a!), 'NOT_FOLLOWING');
    await expectError(ca, start(c!), 'NOT_FOLLOWING');
    await addBlock(s.app.db, a!, b!);
    await expectError(cb, send(a!), 'USER_BLOCKED');
    await expectError(ca, send(b!), 'USER_BLOCKED');
    expect(await messagesFrom(s, c!)).toBe(0);
  });
});

describe('FOLLOW_POLICY=none, MESSAGE_RATE_LIMIT=3, RELATION_CACHE_MS=300', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ FOLLOW_POLICY: 'none', MESSAGE_RATE_LIMIT: '3', RELATION_CACHE_MS: '300' });
  });
  afterAll(() => s?.close());

  it('no follow needed; a block still → USER_BLOCKED', async () => {
    const [a, b, c] = await freshUsers(s, 3);
    await addBlock(s.app.db, c!, a!);
    const ca = await s.login(a!);
    await sendOk(ca, b!, 'strangers may talk');
    await expectError(ca, send(c!), 'USER_BLOCKED');
    await expectError(ca, start(c!), 'USER_BLOCKED');
    expect(await messagesFrom(s, a!)).toBe(1);
  });

  it('over MESSAGE_RATE_LIMIT → RATE_LIMITED with retryAfter; nothing stored or delivered; other users unaffected', async () => {
    const [a, b, c] = await freshUsers(s, 3);
    const ca = await s.login(a!);
    const ca2 = await s.login(a!);
    const cb = await s.login(b!);
    const cc = await s.login(c!);
    for (let i = 0; i < 3; i++) await sendOk(i === 1 ? ca2 : ca, b!, `m${i}`);
    for (const conn of [ca, ca2]) {
      const e = await expectError(conn, { ...send(b!, 'too many'), clientMessageId: 'over' }, 'RATE_LIMITED');
      expect(typeof e.retryAfter).toBe('number');
      expect(Number.isInteger(e.retryAfter)).toBe(true);
      expect(e.retryAfter).toBeGreaterThanOrEqual(1);
      expect(e.retryAfter).toBeLessThanOrEqual(60);
    }
    expect(await messagesFrom(s, a!)).toBe(3);
    expect(await count(s, 'private_messages', 'client_message_id = $1', ['over'])).toBe(0);
    for (let i = 0; i < 3; i++) await cb.next('new_private_message');
    await cb.none('new_private_message', 200);
    // Budgets are per user; reading is not limited.
    await sendOk(cc, b!, 'c has its own budget');
    expect((await ca.request({ type: 'get_private_messages', recipientId: b })).messages).toHaveLength(3);
  });

  it('a new block is enforced once RELATION_CACHE_MS has passed', async () => {
    const [x, y] = await freshUsers(s, 2);
    const cx = await s.login(x!);
    expect((await cx.request(start(y!))).type).toBe('conversation_started');
    await addBlock(s.app.db, y!, x!);
    const t0 = Date.now();
    const blockedAt = await waitFor(async () => ((await cx.request(start(y!))).code === 'USER_BLOCKED' ? Date.now() : 0), 300 + 2000, 20);
    expect(blockedAt - t0).toBeLessThanOrEqual(300 + 2000);
    // And it stays enforced, for sends too.
    await sleep(50);
    await expectError(cx, send(y!), 'USER_BLOCKED');
    expect(await messagesFrom(s, x!)).toBe(0);
  });

  it('a pair in steady use, its entry renewed in the background (refresh-ahead), still sees a new block within RELATION_CACHE_MS', async () => {
    const [x, y] = await freshUsers(s, 2);
    const cx = await s.login(x!);
    // 1.2 s of use: four lifetimes of 300 ms, so the entry is renewed in the background several times.
    const until = Date.now() + 1200;
    while (Date.now() < until) expect((await cx.request(start(y!))).type).toBe('conversation_started');
    await addBlock(s.app.db, y!, x!);
    const t0 = Date.now();
    let blockedAt = 0;
    for (let i = 0; i < 200 && !blockedAt; i++) {
      const r = await cx.request(start(y!));
      if (r.code === 'USER_BLOCKED') blockedAt = Date.now();
      else await sleep(20);
    }
    // Bound: the cache lifetime plus one lookup and one poll (generous for a loaded CI host).
    expect(blockedAt, 'block never seen').toBeGreaterThan(0);
    expect(blockedAt - t0).toBeLessThanOrEqual(300 + 500);
    // And it stays enforced (sends are budgeted at 3 here: one send, the rest start_conversation).
    for (let i = 0; i < 5; i++) await expectError(cx, start(y!), 'USER_BLOCKED');
    await expectError(cx, send(y!), 'USER_BLOCKED');
    expect(await messagesFrom(s, x!)).toBe(0);
  });
});

/**
 * PROTOCOL §6 `send_private_message` (ack, events, replies, seq) and §2 input rules
 * (types, ids, text, attacks). Real clients against a real server. Idempotency
 * (clientMessageId): dm-idempotency.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { count, expectError, freshUsers, history, ISO, messagesFrom, MISSING_ID, mutualPair, sendOk, UUID7 } from '../helpers/dmkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  // Many deliberate BAD_REQUESTs below: keep the 4400 budget (§2.2) out of the way.
  s = await startServer({ PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

const M_KEYS = [
  'clientMessageId',
  'content',
  'conversationId',
  'editedAt',
  'id',
  'isDeleted',
  'isEdited',
  'isRead',
  'messageId',
  'reactions',
  'readAt',
  'recipientId',
  'replyTo',
  'senderId',
  'seq',
  'timestamp',
  'username',
].sort();

describe('send_private_message: ack, delivery, devices', () => {
  it('acks with a complete M, delivers new_private_message to every recipient device and private_message_sent to the sender\'s other device', async () => {
    // Ids whose string order differs from numeric order: conv id is ordered as strings (§6).
    const a = '990';
    const b = '1000';
    await s.users(a, b);
    await s.follow([a, b]);
    const ca = await s.login(a);
    const ca2 = await s.login(a);
    const cb = await s.login(b);
    const cb2 = await s.login(b);
    const before = Date.now();
    const ack = await sendOk(ca, Number(b), 'hello there', { clientMessageId: 'cm-1' });
    const after = Date.now();

    expect(ack).toMatchObject({ type: 'private_message_sent', conversationId: 'conv_1000_990', replyTo: null, clientMessageId: 'cm-1' });
    expect(ack.duplicate).toBeUndefined();
    const m = ack.message;
    expect(Object.keys(m).sort()).toEqual(M_KEYS);
    expect(m).toEqual({
      id: ack.messageId,
      messageId: ack.messageId,
      conversationId: 'conv_1000_990',
      senderId: a,
      recipientId: b,
      username: `u${a}`,
      content: 'hello there',
      timestamp: m.timestamp,
      isRead: false,
      readAt: null,
      replyTo: null,
      isEdited: false,
      editedAt: null,
      isDeleted: false,
      seq: 1,
      clientMessageId: 'cm-1',
      reactions: [],
    });
    expect(ack.messageId).toMatch(UUID7);
    expect(m.timestamp).toMatch(ISO);
    expect(ack.timestamp).toBe(m.timestamp);
    const t = Date.parse(m.timestamp);
    expect(t).toBeGreaterThanOrEqual(before - 2000);
    expect(t).toBeLessThanOrEqual(after + 2000);

    // Stored before it was acknowledged (§9).
    expect(await count(s, 'private_messages', 'id = $1', [ack.messageId])).toBe(1);

    for (const c of [cb, cb2]) {
      const ev = await c.next('new_private_message');
      expect(ev.message).toEqual(m);
      expect(ev.timestamp).toMatch(ISO);
      expect(ev.replyTo).toBeUndefined();
    }
    const other = await ca2.next('private_message_sent');
    expect(other.messageId).toBe(ack.messageId);
    expect(other.message).toEqual(m);

    // The sending connection got exactly one reply; nobody got the wrong kind of event.
    await Promise.all([
      ca.none((f) => f.type === 'private_message_sent' || f.type === 'new_private_message', 250),
      ca2.none((f) => f.type === 'private_message_sent' || f.type === 'new_private_message', 250),
      cb.none((f) => f.type === 'private_message_sent' || f.type === 'new_private_message', 250),
      cb2.none((f) => f.type === 'private_message_sent' || f.type === 'new_private_message', 250),
    ]);
  });

  it('an error is the one reply too, and the connection lives on', async () => {
    const { b, ca } = await mutualPair(s);
    const err = await expectError(ca, { type: 'send_private_message', recipientId: b, content: '' }, 'BAD_REQUEST', 'content');
    expect(typeof err.message).toBe('string');
    await ca.none((f) => f.type === 'error' || f.type === 'private_message_sent', 200);
    const pong = await ca.request({ type: 'ping' });
    expect(pong.type).toBe('pong');
  });

  it('seq increases by one per message in a conversation, in both directions', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const seqs: number[] = [];
    for (let i = 0; i < 3; i++) {
      seqs.push((await sendOk(ca, b, `a${i}`)).message.seq);
      seqs.push((await sendOk(cb, a, `b${i}`)).message.seq);
    }
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('refuses a message to oneself and to a user that does not exist', async () => {
    const [a] = await freshUsers(s, 1);
    const ca = await s.login(a!);
    await expectError(ca, { type: 'send_private_message', recipientId: a, content: 'me' }, 'BAD_REQUEST', 'recipientId');
    await expectError(ca, { type: 'send_private_message', recipientId: '987654321', content: 'ghost' }, 'NOT_FOUND');
    expect(await messagesFrom(s, a!)).toBe(0);
  });
});

describe('replyTo (alias replyToMessageId)', () => {
  it('quotes the replied-to message in the event and carries its id in ack and M', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const orig = await sendOk(cb, a, 'original <b>text</b>');
    await ca.next('new_private_message');
    for (const field of ['replyTo', 'replyToMessageId']) {
      const ack = await sendOk(ca, b, `reply via ${field}`, { [field]: orig.messageId });
      expect(ack.replyTo).toBe(orig.messageId);
      expect(ack.message.replyTo).toBe(orig.messageId);
      const ev = await cb.next((f) => f.type === 'new_private_message' && f.message.id === ack.messageId);
      expect(ev.message.replyTo).toBe(orig.messageId);
      expect(ev.replyTo).toEqual({ messageId: orig.messageId, content: 'original <b>text</b>', username: `u${b}`, timestamp: orig.message.timestamp });
    }
    const h = await history(cb, a);
    expect(h.messages.map((m: Frame) => m.replyTo)).toEqual([null, orig.messageId, orig.messageId]);
  });

  it('a replyTo from another conversation, unknown or malformed is refused and nothing is stored', async () => {
    const [a, b, c] = await freshUsers(s, 3, [
      [0, 1],
      [0, 2],
      [2, 0],
    ]);
    const ca = await s.login(a!);
    const cc = await s.login(c!);
    const elsewhere = await sendOk(cc, a!, 'in conversation a-c');
    const before = await messagesFrom(s, a!);
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', replyTo: elsewhere.messageId }, 'NOT_FOUND', 'replyTo');
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', replyToMessageId: elsewhere.messageId }, 'NOT_FOUND', 'replyTo');
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', replyTo: MISSING_ID }, 'NOT_FOUND', 'replyTo');
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', replyTo: 'not-a-uuid' }, 'BAD_REQUEST', 'replyTo');
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', replyTo: 42 }, 'BAD_REQUEST', 'replyTo');
    expect(await messagesFrom(s, a!)).toBe(before);
  });
});

describe('input validation and attacks (§2)', () => {
  it('frames that are not JSON objects → BAD_REQUEST, connection stays open', async () => {
    const { ca } = await mutualPair(s);
    for (const raw of ['not json', '[1,2]', '"text"', '42', 'null', '{"type":5}', '{"notype":true}']) {
      ca.send(raw);
      const e = await ca.next('error');
      expect(e.code, raw).toBe('BAD_REQUEST');
    }
    expect((await ca.request({ type: 'ping' })).type).toBe('pong');
  });

  it('recipientId of the wrong type or form → BAD_REQUEST field recipientId, nothing stored', async () => {
    const { a, ca } = await mutualPair(s);
    for (const bad of [{ id: 2 }, true, false, 1.5, -1, '', 'abc', '1e3', [1], null, '12345678901234567890', Number.MAX_SAFE_INTEGER + 2]) {
      await expectError(ca, { type: 'send_private_message', recipientId: bad, content: 'x' }, 'BAD_REQUEST', 'recipientId');
    }
    await expectError(ca, { type: 'send_private_message', content: 'x' }, 'BAD_REQUEST', 'recipientId');
    expect(await messagesFrom(s, a)).toBe(0);
  });

  it('numeric and string ids name the same user (1 and "1")', async () => {
    const { a, b, ca } = await mutualPair(s);
    const x = await sendOk(ca, Number(b), 'number');
    const y = await sendOk(ca, b, 'string');
    const z = await sendOk(ca, `00${b}`, 'leading zeros');
    expect(new Set([x.conversationId, y.conversationId, z.conversationId]).size).toBe(1);
    expect([x.message.recipientId, y.message.recipientId, z.message.recipientId]).toEqual([b, b, b]);
    expect(typeof x.message.senderId).toBe('string');
    expect(x.message.senderId).toBe(a);
    const h1 = await history(ca, b);
    const h2 = await history(ca, Number(b) as unknown as string);
    expect(h1.messages.map((m: Frame) => m.content)).toEqual(['number', 'string', 'leading zeros']);
    expect(h2.messages).toEqual(h1.messages);
  });

  it('content: empty, white space only, non-string, NUL → BAD_REQUEST field content', async () => {
    const { a, b, ca } = await mutualPair(s);
    for (const bad of ['', ' ', ' \n\t\u00a0 ', '\u0085', ' \u3000\u2028\ufeff', 5, { text: 'x' }, ['x'], null, true, 'a\u0000b', '\u0000']) {
      await expectError(ca, { type: 'send_private_message', recipientId: b, content: bad }, 'BAD_REQUEST', 'content');
    }
    await expectError(ca, { type: 'send_private_message', recipientId: b }, 'BAD_REQUEST', 'content');
    expect(await messagesFrom(s, a)).toBe(0);
  });

  it('content length is counted in code points: 5000 astral emoji pass, 5001 do not', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const emoji = '\u{1F600}';
    const max = emoji.repeat(5000);
    expect(max.length).toBe(10000); // 10 000 UTF-16 units, 5000 code points
    const ack = await sendOk(ca, b, max);
    expect(ack.message.content).toBe(max);
    expect((await cb.next('new_private_message')).message.content).toBe(max);
    expect((await history(cb, a)).messages[0].content).toBe(max);
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: emoji.repeat(5001) }, 'BAD_REQUEST', 'content');
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'a'.repeat(5001) }, 'BAD_REQUEST', 'content');
    await sendOk(ca, b, 'a'.repeat(4999) + emoji);
    expect(await messagesFrom(s, a)).toBe(2);
  });

  it('a lone surrogate (raw JSON escape) → BAD_REQUEST field content', async () => {
    const { a, b, ca } = await mutualPair(s);
    for (const esc of ['\\ud800', 'x\\udc00y', '\\ud83d\\u0041', '\\ude00\\ud83d']) {
      ca.send(`{"type":"send_private_message","recipientId":"${b}","content":"${esc}","requestId":"lone"}`);
      const e = await ca.next((f) => f.requestId === 'lone');
      expect(e, esc).toMatchObject({ type: 'error', code: 'BAD_REQUEST', field: 'content' });
    }
    // A proper pair written as escapes is fine.
    ca.send(`{"type":"send_private_message","recipientId":"${b}","content":"\\ud83d\\ude00","requestId":"pair"}`);
    const ok = await ca.next((f) => f.requestId === 'pair');
    expect(ok.type).toBe('private_message_sent');
    expect(ok.message.content).toBe('\u{1F600}');
    expect(await messagesFrom(s, a)).toBe(1);
  });

  it('spoofed senderId, id, createdAt (and other unknown fields) are ignored: the sender is the authenticated user', async () => {
    const [a, b, c] = await freshUsers(s, 3, [
      [0, 1],
      [2, 1],
    ]);
    const cc = await s.login(c!);
    const cb = await s.login(b!);
    const spoofId = '01890000-0000-7000-8000-00000000abcd';
    const ack = await sendOk(cc, b!, 'who am i', {
      senderId: a,
      id: spoofId,
      messageId: spoofId,
      createdAt: '2001-01-01T00:00:00.000Z',
      timestamp: '2001-01-01T00:00:00.000Z',
      username: `u${a}`,
      seq: 999,
      isRead: true,
      conversationId: `conv_${a}_${b}`,
      unknownExtra: { nested: [1, 2, 3] },
    });
    expect(ack.message.senderId).toBe(c);
    expect(ack.message.username).toBe(`u${c}`);
    expect(ack.messageId).not.toBe(spoofId);
    expect(ack.message.timestamp.startsWith('2001')).toBe(false);
    expect(ack.message.seq).toBe(1);
    expect(ack.message.isRead).toBe(false);
    expect(ack.conversationId).toBe(b! < c! ? `conv_${b}_${c}` : `conv_${c}_${b}`);
    const ev = await cb.next('new_private_message');
    expect(ev.message.senderId).toBe(c);
    expect(ev.message.id).toBe(ack.messageId);
    expect(await count(s, 'private_messages', 'id = $1', [spoofId])).toBe(0);
    expect(await count(s, 'private_messages', 'sender_id = $1', [a])).toBe(0);
  });

  it('__proto__, constructor or prototype keys anywhere in a frame → BAD_REQUEST, nothing stored', async () => {
    const { a, b, ca } = await mutualPair(s);
    const frames = [
      `{"type":"send_private_message","recipientId":"${b}","content":"x","__proto__":{"isAdmin":true},"requestId":"p1"}`,
      `{"type":"send_private_message","recipientId":"${b}","content":"x","extra":{"__proto__":{"polluted":1}},"requestId":"p2"}`,
      `{"type":"send_private_message","recipientId":"${b}","content":"x","extra":[{"a":{"constructor":{"prototype":{"p":1}}}}],"requestId":"p3"}`,
      `{"type":"send_private_message","recipientId":"${b}","content":"x","meta":{"prototype":1},"requestId":"p4"}`,
      `{"type":"send_private_message","recipientId":"${b}","content":"x","constructor":"y","requestId":"p5"}`,
      // The same keys spelled with JSON escapes.
      `{"type":"send_private_message","recipientId":"${b}","content":"x","extra":{"\\u005f_proto__":{"polluted":1}},"requestId":"p6"}`,
      `{"type":"send_private_message","recipientId":"${b}","content":"x","\\u0063onstructor":{"a":1},"requestId":"p7"}`,
    ];
    for (const [i, raw] of frames.entries()) {
      ca.send(raw);
      const e = await ca.next((f) => f.requestId === `p${i + 1}`);
      expect(e, raw).toMatchObject({ type: 'error', code: 'BAD_REQUEST' });
    }
    // Deeper than MAX_FRAME_DEPTH (32): refused before it is parsed (audit 7, F4), so, like
    // text that is not JSON, without its requestId.
    ca.send(`{"type":"ping","x":${'['.repeat(70)}{"__proto__":1}${']'.repeat(70)},"requestId":"deep"}`);
    expect(await ca.next((f) => f.type === 'error' && /deeper than 32/.test(String(f.message)))).toMatchObject({ type: 'error', code: 'BAD_REQUEST' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    // The words themselves as values are fine.
    const ok = await sendOk(ca, b, '__proto__ constructor prototype');
    expect(ok.message.content).toBe('__proto__ constructor prototype');
    expect(await messagesFrom(s, a)).toBe(1);
  });

  it('HTML and other markup are stored and delivered exactly as sent', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const html = `<script>alert("x")</script><img src=x onerror=alert(1)> &amp; &lt;b&gt; ' " \\ \u202e`;
    const ack = await sendOk(ca, b, html);
    expect(ack.message.content).toBe(html);
    expect((await cb.next('new_private_message')).message.content).toBe(html);
    expect((await history(cb, a)).messages[0].content).toBe(html);
  });

  it('requestId: echoed when ≤ 64 characters; longer or non-string → BAD_REQUEST field requestId', async () => {
    const { a, b, ca } = await mutualPair(s);
    const rid = 'r'.repeat(64);
    ca.send({ type: 'send_private_message', recipientId: b, content: 'ok', requestId: rid });
    const ok = await ca.next((f) => f.requestId === rid);
    expect(ok.type).toBe('private_message_sent');
    for (const bad of ['r'.repeat(65), 12, { x: 1 }]) {
      ca.send({ type: 'send_private_message', recipientId: b, content: 'no', requestId: bad });
      const e = await ca.next('error');
      expect(e).toMatchObject({ code: 'BAD_REQUEST', field: 'requestId' });
    }
    expect(await messagesFrom(s, a)).toBe(1);
  });
});

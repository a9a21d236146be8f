/**
 * Inbound frame decoding (src/protocol/inbound.ts, PROTOCOL §2, §2.2, §6): aliases,
 * unknown fields dropped, forbidden keys, error codes and the `field` they name.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { coreCommands, FrameDecoder, MAX_FRAME_CONTAINERS, MAX_FRAME_DEPTH, structureWithin, type DecodeResult } from '../../src/protocol/inbound.ts';

const d = new FrameDecoder(coreCommands({ maxMessageLength: 5000, maxGroupSize: 1000 }));
const MID = '01890000-0000-7000-8000-00000000abcd';

const ok = (frame: object | string): { type: string; rawType: string; requestId?: string; cmd: Record<string, unknown> } => {
  const r = d.decode(typeof frame === 'string' ? frame : JSON.stringify(frame));
  if (!r.ok) throw new Error(`expected ok, got ${r.error.code}: ${r.error.message}`);
  return r.frame;
};
const fail = (frame: object | string): { code: string; field?: string; message: string; requestId?: string } => {
  const r: DecodeResult = d.decode(typeof frame === 'string' ? frame : JSON.stringify(frame));
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r.frame)}`);
  return { code: r.error.code, field: r.error.extra.field, message: r.error.message, requestId: r.requestId };
};

describe('aliases', () => {
  it('type aliases: auth → authenticate, edit_private_message → edit_message (rawType kept)', () => {
    expect(ok({ type: 'auth', token: 't' })).toMatchObject({ type: 'authenticate', rawType: 'auth', cmd: { token: 't' } });
    expect(ok({ type: 'edit_private_message', messageId: MID, newContent: 'x' })).toMatchObject({ type: 'edit_message', rawType: 'edit_private_message' });
  });

  it('field aliases fill the canonical field; the canonical one wins when both are sent', () => {
    expect(ok({ type: 'send_private_message', recipientId: 1, content: 'x', replyToMessageId: MID }).cmd.replyTo).toBe(MID);
    expect(ok({ type: 'edit_message', messageId: MID, content: 'via alias' }).cmd.newContent).toBe('via alias');
    expect(ok({ type: 'edit_private_message', messageId: MID, content: 'alias', newContent: 'canonical' }).cmd.newContent).toBe('canonical');
    expect(ok({ type: 'add_reaction', messageId: MID, emoji: '👍' }).cmd.reaction).toBe('👍');
    expect(ok({ type: 'remove_reaction', messageId: MID, emoji: '👍', reaction: '❤️' }).cmd.reaction).toBe('❤️');
  });

  it('an invalid alias value is reported under the canonical field', () => {
    expect(fail({ type: 'add_reaction', messageId: MID, emoji: 'x'.repeat(17) })).toMatchObject({ code: 'BAD_REQUEST', field: 'reaction' });
    expect(fail({ type: 'edit_message', messageId: MID, content: '' })).toMatchObject({ code: 'BAD_REQUEST', field: 'newContent' });
    expect(fail({ type: 'send_private_message', recipientId: 1, content: 'x', replyToMessageId: 'nope' })).toMatchObject({ code: 'BAD_REQUEST', field: 'replyTo' });
  });
});

describe('unknown fields', () => {
  it('are ignored and never reach the command (senderId, id, createdAt, extras)', () => {
    const f = ok({ type: 'send_private_message', recipientId: '7', content: 'x', senderId: '1', id: MID, createdAt: '2000-01-01', timestamp: 1, conversationId: 'conv_1_7', extra: { a: 1 } });
    expect(f.cmd).toEqual({ recipientId: '7', content: 'x' });
    expect(ok({ type: 'mark_message_read', messageId: MID, conversationId: 'conv_1_2' }).cmd).toEqual({ messageId: MID });
  });
});

describe('normalisation', () => {
  it('ids become canonical strings; message ids lower-case', () => {
    expect(ok({ type: 'send_private_message', recipientId: 7, content: 'x' }).cmd.recipientId).toBe('7');
    expect(ok({ type: 'start_conversation', recipientId: '0007' }).cmd.recipientId).toBe('7');
    expect(ok({ type: 'mark_message_read', messageId: MID.toUpperCase() }).cmd.messageId).toBe(MID);
    expect(ok({ type: 'get_private_messages', recipientId: 2, limit: '10', offset: '20' }).cmd).toEqual({ recipientId: '2', limit: 10, offset: 20 });
  });
});

describe('forbidden keys', () => {
  const base = '"type":"send_private_message","recipientId":1,"content":"x"';
  it('__proto__, constructor, prototype anywhere → BAD_REQUEST (requestId kept)', () => {
    for (const extra of [
      '"__proto__":{"x":1}',
      '"a":{"__proto__":null}',
      '"a":[[{"constructor":1}]]',
      '"a":{"b":{"c":{"prototype":{}}}}',
      '"constructor":{"prototype":{"polluted":true}}',
      // JSON escapes spell the same keys.
      '"a":{"\\u005f_proto__":{}}',
      '"\\u0063onstructor":1',
      '"a":[{"protot\\u0079pe":1}]',
    ]) {
      const e = fail(`{${base},${extra},"requestId":"rq"}`);
      expect(e, extra).toMatchObject({ code: 'BAD_REQUEST', requestId: 'rq' });
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('the words as values, or inside longer keys, are fine', () => {
    expect(ok(`{${base.replace('"x"', '"__proto__ constructor prototype"')}}`).cmd.content).toBe('__proto__ constructor prototype');
    expect(ok(`{${base},"my_constructor_x":1,"a":["prototype"],"b":"\\u0041"}`).cmd.recipientId).toBe('1');
  });
});

describe('structure limits (audit 7, F4: checked before JSON.parse)', () => {
  const nested = (n: number): string => '['.repeat(n) + ']'.repeat(n);
  it(`nesting deeper than ${MAX_FRAME_DEPTH} → BAD_REQUEST, even in an ignored field of a ping; ${MAX_FRAME_DEPTH} levels pass`, () => {
    expect(ok(`{"type":"ping","x":${nested(MAX_FRAME_DEPTH - 1)}}`).type).toBe('ping');
    const e = fail(`{"type":"ping","x":${nested(MAX_FRAME_DEPTH)}}`);
    expect(e.code).toBe('BAD_REQUEST');
    expect(e.message).toContain(String(MAX_FRAME_DEPTH));
    expect(fail(`{"type":"ping","x":${nested(21_000)}}`).code).toBe('BAD_REQUEST');
    expect(fail(`{"type":"ping","x":${'{"a":'.repeat(40)}1${'}'.repeat(40)}}`).code).toBe('BAD_REQUEST');
  });

  it(`more than ${MAX_FRAME_CONTAINERS} arrays/objects → BAD_REQUEST; ${MAX_FRAME_CONTAINERS} pass`, () => {
    const wide = (n: number): string => `{"type":"ping","x":[${Array.from({ length: n }, () => '{}').join(',')}]}`;
    expect(ok(wide(MAX_FRAME_CONTAINERS - 2)).type).toBe('ping'); // + the frame object and the array
    expect(fail(wide(MAX_FRAME_CONTAINERS - 1)).code).toBe('BAD_REQUEST');
  });

  it('brackets inside strings, escaped quotes included, do not count', () => {
    const content = `[{"\\"${'['.repeat(2400)}${'{'.repeat(2400)}`;
    expect(ok({ type: 'send_private_message', recipientId: 1, content }).cmd.content).toBe(content);
    const v = JSON.stringify({ a: '\\', b: '"[[[', c: [[[]]] }); // the object and 3 arrays, 4 deep
    expect(structureWithin(v, 4, 4)).toBe(true);
    expect(structureWithin(v, 3, 10)).toBe(false);
    expect(structureWithin(v, 10, 3)).toBe(false);
  });

  it('agrees with the depth and count of containers of any JSON value (property)', () => {
    const measure = (v: unknown, d = 0): { depth: number; n: number } => {
      if (v === null || typeof v !== 'object') return { depth: d, n: 0 };
      const kids = (Array.isArray(v) ? v : Object.values(v as object)).map((x) => measure(x, d + 1));
      return { depth: Math.max(d + 1, ...kids.map((k) => k.depth)), n: 1 + kids.reduce((a, k) => a + k.n, 0) };
    };
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 40 }), (v, maxDepth, maxN) => {
        const { depth, n } = measure(v);
        expect(structureWithin(JSON.stringify(v), maxDepth, maxN)).toBe(depth <= maxDepth && n <= maxN);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('frame-level errors', () => {
  it('not JSON, not an object → BAD_REQUEST without a field', () => {
    for (const raw of ['', 'nope', '{', '[]', '[{"type":"ping"}]', '"ping"', '1', 'null', 'true']) {
      const e = fail(raw);
      expect(e.code, raw).toBe('BAD_REQUEST');
      expect(e.field).toBeUndefined();
    }
  });

  it('type missing, empty or not a string → BAD_REQUEST field type', () => {
    for (const f of [{}, { type: '' }, { type: 5 }, { type: null }, { type: ['ping'] }, { type: { a: 1 } }]) expect(fail(f)).toMatchObject({ code: 'BAD_REQUEST', field: 'type' });
  });

  it('unknown types (including inherited object property names) → UNKNOWN_TYPE with the requestId', () => {
    for (const type of ['nope', 'toString', 'hasOwnProperty', '__proto__', 'constructor', 'valueOf', 'send_group_message_typo']) {
      expect(fail({ type, requestId: 'q1' }), type).toMatchObject({ code: 'UNKNOWN_TYPE', requestId: 'q1' });
      expect(d.knows(type), type).toBe(false);
    }
    expect(d.knows('auth')).toBe(true);
    expect(d.knows('edit_private_message')).toBe(true);
  });

  it('requestId: string ≤ 64, else BAD_REQUEST field requestId', () => {
    expect(ok({ type: 'ping', requestId: 'r'.repeat(64) }).requestId).toBe('r'.repeat(64));
    for (const requestId of ['r'.repeat(65), 5, {}, true]) expect(fail({ type: 'ping', requestId })).toMatchObject({ code: 'BAD_REQUEST', field: 'requestId', requestId: undefined });
  });
});

describe('field errors name the field', () => {
  it('missing and ill-typed fields', () => {
    expect(fail({ type: 'send_private_message', content: 'x' })).toMatchObject({ code: 'BAD_REQUEST', field: 'recipientId' });
    expect(fail({ type: 'send_private_message', content: 'x' }).message).toMatch(/^recipientId: /);
    expect(fail({ type: 'send_private_message', recipientId: 1 })).toMatchObject({ field: 'content', message: 'content: is required' });
    expect(fail({ type: 'send_private_message', recipientId: 1, content: 5 })).toMatchObject({ field: 'content' });
    expect(fail({ type: 'send_private_message', recipientId: true, content: 'x' })).toMatchObject({ field: 'recipientId' });
    expect(fail({ type: 'send_private_message', recipientId: 1, content: 'x', clientMessageId: 'k'.repeat(65) })).toMatchObject({ field: 'clientMessageId' });
    expect(fail({ type: 'message_delivered', messageIds: [MID, 'bad'] })).toMatchObject({ field: 'messageIds' });
    expect(fail({ type: 'message_delivered', messageIds: Array(101).fill(MID) })).toMatchObject({ field: 'messageIds' });
    expect(fail({ type: 'get_private_messages', limit: 5 })).toMatchObject({ field: 'recipientId' });
    expect(fail({ type: 'get_private_messages', recipientId: 1, limit: 101 })).toMatchObject({ field: 'limit' });
    expect(fail({ type: 'typing', isTyping: true })).toMatchObject({ field: 'recipientId' });
    expect(fail({ type: 'delete_message', messageId: MID, deleteForEveryone: 1 })).toMatchObject({ field: 'deleteForEveryone' });
  });

  it('content limits come from MAX_MESSAGE_LENGTH, in code points', () => {
    const small = new FrameDecoder(coreCommands({ maxMessageLength: 3, maxGroupSize: 10 }));
    expect(small.decode(JSON.stringify({ type: 'send_private_message', recipientId: 1, content: '😀😀😀' })).ok).toBe(true);
    const r = small.decode(JSON.stringify({ type: 'send_private_message', recipientId: 1, content: 'abcd' }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.extra.field).toBe('content');
    expect(small.decode(JSON.stringify({ type: 'edit_message', messageId: MID, newContent: 'abcd' })).ok).toBe(false);
  });

  it('NUL and lone surrogates in text → BAD_REQUEST field content', () => {
    expect(fail('{"type":"send_private_message","recipientId":1,"content":"a\\u0000"}')).toMatchObject({ field: 'content' });
    expect(fail('{"type":"send_private_message","recipientId":1,"content":"a\\ud800"}')).toMatchObject({ field: 'content' });
    expect(fail('{"type":"send_private_message","recipientId":1,"content":"\\udc00a"}')).toMatchObject({ field: 'content' });
    expect(ok('{"type":"send_private_message","recipientId":1,"content":"\\ud83d\\ude00"}').cmd.content).toBe('😀');
  });
});

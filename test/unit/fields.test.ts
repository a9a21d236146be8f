/**
 * Shared field validators (src/protocol/fields.ts, PROTOCOL §2): code-point counting,
 * clean text, user id normalisation, message ids, integers, limits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clientMessageId, codePoints, intIn, isCleanText, messageId, reaction, requestId, text, userId } from '../../src/protocol/fields.ts';

const wellFormed = (s: string): boolean => Buffer.from(s, 'utf8').toString('utf8') === s;

describe('codePoints', () => {
  it('counts a surrogate pair once and everything else per UTF-16 unit', () => {
    expect(codePoints('')).toBe(0);
    expect(codePoints('abc')).toBe(3);
    expect(codePoints('\u{1F600}')).toBe(1);
    expect(codePoints('a\u{1F600}b')).toBe(3);
    expect(codePoints('\u{1F600}'.repeat(5000))).toBe(5000);
    expect(codePoints('e\u0301')).toBe(2); // combining mark is its own code point
    expect(codePoints('👨‍👩‍👧‍👦')).toBe(7); // ZWJ sequence: 4 emoji + 3 joiners
    expect(codePoints('\ud800')).toBe(1);
    expect(codePoints('\udc00\ud800')).toBe(2); // reversed pair: two lone surrogates
    expect(codePoints('\ud800\ud800\udc00')).toBe(2);
  });

  it('agrees with string iteration for any string (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => {
        expect(codePoints(s)).toBe([...s].length);
      }),
      { numRuns: 500 },
    );
  });
});

describe('isCleanText', () => {
  it('accepts valid Unicode without NUL, refuses NUL and lone surrogates anywhere', () => {
    for (const ok of ['', 'plain', '\u{1F600}', '\ud83d\ude00', '<b>&amp;</b>', '\u0001\u007f\uffff', 'a\u2028b']) expect(isCleanText(ok), JSON.stringify(ok)).toBe(true);
    for (const bad of ['\u0000', 'a\u0000', '\ud800', 'x\ud800', '\ud800x', '\udc00', 'x\udc00y', '\udc00\ud800', '\ud83d\ud83d', '\ude00\ud83d\ude00\ud83d']) {
      expect(isCleanText(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('is exactly "well-formed UTF-16 and no NUL" (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 100 }), (s) => {
        expect(isCleanText(s)).toBe(wellFormed(s) && !s.includes('\u0000'));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('text(min, max, nonBlank)', () => {
  const content = text(1, 5, true);
  it('bounds are in code points; blank refused with nonBlank', () => {
    expect(content.safeParse('\u{1F600}'.repeat(5)).success).toBe(true);
    expect(content.safeParse('\u{1F600}'.repeat(6)).success).toBe(false);
    expect(content.safeParse('abcde').success).toBe(true);
    expect(content.safeParse('abcdef').success).toBe(false);
    expect(content.safeParse('').success).toBe(false);
    expect(content.safeParse(' \t\n').success).toBe(false);
    expect(content.safeParse(' x ').success).toBe(true);
    expect(content.safeParse('a\u0000').success).toBe(false);
    expect(content.safeParse('a\ud800').success).toBe(false);
    expect(content.safeParse(5).success).toBe(false);
    expect(text(0, 5).safeParse('   ').success).toBe(true);
  });

  it('keeps the text exactly as given (no trimming or escaping)', () => {
    expect(content.parse(' <i> ')).toBe(' <i> ');
  });

  it('reaction: 1..16 code points', () => {
    expect(reaction.safeParse('\u{1F600}'.repeat(16)).success).toBe(true);
    expect(reaction.safeParse('\u{1F600}'.repeat(17)).success).toBe(false);
    expect(reaction.safeParse('👍🏽').success).toBe(true);
    expect(reaction.safeParse('').success).toBe(false);
  });
});

describe('userId', () => {
  const parse = (v: unknown) => userId.safeParse(v);

  it('accepts JSON numbers and decimal strings, output is the canonical decimal string', () => {
    expect(userId.parse(1)).toBe('1');
    expect(userId.parse('1')).toBe('1');
    expect(userId.parse('007')).toBe('7');
    expect(userId.parse(' 42 ')).toBe('42');
    expect(userId.parse(0)).toBe('0');
    expect(userId.parse(2.0)).toBe('2');
    expect(userId.parse(Number.MAX_SAFE_INTEGER)).toBe(String(Number.MAX_SAFE_INTEGER));
    expect(userId.parse('999999999999999999')).toBe('999999999999999999');
  });

  it('refuses everything else', () => {
    for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, Infinity, NaN, '-1', '+1', '1e3', '1.0', '0x10', '', ' ', 'abc', '1 2', '1234567890123456789', true, false, null, undefined, {}, [], [1], { id: 1 }]) {
      expect(parse(bad).success, String(bad)).toBe(false);
    }
  });

  it('a number and its decimal string name the same user (property)', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        expect(userId.parse(n)).toBe(String(n));
        expect(userId.parse(String(n))).toBe(String(n));
        expect(userId.parse('0' + String(n))).toBe(String(n));
      }),
    );
  });
});

describe('ids, integers and small strings', () => {
  it('messageId: a UUID, lower-cased', () => {
    expect(messageId.parse('01890000-0000-7ABC-8000-00000000ABCD')).toBe('01890000-0000-7abc-8000-00000000abcd');
    for (const bad of ['', 'x', '01890000-0000-7000-8000-00000000000', '01890000000070008000000000000000', '{01890000-0000-7000-8000-000000000000}', 5, null]) {
      expect(messageId.safeParse(bad).success, String(bad)).toBe(false);
    }
  });

  it('intIn: numbers or numeric strings inside the range', () => {
    const i = intIn(1, 100);
    expect(i.parse(1)).toBe(1);
    expect(i.parse('100')).toBe(100);
    for (const bad of [0, 101, 1.5, '-1', '1.5', '', 'ten', null, true]) expect(i.safeParse(bad).success, String(bad)).toBe(false);
  });

  it('clientMessageId and requestId: at most 64 characters', () => {
    expect(clientMessageId.safeParse('k'.repeat(64)).success).toBe(true);
    expect(clientMessageId.safeParse('k'.repeat(65)).success).toBe(false);
    expect(clientMessageId.safeParse('').success).toBe(false);
    expect(clientMessageId.safeParse(1).success).toBe(false);
    expect(requestId.safeParse('r'.repeat(64)).success).toBe(true);
    expect(requestId.safeParse('r'.repeat(65)).success).toBe(false);
    expect(requestId.safeParse(1).success).toBe(false);
  });
});

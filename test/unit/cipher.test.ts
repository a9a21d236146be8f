/**
 * Body encryption at rest (src/crypto/cipher.ts): AES-256-GCM with a random 96-bit nonce,
 * the row id as AAD, key ids and rotation, and refusal of unusable key configurations.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BodyCipher, decodeKey, KeyConfigError, TamperedError, type Sealed } from '../../src/crypto/cipher.ts';

const key = (): Buffer => randomBytes(32);

/** What BodyCipher.fromConfig(single, many) throws (undefined when it does not). */
function configError(single: string | undefined, many: string[] | undefined): unknown {
  try {
    BodyCipher.fromConfig(single, many);
  } catch (e) {
    return e;
  }
  return undefined;
}
const ID = '01890000-0000-7000-8000-00000000abcd';

/** `fn` throws a TamperedError naming `keyId`. */
function expectTampered(fn: () => unknown, keyId: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TamperedError);
  expect((caught as TamperedError).keyId).toBe(keyId);
}

const flip = (b: Buffer, i: number, mask = 1): Buffer => {
  const c = Buffer.from(b);
  c[i] = c[i]! ^ mask;
  return c;
};

describe('seal / open', () => {
  const c = new BodyCipher([['k1', key()]]);

  it('round-trips any text, including astral characters, markup and the empty string', () => {
    for (const t of ['hello', '', '😀'.repeat(5000), '<script>alert(1)</script>', 'a\u0301\u200d\n\t', 'x'.repeat(100_000)]) {
      expect(c.open(c.seal(t, ID), ID)).toBe(t);
    }
  });

  it('round-trips arbitrary well-formed strings (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.uuid(), (t, aad) => {
        expect(c.open(c.seal(t, aad), aad)).toBe(t);
      }),
      { numRuns: 200 },
    );
  });

  it('uses the primary key id, a fresh 12-byte nonce each time and appends a 16-byte tag', () => {
    const a = c.seal('same text', ID);
    const b = c.seal('same text', ID);
    expect(a.keyId).toBe('k1');
    expect(a.nonce).toHaveLength(12);
    expect(a.ciphertext).toHaveLength(Buffer.byteLength('same text') + 16);
    expect(a.nonce.equals(b.nonce)).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(a.ciphertext.includes(Buffer.from('same text'))).toBe(false);
  });

  it('any flipped bit of ciphertext, tag or nonce → TamperedError (never garbage text)', () => {
    const s = c.seal('attack at dawn', ID);
    for (let i = 0; i < s.ciphertext.length; i++) {
      expectTampered(() => c.open({ ...s, ciphertext: flip(s.ciphertext, i) }, ID), 'k1');
      expectTampered(() => c.open({ ...s, ciphertext: flip(s.ciphertext, i, 0x80) }, ID), 'k1');
    }
    for (let i = 0; i < s.nonce.length; i++) expectTampered(() => c.open({ ...s, nonce: flip(s.nonce, i) }, ID), 'k1');
  });

  it('truncated, extended, empty or wrongly sized parts → TamperedError', () => {
    const s = c.seal('short', ID);
    expectTampered(() => c.open({ ...s, ciphertext: s.ciphertext.subarray(0, s.ciphertext.length - 1) }, ID), 'k1');
    expectTampered(() => c.open({ ...s, ciphertext: Buffer.concat([s.ciphertext, Buffer.from([0])]) }, ID), 'k1');
    expectTampered(() => c.open({ ...s, ciphertext: s.ciphertext.subarray(0, 15) }, ID), 'k1');
    expectTampered(() => c.open({ ...s, ciphertext: Buffer.alloc(0) }, ID), 'k1');
    expectTampered(() => c.open({ ...s, nonce: Buffer.alloc(0) }, ID), 'k1');
    expectTampered(() => c.open({ ...s, nonce: Buffer.concat([s.nonce, Buffer.from([1])]) }, ID), 'k1');
  });

  it('the AAD binds a body to its row: another id → TamperedError', () => {
    const s = c.seal('mine', ID);
    expectTampered(() => c.open(s, '01890000-0000-7000-8000-000000000002'), 'k1');
    expectTampered(() => c.open(s, ''), 'k1');
    expectTampered(() => c.open(s, ID.toUpperCase()), 'k1');
  });

  it('a wrong key or an unknown key id → TamperedError naming the stored key id', () => {
    const other = new BodyCipher([['k1', key()]]);
    const s = c.seal('secret', ID);
    expectTampered(() => other.open(s, ID), 'k1');
    expectTampered(() => c.open({ ...s, keyId: 'k9' }, ID), 'k9');
  });

  it('TamperedError carries no plaintext', () => {
    const s = c.seal('TOP-SECRET-BODY', ID);
    try {
      c.open({ ...s, ciphertext: flip(s.ciphertext, 0) }, ID);
      expect.unreachable();
    } catch (err) {
      expect(JSON.stringify({ ...(err as object), m: (err as Error).message, st: (err as Error).stack })).not.toContain('TOP-SECRET');
    }
  });
});

describe('key rotation', () => {
  it('the first key seals, every configured key opens', () => {
    const k1 = key();
    const k2 = key();
    const old = new BodyCipher([['k1', k1]]);
    const rotated = new BodyCipher([
      ['k2', k2],
      ['k1', k1],
    ]);
    expect(rotated.primaryKeyId).toBe('k2');
    const before: Sealed = old.seal('from before', ID);
    expect(rotated.open(before, ID)).toBe('from before');
    const after = rotated.seal('from after', ID);
    expect(after.keyId).toBe('k2');
    expect(rotated.open(after, ID)).toBe('from after');
    // The old keyring cannot read what the new primary sealed; a retired key's rows no longer open.
    expectTampered(() => old.open(after, ID), 'k2');
    const retired = new BodyCipher([['k2', k2]]);
    expectTampered(() => retired.open(before, ID), 'k1');
    expect(retired.open(after, ID)).toBe('from after');
  });

  it('a key id names one key: the same id with another key cannot open', () => {
    const a = new BodyCipher([['main', key()]]);
    const b = new BodyCipher([['main', key()]]);
    expectTampered(() => b.open(a.seal('x', ID), ID), 'main');
  });
});

describe('key configuration', () => {
  const hex = randomBytes(32).toString('hex');
  const b64 = randomBytes(32).toString('base64');
  const b64url = randomBytes(32).toString('base64url');

  it('decodeKey accepts 64 hex digits, base64 and base64url of exactly 32 bytes', () => {
    expect(decodeKey(hex, 'K')).toEqual(Buffer.from(hex, 'hex'));
    expect(decodeKey(hex.toUpperCase(), 'K')).toEqual(Buffer.from(hex, 'hex'));
    expect(decodeKey(b64, 'K')).toEqual(Buffer.from(b64, 'base64'));
    expect(decodeKey(b64url, 'K')).toEqual(Buffer.from(b64url, 'base64url'));
    expect(decodeKey(`  ${hex}\n`, 'K')).toEqual(Buffer.from(hex, 'hex'));
  });

  it('decodeKey refuses other lengths and forms, naming the setting but never the key', () => {
    for (const bad of ['', 'short', hex.slice(0, 62), hex + 'ab', randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), 'not a key!!', 'zz'.repeat(32)]) {
      let err: unknown;
      try {
        decodeKey(bad, 'CHAT_ENCRYPTION_KEY');
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(KeyConfigError);
      expect((err as Error).message).toContain('CHAT_ENCRYPTION_KEY');
      if (bad.length > 8) expect((err as Error).message).not.toContain(bad);
    }
  });

  it('the keyring refuses no keys, wrong key sizes, repeated or malformed ids', () => {
    expect(() => new BodyCipher([])).toThrow(KeyConfigError);
    expect(() => new BodyCipher([['k1', randomBytes(31)]])).toThrow(KeyConfigError);
    expect(() => new BodyCipher([['k1', randomBytes(33)]])).toThrow(KeyConfigError);
    expect(() => new BodyCipher([['k1', randomBytes(16)]])).toThrow(KeyConfigError);
    expect(() =>
      new BodyCipher([
        ['k1', key()],
        ['k1', key()],
      ]),
    ).toThrow(/twice/);
    for (const id of ['', 'a b', 'k:1', 'x'.repeat(33), 'ключ', 'k/1']) expect(() => new BodyCipher([[id, key()]]), id).toThrow(KeyConfigError);
    expect(new BodyCipher([['A.z_-9', key()]]).primaryKeyId).toBe('A.z_-9');
    expect(new BodyCipher([['x'.repeat(32), key()]]).primaryKeyId).toBe('x'.repeat(32));
  });

  it('fromConfig: CHAT_ENCRYPTION_KEYS (first primary) wins over CHAT_ENCRYPTION_KEY (id k1); neither → error', () => {
    const single = BodyCipher.fromConfig(hex, undefined);
    expect(single.primaryKeyId).toBe('k1');
    const many = BodyCipher.fromConfig(hex, [`new:${b64}`, `k1:${hex}`]);
    expect(many.primaryKeyId).toBe('new');
    expect(many.open(single.seal('x', ID), ID)).toBe('x');
    expect(BodyCipher.fromConfig(undefined, [`only:${b64url}`]).primaryKeyId).toBe('only');
    expect(BodyCipher.fromConfig(hex, []).primaryKeyId).toBe('k1');
    expect(() => BodyCipher.fromConfig(undefined, undefined)).toThrow(KeyConfigError);
    expect(() => BodyCipher.fromConfig('', [])).toThrow(KeyConfigError);
  });

  it('fromConfig refuses CHAT_ENCRYPTION_KEY beside CHAT_ENCRYPTION_KEYS unless listed there as k1 (its rows would be unreadable)', () => {
    const other = randomBytes(32).toString('hex');
    for (const many of [[`new:${b64}`], [`new:${b64}`, `k1:${other}`], [`new:${b64}`, `old:${hex}`]]) {
      const err = configError(hex, many);
      expect(err, JSON.stringify(many)).toBeInstanceOf(KeyConfigError);
      expect((err as Error).message).toMatch(/CHAT_ENCRYPTION_KEY .*k1/);
      expect((err as Error).message).not.toContain(hex);
    }
    // The same key, written another way (base64 of the hex key's bytes), is the same key.
    expect(BodyCipher.fromConfig(hex, [`new:${b64}`, `k1:${Buffer.from(hex, 'hex').toString('base64')}`]).primaryKeyId).toBe('new');
  });

  it('fromConfig refuses malformed CHAT_ENCRYPTION_KEYS entries', () => {
    for (const entries of [[hex], [`:${hex}`], ['k1:'], ['k1:tooshort'], [`k1:${hex}`, `k1:${b64}`], [`bad id:${hex}`]]) {
      const err = configError(undefined, entries);
      expect(err, JSON.stringify(entries)).toBeInstanceOf(KeyConfigError);
      expect((err as Error).message).not.toContain(hex);
      expect((err as Error).message).not.toContain(b64);
    }
  });
});

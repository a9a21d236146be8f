/**
 * Sealed bus frames (src/fanout/wire.ts; DESIGN "Cross-process delivery": the bus never
 * carries plaintext that the database holds encrypted unless configured to): what goes
 * to Redis holds no part of the frame, the frame and its header (recipients, origin,
 * close) cannot be altered or forged without the key, a copy replayed a minute later is
 * refused, keys rotate like the body keys, and plaintext is refused unless accepted on
 * purpose.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BodyCipher } from '../../src/crypto/cipher.ts';
import { BUS_KEY_INFO } from '../../src/fanout/index.ts';
import { decodeDelivery, encodeDelivery, SEALED_MAX_AGE_MS } from '../../src/fanout/wire.ts';

const k1 = randomBytes(32);
const k2 = randomBytes(32);
const ring = (...ids: ('k1' | 'k2')[]) => new BodyCipher(ids.map((id) => [id, id === 'k1' ? k1 : k2] as const)).derive(BUS_KEY_INFO);
const frame = JSON.stringify({ type: 'new_private_message', message: { content: 'meet at the secret place ✓' } });
const sealedOnly = (open: BodyCipher) => ({ open, acceptPlaintext: false });

describe('sealed bus frames', () => {
  it('round-trip with every header field; the wire holds no part of the frame', () => {
    const d = { userIds: ['1', '2'], frame, exceptConnId: 'c', close: { code: 4409, reason: 'r' }, publishedAt: 1700000000123 };
    const wire = encodeDelivery('inst-1', d, true, ring('k1'));
    expect(wire).not.toContain('secret');
    expect(wire).not.toContain('new_private_message');
    expect(wire.startsWith('{"o":"inst-1",')).toBe(true);
    expect(decodeDelivery(wire, sealedOnly(ring('k1')))).toEqual({ origin: 'inst-1', delivery: d, sealed: true });
    // Recipients are named even for a per-user channel (withUsers false) once sealed.
    expect(decodeDelivery(encodeDelivery('inst-1', d, false, ring('k1')), sealedOnly(ring('k1')))?.delivery.userIds).toEqual(['1', '2']);
    // A fresh nonce per publish: the same frame never looks the same twice.
    expect(encodeDelivery('inst-1', d, true, ring('k1'))).not.toBe(wire);
  });

  it('refuse altered frames, altered headers (recipients, origin), other keys and plaintext', () => {
    const wire = encodeDelivery('inst-1', { userIds: ['1'], frame }, true, ring('k1'));
    const nl = wire.indexOf('\n');
    const body = Buffer.from(wire.slice(nl + 1), 'base64');
    body[20]! ^= 1;
    expect(decodeDelivery(wire.slice(0, nl + 1) + body.toString('base64'), sealedOnly(ring('k1')))).toBeNull();
    expect(decodeDelivery(wire.replace('"u":["1"]', '"u":["666"]'), sealedOnly(ring('k1')))).toBeNull();
    expect(decodeDelivery(wire.replace('"o":"inst-1"', '"o":"inst-2"'), sealedOnly(ring('k1')))).toBeNull();
    expect(decodeDelivery(wire, sealedOnly(ring('k2')))).toBeNull();
    expect(decodeDelivery(wire, { acceptPlaintext: true })).toBeNull();
    // Sealed under the body key itself (not the derived bus key): refused.
    expect(decodeDelivery(encodeDelivery('inst-1', { userIds: ['1'], frame }, true, new BodyCipher([['k1', k1]])), sealedOnly(ring('k1')))).toBeNull();

    const plain = encodeDelivery('inst-1', { userIds: ['1'], frame }, true);
    expect(decodeDelivery(plain, sealedOnly(ring('k1')))).toBeNull();
    expect(decodeDelivery(plain, { open: ring('k1'), acceptPlaintext: true })?.delivery.frame).toBe(frame);
  });

  it(`refuse a sealed message received more than ${SEALED_MAX_AGE_MS / 1000} s after (or before) it was sealed: replays`, () => {
    const wire = encodeDelivery('inst-1', { userIds: ['1'], frame }, false, ring('k1'));
    const now = Date.now();
    expect(decodeDelivery(wire, sealedOnly(ring('k1')), now + SEALED_MAX_AGE_MS - 1000)?.delivery.frame).toBe(frame);
    expect(decodeDelivery(wire, sealedOnly(ring('k1')), now + SEALED_MAX_AGE_MS + 1000)).toBeNull();
    expect(decodeDelivery(wire, sealedOnly(ring('k1')), now - SEALED_MAX_AGE_MS - 1000)).toBeNull();
  });

  it('rotate like the body keys: sealed with the primary, opened by any configured key', () => {
    const fromNew = encodeDelivery('a', { userIds: ['1'], frame }, false, ring('k2', 'k1'));
    expect(decodeDelivery(fromNew, sealedOnly(ring('k1', 'k2')))?.delivery.frame).toBe(frame);
    expect(decodeDelivery(fromNew, sealedOnly(ring('k1')))).toBeNull();
  });
});

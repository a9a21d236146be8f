/**
 * Sealed bus frames (src/crypto/busSeal.ts, src/fanout/wire.ts; DESIGN "Cross-process
 * delivery": the bus never carries plaintext that the database holds encrypted unless
 * configured to): what goes to Redis holds no part of the frame; the frame and its header
 * (recipients, origin, close) cannot be altered or forged without the key; each process
 * seals under its own derived key with counter nonces (never repeated), which receivers
 * read back to reject replays; a copy received a minute later is refused; keys rotate
 * like the body keys; plaintext is refused unless accepted on purpose; a decoder of a
 * build without sealing drops sealed messages instead of forwarding them; a refusal says
 * why (src/fanout/refusals.ts), and `stale` is only said of frames that opened.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BusSeal } from '../../src/crypto/busSeal.ts';
import { BodyCipher } from '../../src/crypto/cipher.ts';
import { decodeDelivery, decodeWire, encodeDelivery, SEALED_MAX_AGE_MS } from '../../src/fanout/wire.ts';

const k1 = randomBytes(32);
const k2 = randomBytes(32);
const body = (...ids: ('k1' | 'k2')[]) => new BodyCipher(ids.map((id) => [id, id === 'k1' ? k1 : k2] as const));
const frame = JSON.stringify({ type: 'new_private_message', message: { content: 'meet at the secret place ✓' } });
const sealedOnly = (open: BusSeal) => ({ open, acceptPlaintext: false });

/** The previous build's decoder (before sealing): header `o`, the rest is the frame. */
function previousDecoder(payload: string): string | null {
  const nl = payload.indexOf('\n');
  const h = JSON.parse(payload.slice(0, nl)) as { o?: unknown };
  return typeof h?.o === 'string' ? payload.slice(nl + 1) : null;
}

describe('sealed bus frames', () => {
  it('round-trip with every header field between two processes; the wire holds no part of the frame', () => {
    const [sender, receiver] = [new BusSeal(body('k1')), new BusSeal(body('k1'))];
    expect(sender.salt).not.toBe(receiver.salt);
    const d = { userIds: ['1', '2'], frame, exceptConnId: 'c', close: { code: 4409, reason: 'r' }, publishedAt: 1700000000123 };
    const wire = encodeDelivery('inst-1', d, true, sender);
    expect(wire).not.toContain('secret');
    expect(wire).not.toContain('new_private_message');
    expect(wire.startsWith('{"so":"inst-1",')).toBe(true);
    expect(decodeDelivery(wire, sealedOnly(receiver))).toEqual({ origin: 'inst-1', delivery: d, sealed: true, counter: 1 });
    // Per-user channel form (withUsers false): the recipients are still named once sealed.
    expect(decodeDelivery(encodeDelivery('inst-1', d, false, sender), sealedOnly(receiver))).toMatchObject({ delivery: { userIds: ['1', '2'] }, counter: 2 });
    // A build without sealing drops it instead of forwarding ciphertext to its clients.
    expect(previousDecoder(wire)).toBeNull();
  });

  it('nonces are counters: never repeated by a sender, read back by the receiver', () => {
    const [sender, receiver] = [new BusSeal(body('k1')), new BusSeal(body('k1'))];
    const nonces = new Set<string>();
    for (let i = 1; i <= 50; i++) {
      const wire = encodeDelivery('a', { userIds: ['1'], frame }, false, sender);
      nonces.add(Buffer.from(wire.slice(wire.indexOf('\n') + 1), 'base64').subarray(0, 12).toString('hex'));
      expect(decodeDelivery(wire, sealedOnly(receiver))?.counter).toBe(i);
    }
    expect(nonces.size).toBe(50);
  });

  it('refuse altered frames, altered headers (recipients, origin, salt), other keys and plaintext', () => {
    const [sender, receiver] = [new BusSeal(body('k1')), new BusSeal(body('k1'))];
    const wire = encodeDelivery('inst-1', { userIds: ['1'], frame }, true, sender);
    const nl = wire.indexOf('\n');
    const bytes = Buffer.from(wire.slice(nl + 1), 'base64');
    bytes[20]! ^= 1;
    expect(decodeDelivery(wire.slice(0, nl + 1) + bytes.toString('base64'), sealedOnly(receiver))).toBeNull();
    expect(decodeDelivery(wire.replace('"u":["1"]', '"u":["666"]'), sealedOnly(receiver))).toBeNull();
    expect(decodeDelivery(wire.replace('"so":"inst-1"', '"so":"inst-2"'), sealedOnly(receiver))).toBeNull();
    expect(decodeDelivery(wire.replace(`"z":"${sender.salt}"`, `"z":"${receiver.salt}"`), sealedOnly(receiver))).toBeNull();
    expect(decodeDelivery(wire, sealedOnly(new BusSeal(body('k2'))))).toBeNull();
    expect(decodeDelivery(wire, { acceptPlaintext: true })).toBeNull();

    const plain = encodeDelivery('inst-1', { userIds: ['1'], frame }, true);
    expect(decodeDelivery(plain, sealedOnly(receiver))).toBeNull();
    expect(decodeDelivery(plain, { open: receiver, acceptPlaintext: true })?.delivery.frame).toBe(frame);
  });

  it(`refuse a sealed message received more than ${SEALED_MAX_AGE_MS / 1000} s after (or before) it was sealed`, () => {
    const [sender, receiver] = [new BusSeal(body('k1')), new BusSeal(body('k1'))];
    const wire = encodeDelivery('inst-1', { userIds: ['1'], frame }, false, sender);
    const now = Date.now();
    expect(decodeDelivery(wire, sealedOnly(receiver), now + SEALED_MAX_AGE_MS - 1000)?.delivery.frame).toBe(frame);
    expect(decodeDelivery(wire, sealedOnly(receiver), now + SEALED_MAX_AGE_MS + 1000)).toBeNull();
    expect(decodeDelivery(wire, sealedOnly(receiver), now - SEALED_MAX_AGE_MS - 1000)).toBeNull();
  });

  it('say why they are refused: malformed, plaintext, unauthenticated, stale only once opened', () => {
    const [sender, receiver] = [new BusSeal(body('k1')), new BusSeal(body('k1'))];
    const wire = encodeDelivery('inst-1', { userIds: ['1'], frame }, false, sender);
    const nl = wire.indexOf('\n');
    const now = Date.now();
    expect(decodeWire(wire, sealedOnly(receiver), now)).toMatchObject({ origin: 'inst-1', sealed: true, counter: 1 });
    for (const bad of ['no header line', '{not json\n{}', 'null\n{}', '{"x":"c"}\n{}', wire.replace(/,"s":\d+/, ''), wire.replace(/"k":"k1",/, '')]) {
      expect(decodeWire(bad, sealedOnly(receiver), now), bad.slice(0, 40)).toBe('malformed');
    }
    expect(decodeWire(encodeDelivery('inst-1', { userIds: ['1'], frame }, true), sealedOnly(receiver), now)).toBe('plaintext');
    const bytes = Buffer.from(wire.slice(nl + 1), 'base64');
    bytes[20]! ^= 1;
    expect(decodeWire(wire.slice(0, nl + 1) + bytes.toString('base64'), sealedOnly(receiver), now)).toBe('unauthenticated');
    expect(decodeWire(wire.replace('"u":["1"]', '"u":["2"]'), sealedOnly(receiver), now)).toBe('unauthenticated');
    expect(decodeWire(wire, sealedOnly(new BusSeal(body('k2'))), now)).toBe('unauthenticated');
    expect(decodeWire(wire, { acceptPlaintext: true }, now)).toBe('unauthenticated');
    expect(decodeWire(wire, sealedOnly(receiver), now + SEALED_MAX_AGE_MS + 1000)).toBe('stale');
    expect(decodeWire(wire, sealedOnly(receiver), now - SEALED_MAX_AGE_MS - 1000)).toBe('stale');
    // A forgery is unauthenticated whatever its seal time says.
    expect(decodeWire(wire, sealedOnly(new BusSeal(body('k2'))), now + SEALED_MAX_AGE_MS + 1000)).toBe('unauthenticated');
  });

  it('rotate like the body keys: sealed with the primary, opened by any configured key', () => {
    const fromNew = encodeDelivery('a', { userIds: ['1'], frame }, false, new BusSeal(body('k2', 'k1')));
    expect(decodeDelivery(fromNew, sealedOnly(new BusSeal(body('k1', 'k2'))))?.delivery.frame).toBe(frame);
    expect(decodeDelivery(fromNew, sealedOnly(new BusSeal(body('k1'))))).toBeNull();
  });
});

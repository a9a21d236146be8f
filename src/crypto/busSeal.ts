/**
 * Sealing of the frames the Redis bus carries (DESIGN "Cross-process delivery": the bus
 * never carries plaintext that the database holds encrypted unless configured to;
 * src/fanout/wire.ts puts them on the wire). AES-256-GCM (NIST SP 800-38D) under a key
 * of this process's own: HKDF-SHA256 (RFC 5869) of each configured message-body key
 * with a random 16-byte salt drawn at start and {@link BUS_KEY_INFO}. The nonce is a
 * counter (4 zero bytes, then 8 bytes big-endian), so a (key, nonce) pair is never used
 * twice and a key seals at most one process lifetime of frames, far below the 2^32 of
 * §8.3 for random nonces. Receivers derive the sender's key from the salt in its header
 * (cached) and can reject a counter that goes backwards: a replay.
 */
import { randomBytes } from 'node:crypto';
import type { BodyCipher } from './cipher.ts';

/** HKDF `info` of the bus keys. */
export const BUS_KEY_INFO = 'chat-server bus v1';
/** Bytes of the nonce at the start of a sealed frame. */
export const BUS_NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Salts (other processes) whose derived keyrings are kept. */
const MAX_PEERS = 1024;

/** This process's bus keys: seals with its own, opens anyone's (same configured keys). */
export class BusSeal {
  /** This process's HKDF salt, base64url (16 bytes): sent in every sealed header. */
  readonly salt: string;
  private readonly own: BodyCipher;
  private counter = 0;
  private readonly peers = new Map<string, BodyCipher>();

  /** @param base the message-body keyring (CHAT_ENCRYPTION_KEY / CHAT_ENCRYPTION_KEYS) */
  constructor(private readonly base: BodyCipher) {
    const salt = randomBytes(16);
    this.salt = salt.toString('base64url');
    this.own = base.derive(BUS_KEY_INFO, salt);
    this.peers.set(this.salt, this.own);
  }

  /** Id of the configured key this process seals under (the primary). */
  get keyId(): string {
    return this.own.primaryKeyId;
  }

  /**
   * Seal `frame` (UTF-8) with the next counter nonce; `aad` is authenticated, not sent.
   * @returns nonce ‖ ciphertext ‖ tag
   */
  seal(frame: string, aad: string): Buffer {
    const n = ++this.counter;
    const nonce = Buffer.alloc(BUS_NONCE_BYTES);
    nonce.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 4);
    nonce.writeUInt32BE(n >>> 0, 8);
    const s = this.own.seal(frame, aad, nonce);
    return Buffer.concat([nonce, s.ciphertext]);
  }

  /**
   * Open a frame sealed by the process whose salt is `salt` under configured key `keyId`.
   * @param sealed nonce ‖ ciphertext ‖ tag
   * @returns the frame and the sender's counter, or null when it does not authenticate
   *   (unknown key id, wrong key, altered bytes or `aad`, malformed); never throws
   */
  open(keyId: string, salt: string, sealed: Buffer, aad: string): { frame: string; counter: number } | null {
    if (sealed.length < BUS_NONCE_BYTES + TAG_BYTES || !/^[A-Za-z0-9_-]{22}$/.test(salt)) return null;
    let ring = this.peers.get(salt);
    if (!ring) {
      if (this.peers.size >= MAX_PEERS) this.peers.clear();
      ring = this.base.derive(BUS_KEY_INFO, Buffer.from(salt, 'base64url'));
      this.peers.set(salt, ring);
    }
    const nonce = sealed.subarray(0, BUS_NONCE_BYTES);
    try {
      const frame = ring.open({ keyId, nonce, ciphertext: sealed.subarray(BUS_NONCE_BYTES) }, aad);
      return { frame, counter: nonce.readUInt32BE(4) * 0x1_0000_0000 + nonce.readUInt32BE(8) };
    } catch {
      return null;
    }
  }
}

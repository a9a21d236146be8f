/**
 * Message-body encryption at rest: AES-256-GCM, a random 96-bit nonce per seal, a
 * 128-bit tag, and a key id stored beside each row (NIST SP 800-38D). Several keys may
 * be configured: the first (primary) seals, every key opens, so keys rotate without
 * rewriting history. The caller's additional authenticated data binds a body to its row
 * (chat/bodySeal.ts: id, conversation, sender, recipient or group, edit time), so a body
 * copied onto another row, or a row moved or re-attributed, is detected as tampering.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/** A sealed body as stored: `ciphertext` is the encrypted bytes followed by the 16-byte tag. */
export interface Sealed {
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
}

/** Why a stored body could not be opened: its key id is not configured, or it failed GCM authentication. */
export type UnreadableReason = 'unknown_key' | 'failed_authentication';
/** Every {@link UnreadableReason}. */
export const UNREADABLE_REASONS: readonly UnreadableReason[] = ['unknown_key', 'failed_authentication'];

/** A stored body failed authentication (key not configured, wrong key, altered bytes, or moved to another row). */
export class TamperedError extends Error {
  constructor(
    readonly keyId: string,
    /** unknown_key: no configured key has the row's id (a rotation mistake); failed_authentication: the rest. */
    readonly reason: UnreadableReason = 'failed_authentication',
  ) {
    super('message body failed authentication');
    this.name = 'TamperedError';
  }
}

/** The configured keys are unusable; the message names the problem (never the key). */
export class KeyConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyConfigError';
  }
}

const TAG_BYTES = 16;
const NONCE_BYTES = 12;

/**
 * Decode a 32-byte key written as 64 hex digits or as base64 (standard or URL-safe).
 * Throws {@link KeyConfigError} when it is neither or not exactly 32 bytes.
 */
export function decodeKey(text: string, label: string): Buffer {
  const t = text.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) key = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) key = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (!key || key.length !== 32) throw new KeyConfigError(`${label}: expected 32 bytes as base64 or 64 hex digits`);
  return key;
}

/** AES-256-GCM sealing and opening with a keyring. */
export class BodyCipher {
  private readonly keys = new Map<string, Buffer>();
  /** Key id used for new seals. */
  readonly primaryKeyId: string;

  /**
   * @param keys `[keyId, 32-byte key]` pairs; the first is primary. Throws
   *   {@link KeyConfigError} when empty, a key is not 32 bytes, or an id repeats.
   */
  constructor(keys: readonly (readonly [string, Buffer])[]) {
    if (keys.length === 0) throw new KeyConfigError('no encryption key configured');
    for (const [id, key] of keys) {
      if (!/^[A-Za-z0-9_.-]{1,32}$/.test(id)) throw new KeyConfigError(`key id ${JSON.stringify(id)}: 1..32 of A-Z a-z 0-9 _ . -`);
      if (key.length !== 32) throw new KeyConfigError(`key ${id}: expected 32 bytes`);
      if (this.keys.has(id)) throw new KeyConfigError(`key id ${id} appears twice`);
      this.keys.set(id, key);
    }
    this.primaryKeyId = keys[0]![0];
  }

  /**
   * A keyring for another purpose: each key replaced by HKDF-SHA256 of it (RFC 5869,
   * `salt`, `info` as given, 32 bytes), same ids, same primary. Sealing with it never
   * reuses a key of this keyring, so one configured secret serves several uses (the Redis
   * bus: src/crypto/busSeal.ts, a key per process from a random salt).
   * @param info context string naming the purpose
   * @param salt HKDF salt (default none)
   */
  derive(info: string, salt: Buffer = Buffer.alloc(0)): BodyCipher {
    return new BodyCipher([...this.keys].map(([id, key]) => [id, Buffer.from(hkdfSync('sha256', key, salt, info, 32))] as const));
  }

  /**
   * Build from configuration: `CHAT_ENCRYPTION_KEYS` ("id1:key1,id2:key2", first
   * primary) or else `CHAT_ENCRYPTION_KEY` (key id "k1"). Both set is refused unless
   * `CHAT_ENCRYPTION_KEYS` lists that key as `k1`: it replaces the single key, and adding it
   * beside one (the natural first rotation step) would leave every body sealed under k1
   * unreadable (audit 10, F5). Throws {@link KeyConfigError} (never with key material).
   */
  static fromConfig(single: string | undefined, many: readonly string[] | undefined): BodyCipher {
    if (many && many.length > 0) {
      const keys = many.map((entry) => {
        const i = entry.indexOf(':');
        if (i <= 0) throw new KeyConfigError('CHAT_ENCRYPTION_KEYS: expected id1:key1,id2:key2');
        const id = entry.slice(0, i);
        return [id, decodeKey(entry.slice(i + 1), `CHAT_ENCRYPTION_KEYS (${id})`)] as const;
      });
      if (single) {
        const k1 = keys.find(([id]) => id === 'k1')?.[1];
        if (!k1 || !k1.equals(decodeKey(single, 'CHAT_ENCRYPTION_KEY'))) {
          throw new KeyConfigError('CHAT_ENCRYPTION_KEY is set beside CHAT_ENCRYPTION_KEYS, which replaces it: list that key in CHAT_ENCRYPTION_KEYS as k1:<key> (bodies sealed with it carry key id k1), or unset CHAT_ENCRYPTION_KEY');
        }
      }
      return new BodyCipher(keys);
    }
    if (!single) throw new KeyConfigError('CHAT_ENCRYPTION_KEY or CHAT_ENCRYPTION_KEYS is required');
    return new BodyCipher([['k1', decodeKey(single, 'CHAT_ENCRYPTION_KEY')]]);
  }

  /**
   * Encrypt `plaintext` (UTF-8) bound to `aad` (chat/bodySeal.ts) with the primary key and a
   * fresh random nonce, or `nonce` (12 bytes) when the caller guarantees it is never used
   * twice with this key (a counter). Throws only if the platform's crypto fails.
   */
  seal(plaintext: string, aad: string, nonce: Buffer = randomBytes(NONCE_BYTES)): Sealed {
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.primaryKeyId)!, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const body = cipher.update(plaintext, 'utf8');
    const final = cipher.final();
    return { keyId: this.primaryKeyId, nonce, ciphertext: Buffer.concat([body, final, cipher.getAuthTag()]) };
  }

  /**
   * Decrypt a stored body sealed with additional data `aad`. Throws {@link TamperedError} when the key id
   * is unknown or authentication fails (altered bytes, wrong row, wrong key).
   */
  open(sealed: Sealed, aad: string): string {
    const key = this.keys.get(sealed.keyId);
    if (!key) throw new TamperedError(sealed.keyId, 'unknown_key');
    if (sealed.nonce.length !== NONCE_BYTES || sealed.ciphertext.length < TAG_BYTES) throw new TamperedError(sealed.keyId);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES));
      return decipher.update(sealed.ciphertext.subarray(0, sealed.ciphertext.length - TAG_BYTES), undefined, 'utf8') + decipher.final('utf8');
    } catch {
      throw new TamperedError(sealed.keyId);
    }
  }
}

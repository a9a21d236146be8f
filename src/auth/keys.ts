/**
 * The HS256 key shared with the auth backend (PROTOCOL §3): `JWT_SECRET` decoded per
 * `JWT_SECRET_ENCODING`, at least 32 bytes, turned into a `KeyObject` once at start
 * (verification with a KeyObject avoids re-importing the secret per token).
 */
import { createSecretKey, type KeyObject } from 'node:crypto';

/** Thrown when the secret is missing, undecodable or shorter than 32 bytes. */
export class JwtKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JwtKeyError';
  }
}

/**
 * Decode the shared secret. `base64` accepts standard or URL-safe base64 (padding
 * optional) and refuses anything else, so a plain-text secret configured with the wrong
 * encoding stops the process instead of silently producing another key.
 * Throws {@link JwtKeyError}.
 */
export function decodeJwtSecret(secret: string | undefined, encoding: 'base64' | 'utf8'): Buffer {
  if (!secret) throw new JwtKeyError('JWT_SECRET is required');
  let key: Buffer;
  if (encoding === 'base64') {
    const t = secret.trim();
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) throw new JwtKeyError('JWT_SECRET: expected base64 (JWT_SECRET_ENCODING=base64); set JWT_SECRET_ENCODING=utf8 for a text secret');
    key = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  } else {
    key = Buffer.from(secret, 'utf8');
  }
  if (key.length < 32) throw new JwtKeyError(`JWT_SECRET: at least 32 bytes once decoded are required (got ${key.length})`);
  return key;
}

/** The decoded secret as a KeyObject for jsonwebtoken (HS256 sign and verify). */
export function jwtKey(secret: string | undefined, encoding: 'base64' | 'utf8'): KeyObject {
  return createSecretKey(decodeJwtSecret(secret, encoding));
}

/**
 * Minting tokens the way the auth backend does (HS256, `sub`, `jti`, `exp`): for
 * `npm run token`, the demo, tests and benchmarks. The server itself never issues tokens.
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';

/** Options of {@link signToken}. `ttlS` seconds until `exp` (default 3600). */
export interface SignOptions {
  ttlS?: number;
  jti?: string;
  issuer?: string;
  audience?: string;
  /** Extra claims merged into the payload. */
  claims?: Record<string, unknown>;
}

/** Sign an HS256 JWT for user `sub` (decimal string). Returns the compact token. */
export function signToken(key: KeyObject, sub: string, opts: SignOptions = {}): string {
  const payload: Record<string, unknown> = { sub, jti: opts.jti ?? randomUUID(), ...opts.claims };
  return jwt.sign(payload, key, {
    algorithm: 'HS256',
    expiresIn: opts.ttlS ?? 3600,
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
    ...(opts.audience ? { audience: opts.audience } : {}),
  });
}

/** Parse a TTL such as `90`, `90s`, `15m`, `1h`, `7d` into seconds; throws on anything else. */
export function parseTtl(s: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) throw new Error(`bad TTL ${JSON.stringify(s)}: use e.g. 90s, 15m, 1h, 7d`);
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as const)[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

/**
 * Token verification (PROTOCOL §3 item 3): HS256 only, with a KeyObject made once;
 * `exp` required; `nbf`/`iat` in the future beyond the leeway refused; `iss`/`aud` when
 * configured; `jti` not in `jwt_revocation`; `sub` a user in `users_auth`. Any lookup
 * error refuses with AUTH_UNAVAILABLE (fail closed).
 */
import type { KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { AuthErrorCode } from '../protocol/errors.ts';
import { isCleanText } from '../protocol/fields.ts';
import type { Logger } from '../observability/logger.ts';
import type { UserStore } from '../store/users.ts';
import type { Identity } from './identity.ts';

/** Largest epoch ms a Date holds (ECMA-262 §21.4.1.22 TimeClip). */
const MAX_DATE_MS = 8.64e15;
/** Longest `jti` accepted, UTF-16 units (the backend's are UUIDs). */
const MAX_JTI_LENGTH = 255;
/** Longest token verified, UTF-16 units; a longer one is TOKEN_INVALID without a signature check (the backend's are ~300). */
export const MAX_TOKEN_LENGTH = 16_384;

/** Verification settings. `clockToleranceS` seconds. */
export interface VerifierOptions {
  key: KeyObject;
  clockToleranceS: number;
  issuer?: string;
  audience?: string;
}

/** Outcome: an identity, or an `auth_error` code and text (no token content in it). */
export type AuthResult = { ok: true; identity: Identity } | { ok: false; code: AuthErrorCode; message: string };

/** Verifies tokens against the shared key and the backend's tables. */
export class TokenVerifier {
  /** @param logger receives lookup failures (error text only; never the token) */
  constructor(
    private readonly opts: VerifierOptions,
    private readonly users: UserStore,
    private readonly logger?: Logger,
  ) {}

  /**
   * Check the signature and claims only (no database). Resolves the `sub`, `jti` and `exp`
   * (epoch ms), or a failure code.
   */
  checkClaims(token: string | undefined): { ok: true; sub: string; jti: string | null; expMs: number } | { ok: false; code: AuthErrorCode; message: string } {
    if (!token) return { ok: false, code: 'TOKEN_MISSING', message: 'No token provided' };
    if (token.length > MAX_TOKEN_LENGTH) return { ok: false, code: 'TOKEN_INVALID', message: 'Token too long' };
    let payload: jwt.JwtPayload;
    try {
      const p = jwt.verify(token, this.opts.key, {
        algorithms: ['HS256'],
        clockTolerance: this.opts.clockToleranceS,
        complete: true,
        ...(this.opts.issuer ? { issuer: this.opts.issuer } : {}),
        ...(this.opts.audience ? { audience: this.opts.audience } : {}),
      });
      if (typeof p.payload === 'string') return { ok: false, code: 'TOKEN_INVALID', message: 'Invalid token' };
      // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; this server knows none.
      if ((p.header as { crit?: unknown }).crit !== undefined) return { ok: false, code: 'TOKEN_INVALID', message: 'Token has critical header extensions' };
      payload = p.payload;
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) return { ok: false, code: 'TOKEN_EXPIRED', message: 'Token expired' };
      return { ok: false, code: 'TOKEN_INVALID', message: 'Invalid token' };
    }
    const nowS = Date.now() / 1000;
    if (typeof payload.exp !== 'number') return { ok: false, code: 'TOKEN_INVALID', message: 'Token has no expiry' };
    // An expiry no Date can hold (beyond the year 275760) is not a time: refuse it (fail closed).
    if (!(payload.exp * 1000 <= MAX_DATE_MS)) return { ok: false, code: 'TOKEN_INVALID', message: 'Token expiry out of range' };
    // RFC 7519 §4.1.6: iat is a NumericDate; one of another type cannot be checked, so it is refused.
    if (payload.iat !== undefined && typeof payload.iat !== 'number') return { ok: false, code: 'TOKEN_INVALID', message: 'Token issue time is not a number' };
    if (typeof payload.iat === 'number' && payload.iat > nowS + this.opts.clockToleranceS) {
      return { ok: false, code: 'TOKEN_INVALID', message: 'Token issued in the future' };
    }
    // RFC 7519 §4.1.7: jti is a string. Another type (e.g. a number) could not be matched
    // against jwt_revocation as the backend wrote it, so it is refused rather than skipped.
    // An empty jti could never be matched against jwt_revocation either: refused too.
    if (payload.jti !== undefined && (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > MAX_JTI_LENGTH || !isCleanText(payload.jti))) {
      return { ok: false, code: 'TOKEN_INVALID', message: 'Token id (jti) is not a valid string' };
    }
    // RFC 7519 §4.1.2: sub is a string. A number is taken only while it is exact: JSON.parse has
    // already rounded one above 2^53 - 1 to another user's id.
    const sub = typeof payload.sub === 'number' && Number.isSafeInteger(payload.sub) ? String(payload.sub) : payload.sub;
    if (typeof sub !== 'string' || !/^\d{1,18}$/.test(sub)) return { ok: false, code: 'TOKEN_INVALID', message: 'Token subject is not a user id' };
    const jti = typeof payload.jti === 'string' ? payload.jti : null;
    return { ok: true, sub: String(BigInt(sub)), jti, expMs: payload.exp * 1000 };
  }

  /** Full verification: claims, then revocation and user lookup in one query. Never throws. */
  async verify(token: string | undefined): Promise<AuthResult> {
    const claims = this.checkClaims(token);
    if (!claims.ok) return claims;
    let found;
    const checkedAtMs = Date.now();
    try {
      found = await this.users.forAuth(claims.sub, claims.jti);
    } catch (err) {
      this.logger?.warn('authentication lookup failed; refused (fail closed)', { userId: claims.sub, err: (err as Error).message });
      return { ok: false, code: 'AUTH_UNAVAILABLE', message: 'Authentication is temporarily unavailable' };
    }
    if (found.revoked) return { ok: false, code: 'TOKEN_REVOKED', message: 'Token has been revoked' };
    if (!found.user) return { ok: false, code: 'USER_NOT_FOUND', message: 'User not found' };
    return { ok: true, identity: { user: found.user, jti: claims.jti, expiresAtMs: claims.expMs, xmin: found.xmin, checkedAtMs } };
  }

  /**
   * Of the given sessions, the indexes of those whose jti is revoked or whose user was
   * deleted: one query for all (PROTOCOL §3 item 7). Throws on database errors.
   */
  invalidSessions(sessions: readonly { userId: string; jti: string | null }[]): Promise<number[]> {
    return this.users.invalidSessions(sessions);
  }
}

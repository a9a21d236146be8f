/**
 * Error codes and close codes of the wire protocol (PROTOCOL.md §2.2, §2.3, §3).
 */

/** `error.code` values (PROTOCOL §2.2, §9). */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'UNKNOWN_TYPE'
  | 'AUTH_REQUIRED'
  | 'NOT_FOUND'
  | 'USER_BLOCKED'
  | 'NOT_FOLLOWING'
  | 'INSUFFICIENT_PERMISSIONS'
  | 'CANNOT_DEMOTE_SELF'
  | 'OWNER_CANNOT_BE_REMOVED'
  | 'ALREADY_MEMBER'
  | 'ALREADY_ADMIN'
  | 'NOT_ADMIN'
  | 'GROUP_FULL'
  | 'TOO_MANY_MEMBERS'
  | 'EDIT_WINDOW_EXPIRED'
  | 'REACTION_EXISTS'
  | 'REACTION_NOT_FOUND'
  | 'RATE_LIMITED'
  | 'SERVICE_UNAVAILABLE'
  | 'SYNC_EXPIRED'
  | 'INTERNAL_ERROR';

/** `auth_error.code` values (PROTOCOL §3). */
export type AuthErrorCode = 'TOKEN_MISSING' | 'TOKEN_INVALID' | 'TOKEN_EXPIRED' | 'TOKEN_REVOKED' | 'USER_NOT_FOUND' | 'AUTH_UNAVAILABLE' | 'USER_MISMATCH';

/**
 * A refusal with a protocol error code. Thrown by chat, policy and validation code;
 * the gateway turns it into one `error` frame (PROTOCOL §2.2). Never carries secrets
 * or message bodies.
 */
export class ChatError extends Error {
  /**
   * @param code protocol code
   * @param message human text for the client
   * @param extra `field` (the offending inbound field), `details`, `retryAfter` (s)
   */
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: { field?: string; details?: string; retryAfter?: number } = {},
  ) {
    super(message);
    this.name = 'ChatError';
  }
}

/** Shorthand: `NOT_FOUND` with the protocol's no-existence-leak wording. */
export const notFound = (what: string, field?: string): ChatError => new ChatError('NOT_FOUND', `${what} not found`, field ? { field } : {});

/** Shorthand: `BAD_REQUEST` naming the field. */
export const badRequest = (message: string, field?: string): ChatError => new ChatError('BAD_REQUEST', message, field ? { field } : {});

/** WebSocket close codes (RFC 6455 §7.4 and PROTOCOL §2.3). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  INVALID_PAYLOAD: 1007,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  TOO_MANY_INVALID: 4400,
  AUTH_FAILED: 4401,
  ACCESS_REVOKED: 4403,
  AUTH_TIMEOUT: 4408,
  SESSION_REPLACED: 4409,
  TOO_MANY_DEVICES: 4429,
  SLOW_CONSUMER: 4503,
} as const;

/**
 * What a client does after its connection closes, by close code (PROTOCOL §2.3), and how
 * long it waits before the next attempt (exponential backoff with full jitter).
 */

/**
 * The decision for one close:
 * - `reconnect`: try again after a backoff delay;
 * - `refresh`: get a new token from the token provider, then reconnect (4401);
 * - `stop`: do not reconnect; the application decides (4400, 4403, 4409, 4429).
 */
export type CloseAction = 'reconnect' | 'refresh' | 'stop';

/** Why the client stopped for good, for the application (PROTOCOL §2.3 "client should"). */
export type StopReason =
  /** `close()` was called. */
  | 'closed_by_client'
  /** 4400: too many invalid frames; a bug in the client: not retried blindly. */
  | 'protocol_errors'
  /** 4401 (or repeated `auth_error`) and the token provider gave no new token. */
  | 'auth_failed'
  /** 4403: the token was revoked or the user deleted: log out. */
  | 'revoked'
  /** 4409: replaced by a newer session (`SINGLE_SESSION`). */
  | 'replaced'
  /** 4429: more devices than `MAX_CONNECTIONS_PER_USER`. */
  | 'too_many_devices'
  /** The connection closed and `reconnect: false` was given. */
  | 'disconnected'
  /** The WebSocket constructor refused the URL. */
  | 'bad_url';

/**
 * Map a close code to the client's action (PROTOCOL §2.3).
 * @param code the WebSocket close code (RFC 6455 §7.4; 1005/1006 when the peer sent none
 *   or the connection dropped)
 * @returns the action and, for `stop`, the reason; unknown codes reconnect
 */
export function onClose(code: number): { action: CloseAction; reason?: StopReason } {
  switch (code) {
    case 4400:
      return { action: 'stop', reason: 'protocol_errors' };
    case 4401:
      return { action: 'refresh' };
    case 4403:
      return { action: 'stop', reason: 'revoked' };
    case 4409:
      return { action: 'stop', reason: 'replaced' };
    case 4429:
      return { action: 'stop', reason: 'too_many_devices' };
    default:
      // 1000, 1001 (draining: "reconnect, with jitter"), 1006 (dropped), 1007, 1009, 1011,
      // 4408 (auth timeout), 4503 (slow consumer: "reconnect and sync"), anything else.
      return { action: 'reconnect' };
  }
}

/** Backoff settings, ms. */
export interface BackoffOptions {
  /** Delay cap of the first retry, ms (default 500). */
  minDelayMs?: number;
  /** Largest delay cap, ms (default 30 000). */
  maxDelayMs?: number;
}

/**
 * Delay before retry number `attempt` (0 = the first retry after a close): a uniformly
 * random value in [0, min(max, min × 2^attempt)] ("full jitter"), so that the clients a
 * draining server closed at once (1001) do not all come back at once.
 * @param attempt retries already made since the last successful authentication, ≥ 0
 * @param opts caps, ms
 * @param random a source of uniform [0, 1) numbers (tests pass a fixed one)
 * @returns the delay, ms (an integer ≥ 0)
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const min = opts.minDelayMs ?? 500;
  const max = opts.maxDelayMs ?? 30_000;
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

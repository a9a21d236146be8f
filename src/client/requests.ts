/**
 * The client's table of commands waiting for their direct reply (PROTOCOL §2: the one
 * reply to a frame carries its `requestId`), and the error type its promises reject with.
 */
import { backoffDelay, type BackoffOptions } from './reconnect.ts';
import { IDEMPOTENT_SENDS, REPLY_TYPES, RETRIED_COMMANDS, type CommandType, type ErrorCode, type ServerFrames } from './types.ts';

/**
 * Why a request failed: a protocol `error` frame's code (§2.2), or one of the client's own:
 * - `TIMEOUT`: no reply within the request's `timeoutMs`;
 * - `CONNECTION_LOST`: the connection dropped after the command was sent, and it is not
 *   one the client resends (it may or may not have been applied);
 * - `STOPPED`: the client stopped (`close()`, or a close code that ends it, §2.3) first;
 * - `PROTOCOL`: the server answered with a frame of an unexpected type.
 */
export type ClientErrorCode = ErrorCode | 'TIMEOUT' | 'CONNECTION_LOST' | 'STOPPED' | 'PROTOCOL';

/** A failed request. `frame` is the server's `error` frame when there was one. */
export class ClientError extends Error {
  /** Seconds to wait before retrying, from a `RATE_LIMITED` error (§4). */
  readonly retryAfter?: number;
  /** The offending field, from a `BAD_REQUEST` error (§2.2). */
  readonly field?: string;

  /**
   * @param code what went wrong (see {@link ClientErrorCode})
   * @param message human text
   * @param frame the server's `error` frame, if any
   */
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    readonly frame?: ServerFrames['error'],
  ) {
    super(message);
    this.name = 'ClientError';
    if (frame?.retryAfter !== undefined) this.retryAfter = frame.retryAfter;
    if (frame?.field !== undefined) this.field = frame.field;
  }
}

/** One command waiting for its reply. */
export interface PendingRequest {
  /** The frame as sent, `requestId` included (resent unchanged after a reconnect). */
  readonly frame: { type: CommandType; requestId: string } & Record<string, unknown>;
  /** True once written to the current connection. */
  sent: boolean;
  readonly resolve: (frame: Record<string, unknown>) => void;
  readonly reject: (err: ClientError) => void;
  timer?: ReturnType<typeof setTimeout>;
  /** Times this request was answered with an error and sent again. */
  retries?: number;
}

/** Commands waiting for replies, in the order they were made. */
export class RequestTable {
  private readonly byId = new Map<string, PendingRequest>();

  /** Number of requests waiting. */
  get size(): number {
    return this.byId.size;
  }

  /**
   * Add a request.
   * @param req the request; its timer (if any) is cleared when it settles
   */
  add(req: PendingRequest): void {
    this.byId.set(req.frame.requestId, req);
  }

  /** Requests not yet written to the current connection, oldest first. */
  unsent(): PendingRequest[] {
    return [...this.byId.values()].filter((r) => !r.sent);
  }

  /** True while `req` waits for its reply. */
  has(req: PendingRequest): boolean {
    return this.byId.get(req.frame.requestId) === req;
  }

  /** Every waiting request, oldest first. */
  all(): PendingRequest[] {
    return [...this.byId.values()];
  }

  /**
   * Settle the request a reply answers.
   * @param frame a parsed server frame
   * @param retry asked first about an `error` reply: returns true when it will send the
   *   request again (it stays waiting, unsent), false to reject it
   * @returns false when the frame answers no waiting request (it is an event)
   */
  settle(frame: Record<string, unknown> & { type: string; requestId?: unknown }, retry: (req: PendingRequest, err: ServerFrames['error']) => boolean = () => false): boolean {
    const id = frame.requestId;
    if (typeof id !== 'string') return false;
    const req = this.byId.get(id);
    if (!req) return false;
    if (frame.type === 'error') {
      const e = frame as unknown as ServerFrames['error'];
      req.sent = false;
      if (retry(req, e)) return true;
      this.remove(req);
      req.reject(new ClientError(e.code, e.message, e));
      return true;
    }
    this.remove(req);
    if (frame.type !== REPLY_TYPES[req.frame.type]) {
      req.reject(new ClientError('PROTOCOL', `expected ${REPLY_TYPES[req.frame.type]}, got ${frame.type}`));
    } else req.resolve(frame);
    return true;
  }

  /**
   * Fail one request with `err`.
   * @param req a waiting request (ignored if already settled)
   */
  fail(req: PendingRequest, err: ClientError): void {
    if (this.byId.get(req.frame.requestId) !== req) return;
    this.remove(req);
    req.reject(err);
  }

  /**
   * The connection dropped: requests written to it that the client may resend
   * ({@link RETRIED_COMMANDS}) become unsent again; the others fail with `CONNECTION_LOST`.
   */
  connectionLost(): void {
    for (const req of this.all()) {
      if (!req.sent) continue;
      if (RETRIED_COMMANDS.has(req.frame.type)) req.sent = false;
      else this.fail(req, new ClientError('CONNECTION_LOST', `connection lost before the reply to ${req.frame.type}`));
    }
  }

  /**
   * Fail every waiting request.
   * @param err the error each rejects with
   */
  failAll(err: ClientError): void {
    for (const req of this.all()) this.fail(req, err);
  }

  private remove(req: PendingRequest): void {
    this.byId.delete(req.frame.requestId);
    if (req.timer !== undefined) clearTimeout(req.timer);
  }
}

/**
 * When a refused send goes again. It stays in the outbox (README "Delivery guarantees",
 * what a client must do): after `retryAfter` plus up to 250 ms of jitter for
 * `RATE_LIMITED` (§4), after a reconnect-style backoff for `SERVICE_UNAVAILABLE` (nothing
 * was stored, §2.2); its `clientMessageId` makes the resend safe. Counts `req.retries`.
 * @param req the refused request
 * @param err the `error` reply
 * @param backoff the client's backoff caps, ms
 * @returns the delay, ms; undefined when the request is no send or the error is final (it
 *   gets its error)
 */
export function resendDelay(req: PendingRequest, err: ServerFrames['error'], backoff: BackoffOptions): number | undefined {
  if (!IDEMPOTENT_SENDS.has(req.frame.type) || (err.code !== 'RATE_LIMITED' && err.code !== 'SERVICE_UNAVAILABLE')) return undefined;
  const n = (req.retries = (req.retries ?? 0) + 1);
  return err.code === 'RATE_LIMITED' ? (err.retryAfter ?? 1) * 1000 + backoffDelay(0, { minDelayMs: 250 }) : backoffDelay(n, backoff);
}

/**
 * A random UUID (v4) for `clientMessageId`s (the idempotency key of a send, §6): Web
 * Crypto's `randomUUID` when present (browsers, Node ≥ 19), else from Math.random.
 * @returns 36 characters, e.g. `3b241101-e2bb-4255-8caf-4136c566a962`
 */
export function newId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (ch) => {
    const r = (Math.random() * 16) | 0;
    return (ch === 'x' ? r : (r & 3) | 8).toString(16);
  });
}

/**
 * One client connection (PROTOCOL §3): welcome, authentication (frame or Bearer header),
 * frames held before authentication, serial processing of commands in arrival order,
 * token refresh and expiry, protocol-error budget, outbound backpressure.
 */
import { randomUUID } from 'node:crypto';
import { WebSocket, type RawData } from 'ws';
import type { Identity } from '../auth/identity.ts';
import { encodeCursor } from '../chat/cursor.ts';
import { AFTER_REPLY, type Actor } from '../chat/context.ts';
import { ChatError, CloseCode } from '../protocol/errors.ts';
import type { DecodedFrame } from '../protocol/inbound.ts';
import { authErrorFrame, authSuccessFrame, connectedFrame, errorFrame, nowIso, serialize } from '../protocol/outbound.ts';
import { listenTo, type ConnSocket } from './connSocket.ts';
import type { GatewayHost } from './host.ts';
import { frameSize, InboundBudget, PAUSED_BACKLOG, PAUSED_BUDGET, ReadGate, RESUME_JITTER_MS } from './inboundBudget.ts';
import { frameBytes, queueVerdict, SLOW_CONSUMER, WRITE_PAST_LIMIT } from './sendQueue.ts';
import { writeFrameBatched } from './wsFrame.ts';

const MAX_HELD_FRAMES = 20;
const MAX_HELD_BYTES = 64 * 1024;
const MAX_AUTH_FAILURES = 5;
const PROTOCOL_ERROR_WINDOW_MS = 60_000;
const PAUSE_AT = 32;
const RESUME_AT = 8;
/**
 * Bytes read after the server's close frame was sent, while waiting for the peer's, before
 * reading stops again until the terminate: what an honest peer had in flight, with room to
 * spare; a peer flooding after its close is not read at full speed (audit 7, F4).
 */
const CLOSING_READ_BYTES = 256 * 1024;
/** Replies that mean a new message was committed. */
const STORED_REPLIES = new Set(['private_message_sent', 'group_message_sent', 'announcement_sent']);

/** A WebSocket connection and its session state. */
export class Connection {
  /** Connection id (also the `clientId` of the welcome frame). */
  readonly id = randomUUID();
  /** Set once authenticated. */
  identity: Identity | undefined;
  /** Heartbeat: set on pong, cleared when a ping is sent. */
  alive = true;
  /** The gateway's heartbeat slot holding this connection (./heartbeat.ts; -1: none). */
  heartbeatSlot = -1;
  /** Closed or closing: nothing more is sent or processed. */
  closed = false;

  private held: { frame: DecodedFrame; bytes: number }[] = [];
  private heldBytes = 0;
  private holdRefused = false;
  private authFailures = 0;
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  /** Reading stops while PAUSE_AT commands wait or the inbound budget is spent (./inboundBudget.ts). */
  private readonly gate: ReadGate;
  private readonly budget = new InboundBudget();
  private budgetTimer: NodeJS.Timeout | undefined;
  private draining = false;
  /** While admission runs: deliveries wait here so that `auth_success` is the first frame after it (PROTOCOL §3). */
  private deferred: (string | Buffer)[] | null = null;
  private errorTimes: number[] | undefined;
  private actorCache: Actor | undefined;
  /** Bytes of the one frame let past SEND_QUEUE_LIMIT_BYTES and not yet flushed (./sendQueue.ts; 0: none). */
  private allowance = 0;
  /** Bytes read since {@link close} (at most {@link CLOSING_READ_BYTES}). */
  private closingBytes = 0;

  /**
   * @param ws the accepted socket
   * @param ip client IP (PROTOCOL §1)
   * @param host shared services of the gateway
   * @param bearer token from an `Authorization: Bearer` upgrade header, if any
   */
  constructor(
    readonly ws: ConnSocket,
    readonly ip: string,
    readonly host: GatewayHost,
    bearer: string | undefined,
  ) {
    this.gate = new ReadGate(ws);
    // Shared listeners (no closures per connection): `this` is the socket, which knows its Connection.
    ws.conn = this;
    listenTo(ws);
    this.sendFrame(connectedFrame(this.id));
    host.deadlines.auth.set(this, Date.now() + host.settings.authTimeoutMs);
    if (bearer !== undefined) this.enqueue(() => this.authenticate(bearer, undefined));
  }

  /** The actor of commands (requires authentication). */
  actor(): Actor {
    const u = this.identity!.user;
    if (!this.actorCache || this.actorCache.userId !== u.id) this.actorCache = { userId: u.id, username: u.username, displayName: u.displayName, connId: this.id };
    return this.actorCache;
  }

  /**
   * Write a pre-serialised frame (JSON text or its UTF-8 bytes). A slow consumer, one whose
   * queued bytes pass SEND_QUEUE_LIMIT_BYTES (rules in ./sendQueue.ts: one frame of any
   * size is let through to a queue within the limit), is closed with 4503 and terminated a
   * second later (its buffers freed) instead (PROTOCOL §2.3).
   */
  sendRaw(frame: string | Buffer): void {
    this.write(frame, true);
  }

  /** {@link sendRaw}; `count` false when the caller counts the frame (fan-outs count once per delivery). */
  private write(frame: string | Buffer, count: boolean): void {
    if (this.closed) return;
    if (this.deferred) {
      // Held during admission: deliveries, already counted by the registry.
      this.deferred.push(frame);
      return;
    }
    // `length * 3` bounds the UTF-8 bytes (a UTF-16 unit is at most 3): exact bytes only near the limit.
    if (this.ws.bufferedAmount + frame.length * 3 > this.host.settings.sendQueueLimitBytes + this.allowance) return this.writeNearLimit(frame, count);
    if (count) this.host.metrics?.frameOut(frame);
    this.ws.send(frame, { binary: false });
  }

  /** {@link write} of a frame that may not fit under the queue limit (./sendQueue.ts). */
  private writeNearLimit(frame: string | Buffer, count: boolean): void {
    const bytes = frameBytes(frame);
    const verdict = queueVerdict(this.ws.bufferedAmount, bytes, this.host.settings.sendQueueLimitBytes, this.allowance);
    if (verdict === SLOW_CONSUMER) {
      this.host.logger.warn('slow consumer disconnected', { connId: this.id, userId: this.identity?.user.id, buffered: this.ws.bufferedAmount, frameBytes: bytes });
      this.close(CloseCode.SLOW_CONSUMER, 'Slow consumer', 1000);
      return;
    }
    if (count) this.host.metrics?.frameOut(frame);
    if (verdict !== WRITE_PAST_LIMIT) return this.ws.send(frame, { binary: false });
    this.allowance = bytes;
    // Called once the frame was handed to the kernel (or the socket closed).
    this.ws.send(frame, { binary: false }, () => (this.allowance = 0));
  }

  /**
   * Write a frame of a fan-out: `wsFrame` is the complete WebSocket frame (see
   * ./wsFrame.ts) of `payload`, built once for every recipient and written straight to
   * the socket. Only without permessage-deflate (the registry decides). Same rules as
   * {@link sendRaw} (held back during admission, 4503 for a slow consumer); goes through
   * `ws` when the socket is not open or the frame may not fit under the queue limit.
   * Metrics are the caller's (once per fan-out).
   */
  sendPrepared(wsFrame: Buffer, payload: Buffer): void {
    if (this.closed) return;
    if (this.deferred || this.ws.readyState !== WebSocket.OPEN || this.ws.bufferedAmount + wsFrame.length > this.host.settings.sendQueueLimitBytes + this.allowance) {
      this.write(payload, false);
      return;
    }
    writeFrameBatched(this.ws.rawSocket(), wsFrame);
  }

  /** Serialise and send one frame, adding `requestId` when given. */
  sendFrame(frame: object, requestId?: string): void {
    this.sendRaw(serialize(frame, requestId));
  }

  /**
   * Close with an RFC 6455 / PROTOCOL §2.3 code. The socket is terminated after
   * `terminateAfterMs` if the peer does not complete the closing handshake. Reading
   * resumes if it was paused (a backlog or the inbound budget), so that the peer's close
   * frame (RFC 6455 §5.5.1) is read: frames still queued before it are dropped, up to
   * {@link CLOSING_READ_BYTES}. Without that, a connection closed while paused kept its
   * socket until the terminate (the fault suite's token-revoked: 4403 seen 5 s late, session 17).
   */
  close(code: number, reason: string, terminateAfterMs = 5000): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.budgetTimer);
    this.gate.open();
    this.host.metrics?.closedByServer(code, reason);
    // Debug level: a drain or a bus gap closes thousands at once (audit 8, F15).
    this.host.logger.debug('connection closed by the server', { connId: this.id, userId: this.identity?.user.id, ip: this.ip, code, reason });
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    setTimeout(() => this.ws.terminate(), terminateAfterMs).unref();
  }

  /**
   * Stop taking new frames (later ones are read and dropped: reading resumes if it was
   * paused, so the peer's closing handshake is seen); resolves, never rejects, once every
   * command already received has been answered (drain, PROTOCOL §2.3 1001). That may take
   * as long as a command does: the gateway's drain (./gateway.ts) does not wait past its deadline.
   */
  drain(): Promise<void> {
    this.draining = true;
    clearTimeout(this.budgetTimer);
    this.gate.open();
    return this.chain;
  }

  /** The authentication deadline passed (PROTOCOL §3 item 5): close 4408. Called by the gateway's deadline wheel. */
  authDeadlinePassed(): void {
    if (!this.identity) this.close(CloseCode.AUTH_TIMEOUT, 'Authentication timeout');
  }

  /** 60 s before `exp` (PROTOCOL §3 item 6): `token_expiring`. Called by the gateway's deadline wheel. */
  tokenExpiring(): void {
    if (!this.identity || this.closed) return;
    this.sendFrame({ type: 'token_expiring', expiresAt: new Date(this.identity.expiresAtMs).toISOString(), timestamp: nowIso() });
  }

  /** `exp` + leeway passed without a refresh (PROTOCOL §3 item 6): close 4401. Called by the gateway's deadline wheel. */
  tokenExpired(): void {
    this.close(CloseCode.AUTH_FAILED, 'Token expired');
  }

  /** Socket events (see the shared listeners below). */
  onMessage(data: RawData, isBinary: boolean): void {
    if (this.closed) {
      // Dropped; past the allowance reading stops (the terminate timer ends the socket).
      this.closingBytes += frameSize(data);
      if (this.closingBytes > CLOSING_READ_BYTES) this.gate.set(PAUSED_BUDGET, true);
      return;
    }
    if (this.draining) return;
    // Bytes from the peer show it is there, even when its pong waits behind a backlog we
    // are still reading (the heartbeat must not take our own backpressure for a dead peer).
    this.alive = true;
    const wait = this.budget.take(frameSize(data), this.identity !== undefined);
    if (wait > 0 && !this.gate.has(PAUSED_BUDGET)) {
      this.pause(PAUSED_BUDGET, true);
      this.budgetTimer = setTimeout(() => this.pause(PAUSED_BUDGET, false), wait + Math.floor(Math.random() * RESUME_JITTER_MS));
    }
    if (isBinary) {
      this.host.metrics?.frameIn('binary');
      this.enqueue(async () => this.sendError(new ChatError('BAD_REQUEST', 'binary frames are not supported; send JSON text'), undefined));
      return;
    }
    const raw = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
    this.enqueue(() => this.process(raw));
  }

  /** Run `task` after every earlier one (commands are processed in arrival order); pause reading when many wait. */
  private enqueue(task: () => Promise<void>): void {
    this.pending++;
    if (this.pending >= PAUSE_AT) this.pause(PAUSED_BACKLOG, true);
    this.chain = this.chain
      .then(task)
      .catch((err) => {
        this.host.logger.error('connection task failed', { connId: this.id, err: (err as Error).message });
      })
      .finally(() => {
        this.pending--;
        if (this.pending <= RESUME_AT) this.pause(PAUSED_BACKLOG, false);
      });
  }

  /** True while this side has stopped reading the socket (backlog or inbound budget). */
  get holdingInput(): boolean {
    return this.gate.paused;
  }

  /** Set or clear one reason to stop reading (not once closed or draining). */
  private pause(reason: number, on: boolean): void {
    if (!this.closed && !this.draining) this.gate.set(reason, on);
  }

  private async process(raw: string): Promise<void> {
    if (this.closed) return;
    const res = this.host.decoder.decode(raw);
    this.host.metrics?.frameIn(res.ok ? res.frame.type : 'invalid');
    if (!res.ok) return this.sendError(res.error, res.requestId);
    const f = res.frame;
    if (f.type === 'ping') return this.sendFrame({ type: 'pong', timestamp: Date.now() }, f.requestId);
    if (f.type === 'test') return this.sendFrame({ type: 'test_response', message: 'Server is working', timestamp: Date.now() }, f.requestId);
    if (f.type === 'authenticate') return this.authenticate((f.cmd.token as string | null | undefined) ?? undefined, f.requestId);
    if (!this.identity) {
      const bytes = Buffer.byteLength(raw); // the 64 KiB bound is bytes, not UTF-16 units
      if (!this.holdRefused && this.held.length < MAX_HELD_FRAMES && this.heldBytes + bytes <= MAX_HELD_BYTES) {
        this.held.push({ frame: f, bytes });
        this.heldBytes += bytes;
        return;
      }
      this.refuseHeld();
      return this.sendError(new ChatError('AUTH_REQUIRED', 'Authenticate first'), f.requestId);
    }
    return this.execute(f);
  }

  private async execute(f: DecodedFrame): Promise<void> {
    const started = performance.now();
    try {
      const reply = await this.host.dispatch(this.actor(), f);
      if (!this.closed) this.sendFrame(reply, f.requestId);
      for (const fn of reply[AFTER_REPLY] ?? []) fn((frame) => this.sendFrame(frame));
      this.host.metrics?.commandDone(f.type, performance.now() - started);
      if (STORED_REPLIES.has(reply.type) && !reply.duplicate) this.host.metrics?.messageStored();
    } catch (err) {
      const ce = this.host.toChatError(err, { connId: this.id, userId: this.identity?.user.id, type: f.type });
      this.host.metrics?.commandDone(f.type, performance.now() - started);
      this.sendError(ce, f.requestId);
    }
  }

  /** Refuse every held frame with AUTH_REQUIRED and hold no more (PROTOCOL §3 item 5). */
  private refuseHeld(): void {
    this.holdRefused = true;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const h of held) this.sendError(new ChatError('AUTH_REQUIRED', 'Authenticate first'), h.frame.requestId);
  }

  private sendError(err: ChatError, requestId: string | undefined, errorId?: string): void {
    this.sendFrame(errorFrame(err, errorId ?? (err as ChatError & { errorId?: string }).errorId), requestId);
    this.host.metrics?.errorSent(err.code);
    if (err.code !== 'BAD_REQUEST' && err.code !== 'UNKNOWN_TYPE') return;
    const now = Date.now();
    const times = (this.errorTimes ??= []);
    times.push(now);
    while (times.length > 0 && now - times[0]! > PROTOCOL_ERROR_WINDOW_MS) times.shift();
    if (times.length >= this.host.settings.protocolErrorLimit) this.close(CloseCode.TOO_MANY_INVALID, 'Too many invalid frames');
  }

  /** `authenticate` (PROTOCOL §3 items 2–6, 9). */
  private async authenticate(token: string | undefined, requestId: string | undefined): Promise<void> {
    if (this.identity) {
      // A refresh verifies a JWT and looks up two tables: one point of the read budget.
      const wait = await this.host.refreshBudget(this.identity.user.id);
      if (this.closed) return;
      if (wait !== null) return this.sendError(new ChatError('RATE_LIMITED', 'Too many requests; slow down', { retryAfter: wait }), requestId);
    }
    const r = await this.host.verifier.verify(token);
    if (this.closed) return;
    if (!r.ok) {
      this.sendFrame(authErrorFrame(r.code, r.message), requestId);
      this.host.metrics?.errorSent(r.code);
      this.host.logger.debug('authentication refused', { connId: this.id, userId: this.identity?.user.id, ip: this.ip, code: r.code });
      if (this.identity) return;
      this.refuseHeld();
      // A lookup that could not run says nothing about the token: it does not count (§3 item 4).
      if (r.code !== 'AUTH_UNAVAILABLE' && ++this.authFailures >= MAX_AUTH_FAILURES) this.close(CloseCode.AUTH_FAILED, 'Authentication failed');
      return;
    }
    const id = r.identity;
    if (this.identity) {
      if (id.user.id !== this.identity.user.id) {
        this.sendFrame(authErrorFrame('USER_MISMATCH', 'Token is for another user'), requestId);
        this.host.metrics?.errorSent('USER_MISMATCH');
        return;
      }
      this.identity = id;
      this.scheduleExpiry();
      this.sendFrame(authSuccessFrame(id.user, id.expiresAtMs, encodeCursor({ x: id.xmin, i: '', t: Date.now() })), requestId);
      return;
    }
    this.deferred = [];
    let admitted = false;
    try {
      admitted = await this.host.admitUser(this, id);
    } finally {
      const deferred = this.deferred ?? [];
      this.deferred = null;
      if (admitted && !this.closed) {
        this.identity = id;
        this.host.deadlines.auth.clear(this);
        this.sendFrame(authSuccessFrame(id.user, id.expiresAtMs, encodeCursor({ x: id.xmin, i: '', t: Date.now() })), requestId);
        for (const f of deferred) this.write(f, false);
      }
    }
    if (!admitted || this.closed) return;
    this.scheduleExpiry();
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    this.holdRefused = false;
    for (const h of held) await this.execute(h.frame);
  }

  /** `token_expiring` 60 s before `exp`; close 4401 at `exp` + leeway unless refreshed (PROTOCOL §3 item 6). */
  private scheduleExpiry(): void {
    const exp = this.identity!.expiresAtMs;
    const { deadlines, settings } = this.host;
    // Already within the last minute: warn at once (a past time fires at the next tick).
    deadlines.tokenWarning.set(this, exp - 60_000);
    deadlines.tokenExpiry.set(this, exp + settings.jwtClockToleranceS * 1000);
  }

  /** The socket closed. */
  cleanup(): void {
    this.closed = true;
    clearTimeout(this.budgetTimer);
    const { deadlines } = this.host;
    deadlines.auth.clear(this);
    deadlines.tokenWarning.clear(this);
    deadlines.tokenExpiry.clear(this);
    this.held = [];
    this.host.connectionClosed(this);
  }
}

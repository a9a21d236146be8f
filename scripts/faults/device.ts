/**
 * One reconnecting client device (a real `ws` socket), as a production client should
 * behave (PROTOCOL §2.3, §3, §6, §9):
 *
 * - connects to its home instance, else alternately to the other one; reconnects after
 *   any close with exponential backoff and jitter; authenticates; on `auth_error`
 *   AUTH_UNAVAILABLE closes and retries later; after close 4403 (revoked) logs in again
 *   with a freshly minted token;
 * - after every authentication (and whenever asked: {@link Device.syncNow}) runs `sync`
 *   from the last cursor it saw (the first `auth_success.cursor`, then each
 *   `sync_result.cursor`), paging while `hasMore`;
 * - pipelines sends (each with a unique clientMessageId) without waiting for acks; an
 *   attempt answered with a retryable error, or lost with its connection, is retried with
 *   the SAME clientMessageId after a backoff (and after reconnecting), within a bounded
 *   number of attempts and time;
 * - reports every `new_private_message` and every synced message to the {@link Ledger}.
 */
import WebSocket from 'ws';
import type { Ledger, Msg } from './ledger.ts';

/** Bounds of the client's retries. */
export interface RetryPolicy {
  /** Give up on a message after this many attempts. */
  maxAttempts: number;
  /** …or this long after it was created, ms. */
  deadlineMs: number;
  /** Base and cap of the exponential backoff, ms (jitter: ×0.5..1.5). */
  baseMs: number;
  capMs: number;
}

/** Error codes after which a send is retried. */
const RETRYABLE = new Set(['SERVICE_UNAVAILABLE', 'RATE_LIMITED', 'INTERNAL_ERROR']);
const SYNC_LIMIT = 200;
const HANDSHAKE_TIMEOUT_MS = 3000;

/** Options of a {@link Device}. */
export interface DeviceOptions {
  key: string;
  userId: string;
  /** [home, other] WebSocket URLs. */
  urls: string[];
  /** Mint a new token (new jti) for this user. */
  mintToken(): { token: string; jti: string };
  ledger: Ledger;
  retry: RetryPolicy;
  /** A message of this device was acknowledged or given up. */
  onResolved(d: Device): void;
  /** Whether a close code is expected now for this device (else it is noted as unexpected). */
  closeExpected(d: Device, code: number): boolean;
}

/** Exponential backoff with jitter: base·2^n capped, times 0.5..1.5. */
export function backoff(n: number, baseMs: number, capMs: number): number {
  return Math.round(Math.min(capMs, baseMs * 2 ** Math.min(n, 16)) * (0.5 + Math.random()));
}

/** A reconnecting, syncing, retrying client device. */
export class Device {
  readonly key: string;
  readonly userId: string;
  /** Current token id (changes after a 4403 re-login). */
  jti: string;
  /** Close events: code and time. */
  readonly closeLog: { code: number; at: number }[] = [];
  /** Successful authentications (the first one included). */
  auths = 0;
  /** URL of the current/last connection. */
  url = '';

  private token: string;
  private ws: WebSocket | undefined;
  private authed = false;
  private stopped = false;
  private cursor: string | undefined;
  private connAttempts = 0;
  private readonly queue: Msg[] = [];
  private readonly inflight = new Map<string, Msg>();
  private pumpTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncInFlight = false;
  private syncWanted = false;
  private syncFailures = 0;
  private syncSeq = 0;
  private chainStarted = 0;
  private chainDone = 0;
  private readonly chainWaiters: { chain: number; resolve: () => void }[] = [];
  private outstandingCount = 0;

  constructor(private readonly opts: DeviceOptions) {
    this.key = opts.key;
    this.userId = opts.userId;
    const t = opts.mintToken();
    this.token = t.token;
    this.jti = t.jti;
  }

  /** Messages of this device not yet resolved (queued, waiting for a retry, or awaiting a reply). */
  outstanding(): number {
    return this.outstandingCount;
  }

  /** True while authenticated on an open socket. */
  isReady(): boolean {
    return this.authed && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Start connecting. */
  start(): void {
    this.connect();
  }

  /** Hand a new message to this device; it is sent as soon as possible. */
  submit(m: Msg): void {
    this.outstandingCount++;
    this.queue.push(m);
    this.pump();
  }

  /** Resolves once a sync chain that started after this call completed (hasMore false); rejects after `timeoutMs`. */
  syncOnce(timeoutMs: number): Promise<void> {
    const chain = this.chainStarted + 1;
    const p = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.key}: no complete sync within ${timeoutMs} ms`)), timeoutMs);
      this.chainWaiters.push({ chain, resolve: () => (clearTimeout(t), resolve()) });
    });
    this.requestSync();
    return p;
  }

  /** Catch up now (as a client does now and then): a sync chain from the last cursor, unless one is running. */
  syncNow(): void {
    if (this.isReady() && !this.syncInFlight) this.requestSync();
  }

  /** Close for good (no reconnect); pending messages stay unresolved. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.pumpTimer);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.syncTimer);
    const ws = this.ws;
    if (ws && ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }

  private connect(): void {
    if (this.stopped) return;
    const url = this.opts.urls[this.connAttempts % this.opts.urls.length]!;
    this.url = url;
    this.authed = false;
    const ws = new WebSocket(url, { handshakeTimeout: HANDSHAKE_TIMEOUT_MS, perMessageDeflate: false });
    this.ws = ws;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'authenticate', token: this.token })));
    ws.on('message', (data) => {
      if (this.ws !== ws) return;
      let f: Record<string, unknown>;
      try {
        f = JSON.parse(data.toString()) as Record<string, unknown>;
      } catch {
        this.opts.ledger.note('bad-frame', `${this.key}: non-JSON frame`);
        return;
      }
      this.onFrame(f);
    });
    ws.on('error', () => {
      /* a close follows */
    });
    ws.on('close', (code) => {
      if (this.ws === ws) this.onClose(code);
    });
  }

  /** The socket closed (`ours`: we closed it to retry authentication later). */
  private onClose(code: number, ours = false): void {
    const wasAuthed = this.authed;
    this.authed = false;
    this.syncInFlight = false;
    clearTimeout(this.syncTimer);
    if (this.stopped) return;
    if (!ours) this.closeLog.push({ code, at: Date.now() });
    // 1006 before authentication = refused or never opened (instance down): part of reconnecting.
    if (!ours && (wasAuthed || code !== 1006)) {
      this.opts.ledger.closeSeen(code);
      if (!this.opts.closeExpected(this, code)) this.opts.ledger.note('unexpected-close', `${this.key} on ${this.url}: close ${code}`);
    }
    if (code === 4403) {
      const t = this.opts.mintToken();
      this.token = t.token;
      this.jti = t.jti;
    }
    for (const m of this.inflight.values()) {
      m.ambiguous = true;
      this.retryOrGiveUp(m);
    }
    this.inflight.clear();
    const delay = backoff(this.connAttempts, 100, 2000);
    this.connAttempts++;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private onFrame(f: Record<string, unknown>): void {
    const type = f.type;
    const rid = typeof f.requestId === 'string' ? f.requestId : undefined;
    switch (type) {
      case 'connected':
      case 'pong':
      case 'token_expiring':
      case 'user_online':
      case 'user_offline':
        return;
      case 'auth_success':
        return this.onAuthSuccess(f);
      case 'auth_error':
        return this.onAuthError(f);
      case 'new_private_message':
        this.opts.ledger.received(this.key, this.userId, f.message as Record<string, unknown>, 'live');
        return;
      case 'private_message_sent': {
        if (!rid) return; // broadcast to the sender's other devices
        const m = this.inflight.get(rid);
        if (!m) return this.opts.ledger.note('stray-reply', `${this.key}: ack for unknown request ${rid}`);
        this.inflight.delete(rid);
        this.opts.ledger.ack(m, f);
        this.resolved();
        return;
      }
      case 'sync_result':
        return this.onSyncResult(f);
      case 'error': {
        if (rid?.startsWith('sync-')) return this.onSyncError(String(f.code));
        const m = rid ? this.inflight.get(rid) : undefined;
        if (!m) return this.opts.ledger.note('stray-error', `${this.key}: error ${String(f.code)} for ${rid ?? 'no request'}`);
        this.inflight.delete(rid!);
        const code = String(f.code);
        m.errors.push(code);
        if (code === 'INTERNAL_ERROR') this.opts.ledger.note('internal-error', `${this.key}: ${m.cmid} attempt ${m.attempts}: INTERNAL_ERROR errorId ${String(f.errorId)}`);
        if (!RETRYABLE.has(code)) {
          this.opts.ledger.note('non-retryable', `${this.key}: ${m.cmid}: ${code} ${String(f.message)}`);
          this.opts.ledger.giveUp(m);
          this.resolved();
          return;
        }
        const after = code === 'RATE_LIMITED' && typeof f.retryAfter === 'number' ? f.retryAfter * 1000 : 0;
        this.retryOrGiveUp(m, after);
        this.pump();
        return;
      }
      default:
        return;
    }
  }

  private onAuthSuccess(f: Record<string, unknown>): void {
    this.authed = true;
    this.auths++;
    this.connAttempts = 0;
    if (this.cursor === undefined) this.cursor = String(f.cursor);
    this.syncFailures = 0;
    this.requestSync(true);
    this.pump();
  }

  private onAuthError(f: Record<string, unknown>): void {
    const code = String(f.code);
    if (code !== 'AUTH_UNAVAILABLE') this.opts.ledger.note('auth-error', `${this.key} on ${this.url}: auth_error ${code}`);
    if (code === 'TOKEN_REVOKED') {
      const t = this.opts.mintToken();
      this.token = t.token;
      this.jti = t.jti;
    }
    // Try again later on a new connection (the close is ours: not an unexpected close).
    const ws = this.ws;
    this.ws = undefined;
    ws?.terminate();
    if (ws) this.onClose(1000, true);
  }

  /** Start a sync chain now (`force`: after authentication) or once the running one finishes. */
  private requestSync(force = false): void {
    if (force) this.syncInFlight = false;
    if (!this.isReady()) {
      this.syncWanted = true;
      return;
    }
    if (this.syncInFlight) {
      this.syncWanted = true;
      return;
    }
    this.syncWanted = false;
    this.chainStarted++;
    this.syncInFlight = true;
    this.sendSyncPage();
  }

  private sendSyncPage(): void {
    this.ws!.send(JSON.stringify({ type: 'sync', cursor: this.cursor, limit: SYNC_LIMIT, requestId: `sync-${++this.syncSeq}` }));
  }

  private onSyncResult(f: Record<string, unknown>): void {
    if (!this.syncInFlight) return;
    this.syncFailures = 0;
    for (const m of (f.messages as Record<string, unknown>[]) ?? []) this.opts.ledger.received(this.key, this.userId, m, 'sync');
    this.cursor = String(f.cursor);
    if (f.hasMore === true) return this.sendSyncPage();
    this.syncInFlight = false;
    this.chainDone = this.chainStarted;
    for (let i = this.chainWaiters.length - 1; i >= 0; i--) {
      const w = this.chainWaiters[i]!;
      if (w.chain <= this.chainDone) {
        this.chainWaiters.splice(i, 1);
        w.resolve();
      }
    }
    if (this.syncWanted) this.requestSync();
  }

  private onSyncError(code: string): void {
    if (!this.syncInFlight) return;
    if (code !== 'SERVICE_UNAVAILABLE') this.opts.ledger.note('sync-error', `${this.key}: sync error ${code}`);
    // Retry the same page later (the chain continues from the same cursor).
    const delay = backoff(this.syncFailures++, 200, 2000);
    clearTimeout(this.syncTimer);
    this.syncTimer = setTimeout(() => {
      if (this.isReady() && this.syncInFlight) this.sendSyncPage();
    }, delay);
  }

  private retryOrGiveUp(m: Msg, minDelayMs = 0): void {
    const r = this.opts.retry;
    if (m.attempts >= r.maxAttempts || Date.now() - m.createdAt >= r.deadlineMs) {
      this.opts.ledger.giveUp(m);
      this.resolved();
      return;
    }
    m.notBefore = Date.now() + Math.max(minDelayMs, backoff(m.attempts - 1, r.baseMs, r.capMs));
    this.queue.push(m);
  }

  private resolved(): void {
    this.outstandingCount--;
    this.opts.onResolved(this);
  }

  /** Send every queued message that is due; wake up again for the next one. */
  private pump(): void {
    if (this.stopped || !this.isReady()) return;
    const now = Date.now();
    let next = Infinity;
    for (let i = 0; i < this.queue.length; ) {
      const m = this.queue[i]!;
      if (m.notBefore > now) {
        next = Math.min(next, m.notBefore);
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      m.attempts++;
      const rid = `${m.cmid}#${m.attempts}`;
      this.inflight.set(rid, m);
      this.ws!.send(JSON.stringify({ type: 'send_private_message', recipientId: m.recipientId, content: m.content, clientMessageId: m.cmid, requestId: rid }));
    }
    clearTimeout(this.pumpTimer);
    if (next !== Infinity) this.pumpTimer = setTimeout(() => this.pump(), Math.max(1, next - now));
  }
}

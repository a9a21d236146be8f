/**
 * `ChatClient`: one device's connection to the chat server, for browsers and Node.
 *
 * - Authenticates with a token from the application (§3), refreshes it on
 *   `token_expiring` (§3 item 6; again after `retryAfter` when refused `RATE_LIMITED`)
 *   and after a 4401 close.
 * - Correlates each command with its one direct reply by `requestId` (§2, §2.1) and
 *   returns it as a promise; replies never reach the event listeners, events always do.
 * - Reconnects after a close by the rule of its code (§2.3), with exponential backoff
 *   and full jitter; stops for good on 4400, 4403, 4409 and 4429.
 * - Misses nothing across reconnects: after each authentication it runs `sync` from the
 *   last cursor it holds until `hasMore` is false (§9), and hands every page to `onSync`.
 *   While `ready` it does the same in the background every `resyncIntervalMs` when the
 *   connection had stream traffic (./syncLoop.ts), so the cursor keeps up with what
 *   arrived live and what live delivery missed still arrives.
 * - Keeps an outbox: sends (`send_private_message`, `send_group_message`,
 *   `send_announcement`) get a `clientMessageId` and are resent until acknowledged:
 *   after a reconnect, after `retryAfter` on `RATE_LIMITED` (§4), after a backoff on
 *   `SERVICE_UNAVAILABLE` (§2.2). A resend of one already stored gets the original ack
 *   (`duplicate: true`) and stores nothing (§6), so each is stored exactly once.
 * - Sends delivery receipts (§9 `message_delivered`) for the DMs this device receives,
 *   live or by sync, batched (`deliveryReceipts`, default on).
 * - Finds dead connections the browser cannot see: an application `ping` every
 *   `pingIntervalMs`, the socket dropped when no `pong` comes within `pongTimeoutMs`.
 *
 * It uses only the browser WebSocket surface (`addEventListener`, `send`, `close`,
 * `readyState`), so it runs on the browser's `WebSocket`, Node 22's global one, or the
 * `ws` package on Node 20 (`new ChatClient({ ..., WebSocket })`).
 */
import { ListenerSet, TypedListeners, type Listener } from './listeners.ts';
import { ReceiptBatcher } from './receipts.ts';
import { backoffDelay, onClose, type StopReason } from './reconnect.ts';
import { ClientError, newId, RequestTable, resendDelay, type PendingRequest } from './requests.ts';
import { SyncRounds } from './syncLoop.ts';
import type { ChatClientOptions, ClientState, StateChange, SyncPage, WebSocketConstructor, WebSocketLike } from './options.ts';
import { IDEMPOTENT_SENDS, type CommandFields, type CommandType, type ReplyOf, type ServerFrames, type ServerFrameType } from './types.ts';

const OPEN = 1;
let instances = 0;

/** A chat connection for one device (see the module documentation). */
export class ChatClient {
  private readonly opts: ChatClientOptions;
  private readonly requests = new RequestTable();
  private readonly listeners = new TypedListeners();
  private readonly stateListeners = new ListenerSet<StateChange>();
  private readonly syncListeners = new ListenerSet<SyncPage>();
  private readonly prefix = `c${++instances}-${Math.random().toString(36).slice(2, 8)}-`;
  private ws: WebSocketLike | undefined;
  private stateNow: ClientState = 'idle';
  private attempt = 0;
  private nextId = 0;
  private refreshToken = false;
  private authRetried = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** A token refresh refused `RATE_LIMITED`, asked again after its `retryAfter`. */
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** The cursor, the catch-up and the background resync (§9). */
  private readonly sync: SyncRounds<WebSocketLike>;
  /** Delivery receipts to send (§9), unless turned off. */
  private readonly receipts: ReceiptBatcher | undefined;
  private readyWaits: { resolve: () => void; reject: (e: ClientError) => void }[] = [];
  /** Replies awaited by the client's own frames (authenticate, sync, ping), by requestId. */
  private readonly internalWaits = new Map<string, (f: Record<string, unknown> | null) => void>();
  private readonly Ctor: WebSocketConstructor;
  /** The authenticated user's id, once authenticated. */
  userId: string | undefined;
  /** The current token's `exp` as the server reported it (ISO-8601), once authenticated. */
  expiresAt: string | undefined;

  /** @param opts see {@link ChatClientOptions} */
  constructor(opts: ChatClientOptions) {
    this.opts = opts;
    this.sync = new SyncRounds<WebSocketLike>(opts.cursor ?? null, opts.resyncIntervalMs ?? 300_000, {
      page: (ws, cursor) => this.internal(ws, { type: 'sync', cursor, limit: opts.syncLimit ?? 200 }),
      current: (ws) => this.ws === ws,
      ready: () => this.stateNow === 'ready',
      onPage: (page) => (page.messages.forEach((m) => this.receipts?.synced(m as { id?: unknown }, this.userId)), this.syncListeners.emit(page)),
      onExpired: (frame) => this.listeners.emit('error', frame),
    });
    const Ctor = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) throw new TypeError('no WebSocket: pass options.WebSocket (the ws package on Node 20)');
    this.Ctor = Ctor;
    if (opts.deliveryReceipts !== false) this.receipts = new ReceiptBatcher((messageIds) => this.request('message_delivered', { messageIds }).then(() => undefined, (e) => (e instanceof ClientError && e.code === 'RATE_LIMITED' ? (e.retryAfter ?? 1) : undefined)));
  }

  /** The current state. */
  get state(): ClientState {
    return this.stateNow;
  }

  /** The last sync cursor: save it to resume from there in a later session (§9). */
  get cursor(): string | null {
    return this.sync.cursor;
  }

  /** The sends not yet acknowledged, oldest first (frames as sent, `clientMessageId` included). */
  get outbox(): Record<string, unknown>[] {
    return this.requests.all().filter((r) => IDEMPOTENT_SENDS.has(r.frame.type)).map((r) => ({ ...r.frame }));
  }

  /**
   * Connect and authenticate (and sync, when a cursor is held).
   * @returns resolves once `ready`; rejects with `STOPPED` if the client stops first
   *   (e.g. the token is refused for good)
   */
  connect(): Promise<void> {
    if (this.stateNow === 'ready') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.readyWaits.push({ resolve, reject }));
    if (this.stateNow === 'idle' || this.stateNow === 'stopped') {
      this.attempt = 0;
      this.open();
    }
    return p;
  }

  /** Close for good (code 1000); every waiting command fails with `STOPPED`. */
  close(): void {
    this.stop('closed_by_client', 1000);
  }

  /**
   * Send a command and wait for its direct reply (§2.1).
   * @param type the command type (canonical name, §6–§11)
   * @param fields its fields; sends get a fresh `clientMessageId` when none is given
   * @param opts `timeoutMs`: reply deadline (default: none for sends, which stay in the
   *   outbox until acknowledged; `requestTimeoutMs` for the rest)
   * @returns the reply frame
   * @throws ClientError with the `error` frame's code (`NOT_FOUND`, `RATE_LIMITED` with
   *   `retryAfter`, … ; sends are retried on `RATE_LIMITED` and `SERVICE_UNAVAILABLE`
   *   instead), or `TIMEOUT`, `CONNECTION_LOST` (a command that is not resent was in
   *   flight when the connection dropped), `STOPPED`, `PROTOCOL`
   */
  request<K extends CommandType>(type: K, fields: CommandFields<K>, opts: { timeoutMs?: number } = {}): Promise<ReplyOf<K>> {
    const frame: PendingRequest['frame'] = { ...(fields as Record<string, unknown>), type, requestId: this.prefix + ++this.nextId };
    const send = IDEMPOTENT_SENDS.has(type);
    if (send && frame.clientMessageId === undefined) frame.clientMessageId = newId();
    const timeoutMs = opts.timeoutMs ?? (send ? undefined : (this.opts.requestTimeoutMs ?? 15_000));
    return new Promise<ReplyOf<K>>((resolve, reject) => {
      if (this.stateNow === 'stopped' || this.stateNow === 'idle') return reject(new ClientError('STOPPED', 'not connected: call connect()'));
      const req: PendingRequest = { frame, sent: false, resolve: resolve as (f: Record<string, unknown>) => void, reject };
      if (timeoutMs !== undefined) req.timer = setTimeout(() => this.requests.fail(req, new ClientError('TIMEOUT', `no reply to ${type} within ${timeoutMs} ms`)), timeoutMs);
      this.requests.add(req);
      if (this.stateNow === 'ready') this.write(req);
    });
  }

  /**
   * Listen to server events of one type (frames that answer none of this client's
   * commands: other users' and other devices' actions, presence, `session_conflict`, …).
   * @returns a function that removes the listener
   */
  on<T extends ServerFrameType>(type: T, fn: Listener<ServerFrames[T]>): () => void {
    return this.listeners.add(type, fn as Listener<unknown>);
  }

  /** Listen to state changes. @returns a function that removes the listener */
  onState(fn: Listener<StateChange>): () => void {
    return this.stateListeners.add(fn);
  }

  /**
   * Listen to sync pages: after every reconnect, what happened while this device was
   * away (§9); while connected, the background resync's pages (`resyncIntervalMs`), which
   * mostly repeat what arrived live. Apply each page (upsert messages by `id`, drop
   * tombstones; a page may be older than a live event that came while it was on its way:
   * keep the later `editedAt`, never bring back a deleted message) and save its `cursor`.
   * @returns a function that removes the listener
   */
  onSync(fn: Listener<SyncPage>): () => void {
    return this.syncListeners.add(fn);
  }

  private setState(state: ClientState, extra: Omit<StateChange, 'state'> = {}): void {
    this.stateNow = state;
    this.stateListeners.emit({ state, ...extra });
  }

  private open(): void {
    this.setState('connecting');
    let ws: WebSocketLike;
    try {
      ws = new this.Ctor(this.opts.url);
    } catch {
      return this.stop('bad_url', undefined);
    }
    this.ws = ws;
    this.connectTimer = setTimeout(() => this.drop(ws), this.opts.connectTimeoutMs ?? 30_000);
    ws.addEventListener('open', () => this.ws === ws && void this.authenticate(ws));
    ws.addEventListener('message', (ev) => this.ws === ws && this.onFrame(ev.data));
    ws.addEventListener('close', (ev) => this.ws === ws && this.closed(ev.code ?? 1006));
    ws.addEventListener('error', () => {});
  }

  private async token(): Promise<string> {
    const t = this.opts.token;
    const refresh = this.refreshToken;
    this.refreshToken = false;
    return typeof t === 'string' ? t : await t(refresh);
  }

  private async authenticate(ws: WebSocketLike): Promise<void> {
    this.setState('authenticating');
    let token: string;
    try {
      token = await this.token();
    } catch {
      // The token source failed (the auth service unreachable?): retry after a backoff.
      return this.drop(ws);
    }
    if (this.ws !== ws) return;
    const auth = await this.internal(ws, { type: 'authenticate', token });
    if (this.ws !== ws || !auth) return;
    if (auth.type === 'auth_error') return this.authRefused(ws, String(auth.code));
    this.userId = String(auth.userId);
    this.expiresAt = String(auth.expiresAt);
    this.attempt = 0;
    this.authRetried = false;
    if (this.sync.connected(String(auth.cursor)) && !(await this.catchUp(ws))) return;
    clearTimeout(this.connectTimer);
    this.setState('ready');
    this.startPings(ws);
    this.sync.start(ws);
    for (const req of this.requests.unsent()) this.write(req);
    for (const w of this.readyWaits.splice(0)) w.resolve();
  }

  /**
   * Sync from the held cursor until `hasMore` is false (§9), before the connection is
   * `ready` (./syncLoop.ts). A page refused `RATE_LIMITED` is asked again after
   * `retryAfter` (the connect deadline paused); `SYNC_EXPIRED` becomes an `error` event;
   * any other refusal drops the connection (a new one after a backoff).
   * @returns false if the connection dropped or was dropped
   */
  private async catchUp(ws: WebSocketLike): Promise<boolean> {
    this.setState('syncing');
    const end = await this.sync.catchUp(ws, async (retryAfterS) => {
      clearTimeout(this.connectTimer);
      await new Promise((resolve) => setTimeout(resolve, retryAfterS * 1000));
      if (this.ws !== ws) return false;
      this.connectTimer = setTimeout(() => this.drop(ws), this.opts.connectTimeoutMs ?? 30_000);
      return true;
    });
    if (end === 'refused') this.drop(ws);
    return end === 'ready';
  }

  /**
   * The token was refused (§3 item 4): a fresh one once from a token function, then stop.
   * `AUTH_UNAVAILABLE` (a server-side lookup failed) reconnects after a backoff instead.
   */
  private authRefused(ws: WebSocketLike, code: string): void {
    if (code === 'AUTH_UNAVAILABLE') return this.drop(ws);
    if (code === 'TOKEN_REVOKED' || code === 'USER_NOT_FOUND') return this.stop('revoked', undefined);
    if (typeof this.opts.token === 'function' && !this.authRetried) {
      this.refreshToken = true;
      this.authRetried = true;
      return void this.authenticate(ws);
    }
    this.stop('auth_failed', undefined);
  }

  /** Send a frame of the client's own and wait for its reply; null when the socket closed first. */
  private internal(ws: WebSocketLike, frame: Record<string, unknown>): Promise<Record<string, unknown> | null> {
    const requestId = `${this.prefix}i${++this.nextId}`;
    return new Promise((resolve) => {
      this.internalWaits.set(requestId, resolve);
      if (ws.readyState === OPEN) ws.send(JSON.stringify({ ...frame, requestId }));
    });
  }

  private write(req: PendingRequest): void {
    if (this.ws?.readyState !== OPEN) return;
    req.sent = true;
    this.ws.send(JSON.stringify(req.frame));
  }

  private onFrame(data: unknown): void {
    if (typeof data !== 'string') return;
    let f: Record<string, unknown> & { type: string; requestId?: unknown };
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof f !== 'object' || f === null || typeof f.type !== 'string') return;
    const own = typeof f.requestId === 'string' ? this.internalWaits.get(f.requestId) : undefined;
    if (own) {
      this.internalWaits.delete(f.requestId as string);
      return own(f);
    }
    this.sync.saw(f.type);
    if (this.requests.settle(f, (req, err) => this.retryLater(req, err))) return;
    if (f.type === 'token_expiring') void this.refresh();
    else if (f.type === 'new_private_message') this.receipts?.live(f.message as { id?: unknown }, this.userId);
    this.listeners.emit(f.type, f);
  }

  /** A send refused for a passing reason goes again after {@link resendDelay}. @returns true when a resend is scheduled */
  private retryLater(req: PendingRequest, err: ServerFrames['error']): boolean {
    const delay = resendDelay(req, err, this.opts.reconnect || {});
    if (delay === undefined) return false;
    setTimeout(() => this.requests.has(req) && !req.sent && this.stateNow === 'ready' && this.write(req), delay);
    return true;
  }

  /**
   * `token_expiring` (§3 item 6): authenticate again on the same connection. Refused
   * `RATE_LIMITED` (a refresh takes a READ_RATE_LIMIT point), it tries again after
   * `retryAfter` while the connection lasts.
   */
  private async refresh(): Promise<void> {
    if (typeof this.opts.token === 'string' || !this.ws) return;
    const ws = this.ws;
    clearTimeout(this.refreshTimer);
    this.refreshToken = true;
    let token: string;
    try {
      token = await this.token();
    } catch {
      return;
    }
    if (this.ws !== ws) return;
    const r = await this.internal(ws, { type: 'authenticate', token });
    if (this.ws !== ws || !r) return;
    if (r.type === 'auth_error') this.listeners.emit('auth_error', r);
    else if (r.type === 'auth_success') this.expiresAt = String(r.expiresAt);
    else if (r.type === 'error' && r.code === 'RATE_LIMITED') {
      this.refreshTimer = setTimeout(() => this.ws === ws && void this.refresh(), Number(r.retryAfter ?? 1) * 1000);
      (this.refreshTimer as { unref?: () => void }).unref?.();
    }
  }

  private startPings(ws: WebSocketLike): void {
    const every = this.opts.pingIntervalMs ?? 25_000;
    if (every <= 0) return;
    this.pingTimer = setInterval(() => {
      const deadline = setTimeout(() => this.drop(ws), this.opts.pongTimeoutMs ?? 10_000);
      void this.internal(ws, { type: 'ping' }).then(() => clearTimeout(deadline));
    }, every);
  }

  /** Give up on a connection now (dead or refused): handled as a drop (1006). */
  private drop(ws: WebSocketLike): void {
    if (this.ws !== ws) return;
    try {
      if (ws.terminate) ws.terminate();
      else ws.close(4000, 'client gave up');
    } catch {
      /* already closed */
    }
    this.closed(1006);
  }

  /** The current connection closed with `code`. */
  private closed(code: number): void {
    this.detach();
    const { action, reason } = onClose(code);
    if (action === 'stop') return this.stop(reason!, code);
    if (action === 'refresh') this.refreshToken = true;
    if (this.opts.reconnect === false) return this.stop('disconnected', code);
    const delay = backoffDelay(this.attempt++, this.opts.reconnect ?? {});
    this.setState('waiting', { closeCode: code });
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /** Forget the current socket: internal waits end, sent commands fail or go back to the outbox. */
  private detach(): void {
    this.ws = undefined;
    clearTimeout(this.connectTimer);
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    this.sync.stop();
    clearTimeout(this.refreshTimer);
    this.receipts?.forgetLive();
    for (const wake of this.internalWaits.values()) wake(null);
    this.internalWaits.clear();
    this.requests.connectionLost();
  }

  private stop(reason: StopReason, code: number | undefined): void {
    if (this.stateNow === 'stopped') return;
    const ws = this.ws;
    this.detach();
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    try {
      ws?.close(1000);
    } catch {
      /* already closed */
    }
    const err = new ClientError('STOPPED', `client stopped: ${reason}`);
    this.requests.failAll(err);
    this.setState('stopped', code === undefined ? { reason } : { closeCode: code, reason });
    for (const w of this.readyWaits.splice(0)) w.reject(err);
  }
}

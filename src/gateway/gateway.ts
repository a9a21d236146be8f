/**
 * The WebSocket edge (DESIGN "gateway/"): admission of upgrades (PROTOCOL §1), one
 * {@link Connection} per socket, heartbeat (§3 item 8), session re-checks (§3 item 7),
 * device cap and single session (§3 item 9), drain on shutdown (§2.3 1001).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Identity } from '../auth/identity.ts';
import type { TokenVerifier } from '../auth/verifier.ts';
import type { Actor, Reply } from '../chat/context.ts';
import type { Bus } from '../fanout/bus.ts';
import type { Logger } from '../observability/logger.ts';
import type { RateLimits } from '../policy/rateLimits.ts';
import type { Presence } from '../presence/presence.ts';
import { ChatError, CloseCode } from '../protocol/errors.ts';
import type { DecodedFrame, FrameDecoder } from '../protocol/inbound.ts';
import { nowIso } from '../protocol/outbound.ts';
import { DbUnavailableError } from '../store/db.ts';
import { isConnectionError } from '../store/pgDb.ts';
import { clientIp, originAllowed, type IpConnectionCounter } from './admission.ts';
import { Connection } from './connection.ts';
import { ConnSocket } from './connSocket.ts';
import { DeadlineWheel } from './deadlines.ts';
import type { Handler } from './dispatch.ts';
import { PendingSockets } from './handshakes.ts';
import { Heartbeat } from './heartbeat.ts';
import type { ConnectionDeadlines, GatewayHost, GatewayMetrics, GatewaySettings, UpgradeRejection } from './host.ts';
import { ConnectionRegistry } from './registry.ts';

/** Hooks other parts attach to connection events (presence notifications, typing). */
export interface GatewayHooks {
  /** A user's connection authenticated; `firstInDeployment` per presence. */
  userConnected?(userId: string, username: string, firstInDeployment: boolean): void;
  /** A user's authenticated connection closed; `lastInDeployment` per presence. */
  userDisconnected?(userId: string, username: string, lastInDeployment: boolean): void;
  /** Any connection closed (typing cleanup). */
  connectionClosed?(connId: string): void;
}

/** Everything the gateway is built from. */
export interface GatewayDeps {
  settings: GatewaySettings;
  logger: Logger;
  decoder: FrameDecoder;
  verifier: TokenVerifier;
  handlers: Record<string, Handler>;
  presence: Presence;
  bus: Bus;
  limits: RateLimits;
  ipCounter: IpConnectionCounter;
  metrics?: GatewayMetrics;
  hooks?: GatewayHooks;
}

/**
 * permessage-deflate (RFC 7692) when WS_COMPRESSION is on: no context kept between
 * messages in either direction and a 1 KiB window, so an idle connection holds no zlib
 * state (with `ws`'s defaults each kept ~270 KB against ~55 KB without compression).
 */
const PER_MESSAGE_DEFLATE = {
  serverNoContextTakeover: true,
  clientNoContextTakeover: true,
  serverMaxWindowBits: 10,
  zlibDeflateOptions: { memLevel: 7 },
} as const;

/** The WebSocket gateway. */
export class Gateway implements GatewayHost {
  readonly settings: GatewaySettings;
  readonly logger: Logger;
  readonly decoder: FrameDecoder;
  readonly verifier: TokenVerifier;
  readonly metrics?: GatewayMetrics;
  /** Authenticated connections by user (delivery target of the bus). */
  readonly registry: ConnectionRegistry<Connection>;
  readonly deadlines: ConnectionDeadlines = {
    auth: new DeadlineWheel<Connection>(DEADLINE_RESOLUTION_MS, (c) => c.authDeadlinePassed()),
    tokenWarning: new DeadlineWheel<Connection>(DEADLINE_RESOLUTION_MS, (c) => c.tokenExpiring()),
    tokenExpiry: new DeadlineWheel<Connection>(DEADLINE_RESOLUTION_MS, (c) => c.tokenExpired()),
  };
  /** Every open connection, pinged a slice at a time (PROTOCOL §3 item 8). */
  private readonly conns: Heartbeat<Connection>;
  private readonly wss: WebSocketServer;
  private recheckTimer: NodeJS.Timeout | undefined;
  private draining = false;
  /** Sockets per address whose request has not arrived yet (./handshakes.ts). */
  readonly pendingSockets: PendingSockets;

  constructor(private readonly deps: GatewayDeps) {
    this.settings = deps.settings;
    this.logger = deps.logger;
    this.decoder = deps.decoder;
    this.verifier = deps.verifier;
    this.metrics = deps.metrics;
    this.pendingSockets = new PendingSockets(deps.settings.maxConnectionsPerIp, () => this.metrics?.upgradeRejected('pending_ip_cap'));
    this.registry = new ConnectionRegistry<Connection>({
      prepareFrames: !deps.settings.wsCompression,
      onFramesOut: (payload, n) => this.metrics?.framesOutMany(payload, n),
    });
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: deps.settings.maxPayloadBytes,
      perMessageDeflate: deps.settings.wsCompression ? PER_MESSAGE_DEFLATE : false,
      WebSocket: ConnSocket,
    });
    this.conns = new Heartbeat<Connection>(deps.settings.heartbeatIntervalMs, deps.settings.heartbeatTimeoutMs, {
      ping: (c) => {
        if (c.closed) return false;
        try {
          c.ws.ping();
          return true;
        } catch {
          c.ws.terminate();
          return false;
        }
      },
      dead: (c) => {
        // We stopped reading it ourselves (a backlog of its commands, or its inbound budget
        // ran dry): its pong may be waiting unread. Both pauses end by themselves; the next
        // round checks it again.
        if (c.holdingInput) return;
        this.logger.info('dead peer terminated', { connId: c.id, userId: c.identity?.user.id });
        c.closed = true;
        c.ws.terminate();
      },
    });
  }

  /** Accept upgrades on `server` and start the heartbeat and re-check timers. */
  attach(server: Server): void {
    if (this.settings.trustProxy <= 0) this.pendingSockets.attach(server);
    server.on('upgrade', (req, socket, head) => void this.onUpgrade(req, socket, head));
    this.conns.start();
    this.recheckTimer = setInterval(() => void this.recheckSessions(), this.settings.sessionRecheckMs);
    this.recheckTimer.unref();
  }

  /** Open connections (authenticated or not). */
  connectionCount(): number {
    return this.conns.size;
  }

  /** Distinct authenticated users on this process. */
  userCount(): number {
    return this.registry.users();
  }

  /** True once {@link drain} started. */
  isDraining(): boolean {
    return this.draining;
  }

  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.pendingSockets.done(socket);
    const onError = () => socket.destroy();
    socket.on('error', onError);
    if (this.draining) return this.refuseUpgrade(socket, 503, 'Service Unavailable', 'draining');
    if (!originAllowed(req.headers.origin, this.settings.allowedOrigins)) return this.refuseUpgrade(socket, 403, 'Forbidden', 'origin');
    const ip = clientIp(req, this.settings.trustProxy);
    if ((await this.deps.limits.consume('connect', ip)) !== null) return this.refuseUpgrade(socket, 429, 'Too Many Requests', 'connect_rate');
    if (!(await this.deps.ipCounter.acquire(ip, this.settings.maxConnectionsPerIp))) return this.refuseUpgrade(socket, 429, 'Too Many Requests', 'ip_cap');
    if (socket.destroyed || this.draining) {
      this.deps.ipCounter.release(ip);
      socket.destroy();
      return;
    }
    const auth = req.headers.authorization;
    const bearer = auth && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, '').trim() : undefined;
    // The 101 response and the `connected` frame (PROTOCOL §3 item 1) leave in one write:
    // `ws` completes the upgrade and calls back synchronously, and the Connection writes its
    // welcome frame in that callback. One system call and one TCP segment less per connection.
    // A handshake `ws` refuses (400: bad version or key) never reaches the callback, and
    // the socket closes without a Connection: the per-IP slot taken above is given back
    // then, or the cap would fill with refused upgrades (PROTOCOL §1).
    let accepted = false;
    const releaseRefused = () => {
      if (!accepted) this.deps.ipCounter.release(ip);
    };
    socket.once('close', releaseRefused);
    socket.cork();
    try {
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        accepted = true;
        socket.removeListener('close', releaseRefused);
        // From here the ws library handles socket errors (and destroys the socket).
        socket.removeListener('error', onError);
        // The server's `WebSocket` option makes every accepted socket a ConnSocket.
        const conn = new Connection(ws as ConnSocket, ip, this, bearer);
        this.conns.add(conn);
      });
    } finally {
      socket.uncork();
    }
  }

  /** Refuse an upgrade with an HTTP `status` response (PROTOCOL §1), counted by `why` in the metrics. */
  private refuseUpgrade(socket: Duplex, status: number, text: string, why: UpgradeRejection): void {
    this.metrics?.upgradeRejected(why);
    if (socket.destroyed) return;
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
  }

  /** Run an authenticated command through its handler. */
  async dispatch(actor: Actor, f: DecodedFrame): Promise<Reply> {
    const h = this.deps.handlers[f.type];
    if (!h) throw new ChatError('UNKNOWN_TYPE', `unknown message type ${JSON.stringify(f.rawType)}`);
    return h(actor, f.cmd, f);
  }

  refreshBudget(userId: string): Promise<number | null> {
    return this.deps.limits.consume('read', userId);
  }

  /** Any error → protocol error. Dependencies down → SERVICE_UNAVAILABLE; bugs → INTERNAL_ERROR with an errorId in the log. */
  toChatError(err: unknown, ctx: Record<string, unknown>): ChatError {
    if (err instanceof ChatError) return err;
    const code = (err as { code?: string } | null)?.code;
    if (err instanceof DbUnavailableError || isConnectionError(err) || code === '57014') {
      this.logger.warn('database unavailable for a command', { ...ctx, err: (err as Error).message });
      return new ChatError('SERVICE_UNAVAILABLE', 'Service temporarily unavailable; nothing was changed, retry later', { retryAfter: 1 });
    }
    const errorId = randomUUID();
    this.logger.error('internal error', { ...ctx, errorId, err: (err as Error)?.message, stack: (err as Error)?.stack });
    return Object.assign(new ChatError('INTERNAL_ERROR', 'Internal error'), { errorId });
  }

  /**
   * First authentication of `conn` as `identity` (PROTOCOL §3 item 9, §2.3 4409/4429).
   * The device cap (none with SINGLE_SESSION) and the presence registration are one atomic
   * step of the presence store ({@link Presence.admit}: concurrent logins on any process
   * never exceed MAX_CONNECTIONS_PER_USER; with the store unreachable, this process's own
   * connections and in-flight admissions are counted); over the cap the connection is
   * closed 4429. With SINGLE_SESSION the user's other connections get `session_conflict`
   * and 4409 through the bus. Then the connection is registered for delivery (waiting for
   * the bus subscription) and the userConnected hook runs. Resolves false when refused or
   * closed meanwhile (everything registered is undone); never rejects on store errors.
   */
  async admitUser(conn: Connection, identity: Identity): Promise<boolean> {
    const userId = identity.user.id;
    const presence = this.deps.presence;
    const single = this.settings.singleSession;
    if (single) {
      this.deps.bus.publish({
        userIds: [userId],
        frame: JSON.stringify({ type: 'session_conflict', message: 'Signed in from another device', timestamp: nowIso() }),
        exceptConnId: conn.id,
        close: { code: CloseCode.SESSION_REPLACED, reason: 'Replaced by a newer session' },
      });
    }
    // One registration path; SINGLE_SESSION has no device cap (the older sessions are being closed).
    // Never rejects: with the shared store unreachable it counts this process's connections.
    const admission = await presence.admit(userId, conn.id, single ? Number.MAX_SAFE_INTEGER : this.settings.maxConnectionsPerUser);
    if (admission === 'refused') {
      conn.close(CloseCode.TOO_MANY_DEVICES, 'Too many devices');
      return false;
    }
    const first = admission === 'first';
    if (!conn.closed && this.registry.add(userId, conn)) await this.deps.bus.track(userId, true);
    this.deps.hooks?.userConnected?.(userId, identity.user.username, first);
    if (conn.closed) {
      // Closed while being admitted: its close handler ran without an identity, so undo here.
      if (this.registry.remove(userId, conn)) this.deps.bus.track(userId, false);
      presence.disconnected(userId, conn.id).then(
        (last) => this.deps.hooks?.userDisconnected?.(userId, identity.user.username, last),
        () => {},
      );
      return false;
    }
    return true;
  }

  connectionClosed(conn: Connection): void {
    this.conns.delete(conn);
    this.deps.ipCounter.release(conn.ip);
    this.deps.hooks?.connectionClosed?.(conn.id);
    const id = conn.identity;
    if (!id) return;
    const userId = id.user.id;
    if (this.registry.remove(userId, conn)) this.deps.bus.track(userId, false);
    this.deps.presence.disconnected(userId, conn.id).then(
      (last) => this.deps.hooks?.userDisconnected?.(userId, id.user.username, last),
      (err) => this.logger.warn('presence update failed', { userId, err: (err as Error).message }),
    );
  }

  /**
   * Close with 4403 every connection whose jti was revoked or whose user was deleted, in
   * one batched query per interval; and with 4401 any whose token expired (PROTOCOL §3 items 6–7).
   * A failing query is retried next interval; meanwhile a session whose last successful check
   * ({@link Identity.checkedAtMs}) is older than the grace (SESSION_RECHECK_GRACE_MS, default 3
   * intervals) is closed 1011 "reconnect": a revoked token cannot be told apart from a good
   * one then, and security checks fail closed (DESIGN; audit 10, F6). Its reconnect is refused
   * AUTH_UNAVAILABLE until the lookup works again.
   * @returns connections closed 4403 (0 when the query failed)
   */
  async recheckSessions(): Promise<number> {
    const conns = [...this.registry.all()].filter((c) => c.identity && !c.closed);
    const now = Date.now();
    for (const c of conns) if (c.identity!.expiresAtMs + this.settings.jwtClockToleranceS * 1000 < now) c.close(CloseCode.AUTH_FAILED, 'Token expired');
    if (conns.length === 0) return 0;
    const identities = conns.map((c) => c.identity!);
    let bad: number[];
    try {
      bad = await this.verifier.invalidSessions(identities.map((id) => ({ userId: id.user.id, jti: id.jti })));
    } catch (err) {
      const grace = this.settings.sessionRecheckGraceMs || 3 * this.settings.sessionRecheckMs;
      const stale = conns.filter((c) => c.identity && !c.closed && Date.now() - c.identity.checkedAtMs > grace);
      for (const c of stale) c.close(CloseCode.INTERNAL, 'Session could not be re-checked; reconnect');
      this.logger.warn('session re-check failed; will retry', { err: (err as Error).message, closedUnchecked: stale.length, graceMs: grace });
      return 0;
    }
    const revoked = new Set(bad);
    // Checked as of `now` (the query started after it). A connection that refreshed its token
    // meanwhile holds a newer identity, checked at its own authentication.
    identities.forEach((id, i) => {
      if (!revoked.has(i) && id.checkedAtMs < now) id.checkedAtMs = now;
    });
    for (const i of bad) conns[i]?.close(CloseCode.ACCESS_REVOKED, 'Access revoked');
    return bad.length;
  }

  /**
   * Drain (SIGTERM; PROTOCOL §2.3 1001, DESIGN "Failure behaviour"): refuse new upgrades,
   * stop reading commands, and close each connection 1001 "Server restarting; reconnect"
   * as soon as the commands it already received are answered. Never waits for a command
   * past the deadline: `timeoutMs` minus a closing-handshake grace (a quarter of it, at
   * most {@link DRAIN_CLOSE_GRACE_MS}) after the call, every connection still open gets the
   * 1001 close, and at `timeoutMs` every socket left is terminated. A command still running
   * then gets no answer (the client resends with its `clientMessageId`; its commit may
   * still land, docs/PROTOCOL-NOTES.md). Resolves within `timeoutMs` (ms, ≥ 0) plus one
   * poll (20 ms); never rejects.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    this.conns.stop();
    clearInterval(this.recheckTimer);
    this.stopDeadlines();
    const deadline = Date.now() + timeoutMs;
    const closeBy = deadline - Math.min(DRAIN_CLOSE_GRACE_MS, timeoutMs / 4);
    const goAway = (c: Connection) => c.close(CloseCode.GOING_AWAY, 'Server restarting; reconnect', Math.max(0, deadline - Date.now()));
    // The chains never reject; one answered after the deadline finds its connection closed.
    for (const c of this.conns.all()) void c.drain().then(() => goAway(c));
    const sleep = () => new Promise((r) => setTimeout(r, 20));
    while (this.conns.size > 0 && Date.now() < closeBy) await sleep();
    for (const c of this.conns.all()) goAway(c); // no-op for those already closing
    while (this.conns.size > 0 && Date.now() < deadline) await sleep();
    for (const c of this.conns.all()) c.ws.terminate();
  }

  private stopDeadlines(): void {
    for (const w of Object.values(this.deadlines)) w.close();
  }

  /** Stop timers and terminate every socket now. */
  close(): void {
    this.conns.stop();
    clearInterval(this.recheckTimer);
    this.stopDeadlines();
    for (const c of this.conns.all()) c.ws.terminate();
    this.wss.close();
  }
}

/** Deadlines fire at most this late, ms (PROTOCOL §3 gives them in seconds). */
const DEADLINE_RESOLUTION_MS = 100;
/** {@link Gateway.drain}: longest time left for the closing handshake of connections closed at its deadline, ms. */
const DRAIN_CLOSE_GRACE_MS = 1000;

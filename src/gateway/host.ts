/** What a {@link Connection} needs from the gateway around it. */
import type { Identity } from '../auth/identity.ts';
import type { TokenVerifier } from '../auth/verifier.ts';
import type { Actor, Reply } from '../chat/context.ts';
import type { Logger } from '../observability/logger.ts';
import type { ChatError } from '../protocol/errors.ts';
import type { DecodedFrame, FrameDecoder } from '../protocol/inbound.ts';
import type { Connection } from './connection.ts';
import type { DeadlineWheel } from './deadlines.ts';

/** The per-connection deadlines (PROTOCOL §3 items 5–6), one timer each for all connections. */
export interface ConnectionDeadlines {
  /** Close 4408 unless authenticated by then. */
  auth: DeadlineWheel<Connection>;
  /** `token_expiring`, 60 s before `exp`. */
  tokenWarning: DeadlineWheel<Connection>;
  /** Close 4401 at `exp` + leeway unless refreshed. */
  tokenExpiry: DeadlineWheel<Connection>;
}

/** Settings the gateway reads (a slice of Config; ms, bytes, counts). */
export interface GatewaySettings {
  authTimeoutMs: number;
  sendQueueLimitBytes: number;
  protocolErrorLimit: number;
  jwtClockToleranceS: number;
  maxConnectionsPerUser: number;
  singleSession: boolean;
  maxPayloadBytes: number;
  wsCompression: boolean;
  allowedOrigins: string[];
  maxConnectionsPerIp: number;
  trustProxy: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  sessionRecheckMs: number;
  /** 0 = 3 × sessionRecheckMs (see Gateway.recheckSessions). */
  sessionRecheckGraceMs: number;
}

/** Counters the gateway reports (implemented by observability/metrics). */
export interface GatewayMetrics {
  /**
   * A frame was read: `type` is its command type after alias mapping (PROTOCOL §2), or
   * `invalid` when it failed validation (§2.2), or `binary` (refused, §1).
   */
  frameIn(type: string): void;
  /** A frame was written (text, or its UTF-8 bytes). */
  frameOut(frame: string | Buffer): void;
  /** The same frame was written to `n` connections (one fan-out). */
  framesOutMany(frame: string | Buffer, n: number): void;
  /** A command of `type` was answered (reply or error frame) `ms` after it was read. */
  commandDone(type: string, ms: number): void;
  /** A message was committed (a send acknowledged without `duplicate`). */
  messageStored(): void;
  /**
   * An error frame went out: `error` (PROTOCOL §2.2, any cause: validation, command,
   * AUTH_REQUIRED) or `auth_error` (§3), by its `code`.
   */
  errorSent(code: string): void;
  /** The server closed a connection with close `code` (RFC 6455 §7.4; PROTOCOL's 4xxx codes). */
  closedByServer(code: number, reason?: string): void;
  /** An upgrade request was refused before the WebSocket opened (PROTOCOL §1). */
  upgradeRejected(reason: UpgradeRejection): void;
}

/**
 * Why an upgrade was refused: `draining` (503, shutting down), `origin` (403, Origin not
 * allowed), `connect_rate` (429, CONNECTION_RATE_PER_IP), `ip_cap` (429, MAX_CONNECTIONS_PER_IP),
 * `pending_ip_cap` (socket closed at accept: MAX_CONNECTIONS_PER_IP sockets of the address
 * have not finished their request, ./handshakes.ts).
 */
export type UpgradeRejection = 'draining' | 'origin' | 'connect_rate' | 'ip_cap' | 'pending_ip_cap';

/** Shared services for connections. */
export interface GatewayHost {
  settings: GatewaySettings;
  logger: Logger;
  decoder: FrameDecoder;
  verifier: TokenVerifier;
  metrics?: GatewayMetrics;
  /** Shared deadline timers of every connection. */
  deadlines: ConnectionDeadlines;
  /** Run an authenticated command; resolves its reply or throws. */
  dispatch(actor: Actor, frame: DecodedFrame): Promise<Reply>;
  /**
   * Take one point of the user's READ_RATE_LIMIT budget for an `authenticate` on an
   * already authenticated connection (a token refresh, PROTOCOL §3 item 6: a JWT
   * verification and two lookups; docs/PROTOCOL-NOTES.md "Reads and receipts").
   * Resolves null when allowed, else `retryAfter` in whole seconds (≥ 1); never rejects.
   */
  refreshBudget(userId: string): Promise<number | null>;
  /** Map any thrown value to a protocol error (logging internal ones with an errorId). */
  toChatError(err: unknown, ctx: Record<string, unknown>): ChatError;
  /**
   * First authentication of `conn` as `identity`: device cap (close 4429), single
   * session (older connections get 4409), registration for delivery and presence.
   * Resolves false when the connection was refused (and closed).
   */
  admitUser(conn: Connection, identity: Identity): Promise<boolean>;
  /** The socket closed: unregister everywhere. */
  connectionClosed(conn: Connection): void;
}

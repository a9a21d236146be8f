/**
 * Options and state types of {@link ChatClient} (./client.ts), and the WebSocket surface
 * it needs (the WHATWG WebSocket API, which browsers, Node 22 and the `ws` package share).
 */
import type { BackoffOptions, StopReason } from './reconnect.ts';
import type { ServerFrames } from './types.ts';

/** The part of the WebSocket API the client uses (WHATWG WebSockets; `ws` implements it). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'message' | 'close' | 'error', listener: (ev: { data?: unknown; code?: number }) => void): void;
  /** `ws` only: drop the TCP connection without a closing handshake. */
  terminate?(): void;
}

/** A WebSocket constructor: the browser's `WebSocket`, or `ws`'s default export. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * Where tokens come from: a fixed JWT, or a function the client calls for each
 * authentication (`refresh` true when the last token was refused or is expiring).
 */
export type TokenSource = string | ((refresh: boolean) => string | Promise<string>);

/** Options of a {@link ChatClient}. */
export interface ChatClientOptions {
  /** `ws://` or `wss://` URL of the server (any path, §1). */
  url: string;
  /** The JWT, or a function that returns one (§3). */
  token: TokenSource;
  /** WebSocket constructor; default `globalThis.WebSocket` (browsers, Node ≥ 22). */
  WebSocket?: WebSocketConstructor;
  /** Resume position the application saved (`onSync`'s `cursor`); default: from now on. */
  cursor?: string | null;
  /** Backoff caps, or `false` to never reconnect. */
  reconnect?: false | BackoffOptions;
  /** Default reply deadline of commands other than sends, ms (default 15 000). */
  requestTimeoutMs?: number;
  /** Application ping period while authenticated, ms (default 25 000; 0 = none). */
  pingIntervalMs?: number;
  /** Drop the connection when a ping's `pong` takes longer, ms (default 10 000). */
  pongTimeoutMs?: number;
  /** `sync` page size, 1..500 (default 200). */
  syncLimit?: number;
  /**
   * Background resync period while `ready`, ms (default 300 000; 0 = never): at most once
   * a period, and only when the connection has had traffic that may change the sync stream
   * since the last sync (any event or reply but presence, typing, heartbeats,
   * `token_expiring` and delivery status), the client pages `sync` from its cursor on the
   * same connection (§9) and hands the pages to `onSync`. So `cursor` stays recent without
   * a reconnect, the next catch-up does not repeat what arrived live, and anything live
   * delivery missed shows up. A page refused `RATE_LIMITED` or `SERVICE_UNAVAILABLE` ends
   * the round; the next period tries again.
   */
  resyncIntervalMs?: number;
  /**
   * Give up on a connection attempt not `ready` within this long (opening, authenticating
   * and syncing), ms (default 30 000): a handshake that never completes is dropped and
   * retried like a lost connection.
   */
  connectTimeoutMs?: number;
  /**
   * Tell senders when their DMs reached this device (§9 `message_delivered`, batched every
   * 100 ms, up to 100 ids a frame), for DMs received live or by sync (default true); a DM
   * a background resync repeats after it arrived live on the same connection is not
   * reported again.
   */
  deliveryReceipts?: boolean;
}

/**
 * Connection states: `connecting` (socket opening), `authenticating`, `syncing` (catching
 * up from the cursor), `ready` (commands flow), `waiting` (backoff before a reconnect),
 * `stopped` (for good; see {@link StopReason}), `idle` (before `connect()`).
 */
export type ClientState = 'idle' | 'connecting' | 'authenticating' | 'syncing' | 'ready' | 'waiting' | 'stopped';

/** A state change: the new state, the close code that caused it, why the client stopped. */
export interface StateChange {
  state: ClientState;
  closeCode?: number;
  reason?: StopReason;
}

/** One `sync_result` page handed to the application: upsert its messages by id. */
export type SyncPage = ServerFrames['sync_result'];

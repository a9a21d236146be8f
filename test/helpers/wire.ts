/**
 * Low-level helpers for the transport, lifecycle and HTTP tests (PROTOCOL §1, §3, §10):
 * raw upgrade requests (status before the handshake), raw WebSocket frames (invalid
 * UTF-8), plain HTTP GETs, hand-made JWTs, a bare `ws` client with options the
 * TestClient does not expose (autoPong), and bounded polling.
 */
import { createHmac, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import type { Frame } from './client.ts';

/**
 * A sequence of distinct client addresses `<prefix>.x.y` for X-Forwarded-For (servers
 * started with TRUST_PROXY=1), so each test connection has its own per-IP budget.
 * @param prefix first two octets, e.g. `10.77` (one per test file keeps files apart)
 * @returns a function giving the next address on each call
 */
export function forwardedIps(prefix: string): () => string {
  let n = 0;
  return () => {
    n++;
    return `${prefix}.${Math.floor(n / 250)}.${(n % 250) + 1}`;
  };
}

/** Poll `fn` until it returns a truthy value (resolved), at most `timeoutMs`; rejects naming `what`. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 5000, what = 'condition', intervalMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Resolves the value of `p`, or rejects after `ms` naming `what`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))),
  ]);
}

/** Outcome of a raw upgrade request: the HTTP status, and for 101 the upgraded socket. */
export interface UpgradeResult {
  status: number;
  socket?: Duplex;
  /** For 101: the bytes that arrived in the same read as the response head (WebSocket frames). */
  head?: Buffer;
  /** Destroy the upgraded socket (no-op when refused). */
  close(): void;
}

/**
 * Send a WebSocket upgrade request by hand and resolve the status the server answered
 * with: 101 (switched; the socket is kept open until `close()`), or the refusal status
 * (403, 429, …) sent before any handshake.
 */
export function upgrade(port: number, opts: { headers?: Record<string, string>; localAddress?: string; path?: string } = {}): Promise<UpgradeResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: opts.path ?? '/',
      agent: false,
      localAddress: opts.localAddress,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
        ...opts.headers,
      },
    });
    req.on('upgrade', (res, socket, head) => {
      socket.on('error', () => {});
      resolve({ status: res.statusCode ?? 0, socket, head, close: () => socket.destroy() });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, close: () => {} });
    });
    req.on('error', reject);
    req.end();
  });
}

/** A plain HTTP response. */
export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** `GET` (or another method) `path` on the server's port, from `localAddress` when given. */
export function httpGet(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', localAddress?: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false, localAddress }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${path}: no answer in 15 s`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Write one client frame straight to the socket under `ws`, bypassing the library's
 * checks (e.g. a text frame whose payload is not valid UTF-8). Masked, as RFC 6455
 * requires of clients; `opcode` 0x1 text, 0x2 binary.
 */
export function writeRawFrame(ws: WebSocket, opcode: number, payload: Buffer): void {
  const mask = randomBytes(4);
  let header: Buffer;
  if (payload.length < 126) {
    header = Buffer.from([0x80 | opcode, 0x80 | payload.length]);
  } else if (payload.length < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  const socket = (ws as unknown as { _socket: Duplex })._socket;
  socket.write(Buffer.concat([header, mask, masked]));
}

/** A bare `ws` client: every frame recorded in order, WebSocket pings counted. */
export class BareClient {
  readonly frames: Frame[] = [];
  pings = 0;
  readonly closed: Promise<{ code: number; reason: string }>;
  closeCode: number | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => this.frames.push(JSON.parse(d.toString())));
    ws.on('ping', () => this.pings++);
    ws.on('error', () => {});
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /** Open `url` with `ws` client options (headers, autoPong, …); resolves once open. */
  static async open(url: string, opts: WebSocket.ClientOptions = {}): Promise<BareClient> {
    const c = new BareClient(new WebSocket(url, opts));
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('error', reject);
    });
    return c;
  }

  /** Wait until at least `n` frames were received. */
  async atLeast(n: number, timeoutMs = 5000): Promise<Frame[]> {
    await waitFor(() => this.frames.length >= n, timeoutMs, `${n} frames (have ${JSON.stringify(this.frames).slice(0, 500)})`);
    return this.frames;
  }

  send(frame: object | string): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Seconds since the epoch, now. */
export const nowS = (): number => Math.floor(Date.now() / 1000);

/**
 * Sign exactly `claims` (keys with an undefined value are left out; nothing is added or
 * checked, so ill-typed claims can be made) with `key` and an HMAC `algorithm` (RFC 7515
 * §3.1 compact form). For claims the normal minting helper never produces.
 */
export function signClaims(claims: Record<string, unknown>, key: KeyObject | Buffer | string, algorithm: 'HS256' | 'HS384' | 'HS512' = 'HS256'): string {
  const payload: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(claims)) if (v !== undefined) payload[k] = v;
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: algorithm, typ: 'JWT' })}.${b64(payload)}`;
  return `${input}.${createHmac(`sha${algorithm.slice(2)}`, key).update(input).digest('base64url')}`;
}

/** An unsigned `alg: none` token carrying `claims`. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
}

/** A fresh token id. */
export const jti = (): string => randomUUID();

/** ISO-8601 UTC timestamp. */
export const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
/** RFC 4122 UUID. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

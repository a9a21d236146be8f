/**
 * Load generator side: the client's opening handshake (RFC 6455 §4.1) done on a plain
 * `net` socket, then handed to a `ws` WebSocket, which does everything after it (framing,
 * masking, UTF-8 checks, ping/pong, the closing handshake) exactly as a `ws` client does.
 *
 * Why: `ws`'s own client handshake goes through `http.request` (a ClientRequest, an HTTP
 * parser, header objects): 500 against 280–360 µs of client CPU per connection in a bare
 * ws pair on this machine, 3–5% of the generators' CPU in the connect scenario. The
 * generators share the two cores with the server, so their cost shows in its connect time.
 * What goes on the wire is the same: one GET with the upgrade headers, answered by 101.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import WebSocket from 'ws';

/** RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Largest response head read before giving up, bytes. */
const MAX_HEAD_BYTES = 16 * 1024;
/** Inbound message limit for generator clients, bytes (history pages can be large). */
const MAX_PAYLOAD = 64 * 1024 * 1024;

/** Keys are drawn from one random block refilled every 1,024 connections (16 bytes each). */
let keyPool = Buffer.alloc(0);
let keyOff = 0;
function nextKey(): string {
  if (keyOff + 16 > keyPool.length) {
    keyPool = randomBytes(16 * 1024);
    keyOff = 0;
  }
  keyOff += 16;
  return keyPool.toString('base64', keyOff - 16, keyOff);
}

/** Where to connect: `ws://HOST:PORT/PATH` parsed once. */
export interface UpgradeTarget {
  host: string;
  port: number;
  /** Request target, e.g. `/`. */
  path: string;
}

/** Parse a `ws://` URL (no TLS: the generators talk to 127.0.0.1 only). Throws on other schemes. */
export function upgradeTarget(url: string): UpgradeTarget {
  const u = new URL(url);
  if (u.protocol !== 'ws:') throw new Error(`upgrade: only ws:// URLs (got ${u.protocol})`);
  return { host: u.hostname, port: Number(u.port || 80), path: `${u.pathname}${u.search}` };
}

/** Callbacks of {@link openWebSocket}: one of them is called, once, unless the attempt is aborted first. */
export interface UpgradeCallbacks {
  /** The server answered 101 with the right Sec-WebSocket-Accept: `ws` is OPEN. */
  open(ws: WebSocket): void;
  /** Anything else: `reason` is `HTTP <status>`, `error <code>`, `bad handshake`, `closed`. */
  fail(reason: string): void;
}

/**
 * Open one client connection to `target`, optionally from `localAddress` (127.x.y.z).
 * Returns a function that aborts the attempt (destroys the socket; no callback follows).
 * Frames the server sends right behind its 101 are kept and delivered by `ws`.
 */
export function openWebSocket(target: UpgradeTarget, localAddress: string | undefined, cb: UpgradeCallbacks): () => void {
  const key = nextKey();
  const socket = net.connect({ host: target.host, port: target.port, noDelay: true, ...(localAddress ? { localAddress } : {}) });
  let done = false;
  let head: Buffer | null = null;
  const finish = (reason: string) => {
    if (done) return;
    done = true;
    socket.destroy();
    cb.fail(reason);
  };
  const onData = (chunk: Buffer) => {
    const buf = head ? Buffer.concat([head, chunk]) : chunk;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) {
      if (buf.length > MAX_HEAD_BYTES) finish('bad handshake');
      else head = buf;
      return;
    }
    socket.removeListener('data', onData);
    socket.removeListener('close', onClose);
    socket.removeListener('error', onError);
    const text = buf.toString('latin1', 0, end);
    const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
    if (status !== '101') return finish(`HTTP ${status ?? '?'}`);
    const accept = /\r\nsec-websocket-accept:[ \t]*([^\r\n]+?)[ \t]*(?:\r\n|$)/i.exec(text)?.[1];
    if (accept !== createHash('sha1').update(key + WS_GUID).digest('base64')) return finish('bad handshake');
    done = true;
    // A `ws` WebSocket adopting the socket. `ws` builds sockets from a finished handshake only
    // on its server side (address null); `_isServer` false makes it behave as the client it is
    // (masked frames out, unmasked in: RFC 6455 §5.1), as `ws`'s own client constructor sets it.
    const ws = new WebSocket(null as unknown as string, undefined, { autoPong: true } as WebSocket.ClientOptions);
    (ws as unknown as { _isServer: boolean })._isServer = false;
    (ws as unknown as { setSocket(s: net.Socket, head: Buffer, o: object): void }).setSocket(socket, buf.subarray(end + 4), {
      allowSynchronousEvents: true,
      maxPayload: MAX_PAYLOAD,
      skipUTF8Validation: false,
    });
    cb.open(ws);
  };
  const onClose = () => finish('closed');
  const onError = (err: NodeJS.ErrnoException) => finish(`error ${err.code ?? err.message}`);
  socket.on('data', onData);
  socket.on('close', onClose);
  socket.on('error', onError);
  socket.on('connect', () => {
    socket.write(
      `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      'latin1',
    );
  });
  return () => {
    if (done) return;
    done = true;
    socket.destroy();
  };
}

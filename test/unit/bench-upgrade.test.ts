/**
 * The load generators' opening handshake (scripts/bench/upgrade.ts, RFC 6455 §4.1) against
 * a real `ws` server on 127.0.0.1: the adopted socket is a working `ws` client (a frame sent
 * right behind the 101 arrives, masked frames both ways, server pings answered, closing
 * handshake with the server's code), and every failure is reported once with its reason.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { openWebSocket, upgradeTarget } from '../../scripts/bench/upgrade.ts';

let server: Server | undefined;
const sockets = new Set<Socket>();

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  if (server) await new Promise((r) => server!.close(r));
  server = undefined;
});

/** An HTTP server on 127.0.0.1:0 whose upgrades go to `onUpgrade`. */
async function listen(onUpgrade: (req: import('node:http').IncomingMessage, socket: Socket, head: Buffer) => void): Promise<string> {
  server = createServer();
  server.on('upgrade', (req, socket: Socket, head) => {
    sockets.add(socket);
    onUpgrade(req, socket, head);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/chat?x=1`;
}

/**
 * Open with {@link openWebSocket}; resolves the socket and the texts it receives (collected
 * from the moment it opens, as the load generator does) or rejects with the failure reason.
 */
function open(url: string): Promise<{ ws: WebSocket; got: string[] }> {
  return new Promise((resolve, reject) =>
    openWebSocket(upgradeTarget(url), undefined, {
      open: (ws) => {
        const got: string[] = [];
        ws.on('message', (d) => got.push(d.toString()));
        resolve({ ws, got });
      },
      fail: (r) => reject(new Error(r)),
    }),
  );
}

describe('bench openWebSocket', () => {
  it('hands a working ws client over: welcome frame kept, echo, ping/pong, close code', async () => {
    const wss = new WebSocketServer({ noServer: true });
    let path = '';
    let accepted!: (ws: WebSocket) => void;
    const serverSide = new Promise<WebSocket>((r) => (accepted = r));
    const url = await listen((req, socket, head) => {
      path = req.url ?? '';
      wss.handleUpgrade(req, socket, head, (ws) => {
        // Written in the same turn as the 101: it may share the handshake's TCP segment.
        ws.send('{"type":"connected"}');
        ws.on('message', (d) => ws.send(`echo:${d.toString()}`));
        accepted(ws);
      });
    });
    const { ws: client, got } = await open(url);
    expect(path).toBe('/chat?x=1');
    expect(client.readyState).toBe(WebSocket.OPEN);
    const peer = await serverSide;
    const big = 'é'.repeat(70_000); // 140,000 bytes: a 64-bit length header, masked by the client
    client.send('hello');
    client.send(big);
    await waitFor(() => got.length >= 3);
    expect(got).toEqual(['{"type":"connected"}', 'echo:hello', `echo:${big}`]);
    const pong = once(peer, 'pong');
    peer.ping();
    await pong;
    const closed = once(client, 'close') as Promise<[number, Buffer]>;
    peer.close(4401, 'bye');
    const [code, reason] = await closed;
    expect(code).toBe(4401);
    expect(reason.toString()).toBe('bye');
  });

  it('reports a refused upgrade with its HTTP status', async () => {
    const url = await listen((_req, socket) => socket.end('HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'));
    await expect(open(url)).rejects.toThrow('HTTP 429');
  });

  it('refuses a 101 whose Sec-WebSocket-Accept does not match the key', async () => {
    const url = await listen((_req, socket) =>
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n'),
    );
    await expect(open(url)).rejects.toThrow('bad handshake');
  });

  it('reports a socket closed before any answer, and a refused TCP connection', async () => {
    const url = await listen((_req, socket) => socket.destroy());
    await expect(open(url)).rejects.toThrow('closed');
    const port = (server!.address() as AddressInfo).port;
    server!.close();
    await once(server!, 'close');
    server = undefined;
    await expect(open(`ws://127.0.0.1:${port}/`)).rejects.toThrow(/error ECONNREFUSED|closed/);
  });

  it('only takes ws:// URLs', () => {
    expect(() => upgradeTarget('wss://127.0.0.1:1/')).toThrow('only ws://');
    expect(upgradeTarget('ws://127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080, path: '/' });
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Bounded: at most timeoutMs / 10 polls.
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Clients that flood or stall (PROTOCOL §1 per-IP limits, §3 item 8 heartbeat; DESIGN
 * "Failure behaviour"): a connection that floods frames is slowed to its inbound budget
 * (gateway/inboundBudget.ts) instead of taking the process's CPU; a client whose
 * pipelined backlog we are still working through is not taken for a dead peer; sockets
 * that never finish their HTTP request are capped per address and dropped after the
 * header timeout (gateway/handshakes.ts, app.ts).
 */
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAME_BURST, FRAMES_PER_S } from '../../src/gateway/inboundBudget.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';
import { httpGet, waitFor } from '../helpers/wire.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ HEARTBEAT_INTERVAL_MS: '2000', HEARTBEAT_TIMEOUT_MS: '1000', MAX_CONNECTIONS_PER_IP: '5' });
  await s.users('1', '2', '3');
  await s.follow(['1', '2'], ['2', '1']);
}, 120_000);
afterAll(() => s?.close());

/** An authenticated raw `ws` socket that counts the replies it reads. */
async function rawLogin(userId: string): Promise<{ ws: WebSocket; replies: () => number; closed: () => number | undefined }> {
  const ws = new WebSocket(s.url);
  let replies = 0;
  let code: number | undefined;
  ws.on('message', () => replies++);
  ws.on('close', (c) => (code = c));
  await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
  ws.send(JSON.stringify({ type: 'authenticate', token: s.token(userId) }));
  await waitFor(() => replies >= 2, 5000, 'auth_success'); // connected + auth_success
  replies = 0;
  return { ws, replies: () => replies, closed: () => code };
}

describe('inbound budget', () => {
  it('a connection flooding pings is slowed to its budget (TCP backpressure), not answered at wire speed, and not closed', async () => {
    const flood = await rawLogin('1');
    const N = 20_000;
    const ping = JSON.stringify({ type: 'ping' });
    for (let i = 0; i < N; i++) flood.ws.send(ping);
    await sleep(3000);
    // Without flow control all 20 000 are answered in well under a second. With it: the
    // burst, the refill, and what the socket had already read when reading paused.
    const answered = flood.replies();
    expect(answered).toBeGreaterThan(FRAME_BURST);
    expect(answered).toBeLessThan(N / 2);
    expect(flood.closed()).toBeUndefined();

    // Others are served meanwhile.
    const other = await s.login('2');
    const t0 = Date.now();
    expect((await other.request({ type: 'ping' })).type).toBe('pong');
    expect(Date.now() - t0).toBeLessThan(1000);
    flood.ws.terminate();
  });

  it('a client within its budget never waits: 150 pipelined pings (under the burst) are all answered at once', async () => {
    const c = await rawLogin('3');
    for (let i = 0; i < 150; i++) c.ws.send(JSON.stringify({ type: 'ping' }));
    await waitFor(() => c.replies() === 150, 2000, '150 pongs');
    c.ws.terminate();
    expect(FRAMES_PER_S).toBeGreaterThanOrEqual(50);
  });
});

describe('after the server closes', () => {
  it('a peer flooding after its close is read only up to an allowance, not at wire speed, while its close frame is awaited', async () => {
    const ws = new WebSocket(s.url);
    let code: number | undefined;
    ws.on('close', (c) => (code = c));
    ws.on('error', () => {});
    await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
    // 20 invalid frames (close 4400), then 300 frames of 64,000 bytes (19.2 MB) behind them:
    // the peer's own close reply is queued behind the flood.
    for (let i = 0; i < 20; i++) ws.send('x');
    const pad = 'p'.repeat(64_000);
    for (let i = 0; i < 300; i++) ws.send(pad);
    const sock = (ws as unknown as { _socket: Socket })._socket;
    await sleep(2500);
    expect(code).toBeUndefined(); // not yet terminated (5 s)
    // Read at wire speed, the 19.2 MB would be flushed from the client in well under a
    // second; with the allowance (256 KiB) most of it waits in the client.
    expect(sock.writableLength).toBeGreaterThan(8_000_000);
    await waitFor(() => code !== undefined, 10_000, 'terminate');
    expect(code).toBe(4400); // the close frame was received before the terminate
  }, 20_000);
});

describe('heartbeat and our own backpressure', () => {
  it('a client with a long pipelined backlog gets every reply; its unread pong does not make it a dead peer', async () => {
    const c = await rawLogin('2');
    const N = 300;
    for (let i = 0; i < N; i++) c.ws.send(JSON.stringify({ type: 'get_presence', userIds: ['1'], requestId: `p${i}` }));
    // Several heartbeat rounds (2 s interval, 1 s timeout) pass while the backlog is worked through.
    await waitFor(() => c.replies() === N || c.closed() !== undefined, 20_000, 'all replies or a close');
    expect(c.closed()).toBeUndefined();
    expect(c.replies()).toBe(N);
    c.ws.terminate();
  }, 30_000);
});

describe('unfinished HTTP requests (slowloris)', () => {
  const socks: Socket[] = [];
  afterAll(() => socks.forEach((k) => k.destroy()));

  it('at most MAX_CONNECTIONS_PER_IP per address are held, and those are dropped after the header timeout; then the address is served again', async () => {
    const closed: number[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) {
      const k = connect(s.port, '127.0.0.1');
      k.on('error', () => {});
      k.on('close', () => closed.push(Date.now() - t0));
      k.resume(); // read the server's 408 and end, so the close is seen here
      k.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'); // never finished
      socks.push(k);
    }
    await waitFor(() => closed.length >= 15, 3000, '15 refused at accept');
    await sleep(200);
    expect(closed).toHaveLength(15);
    expect(s.app.gateway.pendingSockets.count('127.0.0.1')).toBe(5);

    // HTTP_HEADERS_TIMEOUT_MS (10 s) plus the 1 s check: the held ones go too.
    await waitFor(() => closed.length === 20, 14_000, 'the held 5 dropped');
    expect(Math.max(...closed)).toBeGreaterThanOrEqual(9_000);
    await waitFor(() => s.app.gateway.pendingSockets.count('127.0.0.1') === 0, 2000, 'nothing pending');
    const m = (await httpGet(s.port, '/metrics')).text;
    expect(Number(/chat_upgrades_rejected_total\{reason="pending_ip_cap"\} (\d+)/.exec(m)?.[1])).toBeGreaterThanOrEqual(15);
    const c = await s.login('3');
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
  }, 30_000);
});

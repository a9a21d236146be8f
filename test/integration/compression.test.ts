/**
 * WS_COMPRESSION=true (PROTOCOL §1): permessage-deflate (RFC 7692) is negotiated without
 * context takeover in either direction and with a small server window, so an idle
 * connection keeps no zlib state, and messages still round-trip.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ WS_COMPRESSION: 'true' });
  await s.users('1');
}, 120_000);
afterAll(() => s?.close());

describe('WS_COMPRESSION=true', () => {
  it('negotiates permessage-deflate with no context takeover and a 1 KiB server window; frames round-trip', async () => {
    const ws = new WebSocket(s.url, { perMessageDeflate: true });
    const frames: Record<string, unknown>[] = [];
    let ext = '';
    ws.on('upgrade', (res) => (ext = String(res.headers['sec-websocket-extensions'] ?? '')));
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
    expect(ext).toContain('permessage-deflate');
    expect(ext).toContain('server_no_context_takeover');
    expect(ext).toContain('client_no_context_takeover');
    expect(ext).toMatch(/server_max_window_bits=10/);
    ws.send(JSON.stringify({ type: 'authenticate', token: s.token('1') }));
    ws.send(JSON.stringify({ type: 'ping', requestId: 'z', pad: 'a'.repeat(20_000) }));
    const deadline = Date.now() + 5000;
    while (!frames.some((f) => f.requestId === 'z') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(frames.map((f) => f.type)).toEqual(['connected', 'auth_success', 'pong']);
    ws.terminate();
  });
});

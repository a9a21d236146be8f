/**
 * The client SDK's browser bundle (`npm run build` → dist/client/chat-client.mjs) in a
 * real browser: headless Chromium loads a page from a local HTTP server, imports the
 * bundle as an ES module and talks to a real server with the browser's own WebSocket,
 * which sends the page's Origin (checked against ALLOWED_ORIGINS, PROTOCOL §1: a second
 * server that allows another origin refuses the page's socket). Two clients in the page:
 * one sends a DM, the other receives it; the page reports back over HTTP. Needs Chromium (`apt-get install chromium`, or CHROMIUM_PATH); without it
 * the suite is skipped, loudly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleClient } from '../../scripts/lib/bundle.ts';
import { chromiumPath } from '../../scripts/lib/chromium.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { httpGet } from '../helpers/wire.ts';

const CHROMIUM = chromiumPath();
if (!CHROMIUM) console.warn('\n!!! test/integration/client-browser.test.ts SKIPPED: no Chromium (apt-get install chromium, or set CHROMIUM_PATH) !!!\n');

let s: TestServer;
let elsewhere: TestServer;
let pages: Server;
let origin = '';
let code = '';
let browser: ChildProcess | undefined;
let profile = '';
const results: ((r: Record<string, unknown>) => void)[] = [];

/**
 * The test page: two SDK clients, a DM from one to the other, and a plain WebSocket to a
 * server that does not allow the page's origin; the outcome POSTed to /result.
 */
function page(wsUrl: string, tokenA: string, tokenB: string, refusingUrl: string): string {
  return `<!doctype html><meta charset="utf-8"><title>chat sdk</title>
<script type="module">
import { ChatClient } from '/chat-client.mjs';
const report = (r) => fetch('/result', { method: 'POST', body: JSON.stringify(r) });
try {
  const a = new ChatClient({ url: ${JSON.stringify(wsUrl)}, token: ${JSON.stringify(tokenA)}, pingIntervalMs: 0 });
  const b = new ChatClient({ url: ${JSON.stringify(wsUrl)}, token: async () => ${JSON.stringify(tokenB)}, pingIntervalMs: 0 });
  const received = new Promise((resolve) => b.on('new_private_message', (f) => resolve(f.message)));
  await Promise.all([a.connect(), b.connect()]);
  const ack = await a.request('send_private_message', { recipientId: b.userId, content: 'from a browser ✓' });
  const got = await received;
  const refused = await new Promise((resolve) => {
    const w = new WebSocket(${JSON.stringify(refusingUrl)});
    w.onopen = () => resolve(false);
    w.onclose = () => resolve(true);
  });
  report({ ok: true, refused, ws: String(WebSocket), node: typeof process !== 'undefined', userA: a.userId, id: ack.message.id, gotId: got.id, gotContent: got.content });
  a.close();
  b.close();
} catch (e) {
  report({ ok: false, error: String(e && e.stack || e) });
}
</script>`;
}

beforeAll(async () => {
  if (!CHROMIUM) return;
  code = await bundleClient(new URL('../..', import.meta.url).pathname);
  let html = '';
  pages = createServer((req, res) => {
    if (req.url === '/chat-client.mjs') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(code);
    if (req.url === '/result' && req.method === 'POST') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        res.writeHead(204).end();
        results.shift()?.(JSON.parse(body));
      });
      return;
    }
    if (req.url === '/') return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => pages.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
  s = await startServer({ ALLOWED_ORIGINS: origin });
  elsewhere = await startServer({ ALLOWED_ORIGINS: 'https://chat.example.com' });
  await s.users('1', '2');
  await s.follow(['1', '2'], ['2', '1']);
  html = page(s.url, s.token('1'), s.token('2'), elsewhere.url);
}, 60_000);

afterAll(async () => {
  // Chromium runs in its own process group: kill the group (its zygote and renderers too).
  if (browser?.pid && browser.exitCode === null && browser.signalCode === null) {
    const exited = new Promise((r) => browser!.once('exit', r));
    process.kill(-browser.pid, 'SIGKILL');
    await exited;
  }
  if (profile) rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  await new Promise((r) => pages?.close(r));
  await s?.close();
  await elsewhere?.close();
});

describe.skipIf(!CHROMIUM)('the client SDK in headless Chromium', () => {
  it('the bundle loads as an ES module; two browser clients connect (Origin allowed), send and receive a DM', async () => {
    const result = new Promise<Record<string, unknown>>((resolve) => results.push(resolve));
    profile = mkdtempSync(join(tmpdir(), 'chat-chromium-'));
    browser = spawn(
      CHROMIUM!,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, `${origin}/`],
      { stdio: 'ignore', detached: true },
    );
    const r = await Promise.race([result, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no report from the page within 30 s')), 30_000))]);
    expect(r, JSON.stringify(r)).toMatchObject({ ok: true, refused: true, node: false, userA: '1', gotContent: 'from a browser ✓' });
    expect(r.ws).toMatch(/function WebSocket\(\) \{ \[native code\] \}/);
    expect(r.gotId).toBe(r.id);
    // The refusal was the Origin check (403), not a connection failure.
    expect((await httpGet(elsewhere.port, '/metrics')).text).toMatch(/chat_upgrades_rejected_total\{reason="origin"\} 1\b/);
    const { rows } = await s.app.db.query<{ id: string }>('SELECT id::text AS id FROM private_messages WHERE sender_id = $1', ['1']);
    expect(rows.map((x) => x.id)).toEqual([r.id]);
  }, 60_000);
});

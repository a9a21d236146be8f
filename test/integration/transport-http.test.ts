/**
 * PROTOCOL §1 admission without a trusted proxy (TRUST_PROXY=0: X-Forwarded-For
 * ignored; no ALLOWED_ORIGINS: any Origin accepted) and §10 HTTP probes (/live, /ready,
 * /health without host names or secrets, /metrics behind the METRICS_TOKEN bearer, 404).
 *
 * Server `h`: TRUST_PROXY=0, one connection per IP, METRICS_TOKEN set (HTTP probes).
 * TRUST_PROXY=1, frames, §2 validation and §11: transport.test.ts.
 */
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.ts';
import { startServer, TEST_ENC_KEY, TEST_JWT_SECRET, type TestServer } from '../helpers/server.ts';
import { PROBE_REUSE_MS } from '../../src/http/routes.ts';
import { httpGet, ISO_RE, upgrade, waitFor } from '../helpers/wire.ts';

const METRICS_TOKEN = 'metrics-' + 'a1b2c3d4e5f6';

/** Server start on the embedded database can be slow on a busy machine. */
const START_TIMEOUT_MS = 120_000;

describe('server with TRUST_PROXY=0, MAX_CONNECTIONS_PER_IP=1 and METRICS_TOKEN', () => {
  let h: TestServer;
  beforeAll(async () => {
    h = await startServer({ TRUST_PROXY: '0', MAX_CONNECTIONS_PER_IP: '1', METRICS_TOKEN, METRICS_CACHE_MS: '1000' });
    await h.users('1');
  }, START_TIMEOUT_MS);
  afterAll(() => h?.close());

  describe('§1 admission', () => {
    it('TRUST_PROXY=0: X-Forwarded-For is ignored (the socket address counts)', async () => {
      // h allows one connection per IP; both come from 127.0.0.9 with different headers.
      const a = await upgrade(h.port, { localAddress: '127.0.0.9', headers: { 'X-Forwarded-For': '198.51.100.1' } });
      const b = await upgrade(h.port, { localAddress: '127.0.0.9', headers: { 'X-Forwarded-For': '198.51.100.2' } });
      // Another socket address is a different client.
      const c = await upgrade(h.port, { localAddress: '127.0.0.10', headers: { 'X-Forwarded-For': '198.51.100.1' } });
      for (const u of [a, b, c]) u.close();
      expect([a.status, b.status, c.status]).toEqual([101, 429, 101]);
    });

    it('without ALLOWED_ORIGINS any Origin is accepted', async () => {
      const u = await upgrade(h.port, { localAddress: '127.0.0.11', headers: { Origin: 'https://anywhere.example' } });
      u.close();
      expect(u.status).toBe(101);
    });
  });

  describe('§10 HTTP', () => {
    const json = async (path: string, headers: Record<string, string> = {}) => {
      const r = await httpGet(h.port, path, headers);
      return { ...r, body: JSON.parse(r.text) as Record<string, any> };
    };

    it('GET /live → 200 {alive: true, uptime, timestamp}', async () => {
      const r = await json('/live');
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/application\/json/);
      expect(r.body).toEqual({ alive: true, uptime: expect.any(Number), timestamp: expect.stringMatching(ISO_RE) });
    });

    it('GET /ready → 200 {ready: true, checks: database and websocket healthy}', async () => {
      const r = await json('/ready');
      expect(r.status).toBe(200);
      expect(r.body.ready).toBe(true);
      expect(r.body.timestamp).toMatch(ISO_RE);
      expect(r.body.checks).toEqual(
        expect.arrayContaining([
          { name: 'database', status: 'healthy' },
          { name: 'websocket', status: 'healthy' },
        ]),
      );
      for (const c of r.body.checks) expect(['database', 'redis', 'websocket']).toContain(c.name);
    });

    it('GET /health → 200 with the listed fields counting live connections, and no host names or secrets', async () => {
      // Earlier tests' sockets are gone (the server saw their close).
      await waitFor(() => h.app.gateway.connectionCount() === 0, 3000, 'no open connection on h');
      const c = await TestClient.connect(h.url);
      expect((await c.request({ type: 'authenticate', token: h.token('1') })).type).toBe('auth_success');
      try {
        const r = await json('/health');
        expect(r.status).toBe(200);
        expect(r.body).toMatchObject({
          status: 'healthy',
          uptime: expect.any(Number),
          connections: 1,
          users: 1,
          database: { connected: true },
          redis: { connected: false },
          memory: { rss: expect.any(Number) },
          version: expect.any(String),
          timestamp: expect.stringMatching(ISO_RE),
        });
        const forbidden = [TEST_JWT_SECRET, TEST_ENC_KEY, METRICS_TOKEN, hostname(), '127.0.0.1', 'localhost', 'postgres://', 'postgresql://'];
        if (h.database.url) forbidden.push(new URL(h.database.url).pathname.slice(1), new URL(h.database.url).host);
        for (const f of forbidden) expect(r.text, `/health leaks ${f}`).not.toContain(f);
      } finally {
        await c.close();
      }
    });

    it('GET /metrics needs the METRICS_TOKEN bearer: 401 without or with a wrong one, 200 Prometheus text with it', async () => {
      const denied = await httpGet(h.port, '/metrics');
      expect(denied.status).toBe(401);
      expect(denied.headers['www-authenticate']).toBe('Bearer realm="metrics"'); // RFC 6750 §3
      expect((await httpGet(h.port, '/metrics', { Authorization: 'Bearer wrong' })).status).toBe(401);
      expect((await httpGet(h.port, '/metrics', { Authorization: `Bearer ${METRICS_TOKEN}x` })).status).toBe(401);
      expect((await httpGet(h.port, '/metrics', { Authorization: METRICS_TOKEN.slice(0, -1) })).status).toBe(401);
      // The right token without the Bearer scheme (§10: `Authorization: Bearer <token>`).
      expect((await httpGet(h.port, '/metrics', { Authorization: METRICS_TOKEN })).status).toBe(401);
      expect((await httpGet(h.port, '/metrics', { Authorization: `Basic ${METRICS_TOKEN}` })).status).toBe(401);
      const r = await httpGet(h.port, '/metrics', { Authorization: `Bearer ${METRICS_TOKEN}` });
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/^text\/plain/);
      expect(r.text).toMatch(/^# HELP \w+ /m);
      expect(r.text).toMatch(/^# TYPE \w+ (counter|gauge|histogram|summary)$/m);
      expect(r.text).toMatch(/^chat_open_connections \d+$/m);
      expect(r.text).not.toContain(METRICS_TOKEN);
    });

    it('a flood of /ready, /health and /metrics costs one database check per PROBE_REUSE_MS and one metrics render per METRICS_CACHE_MS (audit 7, F2, F6)', async () => {
      const db = h.app.db as { ping: (ms: number) => Promise<boolean> };
      const metrics = h.app.metrics as unknown as { text: () => Promise<string> };
      const realPing = db.ping;
      const realText = metrics.text;
      let pings = 0;
      let renders = 0;
      // Count calls of the real probes (they still run).
      db.ping = (ms) => (pings++, realPing.call(db, ms));
      metrics.text = () => (renders++, realText.call(metrics));
      try {
        await new Promise((r) => setTimeout(r, PROBE_REUSE_MS + 50)); // past any answer reused from earlier tests
        const auth = { Authorization: `Bearer ${METRICS_TOKEN}` };
        const t0 = performance.now();
        const replies = await Promise.all(
          // From 60 addresses: h allows one unfinished socket per address.
          Array.from({ length: 60 }, (_, i) => httpGet(h.port, ['/ready', '/health', '/metrics'][i % 3]!, i % 3 === 2 ? auth : {}, 'GET', `127.0.77.${i + 1}`)),
        );
        const elapsed = performance.now() - t0;
        expect(replies.map((r) => r.status)).toEqual(replies.map(() => 200));
        expect(replies.filter((_, i) => i % 3 === 0).every((r) => JSON.parse(r.text).ready === true)).toBe(true);
        // Within one reuse period one call each; a slow machine may straddle a second.
        const periods = Math.ceil(elapsed / PROBE_REUSE_MS);
        expect(pings).toBeGreaterThanOrEqual(1);
        expect(pings).toBeLessThanOrEqual(periods);
        expect(renders).toBeGreaterThanOrEqual(1);
        expect(renders).toBeLessThanOrEqual(periods);
        // After the reuse period a request checks again.
        await new Promise((r) => setTimeout(r, PROBE_REUSE_MS + 50));
        const before = pings;
        expect((await httpGet(h.port, '/ready')).status).toBe(200);
        expect(pings).toBe(before + 1);
      } finally {
        db.ping = realPing;
        metrics.text = realText;
      }
    });

    it('anything else → 404', async () => {
      for (const path of ['/', '/nope', '/live/extra', '/healthz', '/metrics.json']) expect((await httpGet(h.port, path)).status, path).toBe(404);
      expect((await httpGet(h.port, '/live', {}, 'POST')).status).toBe(404);
    });
  });
});

/**
 * Plain HTTP on the WebSocket port (PROTOCOL §10): /live, /ready, /health, /metrics;
 * 404 otherwise. No host names or secrets in any body.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sharedResult } from './shared.ts';

/** What the routes read from the running service. */
export interface HttpProbe {
  startedAt: number;
  version: string;
  draining(): boolean;
  /** Database answered `SELECT 1` within a short timeout. */
  dbHealthy(): Promise<boolean>;
  /** Redis configured and connected; undefined when Redis is not configured. */
  redisHealthy(): boolean | undefined;
  readyRequiresRedis: boolean;
  connections(): number;
  users(): number;
  /** Render the Prometheus text; absent when metrics are off (`/metrics` is then 404). */
  metrics?: () => Promise<string>;
  metricsToken: string | undefined;
  /** METRICS_CACHE_MS: how long one metrics render answers every request, ms (0: only concurrent requests share one). */
  metricsReuseMs: number;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** True when `header` is `Bearer <token>` (PROTOCOL §10; RFC 6750 §2.1), compared in constant time. A bare token is refused. */
function tokenOk(header: string | undefined, token: string): boolean {
  const m = header ? /^Bearer\s+(.*?)\s*$/i.exec(header) : null;
  if (!m) return false;
  const got = Buffer.from(m[1]!);
  const want = Buffer.from(token);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** How long one database check answers `/ready` and `/health`, ms. */
export const PROBE_REUSE_MS = 1000;

/**
 * The HTTP request handler. The database check is made at most once per
 * {@link PROBE_REUSE_MS} and the metrics text rendered at most once per
 * `metricsReuseMs`, however many requests arrive (one call in flight, its answer reused), so
 * a flood of these anonymous requests costs about what `/live` does (audit 7, F2, F6: a
 * render is ~0.75 ms of event loop, a check a pooled query); `draining` and the counts stay
 * live.
 */
export function httpHandler(p: HttpProbe): (req: IncomingMessage, res: ServerResponse) => void {
  const dbHealthy = sharedResult(() => p.dbHealthy(), PROBE_REUSE_MS);
  const metricsText = p.metrics && sharedResult(p.metrics, p.metricsReuseMs);
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const ts = new Date().toISOString();
    const uptime = Math.round((Date.now() - p.startedAt) / 1000);
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 404, { error: 'Not found' });
    switch (path) {
      case '/live':
        return json(res, 200, { alive: true, uptime, timestamp: ts });
      case '/ready':
        void dbHealthy().then((db) => {
          const redis = p.redisHealthy();
          const checks = [
            { name: 'database', status: db ? 'healthy' : 'unhealthy' },
            ...(redis === undefined ? [] : [{ name: 'redis', status: redis ? 'healthy' : 'unhealthy' }]),
            { name: 'websocket', status: p.draining() ? 'unhealthy' : 'healthy' },
          ];
          const ready = db && !p.draining() && (redis !== false || !p.readyRequiresRedis);
          json(res, ready ? 200 : 503, { ready, ...(redis === false ? { degraded: true } : {}), checks, timestamp: ts });
        });
        return;
      case '/health':
        void dbHealthy().then((db) => {
          const redis = p.redisHealthy();
          const status = !db ? 'unhealthy' : redis === false || p.draining() ? 'degraded' : 'healthy';
          json(res, 200, {
            status,
            uptime,
            connections: p.connections(),
            users: p.users(),
            database: { connected: db },
            // perProcessFallback: Redis down, so rate limits, caps and presence are per process (docs/scaling.md).
            redis: { connected: redis ?? false, configured: redis !== undefined, ...(redis === undefined ? {} : { perProcessFallback: !redis }) },
            memory: { rss: process.memoryUsage.rss() },
            pid: process.pid,
            version: p.version,
            timestamp: ts,
          });
        });
        return;
      case '/metrics': {
        if (p.metricsToken && !tokenOk(req.headers.authorization, p.metricsToken)) {
          res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"'); // RFC 6750 §3
          return json(res, 401, { error: 'Unauthorized' });
        }
        if (!metricsText) return json(res, 404, { error: 'Not found' });
        void metricsText().then(
          (text) => {
            res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
            res.end(text);
          },
          () => json(res, 500, { error: 'metrics unavailable' }),
        );
        return;
      }
      default:
        return json(res, 404, { error: 'Not found' });
    }
  };
}

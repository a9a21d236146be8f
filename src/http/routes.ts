/**
 * Plain HTTP on the WebSocket port (PROTOCOL §10): /live, /ready, /health, /metrics;
 * 404 otherwise. No host names or secrets in any body.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

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
  /** Prometheus text, or undefined when metrics are off. */
  metrics(): Promise<string> | undefined;
  metricsToken: string | undefined;
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

/** The HTTP request handler. */
export function httpHandler(p: HttpProbe): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const ts = new Date().toISOString();
    const uptime = Math.round((Date.now() - p.startedAt) / 1000);
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 404, { error: 'Not found' });
    switch (path) {
      case '/live':
        return json(res, 200, { alive: true, uptime, timestamp: ts });
      case '/ready':
        void p.dbHealthy().then((db) => {
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
        void p.dbHealthy().then((db) => {
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
        if (p.metricsToken && !tokenOk(req.headers.authorization, p.metricsToken)) return json(res, 401, { error: 'Unauthorized' });
        const m = p.metrics();
        if (!m) return json(res, 404, { error: 'Not found' });
        void m.then(
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

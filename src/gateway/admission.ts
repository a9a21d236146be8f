/**
 * Admission of WebSocket upgrades (PROTOCOL §1): Origin allow-list (403), per-IP
 * concurrent connections and new connections per minute (429), client IP from the
 * socket or, with TRUST_PROXY = n, the n-th address from the right of X-Forwarded-For.
 */
import type { IncomingMessage } from 'node:http';

/**
 * The client IP: the socket address, unless `trustProxy` > 0, then the address
 * `trustProxy` hops from the right of X-Forwarded-For (each trusted proxy appends the
 * address it saw), falling back to the socket address when the header is shorter.
 */
export function clientIp(req: IncomingMessage, trustProxy: number): string {
  const socketIp = normalizeIp(req.socket.remoteAddress ?? 'unknown');
  if (trustProxy <= 0) return socketIp;
  const header = req.headers['x-forwarded-for'];
  const list = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((s) => s.trim()).filter(Boolean);
  const ip = list[list.length - trustProxy];
  return ip ? normalizeIp(ip) : socketIp;
}

/** `::ffff:127.0.0.1` → `127.0.0.1`. */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}

/** True when `origin` may upgrade: no allow-list, no Origin header (non-browser), or an exact match. */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  return allowed.length === 0 || origin === undefined || allowed.includes(origin);
}

/** Concurrent connections per IP (this process; the scale-out issue shares it across processes). */
export interface IpConnectionCounter {
  /** Take a slot for `ip`; resolves false when `max` are already open. */
  acquire(ip: string, max: number): Promise<boolean>;
  /** Give the slot back. */
  release(ip: string): void;
}

/** In-process {@link IpConnectionCounter}. */
export class LocalIpCounter implements IpConnectionCounter {
  private readonly counts = new Map<string, number>();
  async acquire(ip: string, max: number): Promise<boolean> {
    const n = this.counts.get(ip) ?? 0;
    if (n >= max) return false;
    this.counts.set(ip, n + 1);
    return true;
  }
  release(ip: string): void {
    const n = (this.counts.get(ip) ?? 0) - 1;
    if (n <= 0) this.counts.delete(ip);
    else this.counts.set(ip, n);
  }
}

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

/** Leading bits of an IPv6 address that the per-IP limits key on (one subscriber's /64). */
export const IPV6_PREFIX_BITS = 64;

/**
 * The address as the per-IP limits count it (PROTOCOL §1): an IPv4 address as is
 * (`::ffff:127.0.0.1` → `127.0.0.1`); an IPv6 address reduced to its /64, e.g.
 * `2001:db8:0:7:a::1` → `2001:db8:0:7::/64`, since one host or subscriber is usually given
 * a whole /64 and could otherwise use a new address per connection (2^64 of them). Zone ids
 * (`%eth0`) and brackets are dropped; anything unparsable is returned unchanged.
 * @param ip a socket address or an X-Forwarded-For entry
 * @returns the key (a string)
 */
export function normalizeIp(ip: string): string {
  if (ip.startsWith('::ffff:') && ip.includes('.')) return ip.slice(7);
  if (!ip.includes(':')) return ip;
  const bare = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const groups = ipv6Groups(bare);
  if (!groups) return ip;
  return `${groups.slice(0, IPV6_PREFIX_BITS / 16).map((g) => g.toString(16)).join(':')}::/${IPV6_PREFIX_BITS}`;
}

/** The eight 16-bit groups of an IPv6 address (RFC 4291 §2.2 text forms), or null. */
function ipv6Groups(addr: string): number[] | null {
  // A trailing dotted IPv4 part (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) becomes two hex groups.
  const text = addr.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) => {
    const n = [a, b, c, d].map(Number);
    return n.some((x) => x > 255) ? 'x' : `${((n[0]! << 8) | n[1]!).toString(16)}:${((n[2]! << 8) | n[3]!).toString(16)}`;
  });
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string) => (h === '' ? [] : h.split(':').map((g) => (/^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - head.length - rest.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...rest];
  return groups.some(Number.isNaN) ? null : groups;
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

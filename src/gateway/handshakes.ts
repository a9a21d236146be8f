/**
 * Sockets that have not finished their HTTP request yet (PROTOCOL §1 per-IP limits, for
 * what comes before the upgrade). A client that opens TCP connections and never completes
 * a request ("slowloris") would otherwise hold them until Node's header timeout, uncounted
 * by MAX_CONNECTIONS_PER_IP, which applies at the upgrade, and could use up the process's
 * file descriptors. Here each socket address may have at most `maxPerIp` such sockets on
 * this process; beyond that a new socket is closed at once. A socket stops counting when
 * its upgrade request has arrived, or when it closes (plain HTTP requests, /ready and
 * /metrics, count while their keep-alive socket is open).
 *
 * Behind a proxy (TRUST_PROXY > 0) every socket comes from the proxy's address: no cap
 * is applied, and the proxy's own limits are what protect the service.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { normalizeIp } from './admission.ts';

const RELEASE = Symbol('pendingRelease');
type Tracked = Socket & { [RELEASE]?: () => void };

/** Per-address count of sockets without a complete request, on one process. */
export class PendingSockets {
  private readonly byIp = new Map<string, number>();
  /** Sockets closed at accept because their address was over the cap. */
  refused = 0;

  /**
   * @param maxPerIp most unfinished sockets per address (MAX_CONNECTIONS_PER_IP)
   * @param onRefused called for each socket closed at accept (a metric)
   */
  constructor(
    private readonly maxPerIp: number,
    private readonly onRefused: () => void = () => {},
  ) {}

  /** Count the sockets `server` accepts. */
  attach(server: Server): void {
    server.on('connection', (s: Socket) => this.accepted(s));
  }

  /** Sockets being counted for `ip` (tests, logs). */
  count(ip: string): number {
    return this.byIp.get(ip) ?? 0;
  }

  /** The socket's request is complete (an upgrade): it no longer counts. */
  done(socket: object): void {
    (socket as Tracked)[RELEASE]?.();
  }

  private accepted(socket: Tracked): void {
    const ip = normalizeIp(socket.remoteAddress ?? 'unknown');
    const n = (this.byIp.get(ip) ?? 0) + 1;
    if (n > this.maxPerIp) {
      this.refused++;
      this.onRefused();
      socket.destroy();
      return;
    }
    this.byIp.set(ip, n);
    const release = () => {
      socket[RELEASE] = undefined;
      socket.removeListener('close', release);
      const left = (this.byIp.get(ip) ?? 1) - 1;
      if (left > 0) this.byIp.set(ip, left);
      else this.byIp.delete(ip);
    };
    socket[RELEASE] = release;
    socket.once('close', release);
  }
}

/**
 * node:cluster fan-out for several workers on one host without Redis (DESIGN
 * "Cross-process delivery"). A publish delivers to this worker's connections
 * synchronously, then sends one message to the primary, which relays it only to the
 * other workers that hold connections of its users (they announced them with
 * `track`). Track, presence and relay messages share one ordered IPC channel, so a user
 * is routable as soon as its authentication completes.
 */
import type { Logger } from '../observability/logger.ts';
import type { Bus, Delivery, DeliveryHandler } from './bus.ts';
import { CH, isMsg, sendToPrimary, type BusMsg, type TrackMsg } from './clusterIpc.ts';

/** Worker-side {@link Bus} over the IPC channel to the cluster primary. */
export class ClusterBus implements Bus {
  readonly kind = 'cluster';
  private handler: DeliveryHandler = () => {};
  private lastWarn = 0;
  private readonly onMessage = (m: unknown) => {
    if (!isMsg<BusMsg>(m, CH.bus)) return;
    const d: Delivery = { userIds: m.u, frame: m.f };
    if (m.x) d.exceptConnId = m.x;
    if (m.c) d.close = m.c;
    if (m.t !== undefined) d.publishedAt = m.t;
    this.handler(d);
  };

  constructor(private readonly logger: Logger) {}

  publish(d: Delivery): void {
    this.handler(d);
    if (d.userIds.length === 0) return;
    const msg: BusMsg = { ch: CH.bus, u: d.userIds, f: d.frame };
    if (d.exceptConnId) msg.x = d.exceptConnId;
    if (d.close) msg.c = d.close;
    if (d.publishedAt !== undefined) msg.t = d.publishedAt;
    if (!sendToPrimary(msg)) this.warn();
  }

  async start(handler: DeliveryHandler): Promise<void> {
    this.handler = handler;
    process.on('message', this.onMessage);
  }

  track(userId: string, present: boolean): void {
    sendToPrimary({ ch: CH.track, u: userId, p: present } satisfies TrackMsg);
  }

  healthy(): boolean {
    return process.connected === true;
  }

  async stop(): Promise<void> {
    process.off('message', this.onMessage);
    this.handler = () => {};
  }

  private warn(): void {
    const now = Date.now();
    if (now - this.lastWarn < 30_000) return;
    this.lastWarn = now;
    this.logger.warn('cluster primary unreachable: delivering to this worker only');
  }
}

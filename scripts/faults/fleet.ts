/**
 * The client side of one fault run: every user has two {@link Device}s, the first homed
 * on instance A and the second on instance B. Each device keeps a window of its own
 * messages in flight (pipelined: new sends go out as soon as earlier ones resolve, never
 * waiting for a reply first), to random other users, so the whole fleet keeps
 * `devices × window` messages in flight; devices also sync now and then while it flows.
 * Then: settle (every message acknowledged or given up) and a final sync on every device.
 */
import type { KeyObject } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { signToken } from '../../src/auth/tokens.ts';
import { sleep, waitUntil } from '../lib/proc.ts';
import { Device, type RetryPolicy } from './device.ts';
import { Ledger } from './ledger.ts';

/** Options of a {@link Fleet}. */
export interface FleetOptions {
  userIds: readonly string[];
  /** WebSocket URLs of instance A and B. */
  urls: readonly [string, string];
  key: KeyObject;
  /** Messages in flight per device. */
  window: number;
  retry: RetryPolicy;
  /** clientMessageId prefix of the run. */
  prefix: string;
  /** While traffic flows each device also syncs about this often, ms (0: only after reconnects). */
  syncEveryMs: number;
}

/** Devices, traffic and bookkeeping of one run. */
export class Fleet {
  readonly ledger: Ledger;
  readonly devices: Device[] = [];
  /** Close codes every device may see now (set by the fault being injected). */
  allowedCloses = new Set<number>();
  /** device key → close codes that device alone may see now (revocation). */
  readonly allowedFor = new Map<string, Set<number>>();
  private generating = false;
  private samples: number[] = [];
  private sampler: NodeJS.Timeout | undefined;

  constructor(private readonly opts: FleetOptions) {
    this.ledger = new Ledger(opts.prefix);
    const [a, b] = opts.urls;
    for (const userId of opts.userIds) {
      for (const k of [0, 1]) {
        const d = new Device({
          key: `u${userId}/d${k}`,
          userId,
          urls: k === 0 ? [a, b] : [b, a],
          mintToken: () => {
            const jti = randomUUID();
            return { token: signToken(opts.key, userId, { ttlS: 3600, jti }), jti };
          },
          ledger: this.ledger,
          retry: opts.retry,
          onResolved: (dev) => this.topUp(dev),
          closeExpected: (dev, code) => this.allowedCloses.has(code) || !!this.allowedFor.get(dev.key)?.has(code),
        });
        this.devices.push(d);
      }
    }
  }

  /** Connect every device; resolves when all are authenticated and synced once. */
  async connect(timeoutMs: number): Promise<void> {
    for (const d of this.devices) d.start();
    await waitUntil('every device authenticated', () => this.devices.every((d) => d.isReady()), timeoutMs, 20);
    await Promise.all(this.devices.map((d) => d.syncOnce(timeoutMs)));
  }

  /** Messages in flight now (created, not yet acknowledged or given up). */
  inFlight(): number {
    return this.ledger.unresolved();
  }

  /** Start generating: every device fills its window, and refills as messages resolve. */
  startTraffic(): void {
    this.generating = true;
    for (const d of this.devices) this.topUp(d);
    let tick = 0;
    const every = this.opts.syncEveryMs;
    this.sampler = setInterval(() => {
      this.samples.push(this.inFlight());
      // Periodic catch-up, spread over the devices (sync under concurrent writes and across outages).
      if (every > 0 && ++tick % 5 === 0) for (const d of this.devices) if (Math.random() < 500 / every) d.syncNow();
    }, 100);
    this.sampler.unref();
  }

  /** Stop creating messages (those in flight go on). */
  stopTraffic(): void {
    this.generating = false;
    clearInterval(this.sampler);
  }

  /** In-flight samples (every 100 ms while generating): min and mean. */
  inFlightStats(): { min: number; mean: number } {
    const s = this.samples;
    if (s.length === 0) return { min: 0, mean: 0 };
    return { min: Math.min(...s), mean: Math.round(s.reduce((a, b) => a + b, 0) / s.length) };
  }

  /** Wait (bounded) until every message is acknowledged or given up; resolves the number still unresolved. */
  async settle(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.ledger.unresolved() > 0 && Date.now() < deadline) await sleep(50);
    return this.ledger.unresolved();
  }

  /**
   * Final catch-up: every device syncs from its last cursor until `hasMore` is false. Repeated
   * (up to `rounds` times, 500 ms apart) while some acknowledged message is missing from a
   * recipient device's sync stream (sync may lag, never skip). Resolves the devices that
   * could not complete a sync.
   */
  async finalSync(timeoutMs: number, rounds = 3): Promise<string[]> {
    let failed: string[] = [];
    for (let r = 0; r < rounds; r++) {
      const res = await Promise.allSettled(this.devices.map((d) => d.syncOnce(timeoutMs)));
      failed = this.devices.filter((_, i) => res[i]!.status === 'rejected').map((d) => d.key);
      if (failed.length === 0 && this.missingDeliveries() === 0) break;
      await sleep(500);
    }
    return failed;
  }

  /** (message, recipient device) pairs of acknowledged messages not (yet) returned by that device's sync stream. */
  missingDeliveries(): number {
    let n = 0;
    for (const m of this.ledger.msgs.values()) {
      if (m.state !== 'acked') continue;
      for (const k of [0, 1]) if (!m.syncedBy.has(`u${m.recipientId}/d${k}`)) n++;
    }
    return n;
  }

  /** Close every device. */
  close(): void {
    this.stopTraffic();
    for (const d of this.devices) d.stop();
  }

  /** A random connected device (for revocation). */
  randomReadyDevice(): Device | undefined {
    const ready = this.devices.filter((d) => d.isReady());
    return ready[Math.floor(Math.random() * ready.length)];
  }

  private topUp(d: Device): void {
    if (!this.generating) return;
    const others = this.opts.userIds.filter((u) => u !== d.userId);
    while (d.outstanding() < this.opts.window) {
      const to = others[Math.floor(Math.random() * others.length)]!;
      d.submit(this.ledger.create(d.userId, d.key, to));
    }
  }
}

/**
 * Cross-process delivery seam (DESIGN "Cross-process delivery"): events are addressed to
 * users and carried as pre-serialised JSON frames, so each event is serialised once per
 * publish, not once per recipient. Implementations: LocalBus (one process), ClusterBus
 * (node:cluster IPC), RedisBus (pub/sub across hosts). At-most-once: the database is the
 * source of truth and clients close gaps with `sync`.
 */

/** One event to deliver: a frame for every open connection of `userIds`, except `exceptConnId`. */
export interface Delivery {
  /** Recipient user ids (decimal strings). */
  userIds: readonly string[];
  /** The JSON text frame, serialised once. Empty with `close` alone. */
  frame: string;
  /** A connection id (uuid) that must not receive it: the actor's own connection. */
  exceptConnId?: string;
  /**
   * After the frame, close those connections with this RFC 6455 / PROTOCOL §2.3 code;
   * with `spreadMs`, each at a random time within that many ms (so that many clients told
   * to reconnect do not all reconnect at once).
   */
  close?: { code: number; reason: string; spreadMs?: number };
  /** When it was published (epoch ms, after the commit): delivery-lag metric. */
  publishedAt?: number;
}

/** Receives deliveries addressed to this process (the gateway's connection registry). */
export type DeliveryHandler = (d: Delivery) => void;

/** A publish/subscribe transport for deliveries. */
export interface Bus {
  /** Short name for logs and /health: 'local' | 'cluster' | 'redis'. */
  readonly kind: string;
  /**
   * Deliver `d` to every process holding connections of its users (this one included,
   * synchronously for local connections). Never throws; a transport failure is logged and
   * local delivery still happens.
   */
  publish(d: Delivery): void;
  /** Start receiving: `handler` is called for deliveries addressed to this process. */
  start(handler: DeliveryHandler): Promise<void>;
  /**
   * Note that this process now holds (or no longer holds) connections of `userId`. May
   * resolve once the subscription is in place (bounded; never rejects), so the gateway can
   * await it before acknowledging authentication.
   */
  track(userId: string, present: boolean): void | Promise<void>;
  /** True when the transport is connected (always true for LocalBus). */
  healthy(): boolean;
  /** Stop receiving and release connections. */
  stop(): Promise<void>;
}

/** Single-process bus: publish hands the delivery straight to the local handler. */
export class LocalBus implements Bus {
  readonly kind = 'local';
  private handler: DeliveryHandler = () => {};

  publish(d: Delivery): void {
    this.handler(d);
  }
  async start(handler: DeliveryHandler): Promise<void> {
    this.handler = handler;
  }
  track(): void {}
  healthy(): boolean {
    return true;
  }
  async stop(): Promise<void> {
    this.handler = () => {};
  }
}

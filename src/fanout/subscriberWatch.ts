/**
 * Liveness of the Redis subscriber connection (DESIGN "Failure behaviour"). Once
 * subscribed, a subscriber sends no commands, so a connection whose route went dead
 * without closing (a lost route, a frozen proxy, a half-open socket) is noticed only by
 * TCP keepalive, some ten minutes later; meanwhile everything published to the users it
 * holds is lost and nobody is told (the bus-gap closes, ./busGaps.ts, run when the
 * subscriber comes back). So the instance publishes a heartbeat on a channel of its own
 * every {@link SUBSCRIBER_HEARTBEAT_MS}, through the command connection, and checks that
 * its subscriber receives it: a heartbeat that Redis acknowledged having delivered (the
 * PUBLISH reply counts a receiver) but that has not arrived {@link SUBSCRIBER_STALL_MS}
 * later means the subscriber's connection is dead, and it is dropped and reconnected
 * (its subscriptions are renewed by the client, then its `ready` runs the gap closes).
 * A Redis that answers nothing (stalled) acknowledges no heartbeat, so it never restarts
 * the subscriber: that is the command connection's stall watch's case (./redisClient.ts).
 */
import type { Logger } from '../observability/logger.ts';
import type { Redis } from './redisClient.ts';

/** How often a heartbeat is published, ms. */
export const SUBSCRIBER_HEARTBEAT_MS = 1000;
/** How long a heartbeat Redis delivered may take to arrive before the subscriber is dropped, ms. */
export const SUBSCRIBER_STALL_MS = 5000;

/** Heartbeats of one instance's subscriber (see the module doc). */
export class SubscriberWatch {
  private timer: ReturnType<typeof setInterval> | undefined;
  private seq = 0;
  /** Highest heartbeat received. */
  private received = 0;
  /** The oldest heartbeat Redis delivered to a subscriber and not yet received here. */
  private owed: { seq: number; at: number } | undefined;
  private restarting = false;
  /** Subscriber restarts so far (tests). */
  restarts = 0;

  /**
   * @param pub the command connection (publishes the heartbeats)
   * @param sub the subscriber connection watched
   * @param channel this instance's heartbeat channel (subscribed by `sub`)
   * @param logger warns once per restart
   * @param timing heartbeat period and stall bound, ms
   */
  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    readonly channel: string,
    private readonly logger: Logger,
    private readonly timing: { everyMs: number; stallMs: number } = { everyMs: SUBSCRIBER_HEARTBEAT_MS, stallMs: SUBSCRIBER_STALL_MS },
  ) {}

  /** Start publishing and checking (timer unref'd). */
  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.timing.everyMs);
    this.timer.unref?.();
  }

  /** Stop (the bus stops). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A heartbeat arrived on {@link channel}: `message` is its sequence number. */
  seen(message: string): void {
    const n = Number(message);
    if (!(n > this.received)) return;
    this.received = n;
    if (this.owed && this.owed.seq <= n) this.owed = undefined;
  }

  private tick(): void {
    if (this.restarting) return;
    if (!this.sub.isReady) {
      this.owed = undefined;
      return;
    }
    if (this.owed && Date.now() - this.owed.at >= this.timing.stallMs) return this.restart();
    if (!this.pub.isReady) return;
    const seq = ++this.seq;
    this.pub.publish(this.channel, String(seq)).then(
      (receivers) => {
        // Redis handed it to a subscriber of this channel (ours: the channel is this
        // instance's own) and it has not arrived yet: owed from now.
        if (Number(receivers) > 0 && seq > this.received && !this.owed) this.owed = { seq, at: Date.now() };
      },
      () => {},
    );
  }

  /** Drop the subscriber's connection and connect again (its subscriptions are renewed). */
  private restart(): void {
    this.logger.warn('redis subscriber receives nothing although Redis delivers to it; reconnecting it', { owedForMs: Date.now() - this.owed!.at });
    this.owed = undefined;
    this.restarting = true;
    this.restarts++;
    this.sub.destroy();
    this.sub.emit('error', new Error('redis subscriber dead'));
    this.sub
      .connect()
      .catch(() => {})
      .finally(() => (this.restarting = false));
  }
}

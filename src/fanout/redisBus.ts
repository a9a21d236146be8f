/**
 * Redis pub/sub fan-out across hosts (DESIGN "Cross-process delivery"). Two channel
 * layouts, chosen per delivery by its number of recipients:
 *
 * - one or two users (a DM, an ack to the actor's other devices): one channel per user,
 *   `<prefix>u:<userId>`; an instance subscribes (on a dedicated subscriber connection)
 *   to the channels of the users it holds connections of, so Redis routes each event only
 *   to the instances that need it, in one hop with no lookup;
 * - {@link ROUTE_MIN_USERS} users or more (group events, presence to contacts): one
 *   channel per instance, `<prefix>i:<instanceId>`; the publish script looks up where each
 *   recipient is connected (the presence hash `pu:<user>`, instance id → connections,
 *   written before a login is acknowledged) and PUBLISHes the event once to each other
 *   instance, with the recipient list in the header; the receiver keeps the users it
 *   holds. A 1,000-member group message costs one publish per instance instead of 1,000
 *   (scripts/group-hop.ts, docs/scaling.md "Measured").
 *
 * A publish delivers to this process's connections synchronously first (so local
 * delivery never depends on Redis), then publishes the wire form (header + the frame
 * string, built once per publish, ./wire.ts; sealed with `seal` when given, BUS_ENCRYPTION)
 * to each recipient's channel; instances drop their own echoes by origin id, and refuse
 * what does not open with their keys, is stale, replayed or redirected (or plaintext,
 * unless accepted), counting each refusal by reason (./refusals.ts; `onRefused` feeds
 * /metrics). A DM reaches an instance holding both users as one wire string on two
 * channels in a row: it is decoded (and opened) once, the second copy only goes through
 * the per-channel recipient checks (./busReader.ts). The publishes of one event-loop turn
 * go out together at its end (`setImmediate`): one PUBLISH when there is one, else one
 * script that PUBLISHes each in order (fewer commands: a DM is two publishes, a
 * committed insert batch several DMs). Order on a channel is kept: one connection,
 * commands in the order issued. At-most-once: while Redis is down remote delivery is
 * skipped (logged) and clients close gaps with `sync`; with `gapResyncMs` the
 * connections that may have missed events are told to (closed 4503, ./busGaps.ts). Subscriptions are reconciled after
 * every reconnect (node-redis also resubscribes what it knew).
 */
import type { Logger } from '../observability/logger.ts';
import type { Bus, Delivery, DeliveryHandler } from './bus.ts';
import { batchRecipients, BusGaps } from './busGaps.ts';
import type { Redis } from './redisClient.ts';
import { SubscriberWatch } from './subscriberWatch.ts';
import type { BusSeal } from '../crypto/busSeal.ts';
import { BusReader } from './busReader.ts';
import { RefusalCounter, type BusRefusal } from './refusals.ts';
import { encodeDelivery } from './wire.ts';

/** Longest a `track(…, true)` waits for its SUBSCRIBE to be acknowledged, and `stop()` for its last publishes, ms. */
const SUBSCRIBE_WAIT_MS = 1000;
/** Channels per SUBSCRIBE command when reconciling. */
const CHUNK = 500;
/** Periodic reconcile of wanted vs subscribed channels (repairs lost races), ms. */
const RECONCILE_MS = 30_000;
/** Most entries (a per-user publish, or a delivery routed per instance) one {@link PUBLISH_MANY} command carries. */
export const PUBLISH_BATCH = 128;
/** Deliveries to at least this many users are routed per instance (see the module doc). */
export const ROUTE_MIN_USERS = 3;
/**
 * ARGV prefix, origin instance, then entries in publish order → the number of PUBLISHes:
 * - `c`, channel, message: PUBLISH message to channel;
 * - `r`, n, user₁ … userₙ, message: PUBLISH message once to `<prefix>i:<instance>` of
 *   every instance other than the origin found in the users' `<prefix>pu:<user>` hashes.
 * Channels are not keys (PUBLISH takes none); the presence hashes are read by name
 * (standalone Redis / Sentinel, as the presence scripts). Sent with EVAL, never EVALSHA:
 * a NOSCRIPT retry after a Redis restart would let later publishes overtake the retried ones.
 */
const PUBLISH_MANY = `local prefix, origin, i, n = ARGV[1], ARGV[2], 3, 0
while i <= #ARGV do
  if ARGV[i] == 'c' then
    redis.call('PUBLISH', ARGV[i + 1], ARGV[i + 2])
    n = n + 1
    i = i + 3
  else
    local count = tonumber(ARGV[i + 1])
    local msg = ARGV[i + 2 + count]
    local sent = {}
    for j = i + 2, i + 1 + count do
      for _, inst in ipairs(redis.call('HKEYS', prefix .. 'pu:' .. ARGV[j])) do
        if inst ~= origin and not sent[inst] then
          sent[inst] = true
          redis.call('PUBLISH', prefix .. 'i:' .. inst, msg)
          n = n + 1
        end
      end
    end
    i = i + 3 + count
  end
end
return n`;

/** Options of {@link RedisBus}. */
export interface RedisBusOptions {
  /** REDIS_KEY_PREFIX: prefix of every channel. */
  prefix: string;
  /** This process's instance id (unique per process). */
  instanceId: string;
  logger: Logger;
  /**
   * Keyring opening received sealed frames and sealing published ones (BUS_ENCRYPTION,
   * ./wire.ts): the primary key seals, every key opens. Omitted: plaintext only.
   */
  seal?: BusSeal;
  /** Whether published frames are sealed with `seal` (default true; false while upgrading). */
  sealOutgoing?: boolean;
  /**
   * Whether received plaintext frames are delivered (default: when `seal` is omitted).
   * False refuses them, so a frame published to Redis without the key reaches nobody.
   */
  acceptPlaintext?: boolean;
  /**
   * Called once for every received message refused, with the reason (./refusals.ts): the
   * `chat_bus_refused_total{reason}` counter (src/observability/metrics.ts). Must not throw.
   */
  onRefused?: (reason: BusRefusal) => void;
  /**
   * BUS_GAP_RESYNC_MS (default 0 = off): connections that may have missed live events
   * (the subscriber reconnected; or publishes to their users failed) are closed 4503 at
   * random within this many ms (./busGaps.ts).
   */
  gapResyncMs?: number;
  /** Heartbeat period and stall bound of the subscriber watch, ms (./subscriberWatch.ts; tests shorten them). */
  subscriberWatch?: { everyMs: number; stallMs: number };
}

/** Redis pub/sub {@link Bus} with per-user channels. */
export class RedisBus implements Bus {
  readonly kind = 'redis';
  private handler: DeliveryHandler = () => {};
  /** Users with connections here. */
  private readonly wanted = new Set<string>();
  /** Channels acknowledged as subscribed on `sub`. */
  private readonly subscribed = new Set<string>();
  /** Channels with an UNSUBSCRIBE in flight. */
  private readonly unsubscribing = new Set<string>();
  private readonly chanPrefix: string;
  /** This instance's own channel (deliveries routed per instance). */
  private readonly instChannel: string;
  private readonly listener = (message: string, channel: string) => this.onMessage(message, channel);
  private readonly timer: NodeJS.Timeout;
  private skipped = 0;
  private lastSkipLog = 0;
  /** Keys sealing published frames, when they are sealed. */
  private readonly sealer: BusSeal | undefined;
  /** Echo, decoding (once per string per turn) and order checks of received messages. */
  private readonly reader: BusReader;
  /** Received messages refused, by reason, with the throttled log. */
  private readonly refusals: RefusalCounter;
  /** Entries queued this turn ({@link PUBLISH_MANY}'s encoding), in batches of ≤ PUBLISH_BATCH entries. */
  private outbox: { args: string[]; entries: number; publishes: number }[] = [];
  private flushScheduled = false;
  private commands = 0;
  /** Live deliveries lost on Redis: who is told to reconnect and sync (./busGaps.ts). */
  readonly gaps: BusGaps;
  /** Heartbeats through Redis back to this instance's subscriber (./subscriberWatch.ts). */
  readonly watch: SubscriberWatch;

  /**
   * @param pub command connection used for PUBLISH
   * @param sub dedicated subscriber connection
   */
  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly opts: RedisBusOptions,
  ) {
    this.chanPrefix = `${opts.prefix}u:`;
    this.instChannel = `${opts.prefix}i:${opts.instanceId}`;
    this.watch = new SubscriberWatch(pub, sub, `${opts.prefix}hb:${opts.instanceId}`, opts.logger, opts.subscriberWatch);
    this.reader = new BusReader(opts.instanceId, { open: opts.seal, acceptPlaintext: opts.acceptPlaintext ?? !opts.seal });
    this.sealer = opts.sealOutgoing === false ? undefined : opts.seal;
    this.refusals = new RefusalCounter(opts.logger, opts.onRefused);
    this.gaps = new BusGaps(opts.gapResyncMs ?? 0, {
      publishReady: () => this.pub.isReady,
      publishRemote: (d) => this.publishRemote(d),
      deliverLocal: (d) => this.handler(d),
      logger: opts.logger,
    });
    // Every `ready` is a (re)connection: events published meanwhile to the users held here are lost.
    sub.on('ready', () => void this.reconcile().then(() => this.gaps.subscriberBack(this.wanted)));
    this.timer = setInterval(() => void this.reconcile(), RECONCILE_MS);
    this.timer.unref();
  }

  publish(d: Delivery): void {
    this.handler(d);
    this.publishRemote(d);
  }

  /** Queue `d` for the other instances (this turn's batch, see the module doc). */
  private publishRemote(d: Delivery): void {
    if (d.userIds.length === 0) return;
    if (!this.pub.isReady) return this.noteSkipped(d.userIds.length, undefined, d.userIds);
    if (d.userIds.length >= ROUTE_MIN_USERS) {
      const args = this.batch(d.userIds.length);
      args.push('r', String(d.userIds.length));
      for (const userId of d.userIds) args.push(userId);
      args.push(encodeDelivery(this.opts.instanceId, d, true, this.sealer));
    } else {
      const wire = encodeDelivery(this.opts.instanceId, d, false, this.sealer);
      for (const userId of d.userIds) this.batch(1).push('c', this.chanPrefix + userId, wire);
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /**
   * Make room for one entry in this turn's last batch (a new batch past PUBLISH_BATCH
   * entries) and return that batch's argument list for the caller to append the entry to.
   * @param recipients users the entry addresses (what a failed command counts as skipped)
   */
  private batch(recipients: number): string[] {
    let last = this.outbox[this.outbox.length - 1];
    if (!last || last.entries >= PUBLISH_BATCH) this.outbox.push((last = { args: [this.opts.prefix, this.opts.instanceId], entries: 0, publishes: 0 }));
    last.entries++;
    last.publishes += recipients;
    return last.args;
  }

  /**
   * Send the queued publishes (see the module doc): one command per batch, in order; a
   * lone per-user publish as a plain PUBLISH. Returns the commands' replies, which never
   * reject: a failed command counts its publishes as skipped.
   */
  private readonly flush = (): Promise<unknown>[] => {
    this.flushScheduled = false;
    const out = this.outbox;
    this.outbox = [];
    return out.map((b) => {
      this.commands++;
      const skipped = (err: Error) => this.noteSkipped(b.publishes, err, batchRecipients(b.args, this.chanPrefix));
      if (b.entries === 1 && b.args[2] === 'c') return this.pub.publish(b.args[3]!, b.args[4]!).catch(skipped);
      return this.pub.eval(PUBLISH_MANY, { arguments: b.args }).catch(skipped);
    });
  };

  async start(handler: DeliveryHandler): Promise<void> {
    this.handler = handler;
    await this.reconcile();
    this.watch.start();
  }

  track(userId: string, present: boolean): void | Promise<void> {
    const ch = this.chanPrefix + userId;
    const settled = this.subscribed.has(ch) && !this.unsubscribing.has(ch);
    if (present) {
      this.wanted.add(userId);
      if (settled || !this.sub.isReady) return;
      return bounded(this.subscribe([ch]), SUBSCRIBE_WAIT_MS);
    }
    this.wanted.delete(userId);
    // A SUBSCRIBE still in flight is undone when it completes (see subscribe()).
    if (settled && this.sub.isReady) void this.unsubscribe([ch]);
  }

  /** PUBLISH / PUBLISH_MANY commands sent so far (tests). */
  get publishCommands(): number {
    return this.commands;
  }

  /** Received messages decoded (header parsed, sealed frame opened) so far, other than own echoes (tests). */
  get decoded(): number {
    return this.reader.decodes;
  }

  /**
   * Received messages refused so far: malformed, not authenticated, plaintext while
   * refused, stale, replayed or redirected (./refusals.ts).
   */
  get refused(): number {
    return this.refusals.count;
  }

  /** {@link refused} by reason, since start (a live view; tests). */
  get refusedByReason(): Readonly<Record<BusRefusal, number>> {
    return this.refusals.byReason;
  }

  healthy(): boolean {
    return this.pub.isReady && this.sub.isReady;
  }

  /** Sends the publishes still queued (waiting at most SUBSCRIBE_WAIT_MS for Redis), then stops receiving. */
  async stop(): Promise<void> {
    const sent = this.flush();
    if (sent.length) await bounded(Promise.allSettled(sent).then(() => {}), SUBSCRIBE_WAIT_MS);
    clearInterval(this.timer);
    this.gaps.stop();
    this.watch.stop();
    this.handler = () => {};
    this.wanted.clear();
  }

  /** Channels currently subscribed (for tests and /health detail). */
  subscriptionCount(): number {
    return this.subscribed.size;
  }

  private onMessage(message: string, channel: string): void {
    if (channel === this.watch.channel) return this.watch.seen(message);
    const dec = this.reader.read(message, channel);
    if (dec === undefined) return;
    if (typeof dec === 'string') return this.refusals.note(dec);
    // Each delivery is a copy with the recipients held here: `dec` may serve the next copy of this message.
    if (channel === this.instChannel) {
      // Routed per instance: keep the recipients held here.
      const here = dec.delivery.userIds.filter((u) => this.wanted.has(u));
      if (here.length === 0) return;
      return this.handler({ ...dec.delivery, userIds: here });
    }
    const userId = channel.slice(this.chanPrefix.length);
    if (!this.wanted.has(userId)) return;
    // A sealed message names its recipients: one found on another user's channel was copied there.
    if (dec.sealed && !dec.delivery.userIds.includes(userId)) return this.refusals.note('redirected');
    this.handler({ ...dec.delivery, userIds: [userId] });
  }

  private isWanted(ch: string): boolean {
    return ch === this.instChannel || ch === this.watch.channel || this.wanted.has(ch.slice(this.chanPrefix.length));
  }

  /** SUBSCRIBE; channels no longer wanted by the time it is acknowledged are unsubscribed again. */
  private async subscribe(channels: string[]): Promise<void> {
    try {
      await this.sub.subscribe(channels, this.listener);
    } catch (err) {
      this.opts.logger.debug('redis subscribe failed; retried on reconnect', { err: (err as Error).message, channels: channels.length });
      return;
    }
    for (const ch of channels) this.subscribed.add(ch);
    const stale = channels.filter((ch) => !this.isWanted(ch) && !this.unsubscribing.has(ch));
    if (stale.length) void this.unsubscribe(stale);
  }

  /** UNSUBSCRIBE; channels wanted again by the time it is acknowledged are subscribed again. */
  private async unsubscribe(channels: string[]): Promise<void> {
    for (const ch of channels) this.unsubscribing.add(ch);
    try {
      await this.sub.unsubscribe(channels);
      for (const ch of channels) this.subscribed.delete(ch);
    } catch (err) {
      this.opts.logger.debug('redis unsubscribe failed; retried on reconnect', { err: (err as Error).message, channels: channels.length });
    } finally {
      for (const ch of channels) this.unsubscribing.delete(ch);
    }
    const again = channels.filter((ch) => this.isWanted(ch) && !this.subscribed.has(ch));
    if (again.length && this.sub.isReady) void this.subscribe(again);
  }

  /** Bring the subscriber's channels in line with the users held here (after reconnects). */
  private async reconcile(): Promise<void> {
    if (!this.sub.isReady) return;
    const add: string[] = [this.instChannel, this.watch.channel].filter((ch) => !this.subscribed.has(ch));
    for (const u of this.wanted) {
      const ch = this.chanPrefix + u;
      if (!this.subscribed.has(ch)) add.push(ch);
    }
    const remove = [...this.subscribed].filter((ch) => !this.isWanted(ch) && !this.unsubscribing.has(ch));
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < add.length; i += CHUNK) jobs.push(this.subscribe(add.slice(i, i + CHUNK)));
    for (let i = 0; i < remove.length; i += CHUNK) jobs.push(this.unsubscribe(remove.slice(i, i + CHUNK)));
    await Promise.all(jobs);
    if (add.length || remove.length) this.opts.logger.debug('redis subscriptions reconciled', { added: add.length, removed: remove.length });
  }

  /**
   * Count and (at most every 30 s) log remote deliveries skipped while Redis is
   * unavailable; their recipients are told once it is back (./busGaps.ts).
   */
  private noteSkipped(n: number, err: Error | undefined, userIds: Iterable<string>): void {
    this.gaps.failed(userIds);
    this.skipped += n;
    const now = Date.now();
    if (now - this.lastSkipLog < 30_000) return;
    this.lastSkipLog = now;
    this.opts.logger.warn('redis unavailable: cross-instance delivery skipped (clients recover with sync)', { skipped: this.skipped, err: err?.message });
    this.skipped = 0;
  }
}

/** Wait for `p` at most `ms` (never rejects). */
function bounded(p: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      () => {
        clearTimeout(t);
        resolve();
      },
    );
  });
}

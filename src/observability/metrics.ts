/**
 * Prometheus metrics (prom-client): connections, users, frames in/out by type, commands
 * by type with latency, error frames by code, rate-limit hits by limit, refused upgrades,
 * server-initiated closes by code, messages stored, database and delivery latency, Redis
 * bus messages refused by reason, process metrics. Label children are cached so the hot
 * path does no label hashing.
 */
import client from 'prom-client';
import type { GatewayMetrics, UpgradeRejection } from '../gateway/host.ts';
import type { LimitKind } from '../policy/rateLimits.ts';
import { GAP_CLOSE_REASON } from '../fanout/busGaps.ts';
import { BUS_REFUSALS, type BusRefusal } from '../fanout/refusals.ts';
import { UNREADABLE_REASONS, type UnreadableReason } from '../crypto/cipher.ts';


/** Error codes exported from the start at 0 because docs/alerts.yml alerts on them (PROTOCOL §2.2, §3). */
export const ALERTED_ERROR_CODES = ['SERVICE_UNAVAILABLE', 'AUTH_UNAVAILABLE', 'INTERNAL_ERROR'] as const;
/** The children of a one-label metric, created once per label value (no label hashing per call). */
class Children<L extends string | number, C> {
  private readonly cache = new Map<L, C>();
  constructor(private readonly make: (value: string) => C) {}

  /** The child of `value`. */
  of(value: L): C {
    let c = this.cache.get(value);
    if (!c) this.cache.set(value, (c = this.make(String(value))));
    return c;
  }
}

/** The service's metrics on their own registry. */
export class Metrics implements GatewayMetrics {
  readonly registry = new client.Registry();
  private readonly framesIn: Children<string, client.Counter.Internal>;
  private readonly framesOut: Children<string, client.Counter.Internal>;
  private readonly commands: Children<string, client.Histogram.Internal<'type'>>;
  private readonly errors: Children<string, client.Counter.Internal>;
  private readonly limitHits: Children<LimitKind, client.Counter.Internal>;
  private readonly upgradesRejected: Children<UpgradeRejection, client.Counter.Internal>;
  private readonly serverCloses: Children<number, client.Counter.Internal>;
  private readonly gapCloses: client.Counter;
  private readonly busRefusals: Children<BusRefusal, client.Counter.Internal>;
  private readonly unreadable: Children<UnreadableReason, client.Counter.Internal>;

  private readonly stored: client.Counter;
  private readonly dbQuery: client.Histogram;
  private readonly dbPoolWait: client.Histogram;
  private readonly busLag: client.Histogram;

  /**
   * @param gauges callbacks read at scrape time: open connections, authenticated users,
   *   and (pg only) pool occupancy
   */
  constructor(gauges: { connections(): number; users(): number; pool?(): { total: number; idle: number; waiting: number } | undefined }, defaultLabels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(defaultLabels);
    client.collectDefaultMetrics({ register: this.registry });
    new client.Gauge({ name: 'chat_open_connections', help: 'Open WebSocket connections', registers: [this.registry], collect() { this.set(gauges.connections()); } });
    new client.Gauge({ name: 'chat_authenticated_users', help: 'Distinct authenticated users', registers: [this.registry], collect() { this.set(gauges.users()); } });
    /**
     * A counter with one label, as per-value children; the values in `zeroed` are exported at 0
     * from the start, so the first increase is one an alert sees (audit 8, F11: rate() and
     * increase() ignore a series' first sample).
     */
    const labelled = <L extends string | number>(name: string, help: string, label: string, zeroed: readonly L[] = []) => {
      const counter = new client.Counter({ name, help, labelNames: [label], registers: [this.registry] });
      const c = new Children<L, client.Counter.Internal>((v) => counter.labels(v));
      for (const v of zeroed) c.of(v).inc(0);
      return c;
    };
    this.framesIn = labelled('chat_frames_in_total', 'Inbound frames by type (after alias mapping; invalid: failed validation; binary)', 'type');
    this.framesOut = labelled('chat_frames_out_total', 'Outbound frames by type', 'type');
    const commands = new client.Histogram({
      name: 'chat_command_duration_seconds',
      help: 'Command handling time by type (ack latency as the server sees it)',
      labelNames: ['type'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.commands = new Children((v) => commands.labels(v));
    // The error codes docs/alerts.yml watches are exported from 0.
    this.errors = labelled('chat_errors_total', 'Error frames sent (error and auth_error), by code', 'code', ALERTED_ERROR_CODES);
    this.limitHits = labelled('chat_rate_limit_hits_total', 'Refusals by a rate limit (message, action, typing, connect, read, receipt)', 'limit');
    this.upgradesRejected = labelled(
      'chat_upgrades_rejected_total',
      'WebSocket upgrades refused (draining, origin, connect_rate, ip_cap; pending_ip_cap: sockets closed at accept, too many unfinished requests from the address)',
      'reason',
    );
    this.serverCloses = labelled('chat_server_closes_total', 'Connections closed by the server, by close code', 'code');
    this.gapCloses = new client.Counter({
      name: 'chat_bus_gap_closes_total',
      help: 'Connections closed 4503 because Redis lost live events for them (src/fanout/busGaps.ts); also counted in chat_server_closes_total{code="4503"}',
      registers: [this.registry],
    });
    // Every reason of these two exported from 0 (alerts watch both).
    this.busRefusals = labelled(
      'chat_bus_refused_total',
      'Messages received from Redis and not delivered, by reason (malformed, unauthenticated, plaintext, stale, replayed, redirected; src/fanout/refusals.ts)',
      'reason',
      BUS_REFUSALS,
    );
    this.unreadable = labelled(
      'chat_bodies_unreadable_total',
      'Stored message bodies that could not be opened when read, by reason (unknown_key: key id not configured; failed_authentication: altered, moved or wrong key); the message is not shown',
      'reason',
      UNREADABLE_REASONS,
    );
    this.stored = new client.Counter({ name: 'chat_messages_stored_total', help: 'Messages committed (DM, group, announcement; duplicates excluded)', registers: [this.registry] });
    const dbBuckets = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];
    this.dbQuery = new client.Histogram({ name: 'chat_db_query_duration_seconds', help: 'Database statement time on its connection', buckets: dbBuckets, registers: [this.registry] });
    this.dbPoolWait = new client.Histogram({ name: 'chat_db_pool_wait_seconds', help: 'Wait for a free pool connection', buckets: dbBuckets, registers: [this.registry] });
    this.busLag = new client.Histogram({
      name: 'chat_delivery_lag_seconds',
      help: 'Publish (after commit) to frames written on this process, across the bus when remote',
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers: [this.registry],
    });
    const pool = gauges.pool;
    if (pool) {
      new client.Gauge({
        name: 'chat_db_pool_connections',
        help: 'Pool connections by state (total, idle) and callers waiting',
        labelNames: ['state'],
        registers: [this.registry],
        collect() {
          const p = pool();
          if (!p) return;
          this.set({ state: 'total' }, p.total);
          this.set({ state: 'idle' }, p.idle);
          this.set({ state: 'waiting' }, p.waiting);
        },
      });
    }
  }

  /** A message was committed. */
  messageStored(): void {
    this.stored.inc();
  }

  /** Database observer (see store/pgDb.ts DbObserver). */
  readonly db = {
    query: (ms: number) => this.dbQuery.observe(ms / 1000),
    poolWait: (ms: number) => this.dbPoolWait.observe(ms / 1000),
  };

  /** Publish-to-write lag of one delivery, ms. */
  deliveryLag(ms: number): void {
    this.busLag.observe(Math.max(0, ms) / 1000);
  }

  frameIn(type: string): void {
    this.framesIn.of(type).inc();
  }

  frameOut(frame: string | Buffer): void {
    this.framesOutMany(frame, 1);
  }

  framesOutMany(frame: string | Buffer, n: number): void {
    // Frames start with {"type":"…" (builders put type first).
    const head = typeof frame === 'string' ? frame.slice(0, 64) : frame.toString('latin1', 0, 64);
    const end = head.indexOf('"', 9);
    const type = head.startsWith('{"type":"') && end > 9 ? head.slice(9, end) : 'other';
    this.framesOut.of(type).inc(n);
  }

  commandDone(type: string, ms: number): void {
    this.commands.of(type).observe(ms / 1000);
  }

  errorSent(code: string): void {
    this.errors.of(code).inc();
  }

  closedByServer(code: number, reason?: string): void {
    this.serverCloses.of(code).inc();
    if (reason === GAP_CLOSE_REASON) this.gapCloses.inc();
  }

  upgradeRejected(reason: UpgradeRejection): void {
    this.upgradesRejected.of(reason).inc();
  }

  /** A rate limit of `kind` refused a request (see policy/rateLimits.ts countingHits). */
  rateLimitHit(kind: LimitKind): void {
    this.limitHits.of(kind).inc();
  }

  /** A stored message body could not be opened for `reason` (src/chat/context.ts openRecord). */
  bodyUnreadable(reason: UnreadableReason): void {
    this.unreadable.of(reason).inc();
  }

  /** The Redis bus refused a received message for `reason` (RedisBusOptions.onRefused, src/fanout/refusals.ts). */
  busRefused(reason: BusRefusal): void {
    this.busRefusals.of(reason).inc();
  }

  /** Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * The WebSocket heartbeat (PROTOCOL §3 item 8), spread over its interval: every open
 * connection is pinged once per HEARTBEAT_INTERVAL_MS, and terminated when it has not
 * answered within HEARTBEAT_TIMEOUT_MS.
 *
 * The connections are kept in `slots` (up to one per second of the interval), and each
 * tick, `intervalMs / slots` apart, pings one slot. So a connection's pings come exactly
 * one interval apart, the first one an interval (less at most one tick) after it joined,
 * and a process holding 10,000 connections pings ~400 of them per second instead of all
 * 10,000 in one event-loop turn every 25 s (a pause of its own, and a burst of pongs
 * after it). The slots are also the gateway's set of open connections: no memory per
 * connection beyond the Set entry it had anyway, and one small integer on it.
 */

/** What the heartbeat needs of a connection. */
export interface HeartbeatMember {
  /** Set by the owner when a pong arrives; cleared here when a ping is sent. */
  alive: boolean;
  /** Index of the slot holding it (written by {@link Heartbeat}; -1 when in none). */
  heartbeatSlot: number;
}

/** Callbacks of a {@link Heartbeat}. */
export interface HeartbeatHooks<T> {
  /** Send a WebSocket ping to `member`. Return false when it is closed and needs none. */
  ping(member: T): boolean;
  /** `member` did not answer its ping within the timeout. */
  dead(member: T): void;
}

/** Slots at most: one per second of the interval, and never more than this. */
const MAX_SLOTS = 60;

/** The set of open connections, pinged a slot at a time. */
export class Heartbeat<T extends HeartbeatMember> {
  private readonly slots: Set<T>[];
  /** Next slot to ping. */
  private cursor = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly pending = new Set<NodeJS.Timeout>();

  /**
   * @param intervalMs HEARTBEAT_INTERVAL_MS: time between two pings of one connection, ms
   * @param timeoutMs HEARTBEAT_TIMEOUT_MS: time a ping has to be answered, ms (< intervalMs)
   * @param hooks ping and dead-peer callbacks
   */
  constructor(
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
    private readonly hooks: HeartbeatHooks<T>,
  ) {
    const n = Math.max(1, Math.min(MAX_SLOTS, Math.floor(intervalMs / 1000)));
    this.slots = Array.from({ length: n }, () => new Set<T>());
  }

  /** Number of members (a sum over at most MAX_SLOTS sets). */
  get size(): number {
    let n = 0;
    for (const s of this.slots) n += s.size;
    return n;
  }

  /** True when `member` is held. */
  has(member: T): boolean {
    return member.heartbeatSlot >= 0 && this.slots[member.heartbeatSlot]!.has(member);
  }

  /**
   * Hold `member`: it goes into the slot pinged last, so its first ping comes one full
   * rotation (one interval) later.
   */
  add(member: T): void {
    if (this.has(member)) return;
    const slot = (this.cursor + this.slots.length - 1) % this.slots.length;
    this.slots[slot]!.add(member);
    member.heartbeatSlot = slot;
  }

  /** Stop holding `member`. Returns false when it was not held. */
  delete(member: T): boolean {
    if (!this.has(member)) return false;
    this.slots[member.heartbeatSlot]!.delete(member);
    member.heartbeatSlot = -1;
    return true;
  }

  /** Every member (a snapshot: safe to close members while iterating). */
  all(): T[] {
    const out: T[] = [];
    for (const s of this.slots) for (const m of s) out.push(m);
    return out;
  }

  /** Start the ticks (unref: they never keep the process alive). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs / this.slots.length);
    this.timer.unref();
  }

  /** Stop the ticks and the pending timeout checks. Members are kept. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
  }

  /** Ping the next slot; `timeoutMs` later, report those of them that did not answer. */
  tick(): void {
    const slot = this.slots[this.cursor]!;
    this.cursor = (this.cursor + 1) % this.slots.length;
    if (slot.size === 0) return;
    const sent: T[] = [];
    for (const m of slot) {
      m.alive = false;
      if (this.hooks.ping(m)) sent.push(m);
    }
    if (sent.length === 0) return;
    const check = setTimeout(() => {
      this.pending.delete(check);
      for (const m of sent) if (!m.alive && this.has(m)) this.hooks.dead(m);
    }, this.timeoutMs);
    check.unref();
    this.pending.add(check);
  }
}

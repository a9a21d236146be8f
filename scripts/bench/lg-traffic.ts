/**
 * Load generator side: one open-loop traffic phase. Sends are scheduled by wall clock at a
 * constant rate (never waiting for acks); latency is measured from the *scheduled* send
 * time, so a late generator or a slow server cannot hide queueing (no coordinated
 * omission). Every process also records the deliveries its clients receive.
 */
import WebSocket from 'ws';
import type { Client, ClientPool } from './lg-clients.ts';
import type { ProgressResult, TrafficPlan, TrafficResult } from './ipc.ts';
import { GOODPUT_ACK_MS, messageTag, nowMs, parseTag } from './ipc.ts';
import { encodeHist, newHist, recordMs, type Hist } from './histo.ts';

const CMID_RE = /"clientMessageId"\s*:\s*"([^"]+)"/;
const CODE_RE = /"code"\s*:\s*"([^"]+)"/;
const REQID_RE = /"requestId"\s*:\s*"([^"]+)"/;

/** Scheduler tick bound: at most this many sends per tick (keeps the loop responsive). */
const MAX_BURST = 2000;

/** Recorder and sender of one phase (create one per `traffic` request). */
export class TrafficPhase {
  private sent = 0;
  private sentMeasured = 0;
  private readonly pendingAcks = new Map<string, { sched: number; measured: boolean }>();
  private readonly ackedIds: string[] = [];
  /** Measured acks: [scheduled ms from window start, latency ms] pairs, flat. */
  private readonly ackTrace: number[] = [];
  private errors = 0;
  private readonly errorCodes: Record<string, number> = {};
  private readonly ackHist: Hist = newHist();
  private readonly deviceHist: Hist = newHist();
  private readonly lagHist: Hist = newHist();
  private readonly deliveries = new Map<string, [number, number]>();
  private delivered = 0;
  private framesInWindow = 0;
  private acksInWindow = 0;
  private ackedInTime = 0;
  private cpuAtStart: NodeJS.CpuUsage | undefined;
  private cpuMsInWindow = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private maxBuffered = 0;
  private sending = false;
  private readonly winStart: number;
  private readonly winEnd: number;
  private readonly filler: string;
  private readonly ackType: string;
  private readonly deliveryType: string;
  private readonly sendType: string;
  private readonly targetField: string;

  /** @param pool this process's clients; @param plan the phase (see {@link TrafficPlan}) */
  constructor(
    private readonly pool: ClientPool,
    private readonly plan: TrafficPlan,
  ) {
    this.winStart = plan.startAt + plan.warmupMs;
    this.winEnd = this.winStart + plan.durationMs;
    this.filler = 'x'.repeat(Math.max(0, plan.contentBytes - 40));
    const dm = plan.kind === 'dm';
    this.ackType = dm ? 'private_message_sent' : 'group_message_sent';
    this.deliveryType = dm ? 'new_private_message' : 'new_group_message';
    this.sendType = dm ? 'send_private_message' : 'send_group_message';
    this.targetField = dm ? 'recipientId' : 'groupId';
    pool.handler = (c, type, raw) => this.onFrame(c, type, raw);
    const now = nowMs();
    this.timers.push(setTimeout(() => (this.cpuAtStart = process.cpuUsage()), Math.max(0, this.winStart - now)));
    this.timers.push(
      setTimeout(() => {
        const u = process.cpuUsage(this.cpuAtStart);
        this.cpuMsInWindow = (u.user + u.system) / 1000;
      }, Math.max(0, this.winEnd - now)),
    );
  }

  /**
   * Start sending (if this process has senders); resolves when the last scheduled send left.
   * Throws at once when a sender is not connected.
   */
  run(): Promise<void> {
    const { senders, rate, startAt, warmupMs, durationMs } = this.plan;
    const clients = senders.map((s) => ({ client: this.pool.clients.get(s.key), target: s.target }));
    if (clients.length === 0 || rate <= 0) return Promise.resolve();
    const missing = clients.filter((c) => !c.client).length;
    if (missing) throw new Error(`${missing} sender clients are not connected`);
    const total = Math.floor((rate * (warmupMs + durationMs)) / 1000);
    const interval = 1000 / rate;
    this.sending = true;
    return new Promise((resolve) => {
      const tick = () => {
        const now = nowMs();
        const due = now < startAt ? 0 : Math.min(total, Math.floor((now - startAt) / interval) + 1);
        for (let burst = 0; this.sent < due && burst < MAX_BURST; burst++) {
          const seq = this.sent;
          const s = clients[seq % clients.length]!;
          this.sendOne(s.client!, s.target, seq, startAt + seq * interval, now);
        }
        if (this.sent >= total) {
          this.sending = false;
          resolve();
          return;
        }
        const wait = startAt + this.sent * interval - nowMs();
        setTimeout(tick, Math.max(0, Math.min(wait, 50)));
      };
      tick();
    });
  }

  private sendOne(client: Client, target: string, seq: number, sched: number, now: number): void {
    const measured = sched >= this.winStart && sched < this.winEnd;
    const tag = messageTag(this.plan.gen, this.plan.index, seq, measured, sched);
    const frame = JSON.stringify({ type: this.sendType, [this.targetField]: target, content: `bench ${tag} ${this.filler}`, clientMessageId: tag, requestId: tag });
    this.pendingAcks.set(tag, { sched, measured });
    this.sent++;
    if (measured) {
      this.sentMeasured++;
      recordMs(this.lagHist, now - sched);
    }
    if (client.ws.bufferedAmount > this.maxBuffered) this.maxBuffered = client.ws.bufferedAmount;
    if (client.ws.readyState === WebSocket.OPEN) client.ws.send(frame);
  }

  private onFrame(_client: Client, type: string, raw: string): void {
    const now = nowMs();
    if (type === this.deliveryType) {
      const tag = CMID_RE.exec(raw)?.[1];
      const t = tag ? parseTag(tag, this.plan.gen) : undefined;
      if (!tag || !t) return;
      this.delivered++;
      if (now >= this.winStart && now < this.winEnd) this.framesInWindow++;
      if (t.measured) recordMs(this.deviceHist, now - t.scheduledMs);
      const d = this.deliveries.get(tag);
      if (d) {
        d[0]++;
        d[1] = Math.max(d[1], now);
      } else this.deliveries.set(tag, [1, now]);
    } else if (type === this.ackType) {
      const tag = CMID_RE.exec(raw)?.[1];
      const p = tag ? this.pendingAcks.get(tag) : undefined;
      if (!tag || !p) return; // another device's copy, or a duplicate
      this.pendingAcks.delete(tag);
      this.ackedIds.push(tag);
      if (p.measured) {
        recordMs(this.ackHist, now - p.sched);
        this.ackTrace.push(p.sched - this.winStart, now - p.sched);
        if (now - p.sched <= GOODPUT_ACK_MS) this.ackedInTime++;
      }
      if (now >= this.winStart && now < this.winEnd) this.acksInWindow++;
    } else if (type === 'error') {
      const code = CODE_RE.exec(raw)?.[1] ?? '?';
      this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
      const rq = REQID_RE.exec(raw)?.[1];
      if (rq && this.pendingAcks.delete(rq)) this.errors++;
    }
  }

  /** Running counters. */
  progress(): ProgressResult {
    return { sending: this.sending, sent: this.sent, acked: this.ackedIds.length, errors: this.errors, pendingAcks: this.pendingAcks.size, delivered: this.delivered };
  }

  /** Everything recorded; detaches the phase from the pool. */
  collect(): TrafficResult {
    this.pool.handler = null;
    for (const t of this.timers) clearTimeout(t);
    return {
      ...this.progress(),
      sentMeasured: this.sentMeasured,
      ackedIds: this.ackedIds,
      errorCodes: this.errorCodes,
      ackHist: encodeHist(this.ackHist),
      deviceHist: encodeHist(this.deviceHist),
      lagHist: encodeHist(this.lagHist),
      ackTrace: this.ackTrace,
      deliveries: [...this.deliveries].map(([k, v]) => [k, v[0], v[1]] as [string, number, number]),
      framesInWindow: this.framesInWindow,
      acksInWindow: this.acksInWindow,
      ackedInTime: this.ackedInTime,
      cpuMsInWindow: this.cpuMsInWindow,
      maxBuffered: this.maxBuffered,
    };
  }
}

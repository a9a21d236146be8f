/**
 * Messages between the benchmark driver (run.ts) and its load-generator processes
 * (loadgen.ts), over the child_process IPC channel ('advanced' serialization).
 * Every request carries an `id`; the load generator answers each with one {@link LgReply}.
 * Times are wall-clock epoch milliseconds (`performance.timeOrigin + performance.now()`),
 * comparable across processes on this machine.
 */

/** One WebSocket client to open: `key` names it in later requests. */
export interface ClientSpec {
  key: string;
  /** User id (decimal string); the load generator signs its token. */
  userId: string;
  /** Source address to bind (127.x.y.z), when spreading over loopback addresses. */
  localAddress?: string;
}

/** A sender of a traffic phase: client `key` sends to user `target` (DM) or group `target`. */
export interface SenderSpec {
  key: string;
  target: string;
}

/** A traffic phase: open-loop sends at a constant rate, scheduled by wall clock. */
export interface TrafficPlan {
  kind: 'dm' | 'group';
  /** Generation tag put in every clientMessageId (distinguishes runs/phases; no dots). */
  gen: string;
  /** This load generator's index (makes message tags unique across processes). */
  index: number;
  /** This process's senders (may be empty: it then only receives). Sends go round-robin. */
  senders: SenderSpec[];
  /** Sends per second from this process (all its senders together). */
  rate: number;
  /** Epoch ms of the first scheduled send. */
  startAt: number;
  /** Sends scheduled in [startAt, startAt + warmupMs) are warm-up: delivered and checked, not measured. */
  warmupMs: number;
  /** Measured window length after the warm-up, ms. */
  durationMs: number;
  /** UTF-8 size of each message's content, bytes (approximate, ≥ 40). */
  contentBytes: number;
}

/** Requests from the driver. */
export type LgRequest =
  | { id: number; op: 'init'; url: string; jwtSecret: string; handshake: 'net' | 'ws' }
  | { id: number; op: 'connect'; clients: ClientSpec[]; concurrency: number; timeoutMs: number; startAt: number }
  | { id: number; op: 'group-create'; creatorKey: string; memberIds: string[]; maxMembers: number; timeoutMs: number }
  | { id: number; op: 'traffic'; plan: TrafficPlan }
  | { id: number; op: 'progress' }
  | { id: number; op: 'collect' }
  | { id: number; op: 'status' }
  | { id: number; op: 'disconnect' }
  | { id: number; op: 'close' };

/** Result of `connect`: counts, failures by reason, wall-clock span and connect+auth latency. */
export interface ConnectResult {
  ok: number;
  failed: number;
  /** reason → count (e.g. `HTTP 429`, `close 4429`, `auth_error TOKEN_INVALID`, `timeout`). */
  failures: Record<string, number>;
  /** Epoch ms when the first connection attempt started / the last one finished. */
  firstStart: number;
  lastEnd: number;
  /** HDR histogram (µs) of connect → auth_success, compressed base64. */
  latency: string;
  /** CPU time (user + system) this process used while connecting, ms. */
  cpuMs: number;
}

/** Result of `group-create`. `unavailable` is set when the server lacks the command. */
export interface GroupCreateResult {
  groupId?: string;
  memberCount?: number;
  rejected?: number;
  unavailable?: string;
  error?: string;
}

/** Result of `progress`: running counters of the current traffic phase. */
export interface ProgressResult {
  sending: boolean;
  sent: number;
  acked: number;
  errors: number;
  pendingAcks: number;
  /** Delivery frames (`new_private_message` / `new_group_message`) received so far. */
  delivered: number;
}

/** Result of `collect`: everything recorded in the current traffic phase. */
export interface TrafficResult extends ProgressResult {
  sentMeasured: number;
  /** clientMessageIds acknowledged by the server (all, warm-up included). */
  ackedIds: string[];
  /** Error replies by code. */
  errorCodes: Record<string, number>;
  /** HDR (µs): ack latency of measured sends. */
  ackHist: string;
  /** HDR (µs): per-device delivery latency of measured sends. */
  deviceHist: string;
  /** HDR (µs): how late sends left versus their schedule (generator health). */
  lagHist: string;
  /** Per clientMessageId: [frames received here, last arrival epoch ms]. */
  deliveries: [string, number, number][];
  /** Delivery frames whose arrival fell inside the measured window. */
  framesInWindow: number;
  /** Acks whose arrival fell inside the measured window. */
  acksInWindow: number;
  /** Measured sends acknowledged within {@link GOODPUT_ACK_MS} of their scheduled time. */
  ackedInTime: number;
  /** CPU time (user + system) this process used during the measured window, ms. */
  cpuMsInWindow: number;
  /** Largest ws bufferedAmount seen on a sender at send time, bytes. */
  maxBuffered: number;
  /** Every measured ack as flat pairs: scheduled time (ms from the window start), latency (ms). For ./stalls.ts. */
  ackTrace: number[];
}

/** Result of `status`: connections currently open, and close codes seen since connect. */
export interface StatusResult {
  open: number;
  closes: Record<string, number>;
}

/** Reply to any request. */
export type LgReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/**
 * A measured send counts towards throughput ("goodput") when acknowledged within this
 * many ms of its scheduled time. Exact (= offered rate) while the server keeps up; falls
 * as soon as a backlog builds. Well above the 100 ms ack p99 target.
 */
export const GOODPUT_ACK_MS = 1000;

/** Epoch milliseconds with sub-ms resolution, comparable across processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * clientMessageId of send `seq` of load generator `index` in generation `gen`:
 * `<gen>.<index>_<seq>.<m>.<scheduled ms>` (`m` = 1 when inside the measured window).
 * At most ~45 chars (limit 64).
 */
export function messageTag(gen: string, index: number, seq: number, measured: boolean, scheduledMs: number): string {
  return `${gen}.${index}_${seq}.${measured ? 1 : 0}.${scheduledMs.toFixed(2)}`;
}

/** Parse a {@link messageTag}; undefined when it is not one of generation `gen`. */
export function parseTag(tag: string, gen: string): { measured: boolean; scheduledMs: number } | undefined {
  if (!tag.startsWith(gen + '.')) return undefined;
  const parts = tag.split('.');
  // gen may not contain dots; parts: gen, seq, m, ms-int, ms-frac
  if (parts.length !== 5) return undefined;
  const scheduledMs = Number(`${parts[3]}.${parts[4]}`);
  if (!Number.isFinite(scheduledMs)) return undefined;
  return { measured: parts[2] === '1', scheduledMs };
}

/**
 * Messages between node:cluster workers and the primary (cluster-server.ts), and the
 * worker's request/response client. The primary sets `serialization: 'advanced'`, so a
 * message is structured-cloned: a delivery's pre-serialised frame travels as the same
 * string, never re-parsed or re-escaped.
 */

/** Message channel tags (field `ch`). */
export const CH = {
  bus: 'chat:bus',
  track: 'chat:track',
  rpc: 'chat:rpc',
  reply: 'chat:rpc-reply',
  presence: 'chat:presence',
  metricsReq: 'chat:metrics-req',
  metricsRes: 'chat:metrics-res',
} as const;

/** A delivery relayed through the primary. */
export interface BusMsg {
  ch: typeof CH.bus;
  /** Recipient user ids. */
  u: readonly string[];
  /** Pre-serialised frame. */
  f: string;
  x?: string;
  c?: { code: number; reason: string };
  /** Publish time, epoch ms (delivery-lag metric). */
  t?: number;
}

/** A worker holds (p = true) or no longer holds connections of user `u`. */
export interface TrackMsg {
  ch: typeof CH.track;
  u: string;
  p: boolean;
}

/** A request to the primary; `id` 0 means no reply wanted. */
export interface RpcMsg {
  ch: typeof CH.rpc;
  id: number;
  op: RpcOp;
  a: unknown[];
}

/** The primary's answer: result `r` or error text `e`. */
export interface RpcReply {
  ch: typeof CH.reply;
  id: number;
  r?: unknown;
  e?: string;
}

/** Presence transitions the primary assigns to one worker to announce (a worker died). */
export interface PresenceMsg {
  ch: typeof CH.presence;
  on: string[];
  off: string[];
}

/**
 * One metric family as a worker's registry reports it (prom-client `getMetricsAsJSON()`):
 * `type` is `counter`, `gauge`, `histogram` or `summary`; histogram values carry
 * `metricName` (`…_bucket`, `…_sum`, `…_count`).
 */
export interface MetricFamily {
  name: string;
  help: string;
  type: string;
  aggregator?: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

/** The primary asks a worker for its own metrics (reply: {@link MetricsRes} with the same `id`). */
export interface MetricsReq {
  ch: typeof CH.metricsReq;
  id: number;
}

/** A worker's own metrics (`m`), or error text `e` when its registry failed. */
export interface MetricsRes {
  ch: typeof CH.metricsRes;
  id: number;
  m?: MetricFamily[];
  e?: string;
}

/**
 * Operations the primary serves (see clusterPrimary.ts). `p.release`: this worker is
 * stopping; while the whole cluster stops, the primary hands it the users it must persist
 * offline (ClusterPresence.release), else [].
 */
export type RpcOp = 'p.admit' | 'p.disconnected' | 'p.claim' | 'p.count' | 'p.online' | 'p.release' | 'ip.acquire' | 'ip.release' | 'metrics';

/** True when `m` is an object with channel tag `ch`. */
export function isMsg<T extends { ch: string }>(m: unknown, ch: T['ch']): m is T {
  return typeof m === 'object' && m !== null && (m as { ch?: unknown }).ch === ch;
}

/** Send to the primary; false when the IPC channel is closed (never throws). */
export function sendToPrimary(msg: object): boolean {
  if (!process.send || !process.connected) return false;
  try {
    process.send(msg, undefined, undefined, () => {});
    return true;
  } catch {
    return false;
  }
}

/** Thrown when the primary does not answer within the timeout or the channel is closed. */
export class PrimaryUnavailableError extends Error {
  constructor(op: string) {
    super(`cluster primary did not answer ${op}`);
    this.name = 'PrimaryUnavailableError';
  }
}

/** Worker-side request/response client over the IPC channel (one per process). */
export class WorkerRpc {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly onMessage = (m: unknown) => {
    if (!isMsg<RpcReply>(m, CH.reply)) return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.e !== undefined) p.reject(new Error(m.e));
    else p.resolve(m.r);
  };

  constructor() {
    process.on('message', this.onMessage);
  }

  /** Call `op` on the primary; rejects with {@link PrimaryUnavailableError} after `timeoutMs` (ms). */
  call<T>(op: RpcOp, args: unknown[], timeoutMs = 2000): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PrimaryUnavailableError(op));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      if (!sendToPrimary({ ch: CH.rpc, id, op, a: args } satisfies RpcMsg)) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new PrimaryUnavailableError(op));
      }
    });
  }

  /** Send `op` with no reply wanted. */
  notify(op: RpcOp, args: unknown[]): void {
    sendToPrimary({ ch: CH.rpc, id: 0, op, a: args } satisfies RpcMsg);
  }

  /** Stop listening and fail pending calls. */
  close(): void {
    process.off('message', this.onMessage);
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new PrimaryUnavailableError('close'));
    }
    this.pending.clear();
  }
}

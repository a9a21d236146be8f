/**
 * Slow-ack bursts: is a run's ack p99 made of many messages that were each slow on their
 * own, or of a few stalls during which every message in flight waited? At 1,000 DM/s a
 * 30 ms stall anywhere on the path (server, database, a generator, the host) delays ~30
 * consecutive sends, and 1% of a 30 s window is only 300 acks: ten such stalls set the p99.
 *
 * Input is the load generators' ack trace: for every measured send, its scheduled time
 * (ms from the window start) and its ack latency (ms). A burst is a run of acks at or above
 * the threshold whose scheduled times are at most {@link BURST_GAP_MS} apart, holding at
 * least {@link BURST_MIN_ACKS} of them.
 */

/** Largest gap (ms of scheduled time) between two slow acks of one burst. */
export const BURST_GAP_MS = 100;
/** Fewest slow acks that make a burst. */
export const BURST_MIN_ACKS = 5;

/** One burst of slow acks. */
export interface SlowBurst {
  /** Scheduled time of its first slow ack, ms from the window start. */
  startMs: number;
  /** Scheduled time from its first to its last slow ack, ms. */
  spanMs: number;
  /** Slow acks in it. */
  acks: number;
  /** Its largest ack latency, ms. */
  maxMs: number;
}

/** How the acks at or above a run's percentile are spread over its window. */
export interface SlowAckSummary {
  /** The threshold: the trace's own percentile (nearest rank), ms; 0 for an empty trace. */
  thresholdMs: number;
  /** Acks at or above the threshold. */
  slowAcks: number;
  /** Bursts found. */
  bursts: number;
  /** Share of the slow acks that are inside bursts, % (0 when there are none). */
  inBurstsPct: number;
  /** The largest bursts (most slow acks first), at most 5. */
  largest: SlowBurst[];
  /**
   * Bursts during which one of the given marks (e.g. a slow disk flush) happened: the mark's
   * interval meets the burst's, from its first slow send to its last possible ack
   * (`startMs` .. `startMs + spanMs + maxMs`). Null when no marks were given.
   */
  withMark: number | null;
}

/** A stretch of time in the window that may explain a burst (e.g. a disk flush), ms from the window start. */
export interface Mark {
  /** Start, ms from the window start. */
  atMs: number;
  /** Length, ms. */
  ms: number;
}

/**
 * Find the bursts of slow acks in `trace`.
 * @param trace flat pairs `[scheduledMs, latencyMs, scheduledMs, latencyMs, ...]`, any order
 *   (scheduled time in ms from the window start, latency in ms); an odd trailing value is ignored
 * @param quantile which acks are slow: at or above this quantile of the trace's latencies
 *   (0 < quantile < 1; default 0.99, the p99 of the report)
 * @param marks stretches of the window to match the bursts with ({@link SlowAckSummary.withMark});
 *   undefined: none measured
 * @returns the summary; never throws
 */
export function slowAckBursts(trace: readonly number[], quantile = 0.99, marks?: readonly Mark[]): SlowAckSummary {
  const n = Math.floor(trace.length / 2);
  if (n === 0) return { thresholdMs: 0, slowAcks: 0, bursts: 0, inBurstsPct: 0, largest: [], withMark: marks ? 0 : null };
  const lat = new Float64Array(n);
  for (let i = 0; i < n; i++) lat[i] = trace[2 * i + 1]!;
  lat.sort();
  const thresholdMs = lat[Math.min(n - 1, Math.floor(quantile * n))]!;
  const slow: [number, number][] = [];
  for (let i = 0; i < n; i++) if (trace[2 * i + 1]! >= thresholdMs) slow.push([trace[2 * i]!, trace[2 * i + 1]!]);
  slow.sort((a, b) => a[0] - b[0]);
  const groups: SlowBurst[] = [];
  let last = -Infinity;
  for (const [at, ms] of slow) {
    const g = groups[groups.length - 1];
    if (g && at - last <= BURST_GAP_MS) {
      g.acks++;
      g.spanMs = at - g.startMs;
      g.maxMs = Math.max(g.maxMs, ms);
    } else groups.push({ startMs: at, spanMs: 0, acks: 1, maxMs: ms });
    last = at;
  }
  const bursts = groups.filter((g) => g.acks >= BURST_MIN_ACKS);
  const inBursts = bursts.reduce((s, g) => s + g.acks, 0);
  return {
    thresholdMs,
    slowAcks: slow.length,
    bursts: bursts.length,
    inBurstsPct: slow.length ? (100 * inBursts) / slow.length : 0,
    largest: [...bursts].sort((a, b) => b.acks - a.acks || a.startMs - b.startMs).slice(0, 5),
    withMark: marks ? bursts.filter((b) => marks.some((m) => m.atMs <= b.startMs + b.spanMs + b.maxMs && m.atMs + m.ms >= b.startMs)).length : null,
  };
}

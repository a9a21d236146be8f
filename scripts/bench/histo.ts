/**
 * HDR histogram helpers: latencies are recorded in microseconds (integers), shipped between
 * processes as compressed base64, merged in the driver and summarised in milliseconds.
 */
import hdr from 'hdr-histogram-js';

/** An HDR histogram of microsecond values. */
export type Hist = ReturnType<typeof hdr.build>;

/** A new histogram: 1 µs .. 1 h, 3 significant digits, auto-resizing. */
export function newHist(): Hist {
  return hdr.build({ bitBucketSize: 32, lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

/** Record a latency given in milliseconds (negative values, from clock noise, count as 0). */
export function recordMs(h: Hist, ms: number): void {
  h.recordValue(Math.max(0, Math.round(ms * 1000)));
}

/** Compressed base64 form of `h`, for IPC. */
export function encodeHist(h: Hist): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** Merge compressed histograms into a new one. Empty strings are skipped. */
export function mergeHists(encoded: readonly string[]): Hist {
  const out = newHist();
  for (const e of encoded) {
    if (!e) continue;
    const h = hdr.decodeFromCompressedBase64(e);
    out.add(h);
    h.destroy();
  }
  return out;
}

/** Percentiles of a latency histogram, milliseconds; `count` samples. Null fields when empty. */
export interface LatencySummary {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
}

/** Summarise a µs histogram into milliseconds (3 decimals). */
export function summarize(h: Hist): LatencySummary {
  const n = h.totalCount;
  const at = (p: number) => (n ? Math.round(h.getValueAtPercentile(p)) / 1000 : null);
  return { count: n, p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: n ? Math.round(h.maxValue) / 1000 : null };
}

/**
 * The bench's slow-ack burst finder (scripts/bench/stalls.ts) on synthetic ack traces at
 * 1,000 sends/s: slow acks spread over the window make no burst; a stall that delays every
 * send for 40 ms makes one, holding those acks; the threshold is the trace's own p99. And the
 * reading of the server's event-loop lateness from its /metrics text (scenarios/traffic.ts).
 */
import { describe, expect, it } from 'vitest';
import { loopLatenessFromMetrics } from '../../scripts/bench/scenarios/traffic.ts';
import { BURST_GAP_MS, BURST_MIN_ACKS, slowAckBursts } from '../../scripts/bench/stalls.ts';

/** A trace of `n` sends `stepMs` apart (default 1 ms: 1,000 sends/s), latency `latency(i)` ms each. */
function trace(n: number, latency: (i: number) => number, stepMs = 1): number[] {
  const t: number[] = [];
  for (let i = 0; i < n; i++) t.push(i * stepMs, latency(i));
  return t;
}

describe('slowAckBursts', () => {
  it('finds no burst when the slow acks are spread out', () => {
    // 1% of 10,000 acks slow, one every 100 sends, sends 1.5 ms apart: slow acks 150 ms apart.
    const s = slowAckBursts(trace(10_000, (i) => (i % 100 === 50 ? 30 : 2), 1.5));
    expect(s.thresholdMs).toBe(30);
    expect(s.slowAcks).toBe(100);
    expect(s.bursts).toBe(0);
    expect(s.inBurstsPct).toBe(0);
    expect(s.largest).toEqual([]);
  });

  it('finds the stall that set the p99 and the share of slow acks inside it', () => {
    // A 40 ms stall at 5,000 ms: sends scheduled 5,000..5,039 wait for its end (latency 40..1 ms + 2).
    // ~80 more slow acks (25 ms) spread 120 ms apart elsewhere: together more than 1%, so the p99 is above the base.
    const spread = new Set(Array.from({ length: 80 }, (_, k) => 200 + k * 120).filter((i) => i < 4900 || i > 5200));
    const s = slowAckBursts(
      trace(10_000, (i) => {
        if (i >= 5000 && i < 5040) return 2 + (5040 - i);
        return spread.has(i) ? 25 : 2;
      }),
    );
    expect(s.thresholdMs).toBeGreaterThan(2);
    expect(s.bursts).toBe(1);
    const b = s.largest[0]!;
    expect(b.startMs).toBe(5000);
    expect(b.maxMs).toBe(42);
    // Every stalled send above the threshold is in the burst, and nothing else is.
    const stalledSlow = Array.from({ length: 40 }, (_, k) => 2 + (40 - k)).filter((ms) => ms >= s.thresholdMs).length;
    expect(b.acks).toBe(stalledSlow);
    expect(b.acks).toBeGreaterThanOrEqual(BURST_MIN_ACKS);
    expect(s.inBurstsPct).toBeCloseTo((100 * stalledSlow) / s.slowAcks, 6);
  });

  it('splits two stalls further apart than the gap, and orders the largest first', () => {
    // 40 slow acks of 3,000: above the p99.
    const s = slowAckBursts(
      trace(3000, (i) => {
        if (i >= 1000 && i < 1010) return 50;
        if (i >= 1010 + BURST_GAP_MS + 1 && i < 1010 + BURST_GAP_MS + 31) return 50;
        return 2;
      }),
    );
    expect(s.bursts).toBe(2);
    expect(s.largest.map((b) => b.acks)).toEqual([30, 10]);
    expect(s.largest[1]!.startMs).toBe(1000);
    expect(s.largest[1]!.spanMs).toBe(9);
    expect(s.inBurstsPct).toBe(100);
  });

  it('takes any order and ignores an empty trace', () => {
    const t = trace(1000, (i) => (i >= 500 && i < 520 ? 40 : 1));
    const pairs: [number, number][] = [];
    for (let i = 0; i < t.length; i += 2) pairs.push([t[i]!, t[i + 1]!]);
    pairs.reverse();
    expect(slowAckBursts(pairs.flat())).toEqual(slowAckBursts(t));
    expect(slowAckBursts([])).toEqual({ thresholdMs: 0, slowAcks: 0, bursts: 0, inBurstsPct: 0, largest: [], withMark: null });
    expect(slowAckBursts([], 0.99, [])).toMatchObject({ bursts: 0, withMark: 0 });
  });

  it('counts the bursts that a mark (a slow disk flush) falls in, from first slow send to last possible ack', () => {
    // Three 30 ms stalls, at 1,000, 2,000 and 3,000 ms: sends there wait for the stall's end.
    const s0 = (i: number) => [1000, 2000, 3000].find((t) => i >= t && i < t + 30);
    const t = trace(5000, (i) => {
      const at = s0(i);
      return at === undefined ? 1 : 1 + (at + 30 - i);
    });
    expect(slowAckBursts(t).withMark).toBeNull();
    expect(slowAckBursts(t).bursts).toBe(3);
    const marks = [
      { atMs: 1005, ms: 40 }, // inside the first
      { atMs: 1950, ms: 60 }, // starts before the second, ends inside it
      { atMs: 3100, ms: 20 }, // after the third: its last ack came by ~3,000 + 29 + 31
      { atMs: 4000, ms: 50 }, // no burst there
    ];
    expect(slowAckBursts(t, 0.99, marks).withMark).toBe(2);
    expect(slowAckBursts(t, 0.99, [{ atMs: 3045, ms: 5 }]).withMark).toBe(1);
  });
});

describe('loopLatenessFromMetrics', () => {
  it("reads prom-client's event-loop lag p99 and max, less its 10 ms timer, in ms", () => {
    const text = [
      '# HELP nodejs_eventloop_lag_max_seconds The maximum recorded event loop delay.',
      '# TYPE nodejs_eventloop_lag_max_seconds gauge',
      'nodejs_eventloop_lag_max_seconds 0.031260671',
      'nodejs_eventloop_lag_p90_seconds 0.010616831',
      'nodejs_eventloop_lag_p99_seconds 0.014524415',
      'nodejs_eventloop_lag_p99_seconds_total 7',
    ].join('\n');
    const l = loopLatenessFromMetrics(text)!;
    expect(l.p99Ms).toBeCloseTo(4.524415, 6);
    expect(l.maxMs).toBeCloseTo(21.260671, 6);
  });

  it('is null without the metrics, and never negative', () => {
    expect(loopLatenessFromMetrics('chat_connections_open 3\n')).toBeNull();
    expect(loopLatenessFromMetrics('nodejs_eventloop_lag_p99_seconds 0.01\nnodejs_eventloop_lag_max_seconds 0.0099\n')).toEqual({ p99Ms: 0, maxMs: 0 });
  });
});

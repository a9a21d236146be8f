/**
 * The busy-stretch finder behind `scripts/profile-summary.ts --busy` (scripts/lib/cpuProfile.ts)
 * on a synthetic profile sampled every 1 ms: idle, a 3-sample turn, idle, a 12-sample stretch
 * that starts 8 ms after the last idle sample and has one 6 ms gap inside (the thread
 * descheduled), idle.
 */
import { describe, expect, it } from 'vitest';
import { busyStretches, type CpuProfile } from '../../scripts/lib/cpuProfile.ts';

const node = (id: number, functionName: string, url = '', lineNumber = 0) => ({ id, callFrame: { functionName, url, lineNumber } });
const IDLE = 1;
const WRITEV = 2;
const GC = 3;
const PARSE = 4;

/** Samples as [node id, µs since the previous sample]. */
function profile(seq: [number, number][]): CpuProfile {
  return {
    nodes: [node(IDLE, '(idle)'), node(WRITEV, 'writev'), node(GC, '(garbage collector)'), node(PARSE, 'parse', 'file:///x/src/protocol/inbound.ts', 41)],
    samples: seq.map((s) => s[0]),
    timeDeltas: seq.map((s) => s[1]),
  };
}
const run = (id: number, n: number, delta = 1000): [number, number][] => Array.from({ length: n }, () => [id, delta]);

const p = profile([
  ...run(IDLE, 10),
  ...run(PARSE, 3),
  ...run(IDLE, 10),
  [WRITEV, 8000],
  ...run(WRITEV, 4),
  [GC, 6000],
  ...run(GC, 4),
  ...run(PARSE, 2),
  ...run(IDLE, 5),
]);

describe('busyStretches', () => {
  it('finds only the stretches at least as long as asked, with their span, samples and longest gap', () => {
    const s = busyStretches(p, 10);
    expect(s).toHaveLength(1);
    const [b] = s;
    // From the idle sample before it (t = 22 ms after the first) to the idle one after it:
    // 8 + 4 + 6 + 4 + 2 + 1 ms. The 8 ms before its first sample is not a gap inside it.
    expect(b!.startMs).toBe(22);
    expect(b!.lengthMs).toBe(25);
    expect(b!.samples).toBe(12);
    expect(b!.longestGapMs).toBe(6);
    expect(b!.functions).toEqual([
      ['writev :1', 5],
      ['(garbage collector) :1', 5],
      ['parse inbound.ts:42', 2],
    ]);
  });

  it('includes the short turn when the threshold is below it, and nothing for a profile without samples', () => {
    const s = busyStretches(p, 4);
    expect(s.map((b) => [b.startMs, b.lengthMs, b.samples, b.longestGapMs])).toEqual([
      [9, 4, 3, 1],
      [22, 25, 12, 6],
    ]);
    expect(busyStretches({ nodes: p.nodes }, 1)).toEqual([]);
  });
});

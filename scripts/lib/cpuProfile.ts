/**
 * Reading V8 CPU profiles (`.cpuprofile`, as written by `--cpu-prof` or the server's
 * `CPU_PROFILE_FILE`): the profile's shape and the busy-stretch finder used by
 * `scripts/profile-summary.ts --busy`.
 */

/** One call-tree node of a V8 CPU profile. */
export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** A V8 CPU profile: `samples[i]` is the node on top of the stack at sample i, `timeDeltas[i]` µs since sample i-1. */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** A run of consecutive non-idle samples (see {@link busyStretches}). */
export interface BusyStretch {
  /** Start, ms after the profile's first sample (the time of the idle sample before it). */
  startMs: number;
  /** From the idle sample before it to the idle sample after it, ms. */
  lengthMs: number;
  /** Its samples. */
  samples: number;
  /** Longest interval between two of its consecutive samples, ms: well above the sampling interval, the thread was not running (preempted, or the host stalled). */
  longestGapMs: number;
  /** Samples per function (`name file:line`), most first. */
  functions: [string, number][];
}

/** Ids of the `(idle)` nodes: a sample on one of them is the thread waiting for work. */
export function idleNodeIds(p: CpuProfile): Set<number> {
  return new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
}

/** Time of each sample, µs from the profile's start (the running sum of `timeDeltas`). */
export function sampleTimes(timeDeltas: readonly number[]): number[] {
  const times: number[] = [];
  let t = 0;
  for (const d of timeDeltas) times.push((t += d));
  return times;
}

/** `name file:line` of a node (the file without its directory). */
export function frameName(n: ProfileNode): string {
  return `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\//, '')}:${n.callFrame.lineNumber + 1}`;
}

/**
 * The stretches of consecutive non-`(idle)` samples that span at least `minMs` ms: event-loop
 * turns (or turns back to back) that kept the thread from its queue that long. A stretch
 * spans from the idle sample before it to the idle sample (or the last sample) after it.
 * Returns [] for a profile without a sample list.
 */
export function busyStretches(p: CpuProfile, minMs: number): BusyStretch[] {
  const { samples, timeDeltas } = p;
  if (!samples || !timeDeltas || samples.length === 0) return [];
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const idle = idleNodeIds(p);
  const times = sampleTimes(timeDeltas);
  const out: BusyStretch[] = [];
  let start = -1;
  for (let i = 0; i <= samples.length; i++) {
    const busy = i < samples.length && !idle.has(samples[i]!);
    if (busy && start < 0) start = i;
    if (busy || start < 0) continue;
    const from = times[Math.max(0, start - 1)]!;
    const to = times[Math.min(i, times.length - 1)]!;
    if ((to - from) / 1000 >= minMs) {
      let gap = 0;
      const fns = new Map<string, number>();
      for (let j = start; j < i; j++) {
        if (j > start) gap = Math.max(gap, timeDeltas[j]!);
        const node = byId.get(samples[j]!);
        const name = node ? frameName(node) : '?';
        fns.set(name, (fns.get(name) ?? 0) + 1);
      }
      out.push({ startMs: (from - times[0]!) / 1000, lengthMs: (to - from) / 1000, samples: i - start, longestGapMs: gap / 1000, functions: [...fns].sort((a, b) => b[1] - a[1]) });
    }
    start = -1;
  }
  return out;
}

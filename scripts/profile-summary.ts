/**
 * `tsx scripts/profile-summary.ts FILE.cpuprofile [N] [--window S]`: the N (default 25)
 * functions with the most self time in a V8 CPU profile, and self time by package
 * (node_modules/<pkg>, our src/<folder>, node internals), as percentages of the sampled time.
 * `--window S` counts only the S seconds with the fewest idle samples (e.g. the connect
 * burst of a bench run, without start-up and idle periods); self time is then also given
 * in ms of that window.
 *
 * `--busy MS` lists instead the busy stretches of at least MS ms (scripts/lib/cpuProfile.ts:
 * runs of non-idle samples, i.e. turns that kept the event loop from its queue that long),
 * each with its longest gap between samples (the thread not running) and its N (default 3)
 * functions with the most samples; then the functions over all of them.
 */
import { readFileSync } from 'node:fs';
import { busyStretches, idleNodeIds, sampleTimes, type CpuProfile } from './lib/cpuProfile.ts';

const args = process.argv.slice(2);
const windowS = takeOption(args, '--window');
const busyMs = takeOption(args, '--busy');
const [file, nArg] = args;
if (!file || Number.isNaN(windowS) || Number.isNaN(busyMs)) {
  process.stderr.write('usage: tsx scripts/profile-summary.ts FILE.cpuprofile [N] [--window S | --busy MS]\n');
  process.exit(2);
}
// `... | head` closing the pipe early is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(0);
});
const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
if (busyMs > 0) printBusy(profile, busyMs, Number(nArg ?? 3));
else printSummary(profile, windowS, Number(nArg ?? 25));

/** The default report: self time by package, then the `topN` functions by self time (within the busiest `windowS` s when > 0). */
function printSummary(profile: CpuProfile, windowS: number, topN: number): void {
  const hits = windowHits(profile, windowS);
  const total = [...hits.values()].reduce((s, h) => s + h, 0) || 1;
  const byFn = new Map<string, number>();
  const byPkg = new Map<string, number>();
  for (const n of profile.nodes) {
    const h = hits.get(n.id) ?? 0;
    if (!h) continue;
    const url = n.callFrame.url;
    const name = n.callFrame.functionName || '(anonymous)';
    const where = url.replace(/^.*\/work\/main\//, '').replace(/^file:\/\//, '');
    const fnKey = `${name}  ${where}:${n.callFrame.lineNumber + 1}`;
    byFn.set(fnKey, (byFn.get(fnKey) ?? 0) + h);
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? /\/src\/([^/]+)/.exec(url)?.[1]?.replace(/^/, 'src/') ?? (url ? 'node:internal' : name.startsWith('(') ? name : 'native');
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + h);
  }
  const msPerSample = windowS > 0 ? (windowS * 1000) / total : 0;
  const pct = (h: number) => ((100 * h) / total).toFixed(1).padStart(5) + '%' + (msPerSample ? `${(h * msPerSample).toFixed(0).padStart(7)} ms` : '');
  process.stdout.write(`self time by package (${total} samples${windowS > 0 ? `, busiest ${windowS} s` : ''})\n`);
  for (const [k, v] of [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 20)) process.stdout.write(`${pct(v)}  ${k}\n`);
  process.stdout.write(`\ntop functions by self time\n`);
  for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, topN)) process.stdout.write(`${pct(v)}  ${k}\n`);
}

/** Remove `name VALUE` from `args` and return VALUE: 0 when absent, NaN when not a positive number. */
function takeOption(args: string[], name: string): number {
  const i = args.indexOf(name);
  if (i < 0) return 0;
  const v = Number(args[i + 1]);
  args.splice(i, 2);
  return v > 0 ? v : NaN;
}

/** The `--busy` report: each stretch with its `topN` functions, then the functions over all stretches. */
function printBusy(p: CpuProfile, minMs: number, topN: number): void {
  const stretches = busyStretches(p, minMs);
  const overall = new Map<string, number>();
  for (const s of stretches) {
    for (const [k, v] of s.functions) overall.set(k, (overall.get(k) ?? 0) + v);
    const top = s.functions.slice(0, topN).map(([k, v]) => `${k} x${v}`).join(', ');
    process.stdout.write(`${(s.startMs / 1000).toFixed(2)} s  ${s.lengthMs.toFixed(1)} ms  ${s.samples} samples  longest gap ${s.longestGapMs.toFixed(1)} ms  | ${top}\n`);
  }
  process.stdout.write(`\n${stretches.length} busy stretches of >= ${minMs} ms; their functions by samples:\n`);
  for (const [k, v] of [...overall].sort((a, b) => b[1] - a[1]).slice(0, 15)) process.stdout.write(`${String(v).padStart(7)}  ${k}\n`);
}

/**
 * Samples per node id: all of them (`windowS` 0, or a profile without a sample list),
 * else those of the `windowS`-second stretch with the fewest `(idle)` samples.
 */
function windowHits(p: CpuProfile, windowS: number): Map<number, number> {
  const out = new Map<number, number>();
  if (!(windowS > 0) || !p.samples || !p.timeDeltas) {
    for (const n of p.nodes) if (n.hitCount) out.set(n.id, n.hitCount);
    return out;
  }
  const idleIds = idleNodeIds(p);
  const times = sampleTimes(p.timeDeltas);
  const span = windowS * 1e6;
  let best = 0;
  let bestBusy = -1;
  let busy = 0;
  // Two pointers over the samples: [lo, hi] spans at most `span` µs.
  for (let lo = 0, hi = 0; lo < times.length; lo++) {
    while (hi < times.length && times[hi]! - times[lo]! <= span) busy += idleIds.has(p.samples[hi++]!) ? 0 : 1;
    if (busy > bestBusy) [bestBusy, best] = [busy, lo];
    busy -= idleIds.has(p.samples[lo]!) ? 0 : 1;
  }
  for (let i = best; i < times.length && times[i]! - times[best]! <= span; i++) out.set(p.samples[i]!, (out.get(p.samples[i]!) ?? 0) + 1);
  return out;
}

/**
 * `tsx scripts/profile-summary.ts FILE.cpuprofile [N] [--window S]`: the N (default 25)
 * functions with the most self time in a V8 CPU profile, and self time by package
 * (node_modules/<pkg>, our src/<folder>, node internals), as percentages of the sampled time.
 * `--window S` counts only the S seconds with the fewest idle samples (e.g. the connect
 * burst of a bench run, without start-up and idle periods); self time is then also given
 * in ms of that window.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: Node[];
  samples?: number[];
  timeDeltas?: number[];
}
const args = process.argv.slice(2);
const wi = args.indexOf('--window');
const windowS = wi >= 0 ? Number(args[wi + 1]) : 0;
if (wi >= 0) args.splice(wi, 2);
const [file, nArg] = args;
if (!file || (wi >= 0 && !(windowS > 0))) {
  process.stderr.write('usage: tsx scripts/profile-summary.ts FILE.cpuprofile [N] [--window S]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
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
for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(nArg ?? 25))) process.stdout.write(`${pct(v)}  ${k}\n`);

/**
 * Samples per node id: all of them (`windowS` 0, or a profile without a sample list),
 * else those of the `windowS`-second stretch with the fewest `(idle)` samples.
 */
function windowHits(p: Profile, windowS: number): Map<number, number> {
  const out = new Map<number, number>();
  if (!(windowS > 0) || !p.samples || !p.timeDeltas) {
    for (const n of p.nodes) if (n.hitCount) out.set(n.id, n.hitCount);
    return out;
  }
  const idleIds = new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
  const times: number[] = [];
  let t = 0;
  for (const d of p.timeDeltas) times.push((t += d));
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

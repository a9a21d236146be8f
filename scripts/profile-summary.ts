/**
 * `tsx scripts/profile-summary.ts FILE.cpuprofile [N]`: the N (default 25) functions with
 * the most self time in a V8 CPU profile, and self time by package (node_modules/<pkg>,
 * our src/<folder>, node internals), as percentages of the sampled time.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
const [file, nArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: tsx scripts/profile-summary.ts FILE.cpuprofile [N]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[] };
const total = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
const byFn = new Map<string, number>();
const byPkg = new Map<string, number>();
for (const n of profile.nodes) {
  const hits = n.hitCount ?? 0;
  if (!hits) continue;
  const url = n.callFrame.url;
  const name = n.callFrame.functionName || '(anonymous)';
  const where = url.replace(/^.*\/work\/main\//, '').replace(/^file:\/\//, '');
  byFn.set(`${name}  ${where}:${n.callFrame.lineNumber + 1}`, (byFn.get(`${name}  ${where}:${n.callFrame.lineNumber + 1}`) ?? 0) + hits);
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? /\/src\/([^/]+)/.exec(url)?.[1]?.replace(/^/, 'src/') ?? (url ? 'node:internal' : name.startsWith('(') ? name : 'native');
  byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + hits);
}
const pct = (h: number) => ((100 * h) / total).toFixed(1).padStart(5) + '%';
process.stdout.write(`self time by package (${total} samples)\n`);
for (const [k, v] of [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 20)) process.stdout.write(`${pct(v)}  ${k}\n`);
process.stdout.write(`\ntop functions by self time\n`);
for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(nArg ?? 25))) process.stdout.write(`${pct(v)}  ${k}\n`);

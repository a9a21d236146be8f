/**
 * Printing the suite's results: the main table (one row per fault, summed over its runs),
 * a detail table per run, the timing figures (outage → /ready, drain, revocation) with
 * their bounds, and the evidence of anything unexpected.
 */
import type { Timing } from './faults.ts';
import type { RunResult } from './verify.ts';

function table(head: string[], rows: (string | number)[][], right: boolean[] = []): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const w = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (right[i] ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** Main table: fault, runs, messages, acknowledged, lost, duplicated, unexpected (+ failed/abandoned/retried). */
export function summaryTable(results: RunResult[], faultOrder: string[], errors: Map<string, string>): string {
  const rows: (string | number)[][] = [];
  const sum = (rs: RunResult[], k: keyof RunResult) => rs.reduce((a, r) => a + (r[k] as number), 0);
  for (const f of faultOrder) {
    const rs = results.filter((r) => r.fault === f);
    const err = errors.get(f);
    rows.push([
      f + (err ? ' (ERROR)' : ''),
      rs.length,
      sum(rs, 'messages'),
      sum(rs, 'acknowledged'),
      sum(rs, 'lost'),
      sum(rs, 'duplicated'),
      sum(rs, 'unexpected') + (err ? 1 : 0),
      sum(rs, 'failed'),
      sum(rs, 'abandoned'),
      sum(rs, 'retried'),
    ]);
  }
  const all = results;
  rows.push(['TOTAL', all.length, sum(all, 'messages'), sum(all, 'acknowledged'), sum(all, 'lost'), sum(all, 'duplicated'), sum(all, 'unexpected') + errors.size, sum(all, 'failed'), sum(all, 'abandoned'), sum(all, 'retried')]);
  return table(
    ['fault', 'runs', 'messages', 'acknowledged', 'lost', 'duplicated', 'unexpected', 'failed', 'abandoned', 'retried'],
    rows,
    [false, true, true, true, true, true, true, true, true, true],
  );
}

/** Per-run detail: traffic, in-flight, live vs sync receipts, close codes seen. */
export function runTable(results: RunResult[]): string {
  return table(
    ['fault', 'run', 'traffic s', 'msgs', 'msg/s', 'in flight min/mean', 'retried', 'err→dup', 'live rx', 'sync rx', 'closes'],
    results.map((r) => [
      r.fault,
      r.run,
      (r.trafficMs / 1000).toFixed(1),
      r.messages,
      Math.round(r.acknowledged / Math.max(1, r.trafficMs / 1000)),
      `${r.inFlightMin}/${r.inFlightMean}`,
      r.retried,
      r.errorThenStored,
      r.live,
      r.viaSync,
      r.closes || '-',
    ]),
    [false, true, true, true, true, true, true, true, true, true, false],
  );
}

/** True when a timing misses its bound (or was not observed while it has one and no explanation). */
export function timingFailed(t: Timing): boolean {
  if (t.limitMs === undefined) return false;
  if (t.ms === null) return t.text === undefined;
  return t.ms > t.limitMs;
}

/** Timings grouped by fault and figure: each run's value, the max, the bound, ok/FAIL. */
export function timingTable(timings: Timing[]): string {
  const keys: string[] = [];
  for (const t of timings) {
    const k = `${t.fault}\u0000${t.what}`;
    if (!keys.includes(k)) keys.push(k);
  }
  const rows = keys.map((k) => {
    const [fault, what] = k.split('\u0000') as [string, string];
    const ts = timings.filter((t) => t.fault === fault && t.what === what);
    const vals = ts.map((t) => (t.ms === null ? (t.text ?? 'never') : String(t.ms)));
    const nums = ts.map((t) => t.ms).filter((x): x is number => x !== null);
    const limit = ts[0]!.limitMs;
    const bad = ts.some(timingFailed);
    return [fault, what, vals.join(' / '), nums.length ? Math.max(...nums) : '-', limit === undefined ? '-' : `≤ ${limit}`, limit === undefined ? '' : bad ? 'FAIL' : 'ok'];
  });
  return table(['fault', 'figure (ms)', 'per run', 'max', 'bound', ''], rows, [false, false, false, true, true, false]);
}

/** Observations that are not failures, per run. */
export function observations(results: RunResult[]): string {
  const out: string[] = [];
  for (const r of results) for (const o of r.observations) out.push(`  ${r.fault} #${r.run}: ${o}`);
  return out.join('\n');
}

/** Evidence of every unexpected/lost/duplicated item, at most `perRun` lines per run. */
export function evidence(results: RunResult[], perRun = 15): string {
  const out: string[] = [];
  for (const r of results) {
    if (r.notes.length === 0) continue;
    out.push(`${r.fault} run ${r.run}:`);
    for (const n of r.notes.slice(0, perRun)) out.push(`  [${n.kind}] ${n.detail}`);
    if (r.notes.length > perRun) out.push(`  … ${r.notes.length - perRun} more`);
  }
  return out.join('\n');
}

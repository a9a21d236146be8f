/**
 * Figures of benchmark runs: per-run values, their median [min..max] over runs, the check
 * against each target, and the stdout table.
 */

/** A target: `value op target`. `judge` picks the median of the runs (default) or the worst run. */
export interface Target {
  op: '>=' | '<=' | '==';
  value: number;
  judge?: 'median' | 'worst';
}

/** One measured number of one run (`value` null when it could not be measured). */
export interface Figure {
  name: string;
  unit: string;
  value: number | null;
  target?: Target;
}

/** One run of a scenario: its figures and free-form details for the JSON report. */
export interface RunResult {
  figures: Figure[];
  info: Record<string, unknown>;
}

/** A figure over all runs. `pass` is null without a target (or without values). */
export interface FigureSummary {
  name: string;
  unit: string;
  median: number | null;
  min: number | null;
  max: number | null;
  runs: number;
  target?: Target;
  pass: boolean | null;
}

/** A scenario's outcome: runs and summary, or why it did not run. */
export interface ScenarioOutcome {
  id: string;
  title: string;
  /** Set when the server lacks a feature the scenario needs ("not available"). */
  unavailable?: string;
  /** Set when the harness or server failed during the scenario. */
  error?: string;
  runs: RunResult[];
  summary: FigureSummary[];
}

/** Median of numbers (mean of the two middle ones for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function meets(v: number, t: Target): boolean {
  return t.op === '>=' ? v >= t.value : t.op === '<=' ? v <= t.value : v === t.value;
}

/** Summarise each figure (by name, in first-run order) across runs and judge its target. */
export function summarizeRuns(runs: readonly RunResult[]): FigureSummary[] {
  const names: string[] = [];
  for (const r of runs) for (const f of r.figures) if (!names.includes(f.name)) names.push(f.name);
  return names.map((name) => {
    const fs = runs.map((r) => r.figures.find((f) => f.name === name)).filter((f): f is Figure => !!f);
    const vals = fs.map((f) => f.value).filter((v): v is number => v !== null && Number.isFinite(v));
    const first = fs[0]!;
    const target = first.target;
    const med = vals.length ? median(vals) : null;
    const min = vals.length ? Math.min(...vals) : null;
    const max = vals.length ? Math.max(...vals) : null;
    let pass: boolean | null = null;
    if (target) {
      if (vals.length < fs.length || !vals.length) pass = false;
      else if (target.judge === 'worst') pass = vals.every((v) => meets(v, target));
      else pass = meets(med!, target);
    }
    return { name, unit: first.unit, median: med, min, max, runs: vals.length, target, pass };
  });
}

function fmt(v: number | null): string {
  if (v === null) return 'n/a';
  const a = Math.abs(v);
  if (Number.isInteger(v) || a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(a === 0 || Number.isInteger(v) ? 0 : 2);
}

/** The stdout table: one row per figure, `median [min..max]`, target and PASS/MISS. */
export function renderTable(outcomes: readonly ScenarioOutcome[]): string {
  const rows: string[][] = [['scenario', 'figure', 'median [min..max]', 'target', 'result']];
  for (const o of outcomes) {
    if (o.unavailable || (o.error && o.summary.length === 0)) {
      rows.push([o.id, o.unavailable ? 'not available' : 'ERROR', (o.unavailable ?? o.error ?? '').slice(0, 70), '', o.unavailable ? 'n/a' : 'MISS']);
      continue;
    }
    for (const f of o.summary) {
      const range = f.runs > 1 ? ` [${fmt(f.min)}..${fmt(f.max)}]` : '';
      const target = f.target ? `${f.target.op} ${fmt(f.target.value)}${f.target.judge === 'worst' ? ' (every run)' : ''}` : '';
      rows.push([o.id, `${f.name} (${f.unit})`, `${fmt(f.median)}${range}`, target, f.pass === null ? '' : f.pass ? 'PASS' : 'MISS']);
    }
    if (o.error) rows.push([o.id, 'ERROR', o.error.slice(0, 70), '', 'MISS']);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/** True when some figure with a target missed it, or a scenario failed (unavailable ones do not count). */
export function anyMiss(outcomes: readonly ScenarioOutcome[]): boolean {
  return outcomes.some((o) => !o.unavailable && (!!o.error || o.summary.some((f) => f.pass === false)));
}
